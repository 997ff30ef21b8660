"""The transport behind real infrastructure (issue 13): servers and load balancers that
close idle connections, answer before the request body is sent, or end lines in a bare LF.

Small scripted servers on 127.0.0.1 (threads, so both asyncio and trio clients use them).
Nothing here sleeps to order events: a server closes an idle connection when the test
tells it to, and the test waits for that close before the client sends again.
"""

from __future__ import annotations

import contextlib
import json
import random
import socket
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import anyio
import httpx
import pytest

from holysheep_async import AsyncClient
from holysheep_async._transport import NO_RESEND, ChunkedDecoder, Transport
from holysheep_async.errors import APIConnectionError, APIStatusError, AuthenticationError

from .rawserver import Conn, RawServer, chunked, ok, serve_all, transport_of

pytestmark = pytest.mark.anyio


@pytest.fixture
def raw() -> Iterator[Callable[..., RawServer]]:
    servers: list[RawServer] = []

    def start(handler: Callable[[Conn], None], **kw: object) -> RawServer:
        srv = RawServer(handler, **kw)  # type: ignore[arg-type]
        servers.append(srv)
        return srv

    yield start
    for srv in servers:
        srv.close()


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=Transport(), timeout=10) as c:
        yield c


async def _no_sleep(seconds: float) -> None:
    """The client's retry backoff, made instant (a retry still shows in the server's log)."""


# -- a batch API that closes idle connections ---------------------------------------------


class BatchServer:
    """``POST /v1/batches`` and ``GET /v1/batches`` on keep-alive connections.

    ``after_each``: close every connection right after its answer, without
    ``Connection: close`` (as some relays do). Otherwise a connection stays open
    until :meth:`close_idle` (a keep-alive timeout running out, on the test's cue).
    """

    def __init__(self, *, after_each: bool = False) -> None:
        self.after_each = after_each
        self.log: list[tuple[str, dict[str, object]]] = []
        self.open: set[socket.socket] = set()
        self.lock = threading.Lock()
        self.closes = threading.Semaphore(0)
        self.raw = RawServer(self._handle)

    @property
    def url(self) -> str:
        return self.raw.url + "/v1"

    def _handle(self, conn: Conn) -> None:
        with self.lock:
            self.open.add(conn.sock)
        try:
            while (req := conn.read_request()) is not None:
                line, _, body = req
                method, path, _ = line.split(" ")
                self.log.append((f"{method} {path}", json.loads(body) if body else {}))
                if method == "POST":
                    data = json.loads(body)
                    answer = {
                        "id": f"batch_{len(self.log)}",
                        "object": "batch",
                        "status": "validating",
                        "input_file_id": data["input_file_id"],
                        "created_at": 1,
                        "metadata": data.get("metadata"),
                    }
                else:
                    answer = {"object": "list", "data": [], "has_more": False}
                payload = json.dumps(answer).encode()
                conn.send(ok(payload, b"content-type: application/json\r\n"))
                if self.after_each:
                    return
        finally:
            with self.lock:
                self.open.discard(conn.sock)
            conn.file.close()  # the socket closes (FIN) only once its file is closed too
            conn.sock.close()
            self.closes.release()

    def close_idle(self) -> int:
        """Close every open connection (all idle: the client is between requests)."""
        with self.lock:
            socks = list(self.open)
        for sock in socks:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        return len(socks)

    async def wait_closed(self, n: int = 1) -> None:
        for _ in range(n):
            await anyio.to_thread.run_sync(self.closes.acquire)

    def creates(self) -> list[str]:
        return [str(body["input_file_id"]) for what, body in self.log if what == "POST /v1/batches"]

    def lookups(self) -> int:
        return sum(1 for what, _ in self.log if what.startswith("GET"))


@pytest.fixture
def batch_server() -> Iterator[Callable[..., BatchServer]]:
    servers: list[BatchServer] = []

    def start(**kw: bool) -> BatchServer:
        srv = BatchServer(**kw)
        servers.append(srv)
        return srv

    yield start
    for srv in servers:
        srv.close_idle()
        srv.raw.close()


@contextlib.asynccontextmanager
async def batch_client(url: str) -> AsyncIterator[AsyncClient]:
    async with AsyncClient(api_key="test-key", base_url=url) as client:
        client._requester.sleep = _no_sleep
        yield client


