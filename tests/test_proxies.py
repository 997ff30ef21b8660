"""Forward proxies on the client's own transport, against real squid and tinyproxy (issue 25).

Both proxies run as child processes on free ports of 127.0.0.1 (tests/proxy_servers.py);
the targets are the emulator (``http://``) and the emulator behind a TLS front with a
throwaway CA's certificate (``https://``, reached through a ``CONNECT`` tunnel and
verified against the trust store, ``SSL_CERT_FILE`` here). Every test runs on asyncio
and on trio. Nothing sleeps to order events: a test waits for what it needs to see (a
log line, a closed connection).
"""

from __future__ import annotations

import logging
import socket
import ssl
import urllib.parse
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from holysheep_async import APIConnectionError, APITimeoutError, AsyncClient, StreamIdleTimeout
from holysheep_async._transport import Transport
from holysheep_async.testing import Fault, MockServer, answer_text

from .proxy_servers import TEST_HOST, Squid, Tinyproxy, TLSFront, _ProxyProcess
from .redis_server import free_port

trustme = pytest.importorskip("trustme")

pytestmark = pytest.mark.anyio

MSGS = [{"role": "user", "content": "through the proxy"}]
PROXY_VARS = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY")
# squid's: a ':' and an '@' in it (the URL carries it percent-encoded); tinyproxy's
# config takes letters, digits, '-', '.' and '_' only.
SQUID_SECRET = "s3cr:t@pw"
TINY_SECRET = "s3cr-t.pw"


class PKI:
    def __init__(self, root: Path) -> None:
        self.ca = trustme.CA(organization_name="holysheep proxy test CA")
        self.bundle = root / "ca.pem"
        self.ca.cert_pem.write_to_path(str(self.bundle))
        self.server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.ca.issue_cert("127.0.0.1", "localhost", TEST_HOST).configure_cert(self.server)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PKI:
    return PKI(tmp_path_factory.mktemp("proxy-pki"))


@pytest.fixture(scope="module")
def emulator() -> Iterator[MockServer]:
    with MockServer(api_keys=["k"]) as srv:
        yield srv


@pytest.fixture(scope="module")
def front(pki: PKI, emulator: MockServer) -> Iterator[TLSFront]:
    tls = TLSFront(pki.server, emulator.port)
    yield tls
    tls.close()


def _started(proxy: _ProxyProcess) -> Iterator[Any]:
    proxy.start()
    yield proxy
    proxy.stop()


@pytest.fixture(scope="module")
def squid() -> Iterator[Squid]:
    yield from _started(Squid())


@pytest.fixture(scope="module")
def tinyproxy() -> Iterator[Tinyproxy]:
    yield from _started(Tinyproxy())


@pytest.fixture(scope="module")
def squid_auth() -> Iterator[Squid]:
    yield from _started(Squid(auth=("alice", SQUID_SECRET)))


@pytest.fixture(scope="module")
def tinyproxy_auth() -> Iterator[Tinyproxy]:
    yield from _started(Tinyproxy(auth=("bob", TINY_SECRET)))


@pytest.fixture(scope="module")
def squid_strict() -> Iterator[Squid]:
    """A squid that refuses every CONNECT."""
    yield from _started(Squid(deny_connect=True))


@pytest.fixture(scope="module")
def tinyproxy_strict() -> Iterator[Tinyproxy]:
    """A tinyproxy that lets CONNECT reach port 443 only."""
    yield from _started(Tinyproxy(connect_ports=[443]))


@pytest.fixture(autouse=True)
def env(monkeypatch: pytest.MonkeyPatch, pki: PKI) -> None:
    for var in (*PROXY_VARS, "HOLYSHEEP_TRANSPORT", "REQUEST_METHOD"):
        monkeypatch.delenv(var, raising=False)
        monkeypatch.delenv(var.lower(), raising=False)
    monkeypatch.setenv("SSL_CERT_FILE", str(pki.bundle))


def target(
    scheme: str, emulator: MockServer, front: TLSFront | None = None, host: str = "127.0.0.1"
) -> str:
    if scheme == "https":
        assert front is not None
        return front.url(host)
    return f"http://{host}:{emulator.port}/v1"


async def seen(proxy: _ProxyProcess, text: str) -> bool:
    """Whether ``text`` shows in the proxy's log within 10 s (squid logs a tunnel once it
    closes)."""
    try:
        await until(lambda: text in proxy.log())
    except TimeoutError:
        return False
    return True


async def until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    """Wait for ``condition`` (a close to be seen, a log line), checking every 10 ms."""
    with anyio.fail_after(timeout):
        while True:
            if condition():
                return
            await anyio.sleep(0.01)


