"""chat.create / chat.stream calling conventions: typed fields, per-call options, results.

``extra_headers`` / ``extra_query`` / ``extra_body`` / ``timeout`` arrive where
they belong and never in the body under their own names; an unknown keyword
is a TypeError; results carry the request id and the rate-limit headers.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import respx

from holysheep_async import APITimeoutError, AsyncClient
from holysheep_async.testing import MockServer
from holysheep_async.types import ChatCompletionMessageParam, ChatCompletionToolParam

from .spec import validate

pytestmark = pytest.mark.anyio

MESSAGES: list[ChatCompletionMessageParam] = [{"role": "user", "content": "Say hi"}]
OPTIONS = ("extra_headers", "extra_query", "extra_body", "timeout")


async def test_create_options_arrive_where_they_belong(
    client: AsyncClient, server: MockServer
) -> None:
    await client.chat.create(
        model="gpt-4o",
        messages=MESSAGES,
        temperature=0.2,
        extra_headers={"X-Trace": "abc"},
        extra_query={"api-version": "2024-10-21"},
        extra_body={"top_k": 40, "relay_option": {"cache": True}},
        timeout=5,
    )
    request = server.requests[-1]
    body = request.json()
    assert body == {
        "model": "gpt-4o",
        "messages": MESSAGES,
        "temperature": 0.2,
        "top_k": 40,
        "relay_option": {"cache": True},
    }
    assert not set(OPTIONS) & set(body)
    assert request.headers["x-trace"] == "abc"
    assert request.query == {"api-version": "2024-10-21"}
    assert request.path == "/v1/chat/completions"


async def test_stream_options_arrive_where_they_belong(
    client: AsyncClient, server: MockServer
) -> None:
    async with client.chat.stream(
        model="gpt-4o",
        messages=MESSAGES,
        max_tokens=3,
        extra_headers={"X-Trace": "s1"},
        extra_query={"tenant": "t"},
        extra_body={"top_k": 5},
        timeout=httpx.Timeout(5.0),
    ) as stream:
        text = "".join([t async for t in stream])
    assert text
    request = server.requests[-1]
    body = request.json()
    assert body["top_k"] == 5 and body["stream"] is True and body["max_tokens"] == 3
    assert not set(OPTIONS) & set(body)
    assert request.headers["x-trace"] == "s1"
    assert request.query == {"tenant": "t"}
    validate("CreateChatCompletionRequest", {k: v for k, v in body.items() if k != "top_k"})


@pytest.mark.parametrize("method", ["create", "stream"])
async def test_unknown_keyword_is_a_type_error_naming_it(
    client: AsyncClient, server: MockServer, method: str
) -> None:
    before = len(server.requests)
    typo: dict[str, Any] = {"temprature": 0.2}
    with pytest.raises(TypeError) as info:
        if method == "create":
            await client.chat.create(model="gpt-4o", messages=MESSAGES, **typo)
        else:
            client.chat.stream(model="gpt-4o", messages=MESSAGES, **typo)
    message = str(info.value)
    assert "'temprature'" in message
    assert "did you mean 'temperature'" in message
    assert "extra_body" in message
    assert len(server.requests) == before  # nothing was sent


async def test_bad_option_types_are_named(client: AsyncClient) -> None:
    with pytest.raises(TypeError, match="extra_body must be a dict"):
        await client.chat.create(model="m", messages=MESSAGES, extra_body=[1])  # type: ignore[call-overload]
    with pytest.raises(TypeError, match="timeout must be"):
        await client.chat.create(model="m", messages=MESSAGES, timeout="5")  # type: ignore[call-overload]


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A server that accepts connections and never answers."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    yield sock.getsockname()[1]
    sock.close()


async def test_per_call_timeout_is_honoured(silent_port: int) -> None:
    # The client's own timeout is long; only the call's 0.2 s can end this.
    async with AsyncClient(
        api_key="k", base_url=f"http://127.0.0.1:{silent_port}/v1", timeout=600, max_retries=0
    ) as client:
        with pytest.raises(APITimeoutError):
            await client.chat.create(model="m", messages=MESSAGES, timeout=0.2)
        with pytest.raises(APITimeoutError):
            async with client.chat.stream(model="m", messages=MESSAGES, timeout=0.2) as s:
                async for _ in s:
                    pass


async def test_per_call_timeout_reaches_httpx() -> None:
    seen: list[dict[str, Any]] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request.extensions["timeout"])
        return httpx.Response(200, json={"id": "c", "choices": []})

    with respx.mock(base_url="https://relay.test/v1", using="httpx") as router:
        router.post("/chat/completions").mock(side_effect=answer)
        async with AsyncClient(api_key="k", base_url="https://relay.test/v1") as client:
            await client.chat.create(model="m", messages=MESSAGES, timeout=7)
            await client.chat.create(model="m", messages=MESSAGES)
    assert seen[0] == httpx.Timeout(7.0).as_dict()
    assert seen[1] == client.timeout.as_dict()


async def test_results_carry_request_id_and_rate_limits() -> None:
    async with (
        MockServer(rpm_quota=100) as server,
        AsyncClient(api_key="k", base_url=server.base_url) as client,
    ):
        completion = await client.chat.create(model="gpt-4o", messages=MESSAGES)
        assert completion.request_id == server.requests[-1].request_id
        assert completion.rate_limits["limit-requests"] == "100"
        assert "remaining-requests" in completion.rate_limits
        assert "x-ratelimit-limit-requests" in completion.response_headers
        async with client.chat.stream(model="gpt-4o", messages=MESSAGES) as stream:
            async for _ in stream:
                pass
        assert stream.request_id == server.requests[-1].request_id
        assert stream.rate_limits["limit-requests"] == "100"
    # Dumps stay the wire object.
    assert "request_id" not in completion.model_dump()


async def test_typed_request_bodies_validate_against_the_spec(
    client: AsyncClient, server: MockServer
) -> None:
    tools: list[ChatCompletionToolParam] = [
        {
            "type": "function",
            "function": {
                "name": "weather",
                "description": "Weather in a city",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
            },
        }
    ]
    messages: list[ChatCompletionMessageParam] = [
        {"role": "developer", "content": "Be brief."},
        {"role": "user", "content": [{"type": "text", "text": "Weather?"}]},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "weather", "arguments": "{}"}}
            ],
        },
        {"role": "tool", "content": "sunny", "tool_call_id": "c1"},
    ]
    await client.chat.create(
        model="gpt-4o",
        messages=messages,
        tools=tools,
        tool_choice="auto",
        parallel_tool_calls=False,
        max_completion_tokens=20,
        reasoning_effort="low",
        service_tier="auto",
        stop=["\n"],
        logprobs=True,
        top_logprobs=2,
        seed=1,
        user="u1",
        metadata={"k": "v"},
        response_format={"type": "json_object"},
    )
    validate("CreateChatCompletionRequest", server.requests[-1].json())