async def test_batch_creates_against_a_server_closing_idle_connections(batch_server) -> None:
    # The "done when": a server that closes idle connections after 1 s, 100
    # creates spaced 0.5-1.5 s apart. Here the gaps are drawn, and a gap over 1 s is
    # the server closing the idle connection (on the test's cue) before the next create.
    srv = batch_server()
    rng = random.Random(13)
    closed = 0
    async with batch_client(srv.url) as client:
        for i in range(100):
            if rng.uniform(0.5, 1.5) > 1.0 and srv.close_idle():
                closed += 1
                await srv.wait_closed()
            batch = await client.batches.create(f"file-{i}")
            assert batch.input_file_id == f"file-{i}"
    assert 30 < closed < 70
    assert srv.creates() == [f"file-{i}" for i in range(100)], "each create once, first try"
    assert srv.lookups() == 0, "no create failed (a failed one is looked up before a retry)"
    assert srv.raw.accepted == 1 + closed, "a live connection is reused, a closed one is not"


async def test_batch_creates_against_a_server_closing_after_every_answer(batch_server) -> None:
    # No "Connection: close": the server just closes after answering. The client
    # finds the idle connection closed and sends the next create on a new one.
    srv = batch_server(after_each=True)
    async with batch_client(srv.url) as client:
        for i in range(20):
            await client.batches.create(f"file-{i}")
            await srv.wait_closed()
    assert srv.creates() == [f"file-{i}" for i in range(20)]
    assert srv.lookups() == 0
    assert srv.raw.accepted == 20


async def test_no_resend_post_goes_out_on_a_live_connection(raw, http) -> None:
    # The transport alone: a request that must not be sent twice is not refused
    # because an idle connection died; it goes out once, on a new connection.
    reqs: list[tuple[str, dict[str, str], bytes]] = []

    def handler(conn: Conn) -> None:  # one answer per connection, then close (no header)
        if (req := conn.read_request()) is not None:
            reqs.append(req)
            conn.send(ok(b"done"))

    srv = raw(handler)
    for n in range(3):
        r = await http.post(srv.url, json={"n": n}, extensions={NO_RESEND: True})
        assert r.content == b"done"
        await anyio.to_thread.run_sync(srv.closed.wait)
        srv.closed.clear()
    assert [r[2] for r in reqs] == [b'{"n":0}', b'{"n":1}', b'{"n":2}']
    assert srv.accepted == 3


async def test_an_idle_connection_with_unasked_bytes_is_not_reused(raw, http) -> None:
    # A server that says something on an idle connection (a 408 before it closes,
    # or a stray answer) has left it out of step: the next request must not take
    # those bytes for its answer.
    go, sent_408 = threading.Event(), threading.Event()
    reqs: list[tuple[str, dict[str, str], bytes]] = []

    def handler(conn: Conn) -> None:
        while (req := conn.read_request()) is not None:
            reqs.append(req)
            conn.send(ok(b"answer %d" % len(reqs)))
            if len(reqs) == 1:  # once the client has its answer, on the idle connection:
                go.wait(10)
                conn.send(b"HTTP/1.1 408 Request Timeout\r\ncontent-length: 0\r\n\r\n")
                sent_408.set()

    srv = raw(handler)
    assert (await http.get(srv.url)).content == b"answer 1"
    go.set()
    await anyio.to_thread.run_sync(sent_408.wait)
    r = await http.get(srv.url)
    assert (r.status_code, r.content) == (200, b"answer 2")
    assert srv.accepted == 2


async def test_pool_check_on_a_live_idle_connection_keeps_it(raw, http) -> None:
    reqs: list[tuple[str, dict[str, str], bytes]] = []
    srv = raw(serve_all(reqs, ok(b"x")))
    for _ in range(5):
        assert (await http.get(srv.url)).content == b"x"
    assert srv.accepted == 1
    assert transport_of(http).stats().opened == 1


# -- an early answer: the server answers before the whole request body was sent --------


def early_answer(status: int, reason: bytes) -> Callable[[Conn], None]:
    """A handler that reads the request head only, answers ``status`` and closes."""

    def handler(conn: Conn) -> None:
        while conn.file.readline() not in (b"\r\n", b""):
            pass
        body = json.dumps({"error": {"message": reason.decode(), "type": "x"}}).encode()
        conn.send(
            b"HTTP/1.1 %d %b\r\ncontent-type: application/json\r\ncontent-length: %d\r\n"
            b"connection: close\r\n\r\n%b" % (status, reason, len(body), body)
        )

    return handler


