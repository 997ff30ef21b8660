"""The HTTP/1.1 transport under the client's ``httpx.AsyncClient``: anyio streams, O(1) pool.

httpx stays the surface (users may still hand in their own
``httpx.AsyncClient``); this replaces what sits under it by default, because
httpcore's pool is what collapses under concurrency (DESIGN.md, Performance):
1,000 concurrent slow streams took 3-25 s through it against ~1.3 s here.

What it does, and why:

- A connection pool that opens a new connection whenever none is idle (no
  queueing behind a connection limit: the client's :class:`~.limits.Limiter`
  is where concurrency is limited), and keeps idle connections in a per-host
  LIFO stack: taking and returning one is O(1), and the most recently used
  connection is the least likely to have been closed by the server.
- A lean HTTP/1.1 codec: one buffer, ``Content-Length``, chunked and
  read-until-close bodies, 1xx responses skipped, no body for HEAD, 204 and
  304. Parsing chunked bodies joins every chunk in one read into one piece,
  so an SSE stream costs one Python iteration per socket read.
- Timeouts from ``request.extensions["timeout"]`` (connect, read, write;
  ``pool`` never applies since nothing waits for a connection).
- A request sent on a reused connection that fails before a single response
  byte arrives is retried once on a new connection: the server closed the
  idle connection (keep-alive timeout) as we sent on it. A request that must
  never reach the server twice (creating a batch) opts out with
  ``extensions={NO_RESEND: True}``: the server may have acted on it before
  the connection died, and the caller finds out rather than sending it again.
- A connection goes back to the pool only when its response body was read
  to the end and neither side asked to close; anything else (errors,
  cancellation, a response closed early) closes it.
- TLS through anyio with the system's trust store (``SSL_CERT_FILE`` and
  friends first; see ``_tls``), ALPN ``http/1.1``.

Not handled here, by design: proxies (:func:`default_transport` returns
``None`` when the environment configures one, so httpx's stock transport and
its proxy support are used), HTTP/2, ``Expect: 100-continue``, upgrades.

Opt out with ``HOLYSHEEP_TRANSPORT=httpx`` in the environment.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import datetime
import errno
import heapq
import ipaddress
import logging
import math
import os
import socket
import ssl
import time
import urllib.request
import weakref
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import anyio
import anyio.abc
import httpx

from ._compat import running_library
from ._tls import create_ssl_context

__all__ = ["ChunkedDecoder", "Transport", "TransportStats", "default_transport"]

log = logging.getLogger("holysheep_async")

MAX_HEAD = 64 * 1024
MAX_LINE = 8 * 1024
READ_SIZE = 64 * 1024
SMALL_WRITE = 16 * 1024
_NO_BODY_STATUS = frozenset({204, 304})
_HEX = b"0123456789abcdefABCDEF"


def default_transport() -> Transport | None:
    """The transport ``AsyncClient`` builds its httpx client with, or None for httpx's own.

    None when ``HOLYSHEEP_TRANSPORT=httpx`` is set, or when the environment
    configures a proxy (``HTTPS_PROXY``, ``ALL_PROXY``, ...): httpx applies
    environment proxies only to its own transport, so it keeps that case.
    """
    choice = os.environ.get("HOLYSHEEP_TRANSPORT", "").strip().lower()
    if choice == "httpx":
        return None
    if choice not in ("", "default", "holysheep"):
        log.warning("HOLYSHEEP_TRANSPORT=%r is not 'httpx' or 'default': ignored", choice)
    proxies = {k: v for k, v in urllib.request.getproxies().items() if k != "no" and v}
    if proxies:
        log.debug("proxy configured in the environment (%s): using httpx's transport", *proxies)
        return None
    return Transport()


# -- the codec ------------------------------------------------------------------------


class ChunkedDecoder:
    """Incremental ``Transfer-Encoding: chunked`` decoder.

    ``feed(data)`` returns the body bytes those bytes completed (every chunk
    in them joined); ``done`` turns true after the last chunk and trailers,
    and ``extra`` holds any bytes that followed.

    >>> d = ChunkedDecoder()
    >>> d.feed(b"5\\r\\nhello\\r\\n0\\r\\n\\r\\n"), d.done
    (b'hello', True)
    """

    __slots__ = ("_buf", "_remaining", "_state", "done", "extra")

    _SIZE, _DATA, _DATA_END, _TRAILER = range(4)

    def __init__(self) -> None:
        self._buf = b""
        self._remaining = 0
        self._state = self._SIZE
        self.done = False
        self.extra = b""

    def feed(self, data: bytes) -> bytes:
        if self.done:
            self.extra += data
            return b""
        out: list[bytes] = []
        if self._state == self._SIZE and not self._buf:
            # The common case of a streamed answer: whole chunks, most often one per
            # read. Anything else (extensions, the last chunk, a chunk cut by the
            # read) is left to the general loop below from where this stopped.
            n = len(data)
            pos = 0
            while True:
                eol = data.find(b"\r\n", pos, pos + 18)
                if eol <= pos:
                    break
                size_text = data[pos:eol]
                if size_text.strip(_HEX):
                    break
                start = eol + 2
                end = start + int(size_text, 16)
                if end == start or end + 2 > n or data[end : end + 2] != b"\r\n":
                    break
                if end + 2 == n:
                    if not out:
                        return data[start:end]
                    out.append(data[start:end])
                    return b"".join(out)
                out.append(data[start:end])
                pos = end + 2
            if pos:
                data = data[pos:]
        buf = self._buf + data if self._buf else data
        n = len(buf)
        pos = 0
        state = self._state
        remaining = self._remaining
        while pos < n:
            if state == self._DATA:
                take = min(remaining, n - pos)
                out.append(buf[pos : pos + take] if take != n or pos else buf)
                pos += take
                remaining -= take
                if not remaining:
                    state = self._DATA_END
            elif state == self._SIZE:
                eol = buf.find(b"\r\n", pos)
                if eol < 0:
                    if n - pos > MAX_LINE:
                        raise httpx.RemoteProtocolError("chunk size line too long")
                    break
                line = buf[pos:eol]
                size_text = line.split(b";", 1)[0].strip()
                try:
                    if not size_text or len(size_text) > 16 or size_text.strip(_HEX):
                        raise ValueError
                    remaining = int(size_text, 16)
                except ValueError:
                    raise httpx.RemoteProtocolError(
                        f"bad chunk size line {bytes(line[:40])!r}"
                    ) from None
                pos = eol + 2
                state = self._DATA if remaining else self._TRAILER
            elif state == self._DATA_END:
                if n - pos < 2:
                    break
                if buf[pos : pos + 2] != b"\r\n":
                    raise httpx.RemoteProtocolError("chunk not followed by CRLF")
                pos += 2
                state = self._SIZE
            else:  # trailers: header lines up to an empty line
                eol = buf.find(b"\r\n", pos)
                if eol < 0:
                    if n - pos > MAX_HEAD:
                        raise httpx.RemoteProtocolError("chunked trailers too long")
                    break
                empty = eol == pos
                pos = eol + 2
                if empty:
                    self.done = True
                    self.extra = buf[pos:]
                    pos = n
                    break
        self._buf = buf[pos:] if pos < n else b""
        self._state = state
        self._remaining = remaining
        if not out:
            return b""
        return out[0] if len(out) == 1 else b"".join(out)


def _parse_head(head: bytes) -> tuple[bytes, int, bytes, list[tuple[bytes, bytes]]]:
    """Status line and header lines (no final blank line) -> version, status, reason, headers."""
    lines = head.split(b"\r\n")
    status_line = lines[0]
    version, _, rest = status_line.partition(b" ")
    code, _, reason = rest.partition(b" ")
    if version[:7] != b"HTTP/1." or len(code) != 3 or not code.isdigit():
        raise httpx.RemoteProtocolError(f"bad status line {status_line[:80]!r}")
    headers: list[tuple[bytes, bytes]] = []
    for line in lines[1:]:
        name, sep, value = line.partition(b":")
        if not sep or not name or name[-1:] in b" \t" or line[:1] in b" \t":
            raise httpx.RemoteProtocolError(f"bad header line {line[:80]!r}")
        headers.append((name, value.strip(b" \t")))
    return version, int(code), reason, headers


def _header_tokens(headers: list[tuple[bytes, bytes]], name: bytes) -> list[bytes]:
    out: list[bytes] = []
    for k, v in headers:
        if k.lower() == name:
            out += [t.strip().lower() for t in v.split(b",") if t.strip()]
    return out


# -- connections -----------------------------------------------------------------------


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


async def _asyncio_connect_ip(
    host: str, port: int, timeout: float | None
) -> tuple[asyncio.Transport, _Protocol]:
    """A TCP connection to an IP address on asyncio: ``TimeoutError`` after ``timeout``.

    ``loop.create_connection`` with a host resolves it, and anyio's timeout
    is a cancel scope: together twice the CPU of connecting a socket of our
    own and handing it to the loop.
    """
    loop = asyncio.get_running_loop()
    addr = host.strip("[]")
    sock = socket.socket(socket.AF_INET6 if ":" in addr else socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            sock.connect((addr, port))
        except BlockingIOError:
            done: asyncio.Future[None] = loop.create_future()
            fd = sock.fileno()
            loop.add_writer(fd, _settle, done, None)
            timer = (
                None if timeout is None else loop.call_later(timeout, _settle, done, TimeoutError())
            )
            try:
                await done
            finally:
                loop.remove_writer(fd)
                if timer is not None:
                    timer.cancel()
            error = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if error:
                raise OSError(error, os.strerror(error))
        transport, protocol = await loop.create_connection(_Protocol, sock=sock)
    except BaseException:
        sock.close()
        raise
    return transport, protocol


def _settle(future: asyncio.Future[None], error: BaseException | None) -> None:
    if not future.done():
        if error is None:
            future.set_result(None)
        else:
            future.set_exception(error)


def _timeout(request: httpx.Request, which: str) -> float | None:
    value = request.extensions.get("timeout", {}).get(which)
    return None if value is None else float(value)


class _Protocol(asyncio.Protocol):
    """The asyncio side of :class:`_AsyncioStream`: buffers what arrives, wakes the reader."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.chunks: collections.deque[bytes] = collections.deque()
        self.size = 0
        self.eof = False
        self.exc: BaseException | None = None
        self.waiter: asyncio.Future[None] | None = None
        self.drain: asyncio.Future[None] | None = None
        self.write_paused = False
        self.read_paused = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def _wake(self) -> None:
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def data_received(self, data: bytes) -> None:
        self.chunks.append(data)
        self.size += len(data)
        if self.size > _READ_HIGH and not self.read_paused and self.transport is not None:
            self.read_paused = True  # the reader is behind: let TCP push back
            self.transport.pause_reading()
        self._wake()

    def eof_received(self) -> bool | None:
        self.eof = True
        self._wake()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.eof = True
        self.exc = exc
        self._wake()
        self.resume_writing()

    def pause_writing(self) -> None:
        self.write_paused = True

    def resume_writing(self) -> None:
        self.write_paused = False
        drain = self.drain
        if drain is not None and not drain.done():
            drain.set_result(None)


