"""``AsyncClient``: configuration, the HTTP transport, limits, retries, and the resources.

``.chat``, ``.responses``, ``.batches``, ``.models``, ``.embeddings``, ``.files``.
"""

from __future__ import annotations

import math
import os
import platform
from collections.abc import Mapping
from types import TracebackType
from typing import Any

import httpx

from ._body import DEFAULT_MAX_RESPONSE_BYTES
from ._fork import forget_after_fork, forget_httpx_connections
from ._requester import Requester
from ._tls import create_ssl_context
from ._transport import Transport, default_transport
from ._version import __version__
from .batches import Batches
from .chat import Chat
from .errors import ConfigurationError
from .limits import Limiter, Limits
from .limits._shared import SharedLimiter
from .limits._shared_config import SharedLimits, default_namespace
from .pricing import UsageTally
from .resources import Embeddings, Files, Models
from .responses import Responses
from .retry import RetryPolicy

__all__ = ["DEFAULT_BASE_URL", "DEFAULT_TIMEOUT", "AsyncClient"]

DEFAULT_BASE_URL = "https://api.holysheep.ai/v1"
#: The official SDK's: an LLM call may take minutes (a long generation, a relay
#: holding the request in its own rate window), and a read timeout under that
#: re-sends a request the server is still running, which bills twice. Streams
#: are bounded by ``stream_idle_timeout`` (silence between data events) instead.
DEFAULT_TIMEOUT = httpx.Timeout(600.0, connect=10.0)
USER_AGENT = f"holysheep-async/{__version__} python/{platform.python_version()}"


class _Cookies(httpx.Cookies):
    """A cookie jar that skips parsing a response without ``Set-Cookie`` (~30 us each)."""

    def extract_cookies(self, response: httpx.Response) -> None:
        if "set-cookie" in response.headers:
            super().extract_cookies(response)

    def __bool__(self) -> bool:
        # httpx walks the whole jar to answer this (asked before every request);
        # a jar that never held a cookie has an empty table.
        return bool(getattr(self.jar, "_cookies", True)) and super().__bool__()


class _HTTPClient(httpx.AsyncClient):
    """The ``httpx.AsyncClient`` built when none is handed in: httpx's, with a faster jar.

    httpx parses every response for cookies through ``http.cookiejar``, which
    costs about a tenth of a small request's CPU even when there are none.
    Cookies the server does set are kept and sent back as before.
    """

    #: The requester may build requests without ``build_request`` (see Requester._build).
    _plain_build = True

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.cookies = {}
        transport = kwargs.get("transport")
        #: Our own transport, which the requester may call directly (Requester._send).
        self._holysheep_transport = transport if isinstance(transport, Transport) else None

    @property
    def cookies(self) -> httpx.Cookies:
        return self._jar

    @cookies.setter
    def cookies(self, cookies: Any) -> None:
        self._jar = _Cookies(cookies)


def _check_proxy(proxy: object) -> None:
    if isinstance(proxy, httpx.Proxy):
        return
    if not isinstance(proxy, (str, httpx.URL)):
        raise ConfigurationError(
            f"proxy must be a URL (str or httpx.URL) or an httpx.Proxy, got {type(proxy).__name__}"
        )
    text = str(proxy)
    try:
        url = httpx.URL(text if "://" in text else f"http://{text}")
    except httpx.InvalidURL:
        raise ConfigurationError("proxy is not a valid URL") from None  # may hold a password
    if url.scheme not in ("http", "https", "socks5", "socks5h") or not url.host:
        raise ConfigurationError(
            f"proxy must be an http://, https:// or socks5:// URL with a host, got a"
            f" {url.scheme}:// URL" + ("" if url.host else " without a host")
        )


def _check_number(name: str, value: object, *, allow_none: bool = True) -> None:
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigurationError(f"{name} must be a finite number, got {value!r}")
    if value <= 0:
        raise ConfigurationError(f"{name} must be > 0, got {value!r}")


