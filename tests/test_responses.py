"""client.responses against a server that speaks OpenAI's Responses protocol (respx).

Calling conventions (typed fields, per-call options, unknown keywords),
results (typed items, usage counted, structured outputs), the stored-response
methods, background polling, and the chat fallback of servers without
``/responses``.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
import respx
from pydantic import BaseModel

from holysheep_async import (
    AsyncClient,
    BadRequestError,
    NotFoundError,
    RefusalError,
    ResponsesNotSupportedError,
    ResponseTimeoutError,
    StructuredOutputError,
)
from holysheep_async.responses import (
    ParsedResponse,
    Response,
    ResponseFunctionCallOutputItem,
    ResponseOutputMessage,
)

from .conftest import FakeSleep
from .responses_samples import (
    chat_completion,
    completed,
    envelope,
    function_call,
    message,
    reasoning,
    usage,
)

pytestmark = pytest.mark.anyio

BASE = "https://relay.test/v1"
OPTIONS = ("extra_headers", "extra_query", "extra_body", "timeout")


@pytest.fixture
def relay() -> Iterator[respx.MockRouter]:
    with respx.mock(base_url=BASE, using="httpx", assert_all_called=False) as router:
        yield router


@pytest.fixture
async def client(relay: respx.MockRouter, fake_sleep: FakeSleep) -> AsyncIterator[AsyncClient]:
    async with AsyncClient(api_key="sk-test-key", base_url=BASE) as c:
        c._requester.sleep = fake_sleep
        yield c


def answer(obj: dict[str, Any], status: int = 200, rid: str = "req_1") -> httpx.Response:
    return httpx.Response(status, json=obj, headers={"x-request-id": rid})


def sent(relay: respx.MockRouter, i: int = -1) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(relay.calls[i].request.content)
    return body


class Weather(BaseModel):
    city: str
    celsius: int


# -- calling conventions --------------------------------------------------------------------


async def test_create_sends_every_field_where_it_belongs(
    client: AsyncClient, relay: respx.MockRouter
) -> None:
    route = relay.post("/responses").mock(return_value=answer(completed([message("Hi!")])))
    tools = [{"type": "function", "name": "f", "parameters": {"type": "object"}, "strict": True}]
    response = await client.responses.create(
        model="gpt-4o",
        input=[{"role": "user", "content": "Say hi"}],
        instructions="Be brief.",
        tools=tools,
        tool_choice="auto",
        text={"verbosity": "low"},
        reasoning={"effort": "low"},
        max_output_tokens=64,
        store=False,
        metadata={"job": "1"},
        temperature=0.2,
        top_p=0.9,
        parallel_tool_calls=False,
        truncation="auto",
        user="u1",
        include=["reasoning.encrypted_content"],
        extra_headers={"X-Trace": "abc"},
        extra_query={"api-version": "2025-01-01"},
        extra_body={"top_k": 40},
        timeout=7,
    )
    body = sent(relay)
    assert body == {
        "model": "gpt-4o",
        "input": [{"role": "user", "content": "Say hi"}],
        "instructions": "Be brief.",
        "tools": tools,
        "tool_choice": "auto",
        "text": {"verbosity": "low"},
        "reasoning": {"effort": "low"},
        "max_output_tokens": 64,
        "store": False,
        "metadata": {"job": "1"},
        "temperature": 0.2,
        "top_p": 0.9,
        "parallel_tool_calls": False,
        "truncation": "auto",
        "user": "u1",
        "include": ["reasoning.encrypted_content"],
        "top_k": 40,
    }
    assert not set(OPTIONS) & set(body)
    request = route.calls[-1].request
    assert request.headers["x-trace"] == "abc"
    assert request.url.params["api-version"] == "2025-01-01"
    assert request.extensions["timeout"] == httpx.Timeout(7.0).as_dict()
    assert isinstance(response, Response) and response.output_text == "Hi!"
    assert response.request_id == "req_1"
    assert isinstance(response.output[0], ResponseOutputMessage)


@pytest.mark.parametrize("method", ["create", "stream"])
async def test_an_unknown_keyword_is_a_type_error_and_nothing_is_sent(
    client: AsyncClient, relay: respx.MockRouter, method: str
) -> None:
    call = getattr(client.responses, method)
    with pytest.raises(TypeError) as caught:
        await_or_not = call(model="m", input="x", max_tokens=5)
        if method == "create":
            await await_or_not
    message_ = str(caught.value)
    assert "max_tokens" in message_ and "extra_body" in message_
    assert "max_output_tokens" in message_  # the name it probably meant
    with pytest.raises(ValueError, match="stream"):
        if method == "create":
            await client.responses.create(model="m", input="x", stream=True)  # type: ignore[call-overload]
        else:
            client.responses.stream(model="m", input="x", stream=True)  # type: ignore[call-overload]
    with pytest.raises(TypeError, match="input"):
        await client.responses.create(model="m", input=42)  # type: ignore[call-overload]
    assert not relay.calls


async def test_output_items_go_back_as_input_unchanged(
    client: AsyncClient, relay: respx.MockRouter
) -> None:
    """Conversation state kept on the client side: response.output is the next turn's input."""
    call = function_call("get_weather", '{"city":"Paris"}', "call_9", "fc_9")
    relay.post("/responses").mock(
        side_effect=[
            answer(completed([reasoning("Need data."), call])),
            answer(completed([message("18C in Paris.")])),
        ]
    )
    history: list[Any] = [{"role": "user", "content": "Weather in Paris?"}]
    first = await client.responses.create(model="gpt-4o", input=history, store=False)
    history += first.output
    for fc in first.function_calls:
        history.append(
            ResponseFunctionCallOutputItem(call_id=fc.call_id, output=json.dumps({"c": 18}))
        )
    second = await client.responses.create(model="gpt-4o", input=history, store=False)
    assert second.output_text == "18C in Paris."
    body = sent(relay)
    assert "previous_response_id" not in body
    assert body["input"] == [
        {"role": "user", "content": "Weather in Paris?"},
        reasoning("Need data."),
        call,
        {"type": "function_call_output", "call_id": "call_9", "output": '{"c": 18}'},
    ]