_READ_HIGH = 256 * 1024


class _AsyncioStream(anyio.abc.ByteStream):
    """A plain TCP connection on asyncio's own protocol API.

    anyio's asyncio socket stream pauses and resumes reading around every
    receive (two ``epoll_ctl`` calls and the selector's bookkeeping, about a
    quarter of a streamed chunk's CPU); this one keeps reading and buffers,
    pausing only when the reader falls 256 KiB behind.
    """

    def __init__(self, transport: asyncio.Transport, protocol: _Protocol) -> None:
        self._transport = transport
        self._protocol = protocol
        self._closed = False

    @property
    def extra_attributes(self) -> Mapping[Any, Callable[[], Any]]:
        sock = self._transport.get_extra_info("socket")
        return {anyio.abc.SocketAttribute.raw_socket: lambda: sock}

    async def receive(self, max_bytes: int = READ_SIZE) -> bytes:
        proto = self._protocol
        if not proto.chunks:
            if self._closed:
                raise anyio.ClosedResourceError
            if not proto.eof:
                waiter = proto.waiter = asyncio.get_running_loop().create_future()
                try:
                    await waiter
                finally:
                    proto.waiter = None
            if not proto.chunks:
                if self._closed:
                    raise anyio.ClosedResourceError
                if proto.exc is not None:
                    raise anyio.BrokenResourceError from proto.exc
                raise anyio.EndOfStream
        else:
            await asyncio.sleep(0)  # a checkpoint, as every receive is one
        chunks = proto.chunks
        data = chunks.popleft() if len(chunks) == 1 else b"".join(chunks)
        chunks.clear()
        proto.size = 0
        if proto.read_paused:
            proto.read_paused = False
            self._transport.resume_reading()
        return data

    async def send(self, item: bytes) -> None:
        # A checkpoint first, as anyio's streams do: a task cancelled before it
        # sends must not have sent (nothing may reach the server unknown to the caller).
        await asyncio.sleep(0)
        proto = self._protocol
        if self._closed:
            raise anyio.ClosedResourceError
        if proto.exc is not None or self._transport.is_closing():
            raise anyio.BrokenResourceError from proto.exc
        self._transport.write(item)
        while proto.write_paused and not self._transport.is_closing():
            drain = proto.drain = asyncio.get_running_loop().create_future()
            try:
                await drain
            finally:
                proto.drain = None
        if proto.exc is not None:
            raise anyio.BrokenResourceError from proto.exc

    async def send_eof(self) -> None:
        self._transport.write_eof()

    async def aclose(self) -> None:
        self._closed = True
        self._transport.abort()
        self._protocol._wake()


