"""The default transport (holysheep_async._transport) against real servers on 127.0.0.1.

Tiny scripted socket servers (threads, so both asyncio and trio clients can
use them) cover the protocol's edges; the emulator covers the client end to end.
"""

from __future__ import annotations

import itertools
import json
import os
import socket
import ssl
import subprocess
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import anyio
import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from holysheep_async import AsyncClient
from holysheep_async._transport import (
    NO_RESEND,
    ChunkedDecoder,
    Transport,
    TransportStats,
    default_transport,
)
from holysheep_async.errors import APIConnectionError
from holysheep_async.testing import MockServer, answer_text

from .rawserver import Conn, RawServer, chunked, ok, serve_all, transport_of

pytestmark = pytest.mark.anyio

# Tests of what the client's own default transport does: meaningless when the
# environment opts out of it (then the client runs on httpx's transport).
default_transport_only = pytest.mark.skipif(
    os.environ.get("HOLYSHEEP_TRANSPORT", "").strip().lower() == "httpx",
    reason="HOLYSHEEP_TRANSPORT=httpx: the client does not use its own transport",
)


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


# -- the chunked decoder, pure ----------------------------------------------------------

WIRE = b"5;ext=1\r\nhello\r\n1\r\n \r\nA\r\n0123456789\r\n0\r\nx-trailer: 1\r\n\r\n"


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_chunked_decoder_any_split() -> None:
    for i in range(len(WIRE) + 1):
        for j in range(i, len(WIRE) + 1):
            d = ChunkedDecoder()
            out = d.feed(WIRE[:i]) + d.feed(WIRE[i:j]) + d.feed(WIRE[j:] + b"EXTRA")
            assert out == b"hello 0123456789", (i, j)
            assert d.done and d.extra == b"EXTRA"


_chunk_sizes = st.sampled_from(["%x", "%X", "%04x", "%x;ext=1", '%x ; name="v"'])


@given(
    parts=st.lists(st.tuples(st.binary(min_size=1, max_size=40), _chunk_sizes), max_size=8),
    trailer=st.sampled_from([b"", b"x-trailer: 1\r\n"]),
    extra=st.binary(max_size=5),
    cuts=st.lists(st.integers(min_value=0, max_value=10_000), max_size=6),
)
def test_chunked_decoder_property(
    parts: list[tuple[bytes, str]], trailer: bytes, extra: bytes, cuts: list[int]
) -> None:
    """Any chunk sizes, spellings of the size line and read boundaries decode to the body."""
    wire = b"".join((size % len(data)).encode() + b"\r\n" + data + b"\r\n" for data, size in parts)
    wire += b"0\r\n" + trailer + b"\r\n" + extra
    bounds = sorted({min(c, len(wire)) for c in cuts} | {0, len(wire)})
    d = ChunkedDecoder()
    out = b"".join(d.feed(wire[a:b]) for a, b in itertools.pairwise(bounds))
    assert out == b"".join(data for data, _ in parts)
    assert d.done and d.extra == extra


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
@pytest.mark.parametrize(
    "wire", [b"zz\r\n", b"-5\r\nhello\r\n", b"5\r\nhelloXX", b"\r\n", b"0x5\r\nhello\r\n"]
)
async def test_chunked_decoder_rejects_bad_framing(wire: bytes) -> None:
    with pytest.raises(httpx.RemoteProtocolError):
        ChunkedDecoder().feed(wire)


# -- bodies -----------------------------------------------------------------------------


async def test_content_length_and_keep_alive(raw, http: httpx.AsyncClient) -> None:
    reqs: list[tuple[str, dict[str, str], bytes]] = []
    srv = raw(serve_all(reqs, ok(b'{"a":1}', b"content-type: application/json\r\n")))
    for i in range(3):
        r = await http.post(f"{srv.url}/v1/x?q={i}", json={"i": i})
        assert r.status_code == 200 and r.json() == {"a": 1}
        assert r.http_version == "HTTP/1.1"
    assert srv.accepted == 1, "keep-alive connection reused"
    assert [q[0] for q in reqs] == [f"POST /v1/x?q={i} HTTP/1.1" for i in range(3)]
    assert reqs[2][2] == b'{"i":2}' and reqs[2][1]["content-length"] == "7"
    assert reqs[0][1]["host"] == f"127.0.0.1:{srv.port}"
    assert transport_of(http).idle_connections == 1


