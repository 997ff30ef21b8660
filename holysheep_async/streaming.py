"""Chat completion streams: SSE bytes -> events -> chunks -> text deltas.

A :class:`ChatStream` is what ``client.chat.stream(...)`` returns. It is an
async iterator of text deltas and an async context manager::

    async with client.chat.stream(model="gpt-4o", messages=msgs) as stream:
        async for text in stream:
            print(text, end="", flush=True)
    print(stream.metrics.ttft, stream.usage)

What it guarantees:

- Failures before anything was yielded (connection errors, timeouts, 429,
  5xx, a stall, an "overloaded" or "rate limited" error object inside the
  stream, a stream cut short) are retried under the client's retry policy,
  invisibly. One budget (``max_retries``) covers both the retries of the
  request and the retries of the stream.
- After something was yielded nothing is retried silently and nothing is
  yielded twice: the error raised carries ``partial_text``. With
  ``resume=...`` a broken stream is continued by a follow-up request that
  sends the partial answer as an assistant prefix (see :data:`RESUME_STRATEGIES`).
- The idle timeout bounds the silence between data events, counted from the
  response headers; pings and comments do not reset it. A stall raises
  :class:`StreamIdleTimeout`.
- A stream that ends with neither ``[DONE]`` nor a finish reason raises
  :class:`IncompleteStreamError`: never a silently shorter answer. One that
  has the finish reason but no ``[DONE]`` is complete: ``stream.done`` stays
  False and a warning is logged. So is one whose connection breaks after the
  finish reason, inside the usage event: that unfinished last event is
  discarded (the SSE standard's rule) and ``usage`` stays None. Broken inside
  an event before the finish reason, the stream raises
  :class:`APIConnectionError` (with ``partial_text``).
- Leaving ``async with``, breaking out of the loop, or cancelling the
  enclosing scope closes the HTTP response. (Without ``async with``, a loop
  left early is closed when the iterator is garbage collected: at once on
  CPython under asyncio; trio does it too but warns. Use ``async with``.)

The text path builds no pydantic object per chunk: one JSON decode and a few
dict lookups. :meth:`ChatStream.chunks` validates each chunk into a
:class:`ChatCompletionChunk`, which costs more.
"""

from __future__ import annotations

import json
import logging
import math
import re
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NoReturn

import anyio
import httpx
from pydantic import ValidationError
from pydantic_core import from_json
from typing_extensions import Self

from . import _otel
from ._body import read_capped, read_error_body
from ._compat import loop_clock
from .errors import (
    _QUOTA_WORDS,
    APIConnectionError,
    APITimeoutError,
    BadRequestError,
    HolySheepError,
    IncompleteStreamError,
    StreamError,
    StreamIdleTimeout,
    describe_error_body,
    invalid_response,
)
from .models import ChatCompletionChunk, Usage
from .sse import RawEvent, SSEDecoder, SSEError

if TYPE_CHECKING:
    from ._requester import Reply, Requester

__all__ = ["RESUME_STRATEGIES", "ChatStream", "ResumeStrategy", "StreamMetrics"]

log = logging.getLogger("holysheep_async")

#: ``(original request body, text received so far) -> body of the follow-up request``.
ResumeStrategy = Callable[[dict[str, Any], str], dict[str, Any]]

_Item = tuple[dict[str, Any], str | None]

# Words of an error object inside a stream that make it safe to try again.
_RETRYABLE_IN_STREAM = re.compile(
    r"overload|rate.?limit|too many requests|capacity|temporar|unavailable|server.?error"
    r"|internal.?error|try again|busy|timed? ?out",
    re.IGNORECASE,
)
_RATE_LIMIT_WORDS = re.compile(r"rate.?limit|too many requests", re.IGNORECASE)
_RETRYABLE_CODES = frozenset({"408", "409", "429", "500", "502", "503", "504", "529"})
# Named events that are keep-alives, not chunks (some relays send "event: ping").
_HEAD = 120  # bytes of a body kept to show in an error
_PING_EVENTS = frozenset({"ping", "keepalive", "keep-alive", "heartbeat"})
# Code of the StreamError for an event that is not a JSON object: never retried.
MALFORMED = "malformed_event"
# After [DONE], how long to wait for the end of the HTTP body so that the
# connection can go back to the pool (normally it is already there).
_DRAIN_GRACE = 0.5


