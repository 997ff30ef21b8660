"""One HTTP/1.1 connection: opening it, reads under deadlines (one timer each), writes.

It knows the socket adapters below it and nothing above: the exchange reads
and writes through it, the pool keeps it (``leased``, ``reused``,
``idle_since`` are the pool's marks on it).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import math
import select
import socket
import ssl
from typing import Any

import anyio
import anyio.abc
import httpx

from .._compat import current_loop, running_library
from .asyncio_stream import _asyncio_connect_ip, _AsyncioStream, _Protocol, abandon_transport
from .http11 import READ_SIZE, NothingSent
from .proxy import Proxy
from .trio_stream import _TrioStream, _TrioWatchdog

#: A pool key: (scheme, host, port).
Key = tuple[bytes, bytes, int]


class _NothingWritten(httpx.WriteError):
    """Sending failed with not a byte of this send written (see :class:`.http11.NothingSent`)."""


def _timeout(request: httpx.Request, which: str) -> float | None:
    value = request.extensions.get("timeout", {}).get(which)
    return None if value is None else float(value)


def _poller(sock: Any) -> Any:
    """A poll object with ``sock`` registered (None where there is no ``poll``, or closed)."""
    if not hasattr(select, "poll"):  # pragma: no cover - Windows
        return None
    poller = select.poll()
    try:
        poller.register(sock, select.POLLIN)
    except (OSError, ValueError):  # closed already
        return None
    return poller


if hasattr(select, "poll"):

    def _readable(sock: Any) -> bool:
        """Whether ``sock`` has bytes or an end of stream to read now (never waits; ~1 us).

        A poll object of its own each time: registering the socket object (not
        a kept descriptor number) cannot look at a descriptor reused since.
        """
        poll = select.poll()
        try:
            poll.register(sock, select.POLLIN)
        except (OSError, ValueError):  # closed already
            return True
        return bool(poll.poll(0))

else:  # pragma: no cover - Windows

    def _readable(sock: Any) -> bool:
        try:
            return bool(select.select([sock], [], [], 0)[0])
        except (OSError, ValueError):
            return True


class _Connection:
    __slots__ = (
        "_adapter",
        "_deadline",
        "_dog",
        "_fd",
        "_loop",
        "_poller",
        "_sock",
        "_timer",
        "_trio",
        "buf",
        "idle_since",
        "key",
        "leased",
        "loop",
        "reused",
        "stream",
        "timed_out",
        "timer_at",
    )

    def __init__(self, key: Key, stream: anyio.abc.ByteStream) -> None:
        self.key = key
        self.stream = stream
        # Our asyncio adapter, straight or under TLS (a tunnel through a proxy): its
        # protocol has read what the loop saw, which the socket no longer shows.
        inner = getattr(stream, "transport_stream", stream)
        self._adapter = inner if type(inner) is _AsyncioStream else None
        self.buf = b""
        self.reused = False
        self.leased = False  # counted in the transport's in-use connections
        self.idle_since = 0.0
        self.timed_out = False
        #: The event loop it was opened on: it works on no other.
        self.loop = current_loop()
        # Read timeouts are armed on every read; anyio's fail_after costs 10-15 us
        # each (most of a chunk's budget). Instead one timer per connection that
        # is re-armed only when it fires (a read just moves ``_deadline``) and
        # shuts the socket down when a read outlives its deadline: a loop timer
        # on asyncio, the per-run watchdog task on trio.
        self._loop: asyncio.AbstractEventLoop | None = None
        self._trio: Any = None
        self._dog: _TrioWatchdog | None = None
        self._sock: socket.socket | None = None
        self._deadline = math.inf  # of the read in progress (inf: none, or not reading)
        self._timer: asyncio.TimerHandle | None = None
        self.timer_at = math.inf  # when the armed timer fires (inf: not armed)
        library = running_library()
        if library == "asyncio":
            self._sock = stream.extra(anyio.abc.SocketAttribute.raw_socket, None)
            if self._sock is not None:
                self._loop = asyncio.get_running_loop()
        elif library == "trio":
            import trio

            self._trio = trio
            self._sock = stream.extra(anyio.abc.SocketAttribute.raw_socket, None)
            if self._sock is not None:
                self._dog = _TrioWatchdog.current(trio)
        # The idle check's poll object, made once (see idle_ok), and the descriptor it watches.
        self._poller = None if self._sock is None else _poller(self._sock)
        self._fd = -1 if self._poller is None else self._sock.fileno()  # type: ignore[union-attr]

    def idle_ok(self) -> bool:
        """No sign that the server closed this idle connection or spoke unasked.

        An idle HTTP/1.1 connection has nothing to read: a readable one was
        closed by the server (a keep-alive timeout, a load balancer) or carries
        bytes nobody asked for (a ``408``). On asyncio the protocol has already
        read what the loop saw; the socket itself has what arrived since.
        """
        if self.buf:
            return False
        adapter = self._adapter
        if adapter is not None and not adapter.quiet():
            return False
        sock = self._sock
        if sock is None:
            return True
        poller = self._poller
        if poller is None or sock.fileno() != self._fd:
            # Closed (fileno() is -1) or not pollable: a poll object of its own, which
            # cannot look at a descriptor number reused since.
            return not _readable(sock)
        # The socket is open and still has its descriptor: the kept poll object watches it.
        return not poller.poll(0)

    def now(self) -> float:
        """The running loop's clock (the one deadlines are given in)."""
        if self._loop is not None:
            return self._loop.time()
        if self._trio is not None:
            return float(self._trio.current_time())
        return anyio.current_time()

    def _arm(self, when: float) -> None:
        superseded = self.timer_at != math.inf
        self.timer_at = when
        if self._loop is not None:
            if self._timer is not None:
                self._timer.cancel()
            self._timer = self._loop.call_at(when, self.on_timer, when)
        else:
            assert self._dog is not None
            if superseded:
                self._dog.discard()
            self._dog.arm(self, when)

    def on_timer(self, when: float) -> None:
        """The timer fired: expire the read in progress if it is past its deadline."""
        if when != self.timer_at:
            return  # superseded by an earlier timer (trio's heap keeps old entries)
        self._timer = None
        self.timer_at = math.inf
        deadline = self._deadline
        if deadline == math.inf:
            return  # no read waiting: stay disarmed until the next read arms it
        if self.now() < deadline:  # a later read moved the deadline on: follow it
            self._arm(deadline)
            return
        self.timed_out = True
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.shutdown(socket.SHUT_RDWR)

    async def send(self, data: bytes, timeout: float | None) -> None:
        try:
            if timeout is None:
                await self.stream.send(data)
            else:
                with anyio.fail_after(timeout):
                    await self.stream.send(data)
        except TimeoutError:
            raise httpx.WriteTimeout("timed out sending the request") from None
        except NothingSent as exc:
            raise _NothingWritten(f"sending failed: {exc.__cause__!r}") from exc
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError) as exc:
            raise httpx.WriteError(f"sending failed: {exc!r}") from exc

    async def receive(self, timeout: float | None) -> bytes:
        """Some bytes, or b"" at end of stream."""
        return await self.receive_until(math.inf if timeout is None else self.now() + timeout)

    async def receive_until(self, deadline: float) -> bytes:
        """Some bytes, or b"" at end of stream; ``ReadTimeout`` once ``deadline`` passes."""
        if self.timed_out:
            raise httpx.ReadTimeout("timed out waiting for the server")
        try:
            if deadline == math.inf:
                return await self.stream.receive(READ_SIZE)
            if self._loop is not None or self._dog is not None:
                self._deadline = deadline
                if deadline < self.timer_at:
                    self._arm(deadline)
                try:
                    return await self.stream.receive(READ_SIZE)
                finally:
                    self._deadline = math.inf
            if self._trio is not None:
                with self._trio.CancelScope(deadline=deadline):
                    return await self.stream.receive(READ_SIZE)
                raise TimeoutError
            with anyio.fail_after(max(0.0, deadline - anyio.current_time())):
                return await self.stream.receive(READ_SIZE)
        except anyio.EndOfStream:
            if self.timed_out:
                raise httpx.ReadTimeout("timed out waiting for the server") from None
            return b""
        except TimeoutError:
            self.timed_out = True
            raise httpx.ReadTimeout("timed out waiting for the server") from None
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError) as exc:
            if self.timed_out:
                raise httpx.ReadTimeout("timed out waiting for the server") from None
            raise httpx.ReadError(f"reading failed: {exc!r}") from exc

    def abandon(self) -> None:
        """Close it without awaiting anything: its event loop is gone.

        Nothing of that loop is used (its timers, its transport's callbacks): the
        socket is closed directly.
        """
        self._timer = None
        self.timer_at = math.inf
        self._dog = None
        stream = self.stream
        if isinstance(stream, _AsyncioStream) or (
            isinstance(stream, _TrioStream) and stream.owner is None
        ):
            stream.abandon()
            return
        if isinstance(stream, _TrioStream):
            stream.abandon()
            stream = stream.owner  # type: ignore[assignment]
        # anyio's streams: TLS over a socket stream; an asyncio transport underneath.
        inner = getattr(stream, "transport_stream", stream)
        transport = getattr(inner, "_transport", None)
        if isinstance(transport, asyncio.Transport):
            abandon_transport(transport)
            return
        sock = stream.extra(anyio.abc.SocketAttribute.raw_socket, None)
        if isinstance(sock, socket.socket):
            sock.close()

    async def close(self) -> None:
        if self.loop is not current_loop():
            self.abandon()  # a body left open when its loop ended, closed from another
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self.timer_at != math.inf:
            self.timer_at = math.inf
            if self._dog is not None:
                self._dog.discard()  # its entry in the watchdog's heap is stale now
        stream = self.stream
        if isinstance(stream, _AsyncioStream) or (
            isinstance(stream, _TrioStream) and stream.owner is None
        ):
            await stream.aclose()  # nothing to wait for, nothing to cancel
            return
        with anyio.CancelScope(shield=True):
            await anyio.aclose_forcefully(self.stream)