async def test_chunked_response(raw, http: httpx.AsyncClient) -> None:
    srv = raw(serve_all([], chunked(b"data: one\n\n", b"data: two\n\n", b"x" * 70000)))
    for _ in range(2):
        r = await http.get(srv.url)
        assert r.content == b"data: one\n\ndata: two\n\n" + b"x" * 70000
    assert srv.accepted == 1


async def test_large_bodies_both_ways(raw, http: httpx.AsyncClient) -> None:
    big = os.urandom(3 * 1024 * 1024)
    reqs: list[tuple[str, dict[str, str], bytes]] = []

    def handler(conn: Conn) -> None:
        while (req := conn.read_request()) is not None:
            reqs.append(req)
            conn.send(ok(req[2][::-1]))

    srv = raw(handler)
    r = await http.post(srv.url, content=big)
    assert r.content == big[::-1]
    assert reqs[0][2] == big


async def test_streamed_request_body_is_chunk_encoded(raw, http: httpx.AsyncClient) -> None:
    reqs: list[tuple[str, dict[str, str], bytes]] = []
    srv = raw(serve_all(reqs, ok(b"done")))

    async def parts() -> AsyncIterator[bytes]:
        yield b"abc"
        yield b""
        yield b"def"

    r = await http.post(srv.url, content=parts())
    assert r.content == b"done"
    assert reqs[0][1]["transfer-encoding"] == "chunked" and reqs[0][2] == b"abcdef"


async def test_read_until_close_body(raw, http: httpx.AsyncClient) -> None:
    def handler(conn: Conn) -> None:
        conn.read_request()
        conn.send(b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n\r\nall of it")

    srv = raw(handler)
    r = await http.get(srv.url)
    assert r.content == b"all of it"
    r = await http.get(srv.url)
    assert r.content == b"all of it"
    assert srv.accepted == 2, "a body framed by close cannot reuse the connection"


@pytest.mark.parametrize(("method", "status"), [("HEAD", 200), ("GET", 204), ("GET", 304)])
async def test_no_body_responses(raw, http: httpx.AsyncClient, method: str, status: int) -> None:
    # Content-Length announces a body that HEAD/204/304 never carry: don't wait for it.
    answer = b"HTTP/1.1 %d X\r\ncontent-length: 100\r\n\r\n" % status
    srv = raw(serve_all([], answer))
    for _ in range(2):
        r = await http.request(method, srv.url)
        assert r.status_code == status and r.content == b""
    assert srv.accepted == 1


async def test_informational_responses_are_skipped(raw, http: httpx.AsyncClient) -> None:
    answer = b"HTTP/1.1 103 Early Hints\r\nlink: </a>\r\n\r\n" + ok(b"final")
    srv = raw(serve_all([], answer))
    r = await http.get(srv.url)
    assert r.status_code == 200 and r.content == b"final"


async def test_error_status_keeps_connection(raw, http: httpx.AsyncClient) -> None:
    srv = raw(serve_all([], b"HTTP/1.1 429 Too Many\r\ncontent-length: 2\r\n\r\n{}"))
    assert (await http.get(srv.url)).status_code == 429
    assert (await http.get(srv.url)).status_code == 429
    assert srv.accepted == 1


async def test_connection_close_header(raw, http: httpx.AsyncClient) -> None:
    srv = raw(serve_all([], ok(b"bye", b"connection: close\r\n")))
    assert (await http.get(srv.url)).content == b"bye"
    assert (await http.get(srv.url)).content == b"bye"
    assert srv.accepted == 2
    assert transport_of(http).idle_connections == 0


async def test_http10_without_keep_alive_is_not_reused(raw, http: httpx.AsyncClient) -> None:
    srv = raw(serve_all([], b"HTTP/1.0 200 OK\r\ncontent-length: 2\r\n\r\nok"))
    assert (await http.get(srv.url)).content == b"ok"
    assert (await http.get(srv.url)).content == b"ok"
    assert srv.accepted == 2


# -- failures -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "answer",
    [
        b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nonly part",
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhel",
        b"HTTP/1.1 200 OK\r\ncontent-le",
    ],
    ids=["content-length", "chunked", "head"],
)
async def test_server_closing_mid_response(raw, http: httpx.AsyncClient, answer: bytes) -> None:
    calls = 0

    def handler(conn: Conn) -> None:
        nonlocal calls
        conn.read_request()
        calls += 1
        conn.send(answer if calls == 1 else ok(b"fine"))

    srv = raw(handler)
    with pytest.raises(httpx.RemoteProtocolError):
        await http.get(srv.url)
    # The broken connection is gone; the next request works on a new one.
    assert (await http.get(srv.url)).content == b"fine"
    assert srv.accepted == 2


