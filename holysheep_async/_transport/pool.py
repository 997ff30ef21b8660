"""The :class:`Transport`: the idle-connection pool, connecting, and one request's exchange."""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import logging
import os
import ssl
import time
import urllib.request
import weakref
from dataclasses import dataclass
from typing import Any

import anyio
import anyio.abc
import httpx

from .._compat import cross_loop_error, current_loop, loop_alive, running_library
from .._tls import create_ssl_context
from .asyncio_stream import _asyncio_connect_ip, _AsyncioStream, _Protocol
from .connection import NO_RESEND, _Connection, _StaleConnection, _timeout
from .http11 import (
    _NO_BODY_STATUS,
    MAX_HEAD,
    SMALL_WRITE,
    _Body,
    _header_tokens,
    _NothingWritten,
    _parse_head,
    find_head_end,
)
from .trio_stream import _TrioStream

log = logging.getLogger("holysheep_async")


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



def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True



@dataclass(frozen=True)
class TransportStats:
    """A snapshot of a :class:`Transport`'s pool (``transport.stats()``)."""

    #: Connections carrying a request or an unread response body now.
    in_use: int
    #: Connections kept for reuse.
    idle: int
    #: Connections opened so far.
    opened: int


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
        self._loop: object | None = None  # the event loop the pooled connections belong to
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
            if now - conn.idle_since < self._expiry and conn.idle_ok():
                return conn
            # Expired, or closed by the server: closed at the next await (none here).
            self._expired.append(conn)
        return None

    async def _release(self, conn: _Connection) -> None:
        if self._closed or conn.timed_out or conn.loop is not self._loop:
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
        if current_loop() is not self._loop:
            self._adopt(current_loop(), closing=True)
        idle, self._idle = self._idle, {}
        for stack in idle.values():
            for conn in stack:
                await conn.close()
        await self._close_expired()

    def _adopt(self, loop: object | None, *, closing: bool = False) -> None:
        """Serve ``loop`` from now on; the connections of the loop before are dropped.

        A connection belongs to the event loop that opened it: its socket is
        registered there, its read timer runs there. When that loop has ended
        (``asyncio.run`` or ``anyio.run`` called again, asyncio then trio, a loop
        per thread one after another), its idle connections are closed without
        it. While it still runs in another thread, sharing the pool is not
        possible: a clear error at once, rather than a request waiting forever
        on a loop that is not looking.
        """
        old = self._loop
        if old is not None and loop_alive(old):
            if closing:
                self._idle, self._expired = {}, []  # its own loop may still close them
                return
            raise cross_loop_error("connections")
        idle, self._idle = self._idle, {}
        expired, self._expired = self._expired, []
        for conn in expired:
            conn.abandon()
        for stack in idle.values():
            for conn in stack:
                conn.abandon()
        self._loop = loop

    def _after_fork(self) -> object:
        """In a forked child: forget the parent's connections, never closing them.

        Their sockets are the parent's too (closing one here could send a TLS
        close alert or unregister it from the parent's epoll instance); the
        child connects anew on its first request. Returns what it forgot, for
        ``holysheep_async._fork`` to keep from the garbage collector.
        """
        forgotten = (self._idle, self._expired)
        self._idle, self._expired = {}, []
        self._loop = None
        self._in_use = 0
        return forgotten

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
        if current_loop() is not self._loop:
            self._adopt(current_loop())
        head, body = await self._encode(request)
        if self._expired:
            await self._close_expired()
        conn = self._take_idle(key)
        if conn is not None:
            try:
                return await self._exchange(self._lease(conn), request, head, body)
            except _StaleConnection as exc:
                if exc.sent and request.extensions.get(NO_RESEND):
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
                        await self._send_body(conn, request, write_timeout)
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
                    end, start = find_head_end(buf)
                    if end >= 0:
                        version, status, reason, headers = _parse_head(buf[:end])
                        buf = buf[start:]
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
            response, reuse = self._response(
                conn, request, version, status, reason, headers, read_timeout, started,
                sent=unsent is None,
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
        *,
        sent: bool = True,
    ) -> tuple[httpx.Response, bool | None]:
        """The response, and whether to reuse the connection now (None: once its body is read).

        ``sent``: False when the request could not be sent whole (an early answer):
        the connection is not reused then.
        """
        connection = _header_tokens(headers, b"connection")
        keep = b"close" not in connection if version == b"HTTP/1.1" else b"keep-alive" in connection
        keep = keep and sent
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
