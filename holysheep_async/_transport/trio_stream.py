"""The trio socket adapter: a TCP connection read straight off its socket, and read timeouts."""

from __future__ import annotations

import errno
import heapq
import logging
import math
import os
import socket
from collections.abc import Callable, Mapping
from typing import Any, Protocol

import anyio
import anyio.abc

from .http11 import READ_SIZE, NothingSent

log = logging.getLogger("holysheep_async")


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
        #: The anyio stream that owns the socket (None: the socket is this stream's own).
        self.owner = owner
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
        if self.owner is not None:
            return self.owner.extra_attributes
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
        if self.owner is not None:
            await self.owner.send(item)
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
                if len(view) == len(item):
                    raise NothingSent from exc  # refused before a byte of it went out
                raise anyio.BrokenResourceError from exc
        await trio.lowlevel.cancel_shielded_checkpoint()

    async def send_eof(self) -> None:
        if self.owner is not None:
            await self.owner.send_eof()
        else:
            self._sock.shutdown(socket.SHUT_WR)

    async def aclose(self) -> None:
        self._closed = True
        if self.owner is not None:
            await self.owner.aclose()
            return
        if self._sock.fileno() >= 0:
            self._trio.lowlevel.notify_closing(self._sock)
            self._sock.close()

    def abandon(self) -> None:
        """Close it when the trio run it was used in is over (no trio call).

        A socket of its own is closed here; with an ``owner``, it only stops
        being usable: closing the owner is the caller's.
        """
        self._closed = True
        if self.owner is None:
            self._sock.close()


class Timed(Protocol):
    """What the watchdog looks after: a read timer that fires by calling ``on_timer``.

    (A connection is one; the watchdog knows nothing else of it.)
    """

    @property
    def timer_at(self) -> float:
        """When its armed timer fires (an entry at another time is stale)."""

    def on_timer(self, when: float) -> None:
        """The timer armed for ``when`` fired."""


class _TrioWatchdog:
    """One system task per trio run that expires reads past their deadline.

    trio has no loop timers; a cancel scope per read costs ~8 us. Connections
    register the deadline they must be looked at by (see ``connection``);
    the watchdog sleeps until the earliest and calls them back.
    """

    def __init__(self, trio: Any) -> None:
        self._trio = trio
        self._heap: list[tuple[float, int, Timed]] = []
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
            heap[:] = [e for e in heap if e[2].timer_at == e[0]]
            heapq.heapify(heap)
            self._stale = 0

    def arm(self, conn: Timed, when: float) -> None:
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
                if when != conn.timer_at and self._stale:
                    self._stale -= 1  # a stale entry leaves the heap
                try:
                    conn.on_timer(when)
                except Exception:  # never let one connection take the run down
                    log.exception("expiring a read failed")
            with trio.CancelScope(deadline=heap[0][0] if heap else math.inf) as scope:
                self._scope = scope
                await trio.sleep_forever()
            self._scope = None


_WATCHDOG: Any = None