class _TrioStream(anyio.abc.ByteStream):
    """A trio TCP connection read straight off its socket.

    trio's socket ``recv`` tries the call first and waits only when it would
    block: on a stream whose bytes trickle in, that is two system calls and
    two wrapper layers (trio's, anyio's) per read. Here: wait until readable,
    then one ``recv``. ``owner``: the anyio stream the socket belongs to
    (sending and closing are then its); None for a socket of our own
    (:meth:`connect`, for an IP address: anyio's connect costs ~3x the CPU).
    """

    def __init__(
        self, sock: socket.socket, trio: Any, owner: anyio.abc.ByteStream | None = None
    ) -> None:
        self._sock = sock
        self._trio = trio
        self._owner = owner
        self._closed = False

    @classmethod
    async def connect(cls, trio: Any, host: str, port: int) -> _TrioStream:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            await trio.lowlevel.checkpoint_if_cancelled()
            err = sock.connect_ex((host.strip("[]"), port))
            if err in (errno.EINPROGRESS, errno.EWOULDBLOCK, errno.EAGAIN):
                await trio.lowlevel.wait_writable(sock)
                err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if err:
                raise OSError(err, os.strerror(err))
        except BaseException:
            sock.close()
            raise
        return cls(sock, trio)

    @property
    def extra_attributes(self) -> Mapping[Any, Callable[[], Any]]:
        if self._owner is not None:
            return self._owner.extra_attributes
        sock = self._sock
        return {anyio.abc.SocketAttribute.raw_socket: lambda: sock}

    async def receive(self, max_bytes: int = READ_SIZE) -> bytes:
        trio = self._trio
        sock = self._sock
        while True:
            if self._closed:
                raise anyio.ClosedResourceError
            try:
                await trio.lowlevel.wait_readable(sock)
            except trio.ClosedResourceError:
                raise anyio.ClosedResourceError from None
            except OSError as exc:
                raise anyio.BrokenResourceError from exc
            if self._closed:
                raise anyio.ClosedResourceError
            try:
                data = sock.recv(max_bytes)
            except BlockingIOError:
                continue  # woken but nothing to read after all
            except OSError as exc:
                raise anyio.BrokenResourceError from exc
            if data:
                return data
            raise anyio.EndOfStream

    async def send(self, item: bytes) -> None:
        if self._owner is not None:
            await self._owner.send(item)
            return
        trio = self._trio
        sock = self._sock
        # Cancelled before sending: nothing is sent (as trio's own sockets do).
        await trio.lowlevel.checkpoint_if_cancelled()
        view = memoryview(item)
        while view:
            if self._closed:
                raise anyio.ClosedResourceError
            try:
                view = view[sock.send(view) :]
            except BlockingIOError:
                try:
                    await trio.lowlevel.wait_writable(sock)
                except trio.ClosedResourceError:
                    raise anyio.ClosedResourceError from None
            except OSError as exc:
                raise anyio.BrokenResourceError from exc
        await trio.lowlevel.cancel_shielded_checkpoint()

    async def send_eof(self) -> None:
        if self._owner is not None:
            await self._owner.send_eof()
        else:
            self._sock.shutdown(socket.SHUT_WR)

    async def aclose(self) -> None:
        self._closed = True
        if self._owner is not None:
            await self._owner.aclose()
            return
        if self._sock.fileno() >= 0:
            self._trio.lowlevel.notify_closing(self._sock)
            self._sock.close()