# -- results ------------------------------------------------------------------------------


async def test_usage_is_counted_with_its_cost(client: AsyncClient, relay: respx.MockRouter) -> None:
    relay.post("/responses").mock(
        return_value=answer(completed([message("x")], usage=usage(1000, 500, reasoning=200)))
    )
    await client.responses.create(model="gpt-4o", input="q")
    await client.responses.create(model="gpt-4o", input="q")
    assert client.usage.requests == 2
    assert (client.usage.input_tokens, client.usage.output_tokens) == (2000, 1000)
    assert client.usage.cost_usd == pytest.approx(2 * (1000 * 2.5 + 500 * 10) / 1e6)


async def test_text_format_asks_a_strict_schema_and_parses(
    client: AsyncClient, relay: respx.MockRouter
) -> None:
    relay.post("/responses").mock(
        return_value=answer(completed([message('{"city": "Paris", "celsius": 18}')]))
    )
    response = await client.responses.create(model="gpt-4o", input="q", text_format=Weather)
    assert isinstance(response, ParsedResponse)
    assert response.parsed == Weather(city="Paris", celsius=18)
    fmt = sent(relay)["text"]["format"]
    assert fmt["type"] == "json_schema" and fmt["name"] == "Weather" and fmt["strict"] is True
    assert fmt["schema"]["additionalProperties"] is False
    assert fmt["schema"]["required"] == ["city", "celsius"]
    with pytest.raises(ValueError, match="not both"):
        await client.responses.create(
            model="m", input="q", text_format=Weather, text={"format": {"type": "text"}}
        )


async def test_a_refusal_or_a_bad_answer_raises_with_the_response(
    client: AsyncClient, relay: respx.MockRouter
) -> None:
    refusal = {**message(""), "content": [{"type": "refusal", "refusal": "I can't."}]}
    relay.post("/responses").mock(
        side_effect=[answer(completed([refusal])), answer(completed([message('{"city": 1}')]))]
    )
    with pytest.raises(RefusalError) as refused:
        await client.responses.create(model="gpt-4o", input="q", text_format=Weather)
    assert refused.value.refusal == "I can't."
    assert isinstance(refused.value.completion, Response)
    with pytest.raises(StructuredOutputError, match="city"):
        await client.responses.create(model="gpt-4o", input="q", text_format=Weather)


async def test_errors_are_typed(client: AsyncClient, relay: respx.MockRouter) -> None:
    error = {"error": {"message": "bad input", "type": "invalid_request_error", "code": None}}
    relay.post("/responses").mock(return_value=answer(error, status=400))
    with pytest.raises(BadRequestError, match="bad input"):
        await client.responses.create(model="gpt-4o", input="q")
    assert client.responses.fallback_reason is None


# -- stored responses -----------------------------------------------------------------------


