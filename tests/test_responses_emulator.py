"""client.responses against the emulator's /v1/responses, on asyncio and trio: answers,
tool round trips, structured output, background responses (polled, resumed after a
drop), stream faults, cancellation, the chat fallback, and batches of Responses lines."""

from __future__ import annotations

from typing import Any

import anyio
import pytest
from pydantic import BaseModel

from holysheep_async import (
    APIConnectionError,
    AsyncClient,
    ResponseFailedError,
    ResponsesNotSupportedError,
    StreamError,
    StreamIdleTimeout,
)
from holysheep_async.responses import ResponseFunctionToolCall, ResponseReasoningItem
from holysheep_async.testing import Fault, MockServer, response_answer_text

pytestmark = pytest.mark.anyio

TOOLS: list[dict[str, Any]] = [
    {
        "type": "function",
        "name": "get_weather",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    }
]


def since(server: MockServer, start: int) -> list[tuple[str, str, dict[str, str]]]:
    return [(r.method, r.path, r.query) for r in server.requests[start:]]


async def test_create_and_stream_give_the_same_answer(client: AsyncClient) -> None:
    expected = response_answer_text("Say hi")
    response = await client.responses.create(model="gpt-4o", input="Say hi")
    assert response.output_text == expected and response.status == "completed"
    async with client.responses.stream(model="gpt-4o", input="Say hi") as stream:
        text = "".join([t async for t in stream])
    assert text == expected == stream.response.output_text
    assert stream.usage == response.usage
    assert client.usage.requests == 2


async def test_reasoning_summaries_and_typed_items(client: AsyncClient) -> None:
    response = await client.responses.create(
        model="o4-mini", input="Think", reasoning={"effort": "low", "summary": "auto"}
    )
    assert isinstance(response.output[0], ResponseReasoningItem)
    assert response.reasoning_text and response.usage is not None
    assert response.usage.reasoning_tokens > 0
    async with client.responses.stream(
        model="o4-mini", input="Think", reasoning={"effort": "low", "summary": "auto"}
    ) as stream:
        kinds = {e.type async for e in stream.events()}
    assert "response.reasoning_summary_text.delta" in kinds
    assert stream.reasoning == stream.response.reasoning_text == response.reasoning_text


async def test_a_tool_round_trip_with_the_conversation_on_our_side(
    client: AsyncClient, server: MockServer
) -> None:
    history: list[Any] = [{"role": "user", "content": "Weather in Paris?"}]
    first = await client.responses.create(model="gpt-4o", input=history, tools=TOOLS, store=False)
    (call,) = first.function_calls
    assert isinstance(call, ResponseFunctionToolCall) and "city" in call.parsed_arguments()
    history += first.output
    history.append({"type": "function_call_output", "call_id": call.call_id, "output": "18C"})
    async with client.responses.stream(
        model="gpt-4o", input=history, tools=TOOLS, store=False
    ) as stream:
        async for _ in stream:
            pass
    assert stream.response.output_text and not stream.response.function_calls
    assert "previous_response_id" not in server.requests[-1].json()


class Pet(BaseModel):
    name: str
    legs: int


async def test_structured_output_create_and_stream(client: AsyncClient) -> None:
    response = await client.responses.create(model="gpt-4o", input="A pet", text_format=Pet)
    assert isinstance(response.parsed, Pet)
    async with client.responses.stream(model="gpt-4o", input="A pet", text_format=Pet) as stream:
        async for _ in stream:
            pass
    assert stream.parsed == response.parsed


async def test_background_create_wait_input_items_delete(
    client: AsyncClient, server: MockServer
) -> None:
    started = await client.responses.create(model="gpt-4o", input="Later", background=True)
    assert started.status in ("queued", "in_progress") and client.usage.requests == 0
    final = await client.responses.wait(started, poll_interval=0.01)
    assert final.status == "completed" and final.output_text == response_answer_text("Later")
    assert client.usage.requests == 1
    items = [i async for i in client.responses.input_items(final.id)]
    assert [i.type for i in items] == ["message"]
    assert (await client.responses.delete(final.id)).deleted


