"""The :class:`Transport`: the idle-connection pool, leases, and the give-back callback.

The top of the transport: it connects (``connection.connect``), leases a
connection to one request's :func:`~.exchange.exchange`, and gets it back
through :meth:`Transport._give_back`, the callback the exchange and the
response body call when the connection's part in the request ends.
"""

from __future__ import annotations

import logging
import os
import ssl
import time
from dataclasses import dataclass
from typing import Any

import httpx

from .._compat import cross_loop_error, current_loop, loop_alive
from .._tls import create_ssl_context
from .connection import NO_RESEND, Key, _Connection, _StaleConnection, _timeout, connect
from .exchange import exchange
from .http11 import encode_head
from .proxy import Proxy, ProxyRoutes, ProxySetting, UnsupportedProxy, auth_error, auth_refused
from .tunnel import open_tunnel

log = logging.getLogger("holysheep_async")


def default_transport(proxy: ProxySetting | None = None) -> Transport | None:
    """The transport ``AsyncClient`` builds its httpx client with, or None for httpx's own.

    ``proxy``: the client's ``proxy=`` (else the environment's proxies apply,
    see ``proxy``). None when ``HOLYSHEEP_TRANSPORT=httpx`` is set, or for a
    proxy this transport does not speak (SOCKS, ``https://`` to the proxy):
    httpx's transport applies those.
    """
    choice = os.environ.get("HOLYSHEEP_TRANSPORT", "").strip().lower()
    if choice == "httpx":
        return None
    if choice not in ("", "default", "holysheep"):
        log.warning("HOLYSHEEP_TRANSPORT=%r is not 'httpx' or 'default': ignored", choice)
    try:
        return Transport(proxy=proxy)
    except UnsupportedProxy as exc:
        log.debug("%s: using httpx's transport", exc)
        return None


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
    (or pass ``ssl_context``). ``proxy``: an ``http://`` forward proxy for
    every request; without it (and with ``trust_env``) the environment's
    proxies apply, as the module ``proxy`` describes. ``max_idle_per_host``:
    idle connections kept per host (more are closed when returned).
    ``keepalive_expiry``: seconds an idle connection is kept.

    Raises ``UnsupportedProxy`` (a ``ValueError``) for a SOCKS or ``https://``
    proxy, given or from the environment.
    """

    def __init__(
        self,
        *,
        verify: bool | str | ssl.SSLContext = True,
        cert: Any = None,
        trust_env: bool = True,
        ssl_context: ssl.SSLContext | None = None,
        proxy: ProxySetting | None = None,
        max_idle_per_host: int = 256,
        keepalive_expiry: float = 5.0,
    ) -> None:
        # Read once, as httpx reads the environment when a client is made.
        self._proxies = ProxyRoutes.configure(proxy, trust_env=trust_env)
        self._via: dict[Key, Proxy | None] = {}
        self._verify = verify
        self._cert = cert
        self._trust_env = trust_env
        self._ssl_context = ssl_context
        self._idle: dict[Key, list[_Connection]] = {}
        self._max_idle = max_idle_per_host
        self._expiry = keepalive_expiry
        self._expired: list[_Connection] = []
        self._closed = False
        self._loop: object | None = None  # the event loop the pooled connections belong to
        #: Connections opened so far (for tests and benchmarks).
        self.connections_opened = 0
        self._in_use = 0
        # Made once: a bound method per request would be an allocation on the hot path.
        self._give_back_cb = self._give_back
        # By URL object: its URL, pool key and request target (see _target).
        self._targets: dict[int, tuple[httpx.URL, Key, bytes]] = {}

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

    async def _give_back(self, conn: _Connection, reuse: bool) -> None:
        """A lease ends (the exchange's and the body's callback): keep ``conn`` or close it.

        Idempotent for the count: a connection leaves the in-use count once,
        whichever path ends it. Kept only when ``reuse`` and the pool may: not
        closed, the read timer never fired, its loop the pool's, room on its stack.
        """
        if conn.leased:
            conn.leased = False
            self._in_use -= 1
        if reuse and not (self._closed or conn.timed_out or conn.loop is not self._loop):
            stack = self._idle.setdefault(conn.key, [])
            if len(stack) < self._max_idle:
                conn.reused = True
                conn.idle_since = time.monotonic()
                stack.append(conn)
                return
        await conn.close()

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

    def _take_idle(self, key: Key) -> _Connection | None:
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
        known = self._targets.get(id(url))
        if known is None or known[0] is not url:
            known = self._target(url)
        _, key, target = known
        if current_loop() is not self._loop:
            self._adopt(current_loop())
        scheme = key[0]
        proxy = None if self._proxies is None else self._route(key)
        if proxy is None or scheme == b"https":  # direct, or inside a tunnel: origin form
            head = encode_head(request, target)
        else:  # to a forward proxy: the absolute form, and the proxy's own header lines
            head = encode_head(request, b"http://" + url.netloc + target, proxy.header_lines)
        try:
            body: bytes | None = request.content
        except httpx.RequestNotRead:
            body = None  # streamed
        if self._expired:
            await self._close_expired()
        conn = self._take_idle(key)
        response = None
        try:
            if conn is not None:
                try:
                    response = await exchange(
                        self._lease(conn), request, head, body, self._give_back_cb
                    )
                except _StaleConnection as exc:
                    if exc.sent and request.extensions.get(NO_RESEND):
                        raise httpx.RemoteProtocolError(
                            "server disconnected without sending a response (on a reused"
                            " connection; not sent again: the server may have acted on it)"
                        ) from exc
                    log.debug("idle connection to %s closed by the server: reconnecting", key[1])
            if response is None:
                conn = self._lease(await self._connect(key, request, proxy))
                response = await exchange(conn, request, head, body, self._give_back_cb)
        except httpx.TransportError as exc:
            if proxy is None or "proxy" in str(exc):
                raise
            # Through a proxy, "the server" may be the proxy: say which way it went.
            raise type(exc)(f"{exc} (through proxy {proxy})") from exc
        if (
            proxy is not None
            and scheme == b"http"
            and response.status_code in (401, 407)
            and auth_refused(
                proxy, response.status_code, response.headers.get("www-authenticate", "")
            )
        ):
            await response.aclose()  # the proxy's answer, not the server's
            raise auth_error(proxy, response.status_code)
        return response

    def _target(self, url: httpx.URL) -> tuple[httpx.URL, Key, bytes]:
        """``url``'s pool key and request target, kept for the next request to the same URL
        object (the client reuses its parsed URLs; httpx works these out on every access)."""
        scheme = url.raw_scheme
        if scheme not in (b"http", b"https"):
            raise httpx.UnsupportedProtocol(f"unsupported URL scheme {url.scheme!r}")
        port = url.port or (443 if scheme == b"https" else 80)
        known = (url, (scheme, url.raw_host, port), url.raw_path)
        if len(self._targets) >= 256:
            self._targets.clear()
        self._targets[id(url)] = known  # the URL is kept in it: its id is not reused meanwhile
        return known

    def _route(self, key: Key) -> Proxy | None:
        """The proxy for ``key``'s target (None: direct), looked up once per target."""
        try:
            return self._via[key]
        except KeyError:
            assert self._proxies is not None
            if len(self._via) > 4096:
                self._via.clear()
            proxy = self._via[key] = self._proxies.select(key[0], key[1].decode("ascii"), key[2])
            return proxy

    async def _connect(self, key: Key, request: httpx.Request, proxy: Proxy | None) -> _Connection:
        timeout = _timeout(request, "connect")
        if proxy is None:
            conn = await connect(key, timeout, self._ssl() if key[0] == b"https" else None)
        elif key[0] == b"https":
            conn = await open_tunnel(key, proxy, timeout, self._ssl())
        else:
            conn = await connect(key, timeout, None, proxy=proxy)
        self.connections_opened += 1
        return conn