class AsyncClient:
    """Async client for HolySheep and any OpenAI-compatible API, on asyncio and trio.

    >>> async with AsyncClient() as client:  # doctest: +SKIP
    ...     completion = await client.chat.create(model="gpt-4o", messages=[...])

    ``api_key`` defaults to ``HOLYSHEEP_API_KEY``; ``base_url`` to
    ``HOLYSHEEP_BASE_URL``, else ``https://api.holysheep.ai/v1``. A missing key
    is reported at the first request, not here. ``http_client``: your own
    ``httpx.AsyncClient`` (its timeouts, proxies, TLS settings are used, and
    it is not closed by ``aclose()``). HTTPS is verified against the system's
    trust store (``SSL_CERT_FILE`` / ``SSL_CERT_DIR`` first); for a CA of your
    own, pass ``http_client=httpx.AsyncClient(verify=ssl_context)``. ``retry``
    replaces the whole retry policy (``max_retries`` sets only its count).

    ``proxy``: a forward proxy for every request, ``"http://user:password@host:3128"``
    (``https://`` targets go through a ``CONNECT`` tunnel; TLS stays end to end).
    Without it the environment's ``HTTP_PROXY`` / ``HTTPS_PROXY`` / ``ALL_PROXY`` /
    ``NO_PROXY`` apply, loopback targets excepted. See docs/proxies.md.

    ``rpm`` / ``tpm`` / ``max_concurrency``: client-side limits (see
    :mod:`holysheep_async.limits`); ``burst``: how many requests may start at
    once under ``rpm`` (default: one second's worth, at least 1).

    ``timeout``: seconds, or an ``httpx.Timeout``; default
    ``httpx.Timeout(600, connect=10)``, as the official SDK. The read timeout
    bounds the wait for each read (a non-streamed answer, a stream's headers,
    each read of a stream; pings count as reads). ``client.timeout`` is the
    effective ``httpx.Timeout``.

    ``shared_limits``: ``"redis://host:6379/0"`` (or a :class:`SharedLimits` with
    its options) makes ``rpm`` / ``tpm`` / ``max_concurrency`` and the 429
    cooldown hold for every client on that Redis and ``limits_namespace``
    (default: this ``base_url`` and a hash of the key). See docs/shared-limits.md.

    ``stream_idle_timeout``: the longest silence allowed between SSE data
    events, counted from the response headers. Models that think silently for
    a long time before the first token need a larger value, or ``None``. A
    stream's read timeout is raised to it when it is the larger, so that it is
    the idle timeout that bounds a stream's silence (docs/proxies.md).

    ``max_response_bytes``: the most a non-streamed answer may read into memory
    (default 256 MiB, above the largest real answer: embeddings at the API's limits
    in float JSON, ~195 MB); a larger one fails while it is read, with
    :class:`~holysheep_async.errors.ResponseTooLargeError` naming the cap and the
    request. ``None``: no cap. Streams and downloads (to disk) are not capped by it.

    Made before ``os.fork()`` (a module imported by Celery's prefork pool or
    ``gunicorn --preload``), it works in the children: each connects anew and
    has a limiter and ``usage`` of its own (docs/workers.md).
    """

    def __init__(
        self,
        api_key: str | None = None,
        base_url: str | None = None,
        *,
        timeout: float | httpx.Timeout | None = None,
        max_retries: int = 3,
        rpm: float | None = None,
        tpm: float | None = None,
        max_concurrency: int | None = None,
        burst: int | None = None,
        stream_idle_timeout: float | None = 30.0,
        http_client: httpx.AsyncClient | None = None,
        retry: RetryPolicy | None = None,
        default_headers: Mapping[str, str] | None = None,
        allow_insecure_http: bool = False,
        shared_limits: str | SharedLimits | None = None,
        limits_namespace: str | None = None,
        max_response_bytes: int | None = DEFAULT_MAX_RESPONSE_BYTES,
        proxy: str | httpx.URL | httpx.Proxy | None = None,
    ) -> None:
        if api_key is None:
            api_key = os.environ.get("HOLYSHEEP_API_KEY") or None
        if api_key is not None and not isinstance(api_key, str):
            raise ConfigurationError(f"api_key must be a string, got {type(api_key).__name__}")
        if base_url is None:
            base_url = os.environ.get("HOLYSHEEP_BASE_URL") or DEFAULT_BASE_URL
        if not isinstance(base_url, str):
            raise ConfigurationError(f"base_url must be a string, got {type(base_url).__name__}")
        url = httpx.URL(base_url)
        if url.scheme not in ("http", "https") or not url.host:
            raise ConfigurationError(
                f"base_url must be an http:// or https:// URL, got {base_url!r}"
            )
        if timeout is None:
            timeout = DEFAULT_TIMEOUT
        elif not isinstance(timeout, httpx.Timeout):
            _check_number("timeout", timeout, allow_none=False)
            timeout = httpx.Timeout(float(timeout))
        _check_number("stream_idle_timeout", stream_idle_timeout)
        if isinstance(max_retries, bool) or not isinstance(max_retries, int) or max_retries < 0:
            raise ConfigurationError(f"max_retries must be an int >= 0, got {max_retries!r}")
        if retry is not None and not isinstance(retry, RetryPolicy):
            raise ConfigurationError(
                f"retry must be a RetryPolicy (or None), got {type(retry).__name__};"
                " for a count, pass max_retries=..."
            )
        if retry is None:
            retry = RetryPolicy(max_retries=max_retries)
        elif max_retries != 3 and max_retries != retry.max_retries:
            raise ConfigurationError("pass max_retries inside retry=RetryPolicy(...), not both")
        if not isinstance(allow_insecure_http, bool):
            raise ConfigurationError(
                f"allow_insecure_http must be True or False, got {allow_insecure_http!r}"
            )
        if max_response_bytes is not None and (
            isinstance(max_response_bytes, bool)
            or not isinstance(max_response_bytes, int)
            or max_response_bytes < 1
        ):
            raise ConfigurationError(
                "max_response_bytes must be an int >= 1 (bytes) or None,"
                f" got {max_response_bytes!r}"
            )
        if default_headers is not None and not (
            isinstance(default_headers, Mapping)
            and all(isinstance(k, str) and isinstance(v, str) for k, v in default_headers.items())
        ):
            raise ConfigurationError(
                f"default_headers must be a dict of str to str, got {default_headers!r:.80}"
            )
        if http_client is not None and not isinstance(http_client, httpx.AsyncClient):
            raise ConfigurationError(
                f"http_client must be an httpx.AsyncClient, got {type(http_client).__name__}"
            )
        if proxy is not None:
            _check_proxy(proxy)
            if http_client is not None:
                raise ConfigurationError(
                    "proxy= is for the client's own HTTP client; with http_client=, give the"
                    " proxy to your httpx.AsyncClient(proxy=...)"
                )
        if isinstance(shared_limits, str):
            shared_limits = SharedLimits(shared_limits)
        elif shared_limits is not None and not isinstance(shared_limits, SharedLimits):
            raise ConfigurationError(
                "shared_limits must be a redis:// URL or a SharedLimits,"
                f" got {type(shared_limits).__name__}"
            )
        if limits_namespace is not None and (
            not isinstance(limits_namespace, str) or not limits_namespace
        ):
            raise ConfigurationError(
                f"limits_namespace must be a non-empty string, got {limits_namespace!r}"
            )
        shared = shared_limits
        namespace = limits_namespace or default_namespace(str(url).rstrip("/"), api_key)

        def new_limiter() -> Limits:
            if shared is None:
                return Limiter(rpm=rpm, tpm=tpm, max_concurrency=max_concurrency, burst=burst)
            return SharedLimiter(
                shared, namespace, rpm=rpm, tpm=tpm, max_concurrency=max_concurrency, burst=burst
            )

        try:
            limiter = new_limiter()
        except ValueError as exc:
            raise ConfigurationError(str(exc)) from None
        #: A limiter with these settings and fresh state (a forked child's, see _after_fork).
        self._new_limiter = new_limiter
        self._owns_http = http_client is None
        if http_client is None:
            # Our pool and codec (DESIGN.md, Performance), http:// proxies included;
            # None -> httpx's own (SOCKS and https:// proxies, HOLYSHEEP_TRANSPORT=httpx).
            try:
                transport = default_transport(proxy)
                http_client = _HTTPClient(
                    timeout=timeout,
                    limits=httpx.Limits(max_connections=None, max_keepalive_connections=256),
                    follow_redirects=True,
                    transport=transport,
                    proxy=proxy if transport is None else None,
                    # The system's trust store (_tls). Ours makes its context at its first
                    # HTTPS connection; httpx's transport (and its proxies') needs it now.
                    verify=create_ssl_context() if transport is None else True,
                )
            except ImportError as exc:  # a SOCKS proxy without httpx[socks]
                raise ConfigurationError(str(exc)) from None
            except ConfigurationError:
                raise
            except (ValueError, httpx.InvalidURL) as exc:
                # Never the URL itself: it may hold the proxy's password.
                where = "proxy=" if proxy is not None else "the proxy in the environment"
                raise ConfigurationError(f"{where} cannot be used: {exc}") from None
        http = http_client
        headers = {"User-Agent": USER_AGENT, "Accept": "application/json"}
        headers.update(default_headers or {})
        self._requester = Requester(
            api_key=api_key,
            base_url=str(url).rstrip("/"),
            http=http,
            timeout=timeout,
            retry=retry,
            limiter=limiter,
            stream_idle_timeout=stream_idle_timeout,
            headers=headers,
            allow_insecure_http=allow_insecure_http,
            max_response_bytes=max_response_bytes,
        )
        self.chat = Chat(self._requester)
        self.responses = Responses(self._requester)
        self.batches = Batches(self._requester, self.chat, self.responses)
        self.models = Models(self._requester)
        self.embeddings = Embeddings(self._requester)
        self.files = Files(self._requester)
        #: Requests, tokens and cost of every answer so far, per model (``UsageTally``).
        self.usage = UsageTally()
        self._requester.usage_hooks.append(self.usage.record)
        self._closed = False
        forget_after_fork(self)

    def _after_fork(self) -> object:
        """In a forked child: fresh connections, limiter state and usage (see ``_fork``).

        The parent's sockets (its idle connections, a Redis connection) are
        forgotten, never closed from here; the child connects on its first
        request. An ``http_client`` handed in has its pools emptied the same way.
        """
        forgotten = forget_httpx_connections(self._requester.http)
        # A new limiter, as this client made it: the old one (the parent's Redis client
        # and task, leases, counters; its permits point at it) is kept, never used here.
        forgotten.append(self._requester.limiter)
        self._requester.limiter = self._new_limiter()
        self.usage.reset()
        return forgotten

    # -- configuration, readable but never the key -----------------------------

    @property
    def base_url(self) -> str:
        return self._requester.base_url

    @property
    def timeout(self) -> httpx.Timeout:
        return self._requester.timeout

    @property
    def max_retries(self) -> int:
        return self._requester.retry.max_retries

    @property
    def retry(self) -> RetryPolicy:
        return self._requester.retry

    @property
    def limiter(self) -> Limits:
        return self._requester.limiter

    @property
    def stream_idle_timeout(self) -> float | None:
        return self._requester.stream_idle_timeout

    @property
    def max_response_bytes(self) -> int | None:
        return self._requester.max_response_bytes

    @property
    def has_api_key(self) -> bool:
        return bool(self._requester._api_key)

    @property
    def http_client(self) -> httpx.AsyncClient:
        return self._requester.http

    def __repr__(self) -> str:
        key = "set" if self.has_api_key else "missing"
        return f"<AsyncClient base_url={self.base_url!r} api_key=<{key}>>"

    __str__ = __repr__

    def __reduce__(self) -> Any:
        raise TypeError("AsyncClient cannot be pickled (it holds a connection pool and a secret)")

    # -- lifecycle --------------------------------------------------------------

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connection pool (not a pool you handed in). Idempotent."""
        if self._closed:
            return
        self._closed = True
        try:
            await self._requester.limiter.aclose()
        finally:
            if self._owns_http:
                await self._requester.http.aclose()