def through(scheme: str, emulator: MockServer, front: TLSFront, host: str = "127.0.0.1") -> str:
    """What the proxy's log shows for a request to the target."""
    if scheme == "https":
        return f"CONNECT {host}:{front.port}"
    return f"POST http://{host}:{emulator.port}/v1/chat/completions"


def client(url: str, **kw: Any) -> AsyncClient:
    # allow_insecure_http: TEST_HOST is not loopback by name; the key goes over plain http
    # to it (through the proxy) only in these tests.
    return AsyncClient(api_key="k", base_url=url, max_retries=0, allow_insecure_http=True, **kw)


def ours(c: AsyncClient) -> Transport:
    transport = c.http_client._transport
    assert isinstance(transport, Transport), "the client's own transport carries proxies"
    return transport


async def ask(c: AsyncClient) -> str:
    completion = await c.chat.create(model="m", messages=MSGS)
    return str(completion.choices[0].message.content)


# -- the matrix: squid and tinyproxy, http and https targets --------------------------------


@pytest.mark.parametrize("scheme", ["http", "https"])
@pytest.mark.parametrize("name", ["squid", "tinyproxy"])
async def test_requests_and_streams_go_through_the_proxy(
    request: pytest.FixtureRequest, name: str, scheme: str, emulator: MockServer, front: TLSFront
) -> None:
    proxy: _ProxyProcess = request.getfixturevalue(name)
    tunnels = front.accepted
    async with client(target(scheme, emulator, front), proxy=proxy.address) as c:
        assert await ask(c) == answer_text(MSGS)
        async with c.chat.stream(model="m", messages=MSGS, max_tokens=200) as stream:
            assert "".join([t async for t in stream]) == answer_text(MSGS, 200)
        assert await ask(c) == answer_text(MSGS)
        transport = ours(c)
        assert transport.connections_in_use == 0
        if scheme == "https":
            # One tunnel per (proxy, target), kept and reused: TLS inside it, end to end.
            assert transport.connections_opened == 1
            assert front.accepted == tunnels + 1
        elif name == "squid":
            assert transport.connections_opened == 1  # tinyproxy closes after each answer
    assert await seen(proxy, through(scheme, emulator, front))


@pytest.mark.parametrize("scheme", ["http", "https"])
@pytest.mark.parametrize("name", ["squid_auth", "tinyproxy_auth"])
async def test_basic_auth_from_the_proxy_url_never_shown(
    request: pytest.FixtureRequest,
    name: str,
    scheme: str,
    emulator: MockServer,
    front: TLSFront,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    proxy: _ProxyProcess = request.getfixturevalue(name)
    assert proxy.auth is not None
    user, secret = proxy.auth
    quoted = urllib.parse.quote(secret, safe="")
    url = target(scheme, emulator, front)
    async with client(url, proxy=proxy.address.replace("://", f"://{user}:{quoted}@")) as c:
        assert await ask(c) == answer_text(MSGS)
        shown = [repr(c), repr(c.http_client), repr(ours(c)), repr(ours(c)._proxies)]
    with pytest.raises(APIConnectionError, match="requires authentication") as missing:
        async with client(url, proxy=proxy.address) as c:
            await ask(c)
    bad = proxy.address.replace("://", f"://{user}:wrong{quoted}@")
    with pytest.raises(APIConnectionError, match="refused the credentials") as refused:
        async with client(url, proxy=bad) as c:
            await ask(c)
    for error in (missing.value, refused.value):
        assert proxy.address in str(error)  # the proxy is named, without credentials
        shown += [str(error), repr(error), str(error.__cause__)]
    shown += [record.getMessage() for record in caplog.records]
    for text in shown:
        assert secret not in text and quoted not in text and "s3cr" not in text


@pytest.mark.parametrize("name", ["squid_strict", "tinyproxy_strict"])
async def test_a_proxy_refusing_connect_is_a_clear_error(
    request: pytest.FixtureRequest, name: str, emulator: MockServer, front: TLSFront
) -> None:
    proxy: _ProxyProcess = request.getfixturevalue(name)
    before = front.accepted
    async with client(front.url(), proxy=proxy.address) as c:
        with pytest.raises(APIConnectionError) as info:
            await ask(c)
        assert ours(c).connections_in_use == 0
    message = str(info.value)
    assert f"proxy {proxy.address} refused CONNECT 127.0.0.1:{front.port}: 403" in message
    assert front.accepted == before, "nothing reached the target"
    # Plain http through the same proxy still works (it refuses tunnels only).
    async with client(target("http", emulator, front), proxy=proxy.address) as c:
        assert await ask(c) == answer_text(MSGS)


@pytest.mark.parametrize("scheme", ["http", "https"])
async def test_a_dead_proxy_is_named_in_the_error(
    scheme: str, emulator: MockServer, front: TLSFront
) -> None:
    port = free_port()  # nothing listens there
    url = target(scheme, emulator, front)
    with pytest.raises(APIConnectionError) as info:
        async with client(url, proxy=f"http://carol:s3cr%3At@127.0.0.1:{port}") as c:
            await ask(c)
    message = str(info.value)
    assert f"cannot connect to proxy http://127.0.0.1:{port}" in message
    assert "s3cr" not in message and "carol" not in message


async def test_a_proxy_hanging_up_is_named_in_the_error(emulator: MockServer) -> None:
    from .rawserver import Conn, RawServer

    def hang_up(conn: Conn) -> None:  # takes the request, closes without an answer
        conn.read_request()

    fake = RawServer(hang_up)
    try:
        with pytest.raises(APIConnectionError) as info:
            async with client(target("http", emulator), proxy=fake.url) as c:
                await ask(c)
    finally:
        fake.close()
    assert f"without sending a response (through proxy {fake.url})" in str(info.value)


async def test_a_proxy_that_never_answers_connect_times_out(front: TLSFront) -> None:
    with socket.create_server(("127.0.0.1", 0)) as mute:  # accepts (in the kernel), says nothing
        address = f"http://127.0.0.1:{mute.getsockname()[1]}"
        timeout = httpx.Timeout(10, connect=0.3)
        async with client(front.url(), proxy=address, timeout=timeout) as c:
            with anyio.fail_after(10), pytest.raises(APITimeoutError) as info:
                await ask(c)
            assert ours(c).connections_in_use == 0
    assert f"through proxy {address}" in str(info.value.__cause__)


# -- proxies from the environment ----------------------------------------------------------


@pytest.fixture
def resolver(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, int]]:
    """Where the client connects straight to (host, port): TEST_HOST resolves to 127.0.0.1
    here, without asking any DNS server (squid has it in its own hosts file)."""
    from holysheep_async._transport import connection, tunnel

    direct: list[tuple[str, int]] = []
    real = connection.open_stream

    async def open_stream(scheme: bytes, host: str, port: int, *args: Any) -> Any:
        direct.append((host, port))
        return await real(scheme, "127.0.0.1" if host == TEST_HOST else host, port, *args)

    monkeypatch.setattr(connection, "open_stream", open_stream)
    monkeypatch.setattr(tunnel, "open_stream", open_stream)
    return direct


