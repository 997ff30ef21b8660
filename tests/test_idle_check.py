"""The pool's idle check with its kept poll object (issue 25), on asyncio and trio.

A connection keeps one poll object for its socket instead of making one per check;
it must still say what a fresh one would: quiet while nothing came, not reusable
once the server spoke unasked or closed, and not reusable once its socket was closed
under it (the kept descriptor number is then never looked at).
"""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Callable, Iterator

import anyio
import httpx
import pytest

from holysheep_async._transport import Transport

from .rawserver import Conn, RawServer, ok, transport_of

pytestmark = pytest.mark.anyio


@pytest.fixture
def raw() -> Iterator[Callable[[Callable[[Conn], None]], RawServer]]:
    servers: list[RawServer] = []

    def start(handler: Callable[[Conn], None]) -> RawServer:
        srv = RawServer(handler)
        servers.append(srv)
        return srv

    yield start
    for srv in servers:
        srv.close()


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=Transport(), timeout=10) as c:
        yield c


def _idle_connection(http: httpx.AsyncClient):  # type: ignore[no-untyped-def]
    (stack,) = transport_of(http)._idle.values()
    (conn,) = stack
    return conn


async def test_the_kept_poll_object_sees_what_a_fresh_one_sees(raw, http) -> None:
    speak, spoke, done = threading.Event(), threading.Event(), threading.Event()

    def handler(conn: Conn) -> None:
        conn.read_request()
        conn.send(ok(b"x"))
        speak.wait(10)
        conn.send(b"HTTP/1.1 408 Request Timeout\r\ncontent-length: 0\r\n\r\n")
        spoke.set()
        done.wait(10)

    srv = raw(handler)
    try:
        assert (await http.get(srv.url)).content == b"x"
        conn = _idle_connection(http)
        assert conn._poller is not None
        assert conn.idle_ok(), "nothing came on it: reusable"
        assert conn.idle_ok(), "asking again changes nothing"
        speak.set()
        await anyio.to_thread.run_sync(spoke.wait)
        assert not conn.idle_ok(), "it spoke unasked: out of step"
    finally:
        done.set()


async def test_a_socket_closed_under_an_idle_connection_is_not_reused(raw, http) -> None:
    closed = threading.Event()

    def handler(conn: Conn) -> None:
        conn.read_request()
        conn.send(ok(b"x"))
        closed.wait(10)

    srv = raw(handler)
    try:
        assert (await http.get(srv.url)).content == b"x"
        conn = _idle_connection(http)
        assert conn.idle_ok()
        sock = conn._sock
        assert sock is not None and sock.fileno() == conn._fd
        # Its descriptor goes away (and a new socket may get the same number): the
        # check must not trust the kept poll object then.
        stand_in = type(
            "Closed", (), {"fileno": staticmethod(lambda: -1), "shutdown": lambda *a: None}
        )()
        conn._sock = stand_in
        assert not conn.idle_ok()
        conn._sock = sock
    finally:
        closed.set()
