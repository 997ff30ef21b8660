"""responses.stream against a server that speaks OpenAI's Responses protocol (respx).

The chat stream's guarantees on the Responses protocol: text in order, typed
events, the final response and its usage; retries from scratch only while
nothing was yielded; typed errors carrying the partial text; an idle
timeout; leaving early closes the connection; a background response resumed
after its last event (no text twice, nothing lost, no second POST); the chat
fallback, streamed.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import anyio
import httpx
import pytest
import respx
from pydantic import BaseModel

from holysheep_async import (
    APIConnectionError,
    AsyncClient,
    IncompleteStreamError,
    ResponseFailedError,
    StreamError,
    StreamIdleTimeout,
)
from holysheep_async.responses import (
    ResponseCompletedEvent,
    ResponseCreatedEvent,
    ResponseFunctionCallArgumentsDeltaEvent,
    ResponseReasoningSummaryTextDeltaEvent,
    ResponseTextDeltaEvent,
)

from .conftest import FakeSleep
from .responses_samples import Events, chat_chunks, completed, message, sse

pytestmark = pytest.mark.anyio

BASE = "https://relay.test/v1"
SSE = {"content-type": "text/event-stream", "x-request-id": "req_s"}


class Body(httpx.AsyncByteStream):
    """A response body: these bytes, then a broken connection, a stall or the end."""

    def __init__(self, data: bytes, then: str = "end") -> None:
        self.data = data
        self.then = then
        self.closed = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        yield self.data
        if self.then == "drop":
            raise httpx.ReadError("connection reset by peer")
        if self.then == "stall":
            await anyio.sleep_forever()

    async def aclose(self) -> None:
        self.closed = True


def streamed(events: list[dict[str, Any]], then: str = "end", named: bool = True) -> httpx.Response:
    return httpx.Response(200, headers=SSE, stream=Body(sse(events, named), then))


@pytest.fixture
def relay() -> Iterator[respx.MockRouter]:
    with respx.mock(base_url=BASE, using="httpx", assert_all_called=False) as router:
        yield router


@pytest.fixture
async def client(relay: respx.MockRouter, fake_sleep: FakeSleep) -> AsyncIterator[AsyncClient]:
    async with AsyncClient(api_key="sk-test-key", base_url=BASE, stream_idle_timeout=5) as c:
        c._requester.sleep = fake_sleep
        yield c


def story(pieces: list[str], **fields: Any) -> Events:
    return Events(**fields).start().text(pieces).complete()


async def test_text_events_and_the_final_response(
    client: AsyncClient, relay: respx.MockRouter
) -> None:
    events = story(["Hel", "lo", "!"])
    route = relay.post("/responses").mock(return_value=streamed(events.events))
    async with client.responses.stream(model="gpt-4o", input="Hi", temperature=0.3) as stream:
        texts = [t async for t in stream]
    assert texts == ["Hel", "lo", "!"] and stream.text == "Hello!"
    assert stream.response.output_text == "Hello!" and stream.response.status == "completed"
    assert stream.response.request_id == "req_s" and stream.request_id == "req_s"
    assert stream.usage is not None and stream.usage.output_tokens == 7
    assert stream.metrics.ttft is not None and stream.metrics.deltas == 3
    assert stream.sequence_number == len(events.events) - 1
    body = json.loads(route.calls[0].request.content)
    assert body == {"model": "gpt-4o", "input": "Hi", "temperature": 0.3, "stream": True}
    assert client.usage.requests == 1 and client.usage.output_tokens == 7


async def test_typed_events_of_tools_and_reasoning(
    client: AsyncClient, relay: respx.MockRouter
) -> None:
    events = Events().start().think(["Plan", "ning"]).call("f", ['{"a"', ": 1}"]).complete()
    relay.post("/responses").mock(return_value=streamed(events.events, named=False))
    async with client.responses.stream(model="o4-mini", input="q", tools=[]) as stream:
        got = [e async for e in stream.events()]
    assert isinstance(got[0], ResponseCreatedEvent)
    assert isinstance(got[-1], ResponseCompletedEvent)
    assert [e.delta for e in got if isinstance(e, ResponseReasoningSummaryTextDeltaEvent)] == [
        "Plan",
        "ning",
    ]
    args = [e.delta for e in got if isinstance(e, ResponseFunctionCallArgumentsDeltaEvent)]
    assert args == ['{"a"', ": 1}"]
    assert [e.sequence_number for e in got] == list(range(len(events.events)))
    assert stream.reasoning == "Planning"
    (call,) = stream.response.function_calls
    assert call.parsed_arguments() == {"a": 1}


@pytest.mark.parametrize("named", [True, False])
async def test_an_error_event_raises_with_the_partial_text(
    client: AsyncClient, relay: respx.MockRouter, named: bool
) -> None:
    events = Events().start().text(["par", "tial"]).events[:6]
    error = {
        "type": "error",
        "code": "invalid_prompt",
        "message": "bad prompt",
        "sequence_number": 6,
    }
    relay.post("/responses").mock(return_value=streamed([*events, error], named=named))
    texts = []
    with pytest.raises(StreamError, match="bad prompt") as caught:
        async with client.responses.stream(model="gpt-4o", input="q") as stream:
            async for text in stream:
                texts.append(text)
    assert texts == ["par", "tial"]
    assert caught.value.partial_text == "partial" and caught.value.code == "invalid_prompt"


async def test_a_failed_response_raises_and_is_not_retried(
    client: AsyncClient, relay: respx.MockRouter
) -> None:
    events = (
        Events()
        .start()
        .complete("response.failed", error={"code": "server_error", "message": "The model crashed"})
    )
    route = relay.post("/responses").mock(return_value=streamed(events.events))
    with pytest.raises(ResponseFailedError, match="crashed") as caught:
        async with client.responses.stream(model="gpt-4o", input="q") as stream:
            async for _ in stream:
                pass
    assert route.call_count == 1
    assert isinstance(caught.value.response, dict) and caught.value.response["status"] == "failed"


async def test_a_drop_before_any_text_is_retried_from_scratch(
    client: AsyncClient, relay: respx.MockRouter
) -> None:
    events = story(["once"]).events
    route = relay.post("/responses").mock(
        side_effect=[streamed(events[:2], then="drop"), streamed(events)]
    )
    async with client.responses.stream(model="gpt-4o", input="q") as stream:
        texts = [t async for t in stream]
    assert texts == ["once"] and route.call_count == 2
    assert stream.response.output_text == "once"


async def test_a_drop_after_text_raises_with_the_partial_text(
    client: AsyncClient, relay: respx.MockRouter
) -> None:
    events = story(["one ", "two"]).events
    route = relay.post("/responses").mock(return_value=streamed(events[:5], then="drop"))
    texts = []
    with pytest.raises(APIConnectionError) as caught:
        async with client.responses.stream(model="gpt-4o", input="q") as stream:
            async for text in stream:
                texts.append(text)
    assert texts == ["one "] and caught.value.partial_text == "one "
    assert route.call_count == 1  # not sent again: the text would come twice


async def test_a_stall_is_an_idle_timeout(client: AsyncClient, relay: respx.MockRouter) -> None:
    events = story(["slow"]).events
    relay.post("/responses").mock(return_value=streamed(events[:5], then="stall"))
    with pytest.raises(StreamIdleTimeout) as caught:
        async with client.responses.stream(model="gpt-4o", input="q", idle_timeout=0.2) as stream:
            async for _ in stream:
                pass
    assert caught.value.partial_text == "slow"


async def test_a_stream_without_its_last_event_is_incomplete(
    client: AsyncClient, relay: respx.MockRouter
) -> None:
    events = story(["cut"]).events[:-1]  # no response.completed
    relay.post("/responses").mock(return_value=streamed(events))
    with pytest.raises(IncompleteStreamError) as caught:
        async with client.responses.stream(model="gpt-4o", input="q") as stream:
            async for _ in stream:
                pass
    assert caught.value.partial_text == "cut"


async def test_leaving_early_closes_the_connection(
    client: AsyncClient, relay: respx.MockRouter
) -> None:
    body = Body(sse(Events().start().text(["a", "b"]).events[:5]), then="stall")
    relay.post("/responses").mock(return_value=httpx.Response(200, headers=SSE, stream=body))
    async with client.responses.stream(model="gpt-4o", input="q") as stream:
        async for _ in stream:
            break
    assert body.closed


async def test_a_background_stream_resumes_after_its_last_event(
    client: AsyncClient, relay: respx.MockRouter
) -> None:
    events = Events(background=True).start("queued").text(["alpha ", "beta ", "gamma"]).complete()
    cut = 6  # created, in_progress, item added, part added, "alpha ", "beta "
    post = relay.post("/responses").mock(return_value=streamed(events.events[:cut], then="drop"))
    seen: list[dict[str, str]] = []

    def rest(request: httpx.Request) -> httpx.Response:
        seen.append(dict(request.url.params))
        after = int(request.url.params["starting_after"])
        # The server replays one event too many: the client still gives each text once.
        return streamed(events.events[after:])

    get = relay.get("/responses/resp_1").mock(side_effect=rest)
    async with client.responses.stream(model="gpt-4o", input="q", background=True) as stream:
        texts = [t async for t in stream]
    assert texts == ["alpha ", "beta ", "gamma"]
    assert post.call_count == 1 and get.call_count == 1
    assert seen == [{"stream": "true", "starting_after": str(cut - 1)}]
    assert stream.response.output_text == "alpha beta gamma"
    assert stream.metrics.resumes == 1
    assert client.usage.requests == 1


async def test_resume_streams_a_response_created_earlier(
    client: AsyncClient, relay: respx.MockRouter
) -> None:
    events = Events(background=True).start().text(["x", "y"]).complete().events
    route = relay.get("/responses/resp_1").mock(return_value=streamed(events[5:]))
    async with client.responses.resume("resp_1", starting_after=4) as stream:
        texts = [t async for t in stream]
    assert texts == ["y"]
    assert dict(route.calls[0].request.url.params) == {"stream": "true", "starting_after": "4"}
    assert stream.response.output_text == "xy"


async def test_a_server_ignoring_stream_true_answers_whole(
    client: AsyncClient, relay: respx.MockRouter
) -> None:
    relay.post("/responses").mock(
        return_value=httpx.Response(200, json=completed([message("all at once")]))
    )
    async with client.responses.stream(model="gpt-4o", input="q") as stream:
        texts = [t async for t in stream]
    assert texts == ["all at once"] and stream.response.output_text == "all at once"


class City(BaseModel):
    name: str


async def test_text_format_parses_at_the_end(client: AsyncClient, relay: respx.MockRouter) -> None:
    relay.post("/responses").mock(return_value=streamed(story(['{"name"', ': "Oslo"}']).events))
    async with client.responses.stream(model="gpt-4o", input="q", text_format=City) as stream:
        with pytest.raises(RuntimeError, match="ended"):
            _ = stream.parsed
        async for _ in stream:
            pass
    assert stream.parsed == City(name="Oslo")


async def test_the_chat_fallback_streams_too(client: AsyncClient, relay: respx.MockRouter) -> None:
    relay.post("/responses").mock(
        return_value=httpx.Response(404, json={"error": {"message": "Not Found"}})
    )
    chunks = "".join(f"data: {json.dumps(c)}\n\n" for c in chat_chunks(["Hi ", "there"]))
    chat = relay.post("/chat/completions").mock(
        return_value=httpx.Response(200, headers=SSE, content=chunks + "data: [DONE]\n\n")
    )
    async with client.responses.stream(model="gpt-4o", input="q", instructions="brief") as stream:
        got = [e async for e in stream.events()]
    texts = [e.delta for e in got if isinstance(e, ResponseTextDeltaEvent)]
    assert texts == ["Hi ", "there"]
    assert isinstance(got[-1], ResponseCompletedEvent)
    assert stream.fallback and stream.response.output_text == "Hi there"
    assert stream.usage is not None and stream.usage.input_tokens == 9
    body = json.loads(chat.calls[0].request.content)
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}
    assert body["messages"][0] == {"role": "system", "content": "brief"}
    assert client.responses.fallback_reason == "POST /responses answered 404"
    # Remembered: the next stream goes straight to chat.
    async with client.responses.stream(model="gpt-4o", input="again") as second:
        assert "".join([t async for t in second]) == "Hi there"
    assert chat.call_count == 2


def test_the_sync_client_creates_streams_and_waits(relay: respx.MockRouter) -> None:
    from holysheep_async import Client

    relay.post("/responses").mock(
        side_effect=[
            httpx.Response(200, json=completed([message("sync hi")])),
            streamed(story(["a", "b"]).events),
            httpx.Response(200, json={**completed([]), "status": "queued"}),
        ]
    )
    relay.get("/responses/resp_1").mock(
        return_value=httpx.Response(200, json=completed([message("late")]))
    )
    with Client(api_key="sk-test-key", base_url=BASE) as client:
        client.async_client._requester.sleep = FakeSleep()
        assert client.responses.create(model="gpt-4o", input="q").output_text == "sync hi"
        with client.responses.stream(model="gpt-4o", input="q") as stream:
            texts = list(stream)
        assert texts == ["a", "b"] and stream.response.output_text == "ab"
        started = client.responses.create(model="gpt-4o", input="q", background=True)
        assert client.responses.wait(started.id).output_text == "late"
        assert client.usage.requests == 3


async def test_a_stream_is_a_span_with_its_first_token(
    client: AsyncClient, relay: respx.MockRouter, telemetry: Any
) -> None:
    relay.post("/responses").mock(return_value=streamed(story(["x", "y"]).events))
    async with client.responses.stream(model="gpt-4o", input="q") as stream:
        async for _ in stream:
            pass
    (span,) = [s for s in telemetry.spans() if s.name == "chat gpt-4o"]
    attrs = dict(span.attributes)
    assert attrs["gen_ai.request.stream"] is True and attrs["holysheep.api"] == "responses"
    assert attrs["gen_ai.response.id"] == "resp_1"
    assert attrs["gen_ai.usage.output_tokens"] == 7
    assert attrs["holysheep.stream.attempts"] == 1
    assert "holysheep.time_to_first_token" in attrs


async def test_a_background_stream_without_event_numbers_is_read_again_not_sent_again(
    client: AsyncClient, relay: respx.MockRouter
) -> None:
    events = Events(background=True).start("queued").text(["a", "b"]).complete().events
    for event in events:
        del event["sequence_number"]  # a relay that drops them
    post = relay.post("/responses").mock(return_value=streamed(events[:3], then="drop"))
    get = relay.get("/responses/resp_1").mock(return_value=streamed(events))
    async with client.responses.stream(model="gpt-4o", input="q", background=True) as stream:
        texts = [t async for t in stream]
    assert texts == ["a", "b"] and stream.response.output_text == "ab"
    assert post.call_count == 1
    assert dict(get.calls[0].request.url.params) == {"stream": "true"}
