"""The asyncio socket adapter: a TCP connection on asyncio's protocol API."""

from __future__ import annotations

import asyncio
import collections
import os
import socket
from collections.abc import Callable, Mapping
from typing import Any

import anyio
import anyio.abc

from .http11 import READ_SIZE, NothingSent


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
        if exc is not None and self.transport is not None:
            self._salvage(self.transport)
        self.eof = True
        self.exc = exc
        self._wake()
        self.resume_writing()

    def _salvage(self, transport: asyncio.Transport) -> None:
        """Take in what the server sent before the connection broke (its socket still open).

        A write that fails (the server answered 413 and reset the connection)
        makes asyncio drop the socket without reading what arrived before the
        reset: the answer the caller should get. Read through a duplicate of the
        descriptor (asyncio's socket wrapper does not read), never waiting.
        """
        sock = transport.get_extra_info("socket")
        if sock is None:
            return
        try:
            with socket.socket(fileno=os.dup(sock.fileno())) as dup:
                dup.setblocking(False)  # it is already (one open file): never wait here
                while data := dup.recv(READ_SIZE):
                    self.chunks.append(data)
                    self.size += len(data)
        except OSError:  # nothing more (BlockingIOError) or the reset itself
            pass

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

    def quiet(self) -> bool:
        """Nothing received and not closed: what an idle connection must be."""
        proto = self._protocol
        return not (
            proto.chunks or proto.eof or proto.exc is not None or self._transport.is_closing()
        )

    async def send(self, item: bytes) -> None:
        # A checkpoint first, as anyio's streams do: a task cancelled before it
        # sends must not have sent (nothing may reach the server unknown to the caller).
        await asyncio.sleep(0)
        proto = self._protocol
        if self._closed:
            raise anyio.ClosedResourceError
        if proto.eof or proto.exc is not None or self._transport.is_closing():
            raise NothingSent from proto.exc  # the server closed it: nothing of this went out
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

    def abandon(self) -> None:
        """Close it when its event loop is gone (see :func:`abandon_transport`)."""
        self._closed = True
        abandon_transport(self._transport)


def abandon_transport(transport: asyncio.Transport) -> None:
    """Close an asyncio transport whose event loop no longer runs, without that loop.

    ``abort()`` unregisters the socket and leaves closing it to a callback on the
    loop; a closed loop refuses the callback, so it is run here (asyncio's
    selector transports name it ``_call_connection_lost``; a transport without it
    is left to the garbage collector).
    """
    loop = getattr(transport, "_loop", None)
    try:
        transport.abort()
    except RuntimeError:  # "Event loop is closed"
        pass
    if loop is not None and loop.is_closed() and getattr(transport, "_sock", None) is not None:
        lost = getattr(transport, "_call_connection_lost", None)
        if lost is not None:
            lost(None)
