"""Every error the client raises, under one root.

::

    HolySheepError
    ├── ConfigurationError            bad settings, missing API key (also a ValueError)
    │   └── ResponsesNotSupportedError  a Responses request needs what this server lacks
    ├── APIConnectionError            the request or the response did not get through
    │   ├── APITimeoutError           connect / read / write / pool timeout
    │   │   └── StreamIdleTimeout     no SSE data event for `stream_idle_timeout` seconds
    │   └── TLSMismatchError          an https:// base URL whose server does not speak TLS
    │                                 (also a ConfigurationError; never retried)
    ├── APIStatusError                the server answered with a status >= 400
    │   ├── BadRequestError           400, 422
    │   ├── AuthenticationError       401
    │   ├── PermissionDeniedError     403 (relays also use it for exhausted quota)
    │   ├── NotFoundError             404
    │   ├── ConflictError             409
    │   ├── RateLimitError            429
    │   │   └── QuotaExceededError    403 / 429 whose body says the balance or quota is used
    │   │                             up (also a PermissionDeniedError; never retried)
    │   └── InternalServerError       >= 500
    ├── InvalidResponseError          a 2xx answer whose body is not what the protocol says
    │   └── ResponseTooLargeError     ... or is larger than ``max_response_bytes``
    ├── StreamError                   error object or malformed event inside a 200 stream
    │   ├── IncompleteStreamError     stream ended with neither [DONE] nor a finish reason
    │   └── ResponseFailedError       a Responses stream ended with ``response.failed``
    ├── StructuredOutputError         response_format=Model: the answer is not a valid Model
    │   └── RefusalError              ... because the model refused (``.refusal`` says why)
    ├── ToolLoopError                 chat.run_tools: still asking for tools after max_turns
    ├── BatchValidationError          bad batch input (carries the problems, with line numbers)
    ├── BatchFailedError              a batch ended failed / expired / cancelled
    ├── BatchTimeoutError             waiting for a batch took longer than its timeout
    ├── ResponseTimeoutError          waiting for a background response took longer than its timeout
    └── SharedLimitsError             shared limits' Redis unreachable, on_error="closed"

Any error raised after a stream yielded text carries that text in
``partial_text``; nothing is yielded twice. A chat stream's error also carries
the reasoning (``partial_reasoning``) and the tool calls (``partial_tool_calls``,
the last one possibly cut off) it had by then.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

import httpx

__all__ = [
    "APIConnectionError",
    "APIStatusError",
    "APITimeoutError",
    "AuthenticationError",
    "BadRequestError",
    "BatchFailedError",
    "BatchTimeoutError",
    "BatchValidationError",
    "ConfigurationError",
    "ConflictError",
    "HolySheepError",
    "IncompleteStreamError",
    "InternalServerError",
    "InvalidResponseError",
    "NotFoundError",
    "PermissionDeniedError",
    "QuotaExceededError",
    "RateLimitError",
    "ResponseTooLargeError",
    "SharedLimitsError",
    "RefusalError",
    "ResponseFailedError",
    "ResponseTimeoutError",
    "ResponsesNotSupportedError",
    "StreamError",
    "StreamIdleTimeout",
    "StructuredOutputError",
    "TLSMismatchError",
    "ToolLoopError",
    "make_status_error",
]


class HolySheepError(Exception):
    """Root of every error raised by holysheep_async."""

    #: Text a stream had already yielded when the error happened (``None`` outside streams).
    partial_text: str | None = None
    #: A chat stream's reasoning by then (``None`` outside streams or without reasoning).
    partial_reasoning: str | None = None
    #: A chat stream's tool calls by then (``StreamedToolCall``; ``None`` without any).
    partial_tool_calls: list[Any] | None = None

    def __init__(self, message: str, *, partial_text: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if partial_text is not None:
            self.partial_text = partial_text


class ConfigurationError(HolySheepError, ValueError):
    """A client setting is missing or has the wrong type or value."""


class ResponsesNotSupportedError(ConfigurationError):
    """The server has no ``/responses`` (it answered 404, 405 or 501), so the request goes
    as a chat completion, and it asks for what a chat completion cannot do.

    ``field`` names it (``previous_response_id``, ``background``, ``store``, a tool
    type...). Nothing was sent for this request.
    """

    def __init__(self, message: str, *, field: str) -> None:
        super().__init__(message)
        self.field = field


class APIConnectionError(HolySheepError):
    """The request could not be sent, or the connection broke before the answer was complete."""


class APITimeoutError(APIConnectionError):
    """Connecting, sending, or waiting for the answer took longer than the timeout."""


class TLSMismatchError(APIConnectionError, ConfigurationError):
    """The base URL says ``https://`` but the server answered in plain text (not TLS).

    Typically an ``http://`` server (a local model server, the emulator) typed with
    ``https://``: the message says which URL to use. Never retried: it cannot get
    better by asking again. Also a :class:`ConfigurationError`.
    """


class StreamIdleTimeout(APITimeoutError):
    """A stream went silent: no SSE data event within ``stream_idle_timeout`` seconds.

    Pings and comment lines do not count as data. ``partial_text`` holds what arrived.
    """


class APIStatusError(HolySheepError):
    """The server answered with an error status.

    ``status_code``, ``request_id`` (from ``x-request-id``), ``body`` (parsed JSON,
    or the raw text when it is not JSON), ``code`` and ``error_type`` when the body
    has them, and ``headers``.
    """

    def __init__(
        self,
        message: str,
        *,
        status_code: int,
        request_id: str | None = None,
        body: object = None,
        code: str | None = None,
        error_type: str | None = None,
        headers: Mapping[str, str] | None = None,
        partial_text: str | None = None,
    ) -> None:
        super().__init__(message, partial_text=partial_text)
        self.status_code = status_code
        self.request_id = request_id
        self.body = body
        self.code = code
        self.error_type = error_type
        self.headers: Mapping[str, str] = headers if headers is not None else {}


class BadRequestError(APIStatusError):
    """400 or 422: the request is wrong and will not succeed if sent again."""


class AuthenticationError(APIStatusError):
    """401: the API key is missing, wrong or revoked."""


class PermissionDeniedError(APIStatusError):
    """403: the key may not do this (relays also answer 403 when the quota is used up)."""


class RateLimitError(APIStatusError):
    """429: too many requests or tokens; also raised when the server asks for an absurd wait."""


class QuotaExceededError(PermissionDeniedError, RateLimitError):
    """The account's balance or quota is used up: waiting will not help, topping up will.

    Relays answer 403 for this, OpenAI 429 with ``insufficient_quota``; either way it is
    never retried, and it is caught by ``except PermissionDeniedError`` and by
    ``except RateLimitError``.
    """


class NotFoundError(APIStatusError):
    """404: unknown path, model, file or batch."""


class ConflictError(APIStatusError):
    """409: the resource is in a state that does not allow this (retried by default)."""


class InternalServerError(APIStatusError):
    """>= 500: the server or an upstream behind a relay failed."""


class InvalidResponseError(HolySheepError):
    """The server answered 2xx with a body that is not what the protocol says (HTML, empty...).

    ``status_code``, ``request_id`` and ``body`` (the first 1,000 characters) say what came.
    """

    def __init__(
        self, message: str, *, status_code: int, request_id: str | None, body: str
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.request_id = request_id
        self.body = body


class ResponseTooLargeError(InvalidResponseError):
    """A non-streamed answer grew past ``max_response_bytes`` (``limit``): reading stopped there.

    Raised while reading (at once when the ``Content-Length`` says so), so memory
    never holds more than the cap; ``body`` is empty. Never retried. Streams are not
    capped this way (each event line is), nor are downloads, which go to disk.
    """

    def __init__(
        self, message: str, *, status_code: int, request_id: str | None, limit: int
    ) -> None:
        super().__init__(message, status_code=status_code, request_id=request_id, body="")
        self.limit = limit


class StreamError(HolySheepError):
    """The server sent an error object or a malformed event inside a 200 stream.

    ``body`` is the parsed error object (or the raw event data when it is not JSON).
    """

    def __init__(
        self,
        message: str,
        *,
        body: object = None,
        code: str | None = None,
        partial_text: str | None = None,
    ) -> None:
        super().__init__(message, partial_text=partial_text)
        self.body = body
        self.code = code


class IncompleteStreamError(StreamError):
    """The stream ended with neither ``data: [DONE]`` nor a finish reason: the answer may be cut."""


class ResponseFailedError(StreamError):
    """A Responses stream ended with ``response.failed``: the server gave up on the response.

    ``response`` is the failed response object (a dict, its ``error`` says why);
    ``code`` the error's code. Never retried (the same request would fail the same way).
    """

    def __init__(
        self, message: str, *, response: object = None, code: str | None = None
    ) -> None:
        super().__init__(message, body=response, code=code)
        self.response = response


class StructuredOutputError(HolySheepError):
    """An answer asked for with ``response_format=Model`` does not parse as ``Model``.

    ``text``: what the model said; ``finish_reason`` ("length" means it was cut
    off by ``max_tokens``); ``completion``: the whole completion (usage, id), or
    None for a stream (read the stream's own attributes).
    """

    def __init__(
        self,
        message: str,
        *,
        text: str = "",
        finish_reason: str | None = None,
        completion: object = None,
    ) -> None:
        super().__init__(message)
        self.text = text
        self.finish_reason = finish_reason
        self.completion = completion


class RefusalError(StructuredOutputError):
    """The model refused to answer in the requested format; ``refusal`` is its reason."""

    def __init__(self, refusal: str, *, completion: object = None) -> None:
        super().__init__(
            f"The model refused: {refusal}", text="", finish_reason=None, completion=completion
        )
        self.refusal = refusal


class ToolLoopError(HolySheepError):
    """``chat.run_tools`` made ``max_turns`` calls and the model still asks for tools.

    ``messages``: the whole transcript (the caller's messages, every assistant
    turn, every tool answer); ``completions``: the answer of every turn.
    """

    def __init__(self, message: str, *, messages: list[Any], completions: list[Any]) -> None:
        super().__init__(message)
        self.messages = messages
        self.completions = completions


class BatchValidationError(HolySheepError, ValueError):
    """Batch input is invalid. ``problems`` is a list of ``(line, message)``, lines 1-based."""

    def __init__(self, problems: Sequence[tuple[int, str]], *, source: str | None = None) -> None:
        self.problems = list(problems)
        where = f" in {source}" if source else ""
        shown = "; ".join(f"line {line}: {msg}" for line, msg in self.problems[:10])
        more = f" (and {len(self.problems) - 10} more)" if len(self.problems) > 10 else ""
        super().__init__(f"{len(self.problems)} problem(s){where}: {shown}{more}")


class BatchFailedError(HolySheepError):
    """A batch ended in ``failed``, ``expired`` or ``cancelled`` where completion was required."""

    def __init__(self, message: str, *, batch: object = None) -> None:
        super().__init__(message)
        self.batch = batch


class SharedLimitsError(HolySheepError):
    """The shared limits' Redis is unreachable and ``on_error="closed"``: nothing was sent."""


class BatchTimeoutError(HolySheepError, TimeoutError):
    """``batches.wait`` gave up: the batch was not final within ``timeout`` seconds.

    ``batch`` is its last known state; the batch itself goes on running on the server.
    """

    def __init__(self, message: str, *, batch: object = None) -> None:
        super().__init__(message)
        self.batch = batch


class ResponseTimeoutError(HolySheepError, TimeoutError):
    """``responses.wait`` gave up: the background response was not final within ``timeout``.

    ``response`` is its last known state; it goes on running on the server
    (``client.responses.cancel(id)`` stops it).
    """

    def __init__(self, message: str, *, response: object = None) -> None:
        super().__init__(message)
        self.response = response


# ---------------------------------------------------------------------------
# Mapping a response to an error

_STATUS_CLASSES: dict[int, type[APIStatusError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    409: ConflictError,
    422: BadRequestError,
    429: RateLimitError,
}

# Words relays and providers use when the money, not the rate, ran out
# (English, and the Chinese of one-api / new-api relays: 余额 balance, 额度 quota).
_QUOTA_WORDS = re.compile(
    r"insufficient[_ ]quota|quota[_ ]exceeded|exceeded your current quota|insufficient[_ ]balance"
    r"|billing|余额|额度|配额",
    re.IGNORECASE,
)
_TITLE = re.compile(rb"<title[^>]*>(.*?)</title>", re.IGNORECASE | re.DOTALL)
_TAGS = re.compile(r"<[^>]+>")
_SPACES = re.compile(r"\s+")


def _html_text(raw: bytes) -> str:
    m = _TITLE.search(raw)
    text = m.group(1).decode("utf-8", "replace") if m else raw.decode("utf-8", "replace")
    text = html.unescape(_SPACES.sub(" ", _TAGS.sub(" ", text))).strip()
    return text[:200]


def _as_str(value: object) -> str | None:
    if value is None or value == "":
        return None
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def describe_error_body(
    raw: bytes, content_type: str = ""
) -> tuple[object, str, str | None, str | None]:
    """Parse an error body as relays and providers send it.

    Returns ``(body, message, code, type)``: the JSON body when it parses (else the
    text), a readable message, and ``code`` / ``type`` as strings when present
    (relays send numeric codes). Used for HTTP errors and errors inside streams.
    """
    text = raw.decode("utf-8", "replace").strip()
    body: object = text
    try:
        body = json.loads(text) if text else None
    except ValueError:
        body = text
    message: str | None = None
    code: str | None = None
    etype: str | None = None
    if isinstance(body, dict):
        err = body.get("error", body)
        if isinstance(err, dict):
            message = _as_str(err.get("message") or err.get("msg") or err.get("detail"))
            code = _as_str(err.get("code"))
            etype = _as_str(err.get("type"))
        elif isinstance(err, str):
            message = err
        if message is None:
            message = _as_str(body.get("message") or body.get("msg") or body.get("detail"))
        if code is None:
            code = _as_str(body.get("code"))
    elif isinstance(body, str) and body:
        if "html" in content_type.lower() or body.lstrip().startswith("<"):
            message = "HTML page: " + _html_text(raw)
        else:
            message = body[:500]
    return body, message or "", code, etype


def _sent_key(response: httpx.Response) -> str | None:
    """The bearer token the request of ``response`` carried (to blank out if echoed)."""
    try:
        auth = response.request.headers.get("authorization", "")
    except RuntimeError:  # a response built without a request
        return None
    scheme, _, token = auth.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def _redact_bytes(raw: bytes, secrets: Sequence[str | None]) -> bytes:
    for secret in secrets:
        if secret and len(secret) >= 6 and secret.encode() in raw:
            raw = raw.replace(secret.encode(), b"***")
    return raw


def _redact_text(text: str, secrets: Sequence[str | None]) -> str:
    for secret in secrets:
        if secret and len(secret) >= 6 and secret in text:
            text = text.replace(secret, "***")
    return text


def invalid_response(response: httpx.Response, expected: str) -> InvalidResponseError:
    """The error for a 2xx response whose (read) body is not ``expected``.

    The message names the status, the request, the content type and what came;
    a key the server echoed back is blanked out.
    """
    secrets = [_sent_key(response)]
    request_id = response.headers.get("x-request-id")
    if request_id:
        request_id = _redact_text(request_id, secrets)
    raw = _redact_bytes(response.content, secrets)
    ctype = _redact_text(response.headers.get("content-type", ""), secrets)
    kind = f"content-type {ctype}" if ctype else "no content-type"
    if not raw:
        what = f"an empty body ({kind})"
    elif "html" in ctype.lower() or raw.lstrip()[:1] == b"<":
        what = f"an HTML page ({_html_text(raw)[:80]}; {kind})"
    else:
        what = f"{raw[:120]!r} ({kind})"
    rid = f" [request id {request_id}]" if request_id else ""
    return InvalidResponseError(
        f"{response.status_code} from {response.request.method} {response.request.url.path}: "
        f"expected {expected}, got {what}{rid}",
        status_code=response.status_code,
        request_id=request_id,
        body=raw[:1000].decode("utf-8", "replace"),
    )


def response_too_large(response: httpx.Response, limit: int) -> ResponseTooLargeError:
    """The error for an answer over ``limit`` bytes: the cap, the request, the request id."""
    secrets = [_sent_key(response)]
    request_id = response.headers.get("x-request-id")
    if request_id:
        request_id = _redact_text(request_id, secrets)
    request = response.request
    url = request.url.copy_with(username=None, password=None)
    rid = f" [request id {request_id}]" if request_id else ""
    length = response.headers.get("content-length", "")
    size = f" (Content-Length {int(length):,})" if length.isdigit() else ""
    return ResponseTooLargeError(
        _redact_text(
            f"{response.status_code} from {request.method} {url}: the answer is larger than"
            f" max_response_bytes={limit:,} ({limit / 2**20:g} MiB){size}{rid}; reading"
            " stopped there. A non-streamed answer this large means a broken server or"
            " relay; if you do expect it, raise AsyncClient(max_response_bytes=...)",
            secrets,
        ),
        status_code=response.status_code,
        request_id=request_id,
        limit=limit,
    )


def _body_read(response: httpx.Response) -> bytes:
    """The response's body as far as it could be read (b"": reading it failed, the
    connection broke or a proxy reset it: the status still says what happened)."""
    try:
        return response.content
    except httpx.ResponseNotRead:
        return b""


def make_status_error(
    response: httpx.Response,
    *,
    partial_text: str | None = None,
    note: str | None = None,
    redact: str | None = None,
) -> APIStatusError:
    """The typed error for an error response whose body has been read.

    ``redact``: a secret (the API key) to blank out wherever the server echoed it.
    """
    status = response.status_code
    secrets = [redact, _sent_key(response)]
    request_id = response.headers.get("x-request-id")
    if request_id:
        request_id = _redact_text(request_id, secrets)
    raw = _redact_bytes(_body_read(response), secrets)
    body, message, code, etype = describe_error_body(raw, response.headers.get("content-type", ""))
    cls = _STATUS_CLASSES.get(status, InternalServerError if status >= 500 else APIStatusError)
    if status in (403, 429) and _QUOTA_WORDS.search(f"{code or ''} {etype or ''} {message}"):
        cls = QuotaExceededError
    reason = response.reason_phrase or httpx.codes.get_reason_phrase(status)
    text = f"{status} {reason}".strip()
    if message:
        text += f": {message}"
    if code:
        text += f" (code {code})"
    if request_id:
        text += f" [request id {request_id}]"
    if note:
        text += f". {note}"
    return cls(
        text,
        status_code=status,
        request_id=request_id,
        body=body,
        code=code,
        error_type=etype,
        headers={k: _redact_text(v, secrets) for k, v in response.headers.items()},
        partial_text=partial_text,
    )