#: Request extension: do not send this request again on a new connection when a
#: reused one dies before answering (see the module docstring).
NO_RESEND = "holysheep_no_resend"


class _StaleConnection(Exception):
    """A reused connection failed before any response byte.

    ``sent``: whether any of the request may have reached the server (False:
    it was found closed before a byte went out, so sending it again is safe
    even for a request that must not be sent twice).
    """

    def __init__(self, *, sent: bool) -> None:
        super().__init__()
        self.sent = sent


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


async def open_stream(
    scheme: bytes, host: str, port: int, timeout: float | None, tls: ssl.SSLContext | None
) -> anyio.abc.ByteStream:
    """A byte stream to ``host:port`` (TLS with ``tls`` for https), the runtime's fastest.

    Raises what connecting raises: ``TimeoutError`` after ``timeout``,
    ``OSError``, ``ssl.SSLError``, ``anyio.BrokenResourceError``.
    """
    if scheme == b"http" and _is_ip(host) and running_library() == "asyncio":
        # The common local case (an inference server, a relay on 127.0.0.1):
        # a socket of our own, its timeout a loop timer, not a cancel scope.
        transport, protocol = await _asyncio_connect_ip(host, port, timeout)
        return _AsyncioStream(transport, protocol)
    with anyio.fail_after(timeout):
        if scheme == b"https":
            assert tls is not None
            return await anyio.connect_tcp(
                host,
                port,
                tls=True,
                ssl_context=tls,
                tls_hostname=host,
                tls_standard_compatible=False,
            )
        if running_library() == "asyncio":
            # Happy eyeballs only where there can be a choice of address: its
            # staggered race costs ~100 us of CPU per connection even with one.
            transport, protocol = await asyncio.get_running_loop().create_connection(
                _Protocol, host, port, happy_eyeballs_delay=0.25
            )
            return _AsyncioStream(transport, protocol)
        if running_library() == "trio" and _is_ip(host):
            import trio

            return await _TrioStream.connect(trio, host, port)
        stream = await anyio.connect_tcp(host, port)
        sock = stream.extra(anyio.abc.SocketAttribute.raw_socket, None)
        if sock is not None and running_library() == "trio":
            import trio

            return _TrioStream(sock, trio, owner=stream)
        return stream


async def connect(
    key: Key, timeout: float | None, tls: ssl.SSLContext | None, *, proxy: Proxy | None = None
) -> _Connection:
    """A new connection for ``key`` (TLS with ``tls`` for https); to ``proxy`` when given.

    Errors are httpx's: ``ConnectTimeout`` after ``timeout``, ``ConnectError``
    naming the host and port, or the proxy (its URL without credentials).
    """
    scheme, host, port = key
    if proxy is None:
        hostname = host.decode("ascii")
        what = f"{hostname}:{port}"
    else:
        scheme, hostname, port = b"http", proxy.host, proxy.port
        what = f"proxy {proxy.url}"
    try:
        stream = await open_stream(scheme, hostname, port, timeout, tls)
    except TimeoutError:
        raise httpx.ConnectTimeout(f"timed out connecting to {what}") from None
    except (OSError, ssl.SSLError, anyio.BrokenResourceError) as exc:
        raise httpx.ConnectError(f"cannot connect to {what}: {exc}") from exc
    except anyio.EndOfStream as exc:  # a clean close in the middle of the TLS handshake
        raise httpx.ConnectError(
            f"cannot connect to {what}: the server closed the connection during the TLS"
            " handshake"
        ) from exc
    return _Connection(key, stream)