async def test_stale_keep_alive_connection_is_retried_once(raw, http: httpx.AsyncClient) -> None:
    reqs: list[tuple[str, dict[str, str], bytes]] = []

    def handler(conn: Conn) -> None:  # one answer per connection, then close (no header)
        req = conn.read_request()
        if req is not None:
            reqs.append(req)
            conn.send(ok(b"one"))

    srv = raw(handler)
    assert (await http.post(srv.url, json={"n": 1})).content == b"one"
    await anyio.to_thread.run_sync(srv.closed.wait)  # the server closed that idle connection
    assert (await http.post(srv.url, json={"n": 2})).content == b"one"
    assert srv.accepted == 2
    assert [r[2] for r in reqs] == [b'{"n":1}', b'{"n":2}']


async def test_no_resend_request_is_not_sent_again_on_a_stale_connection(
    raw, http: httpx.AsyncClient
) -> None:
    reqs: list[tuple[str, dict[str, str], bytes]] = []

    def handler(conn: Conn) -> None:  # answers one request, reads the next, closes
        while (req := conn.read_request()) is not None:
            reqs.append(req)
            if len(reqs) > 1:
                return
            conn.send(ok(b"one"))

    srv = raw(handler)
    assert (await http.post(srv.url, json={"n": 1})).content == b"one"
    # The server may have acted on it before the connection died: the caller decides.
    with pytest.raises(httpx.RemoteProtocolError, match="not sent again"):
        await http.post(srv.url, json={"n": 2}, extensions={NO_RESEND: True})
    assert srv.accepted == 1
    assert [r[2] for r in reqs] == [b'{"n":1}', b'{"n":2}']


async def test_fresh_connection_closed_without_answer_is_an_error(raw, http) -> None:
    def handler(conn: Conn) -> None:
        conn.read_request()

    srv = raw(handler)
    with pytest.raises(httpx.RemoteProtocolError, match="without sending a response"):
        await http.get(srv.url)
    assert srv.accepted == 1, "no retry on a fresh connection"


