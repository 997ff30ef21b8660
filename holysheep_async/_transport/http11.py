"""The HTTP/1.1 codec: response heads, chunked bodies, and a response body read off a connection."""

from __future__ import annotations

import datetime
import math
import time
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING

import anyio
import httpx

if TYPE_CHECKING:
    from .connection import _Connection
    from .pool import Transport

MAX_HEAD = 64 * 1024
MAX_LINE = 8 * 1024
READ_SIZE = 64 * 1024
SMALL_WRITE = 16 * 1024
_NO_BODY_STATUS = frozenset({204, 304})
_HEX = b"0123456789abcdefABCDEF"


class NothingSent(anyio.BrokenResourceError):
    """A socket adapter's send found the connection closed before writing a byte of it."""


class _NothingWritten(httpx.WriteError):
    """Sending failed with not a byte of this send written (see :class:`NothingSent`)."""


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
                # Lines end in CRLF, or a bare LF (RFC 9112 section 2.2 lets a recipient take it).
                eol = buf.find(b"\n", pos)
                if eol < 0:
                    if n - pos > MAX_LINE:
                        raise httpx.RemoteProtocolError("chunk size line too long")
                    break
                line = buf[pos : eol - 1 if eol > pos and buf[eol - 1] == 13 else eol]
                size_text = line.split(b";", 1)[0].strip(b" \t")
                try:
                    if not size_text or len(size_text) > 16 or size_text.strip(_HEX):
                        raise ValueError
                    remaining = int(size_text, 16)
                except ValueError:
                    raise httpx.RemoteProtocolError(
                        f"bad chunk size line {bytes(line[:40])!r}"
                    ) from None
                pos = eol + 1
                state = self._DATA if remaining else self._TRAILER
            elif state == self._DATA_END:
                if buf[pos] == 10:  # a bare LF
                    pos += 1
                elif n - pos < 2:
                    break
                elif buf[pos : pos + 2] == b"\r\n":
                    pos += 2
                else:
                    raise httpx.RemoteProtocolError("chunk not followed by CRLF")
                state = self._SIZE
            else:  # trailers: header lines up to an empty line
                eol = buf.find(b"\n", pos)
                if eol < 0:
                    if n - pos > MAX_HEAD:
                        raise httpx.RemoteProtocolError("chunked trailers too long")
                    break
                empty = eol == pos or (eol == pos + 1 and buf[pos] == 13)
                pos = eol + 1
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


def find_head_end(buf: bytes) -> tuple[int, int]:
    """Where the response head in ``buf`` ends and its body starts; (-1, -1) if not yet.

    The blank line ends the head. Lines end in CRLF, or in a bare LF: RFC 9112
    (section 2.2) lets a recipient take a bare LF as the line terminator, and
    some servers send one. A head not starting like a status line fails at
    once (rather than waiting for a blank line that may never come).
    """
    end = buf.find(b"\r\n\r\n")
    if end >= 0:
        return end, end + 4
    lf = buf.find(b"\n\n")
    crlf = buf.find(b"\n\r\n")
    if lf >= 0 and (crlf < 0 or lf < crlf):
        return lf, lf + 2
    if crlf >= 0:
        return crlf, crlf + 3
    if buf[:5] != b"HTTP/"[: len(buf)]:
        raise httpx.RemoteProtocolError(f"bad status line {buf[:80]!r} (not an HTTP response)")
    eol = buf.find(b"\n")
    if eol >= 0:
        _status_line(buf[:eol].removesuffix(b"\r"))
    return -1, -1


def _status_line(line: bytes) -> tuple[bytes, int, bytes]:
    version, _, rest = line.partition(b" ")
    code, _, reason = rest.partition(b" ")
    if version[:7] != b"HTTP/1." or len(code) != 3 or not code.isdigit():
        raise httpx.RemoteProtocolError(f"bad status line {line[:80]!r}")
    return version, int(code), reason


def _parse_head(head: bytes) -> tuple[bytes, int, bytes, list[tuple[bytes, bytes]]]:
    """Status line and header lines (no final blank line) -> version, status, reason, headers."""
    lines = head.split(b"\r\n")
    if not head.count(b"\n") == head.count(b"\r") == len(lines) - 1:
        # Not every line ends in CRLF: bare LFs (allowed), or a bare CR (not).
        lines = [line.removesuffix(b"\r") for line in head.split(b"\n")]
        for line in lines:
            if b"\r" in line:
                raise httpx.RemoteProtocolError(f"bare CR in the response head: {line[:80]!r}")
    version, code, reason = _status_line(lines[0])
    headers: list[tuple[bytes, bytes]] = []
    for line in lines[1:]:
        name, sep, value = line.partition(b":")
        if not sep or not name or name[-1:] in b" \t" or line[:1] in b" \t":
            raise httpx.RemoteProtocolError(f"bad header line {line[:80]!r}")
        headers.append((name, value.strip(b" \t")))
    return version, code, reason, headers


def _header_tokens(headers: list[tuple[bytes, bytes]], name: bytes) -> list[bytes]:
    out: list[bytes] = []
    for k, v in headers:
        if k.lower() == name:
            out += [t.strip().lower() for t in v.split(b",") if t.strip()]
    return out


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