class _TrioWatchdog:
    """One system task per trio run that expires reads past their deadline.

    trio has no loop timers; a cancel scope per read costs ~8 us. Connections
    register the deadline they must be looked at by (see ``_Connection``);
    the watchdog sleeps until the earliest and calls them back.
    """

    def __init__(self, trio: Any) -> None:
        self._trio = trio
        self._heap: list[tuple[float, int, _Connection]] = []
        self._seq = 0
        self._stale = 0
        self._scope: Any = None

    @classmethod
    def current(cls, trio: Any) -> _TrioWatchdog:
        global _WATCHDOG
        if _WATCHDOG is None:
            _WATCHDOG = trio.lowlevel.RunVar("holysheep_async.watchdog")
        try:
            dog: _TrioWatchdog = _WATCHDOG.get()
        except LookupError:
            dog = cls(trio)
            _WATCHDOG.set(dog)
            trio.lowlevel.spawn_system_task(dog._run, name="holysheep_async read timeouts")
        return dog

    def discard(self) -> None:
        """An entry no longer counts (its connection closed or re-armed earlier).

        Stale entries are dropped once they are half the heap, so closed
        connections are not kept alive until their old deadlines pass.
        """
        self._stale += 1
        heap = self._heap
        if self._stale * 2 > len(heap):
            heap[:] = [e for e in heap if e[2]._timer_at == e[0]]
            heapq.heapify(heap)
            self._stale = 0

    def arm(self, conn: _Connection, when: float) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (when, self._seq, conn))
        scope = self._scope
        if scope is not None and when < scope.deadline:
            scope.deadline = when

    async def _run(self) -> None:
        trio = self._trio
        heap = self._heap
        while True:
            now = trio.current_time()
            while heap and heap[0][0] <= now:
                when, _, conn = heapq.heappop(heap)
                if when != conn._timer_at and self._stale:
                    self._stale -= 1  # a stale entry leaves the heap
                try:
                    conn._on_timer(when)
                except Exception:  # never let one connection take the run down
                    log.exception("expiring a read failed")
            with trio.CancelScope(deadline=heap[0][0] if heap else math.inf) as scope:
                self._scope = scope
                await trio.sleep_forever()
            self._scope = None


_WATCHDOG: Any = None


