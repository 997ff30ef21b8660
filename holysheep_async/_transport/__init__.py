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
- Before an idle connection is reused it is checked, as httpcore does: one
  with anything to read (the server closed it: a keep-alive timeout, a load
  balancer; or it spoke unasked, a ``408``) is closed instead. On asyncio the
  protocol's state, then a zero-timeout poll of the socket (~1 us).
- A lean HTTP/1.1 codec: one buffer, ``Content-Length``, chunked and
  read-until-close bodies, 1xx responses skipped, no body for HEAD, 204 and
  304. Parsing chunked bodies joins every chunk in one read into one piece,
  so an SSE stream costs one Python iteration per socket read. Lines may end
  in a bare LF (RFC 9112, section 2.2); a head that is not HTTP fails at once.
- An early answer (a ``413`` or ``401`` sent before the request body was
  taken, then a close) is read and returned, not lost to the write error.
- Timeouts from ``request.extensions["timeout"]`` (connect, read, write;
  ``pool`` never applies since nothing waits for a connection).
- A request sent on a reused connection that fails before a single response
  byte arrives is retried once on a new connection: the server closed the
  idle connection (keep-alive timeout) as we sent on it. A request that must
  never reach the server twice (creating a batch) opts out with
  ``extensions={NO_RESEND: True}``: the server may have acted on it before
  the connection died, and the caller finds out rather than sending it again
  (found closed before a byte was written, it is sent again all the same).
- Connections belong to the event loop that opened them. On another loop,
  once that one has ended (``asyncio.run`` twice, asyncio then trio), the
  pool's connections are closed without it; while it still runs in another
  thread, a request fails at once with a ``RuntimeError`` (never a hang).
- A connection goes back to the pool only when its response body was read
  to the end and neither side asked to close; anything else (errors,
  cancellation, a response closed early) closes it.
- TLS through anyio with the system's trust store (``SSL_CERT_FILE`` and
  friends first; see ``_tls``), ALPN ``http/1.1``.

- ``http://`` forward proxies, from the environment (``HTTP_PROXY``,
  ``HTTPS_PROXY``, ``ALL_PROXY``, ``NO_PROXY``, as httpx reads them; loopback
  never proxied from there) or given (``Transport(proxy=...)``): a plain
  ``http://`` request goes to the proxy in absolute form, an ``https://`` one
  through a ``CONNECT`` tunnel with TLS to the target inside; tunnels are
  pooled per (proxy, target) like any connection, under the same timers,
  idle checks and early-answer handling. Basic credentials from the proxy
  URL go to the proxy only and are never shown.

Not handled here, by design: SOCKS and ``https://`` proxy URLs
(:func:`default_transport` returns ``None`` for those, so httpx's stock
transport and its proxy support are used), HTTP/2, ``Expect: 100-continue``,
upgrades.

Opt out with ``HOLYSHEEP_TRANSPORT=httpx`` in the environment.

Where things are, bottom to top (each module imports only those below it;
nothing below names a class above, not even for typing):

1. ``http11``: the codec. Request heads, response heads, chunked bodies;
   bytes in, bytes out. ``proxy``: which proxy a target goes through (pure).
2. ``asyncio_stream``, ``trio_stream``: the socket adapters of each runtime
   (and trio's read-timeout watchdog, which calls back any ``Timed``).
3. ``connection``: one connection; opening it, reads with their timer, writes.
4. ``exchange``: one request on a leased connection, and the response body
   read off it. It ends a lease by calling the ``give_back(conn, reuse)``
   callback it was handed, as httpcore's pool wraps the body
   (``PoolByteStream``) so that nothing below calls up. ``tunnel``: a
   connection through a proxy's ``CONNECT``, TLS inside.
5. ``pool``: the :class:`Transport`; the idle stacks, leases, the give-back.
"""

from __future__ import annotations

from .connection import NO_RESEND
from .http11 import ChunkedDecoder
from .pool import Transport, TransportStats, default_transport

__all__ = ["NO_RESEND", "ChunkedDecoder", "Transport", "TransportStats", "default_transport"]
