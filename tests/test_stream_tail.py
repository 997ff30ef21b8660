"""How a stream ends when its body ends, or breaks, inside an event (issue 13, item 5).

A small socket server on 127.0.0.1 (a thread, so asyncio and trio clients can
both use it) sends a chat stream and then stops in the middle of an event, with
each HTTP framing: a chunked body cut off, a ``Content-Length`` body shorter
than declared, and a body that ends when the server closes (a clean end).

After the finish reason, an unfinished last event (the usage chunk) is
discarded, as the SSE standard says: the answer is complete, with a warning,
and ``usage`` is None. Before the finish reason, the same cut raises: the
caller never gets a silently shorter answer.
"""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import threading
from collections.abc import AsyncIterator, Callable, Iterator

import httpx
import pytest

from holysheep_async import APIConnectionError, AsyncClient, IncompleteStreamError

from .conftest import FakeSleep

pytestmark = pytest.mark.anyio

MESSAGES = [{"role": "user", "content": "hi"}]


def event(obj: object) -> bytes:
    return b"data: " + json.dumps(obj).encode() + b"\n\n"


def chunk(content: str | None = None, finish: str | None = None) -> bytes:
    delta = {"content": content} if content is not None else {}
    return event(
        {
            "id": "c1",
            "object": "chat.completion.chunk",
            "model": "m",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        }
    )


USAGE = event(
    {
        "id": "c1",
        "object": "chat.completion.chunk",
        "model": "m",
        "choices": [],
        "usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7},
    }
)
TEXT = chunk("Hello") + chunk(", world")
FINISHED = TEXT + chunk(finish="stop")
# The usage event cut off inside its data line: no line end, no blank line.
CUT_USAGE = USAGE[: len(USAGE) // 2]
# A content event cut off the same way, before any finish reason.
CUT_CONTENT = chunk("never seen")[:30]


def head(framing: str, length: int) -> bytes:
    lines = [b"HTTP/1.1 200 OK", b"content-type: text/event-stream"]
    if framing == "chunked":
        lines.append(b"transfer-encoding: chunked")
    elif framing == "length":
        # Declares more than is sent: the connection breaks before the body's end.
        lines.append(b"content-length: %d" % (length + 100))
    else:
        lines.append(b"connection: close")  # the body ends when the server closes
    return b"\r\n".join(lines) + b"\r\n\r\n"


def answer(framing: str, body: bytes) -> bytes:
    """A response whose body is ``body`` and then stops (cut or, for "close", ends)."""
    if framing == "chunked":
        # Two HTTP chunks; the second is cut off too (declared longer than sent).
        split = len(body) // 2
        first, rest = body[:split], body[split:]
        return (
            head(framing, len(body))
            + b"%x\r\n%b\r\n" % (len(first), first)
            + b"%x\r\n%b" % (len(rest) + 50, rest)
        )
    return head(framing, len(body)) + body


class StreamServer:
    """Answers every request with ``wire`` and closes the connection."""

    def __init__(self, wire: bytes) -> None:
        self.wire = wire
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}/v1"
        self.requests = 0
        self._stop = False
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while True:
            try:
                sock, _ = self.listener.accept()
            except OSError:
                return
            if self._stop:
                sock.close()
                return
            threading.Thread(target=self._run, args=(sock,), daemon=True).start()

    def _run(self, sock: socket.socket) -> None:
        with sock, contextlib.suppress(OSError):
            f = sock.makefile("rb")
            length = 0
            while (line := f.readline()) not in (b"\r\n", b""):
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            f.read(length)
            self.requests += 1
            sock.sendall(self.wire)
            sock.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        self._stop = True
        with contextlib.suppress(OSError):
            socket.create_connection(self.listener.getsockname()).close()
        self._thread.join(5)
        self.listener.close()


@pytest.fixture
def serve() -> Iterator[Callable[[bytes], StreamServer]]:
    servers: list[StreamServer] = []

    def start(wire: bytes) -> StreamServer:
        servers.append(StreamServer(wire))
        return servers[-1]

    yield start
    for srv in servers:
        srv.close()


FRAMINGS = ["chunked", "length", "close"]


@pytest.mark.parametrize("framing", FRAMINGS)
async def test_cut_inside_the_usage_event_after_the_finish_is_complete_with_a_warning(
    serve: Callable[[bytes], StreamServer],
    fake_sleep: FakeSleep,
    caplog: pytest.LogCaptureFixture,
    framing: str,
) -> None:
    srv = serve(answer(framing, FINISHED + CUT_USAGE))
    caplog.set_level(logging.WARNING, logger="holysheep_async")
    async with AsyncClient(api_key="k", base_url=srv.url) as client:
        client._requester.sleep = fake_sleep
        async with client.chat.stream(model="m", messages=MESSAGES) as stream:
            texts = [t async for t in stream]
    assert texts == ["Hello", ", world"]
    assert stream.text == "Hello, world"
    assert stream.finish_reason == "stop"
    assert stream.usage is None  # the unfinished usage event was discarded
    assert stream.done is False
    assert srv.requests == 1, "a complete answer is never asked for again"
    assert fake_sleep.calls == []
    warnings = " ".join(r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING)
    if framing == "close":  # the body ended inside the event: it was looked at, and dropped
        assert "unfinished last event" in warnings
        assert "without 'data: [DONE]' after its finish reason" in warnings
    else:
        assert "the connection broke after the finish reason" in warnings