@dataclass(frozen=True)
class TransportStats:
    """A snapshot of a :class:`Transport`'s pool (``transport.stats()``)."""

    #: Connections carrying a request or an unread response body now.
    in_use: int
    #: Connections kept for reuse.
    idle: int
    #: Connections opened so far.
    opened: int


class _Connection:
    __slots__ = (
        "_deadline",
        "_dog",
        "_loop",
        "_sock",
        "_timer",
        "_timer_at",
        "_trio",
        "buf",
        "idle_since",
        "key",
        "leased",
        "reused",
        "stream",
        "timed_out",
    )

    def __init__(self, key: tuple[bytes, bytes, int], stream: anyio.abc.ByteStream) -> None:
        self.key = key
        self.stream = stream
        self.buf = b""
        self.reused = False
        self.leased = False  # counted in the transport's in-use connections
        self.idle_since = 0.0
        self.timed_out = False
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
        self._timer_at = math.inf  # when the armed timer fires (inf: not armed)
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

    def now(self) -> float:
        """The running loop's clock (the one deadlines are given in)."""
        if self._loop is not None:
            return self._loop.time()
        if self._trio is not None:
            return float(self._trio.current_time())
        return anyio.current_time()

    def _arm(self, when: float) -> None:
        superseded = self._timer_at != math.inf
        self._timer_at = when
        if self._loop is not None:
            if self._timer is not None:
                self._timer.cancel()
            self._timer = self._loop.call_at(when, self._on_timer, when)
        else:
            assert self._dog is not None
            if superseded:
                self._dog.discard()
            self._dog.arm(self, when)

    def _on_timer(self, when: float) -> None:
        """The timer fired: expire the read in progress if it is past its deadline."""
        if when != self._timer_at:
            return  # superseded by an earlier timer (trio's heap keeps old entries)
        self._timer = None
        self._timer_at = math.inf
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
                if deadline < self._timer_at:
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

    async def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._timer_at != math.inf:
            self._timer_at = math.inf
            if self._dog is not None:
                self._dog.discard()  # its entry in the watchdog's heap is stale now
        stream = self.stream
        if isinstance(stream, _AsyncioStream) or (
            isinstance(stream, _TrioStream) and stream._owner is None
        ):
            await stream.aclose()  # nothing to wait for, nothing to cancel
            return
        with anyio.CancelScope(shield=True):
            await anyio.aclose_forcefully(self.stream)


#: Request extension: do not send this request again on a new connection when a
#: reused one dies before answering (see the module docstring).
NO_RESEND = "holysheep_no_resend"


class _StaleConnection(Exception):
    """A reused connection failed before any response byte: safe to send again."""


class _Body(httpx.AsyncByteStream):
    """A response body read off a connection; gives the connection back when fully read.

    Besides iteration (what httpx uses), :meth:`next_piece` reads it directly:
    the streaming code takes that path when a response came from this
    transport (``response.extensions["holysheep_async.body"]``), which skips
    httpx's per-read layers and folds its stall deadline into the read's timer.
    """

    __slots__ = (
        "_chunked",
        "_conn",
        "_decoder",
        "_done",
        "_keep",
        "_left",
        "_length",
        "_response",
        "_started",
        "_timeout",
        "_transport",
    )

    def __init__(
        self,
        transport: Transport,
        conn: _Connection,
        *,
        length: int | None,
        chunked: bool,
        keep_alive: bool,
        timeout: float | None,
    ) -> None:
        self._transport = transport
        self._conn: _Connection | None = conn
        self._length = length
        self._left = length or 0
        self._chunked = chunked
        self._decoder = ChunkedDecoder() if chunked else None
        self._keep = keep_alive
        self._timeout = timeout
        self._done = False
        # For response.elapsed once the body is read (httpx sets it only on its
        # own send path). A weak reference: the response holds this body.
        self._response: Callable[[], httpx.Response | None] | None = None
        self._started = 0.0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        while True:
            piece = await self.next_piece()
            if not piece:
                return
            yield piece

    async def next_piece(self, stall: float = math.inf) -> bytes | None:
        """The next bytes of the body; b"" at its end.

        ``stall``: a deadline on the running loop's clock; None when it passes
        before the next bytes arrive (the connection is closed then). The
        request's read timeout applies to every read as well.
        """
        while True:
            conn = self._conn
            if conn is None or self._done:
                return b""
            decoder = self._decoder
            if decoder is None and self._length is not None and not self._left:
                self._done = True  # Content-Length: 0
                await self._finish()
                return b""
            data = conn.buf
            if data:
                conn.buf = b""
            else:
                timeout = self._timeout
                if stall == math.inf and timeout is None:
                    data = await conn.receive_until(math.inf)
                else:
                    deadline = math.inf if timeout is None else conn.now() + timeout
                    if stall < deadline:
                        if conn.timed_out:
                            # The timer fired as the last bytes came in: whose deadline?
                            if conn.now() < stall:
                                raise httpx.ReadTimeout("timed out waiting for the server")
                            await self._finish()
                            return None
                        try:
                            data = await conn.receive_until(stall)
                        except httpx.ReadTimeout:
                            await self._finish()
                            return None
                    else:
                        data = await conn.receive_until(deadline)
                if not data:
                    if decoder is not None:
                        raise httpx.RemoteProtocolError(
                            "peer closed connection without sending complete message body"
                            " (incomplete chunked read)"
                        )
                    if self._length is not None:
                        raise httpx.RemoteProtocolError(
                            "peer closed connection without sending complete message body:"
                            f" received {self._length - self._left} bytes,"
                            f" expected {self._length}"
                        )
                    # Read until the server closes: this is the end.
                    self._keep = False
                    self._done = True
                    await self._finish()
                    return b""
            if decoder is not None:
                piece = decoder.feed(data)
                if decoder.done:
                    # Bytes after the body: the server is out of step with us.
                    self._keep = self._keep and not decoder.extra
                    self._done = True
                    await self._finish()
                if piece:
                    return piece
            elif self._length is not None:
                left = self._left
                if len(data) >= left:
                    self._keep = self._keep and len(data) == left
                    self._done = True
                    self._left = 0
                    await self._finish()
                    return data[:left] if len(data) > left else data
                self._left = left - len(data)
                return data
            else:
                return data

    async def _finish(self) -> None:
        conn, self._conn = self._conn, None
        ref, self._response = self._response, None
        if ref is not None:
            response = ref()
            if response is not None:
                response.elapsed = datetime.timedelta(seconds=time.perf_counter() - self._started)
        if conn is not None:
            self._transport._unlease(conn)
            if self._done and self._keep:
                await self._transport._release(conn)
            else:
                await conn.close()

    async def aclose(self) -> None:
        await self._finish()

    @property
    def finished(self) -> bool:
        """Read to its end or closed: the connection is no longer this body's."""
        return self._conn is None