async def test_retrieve_cancel_delete(client: AsyncClient, relay: respx.MockRouter) -> None:
    relay.get("/responses/resp_1").mock(return_value=answer(completed([message("x")])))
    relay.post("/responses/resp_1/cancel").mock(
        return_value=answer({**envelope(), "status": "cancelled"})
    )
    relay.delete("/responses/resp_1").mock(
        return_value=answer({"id": "resp_1", "object": "response.deleted", "deleted": True})
    )
    assert (await client.responses.retrieve("resp_1")).output_text == "x"
    assert (await client.responses.cancel("resp_1")).status == "cancelled"
    deleted = await client.responses.delete("resp_1")
    assert deleted.deleted and deleted.id == "resp_1"
    with pytest.raises(ValueError, match="response_id"):
        await client.responses.retrieve("../files")
    with pytest.raises(TypeError, match="extra_body"):
        await client.responses.retrieve("resp_1", extra_body={"x": 1})


async def test_input_items_are_read_page_after_page(
    client: AsyncClient, relay: respx.MockRouter
) -> None:
    pages = [
        {
            "object": "list",
            "data": [
                {
                    "id": "msg_a",
                    "type": "message",
                    "role": "user",
                    "content": [{"type": "input_text", "text": "a"}],
                },
                {
                    "id": "msg_b",
                    "type": "message",
                    "role": "user",
                    "content": [{"type": "input_text", "text": "b"}],
                },
            ],
            "first_id": "msg_a",
            "last_id": "msg_b",
            "has_more": True,
        },
        {
            "object": "list",
            "data": [
                {"id": "fco_c", "type": "function_call_output", "call_id": "c", "output": "1"}
            ],
            "first_id": "fco_c",
            "last_id": "fco_c",
            "has_more": False,
        },
    ]
    route = relay.get("/responses/resp_1/input_items").mock(side_effect=[answer(p) for p in pages])
    items = [item async for item in client.responses.input_items("resp_1", limit=2, order="asc")]
    assert [i.id for i in items] == ["msg_a", "msg_b", "fco_c"]
    assert isinstance(items[0], ResponseOutputMessage) and items[0].text == "a"
    assert isinstance(items[2], ResponseFunctionCallOutputItem)
    params = [dict(c.request.url.params) for c in route.calls]
    assert params == [
        {"limit": "2", "order": "asc"},
        {"limit": "2", "order": "asc", "after": "msg_b"},
    ]


# -- background ---------------------------------------------------------------------------


async def test_wait_polls_with_backoff_and_counts_usage_once(
    client: AsyncClient, relay: respx.MockRouter, fake_sleep: FakeSleep
) -> None:
    relay.post("/responses").mock(return_value=answer(envelope(status="queued", background=True)))
    states = ["queued", "in_progress", "in_progress"]
    relay.get("/responses/resp_1").mock(
        side_effect=[answer(envelope(status=s, background=True)) for s in states]
        + [answer(completed([message("done")], background=True))] * 2
    )
    seen: list[str | None] = []
    started = await client.responses.create(model="gpt-4o", input="q", background=True)
    assert started.status == "queued" and client.usage.requests == 0
    final = await client.responses.wait(started, on_progress=lambda r: seen.append(r.status))
    assert final.output_text == "done"
    assert seen == ["queued", "in_progress", "in_progress", "completed"]
    assert fake_sleep.calls == [0.5, 0.75, 1.125]
    assert client.usage.requests == 1 and client.usage.output_tokens == 7
    await client.responses.retrieve("resp_1")  # seen again: not counted again
    assert client.usage.requests == 1


async def test_wait_gives_up_after_its_timeout(
    client: AsyncClient, relay: respx.MockRouter, fake_sleep: FakeSleep
) -> None:
    relay.get("/responses/resp_1").mock(return_value=answer(envelope(status="in_progress")))
    with pytest.raises(ResponseTimeoutError, match="in_progress") as caught:
        await client.responses.wait("resp_1", poll_interval=2, timeout=5)
    assert fake_sleep.calls == [2, 2, 1]
    assert isinstance(caught.value.response, Response)


# -- the chat fallback ----------------------------------------------------------------------

NO_ROUTE = {
    "error": {"message": "Invalid URL (POST /v1/responses)", "type": "invalid_request_error"}
}