@pytest.mark.parametrize("framing", FRAMINGS)
async def test_cut_inside_the_usage_event_with_typed_chunks(
    serve: Callable[[bytes], StreamServer], fake_sleep: FakeSleep, framing: str
) -> None:
    srv = serve(answer(framing, FINISHED + CUT_USAGE))
    async with AsyncClient(api_key="k", base_url=srv.url) as client:
        client._requester.sleep = fake_sleep
        async with client.chat.stream(model="m", messages=MESSAGES) as stream:
            chunks = [c async for c in stream.chunks()]
    assert [c.choices[0].finish_reason for c in chunks] == [None, None, "stop"]
    assert stream.usage is None
    assert srv.requests == 1


@pytest.mark.parametrize("framing", ["chunked", "length"])
async def test_broken_inside_an_event_before_the_finish_raises_with_the_partial_text(
    serve: Callable[[bytes], StreamServer], fake_sleep: FakeSleep, framing: str
) -> None:
    srv = serve(answer(framing, TEXT + CUT_CONTENT))
    got: list[str] = []
    async with AsyncClient(api_key="k", base_url=srv.url) as client:
        client._requester.sleep = fake_sleep
        with pytest.raises(APIConnectionError) as info:
            async with client.chat.stream(model="m", messages=MESSAGES) as stream:
                async for text in stream:
                    got.append(text)
    assert got == ["Hello", ", world"]
    assert info.value.partial_text == "Hello, world"
    assert stream.finish_reason is None
    assert srv.requests == 1, "text was yielded: not retried behind the caller's back"


async def test_ending_inside_an_event_before_the_finish_raises_with_the_partial_text(
    serve: Callable[[bytes], StreamServer], fake_sleep: FakeSleep
) -> None:
    # A read-until-close body ends cleanly, in the middle of an event's line.
    srv = serve(answer("close", TEXT + CUT_CONTENT))
    got: list[str] = []
    async with AsyncClient(api_key="k", base_url=srv.url) as client:
        client._requester.sleep = fake_sleep
        with pytest.raises(IncompleteStreamError) as info:
            async with client.chat.stream(model="m", messages=MESSAGES) as stream:
                async for text in stream:
                    got.append(text)
    assert got == ["Hello", ", world"]
    assert info.value.partial_text == "Hello, world"
    assert srv.requests == 1


@pytest.mark.parametrize("framing", FRAMINGS)
async def test_a_whole_last_event_without_its_blank_line(
    serve: Callable[[bytes], StreamServer], fake_sleep: FakeSleep, framing: str
) -> None:
    # The usage event whole but for the blank line after it. A body that ends
    # there was ended by the server: the event is used. A connection that broke
    # there left it unfinished: discarded, as the SSE standard says.
    srv = serve(answer(framing, FINISHED + USAGE.rstrip(b"\n")))
    async with AsyncClient(api_key="k", base_url=srv.url) as client:
        client._requester.sleep = fake_sleep
        async with client.chat.stream(model="m", messages=MESSAGES) as stream:
            assert [t async for t in stream] == ["Hello", ", world"]
    assert stream.finish_reason == "stop"
    if framing == "close":
        assert stream.usage is not None
        assert stream.usage.total_tokens == 7
    else:
        assert stream.usage is None
    assert srv.requests == 1


# -- every cut point ----------------------------------------------------------------------

DONE = b"data: [DONE]\n\n"
WHOLE = FINISHED + USAGE + DONE


class CutBody(httpx.AsyncByteStream):
    """The stream's bytes up to ``cut``, in small reads; then the connection breaks (or ends)."""

    def __init__(self, cut: int, *, breaks: bool) -> None:
        self.cut = cut
        self.breaks = breaks

    async def __aiter__(self) -> AsyncIterator[bytes]:
        data = WHOLE[: self.cut]
        for i in range(0, len(data), 7):
            yield data[i : i + 7]
        if self.breaks:
            raise httpx.RemoteProtocolError("peer closed connection without sending complete body")


@pytest.mark.parametrize("breaks", [True, False], ids=["breaks", "ends"])
async def test_every_cut_point_is_complete_or_raises(fake_sleep: FakeSleep, breaks: bool) -> None:
    """Cut anywhere: complete exactly when the finish reason was received, else an error
    carrying the text received; never a shorter answer presented as complete.

    "Received" differs by how the body stops. A connection that breaks leaves an
    event without its blank line unfinished, and the SSE standard discards it. A
    body that ends cleanly was ended there by the server: a whole last event
    missing only its blank line is used (servers that close after ``data: [DONE]``).
    """
    cut = 0
    # Bytes of the stream that make each event count: up to its blank line, or its line.
    tail = 0 if breaks else 2
    finished_at = len(FINISHED) - tail
    usage_at = len(FINISHED) + len(USAGE) - tail
    done_at = len(WHOLE) - tail

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            200,
            headers={"content-type": "text/event-stream"},
            stream=CutBody(cut, breaks=breaks),
        )

    async with (
        httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http,
        AsyncClient(api_key="k", http_client=http, max_retries=0) as client,
    ):
        for cut in range(len(TEXT), len(WHOLE) + 1):
            got: list[str] = []
            try:
                async with client.chat.stream(model="m", messages=MESSAGES) as stream:
                    async for text in stream:
                        got.append(text)
            except (APIConnectionError, IncompleteStreamError) as exc:
                assert cut < finished_at, f"cut at {cut}: complete answer raised {exc!r}"
                assert isinstance(exc, APIConnectionError if breaks else IncompleteStreamError)
                assert exc.partial_text == "".join(got) == "Hello, world"
                continue
            assert cut >= finished_at, f"cut at {cut}: an unfinished answer passed as complete"
            assert "".join(got) == stream.text == "Hello, world"
            assert stream.finish_reason == "stop"
            assert (stream.usage is not None) == (cut >= usage_at), f"cut at {cut}"
            assert stream.done == (cut >= done_at), f"cut at {cut}"