@pytest.mark.parametrize("scheme", ["http", "https"])
@pytest.mark.parametrize("var", ["HTTP(S)_PROXY", "ALL_PROXY", "lower case"])
async def test_proxies_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
    squid: Squid,
    emulator: MockServer,
    front: TLSFront,
    resolver: list[tuple[str, int]],
    scheme: str,
    var: str,
) -> None:
    if var == "ALL_PROXY":
        monkeypatch.setenv("ALL_PROXY", squid.address)
    elif var == "lower case":  # lower case wins, as httpx (urllib) reads them
        monkeypatch.setenv(f"{scheme.upper()}_PROXY", f"http://127.0.0.1:{free_port()}")
        monkeypatch.setenv(f"{scheme}_proxy", squid.address)
    else:
        monkeypatch.setenv(f"{scheme.upper()}_PROXY", squid.address)
    async with client(target(scheme, emulator, front, TEST_HOST)) as c:
        assert await ask(c) == answer_text(MSGS)
        assert ours(c).connections_opened == 1
    assert resolver == [("127.0.0.1", squid.port)]
    assert await seen(squid, through(scheme, emulator, front, TEST_HOST))


@pytest.mark.parametrize("scheme", ["http", "https"])
@pytest.mark.parametrize("no_proxy", ["proxy-test.invalid", ".proxy-test.invalid", "x.org, *"])
async def test_no_proxy_hosts_are_reached_directly(
    monkeypatch: pytest.MonkeyPatch,
    squid: Squid,
    emulator: MockServer,
    front: TLSFront,
    resolver: list[tuple[str, int]],
    scheme: str,
    no_proxy: str,
) -> None:
    monkeypatch.setenv("ALL_PROXY", squid.address)
    monkeypatch.setenv("NO_PROXY", no_proxy)
    url = target(scheme, emulator, front, TEST_HOST)
    before = squid.log().count(TEST_HOST)
    async with client(url) as c:
        assert await ask(c) == answer_text(MSGS)
    port = front.port if scheme == "https" else emulator.port
    assert resolver == [(TEST_HOST, port)]
    assert squid.log().count(TEST_HOST) == before


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
async def test_loopback_is_never_proxied_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, emulator: MockServer, host: str
) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("HTTP_PROXY", dead)
    monkeypatch.setenv("ALL_PROXY", dead)
    async with client(f"http://{host}:{emulator.port}/v1") as c:
        assert await ask(c) == answer_text(MSGS)
        ours(c)
    # Given in code, a proxy applies to loopback too (here: to a dead one).
    with pytest.raises(APIConnectionError, match="cannot connect to proxy"):
        async with client(f"http://{host}:{emulator.port}/v1", proxy=dead) as c:
            await ask(c)