@pytest.mark.parametrize("status", [404, 405, 501])
async def test_a_server_without_responses_gets_a_chat_completion(
    client: AsyncClient, relay: respx.MockRouter, status: int
) -> None:
    responses = relay.post("/responses").mock(return_value=answer(NO_ROUTE, status=status))
    chat = relay.post("/chat/completions").mock(
        return_value=answer(chat_completion("Hi from chat", model="gpt-4o"))
    )
    response = await client.responses.create(
        model="gpt-4o", input="Say hi", instructions="Be brief.", max_output_tokens=20
    )
    assert response.output_text == "Hi from chat" and response.status == "completed"
    assert response.request_id == "req_1"
    assert sent(relay) == {
        "model": "gpt-4o",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Say hi"},
        ],
        "max_tokens": 20,
    }
    assert client.responses.fallback_reason == f"POST /responses answered {status}"
    assert client.usage.requests == 1 and client.usage.input_tokens == 9
    # 404 and 405 are final; a 501 is retried as any 5xx first.
    assert responses.call_count == (1 if status < 500 else 1 + client.max_retries)
    # Remembered: the next request goes straight to chat.
    asked = responses.call_count
    await client.responses.create(model="gpt-4o", input="again")
    assert responses.call_count == asked and chat.call_count == 2
    # What needs the server's state is refused at once, naming the field; nothing is sent.
    for field, value in (("previous_response_id", "resp_0"), ("background", True), ("store", True)):
        with pytest.raises(ResponsesNotSupportedError, match=field):
            await client.responses.create(model="gpt-4o", input="x", **{field: value})  # type: ignore[call-overload]
    assert chat.call_count == 2


async def test_a_wrong_model_is_not_a_missing_api(
    client: AsyncClient, relay: respx.MockRouter
) -> None:
    relay.post("/responses").mock(
        return_value=answer(
            {"error": {"message": "The model `gpt-9` does not exist", "code": "model_not_found"}},
            status=404,
        )
    )
    with pytest.raises(NotFoundError, match="gpt-9"):
        await client.responses.create(model="gpt-9", input="x")
    assert client.responses.fallback_reason is None


async def test_a_web_page_instead_of_json_means_no_responses_api(
    client: AsyncClient, relay: respx.MockRouter
) -> None:
    relay.post("/responses").mock(
        return_value=httpx.Response(200, html="<html><title>Relay</title></html>")
    )
    relay.post("/chat/completions").mock(return_value=answer(chat_completion("ok")))
    assert (await client.responses.create(model="gpt-4o", input="x")).output_text == "ok"
    assert client.responses.fallback_reason == "POST /responses answered a web page"


async def test_fallback_tool_round_trip_and_structured_output(
    client: AsyncClient, relay: respx.MockRouter
) -> None:
    client.responses.fallback_reason = "POST /responses answered 404"
    call = {
        "id": "call_1",
        "type": "function",
        "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
    }
    relay.post("/chat/completions").mock(
        side_effect=[
            answer(chat_completion(None, tool_calls=[call], finish="tool_calls")),
            answer(chat_completion('{"city": "Paris", "celsius": 18}')),
        ]
    )
    tools = [{"type": "function", "name": "get_weather", "parameters": {"type": "object"}}]
    history: list[Any] = [{"role": "user", "content": "Weather in Paris?"}]
    first = await client.responses.create(model="gpt-4o", input=history, tools=tools)
    (fc,) = first.function_calls
    assert (fc.call_id, fc.name) == ("call_1", "get_weather")
    history += first.output
    history.append({"type": "function_call_output", "call_id": fc.call_id, "output": "18"})
    second = await client.responses.create(
        model="gpt-4o", input=history, tools=tools, text_format=Weather
    )
    assert second.parsed == Weather(city="Paris", celsius=18)
    body = sent(relay)
    assert body["messages"] == [
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "call_1", "content": "18"},
    ]
    assert body["tools"] == [
        {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}
    ]
    assert body["response_format"]["type"] == "json_schema"
    assert body["response_format"]["json_schema"]["name"] == "Weather"


def test_the_token_estimate_counts_instructions_input_and_the_answer() -> None:
    from holysheep_async.responses._request import estimate

    body = {
        "instructions": "x" * 40,
        "input": [
            {"role": "user", "content": "y" * 40},
            {"type": "function_call_output", "output": "z" * 8},
        ],
        "max_output_tokens": 100,
    }
    assert estimate(body) == (40 + 40 + 16 + 8 + 16) // 4 + 1 + 100
    assert estimate({"input": "abcd"}) == 1 + 1 + 256  # no max_output_tokens: 256 for the answer


async def test_a_tokens_per_minute_limit_sees_the_estimate(relay: respx.MockRouter) -> None:
    relay.post("/responses").mock(return_value=answer(completed([message("x")])))
    async with AsyncClient(api_key="sk-test-key", base_url=BASE, tpm=10_000) as client:
        await client.responses.create(model="gpt-4o", input="q" * 400, max_output_tokens=50)
        stats = client.limiter.stats()
    assert stats.tokens_charged == 400 // 4 + 1 + 50  # the estimate, before the usage came
    assert stats.tokens_refunded > 0  # the answer used 19: the rest went back
