"""The HTTP/1.1 codec: request heads, response heads, chunked bodies. Bytes in, bytes out.

The bottom of the transport: it knows no connection, socket or pool (those
sit above it and take its functions). ``NothingSent`` and ``READ_SIZE`` are
the wire's vocabulary the socket adapters share.
"""

from __future__ import annotations

import anyio
import httpx

from .._lean import header_list

MAX_HEAD = 64 * 1024
MAX_LINE = 8 * 1024
READ_SIZE = 64 * 1024
SMALL_WRITE = 16 * 1024
_NO_BODY_STATUS = frozenset({204, 304})
_HEX = b"0123456789abcdefABCDEF"


class NothingSent(anyio.BrokenResourceError):
    """A socket adapter's send found the connection closed before writing a byte of it."""


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


def encode_head(request: httpx.Request, target: bytes, extra: bytes = b"") -> bytes:
    """The request's head: ``METHOD target HTTP/1.1``, its header lines, the blank line.

    ``target``: the origin form (``/v1/chat/completions?x=1``), or the absolute
    form for a forward proxy; ``extra``: header lines of the hop (a proxy's
    ``Proxy-Authorization``), each ending in CRLF. A CR or LF inside a header
    or the target (header injection, request smuggling) fails here, before a
    byte is sent.
    """
    headers = header_list(request.headers)
    parts = [request.method.encode("ascii"), b" ", target, b" HTTP/1.1\r\n"]
    for name, _, value in headers:
        parts += (name, b": ", value, b"\r\n")
    lines = len(headers) + 2
    if extra:
        parts.append(extra)
        lines += extra.count(b"\n")
    parts.append(b"\r\n")
    head = b"".join(parts)
    if head.count(b"\n") != lines or head.count(b"\r") != lines:
        raise httpx.LocalProtocolError("CR or LF inside a request header or target")
    return head