async def test_bad_status_line_and_content_length(raw, http: httpx.AsyncClient) -> None:
    srv = raw(serve_all([], b"HTTP/1.1 OK\r\n\r\n"))
    with pytest.raises(httpx.RemoteProtocolError, match="status line"):
        await http.get(srv.url)
    srv = raw(serve_all([], b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncontent-length: 3\r\n\r\n"))
    with pytest.raises(httpx.RemoteProtocolError, match="Content-Length"):
        await http.get(srv.url)


async def test_connect_refused() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    async with httpx.AsyncClient(transport=Transport()) as http:
        with pytest.raises(httpx.ConnectError):
            await http.get(f"http://127.0.0.1:{port}/")


async def test_connect_timeout_when_the_server_never_accepts() -> None:
    # A listener whose accept queue is full drops further SYNs: the connect hangs
    # and must end at the connect timeout, with nothing left in the pool.
    listener = socket.create_server(("127.0.0.1", 0), backlog=0)
    port = listener.getsockname()[1]
    fillers = []
    try:
        for _ in range(8):  # fill the accept queue (its size is backlog + 1 or so)
            f = socket.socket()
            f.setblocking(False)
            f.connect_ex(("127.0.0.1", port))
            fillers.append(f)
        transport = Transport()
        timeout = httpx.Timeout(5, connect=0.2)
        async with httpx.AsyncClient(transport=transport, timeout=timeout) as http:
            with anyio.fail_after(5), pytest.raises(httpx.ConnectTimeout):
                await http.get(f"http://127.0.0.1:{port}/")
            assert transport.stats() == TransportStats(in_use=0, idle=0, opened=0)
    finally:
        for f in fillers:
            f.close()
        listener.close()


async def test_read_timeout_closes_connection(raw) -> None:
    release = threading.Event()

    def handler(conn: Conn) -> None:
        conn.read_request()
        release.wait(10)

    srv = raw(handler)
    async with httpx.AsyncClient(transport=Transport(), timeout=httpx.Timeout(5, read=0.05)) as h:
        with pytest.raises(httpx.ReadTimeout):
            await h.get(srv.url)
        assert transport_of(h).idle_connections == 0
    release.set()


async def test_header_injection_is_refused(raw, http: httpx.AsyncClient) -> None:
    srv = raw(serve_all([], ok(b"")))
    with pytest.raises(httpx.LocalProtocolError):
        await http.get(srv.url, headers={"x-a": "b\r\nx-evil: 1"})
    assert srv.accepted == 0


async def test_cancelled_request_closes_its_connection(raw, http: httpx.AsyncClient) -> None:
    got = threading.Event()
    eof = threading.Event()

    def handler(conn: Conn) -> None:
        conn.read_request()
        got.set()
        if conn.sock.recv(1) == b"":  # blocks until the client closes the connection
            eof.set()

    srv = raw(handler)
    async with anyio.create_task_group() as tg:

        async def send() -> None:
            await http.get(srv.url)

        tg.start_soon(send)
        await anyio.to_thread.run_sync(got.wait)
        tg.cancel_scope.cancel()
    assert transport_of(http).idle_connections == 0
    await anyio.to_thread.run_sync(srv.closed.wait)
    assert eof.is_set(), "the server saw the connection closed"


async def test_response_closed_early_is_not_reused(raw, http: httpx.AsyncClient) -> None:
    release = threading.Event()
    whole = chunked(b"a" * 10, b"b" * 10)

    def handler(conn: Conn) -> None:
        while conn.read_request() is not None:
            if not release.is_set():
                conn.send(whole[:-20])  # the first chunk only, the rest once released
                release.wait(10)
                conn.send(whole[-20:])
            else:
                conn.send(whole)

    srv = raw(handler)
    async with http.stream("GET", srv.url) as r:
        async for piece in r.aiter_raw():
            assert piece == b"a" * 10
            break
    assert transport_of(http).idle_connections == 0
    release.set()
    assert (await http.get(srv.url)).content == b"a" * 10 + b"b" * 10
    assert srv.accepted == 2


async def test_closed_transport_refuses(raw) -> None:
    srv = raw(serve_all([], ok(b"x")))
    t = Transport()
    async with httpx.AsyncClient(transport=t) as h:
        await h.get(srv.url)
        assert t.idle_connections == 1
    assert t.idle_connections == 0
    with pytest.raises(RuntimeError):
        await t.handle_async_request(httpx.Request("GET", srv.url))


# -- TLS --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cert(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    d = tmp_path_factory.mktemp("tls")
    key, crt = d / "key.pem", d / "cert.pem"
    try:
        subprocess.run(
            [
                "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                "-keyout", str(key), "-out", str(crt), "-subj", "/CN=127.0.0.1",
                "-addext", "subjectAltName=IP:127.0.0.1",
            ],
            check=True,
            capture_output=True,
        )  # fmt: skip
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("openssl is needed to make a test certificate")
    return crt, key


async def test_tls(raw, cert: tuple[Path, Path]) -> None:
    crt, key = cert
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(crt, key)
    srv = raw(serve_all([], ok(b"secure")), tls=server_ctx)
    trusting = ssl.create_default_context(cafile=str(crt))
    async with httpx.AsyncClient(transport=Transport(verify=trusting)) as h:
        assert (await h.get(srv.url)).content == b"secure"
        assert (await h.get(srv.url)).content == b"secure"
    assert srv.accepted == 1
    # The default context (certifi) does not trust a self-signed certificate.
    async with httpx.AsyncClient(transport=Transport()) as h:
        with pytest.raises(httpx.ConnectError):
            await h.get(srv.url)


# -- choosing the transport, and the client end to end --------------------------------


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_default_transport_choice(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.delenv("HOLYSHEEP_TRANSPORT", raising=False)
    assert isinstance(default_transport(), Transport)
    async with AsyncClient(api_key="k") as client:
        assert isinstance(client.http_client._transport, Transport)
    monkeypatch.setenv("HOLYSHEEP_TRANSPORT", "httpx")
    assert default_transport() is None
    async with AsyncClient(api_key="k") as client:
        assert not isinstance(client.http_client._transport, Transport)
    monkeypatch.delenv("HOLYSHEEP_TRANSPORT")
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.invalid:3128")
    assert isinstance(default_transport(), Transport), "http:// proxies are ours (issue 25)"
    monkeypatch.setenv("HTTPS_PROXY", "socks5://proxy.invalid:1080")
    assert default_transport() is None, "SOCKS proxies are left to httpx's transport"


@default_transport_only
async def test_client_end_to_end_on_emulator() -> None:
    async with (
        MockServer(api_keys=["k"]) as server,
        AsyncClient(api_key="k", base_url=server.base_url, max_retries=0) as client,
    ):
        transport = client.http_client._transport
        assert isinstance(transport, Transport)
        msgs = [{"role": "user", "content": "transport"}]
        completion = await client.chat.create(model="m", messages=msgs)
        assert completion.choices[0].message.content == answer_text(msgs, 16)
        async with client.chat.stream(model="m", messages=msgs, max_tokens=300) as stream:
            text = "".join([t async for t in stream])
        assert text == answer_text(msgs, 300)
        # A connection dropped mid-stream is an error, and the pool recovers from it.
        server.inject("drop", after=3)
        with pytest.raises(APIConnectionError):
            async with client.chat.stream(model="m", messages=msgs) as stream:
                async for _ in stream:
                    pass

        async def one() -> None:
            await client.chat.create(model="m", messages=msgs)

        async with anyio.create_task_group() as tg:
            for _ in range(20):
                tg.start_soon(one)
        assert transport.idle_connections >= 1


async def test_read_timeout_mid_body(raw) -> None:
    release = threading.Event()

    def handler(conn: Conn) -> None:
        conn.read_request()
        conn.send(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n")
        release.wait(10)

    srv = raw(handler)
    async with httpx.AsyncClient(transport=Transport(), timeout=httpx.Timeout(5, read=0.05)) as h:
        async with h.stream("GET", srv.url) as r:
            pieces = []
            with pytest.raises(httpx.ReadTimeout):
                async for piece in r.aiter_raw():
                    pieces.append(piece)
            assert pieces == [b"hello"]
        assert transport_of(h).idle_connections == 0
    release.set()


async def test_read_timeout_is_per_read_not_per_body(raw) -> None:
    # The read timer is armed once and follows each read's deadline: a body whose
    # pieces come well within the read timeout but that takes longer in total
    # than the timeout must not time out; a silence longer than it must.
    release = threading.Event()

    def handler(conn: Conn) -> None:
        conn.read_request()
        conn.send(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
        for _ in range(8):
            conn.send(b"1\r\nx\r\n")
            release.wait(0.1)
        release.wait(10)

    srv = raw(handler)
    timeout = httpx.Timeout(5, read=0.5)
    async with (
        httpx.AsyncClient(transport=Transport(), timeout=timeout) as h,
        h.stream("GET", srv.url) as r,
    ):
        pieces = []
        with pytest.raises(httpx.ReadTimeout):
            async for piece in r.aiter_raw():
                pieces.append(piece)
        assert b"".join(pieces) == b"x" * 8
    release.set()


async def test_a_request_cancelled_before_it_is_sent_is_not_sent(
    raw, http: httpx.AsyncClient
) -> None:
    # Sending is a checkpoint: a task cancelled on its way to a reused idle
    # connection must not put its request on the wire (nothing sent unknown).
    reqs: list[tuple[str, dict[str, str], bytes]] = []
    srv = raw(serve_all(reqs, ok(b"{}")))
    await http.post(f"{srv.url}/first", json={})
    assert transport_of(http).idle_connections == 1
    with anyio.CancelScope() as scope:
        scope.cancel()
        await http.post(f"{srv.url}/cancelled", json={})
    await http.post(f"{srv.url}/last", json={})
    assert [q[0].split()[1] for q in reqs] == ["/first", "/last"]


# -- the httpx client built by default -----------------------------------------------------


async def test_default_http_client_keeps_and_sends_back_cookies() -> None:
    # Its jar skips responses without Set-Cookie; cookies a server does set still work.
    seen: list[str | None] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get("cookie"))
        if len(seen) == 2:
            return httpx.Response(200, headers={"set-cookie": "lb=node7; Path=/"}, json={})
        return httpx.Response(200, json={})

    client = AsyncClient(api_key="test-key", base_url="https://relay.test/v1")
    await client.http_client.aclose()
    client._requester.http = type(client.http_client)(transport=httpx.MockTransport(handler))
    async with client:
        for _ in range(3):
            await client._requester.request("GET", "/models")
    assert seen == [None, None, "lb=node7"]
    assert dict(client.http_client.cookies) == {"lb": "node7"}


# -- the pool's counters ------------------------------------------------------------------------


async def test_stats_count_a_connection_in_use_until_its_body_ends(raw, http) -> None:
    srv = raw(serve_all([], chunked(b"a" * 10, b"b" * 10)))
    t = transport_of(http)
    assert t.stats() == TransportStats(in_use=0, idle=0, opened=0)
    async with http.stream("GET", srv.url) as r:
        assert t.stats() == TransportStats(in_use=1, idle=0, opened=1)
        assert await r.aread() == b"a" * 10 + b"b" * 10
        assert t.stats() == TransportStats(in_use=0, idle=1, opened=1)
    # Reused: leased again, then back.
    async with http.stream("GET", srv.url) as r:
        assert (t.connections_in_use, t.idle_connections) == (1, 0)
    # Closed before the body was read: not idle, not in use.
    assert t.stats() == TransportStats(in_use=0, idle=0, opened=1)


async def test_stats_after_failures_leave_nothing_in_use(raw, http) -> None:
    def handler(conn: Conn) -> None:
        if conn.read_request() is not None:
            conn.send(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nabc")  # then closes

    srv = raw(handler)
    with pytest.raises(httpx.RemoteProtocolError):
        await http.get(srv.url)  # body cut short
    bad = raw(lambda conn: conn.send(b"garbage\r\n\r\n") if conn.read_request() else None)
    with pytest.raises(httpx.RemoteProtocolError):
        await http.get(bad.url)  # no valid head
    t = transport_of(http)
    assert t.stats() == TransportStats(in_use=0, idle=0, opened=2)
    with anyio.move_on_after(0.05):  # cancelled while waiting for the head
        hang = raw(lambda conn: (conn.read_request(), conn.file.read()))
        await http.get(hang.url)
    assert t.connections_in_use == 0


# -- the request path below httpx.AsyncClient.send (Requester._build / _send) ---------------

_COMPLETION = (
    b'{"id":"c1","object":"chat.completion","created":1,"model":"m","choices":[{"index":0,'
    b'"message":{"role":"assistant","content":"hi"},"finish_reason":"stop"}],'
    b'"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}}'
)


def _recording(seen: list[tuple[list[bytes], bytes]], answer: Callable[[int], bytes]):
    """A handler keeping each request's raw head lines (in order) and body."""

    def handler(conn: Conn) -> None:
        while True:
            lines = []
            while (line := conn.file.readline()) not in (b"\r\n", b""):
                lines.append(line.rstrip(b"\r\n"))
            if not lines:
                return
            length = next(
                (int(x.split(b":")[1]) for x in lines if x.lower().startswith(b"content-length:")),
                0,
            )
            seen.append((lines, conn.file.read(length)))
            conn.send(answer(len(seen)))

    return handler


async def _calls(client: AsyncClient) -> None:
    await client.chat.create(model="m", messages=[{"role": "user", "content": "héllo"}])
    await client._requester.request("GET", "/models")
    await client._requester.request("POST", "/batches/b1/cancel")
    await client._requester.request("POST", "/files", json={"purpose": "batch"})


@default_transport_only
async def test_the_fast_path_sends_byte_for_byte_what_httpx_sends(raw, monkeypatch) -> None:
    # The default client builds requests without build_request and sends them
    # without AsyncClient.send; a client handed in goes through both. The server
    # must see the same requests, header order included.
    sends = 0
    real_send = httpx.AsyncClient.send

    async def counting_send(self, request, **kw):  # type: ignore[no-untyped-def]
        nonlocal sends
        sends += 1
        return await real_send(self, request, **kw)

    monkeypatch.setattr(httpx.AsyncClient, "send", counting_send)
    fast: list[tuple[list[bytes], bytes]] = []
    slow: list[tuple[list[bytes], bytes]] = []
    srv_fast = raw(_recording(fast, lambda _: ok(_COMPLETION)))
    srv_slow = raw(_recording(slow, lambda _: ok(_COMPLETION)))
    headers = {"x-team": "wool"}
    async with AsyncClient(
        api_key="test-key", base_url=f"{srv_fast.url}/v1", default_headers=headers
    ) as client:
        await _calls(client)
    assert sends == 0  # the fast path was taken
    async with (
        httpx.AsyncClient(transport=Transport()) as own,
        AsyncClient(
            api_key="test-key",
            base_url=f"{srv_slow.url}/v1",
            default_headers=headers,
            http_client=own,
        ) as client,
    ):
        await _calls(client)
    assert sends == 4
    assert len(fast) == len(slow) == 4
    port_fast, port_slow = str(srv_fast.port).encode(), str(srv_slow.port).encode()
    for (head_f, body_f), (head_s, body_s) in zip(fast, slow, strict=True):
        assert [x.replace(port_fast, b"PORT") for x in head_f] == [
            x.replace(port_slow, b"PORT") for x in head_s
        ]
        assert body_f == body_s
    # GET without a body: no Content-Length, no Content-Type; a bodiless POST: length 0.
    assert not any(x.lower().startswith(b"content-") for x in fast[1][0])
    assert b"Content-Length: 0" in fast[2][0]
    assert "héllo".encode() in fast[0][1]


async def test_the_fast_path_keeps_cookies_elapsed_and_httpx_log_line(raw, caplog) -> None:
    seen: list[tuple[list[bytes], bytes]] = []

    def answer(n: int) -> bytes:
        if n == 2:
            return ok(_COMPLETION, b"set-cookie: lb=node7; Path=/\r\n")
        return ok(_COMPLETION)

    srv = raw(_recording(seen, answer))
    caplog.set_level("INFO", logger="httpx")
    async with AsyncClient(api_key="test-key", base_url=f"{srv.url}/v1") as client:
        for _ in range(3):
            await client._requester.request("GET", "/models")
        assert dict(client.http_client.cookies) == {"lb": "node7"}
        client.http_client.headers["x-late"] = "1"  # changed after the first requests
        reply = await client._requester.request("GET", "/models", stream=True)
        await reply.response.aread()
        await reply.aclose()
        assert reply.response.elapsed.total_seconds() > 0
    cookies = [[x for x in head if x.lower().startswith(b"cookie:")] for head, _ in seen]
    assert cookies == [[], [], [b"Cookie: lb=node7"], [b"Cookie: lb=node7"]]
    assert [b"x-late: 1" in head for head, _ in seen] == [False, False, False, True]
    lines = [r.getMessage() for r in caplog.records if r.name == "httpx"]
    assert lines and all(f"GET {srv.url}/v1/models" in x and "200 OK" in x for x in lines)


async def test_event_hooks_and_redirects_on_the_default_client(raw) -> None:
    # Hooks added to the default client's httpx client are called (the request
    # then goes through AsyncClient.send); a redirect on the fast path is followed
    # by httpx with the history kept.
    seen: list[tuple[list[bytes], bytes]] = []

    def answer(n: int) -> bytes:
        if n == 1:
            return (
                b"HTTP/1.1 307 Temporary Redirect\r\nlocation: /v1/elsewhere\r\n"
                b"content-length: 0\r\n\r\n"
            )
        return ok(_COMPLETION)

    srv = raw(_recording(seen, answer))
    hooked: list[str] = []

    async def hook(request: httpx.Request) -> None:
        hooked.append(request.url.path)

    async with AsyncClient(api_key="test-key", base_url=f"{srv.url}/v1") as client:
        reply = await client._requester.request("POST", "/chat/completions", json={"a": 1})
        assert reply.response.url.path == "/v1/elsewhere"
        assert [r.status_code for r in reply.response.history] == [307]
        client.http_client.event_hooks["request"].append(hook)
        await client._requester.request("GET", "/models")
    assert hooked == ["/v1/models"]
    assert [head[0].split()[:2] for head, _ in seen] == [
        [b"POST", b"/v1/chat/completions"],
        [b"POST", b"/v1/elsewhere"],
        [b"GET", b"/v1/models"],
    ]
    assert seen[0][1] == seen[1][1] == b'{"a":1}'  # a 307 keeps method and body
    assert any(x.startswith(b"Authorization: Bearer test-key") for x in seen[1][0])


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_request_bodies_are_json_as_httpx_writes_it_and_nan_is_refused() -> None:
    from holysheep_async._requester import _json_bytes

    for value in [
        {"a": "NaN inside a string", "b": ["Infinity"], "c": "héllo \u2028", "d": 2**70},
        {"m": [{"role": "user", "content": "x"}], "t": 0.5, "n": None, "ok": True},
        {None: 1, 2: "int key", 1.5: "float key", True: "bool key", "e": 1e-07},
    ]:
        assert (
            _json_bytes(value)
            == json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()
        )
    for bad in [float("nan"), float("inf"), -float("inf")]:
        with pytest.raises(ValueError, match="JSON compliant"):
            _json_bytes({"temperature": bad})
    for bad_value in [object(), b"bytes", {1, 2}]:
        with pytest.raises(TypeError, match="not JSON serializable"):
            _json_bytes({"x": bad_value})
    with pytest.raises(TypeError, match="keys must be"):
        _json_bytes({(1, 2): "tuple key"})


async def test_a_failed_connect_on_the_fast_path_names_its_request() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    async with AsyncClient(api_key="k", base_url=f"http://127.0.0.1:{port}/v1", max_retries=0) as c:
        with pytest.raises(APIConnectionError) as info:
            await c.chat.create(model="m", messages=[{"role": "user", "content": "x"}])
    cause = info.value.__cause__
    assert isinstance(cause, httpx.ConnectError)
    assert cause.request.url == f"http://127.0.0.1:{port}/v1/chat/completions"