async def test_cancel_a_background_response(
    client: AsyncClient, server: MockServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(server.options, "background_speed", 0)  # it stays where it is
    started = await client.responses.create(model="gpt-4o", input="Stop me", background=True)
    cancelled = await client.responses.cancel(started.id)
    assert cancelled.status == "cancelled"
    assert (await client.responses.wait(started.id)).status == "cancelled"


async def test_a_dropped_background_stream_resumes_without_a_second_request(
    client: AsyncClient, server: MockServer
) -> None:
    server.inject(Fault("drop", after=8, path="/v1/responses"))
    start = len(server.requests)
    async with client.responses.stream(model="gpt-4o", input="Resume me", background=True) as s:
        texts = [t async for t in s]
    expected = response_answer_text("Resume me")
    assert "".join(texts) == expected == s.response.output_text
    calls = since(server, start)
    assert [c[:2] for c in calls] == [
        ("POST", "/v1/responses"),
        ("GET", f"/v1/responses/{s.id}"),
    ]
    assert calls[1][2] == {"stream": "true", "starting_after": "7"}
    assert s.metrics.resumes == 1 and client.usage.requests == 1


async def test_a_foreground_drop_after_text_raises_with_the_partial_text(
    client: AsyncClient, server: MockServer
) -> None:
    server.inject(Fault("drop", after=8, path="/v1/responses"))
    texts: list[str] = []
    with pytest.raises(APIConnectionError) as caught:
        async with client.responses.stream(model="gpt-4o", input="Drop me") as stream:
            async for text in stream:
                texts.append(text)
    assert texts and caught.value.partial_text == "".join(texts)
    assert response_answer_text("Drop me").startswith("".join(texts))


async def test_a_drop_before_any_text_is_retried(client: AsyncClient, server: MockServer) -> None:
    server.inject(Fault("drop", after=2, path="/v1/responses"))
    async with client.responses.stream(model="gpt-4o", input="Again") as stream:
        text = "".join([t async for t in stream])
    assert text == response_answer_text("Again") and stream.metrics.attempts == 2


@pytest.mark.parametrize(("body", "error"), [(None, StreamError), ("failed", ResponseFailedError)])
async def test_errors_inside_the_stream(
    client: AsyncClient, server: MockServer, body: str | None, error: type[Exception]
) -> None:
    server.inject(
        Fault(
            "error", after=6, code="invalid_prompt", message="no", body=body, path="/v1/responses"
        )
    )
    with pytest.raises(error) as caught:
        async with client.responses.stream(model="gpt-4o", input="Err") as stream:
            async for _ in stream:
                pass
    assert isinstance(caught.value, StreamError) and caught.value.partial_text


async def test_a_stall_is_an_idle_timeout(client: AsyncClient, server: MockServer) -> None:
    server.inject(Fault("stall", after=6, path="/v1/responses"))
    with pytest.raises(StreamIdleTimeout) as caught:
        async with client.responses.stream(model="gpt-4o", input="Stall", idle_timeout=0.3) as s:
            async for _ in s:
                pass
    assert caught.value.partial_text


async def test_a_429_is_retried(client: AsyncClient, server: MockServer) -> None:
    server.inject(Fault("status", status=429, headers={"retry-after": "0"}, path="/v1/responses"))
    response = await client.responses.create(model="gpt-4o", input="Busy")
    assert response.output_text == response_answer_text("Busy")


async def test_leaving_early_closes_the_connection(server: MockServer) -> None:
    async with (
        MockServer(ttft=0.01, itl=0.05, tokens=200) as slow,
        AsyncClient(api_key="k", base_url=slow.base_url) as client,
    ):
        async with client.responses.stream(model="gpt-4o", input="Long") as stream:
            async for _ in stream:
                break
        assert stream.http_response is None
        with anyio.fail_after(10):
            left = await anyio.to_thread.run_sync(slow.wait_connections, 0)
        assert left == 0


@pytest.mark.parametrize("status", [False, 405, 501])
async def test_a_server_without_responses_gets_chat_completions(
    client: AsyncClient, server: MockServer, monkeypatch: pytest.MonkeyPatch, status: Any
) -> None:
    monkeypatch.setitem(server.options, "responses_api", status)
    response = await client.responses.create(model="gpt-4o", input="Hi", instructions="brief")
    assert response.output_text and response.status == "completed"
    async with client.responses.stream(model="gpt-4o", input="Hi") as stream:
        kinds = [e.type async for e in stream.events()]
    assert kinds[0] == "response.created" and kinds[-1] == "response.completed"
    assert stream.fallback and stream.response.output_text == response.output_text
    assert server.requests[-1].path == "/v1/chat/completions"
    with pytest.raises(ResponsesNotSupportedError, match="background"):
        client.responses.stream(model="gpt-4o", input="x", background=True)


async def test_batches_of_responses_lines(
    client: AsyncClient, server: MockServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(server.options, "batch_speed", 100)
    requests = [{"custom_id": f"r{i}", "model": "gpt-4o", "input": f"Q{i}"} for i in range(3)]
    report = await client.batches.run(requests, endpoint="/v1/responses")
    assert report.mode == "batch" and report.succeeded == ["r0", "r1", "r2"]
    assert report.results["r1"].content == response_answer_text("Q1")
    assert report.total_tokens > 0 and report.cost_usd > 0
    monkeypatch.setitem(server.options, "batch_api", False)
    direct = await client.batches.run(requests, endpoint="/v1/responses")
    assert direct.mode == "direct" and direct.results["r2"].content == response_answer_text("Q2")