# -- what the direct path guarantees, through a proxy ----------------------------------------


async def test_an_idle_tunnel_closed_by_the_far_end_is_not_reused(
    squid: Squid, front: TLSFront
) -> None:
    async with client(front.url(), proxy=squid.address) as c:
        assert await ask(c) == answer_text(MSGS)
        transport = ours(c)
        [conn] = [x for stack in transport._idle.values() for x in stack]
        front.drop_all()
        await until(lambda: not conn.idle_ok())  # squid closes our end of the tunnel in turn
        assert await ask(c) == answer_text(MSGS)
        assert transport.connections_opened == 2


async def test_a_forward_connection_closed_by_the_proxy_is_not_reused(
    emulator: MockServer,
) -> None:
    with Squid(idle=1) as squid:
        async with client(target("http", emulator), proxy=squid.address) as c:
            assert await ask(c) == answer_text(MSGS)
            transport = ours(c)
            [conn] = [x for stack in transport._idle.values() for x in stack]
            await until(lambda: not conn.idle_ok())  # squid's client_idle_pconn_timeout: 1 s
            assert await ask(c) == answer_text(MSGS)
            assert transport.connections_opened == 2


@pytest.mark.parametrize("scheme", ["http", "https"])
async def test_a_stalled_stream_through_a_proxy_ends_by_its_idle_timeout(
    squid: Squid, emulator: MockServer, front: TLSFront, scheme: str
) -> None:
    emulator.inject(Fault("stall", after=3))
    got: list[str] = []
    async with client(target(scheme, emulator, front), proxy=squid.address) as c:
        with anyio.fail_after(20), pytest.raises(StreamIdleTimeout) as info:
            async with c.chat.stream(model="m", messages=MSGS, idle_timeout=0.3) as stream:
                async for text in stream:
                    got.append(text)
        assert info.value.partial_text == "".join(got) != ""
        assert ours(c).connections_in_use == 0
        assert await ask(c) == answer_text(MSGS)  # and the client goes on


async def test_a_cancelled_stream_closes_its_tunnel_end_to_end(
    squid: Squid, emulator: MockServer, front: TLSFront
) -> None:
    emulator.inject(Fault("stall", after=2))
    async with client(front.url(), proxy=squid.address) as c:
        with anyio.move_on_after(20) as outer:
            async with c.chat.stream(model="m", messages=MSGS, idle_timeout=None) as stream:
                async for _ in stream:
                    break  # the caller leaves after the first text
        assert not outer.cancelled_caught
        transport = ours(c)
        assert (transport.connections_in_use, transport.idle_connections) == (0, 0)
    assert await anyio.to_thread.run_sync(front.wait_open, 0) == 0


@pytest.mark.parametrize("scheme", ["http", "https"])
async def test_an_early_answer_through_a_proxy_is_read(squid: Squid, pki: PKI, scheme: str) -> None:
    from .rawserver import Conn, RawServer

    def refuse(conn: Conn) -> None:
        conn.file.readline()
        conn.send(b"HTTP/1.1 413 Payload Too Large\r\ncontent-length: 7\r\n\r\ntoo big")
        # The answer goes out before the body is read; then the server reads the rest
        # before it closes, as nginx lingers. An abrupt close (a reset, the body unread)
        # races inside the proxy: squid may pass the answer on, or answer 502, or reset
        # the client before the answer reaches it. Nothing a client can do about that.
        while conn.file.read(65536):
            pass

    srv = RawServer(refuse, tls=pki.server if scheme == "https" else None)
    try:
        transport = Transport(proxy=squid.address)
        async with httpx.AsyncClient(transport=transport, timeout=20) as http:
            r = await http.post(srv.url, content=b"x" * (8 << 20))
        assert (r.status_code, r.content) == (413, b"too big")
    finally:
        srv.close()


def test_the_sync_client_takes_a_proxy(squid: Squid, emulator: MockServer) -> None:
    from holysheep_async import Client

    with Client(api_key="k", base_url=target("http", emulator), proxy=squid.address) as c:
        completion = c.chat.create(model="m", messages=MSGS)
    assert completion.choices[0].message.content == answer_text(MSGS)
