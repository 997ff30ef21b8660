"""client.responses against a server that is not ours: the LiteLLM proxy, on asyncio and trio.

``nox -s interop`` (LiteLLM is heavy: see the ``interop`` extra). The proxy runs
in a child process on 127.0.0.1 and serves ``/v1/responses`` in two ways, both
LiteLLM's own code:

- ``relay``: a model group whose backend has the Responses API (our emulator):
  LiteLLM passes each request on and reads every answer and event into its own
  types, then writes them out again (other ids, extra fields, ``data: [DONE]``);
- ``bridge``: a model group whose backend LiteLLM drives by chat completions only
  (``custom_openai/``): LiteLLM turns our Responses request into a chat completion
  and builds the response and its stream events itself.

A third model group's backend has no Responses API (``responses_api=False``):
LiteLLM answers 404, and the client falls back to chat completions through it.

The backends are emulators in this process, so each test also checks what
reached them: what the relay made of our requests.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from pydantic import BaseModel

from holysheep_async import (
    AsyncClient,
    BadRequestError,
    ResponseFailedError,
    ResponsesNotSupportedError,
    StreamError,
)
from holysheep_async.responses import (
    ResponseCompletedEvent,
    ResponseCreatedEvent,
    ResponseFunctionCallArgumentsDeltaEvent,
    ResponseFunctionToolCall,
    ResponseReasoningItem,
    ResponseTextDeltaEvent,
)
from holysheep_async.testing import Fault, MockServer, response_answer_text

from .litellm_proxy import MASTER_KEY, Cutter, LiteLLMProxy, model_entry

pytestmark = [pytest.mark.anyio, pytest.mark.interop]

ROUTES = ["relay", "bridge"]
TOOLS: list[dict[str, Any]] = [
    {
        "type": "function",
        "name": "get_weather",
        "description": "The weather in a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
            "additionalProperties": False,
        },
    }
]


class City(BaseModel):
    name: str
    population: int


class Backends:
    """The emulators behind the proxy: one with the Responses API, one with chat only."""

    def __init__(self) -> None:
        self.full = MockServer(api_keys=["backend-key"])
        self.bare = MockServer(api_keys=["backend-key"], responses_api=False)

    def mark(self) -> tuple[int, int]:
        return len(self.full.requests), len(self.bare.requests)


@pytest.fixture(scope="module")
def backends() -> Iterator[Backends]:
    b = Backends()
    b.full.start()
    b.bare.start()
    yield b
    b.full.stop()
    b.bare.stop()


@pytest.fixture(scope="module")
def proxy(backends: Backends) -> Iterator[LiteLLMProxy]:
    full, bare = backends.full.base_url, backends.bare.base_url
    models = [
        model_entry("relay-gpt-4o", "openai/gpt-4o", full, "backend-key"),
        model_entry("bridge-gpt-4o", "custom_openai/gpt-4o", full, "backend-key"),
        model_entry("bare-gpt-4o", "openai/gpt-4o", bare, "backend-key"),
        model_entry("relay-o3-mini", "openai/o3-mini", full, "backend-key"),
    ]
    p = LiteLLMProxy(models)
    p.start()
    yield p
    p.stop()


@pytest.fixture(scope="module")
def cutter(proxy: LiteLLMProxy) -> Iterator[Cutter]:
    c = Cutter(proxy.port)
    yield c
    c.close()


@pytest.fixture(autouse=True)
def _no_leftover_faults(backends: Backends) -> Iterator[None]:
    yield
    backends.full.clear_faults()
    backends.bare.clear_faults()


@pytest.fixture
async def client(proxy: LiteLLMProxy) -> AsyncIterator[AsyncClient]:
    # A fresh client per test: the chat fallback is remembered per client.
    async with AsyncClient(api_key=MASTER_KEY, base_url=proxy.base_url, timeout=60) as c:
        yield c


def sent(server: MockServer, start: int, path: str) -> list[dict[str, Any]]:
    """The JSON bodies ``server`` received on ``path`` since request number ``start``."""
    return [r.json() for r in server.requests[start:] if r.path == path]


def paths(server: MockServer, start: int) -> list[tuple[str, int | None]]:
    return [(r.path, r.status) for r in server.requests[start:]]


def backend_path(route: str) -> str:
    return "/v1/responses" if route == "relay" else "/v1/chat/completions"


# -- create --------------------------------------------------------------------------------


@pytest.mark.parametrize("route", ROUTES)
async def test_create_answers_and_counts_usage(
    client: AsyncClient, backends: Backends, route: str
) -> None:
    start, _ = backends.mark()
    response = await client.responses.create(
        model=f"{route}-gpt-4o", input="Say hi", instructions="Be brief", max_output_tokens=20
    )
    # The emulator's /v1/responses takes max_output_tokens as a cap (its answer is 16
    # tokens); its chat completions answer exactly max_tokens tokens.
    n = 16 if route == "relay" else 20
    assert response.status == "completed"
    assert response.output_text == response_answer_text("Say hi", n)
    assert response.id.startswith("resp_")
    usage = response.usage
    assert usage is not None and usage.output_tokens == n
    assert client.usage.requests == 1 and client.usage.output_tokens == n
    (body,) = sent(backends.full, start, backend_path(route))
    if route == "relay":
        assert body["input"] == "Say hi" and body["instructions"] == "Be brief"
        assert body["max_output_tokens"] == 20
    else:  # LiteLLM made a chat completion of it
        assert body["messages"][0] == {"role": "system", "content": "Be brief"}
        assert body["messages"][-1]["role"] == "user"
        assert "Say hi" in json.dumps(body["messages"][-1]["content"])
        assert body["max_tokens"] == 20


async def test_an_unknown_model_is_an_error_not_a_fallback(client: AsyncClient) -> None:
    # LiteLLM answers 400 for a model group it does not have (not 404).
    with pytest.raises(BadRequestError, match="nope"):
        await client.responses.create(model="nope", input="Say hi")
    assert client.responses.fallback_reason is None


# -- stream --------------------------------------------------------------------------------


@pytest.mark.parametrize("route", ROUTES)
async def test_stream_deltas_events_and_the_final_response(
    client: AsyncClient, backends: Backends, route: str
) -> None:
    expected = response_answer_text("Say hi")
    async with client.responses.stream(model=f"{route}-gpt-4o", input="Say hi") as stream:
        events = [event async for event in stream.events()]
    # LiteLLM adds a "model" field to every event and ends the stream with data: [DONE],
    # which the Responses protocol does not have: neither may disturb the client.
    assert isinstance(events[0], ResponseCreatedEvent)
    assert isinstance(events[-1], ResponseCompletedEvent)
    deltas = [e.delta for e in events if isinstance(e, ResponseTextDeltaEvent)]
    assert len(deltas) == 16 and "".join(deltas) == expected
    numbers = [e.sequence_number for e in events]
    assert None not in numbers and numbers == sorted(numbers)
    final = stream.response
    assert final.status == "completed" and final.output_text == expected == stream.text
    assert final.id == events[-1].response.id
    assert stream.usage is not None and stream.usage.output_tokens == 16
    assert client.usage.requests == 1 and client.usage.output_tokens == 16

    async with client.responses.stream(model=f"{route}-gpt-4o", input="Say hi") as again:
        text = "".join([t async for t in again])
    assert text == expected


# -- tools ---------------------------------------------------------------------------------


@pytest.mark.parametrize("route", ROUTES)
async def test_a_tool_call_round_trip_without_server_state(
    client: AsyncClient, backends: Backends, route: str
) -> None:
    question = "What is the weather in Paris?"
    first = await client.responses.create(model=f"{route}-gpt-4o", input=question, tools=TOOLS)
    (call,) = [item for item in first.output if isinstance(item, ResponseFunctionToolCall)]
    assert call.name == "get_weather" and call.call_id
    assert set(call.parsed_arguments()) == {"city"}

    start, _ = backends.mark()
    second = await client.responses.create(
        model=f"{route}-gpt-4o",
        input=[
            {"role": "user", "content": question},
            *first.output,  # the call goes back as an input item: no previous_response_id
            {"type": "function_call_output", "call_id": call.call_id, "output": "sunny"},
        ],
        tools=TOOLS,
    )
    assert second.status == "completed" and second.output_text
    assert not [item for item in second.output if isinstance(item, ResponseFunctionToolCall)]
    (body,) = sent(backends.full, start, backend_path(route))
    if route == "relay":
        kinds = [item.get("type", "message") for item in body["input"]]
        assert kinds == ["message", "function_call", "function_call_output"]
        assert body["input"][1]["call_id"] == body["input"][2]["call_id"] == call.call_id
    else:
        assistant, tool = body["messages"][-2:]
        assert assistant["role"] == "assistant"
        assert assistant["tool_calls"][0]["id"] == call.call_id
        assert assistant["tool_calls"][0]["function"]["name"] == "get_weather"
        assert tool == {"role": "tool", "tool_call_id": call.call_id, "content": "sunny"}
        assert "sunny" in second.output_text


@pytest.mark.parametrize("route", ROUTES)
async def test_a_streamed_tool_call(client: AsyncClient, route: str) -> None:
    async with client.responses.stream(
        model=f"{route}-gpt-4o", input="What is the weather in Paris?", tools=TOOLS
    ) as stream:
        events = [event async for event in stream.events()]
    pieces = [e.delta for e in events if isinstance(e, ResponseFunctionCallArgumentsDeltaEvent)]
    (call,) = [i for i in stream.response.output if isinstance(i, ResponseFunctionToolCall)]
    assert pieces and "".join(pieces) == call.arguments
    assert call.name == "get_weather" and set(call.parsed_arguments()) == {"city"}
    assert stream.text == ""


# -- structured output ---------------------------------------------------------------------


@pytest.mark.parametrize("route", ROUTES)
async def test_structured_output(client: AsyncClient, backends: Backends, route: str) -> None:
    start, _ = backends.mark()
    response = await client.responses.create(
        model=f"{route}-gpt-4o", input="Name a city", text_format=City
    )
    assert isinstance(response.parsed, City)
    assert City.model_validate_json(response.output_text) == response.parsed
    (body,) = sent(backends.full, start, backend_path(route))
    if route == "relay":
        schema = body["text"]["format"]
        assert schema["type"] == "json_schema" and schema["strict"] is True
    else:
        schema = body["response_format"]["json_schema"]
        assert body["response_format"]["type"] == "json_schema" and schema["strict"] is True
    assert schema["schema"]["required"] == ["name", "population"]

    async with client.responses.stream(
        model=f"{route}-gpt-4o", input="Name a city", text_format=City
    ) as stream:
        async for _ in stream:
            pass
    assert stream.parsed == response.parsed


# -- reasoning -----------------------------------------------------------------------------


async def test_reasoning_summaries_pass_the_relay(client: AsyncClient) -> None:
    response = await client.responses.create(
        model="relay-o3-mini", input="Think", reasoning={"effort": "low", "summary": "auto"}
    )
    reasoning = [i for i in response.output if isinstance(i, ResponseReasoningItem)]
    assert reasoning and reasoning[0].summary and reasoning[0].summary[0].text
    assert response.usage is not None and response.usage.reasoning_tokens > 0
    async with client.responses.stream(
        model="relay-o3-mini", input="Think", reasoning={"effort": "low", "summary": "auto"}
    ) as stream:
        text = "".join([t async for t in stream])
    assert text == response.output_text
    assert stream.reasoning == reasoning[0].summary[0].text


# -- stored and background responses (relay) ---------------------------------------------


async def test_retrieve_and_delete_through_the_relay(client: AsyncClient) -> None:
    created = await client.responses.create(model="relay-gpt-4o", input="Say hi", store=True)
    got = await client.responses.retrieve(created.id)
    assert got.output_text == created.output_text and got.status == "completed"
    deleted = await client.responses.delete(created.id)
    assert deleted.deleted is True
    assert client.usage.requests == 1  # a retrieve of a foreground response counts nothing


async def test_input_items_and_cancel_through_the_relay(
    client: AsyncClient, backends: Backends
) -> None:
    created = await client.responses.create(model="relay-gpt-4o", input="Say hi")
    items = [item async for item in client.responses.input_items(created.id)]
    assert [(i.type, i.role) for i in items] == [("message", "user")]  # type: ignore[union-attr]
    backends.full.options["background_speed"] = 1  # one event per retrieve: still running
    try:
        started = await client.responses.create(
            model="relay-gpt-4o", input="Say hi", background=True
        )
        cancelled = await client.responses.cancel(started.id)
    finally:
        backends.full.options["background_speed"] = None
    assert cancelled.status == "cancelled"
    assert client.usage.requests == 1  # the foreground one; a cancelled one used nothing here


async def test_a_background_response_is_counted_once(
    client: AsyncClient, backends: Backends
) -> None:
    # LiteLLM encodes its routing in the response id, differently each time it writes
    # one: the response polled here comes back under another id than the one created.
    started = await client.responses.create(model="relay-gpt-4o", input="Say hi", background=True)
    assert started.status in ("queued", "in_progress")
    assert client.usage.requests == 0
    backends.full.advance_responses(1000)
    done = await client.responses.wait(started.id, poll_interval=0.01, timeout=30)
    assert done.status == "completed" and done.output_text == response_answer_text("Say hi")
    assert client.usage.requests == 1 and client.usage.output_tokens == 16
    await client.responses.retrieve(started.id)
    await client.responses.retrieve(done.id)
    assert client.usage.requests == 1


async def test_a_background_stream_cut_midway_resumes_through_the_relay(
    cutter: Cutter, backends: Backends
) -> None:
    # The connection between client and proxy breaks after the fifth text delta. The
    # client resumes with GET /responses/{id}?stream=true&starting_after=N, which LiteLLM
    # answers with the whole response as JSON, not as the events after N: the client
    # gives the rest of the text, none of it twice, and sends nothing to be answered again.
    async with AsyncClient(api_key=MASTER_KEY, base_url=cutter.base_url, timeout=60) as client:
        client._requester.sleep = _no_sleep
        start, _ = backends.mark()
        cuts = cutter.cuts
        cutter.arm(b'"response.output_text.delta"', 5)
        async with client.responses.stream(
            model="relay-gpt-4o", input="Say hi", background=True
        ) as stream:
            texts = [t async for t in stream]
    assert cutter.cuts == cuts + 1 and stream.metrics.resumes == 1
    assert len(texts) > 5 and "".join(texts) == response_answer_text("Say hi")
    assert stream.response.output_text == "".join(texts)
    sent_on = [(r.method, r.path) for r in backends.full.requests[start:]]
    assert sent_on.count(("POST", "/v1/responses")) == 1
    assert [m for m, _ in sent_on] == ["POST", "GET"]
    assert client.usage.requests == 1


async def test_resuming_an_unfinished_response_through_the_relay_says_to_wait(
    client: AsyncClient, backends: Backends
) -> None:
    backends.full.options["background_speed"] = 1  # one event per retrieve
    try:
        started = await client.responses.create(
            model="relay-gpt-4o", input="Say hi", background=True
        )
        with pytest.raises(StreamError, match=r"instead of an event stream") as info:
            async with client.responses.resume(started.id) as stream:
                async for _ in stream:
                    pass
        assert "client.responses.wait(" in str(info.value)
    finally:
        backends.full.options["background_speed"] = None
    backends.full.advance_responses(1000)
    done = await client.responses.wait(started.id, poll_interval=0.01, timeout=30)
    assert done.status == "completed" and client.usage.requests == 1


async def test_the_bridge_answers_background_in_the_foreground(client: AsyncClient) -> None:
    # LiteLLM's chat bridge has no background mode: it answers at once, completed.
    response = await client.responses.create(
        model="bridge-gpt-4o", input="Say hi", background=True
    )
    assert response.status == "completed"
    assert response.output_text == response_answer_text("Say hi")
    assert client.usage.requests == 1


# -- faults behind the relay ---------------------------------------------------------------


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize("status", [500, 503, 429])
async def test_a_backend_error_status_is_relayed_and_retried(
    client: AsyncClient, backends: Backends, route: str, status: int
) -> None:
    client._requester.sleep = _no_sleep
    start, _ = backends.mark()
    backends.full.inject(Fault("status", status=status, headers={"retry-after": "0"}))
    async with client.responses.stream(model=f"{route}-gpt-4o", input="Say hi") as stream:
        text = "".join([t async for t in stream])
    assert text == response_answer_text("Say hi")
    assert [s for _, s in paths(backends.full, start)] == [status, 200]
    assert client.usage.requests == 1


@pytest.mark.parametrize("route", ROUTES)
async def test_an_error_mid_stream_fails_the_response_once(
    client: AsyncClient, backends: Backends, route: str
) -> None:
    # The backend sends an error event after 6 deltas; LiteLLM ends our stream with
    # response.failed (HTTP 200). The client raises it typed, with the text it had
    # yielded, and sends nothing again (a failed response is final).
    start, _ = backends.mark()
    backends.full.inject(Fault("error", after=6, message="The backend is overloaded"))
    got: list[str] = []
    with pytest.raises(ResponseFailedError) as info:
        async with client.responses.stream(model=f"{route}-gpt-4o", input="Say hi") as stream:
            async for text in stream:
                got.append(text)
    assert "overloaded" in str(info.value)
    assert info.value.partial_text == "".join(got) == stream.text
    assert response_answer_text("Say hi").startswith("".join(got))
    assert len(paths(backends.full, start)) == 1


async def _no_sleep(seconds: float) -> None:
    return None


# -- the chat fallback: a backend without the Responses API behind the relay --------------


async def test_the_relay_404_falls_back_to_chat_completions(
    client: AsyncClient, backends: Backends
) -> None:
    # LiteLLM's 404 names the model group ("model group 'bare-gpt-4o' failed") beside the
    # backend's "Invalid URL (POST /v1/responses)": it is the route that is missing.
    _, start = backends.mark()
    response = await client.responses.create(
        model="bare-gpt-4o", input="Say hi", instructions="Be brief"
    )
    assert client.responses.fallback_reason == "POST /responses answered 404"
    assert response.status == "completed"
    assert response.output_text == response_answer_text("Say hi")
    assert paths(backends.bare, start) == [("/v1/responses", 404), ("/v1/chat/completions", 200)]
    (body,) = sent(backends.bare, start, "/v1/chat/completions")
    assert body["messages"][0] == {"role": "system", "content": "Be brief"}

    _, start = backends.mark()
    async with client.responses.stream(model="bare-gpt-4o", input="Say hi") as stream:
        events = [event async for event in stream.events()]
    assert stream.fallback and stream.response.output_text == response.output_text
    assert isinstance(events[0], ResponseCreatedEvent)
    assert isinstance(events[-1], ResponseCompletedEvent)
    assert paths(backends.bare, start) == [("/v1/chat/completions", 200)]  # remembered
    assert client.usage.requests == 2

    with pytest.raises(ResponsesNotSupportedError) as info:
        await client.responses.create(
            model="bare-gpt-4o", input="And again", previous_response_id=response.id
        )
    assert info.value.field == "previous_response_id"
    assert len(backends.bare.requests) == start + 1  # nothing sent


async def test_a_tool_round_trip_through_the_fallback(
    client: AsyncClient, backends: Backends
) -> None:
    question = "What is the weather in Paris?"
    async with client.responses.stream(model="bare-gpt-4o", input=question, tools=TOOLS) as s:
        async for _ in s:
            pass
    assert s.fallback
    (call,) = [i for i in s.response.output if isinstance(i, ResponseFunctionToolCall)]
    _, start = backends.mark()
    answer = await client.responses.create(
        model="bare-gpt-4o",
        input=[
            {"role": "user", "content": question},
            *s.response.output,
            {"type": "function_call_output", "call_id": call.call_id, "output": "sunny"},
        ],
        tools=TOOLS,
    )
    assert "sunny" in answer.output_text
    (body,) = sent(backends.bare, start, "/v1/chat/completions")
    tool = {"role": "tool", "tool_call_id": call.call_id, "content": "sunny"}
    assert body["messages"][-1] == tool
