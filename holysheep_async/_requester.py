"""The one place a request goes through: limits -> httpx -> status mapping -> retry.

Resources (chat, batches) get a :class:`Requester` handed in; they never see
the client, so nothing imports upward.
"""

from __future__ import annotations

import ipaddress
import logging
import re
import ssl
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from json import JSONEncoder
from typing import Any

import anyio
import httpx

from . import _lean, _otel
from ._body import DEFAULT_MAX_RESPONSE_BYTES, read_capped, read_error_body
from ._otel._propagate import inject_trace_context
from ._transport import NO_RESEND, Transport
from .errors import (
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    ConfigurationError,
    HolySheepError,
    NotFoundError,
    QuotaExceededError,
    TLSMismatchError,
    make_status_error,
)
from .limits import Limits, Permit
from .models import Usage
from .retry import RetryPolicy, parse_retry_after

__all__ = ["Reply", "Requester"]

log = logging.getLogger("holysheep_async")
_httpx_log = logging.getLogger("httpx")

Sleep = Callable[[float], Awaitable[None]]


@dataclass
class Reply:
    """A successful response, the permit it holds, and how it was obtained."""

    response: httpx.Response
    permit: Permit
    attempts: int

    async def aclose(self) -> None:
        """Close the response (streams) and free the concurrency slot."""
        try:
            await self.response.aclose()
        finally:
            self.permit.release()


def _json_bytes(value: Any) -> bytes:
    """A request's JSON body, exactly as httpx encodes ``json=``: compact, UTF-8, no NaN.

    orjson first where it is installed (a tenth of the stdlib's CPU), made to
    refuse what the stdlib encoder would not write the same way: subclasses of
    str, int, dict and list, dataclasses and datetimes (passed through, so
    they fail and the stdlib encodes or refuses them), and any ``null`` in its
    output (a NaN or an infinity, which orjson writes as null: the stdlib
    raises for those). Two values orjson writes that the stdlib refuses stay
    written: a ``uuid.UUID`` and an ``enum.Enum`` member (as their string and
    value). The stdlib encoder is made once (``json.dumps`` with options builds
    a new one per call). pydantic-core's ``to_json`` is not the same language:
    it writes a ``None`` key as "None", joins tuple keys, takes bytes and sets.
    """
    if _orjson_dumps is not None:
        try:
            out: bytes = _orjson_dumps(value, option=_ORJSON_OPTIONS)
        except TypeError:  # orjson.JSONEncodeError: let the stdlib say why (or encode it)
            pass
        else:
            if b"null" not in out:
                return out
    return _ENCODE(value).encode()


_ENCODE = JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode
try:  # the fast path (CPython; see pyproject.toml)
    import orjson

    _orjson_dumps: Callable[..., bytes] | None = orjson.dumps
    _ORJSON_OPTIONS = (
        orjson.OPT_PASSTHROUGH_SUBCLASS
        | orjson.OPT_PASSTHROUGH_DATACLASS
        | orjson.OPT_PASSTHROUGH_DATETIME
    )
except ImportError:  # pragma: no cover - PyPy, or installed without it
    _orjson_dumps = None
    _ORJSON_OPTIONS = 0


def describe_transport_error(exc: BaseException) -> str:
    """``Type: message`` of an httpx transport error, with the reason it wraps.

    httpx's transport on trio raises a ``ConnectError`` with no message for a
    TLS failure (the reason is two causes down); a certificate that does not
    verify says so and what to do.
    """
    seen: BaseException | None = exc
    reason = ""
    for _ in range(8):  # a chain is a few links long (and could, in theory, loop)
        if seen is None or isinstance(seen, ssl.SSLCertVerificationError):
            break
        reason = reason or str(seen)
        seen = seen.__cause__ or seen.__context__
    if isinstance(seen, ssl.SSLCertVerificationError):
        return (
            f"{type(exc).__name__}: TLS certificate verification failed: {seen.verify_message}"
            f" ({reason or seen}). A CA of your own: install it in the system's trust store,"
            " set SSL_CERT_FILE, or pass http_client=httpx.AsyncClient(verify=...)"
        )
    return f"{type(exc).__name__}: {reason}"


