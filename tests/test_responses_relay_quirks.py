"""What a real relay (LiteLLM's proxy, 1.108) answered to client.responses, replayed (respx).

``tests/test_responses_interop.py`` runs the client against the proxy itself
(``nox -s interop``); these tests keep what it found in the default suite, with
the proxy's answers as it sent them (long ids shortened):

- its 404 for a backend without ``/v1/responses`` names the model group as well
  as the missing route: still no Responses API, so the chat fallback;
- its chat bridge writes ``null`` where OpenAI writes objects (``usage`` details,
  ``reasoning``, ``truncation``), ``text: {}``, and every stream event carries an
  extra ``model`` and the stream ends with ``data: [DONE]``;
- it encodes its routing in response ids, differently each time it writes one:
  a background response polled comes back under another id than it was created;
- ``GET /responses/{id}?stream=true`` answers the response object as JSON, not a
  stream: a resumed background stream must give no text twice, and an unfinished
  response is an error that says what to do.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
import respx

from holysheep_async import AsyncClient, StreamError
from holysheep_async.responses import ResponseCompletedEvent, ResponseTextDeltaEvent

from .conftest import FakeSleep
from .responses_samples import Events, chat_completion, completed, message, sse, usage

pytestmark = pytest.mark.anyio

BASE = "https://litellm.test/v1"
SSE = {"content-type": "text/event-stream"}

# LiteLLM's 404 when the model group's backend has no /v1/responses (verbatim).
LITELLM_404 = {
    "error": {
        "message": 'litellm.BadRequestError: OpenAIException - {"error":{"message":"Invalid URL'
        ' (POST /v1/responses)","type":"invalid_request_error","param":null,"code":"not_found"'
        "}}\n\nLiteLLM: model group 'bare-gpt-4o' failed with the error above. No fallback was"
        " attempted.",
        "type": "invalid_request_error",
        "param": None,
        "code": "404",
    }
}

# The chat bridge's (custom_openai/) answer to {"input": "Say hi", "max_output_tokens": 3}.
BRIDGE_RESPONSE: dict[str, Any] = {
    "id": "resp_ScAIMFaOJRwEDKXUtsA-BtH_SAm8qX_dALeQU7P4mC-8rWkh3GYl0nnqhpOep_z1JKYBpOvj3j6R6",
    "created_at": 1796662812,
    "error": None,
    "incomplete_details": None,
    "instructions": None,
    "metadata": {},
    "model": "bridge-gpt-4o",
    "object": "response",
    "output": [
        {
            "type": "message",
            "id": "msg_91641d23-c764-4195-8e5b-93462999db3c",
            "status": "completed",
            "role": "assistant",
            "content": [{"type": "output_text", "text": "Report each cloud", "annotations": []}],
            "phase": None,
        }
    ],
    "parallel_tool_calls": False,
    "temperature": None,
    "tool_choice": "auto",
    "tools": [],
    "top_p": None,
    "max_output_tokens": 3,
    "previous_response_id": None,
    "reasoning": None,
    "status": "completed",
    "text": {},
    "truncation": None,
    "usage": {
        "input_tokens": 2,
        "input_tokens_details": None,
        "output_tokens": 3,
        "output_tokens_details": None,
        "total_tokens": 5,
        "cost": None,
    },
    "user": None,
    "store": None,
}


class Body(httpx.AsyncByteStream):
    """These bytes, then a broken connection (``drop``) or the end."""

    def __init__(self, data: bytes, drop: bool = False) -> None:
        self.data = data
        self.drop = drop

    async def __aiter__(self) -> AsyncIterator[bytes]:
        yield self.data
        if self.drop:
            raise httpx.ReadError("connection reset by peer")


def litellm_sse(events: list[dict[str, Any]], model: str = "bridge-gpt-4o") -> bytes:
    """Events as LiteLLM writes them: no ``event:`` line, a ``model`` field, ``[DONE]``."""
    return sse([{**e, "model": model} for e in events], named=False) + b"data: [DONE]\n\n"


@pytest.fixture
def relay() -> Iterator[respx.MockRouter]:
    with respx.mock(base_url=BASE, using="httpx", assert_all_called=False) as router:
        yield router


@pytest.fixture
async def client(relay: respx.MockRouter, fake_sleep: FakeSleep) -> AsyncIterator[AsyncClient]:
    async with AsyncClient(api_key="sk-test-key", base_url=BASE) as c:
        c._requester.sleep = fake_sleep
        yield c


async def test_a_404_naming_the_model_group_and_the_route_falls_back(
    client: AsyncClient, relay: respx.MockRouter
) -> None:
    relay.post("/responses").mock(return_value=httpx.Response(404, json=LITELLM_404))
    chat = relay.post("/chat/completions").mock(
        return_value=httpx.Response(200, json=chat_completion("Hi there"))
    )
    response = await client.responses.create(model="bare-gpt-4o", input="Say hi")
    assert client.responses.fallback_reason == "POST /responses answered 404"
    assert response.output_text == "Hi there" and chat.call_count == 1


async def test_a_404_for_an_unknown_model_is_still_raised(
    client: AsyncClient, relay: respx.MockRouter
) -> None:
    body = {"error": {"message": "The model `gpt-9` does not exist", "type": "invalid_request"}}
    relay.post("/responses").mock(return_value=httpx.Response(404, json=body))
    with pytest.raises(Exception, match="gpt-9"):
        await client.responses.create(model="gpt-9", input="Say hi")
    assert client.responses.fallback_reason is None


async def test_the_bridges_nulls_and_empty_objects_are_read(
    client: AsyncClient, relay: respx.MockRouter
) -> None:
    relay.post("/responses").mock(return_value=httpx.Response(200, json=BRIDGE_RESPONSE))
    response = await client.responses.create(model="bridge-gpt-4o", input="Say hi")
    assert response.output_text == "Report each cloud" and response.status == "completed"
    assert response.usage is not None and response.usage.output_tokens == 3
    assert response.usage.reasoning_tokens == 0 and response.usage.cached_tokens == 0
    assert client.usage.requests == 1 and client.usage.output_tokens == 3


async def test_the_bridges_stream_with_model_fields_and_done(
    client: AsyncClient, relay: respx.MockRouter
) -> None:
    events = Events(rid="resp_b").start().text(["Report", " each", " cloud"]).complete().events
    relay.post("/responses").mock(
        return_value=httpx.Response(200, headers=SSE, content=litellm_sse(events))
    )
    async with client.responses.stream(model="bridge-gpt-4o", input="Say hi") as stream:
        got = [event async for event in stream.events()]
    assert isinstance(got[-1], ResponseCompletedEvent)
    assert [e.delta for e in got if isinstance(e, ResponseTextDeltaEvent)] == [
        "Report",
        " each",
        " cloud",
    ]
    assert stream.response.output_text == "Report each cloud"


async def test_a_background_response_polled_under_another_id_is_counted_once(
    client: AsyncClient, relay: respx.MockRouter
) -> None:
    queued = completed([], rid="resp_AAAA")
    queued.update(status="queued", usage=None, background=True)
    relay.post("/responses").mock(return_value=httpx.Response(200, json=queued))
    done = completed([message("Hi")], rid="resp_BBBB", usage=usage(5, 9))  # re-encoded id
    relay.get("/responses/resp_AAAA").mock(return_value=httpx.Response(200, json=done))
    relay.get("/responses/resp_BBBB").mock(return_value=httpx.Response(200, json=done))
    started = await client.responses.create(model="gpt-4o", input="q", background=True)
    assert client.usage.requests == 0
    final = await client.responses.wait(started.id)
    assert final.id == "resp_BBBB" and final.output_text == "Hi"
    assert client.usage.requests == 1 and client.usage.output_tokens == 9
    await client.responses.retrieve("resp_AAAA")
    await client.responses.retrieve("resp_BBBB")
    assert client.usage.requests == 1


async def test_a_resumed_stream_answered_whole_gives_no_text_twice(
    client: AsyncClient, relay: respx.MockRouter
) -> None:
    events = Events(background=True).start("queued").text(["alpha ", "beta ", "gamma"]).complete()
    cut = 6  # created, in_progress, item added, part added, "alpha ", "beta "
    relay.post("/responses").mock(
        return_value=httpx.Response(200, headers=SSE, stream=Body(sse(events.events[:cut]), True))
    )
    get = relay.get("/responses/resp_1").mock(
        return_value=httpx.Response(200, json=events.final())  # JSON, stream=true ignored
    )
    async with client.responses.stream(model="gpt-4o", input="q", background=True) as stream:
        texts = [t async for t in stream]
    assert texts == ["alpha ", "beta ", "gamma"]
    assert dict(get.calls[0].request.url.params) == {"stream": "true", "starting_after": "5"}
    assert stream.response.output_text == "alpha beta gamma" and stream.response.id == "resp_1"
    assert client.usage.requests == 1


async def test_a_resumed_stream_answered_with_other_text_is_an_error(
    client: AsyncClient, relay: respx.MockRouter
) -> None:
    events = Events(background=True).start("queued").text(["alpha ", "beta "]).complete()
    relay.post("/responses").mock(
        return_value=httpx.Response(200, headers=SSE, stream=Body(sse(events.events[:5]), True))
    )
    other = completed([message("something else")])
    relay.get("/responses/resp_1").mock(return_value=httpx.Response(200, json=other))
    texts: list[str] = []
    with pytest.raises(StreamError, match="does not go on from the text given") as info:
        async with client.responses.stream(model="gpt-4o", input="q", background=True) as s:
            async for text in s:
                texts.append(text)
    assert texts == ["alpha "] and info.value.partial_text == "alpha "


@pytest.mark.parametrize("status", ["queued", "in_progress"])
async def test_a_stream_answered_with_an_unfinished_response_says_to_wait(
    client: AsyncClient, relay: respx.MockRouter, status: str
) -> None:
    unfinished = completed([], rid="resp_1")
    unfinished.update(status=status, usage=None)
    relay.get("/responses/resp_1").mock(return_value=httpx.Response(200, json=unfinished))
    with pytest.raises(StreamError) as info:
        async with client.responses.resume("resp_1") as stream:
            async for _ in stream:
                pass
    message_ = str(info.value)
    assert f"status {status}" in message_ and "client.responses.wait('resp_1')" in message_
    assert json.loads(str(info.value.body))["status"] == status
