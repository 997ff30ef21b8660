"""One request's exchange on a connection, and the response body read off it.

Above the connection, below the pool. The pool leases a connection and hands
:func:`exchange` a *give-back* callback: whoever ends the connection's part in
this request (the whole answer came with its head, the body was read to its
end or closed early, an error) calls ``give_back(conn, reuse)`` once, and the
pool decides what that means (back to the idle stack, or closed). Nothing
here knows the pool (httpcore's pool wraps the body, ``PoolByteStream``, to
the same end; a callback costs no layer per read).
"""

from __future__ import annotations

import datetime
import math
import time
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx

from .._lean import header_value, headers_from_triples, read_response
from .connection import _Connection, _NothingWritten, _StaleConnection
from .http11 import (
    _NO_BODY_STATUS,
    MAX_HEAD,
    SMALL_WRITE,
    ChunkedDecoder,
    _parse_head,
    find_head_end,
)

#: The pool's end of a lease: ``give_back(conn, reuse)``; ``reuse`` False closes it.
GiveBack = Callable[[_Connection, bool], Awaitable[None]]


class _Body(httpx.AsyncByteStream):
    """A response body read off a connection; gives the connection back when it ends.

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
        "_give_back",
        "_keep",
        "_left",
        "_length",
        "_response",
        "_started",
        "_timeout",
    )

    def __init__(
        self,
        give_back: GiveBack,
        conn: _Connection,
        *,
        length: int | None,
        chunked: bool,
        keep_alive: bool,
        timeout: float | None,
    ) -> None:
        self._give_back = give_back
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
            await self._give_back(conn, self._done and self._keep)

    async def aclose(self) -> None:
        await self._finish()

    @property
    def finished(self) -> bool:
        """Read to its end or closed: the connection is no longer this body's."""
        return self._conn is None


async def _send_body(conn: _Connection, request: httpx.Request, timeout: float | None) -> None:
    chunked = "chunked" in request.headers.get("transfer-encoding", "").lower()
    stream = request.stream
    assert isinstance(stream, httpx.AsyncByteStream)
    async for part in stream:
        if part:
            await conn.send(b"%x\r\n%b\r\n" % (len(part), part) if chunked else part, timeout)
    if chunked:
        await conn.send(b"0\r\n\r\n", timeout)


async def exchange(
    conn: _Connection,
    request: httpx.Request,
    head: bytes,
    body: bytes | None,
    give_back: GiveBack,
) -> httpx.Response:
    """Send ``request`` on ``conn`` and read the response head; the body stays on the wire.

    ``head``: the encoded request head; ``body``: the whole body when it is in
    memory (None: stream ``request.stream``). Unless the whole response body
    came with the head (a small answer with a Content-Length): then the
    response carries it read, and the connection is given back before httpx
    sees the response. On any error the connection is given back closed.

    A reused connection that fails before a response byte raises
    :class:`_StaleConnection` (the pool decides whether to send again).
    """
    started = time.perf_counter()
    timeouts = request.extensions.get("timeout")
    if timeouts:
        write = timeouts.get("write")
        read = timeouts.get("read")
        write_timeout = None if write is None else float(write)
        read_timeout = None if read is None else float(read)
    else:
        write_timeout = read_timeout = None
    got_bytes = False
    # Set when sending failed: the server may have answered early and closed
    # (413, 401 before the whole body): its answer is read and returned.
    unsent: httpx.WriteError | None = None
    try:
        try:
            wrote = False
            try:
                if body is None:
                    await conn.send(head, write_timeout)
                    wrote = True
                    await _send_body(conn, request, write_timeout)
                else:
                    data = head + body
                    # An idle connection's send buffer (16 KiB at least) takes a small
                    # request without blocking: no write timeout to arm (~10 us saved).
                    await conn.send(data, write_timeout if len(data) > SMALL_WRITE else None)
            except _NothingWritten as exc:
                if not wrote and conn.reused:
                    # Found closed before a byte of this request went out.
                    raise _StaleConnection(sent=False) from exc
                unsent = exc
            except httpx.WriteError as exc:
                unsent = exc  # as httpcore does: read what the server said first
            buf = conn.buf
            while True:
                end, start = find_head_end(buf) if buf else (-1, -1)
                if end >= 0:
                    version, status, reason, headers = _parse_head(buf[:end])
                    buf = buf[start:]
                    if 100 <= status < 200:
                        if status == 101:
                            raise httpx.RemoteProtocolError("protocol upgrades are not supported")
                        continue  # informational: the real answer follows
                    break
                if len(buf) > MAX_HEAD:
                    raise httpx.RemoteProtocolError("response head larger than 64 KiB")
                data = await conn.receive(read_timeout)
                if not data:
                    if unsent is not None and not got_bytes:
                        raise unsent
                    if not got_bytes and conn.reused:
                        raise _StaleConnection(sent=True)
                    raise httpx.RemoteProtocolError(
                        "server disconnected without sending a complete response"
                        if got_bytes
                        else "server disconnected without sending a response"
                    )
                got_bytes = True
                buf += data
        except (httpx.WriteError, httpx.ReadError) as exc:
            if not got_bytes and conn.reused:
                raise _StaleConnection(sent=True) from exc
            if unsent is not None and not got_bytes and exc is not unsent:
                raise unsent from exc  # the write failed first: that is the error
            raise
        conn.buf = buf
        response, reuse = _response(
            conn, request, version, status, reason, headers, read_timeout, started,
            give_back, sent=unsent is None,
        )  # fmt: skip
    except BaseException:
        await give_back(conn, False)
        raise
    if reuse is not None:
        # Read whole already (see _response): hand the connection back now.
        response.elapsed = datetime.timedelta(seconds=time.perf_counter() - started)
        await give_back(conn, reuse)
    return response


