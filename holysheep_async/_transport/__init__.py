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
- TLS through anyio with httpx's own SSL context (certifi, ``SSL_CERT_FILE``
  and friends), ALPN ``http/1.1``.

Not handled here, by design: proxies (:func:`default_transport` returns
``None`` when the environment configures one, so httpx's stock transport and
its proxy support are used), HTTP/2, ``Expect: 100-continue``, upgrades.

Opt out with ``HOLYSHEEP_TRANSPORT=httpx`` in the environment.

Where things are (the seams httpcore has too): ``pool`` (the
:class:`Transport`: pool, connecting, one request's exchange), ``http11``
(the codec: response heads, chunked bodies, the response body stream),
``connection`` (one connection: reads with their timers, writes),
``asyncio_stream`` and ``trio_stream`` (the socket adapters of each runtime).
"""

from __future__ import annotations

from .connection import NO_RESEND
from .http11 import ChunkedDecoder
from .pool import Transport, TransportStats, default_transport

__all__ = ["NO_RESEND", "ChunkedDecoder", "Transport", "TransportStats", "default_transport"]