def _assistant_prefix(body: dict[str, Any], partial: str) -> dict[str, Any]:
    messages = [*body["messages"], {"role": "assistant", "content": partial}]
    return {**body, "messages": messages}


def _prefix_flag(body: dict[str, Any], partial: str) -> dict[str, Any]:
    messages = [*body["messages"], {"role": "assistant", "content": partial, "prefix": True}]
    return {**body, "messages": messages}


def _vllm(body: dict[str, Any], partial: str) -> dict[str, Any]:
    new = _assistant_prefix(body, partial)
    new["continue_final_message"] = True
    new["add_generation_prompt"] = False
    return new


#: Built-in ways to continue a broken answer (``resume=`` of ``chat.stream``):
#:
#: ``"assistant"`` (also ``resume=True``): the partial answer as a last
#: ``assistant`` message. Servers that treat a trailing assistant message as a
#: prefill continue it (Anthropic's OpenAI-compatible API, llama.cpp, the emulator).
#: ``"prefix"``: the same message with ``"prefix": true`` (DeepSeek's beta
#: endpoint, Mistral). ``"vllm"``: the same message plus
#: ``continue_final_message=true, add_generation_prompt=false`` (vLLM, SGLang).
#: OpenAI's own API does not continue a prefix: it starts a new answer, so do
#: not use resume there.
RESUME_STRATEGIES: dict[str, ResumeStrategy] = {
    "assistant": _assistant_prefix,
    "prefix": _prefix_flag,
    "vllm": _vllm,
}


@dataclass
class StreamMetrics:
    """Timings of one stream.

    ``ttft``: seconds from sending the request to the first text delta
    (retries before the first token included; time spent queued behind the
    client's own rpm / tpm / concurrency limits is not, it is ``queued``).
    ``total``: from sending the request to the end of the stream.
    ``chunks``: data events received. ``deltas``: text deltas yielded.
    ``tokens``: completion tokens (from ``usage`` when the server sent it, else
    the number of text deltas). ``tokens_per_s``: tokens over the time after the
    first token. ``gaps``: seconds between consecutive text deltas.
    ``attempts``: requests sent; ``resumes``: follow-up requests that continued
    a broken answer.
    """

    ttft: float | None = None
    total: float | None = None
    chunks: int = 0
    deltas: int = 0
    tokens: int = 0
    attempts: int = 0
    resumes: int = 0
    queued: float = 0.0
    gaps: list[float] = field(default_factory=list)

    @property
    def tokens_per_s(self) -> float | None:
        if self.ttft is None or self.total is None or self.tokens == 0:
            return None
        span = self.total - self.ttft
        return self.tokens / span if span > 0 else None

    @property
    def max_gap(self) -> float:
        """The longest wait between two text deltas (0.0 with fewer than two)."""
        return max(self.gaps, default=0.0)


def _stream_error_retryable(error: StreamError) -> bool:
    if error.code == MALFORMED:
        return False
    etype = ""
    body = error.body
    if isinstance(body, dict):
        inner = body.get("error")
        if isinstance(inner, dict):
            etype = str(inner.get("type") or "")
    text = f"{error.code or ''} {etype} {error.message}"
    if _QUOTA_WORDS.search(text):
        return False
    return error.code in _RETRYABLE_CODES or bool(_RETRYABLE_IN_STREAM.search(text))


def _is_rate_limit(error: HolySheepError) -> bool:
    """An error object inside a 200 stream that says the rate limit was hit (a 429 in disguise)."""
    if not isinstance(error, StreamError) or error.code == MALFORMED:
        return False
    if error.code in ("429", "rate_limit_exceeded"):
        return True
    return bool(_RATE_LIMIT_WORDS.search(f"{error.code or ''} {error.message}"))


def _retryable(error: HolySheepError) -> bool:
    if isinstance(error, IncompleteStreamError):
        return True
    if isinstance(error, StreamError):
        return _stream_error_retryable(error)
    return isinstance(error, APIConnectionError)


def _stream_timeout(timeout: httpx.Timeout, idle: float | None) -> httpx.Timeout | None:
    """The timeouts of a stream's request: the client's, with the read timeout raised to
    the idle timeout when that is longer (None: the client's as they are).

    The read timeout bounds each read, pings included; the idle timeout bounds the
    silence between data events. A user who allows a stream 900 s of silence
    (a model that thinks long) must not be cut at the 600 s read timeout.
    """
    if idle is None or timeout.read is None or timeout.read >= idle:
        return None
    return httpx.Timeout(timeout.connect, read=idle, write=timeout.write, pool=timeout.pool)