# OpenSSL's reasons for a handshake whose answer was not TLS at all (an HTTP server's
# "HTTP/1.1 400 ..." read as a TLS record).
_NOT_TLS = frozenset(
    {
        "WRONG_VERSION_NUMBER",
        "HTTP_REQUEST",
        "PACKET_LENGTH_TOO_LONG",
        "UNKNOWN_PROTOCOL",
        "RECORD_LAYER_FAILURE",
    }
)
# A path segment that is an API version: v1, v2, v1beta, v1alpha1.
_VERSION = re.compile(r"v\d+(?:[a-z]+\d*)?")
# Codes of a 404 that only says the path is unknown (not that a model or file is).
_BARE_404_CODES = frozenset({"not_found", "notfound", "404", "unknown_url", "invalid_url"})


def answered_plain_text(exc: BaseException) -> bool:
    """Whether a TLS handshake failed because the server's answer was not TLS."""
    seen: BaseException | None = exc
    for _ in range(8):
        if seen is None:
            return False
        if isinstance(seen, ssl.SSLError) and seen.reason in _NOT_TLS:
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def is_loopback(host: str) -> bool:
    if host in ("localhost", "localhost.localdomain") or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class Requester:
    """Sends requests for one client. Holds the secret; never shows it."""

    def __init__(
        self,
        *,
        api_key: str | None,
        base_url: str,
        http: httpx.AsyncClient,
        timeout: httpx.Timeout,
        retry: RetryPolicy,
        limiter: Limits,
        stream_idle_timeout: float | None,
        headers: Mapping[str, str],
        allow_insecure_http: bool = False,
        max_response_bytes: int | None = DEFAULT_MAX_RESPONSE_BYTES,
    ) -> None:
        self._api_key = api_key
        self.base_url = base_url.rstrip("/")
        self.http = http
        self.timeout = timeout
        self.retry = retry
        self.limiter = limiter
        self.stream_idle_timeout = stream_idle_timeout
        self.headers = dict(headers)
        self.allow_insecure_http = allow_insecure_http
        #: The most a non-streamed answer may read into memory (None: no cap; see _body).
        self.max_response_bytes = max_response_bytes
        #: Replaced by tests with a fake clock; every backoff goes through it.
        self.sleep: Sleep = anyio.sleep
        #: Called with (model, usage, batch) for every answer that reports usage:
        #: the client's running tally of tokens and cost hangs here.
        self.usage_hooks: list[Callable[[str, Usage, bool], None]] = []
        self._auth: dict[str, str] | None = None  # the Authorization header, once checked
        # Parsed URLs (httpx parses a str URL on every request, ~20 us), each with
        # its Host header as httpx keeps headers (see _build).
        self._urls: dict[str, tuple[httpx.URL, tuple[bytes, bytes, bytes]]] = {}
        # The client's headers merged with ours, and what they were merged from (see _build).
        self._merged: (
            tuple[
                list[tuple[bytes, bytes, bytes]], dict[str, str], list[tuple[bytes, bytes, bytes]]
            ]
            | None
        ) = None
        # The last timeout's ``as_dict()`` (the same Timeout object, call after call).
        self._timeout_dict: tuple[httpx.Timeout, dict[str, float | None]] | None = None

    def record_usage(self, model: str, usage: Usage | None, *, batch: bool = False) -> None:
        """Report the usage of one answer to the hooks (no-op without usage)."""
        if usage is not None:
            for hook in self.usage_hooks:
                hook(model, usage, batch)

    # -- secrets --------------------------------------------------------------

    def redact(self, text: str) -> str:
        """``text`` with the API key blanked out wherever it appears."""
        # Very short keys (test keys like "k") would blank out ordinary words.
        if self._api_key and len(self._api_key) >= 6 and self._api_key in text:
            return text.replace(self._api_key, "***")
        return text

    def _auth_headers(self) -> dict[str, str]:
        auth = self._auth
        if auth is not None:
            return auth
        if not self._api_key:
            raise ConfigurationError(
                "No API key: pass AsyncClient(api_key=...) or set HOLYSHEEP_API_KEY"
            )
        url = httpx.URL(self.base_url)
        if url.scheme == "http" and not is_loopback(url.host) and not self.allow_insecure_http:
            raise ConfigurationError(
                f"Refusing to send the API key over plain http:// to {url.host}: use https://,"
                " or pass AsyncClient(allow_insecure_http=True) if this network is trusted"
            )
        # Read only (merged into each request's headers): made once.
        auth = self._auth = {"Authorization": f"Bearer {self._api_key}"}
        return auth

    # -- sending --------------------------------------------------------------

    def _not_tls(self, method: str, path: str, url: httpx.URL) -> str:
        where = f"{url.host}:{url.port}" if url.port else url.host
        plain = httpx.URL(self.base_url).copy_with(scheme="http")
        return (
            f"{method} {path}: the server at {where} did not answer TLS (it answered in plain"
            f" text): it is a plain-HTTP server, but base_url says https://. Use"
            f" base_url={str(plain)!r}"
        )

    def _version_hint(self, error: APIStatusError) -> str | None:
        """For a bare 404 under a base URL with no version segment: where the API may be."""
        if error.code is not None and error.code.lower() not in _BARE_404_CODES:
            return None  # a 404 about something (a model, a file), not about the path
        base = httpx.URL(self.base_url)
        if any(_VERSION.fullmatch(part) for part in base.path.lower().split("/")):
            return None
        return (
            f"The base URL {self.base_url} has no version prefix, and OpenAI-compatible APIs"
            f" live under one: did you mean base_url={self.base_url + '/v1'!r}?"
        )

    def url(self, path: str) -> str:
        return path if "://" in path else f"{self.base_url}/{path.lstrip('/')}"

    async def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        content: bytes | None = None,
        files: Any = None,
        data: Any = None,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        tokens: int = 0,
        stream: bool = False,
        max_retries: int | None = None,
        timeout: httpx.Timeout | None = None,
        resend: bool = True,
        trace: _otel.ChatTrace | None = None,
    ) -> Reply:
        """Send with limits and retries; return the first 2xx/3xx reply or raise a typed error.

        With ``stream=False`` the body is read and the concurrency slot freed
        before returning; with ``stream=True`` the caller owns the open
        response and must ``await reply.aclose()``. ``resend=False``: a request the
        server may have acted on is never sent again by the transport (the
        caller passes ``max_retries=0`` too and decides what to do). ``trace``: the
        span of a stream, for the retry / cooldown / wait events (else the current span).
        """
        auth = self._auth_headers()
        all_headers = {**self.headers, **auth, **(headers or {})}
        # W3C traceparent / tracestate of the request's span, when OpenTelemetry is on.
        inject_trace_context(all_headers, None if trace is None else trace.span)
        retries = self.retry.max_retries if max_retries is None else max_retries
        full = self.url(path)
        entry = self._urls.get(full)
        if entry is None:
            parsed = httpx.URL(full)
            entry = (parsed, (b"Host", b"host", parsed.netloc))
            if len(self._urls) < 256:
                self._urls[full] = entry
        url, host = entry
        if json is not None and content is None and files is None and data is None:
            # Encoded once for every attempt, the same way on either path (see _json_bytes).
            content = _json_bytes(json)
            json = None
            for name in all_headers:
                if name.lower() == "content-type":
                    break
            else:
                all_headers["Content-Type"] = "application/json"
        attempt = 0
        while True:
            attempt += 1
            permit = await self.limiter.acquire(tokens)
            if permit.waited:
                _otel.waited(trace, permit.waited)
            started = time.perf_counter()
            try:
                if (
                    json is None
                    and files is None
                    and data is None
                    and not params
                    and getattr(self.http, "_plain_build", False)
                    and not self.http.cookies
                    and not self.http.params
                ):
                    request = self._build(
                        method, url, host, content, all_headers, timeout or self.timeout, resend
                    )
                    response = await self._send(request)
                else:
                    request = self.http.build_request(
                        method,
                        url,
                        json=json,
                        content=content,
                        files=files,
                        data=data,
                        params=params,
                        headers=all_headers,
                        timeout=timeout or self.timeout,
                        extensions=None if resend else {NO_RESEND: True},
                    )
                    response = await self.http.send(request, stream=True)
            except httpx.TimeoutException as exc:
                permit.release()
                error: HolySheepError = APITimeoutError(
                    self.redact(f"{method} {path}: timed out ({type(exc).__name__})")
                )
                cause: BaseException | None = exc
                wait = self.retry.backoff(attempt)
            except httpx.TooManyRedirects as exc:
                permit.release()
                raise APIConnectionError(
                    self.redact(
                        f"{method} {path}: too many redirects (the last to {exc.request.url})"
                    )
                ) from exc
            except httpx.TransportError as exc:
                permit.release()
                if url.scheme == "https" and answered_plain_text(exc):
                    raise TLSMismatchError(self.redact(self._not_tls(method, path, url))) from exc
                why = describe_transport_error(exc)
                error = APIConnectionError(
                    self.redact(f"{method} {path}: connection failed ({why})")
                )
                cause = exc
                wait = self.retry.backoff(attempt)
            except BaseException:
                permit.release()
                raise
            else:
                status = response.status_code
                if self.limiter.learns_quota:
                    self.limiter.observe(permit, response.headers)
                if status < 400:
                    if not stream:
                        try:
                            await read_capped(response, self.max_response_bytes)
                        except httpx.TimeoutException as exc:
                            permit.release()
                            await response.aclose()
                            raise APITimeoutError(
                                f"{method} {path}: timed out reading the body"
                            ) from exc
                        except httpx.TransportError as exc:
                            permit.release()
                            await response.aclose()
                            raise APIConnectionError(
                                f"{method} {path}: connection broke reading the body"
                                f" ({type(exc).__name__})"
                            ) from exc
                        except BaseException:
                            permit.release()
                            await response.aclose()
                            raise
                        permit.release()
                    self._log(method, path, status, response, attempt, started)
                    return Reply(response, permit, attempt)
                cut = False
                try:
                    cut = await read_error_body(response, self.max_response_bytes)
                except httpx.HTTPError:
                    pass
                finally:
                    await response.aclose()
                    permit.release()
                self._log(method, path, status, response, attempt, started)
                error = make_status_error(
                    response,
                    redact=self._api_key,
                    note=f"The answer's body was longer than {len(response.content):,} bytes:"
                    " only that much was read"
                    if cut
                    else None,
                )
                if isinstance(error, NotFoundError) and (hint := self._version_hint(error)):
                    error = make_status_error(response, redact=self._api_key, note=hint)
                cause = None
                if isinstance(error, QuotaExceededError) or not self.retry.should_retry_status(
                    status, response.headers
                ):
                    raise error
                asked = parse_retry_after(response.headers)
                if asked is not None and asked > self.retry.max_server_wait:
                    raise make_status_error(
                        response,
                        redact=self._api_key,
                        note=f"The server asked to wait {asked:.0f} s before retrying, more"
                        f" than max_server_wait={self.retry.max_server_wait:.0f} s, so the"
                        " client gave up",
                    )
                wait = asked if asked is not None else self.retry.backoff(attempt)
                if status == 429:
                    self.limiter.cooldown(wait, caller_waits=attempt <= retries)
                    _otel.cooldown(trace, wait)
                    log.info(
                        "%s %s -> 429: every request of this client pauses %.3f s (cooldown)",
                        method,
                        path,
                        wait,
                    )
            if attempt > retries:
                raise error from cause
            log.info(
                "retrying %s %s in %.3f s (attempt %d of %d): %s",
                method,
                path,
                wait,
                attempt + 1,
                retries + 1,
                error,
            )
            _otel.retrying(trace, attempt + 1, wait, error)
            await self.sleep(wait)

    def _build(
        self,
        method: str,
        url: httpx.URL,
        host: tuple[bytes, bytes, bytes],
        content: bytes | None,
        headers: dict[str, str],
        timeout: httpx.Timeout,
        resend: bool = True,
    ) -> httpx.Request:
        """What ``build_request`` makes, for the client built by default (no cookies, no params).

        The same request, bytes for bytes: the client's headers merged with
        ours, ``Host`` (``host``: the URL's, as httpx keeps headers) first,
        ``Content-Length`` last. ``build_request`` merges
        and normalizes every header on every call (~20 us); here the merged
        headers are kept until any of them changes, and the request is made
        from them ready-built (``_lean``).
        """
        http = self.http
        client_headers = _lean.header_list(http.headers)
        merged = self._merged
        if merged is None or merged[0] != client_headers or merged[1] != headers:
            both = httpx.Headers(http.headers)
            both.update(headers)
            merged = self._merged = (
                list(client_headers),  # a copy: the client's may change in place
                dict(headers),
                [(k, k.lower(), v) for k, v in both.raw],
            )
        if content is not None:
            body = content
            triples = [host, *merged[2], (b"Content-Length", b"content-length", b"%d" % len(body))]
        elif method in ("POST", "PUT", "PATCH"):
            body = b""
            triples = [host, (b"Content-Length", b"content-length", b"0"), *merged[2]]
        else:
            body = b""
            triples = [host, *merged[2]]
        cached = self._timeout_dict
        if cached is None or cached[0] is not timeout:
            cached = self._timeout_dict = (timeout, timeout.as_dict())
        extensions: dict[str, Any] = {"timeout": cached[1].copy()}
        if not resend:
            extensions[NO_RESEND] = True
        return _lean.request(method, url, _lean.headers_from_triples(triples), body, extensions)

    async def _send(self, request: httpx.Request) -> httpx.Response:
        """``http.send(request, stream=True)`` for the client built by default.

        Straight to our transport when nothing of what ``AsyncClient.send``
        adds is in use (auth, event hooks, a closed client): its layers cost
        ~20 us a request. What it does that still applies is done here: the
        request on errors and on the response, cookies the server sets,
        redirects (handed to httpx), httpx's log line.
        """
        http = self.http
        transport: Transport | None = getattr(http, "_holysheep_transport", None)
        route = getattr(http, "_transport_for_url", None)
        if (
            transport is None
            or route is None
            or http.auth is not None
            or http.is_closed
            or any(http.event_hooks.values())
            # Where httpx would send it (mounts; what mocking libraries such as respx patch).
            or route(request.url) is not transport
        ):
            return await http.send(request, stream=True)
        try:
            response = await transport.handle_async_request(request)
        except httpx.RequestError as exc:
            exc.request = request
            raise
        response.request = request
        if response.has_redirect_location and http.follow_redirects:
            return await self._redirected(request, response)
        if _lean.header_value(response.headers, b"set-cookie") is not None:
            http.cookies.extract_cookies(response)
        if _httpx_log.isEnabledFor(logging.INFO):
            _httpx_log.info(
                'HTTP Request: %s %s "%s %d %s"',
                request.method,
                request.url,
                response.http_version,
                response.status_code,
                response.reason_phrase,
            )
        return response

    async def _redirected(self, request: httpx.Request, response: httpx.Response) -> httpx.Response:
        """A redirect on the fast path: httpx builds the next request and follows from there."""
        http = self.http
        try:
            await read_error_body(response, self.max_response_bytes)
        finally:
            await response.aclose()
        build = getattr(http, "_build_redirect_request", None)
        if build is None:  # not this httpx's layout: let it redo the whole exchange
            return await http.send(request, stream=True)
        if http.max_redirects < 1:
            raise httpx.TooManyRedirects("Exceeded maximum allowed redirects.", request=request)
        final = await http.send(build(request, response), stream=True)
        final.history = [response, *final.history]
        return final

    def _log(
        self,
        method: str,
        path: str,
        status: int,
        response: httpx.Response,
        attempt: int,
        started: float,
    ) -> None:
        if log.isEnabledFor(logging.DEBUG):
            log.debug(
                "%s %s -> %d request_id=%s attempt=%d %.1f ms",
                method,
                path,
                status,
                response.headers.get("x-request-id"),
                attempt,
                (time.perf_counter() - started) * 1000,
            )