class Transport(httpx.AsyncBaseTransport):
    """HTTP/1.1 over anyio streams with an O(1) idle-connection pool; asyncio and trio.

    >>> http = httpx.AsyncClient(transport=Transport())  # doctest: +SKIP

    ``verify``/``cert``/``trust_env`` build the SSL context as httpx does
    (or pass ``ssl_context``). ``max_idle_per_host``: idle connections kept
    per host (more are closed when returned). ``keepalive_expiry``: seconds
    an idle connection is kept.
    """

    def __init__(
        self,
        *,
        verify: bool | str | ssl.SSLContext = True,
        cert: Any = None,
        trust_env: bool = True,
        ssl_context: ssl.SSLContext | None = None,
        max_idle_per_host: int = 256,
        keepalive_expiry: float = 5.0,
    ) -> None:
        self._verify = verify
        self._cert = cert
        self._trust_env = trust_env
        self._ssl_context = ssl_context
        self._idle: dict[tuple[bytes, bytes, int], list[_Connection]] = {}
        self._max_idle = max_idle_per_host
        self._expiry = keepalive_expiry
        self._expired: list[_Connection] = []
        self._closed = False
        #: Connections opened so far (for tests and benchmarks).
        self.connections_opened = 0
        self._in_use = 0

    # -- pool ----------------------------------------------------------------------

    @property
    def idle_connections(self) -> int:
        return sum(len(v) for v in self._idle.values())

    @property
    def connections_in_use(self) -> int:
        """Connections leased to a request: from sending it until its body is read or closed."""
        return self._in_use

    def stats(self) -> TransportStats:
        """The pool now: connections in use, idle, opened so far."""
        return TransportStats(self._in_use, self.idle_connections, self.connections_opened)

    def _lease(self, conn: _Connection) -> _Connection:
        conn.leased = True
        self._in_use += 1
        return conn

    def _unlease(self, conn: _Connection) -> None:
        # Idempotent: a connection leaves the in-use count once, whichever path ends it.
        if conn.leased:
            conn.leased = False
            self._in_use -= 1

    def _ssl(self) -> ssl.SSLContext:
        if self._ssl_context is None:
            if isinstance(self._verify, ssl.SSLContext):
                ctx = self._verify
            else:
                ctx = create_ssl_context(  # verify=True: the system's trust store
                    verify=self._verify, cert=self._cert, trust_env=self._trust_env
                )
            ctx.set_alpn_protocols(["http/1.1"])
            self._ssl_context = ctx
        return self._ssl_context

    async def _connect(self, key: tuple[bytes, bytes, int], request: httpx.Request) -> _Connection:
        scheme, host, port = key
        hostname = host.decode("ascii")
        timeout = _timeout(request, "connect")
        if scheme == b"http" and _is_ip(hostname) and running_library() == "asyncio":
            # The common local case (an inference server, a relay on 127.0.0.1):
            # a socket of our own, its timeout a loop timer, not a cancel scope.
            try:
                transport, protocol = await _asyncio_connect_ip(hostname, port, timeout)
            except TimeoutError:
                raise httpx.ConnectTimeout(f"timed out connecting to {hostname}:{port}") from None
            except OSError as exc:
                raise httpx.ConnectError(f"cannot connect to {hostname}:{port}: {exc}") from exc
            self.connections_opened += 1
            return _Connection(key, _AsyncioStream(transport, protocol))
        try:
            with anyio.fail_after(timeout):
                if scheme == b"https":
                    stream: anyio.abc.ByteStream = await anyio.connect_tcp(
                        hostname,
                        port,
                        tls=True,
                        ssl_context=self._ssl(),
                        tls_hostname=hostname,
                        tls_standard_compatible=False,
                    )
                elif running_library() == "asyncio":
                    # Happy eyeballs only where there can be a choice of address: its
                    # staggered race costs ~100 us of CPU per connection even with one.
                    transport, protocol = await asyncio.get_running_loop().create_connection(
                        _Protocol, hostname, port, happy_eyeballs_delay=0.25
                    )
                    stream = _AsyncioStream(transport, protocol)
                elif running_library() == "trio" and _is_ip(hostname):
                    import trio

                    stream = await _TrioStream.connect(trio, hostname, port)
                else:
                    stream = await anyio.connect_tcp(hostname, port)
                    sock = stream.extra(anyio.abc.SocketAttribute.raw_socket, None)
                    if sock is not None and running_library() == "trio":
                        import trio

                        stream = _TrioStream(sock, trio, owner=stream)
        except TimeoutError:
            raise httpx.ConnectTimeout(f"timed out connecting to {hostname}:{port}") from None
        except (OSError, ssl.SSLError, anyio.BrokenResourceError) as exc:
            raise httpx.ConnectError(f"cannot connect to {hostname}:{port}: {exc}") from exc
        self.connections_opened += 1
        return _Connection(key, stream)

    def _take_idle(self, key: tuple[bytes, bytes, int]) -> _Connection | None:
        stack = self._idle.get(key)
        if not stack:
            return None
        now = time.monotonic()
        while stack:
            conn = stack.pop()
            if now - conn.idle_since < self._expiry:
                return conn
            # Expired: close in the background of the next await (no await here).
            self._expired.append(conn)
        return None

    async def _release(self, conn: _Connection) -> None:
        if self._closed or conn.timed_out:
            await conn.close()
            return
        stack = self._idle.setdefault(conn.key, [])
        if len(stack) >= self._max_idle:
            await conn.close()
            return
        conn.reused = True
        conn.idle_since = time.monotonic()
        stack.append(conn)

    async def aclose(self) -> None:
        self._closed = True
        idle, self._idle = self._idle, {}
        for stack in idle.values():
            for conn in stack:
                await conn.close()
        await self._close_expired()

    async def _close_expired(self) -> None:
        expired, self._expired = self._expired, []
        for conn in expired:
            await conn.close()

    # -- requests ------------------------------------------------------------------

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self._closed:
            raise RuntimeError("the transport is closed")
        url = request.url
        scheme = url.raw_scheme
        if scheme not in (b"http", b"https"):
            raise httpx.UnsupportedProtocol(f"unsupported URL scheme {url.scheme!r}")
        port = url.port or (443 if scheme == b"https" else 80)
        key = (scheme, url.raw_host, port)
        head, body = await self._encode(request)
        if self._expired:
            await self._close_expired()
        conn = self._take_idle(key)
        if conn is not None:
            try:
                return await self._exchange(self._lease(conn), request, head, body)
            except _StaleConnection as exc:
                if request.extensions.get(NO_RESEND):
                    raise httpx.RemoteProtocolError(
                        "server disconnected without sending a response (on a reused"
                        " connection; not sent again: the server may have acted on it)"
                    ) from exc
                log.debug("idle connection to %s was closed by the server: reconnecting", key[1])
        conn = self._lease(await self._connect(key, request))
        return await self._exchange(conn, request, head, body)

    async def _encode(self, request: httpx.Request) -> tuple[bytes, bytes | None]:
        """The request head, and the whole body when it is in memory (None: stream it)."""
        target = request.url.raw_path
        parts = [request.method.encode("ascii"), b" ", target, b" HTTP/1.1\r\n"]
        for name, value in request.headers.raw:
            parts += [name, b": ", value, b"\r\n"]
        parts.append(b"\r\n")
        head = b"".join(parts)
        lines = len(request.headers.raw) + 2
        if head.count(b"\n") != lines or head.count(b"\r") != lines:
            raise httpx.LocalProtocolError("CR or LF inside a request header or target")
        try:
            body: bytes | None = request.content
        except httpx.RequestNotRead:
            body = None
        return head, body

    async def _send_body(
        self, conn: _Connection, request: httpx.Request, timeout: float | None
    ) -> None:
        chunked = "chunked" in request.headers.get("transfer-encoding", "").lower()
        stream = request.stream
        assert isinstance(stream, httpx.AsyncByteStream)
        async for part in stream:
            if part:
                await conn.send(b"%x\r\n%b\r\n" % (len(part), part) if chunked else part, timeout)
        if chunked:
            await conn.send(b"0\r\n\r\n", timeout)

    async def _exchange(
        self, conn: _Connection, request: httpx.Request, head: bytes, body: bytes | None
    ) -> httpx.Response:
        """Send ``request`` on ``conn`` and read the response head; the body stays on the wire.

        Unless the whole body came with the head (a small answer with a
        Content-Length): then the response carries it read, and the
        connection is back in the pool before httpx sees the response.
        """
        started = time.perf_counter()
        write_timeout = _timeout(request, "write")
        read_timeout = _timeout(request, "read")
        got_bytes = False
        try:
            try:
                if body is None:
                    await conn.send(head, write_timeout)
                    await self._send_body(conn, request, write_timeout)
                else:
                    data = head + body
                    # An idle connection's send buffer (16 KiB at least) takes a small
                    # request without blocking: no write timeout to arm (~10 us saved).
                    await conn.send(data, write_timeout if len(data) > SMALL_WRITE else None)
                buf = conn.buf
                while True:
                    end = buf.find(b"\r\n\r\n")
                    if end >= 0:
                        version, status, reason, headers = _parse_head(buf[:end])
                        buf = buf[end + 4 :]
                        if 100 <= status < 200:
                            if status == 101:
                                raise httpx.RemoteProtocolError(
                                    "protocol upgrades are not supported"
                                )
                            continue  # informational: the real answer follows
                        break
                    if len(buf) > MAX_HEAD:
                        raise httpx.RemoteProtocolError("response head larger than 64 KiB")
                    data = await conn.receive(read_timeout)
                    if not data:
                        if not got_bytes and conn.reused:
                            raise _StaleConnection
                        raise httpx.RemoteProtocolError(
                            "server disconnected without sending a complete response"
                            if got_bytes
                            else "server disconnected without sending a response"
                        )
                    got_bytes = True
                    buf += data
            except (httpx.WriteError, httpx.ReadError) as exc:
                if not got_bytes and conn.reused:
                    raise _StaleConnection from exc
                raise
            conn.buf = buf
            response, reuse = self._response(
                conn, request, version, status, reason, headers, read_timeout, started
            )
        except BaseException:
            self._unlease(conn)
            await conn.close()
            raise
        if reuse is not None:
            # Read whole already (see _response): hand the connection back now.
            self._unlease(conn)
            response.elapsed = datetime.timedelta(seconds=time.perf_counter() - started)
            if reuse:
                await self._release(conn)
            else:
                await conn.close()
        return response

    def _response(
        self,
        conn: _Connection,
        request: httpx.Request,
        version: bytes,
        status: int,
        reason: bytes,
        headers: list[tuple[bytes, bytes]],
        read_timeout: float | None,
        started: float,
    ) -> tuple[httpx.Response, bool | None]:
        """The response, and whether to reuse the connection now (None: once its body is read)."""
        connection = _header_tokens(headers, b"connection")
        keep = b"close" not in connection if version == b"HTTP/1.1" else b"keep-alive" in connection
        if keep and b"close" in request.headers.get("connection", "").lower().encode():
            keep = False
        length: int | None = None
        chunked = False
        if request.method == "HEAD" or status in _NO_BODY_STATUS:
            length = 0
        else:
            codings = _header_tokens(headers, b"transfer-encoding")
            if codings:
                chunked = codings[-1] == b"chunked"
                if not chunked:
                    keep = False  # framed by closing the connection
            else:
                lengths = {v.strip() for k, v in headers if k.lower() == b"content-length"}
                if lengths:
                    values = {x.strip() for v in lengths for x in v.split(b",")}
                    if len(values) != 1 or not next(iter(values)).isdigit():
                        raise httpx.RemoteProtocolError(f"bad Content-Length {sorted(values)!r}")
                    length = int(next(iter(values)))
                else:
                    keep = False
        buf = conn.buf
        if (
            length is not None
            and len(buf) >= length
            and _header_tokens(headers, b"content-encoding") in ([], [b"identity"])
        ):
            # The whole body is here: no stream to read, no httpx layers to go through.
            conn.buf = b""
            response = httpx.Response(
                status,
                headers=headers,
                content=buf if len(buf) == length else buf[:length],
                extensions={"http_version": version, "reason_phrase": reason},
            )
            # Bytes after the body: the server is out of step with us.
            return response, keep and len(buf) == length
        stream = _Body(
            self,
            conn,
            length=length,
            chunked=chunked,
            keep_alive=keep,
            timeout=read_timeout,
        )
        response = httpx.Response(
            status,
            headers=headers,
            stream=stream,
            extensions={
                "http_version": version,
                "reason_phrase": reason,
                "holysheep_async.body": stream,
            },
        )
        stream._response = weakref.ref(response)
        stream._started = started
        return response, None