def _drop_none(obj: dict[str, Any]) -> dict[str, Any]:
    # Relays send null where OpenAI sends a value ("id": null, "choices": null).
    return {k: v for k, v in obj.items() if v is not None}


class ChatStream:
    """One streamed chat completion. See the module docstring.

    Attributes: ``text`` (first choice, so far), ``finish_reason``, ``usage``,
    ``metrics``, ``id``, ``model``, ``done`` (the server sent ``[DONE]``),
    ``response`` (the current ``httpx.Response``).
    """

    def __init__(
        self,
        requester: Requester,
        body: dict[str, Any],
        *,
        tokens: int,
        idle_timeout: float | None,
        resume: ResumeStrategy | None = None,
        headers: Mapping[str, str] | None = None,
        query: Mapping[str, Any] | None = None,
        timeout: httpx.Timeout | None = None,
        usage_by_default: bool = False,
    ) -> None:
        self._requester = requester
        self._body = body
        self._next_body = body
        self._tokens = tokens
        self._idle = idle_timeout
        self._resume = resume
        self._headers = dict(headers) if headers else None
        self._query = query
        # This call's timeout (None: the client's), its read timeout raised to the idle timeout.
        self._timeout = _stream_timeout(timeout or requester.timeout, idle_timeout) or timeout
        self._usage_by_default = usage_by_default
        n = body.get("n")
        self._n = n if isinstance(n, int) and n > 1 else 1
        # The response being read.
        self._reply: Reply | None = None
        self._bytes: AsyncIterator[bytes] | None = None
        # The body of a response from our own transport, read directly (see _open).
        self._wire: Any = None
        self._decoder = SSEDecoder()
        self._json_body = False
        self._deadline = math.inf
        self._now: Callable[[], float] = time.monotonic  # the loop's clock, set in _open
        self._eof = False
        self._done_seen = False
        self._broke_after_finish = False
        # What this attempt's body held: its first bytes and how many events (for errors).
        self._head = b""
        self._events = 0
        self._pending_error: HolySheepError | None = None
        # Iteration.
        self._gen: AsyncGenerator[Any, None] | None = None
        self._entered = False
        self._iterated = False
        self._closed = False
        self._complete = False
        self._yielded = False
        self._tool_calls = False
        self._retries_used = 0
        self._resuming_from: HolySheepError | None = None
        self._deltas_before = 0
        self._t0: float | None = None
        self._trace: _otel.ChatTrace | None = None  # the span, when OpenTelemetry listens
        self._last_text = 0.0
        # What the stream said.
        self._parts: list[str] = []
        self._refusal: list[str] = []
        self._headers_seen: httpx.Headers | None = None
        self._finish: dict[int, str] = {}
        self._usage_raw: Any = None
        self._usage: Usage | None = None
        self.id: str | None = None
        self.model: str | None = None
        self.done = False
        self.metrics = StreamMetrics()

    # -- public surface ---------------------------------------------------------

    async def __aenter__(self) -> Self:
        self._entered = True
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
        gen, self._gen = self._gen, None
        if (
            gen is not None
            and getattr(gen, "ag_frame", True) is not None  # None: it ran to its end
            and not getattr(gen, "ag_running", False)
        ):
            # Outside the loop now, so the generator can be finished safely.
            with anyio.CancelScope(shield=True):
                await gen.aclose()

    def __aiter__(self) -> AsyncIterator[str]:
        return self._begin(self._texts())

    def chunks(self) -> AsyncIterator[ChatCompletionChunk]:
        """The stream as typed chunks: all choices, tool-call deltas, logprobs, the usage chunk.

        >>> async with client.chat.stream(model=m, messages=msgs, n=2) as s:  # doctest: +SKIP
        ...     async for chunk in s.chunks():
        ...         for choice in chunk.choices:
        ...             print(choice.index, choice.delta.content)
        """
        return self._begin(self._typed_chunks())

    async def aclose(self) -> None:
        """Close the HTTP response now (idempotent)."""
        # The generator is not closed here: aclose() may be called from inside
        # the consumer's loop body, where closing the suspended generator from
        # under the loop races the loop's next step. Closing the response
        # frees the connection at once; the generator sees ``_closed`` and
        # ends at its next step (or in __aexit__ / when it is collected).
        self._closed = True
        await self._close_reply()

    @property
    def text(self) -> str:
        """The text of the first choice yielded so far."""
        parts = self._parts
        if len(parts) > 1:
            joined = "".join(parts)
            parts.clear()
            parts.append(joined)
        return parts[0] if parts else ""

    @property
    def finish_reason(self) -> str | None:
        """The first choice's finish reason ("stop", "length", ...), None until known."""
        return self._finish.get(0)

    @property
    def usage(self) -> Usage | None:
        """Token usage, when the server sent it (it is asked for unless ``include_usage=False``)."""
        if self._usage is None and self._usage_raw is not None:
            try:
                self._usage = Usage.model_validate(self._usage_raw)
            except ValidationError:
                log.warning("ignoring a malformed usage object: %.200r", self._usage_raw)
                self._usage_raw = None
        return self._usage

    @property
    def response(self) -> httpx.Response | None:
        """The HTTP response of the current attempt (headers, request id), once opened."""
        return self._reply.response if self._reply is not None else None

    @property
    def refusal(self) -> str | None:
        """The first choice's refusal text (a model declining a ``response_format``), if any."""
        return "".join(self._refusal) if self._refusal else None

    @property
    def request_id(self) -> str | None:
        """The server's ``x-request-id`` of the latest attempt, once the stream is open."""
        headers = self._headers_seen
        return headers.get("x-request-id") if headers is not None else None

    @property
    def rate_limits(self) -> dict[str, str]:
        """The ``x-ratelimit-*`` headers of the latest attempt, without the prefix."""
        headers = self._headers_seen
        if headers is None:
            return {}
        return {k[12:]: v for k, v in headers.items() if k.startswith("x-ratelimit-")}

    def __repr__(self) -> str:
        return (
            f"<ChatStream model={self._body.get('model')!r} chars={len(self.text)} "
            f"finish_reason={self.finish_reason!r}>"
        )

    # -- iteration --------------------------------------------------------------

    def _begin(self, gen: AsyncGenerator[Any, None]) -> AsyncGenerator[Any, None]:
        if self._iterated:
            raise RuntimeError("a ChatStream can be iterated only once")
        if self._closed:
            raise RuntimeError("this ChatStream is closed")
        self._iterated = True
        # Inside `async with`, the stream owns the generator and closes it in
        # __aexit__. Iterated bare, only the loop holds it, so a loop left early
        # frees it at once and the event loop's finalizer closes the response.
        if self._entered:
            self._gen = gen
        return gen

    async def _texts(self) -> AsyncGenerator[str, None]:
        parts = self._parts
        metrics = self.metrics
        gaps = metrics.gaps
        clock = time.perf_counter
        try:
            while True:
                batch = await self._next_batch()
                if not batch:
                    return
                for _, text in batch:
                    if text is not None:
                        parts.append(text)
                        now = clock()
                        if self._last_text:
                            gaps.append(now - self._last_text)
                        else:
                            self._first_text(now)
                        self._last_text = now
                        metrics.deltas += 1
                        self._yielded = True
                        yield text
                        if self._closed:  # aclose() from inside the loop body
                            return
        finally:
            _otel.stream_closed(self._trace)
            await self._close_reply()

    async def _typed_chunks(self) -> AsyncGenerator[ChatCompletionChunk, None]:
        validate = ChatCompletionChunk.model_validate
        metrics = self.metrics
        try:
            while True:
                batch = await self._next_batch()
                if not batch:
                    return
                for obj, text in batch:
                    try:
                        chunk = validate(_drop_none(obj))
                    except ValidationError as exc:
                        raise self._with_partial(
                            StreamError(
                                f"A chunk does not have the shape of a chat.completion.chunk:"
                                f" {exc.errors()[0]['loc']}: {exc.errors()[0]['msg']}"
                                f"{self._rid()}",
                                body=obj,
                                code=MALFORMED,
                            )
                        ) from None
                    if text is not None:
                        self._parts.append(text)
                        now = time.perf_counter()
                        if self._last_text:
                            metrics.gaps.append(now - self._last_text)
                        else:
                            self._first_text(now)
                        self._last_text = now
                        metrics.deltas += 1
                    self._yielded = True
                    yield chunk
                    if self._closed:
                        return
        finally:
            _otel.stream_closed(self._trace)
            await self._close_reply()

    def _first_text(self, now: float) -> None:
        assert self._t0 is not None
        self.metrics.ttft = now - self._t0 - self.metrics.queued
        if self._trace is not None:
            self._trace.first_token(self.metrics.ttft)

    async def _next_batch(self) -> list[_Item]:
        """The next chunks (with their first-choice text), [] at the end; retries and resumes."""
        while True:
            if self._closed:
                raise RuntimeError("this ChatStream is closed")
            if self._reply is None and self._pending_error is None:
                if self._complete:
                    return []
                await self._open()
            try:
                if self._pending_error is not None:
                    error, self._pending_error = self._pending_error, None
                    raise error
                batch = await self._read_batch()
                if batch:
                    return batch
                await self._end_of_response()
                return []
            except HolySheepError as exc:
                await self._close_reply()
                await self._recover(exc)

    # -- one attempt ------------------------------------------------------------

    async def _open(self) -> None:
        requester = self._requester
        if self._t0 is None:
            self._t0 = time.perf_counter()
            self._trace = _otel.stream_started(requester, self._body)
        try:
            reply = await requester.request(
                "POST",
                "/chat/completions",
                json=self._next_body,
                tokens=self._tokens,
                stream=True,
                max_retries=max(0, requester.retry.max_retries - self._retries_used),
                headers=self._headers,
                params=self._query,
                timeout=self._timeout,
                trace=self._trace,
            )
        except BadRequestError as exc:
            if self._drop_stream_options(exc):
                await self._open()
                return
            self._raise_open_failed(exc)
        except HolySheepError as exc:
            self._raise_open_failed(exc)
        self._retries_used += reply.attempts - 1
        self.metrics.attempts += reply.attempts
        self.metrics.queued += reply.permit.waited
        self._reply = reply
        response = reply.response
        self._headers_seen = response.headers
        ctype = response.headers.get("content-type", "").lower()
        if "html" in ctype:
            # A captive portal or a relay's error page answered 200.
            error: HolySheepError
            try:
                await read_error_body(response)
                error = invalid_response(response, "an event stream (text/event-stream)")
            except httpx.HTTPError as exc:
                error = APIConnectionError(
                    f"The connection broke reading an HTML answer ({type(exc).__name__})"
                    f"{self._rid()}"
                )
            finally:
                await self._close_reply()
            raise self._open_failed(error)
        self._json_body = "json" in ctype
        self._deadline = math.inf
        self._head = b""
        self._events = 0
        self._now = now = loop_clock()
        if self._idle is not None:
            self._deadline = now() + self._idle
        if self._json_body:
            return
        body = response.extensions.get("holysheep_async.body")
        if body is not None and response.headers.get("content-encoding", "identity") in (
            "",
            "identity",
        ):
            # Our transport's body, not content-encoded: read it directly, with the
            # idle deadline folded into the read's own timer. Saves httpx's layers
            # and a cancel scope per read (DESIGN.md, Performance).
            self._wire = body
        else:
            self._bytes = response.aiter_bytes()

    def _raise_open_failed(self, error: HolySheepError) -> NoReturn:
        new = self._open_failed(error)
        if new is error:
            # Raised as it is: "raise error from error" would replace its own cause
            # (the httpx error) with itself.
            raise error
        raise new from error

    def _open_failed(self, error: HolySheepError) -> HolySheepError:
        original = self._resuming_from
        if original is None:
            return error
        # The follow-up request of a resume failed: what the caller needs to know
        # is that the stream broke (with its partial text); the resume failure is the cause.
        log.warning("resuming the stream failed: %s", error)
        return self._with_partial(original)

    def _drop_stream_options(self, error: BadRequestError) -> bool:
        # Some servers (older Azure API versions, a few relays) reject stream_options.
        if not self._usage_by_default or "stream_options" not in str(error):
            return False
        self._usage_by_default = False
        self._body = {k: v for k, v in self._body.items() if k != "stream_options"}
        self._next_body = {k: v for k, v in self._next_body.items() if k != "stream_options"}
        log.info("the server rejected stream_options; streaming without usage: %s", error)
        return True

    async def _receive(self) -> bytes | None:
        """The next bytes of the body, None at its end; the idle deadline applies."""
        body = self._wire
        if body is not None:
            try:
                data = await body.next_piece(self._deadline)
            except httpx.HTTPError as exc:
                self._read_failed(exc)
                return None
            if data is None:
                raise self._idle_error()
            return data or None
        stream = self._bytes
        assert stream is not None
        try:
            if self._idle is None:
                return await stream.__anext__()
            with anyio.CancelScope(deadline=self._deadline):
                return await stream.__anext__()
            raise self._idle_error()
        except StopAsyncIteration:
            return None
        except httpx.HTTPError as exc:
            self._read_failed(exc)
            return None

    def _read_failed(self, exc: httpx.HTTPError) -> None:
        """A read failed: raise the matching error, or return when the answer was complete."""
        if self._all_finished():
            self._broke_after_finish = True
            return
        if isinstance(exc, httpx.TimeoutException):
            raise APITimeoutError(
                f"Timed out reading the stream ({type(exc).__name__}){self._rid()}"
            ) from exc
        raise APIConnectionError(
            f"The connection broke mid-stream ({type(exc).__name__}: {exc}){self._rid()}"
        ) from exc

    def _idle_error(self) -> StreamIdleTimeout:
        return StreamIdleTimeout(
            f"No data from the stream for {self._idle} s (idle timeout; pings do not count),"
            f" after {len(self.text)} characters{self._rid()}. Models that think silently for"
            " long need a larger stream_idle_timeout, or None"
        )

    async def _read_batch(self) -> list[_Item]:
        """Chunks from the next network read(s) that held data events; [] at the end."""
        if self._eof:
            return []
        if self._json_body:
            return await self._read_json()
        decoder = self._decoder
        while True:
            chunk = await self._receive()
            try:
                if chunk is None:
                    self._eof = True
                    # A body that ends is ended by the server: a last event missing only
                    # its blank line is whole. One whose connection broke is unfinished,
                    # and discarded (the SSE standard's rule).
                    events = [] if self._broke_after_finish else decoder.flush_raw()
                else:
                    if len(self._head) < _HEAD:
                        self._head += chunk[: _HEAD - len(self._head)]
                    events = decoder.feed_raw(chunk)
            except SSEError as exc:
                raise StreamError(f"Not an event stream: {exc}{self._rid()}", code=MALFORMED)
            if events:
                self._events += len(events)
                out = self._parse_tail(events) if self._eof else self._parse(events)
                if out:
                    if self._trace is not None:
                        self._trace.first_chunk()
                    if self._idle is not None:
                        self._deadline = self._now() + self._idle
                    return out
            if self._eof:
                return []

    def _parse_tail(self, events: list[RawEvent]) -> list[_Item]:
        """The last event of a body that ended without the blank line after it.

        A whole one is used (servers that close right after ``data: [DONE]``
        with no blank line); one that cannot be read was cut off, and is
        discarded as the SSE standard says of an unfinished event. What the
        stream then is depends on what came before it (``_end_of_response``):
        complete with a warning after the finish reason, else an error. (After
        a broken connection the unfinished event is not even looked at.)
        """
        try:
            return self._parse(events)
        except StreamError as exc:
            if exc.code != MALFORMED:
                raise
            log.warning(
                "discarding an unfinished last event (%s bytes, no blank line after it)%s",
                sum(len(e[1]) for e in events),
                self._rid(),
            )
            return []

    def _parse(self, events: list[RawEvent]) -> list[_Item]:
        out: list[_Item] = []
        take = self._take
        try:
            for event in events:
                name = event[0]
                data = event[1]
                if name != "message":
                    if name in _PING_EVENTS:
                        continue
                    if name == "error":
                        raise self._error_object(data)
                if data[:1] != "{":
                    if data.strip() == "[DONE]":
                        self._done_seen = True
                        self._eof = True
                        break
                    if not data or data.isspace():
                        continue  # an empty data line: a keep-alive
                try:
                    obj = from_json(data)
                except ValueError:
                    for one in self._lenient(data):
                        out.append((one, take(one, data)))
                    continue
                out.append((obj, take(obj, data)))
        except HolySheepError as exc:
            if not out:
                raise
            # Deliver what came before the error first; raise it on the next read.
            self._pending_error = exc
        self.metrics.chunks += len(out)
        return out

    def _lenient(self, data: str) -> list[Any]:
        try:
            # Raw control characters inside strings (strict JSON forbids them).
            return [json.loads(data, strict=False)]
        except ValueError:
            pass
        if "\n" in data:
            # Several JSON objects on consecutive data: lines with no blank line between.
            try:
                return [json.loads(p, strict=False) for p in data.split("\n") if p.strip()]
            except ValueError:
                pass
        raise self._malformed(data, "not JSON")

    def _take(self, obj: Any, data: str) -> str | None:
        """Record what a chunk says (id, usage, finish reasons); return its first-choice text."""
        if obj.__class__ is not dict:
            raise self._malformed(data, "not a JSON object")
        if obj.get("error"):
            raise self._error_object(data)
        if self.id is None:
            self.id = obj.get("id")
            self.model = obj.get("model")
        usage = obj.get("usage")
        if usage:
            self._usage_raw = usage
            self._usage = None
        choices = obj.get("choices")
        if not choices:
            return None
        text = None
        try:
            for choice in choices:
                index = choice.get("index") or 0
                delta = choice.get("delta")
                if delta:
                    content = delta.get("content")
                    if content and index == 0:
                        if content.__class__ is not str:
                            raise self._malformed(data, "delta.content is not a string")
                        text = content
                    elif delta.get("tool_calls") or delta.get("function_call"):
                        self._tool_calls = True
                    elif index == 0 and delta.get("refusal"):
                        self._refusal.append(delta["refusal"])
                reason = choice.get("finish_reason")
                if reason:
                    self._finish[index] = reason
        except (AttributeError, TypeError):
            raise self._malformed(data, "choices are not objects") from None
        return text

    async def _read_json(self) -> list[_Item]:
        # The server ignored "stream": true and answered with a whole completion.
        self._eof = True
        self._done_seen = True
        assert self._reply is not None
        response = self._reply.response
        raw: bytes | None = None
        try:
            with anyio.CancelScope(deadline=self._deadline):
                raw = await read_capped(response, self._requester.max_response_bytes)
        except httpx.HTTPError as exc:
            raise APIConnectionError(
                f"The connection broke reading the answer ({type(exc).__name__}){self._rid()}"
            ) from exc
        if raw is None:
            raise self._idle_error()
        data = raw.decode("utf-8", "replace")
        try:
            obj = from_json(raw)
        except ValueError:
            # A JSON content type with a body that is not JSON (empty, a proxy's text).
            raise invalid_response(
                response, "an event stream or a chat.completion JSON object"
            ) from None
        if isinstance(obj, dict) and not obj.get("error") and isinstance(obj.get("choices"), list):
            choices = []
            for choice in obj["choices"]:
                message = choice.get("message") if isinstance(choice, dict) else None
                if not isinstance(message, dict):
                    raise self._malformed(data, "a choice without a message")
                delta = dict(message)
                if isinstance(delta.get("tool_calls"), list):
                    delta["tool_calls"] = [
                        {**call, "index": i} if isinstance(call, dict) else call
                        for i, call in enumerate(delta["tool_calls"])
                    ]
                choices.append(
                    {
                        "index": choice.get("index", 0),
                        "delta": delta,
                        "logprobs": choice.get("logprobs"),
                        "finish_reason": choice.get("finish_reason"),
                    }
                )
            obj = {**obj, "object": "chat.completion.chunk", "choices": choices}
        return [(obj, self._take(obj, data))]

    async def _end_of_response(self) -> None:
        reply = self._reply
        assert reply is not None
        if self._done_seen:
            await self._drain()
        elif not self._all_finished() and not self._events:
            raise IncompleteStreamError(self._no_events_text())
        elif not self._all_finished():
            raise IncompleteStreamError(
                "The stream ended with neither 'data: [DONE]' nor a finish reason: the answer"
                f" is cut short after {len(self.text)} characters{self._rid()}"
            )
        elif self._broke_after_finish:
            log.warning(
                "the connection broke after the finish reason%s: the text is complete,"
                " the usage may be missing",
                self._rid(),
            )
        else:
            log.warning(
                "the stream ended without 'data: [DONE]' after its finish reason%s",
                self._rid(),
            )
        self.done = self._done_seen
        metrics = self.metrics
        assert self._t0 is not None
        metrics.total = time.perf_counter() - self._t0 - metrics.queued
        usage = self.usage
        if usage is not None:
            reply.permit.reconcile(usage.total_tokens)
            self._requester.record_usage(self.model or str(self._body.get("model")), usage)
        if usage is not None and usage.completion_tokens:
            metrics.tokens = self._deltas_before + usage.completion_tokens
        else:
            metrics.tokens = metrics.deltas
        self._complete = True
        if self._trace is not None:
            self._trace.stream_ended(self)
        await self._close_reply()

    async def _drain(self) -> None:
        grace = min(_DRAIN_GRACE, self._idle or _DRAIN_GRACE)
        body = self._wire
        if body is not None:
            stall = self._now() + grace
            try:
                while await body.next_piece(stall):
                    pass
            except httpx.HTTPError:
                pass
            return
        stream = self._bytes
        if stream is None:
            return
        with anyio.move_on_after(grace):
            try:
                while True:
                    await stream.__anext__()
            except (StopAsyncIteration, httpx.HTTPError):
                pass

    def _all_finished(self) -> bool:
        finish = self._finish
        return bool(finish) and 0 in finish and len(finish) >= self._n

    async def _close_reply(self) -> None:
        reply, self._reply = self._reply, None
        stream, self._bytes = self._bytes, None
        wire, self._wire = self._wire, None
        if reply is None:
            return
        if stream is None and wire is not None and wire.finished:
            # Nothing left to wait for (the body was read to its end and the
            # connection handed back): closing cannot be cut short, no shield needed.
            await reply.aclose()
            return
        with anyio.CancelScope(shield=True):
            aclose = getattr(stream, "aclose", None)
            if aclose is not None:
                try:
                    await aclose()
                except Exception:  # the response is closed next in any case
                    pass
            await reply.aclose()

    # -- failures ---------------------------------------------------------------

    async def _recover(self, error: HolySheepError) -> None:
        """Get ready for another attempt after ``error``, or raise it."""
        policy = self._requester.retry
        resume = self._yielded
        if (
            self._closed
            or not _retryable(error)
            or self._retries_used >= policy.max_retries
            or (resume and (self._resume is None or self._n > 1 or self._tool_calls))
        ):
            raise self._with_partial(error)
        self._retries_used += 1
        wait = policy.backoff(self._retries_used)
        if _is_rate_limit(error):
            # Like a 429 status: every request of this client pauses, not just this stream.
            self._requester.limiter.cooldown(wait)
            _otel.cooldown(self._trace, wait)
        log.info(
            "%s the stream in %.3f s (retry %d of %d): %s",
            "resuming" if resume else "retrying",
            wait,
            self._retries_used,
            policy.max_retries,
            error,
        )
        _otel.retrying(self._trace, self.metrics.attempts + 1, wait, error, resume=resume)
        await self._requester.sleep(wait)
        if resume:
            assert self._resume is not None
            self._next_body = self._resume_body(self._resume)
            self._resuming_from = error
            self.metrics.resumes += 1
        self._decoder = SSEDecoder()
        self._eof = False
        self._done_seen = False
        self._broke_after_finish = False
        self._finish = {}
        self._usage_raw = None
        self._usage = None
        self.id = None
        self.model = None
        self._deltas_before = self.metrics.deltas

    def _resume_body(self, strategy: ResumeStrategy) -> dict[str, Any]:
        body = strategy(dict(self._body), self.text)
        for key in ("max_completion_tokens", "max_tokens"):
            limit = self._body.get(key)
            if isinstance(limit, int) and not isinstance(limit, bool):
                # One delta is about one token: what is left of the original budget.
                body[key] = max(1, limit - self.metrics.deltas)
        return body

    def _with_partial(self, error: HolySheepError) -> HolySheepError:
        if self._yielded:
            error.partial_text = self.text
        return error

    def _rid(self) -> str:
        reply = self._reply
        rid = reply.response.headers.get("x-request-id") if reply is not None else None
        return f" [request id {self._requester.redact(rid)}]" if rid else ""

    def _no_events_text(self) -> str:
        """What a 2xx answer that held no event at all was (status, content type, bytes)."""
        assert self._reply is not None
        response = self._reply.response
        ctype = response.headers.get("content-type", "")
        kind = f"content-type {ctype}" if ctype else "no content-type"
        head = self._requester.redact(self._head.decode("utf-8", "replace"))
        what = f"{head[:120]!r}" if head else "an empty body"
        return (
            f"{response.status_code} from POST {response.request.url.path} ({kind}) held no"
            f" event stream: got {what}{self._rid()}"
        )

    def _malformed(self, data: str, why: str) -> StreamError:
        data = self._requester.redact(data)  # a server may echo the key back
        return StreamError(
            f"Malformed event in the stream ({why}): {data[:200]!r}{self._rid()}",
            body=data,
            code=MALFORMED,
        )

    def _error_object(self, data: str) -> StreamError:
        data = self._requester.redact(data)  # a server may echo the key back
        body, message, code, _ = describe_error_body(data.encode())
        return StreamError(
            f"Error inside the stream: {message or data[:200]}"
            + (f" (code {code})" if code else "")
            + self._rid(),
            body=body,
            code=code,
        )