def _tokens(values: list[bytes]) -> list[bytes]:
    """The comma-separated tokens of a header's values, stripped and lowercased."""
    return [t.strip().lower() for v in values for t in v.split(b",") if t.strip()]


#: The headers that decide how a response is framed and whether its connection is kept.
_FRAMING = frozenset({b"connection", b"transfer-encoding", b"content-length", b"content-encoding"})


def _response(
    conn: _Connection,
    request: httpx.Request,
    version: bytes,
    status: int,
    reason: bytes,
    headers: list[tuple[bytes, bytes]],
    read_timeout: float | None,
    started: float,
    give_back: GiveBack,
    *,
    sent: bool = True,
) -> tuple[httpx.Response, bool | None]:
    """The response, and whether to reuse the connection now (None: once its body is read).

    ``sent``: False when the request could not be sent whole (an early answer):
    the connection is not reused then.
    """
    # One pass: the headers as httpx keeps them, and the few that frame the body.
    triples = [(k, k.lower(), v) for k, v in headers]
    framing: dict[bytes, list[bytes]] = {}
    for _, name, value in triples:
        if name in _FRAMING:
            framing.setdefault(name, []).append(value)
    connection = _tokens(framing[b"connection"]) if b"connection" in framing else []
    keep = b"close" not in connection if version == b"HTTP/1.1" else b"keep-alive" in connection
    keep = keep and sent
    if keep:
        asked = header_value(request.headers, b"connection")
        if asked is not None and b"close" in asked.lower():
            keep = False
    length: int | None = None
    chunked = False
    if request.method == "HEAD" or status in _NO_BODY_STATUS:
        length = 0
    else:
        codings = _tokens(framing[b"transfer-encoding"]) if b"transfer-encoding" in framing else []
        if codings:
            chunked = codings[-1] == b"chunked"
            if not chunked:
                keep = False  # framed by closing the connection
        elif b"content-length" in framing:
            given = framing[b"content-length"]
            if len(given) == 1 and given[0].isdigit():
                length = int(given[0])  # the common case: one plain number
            else:
                values = {x.strip() for v in given for x in v.split(b",")}
                if len(values) != 1 or not next(iter(values)).isdigit():
                    raise httpx.RemoteProtocolError(f"bad Content-Length {sorted(values)!r}")
                length = int(next(iter(values)))
        else:
            keep = False
    buf = conn.buf
    extensions: dict[str, Any] = {"http_version": version, "reason_phrase": reason}
    if (
        length is not None
        and len(buf) >= length
        and (
            b"content-encoding" not in framing
            or _tokens(framing[b"content-encoding"]) in ([], [b"identity"])
        )
    ):
        # The whole body is here: no stream to read, no httpx layers to go through.
        conn.buf = b""
        response = read_response(
            status,
            headers_from_triples(triples),
            buf if len(buf) == length else buf[:length],
            extensions,
        )
        # Bytes after the body: the server is out of step with us.
        return response, keep and len(buf) == length
    stream = _Body(
        give_back,
        conn,
        length=length,
        chunked=chunked,
        keep_alive=keep,
        timeout=read_timeout,
    )
    extensions["holysheep_async.body"] = stream
    response = httpx.Response(
        status, headers=headers_from_triples(triples), stream=stream, extensions=extensions
    )
    stream._response = weakref.ref(response)
    stream._started = started
    return response, None