BIG = 16 * 1024 * 1024  # far more than the socket buffers hold


async def test_early_413_is_returned_not_a_write_error(raw, http) -> None:
    srv = raw(early_answer(413, b"Payload Too Large"))
    r = await http.post(srv.url, content=b"x" * BIG)
    assert r.status_code == 413 and b"Payload Too Large" in r.content
    assert transport_of(http).stats().idle == 0, "the connection is not reused"
    # A streamed body (what a multipart upload is) too.

    async def parts() -> AsyncIterator[bytes]:
        for _ in range(BIG // 65536):
            yield b"y" * 65536

    r = await http.post(srv.url, content=parts())
    assert r.status_code == 413
    assert srv.accepted == 2


@pytest.mark.parametrize(
    ("status", "error"), [(413, APIStatusError), (401, AuthenticationError)], ids=["413", "401"]
)
async def test_early_answer_to_an_upload_is_the_typed_error_and_not_uploaded_again(
    raw, tmp_path: Path, status: int, error: type[Exception]
) -> None:
    srv = raw(early_answer(status, b"Payload Too Large" if status == 413 else b"Bad key"))
    path = tmp_path / "big.jsonl"
    line = json.dumps({"custom_id": "x", "method": "POST", "url": "/v1/chat/completions"})
    path.write_text((line + "\n") * (BIG // len(line)))
    async with batch_client(srv.url + "/v1") as client:
        with pytest.raises(error) as caught:
            await client.batches.upload(path)
    assert isinstance(caught.value, APIStatusError) and caught.value.status_code == status
    assert srv.accepted == 1, "uploaded once, not again on a retry"


async def test_a_write_error_without_an_answer_is_still_a_write_error(raw, http) -> None:
    def handler(conn: Conn) -> None:  # takes the head, then closes without a word
        while conn.file.readline() not in (b"\r\n", b""):
            pass

    srv = raw(handler)
    with pytest.raises((httpx.WriteError, httpx.RemoteProtocolError, httpx.ReadError)):
        await http.post(srv.url, content=b"x" * BIG)


# -- bare-LF response heads (RFC 9112 section 2.2) ----------------------------------------


@pytest.mark.parametrize(
    "answer",
    [
        b"HTTP/1.1 200 OK\ncontent-length: 2\nx-a: 1\n\nok",
        b"HTTP/1.1 200 OK\r\ncontent-length: 2\nx-a: 1\r\n\nok",
        b"HTTP/1.1 200 OK\ncontent-length: 2\r\nx-a: 1\n\r\nok",
        b"HTTP/1.1 200 OK\ntransfer-encoding: chunked\nx-a: 1\n\n1\no\n1\r\nk\n0\nx-t: 1\n\n",
    ],
    ids=["lf", "mixed", "lf-crlf-end", "chunked"],
)
async def test_bare_lf_heads_and_chunk_lines_are_accepted(raw, http, answer: bytes) -> None:
    srv = raw(serve_all([], answer))
    for _ in range(2):
        with anyio.fail_after(10):  # a guard against a hang, not a timing check
            r = await http.get(srv.url)
        assert (r.status_code, r.content, r.headers["x-a"]) == (200, b"ok", "1")
    assert srv.accepted == 1, "the connection stays usable"


WIRE_LF = b"5;ext=1\nhello\n1\r\n \n0\nx-trailer: 1\n\n"


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_chunked_decoder_bare_lf_any_split() -> None:
    for i in range(len(WIRE_LF) + 1):
        for j in range(i, len(WIRE_LF) + 1):
            d = ChunkedDecoder()
            out = d.feed(WIRE_LF[:i]) + d.feed(WIRE_LF[i:j]) + d.feed(WIRE_LF[j:] + b"EXTRA")
            assert out == b"hello ", (i, j)
            assert d.done and d.extra == b"EXTRA"


@pytest.mark.parametrize(
    ("answer", "match"),
    [
        (b"SSH-2.0-OpenSSH_9.6\r\n", "not an HTTP response"),
        (b"\x15\x03\x03\x00\x02\x02\x46", "not an HTTP response"),  # a TLS alert
        (b"HTTP/1.1 OK\r\n", "status line"),
        (b"HTTP/1.1 200 OK\r\nx-a: 1\rx-b: 2\r\n\r\n", "bare CR"),
        (b"HTTP/1.1 200 OK\nbad header\n\n", "header line"),
    ],
    ids=["ssh", "tls", "status", "bare-cr", "header"],
)
async def test_malformed_heads_fail_at_once(raw, http, answer: bytes, match: str) -> None:
    # The server then says nothing more and keeps the connection open: waiting for
    # the rest of a head would last until the read timeout.
    release = threading.Event()

    def handler(conn: Conn) -> None:
        conn.read_request()
        conn.send(answer)
        release.wait(30)

    srv = raw(handler)
    try:
        async with httpx.AsyncClient(transport=Transport(), timeout=60) as h:
            with anyio.fail_after(10), pytest.raises(httpx.RemoteProtocolError, match=match):
                await h.get(srv.url)
    finally:
        release.set()


async def test_malformed_head_is_a_typed_error_through_the_client(raw) -> None:
    srv = raw(serve_all([], b"SSH-2.0-OpenSSH_9.6\r\n"))
    async with AsyncClient(api_key="test-key", base_url=srv.url + "/v1", max_retries=0) as c:
        with anyio.fail_after(10), pytest.raises(APIConnectionError, match="RemoteProtocolError"):
            await c.chat.create(model="m", messages=[{"role": "user", "content": "hi"}])


async def test_crlf_chunks_still_decode(raw, http) -> None:
    srv = raw(serve_all([], chunked(b"a" * 5, b"b" * 70000)))
    assert (await http.get(srv.url)).content == b"a" * 5 + b"b" * 70000


async def test_a_reused_connection_dying_after_the_request_went_out_sends_it_again(
    raw, http
) -> None:
    # Looked alive, took the request, closed without a word (the server's keep-alive
    # ran out as it arrived): sent again on a new connection, unless NO_RESEND.
    reqs: list[tuple[str, dict[str, str], bytes]] = []

    def handler(conn: Conn) -> None:  # answers the first request of a connection only
        while (req := conn.read_request()) is not None:
            reqs.append(req)
            if len(reqs) == 2:
                return
            conn.send(ok(b"answer"))

    srv = raw(handler)
    assert (await http.post(srv.url, json={"n": 1})).content == b"answer"
    assert (await http.post(srv.url, json={"n": 2})).content == b"answer"
    assert [r[2] for r in reqs] == [b'{"n":1}', b'{"n":2}', b'{"n":2}']
    assert srv.accepted == 2


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_a_request_that_found_its_connection_closed_before_writing_goes_again(
    raw, http, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The pool's check passed (here: skipped) but by the time of the write the loop had
    # seen the server's close: not a byte went out, so even a NO_RESEND request is sent
    # on a new connection. (asyncio: its protocol sees the close before the write.)
    from holysheep_async._transport.connection import _Connection

    monkeypatch.setattr(_Connection, "idle_ok", lambda self: True)
    reqs: list[tuple[str, dict[str, str], bytes]] = []

    def handler(conn: Conn) -> None:  # one answer per connection, then close (no header)
        if (req := conn.read_request()) is not None:
            reqs.append(req)
            conn.send(ok(b"done"))

    srv = raw(handler)
    assert (await http.post(srv.url, json={"n": 1})).content == b"done"
    await anyio.to_thread.run_sync(srv.closed.wait)
    r = await http.post(srv.url, json={"n": 2}, extensions={NO_RESEND: True})
    assert r.content == b"done"
    assert [r[2] for r in reqs] == [b'{"n":1}', b'{"n":2}']


async def test_an_error_answer_cut_short_is_still_its_status_error(raw) -> None:
    # The body of a 500 breaks off (the server, or a proxy resetting a connection whose
    # request body it did not read): the status is the error, not a crash reading the body.
    def handler(conn: Conn) -> None:
        conn.read_request()
        conn.send(b"HTTP/1.1 500 Internal Server Error\r\ncontent-length: 100\r\n\r\ncut")

    srv = raw(handler)
    async with AsyncClient(api_key="k", base_url=f"{srv.url}/v1", max_retries=0) as client:
        with pytest.raises(APIStatusError, match="500 Internal Server Error") as info:
            await client.chat.create(model="m", messages=[{"role": "user", "content": "x"}])
    assert info.value.status_code == 500
