"""The stream core: the attempts of one stream, and the surface every stream shares.

:class:`StreamCore` is protocol-neutral. A stream class (``ChatStream``) is a
subclass that sets ``_state`` (its :class:`~._protocol.StreamProtocol`),
yields from :meth:`StreamCore._next_batch` in its own generators, and says
what the end of a complete answer means (:meth:`StreamCore._ended`). The core
does the rest:

- opens a :class:`~._wire.Wire` per attempt, reads batches of items from it;
- on a failure asks :func:`~._policy.decide`: retry from scratch while nothing
  was yielded, resume with the caller's strategy when something was and the
  protocol allows it, else raise with ``partial_text``; a rate-limit error
  object pauses every request of the client, like a 429;
- ``async with``, ``aclose()`` and cancellation close the response at once.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncGenerator, Mapping
from typing import Any, NoReturn

import anyio
import httpx
from typing_extensions import Self

from .. import _otel
from ..errors import BadRequestError, HolySheepError
from ._metrics import StreamMetrics
from ._policy import ResumeStrategy, _stream_timeout, decide, is_rate_limit, resume_body
from ._protocol import Errors, StreamProtocol
from ._wire import Replying, Requesting, Wire

__all__ = ["StreamCore"]

log = logging.getLogger("holysheep_async")


class StreamCore:
    """One streamed answer over as many requests as its retries and resumes take."""

    #: The protocol's state (set by the subclass).
    _state: StreamProtocol

    def __init__(
        self,
        requester: Requesting,
        path: str,
        body: dict[str, Any],
        *,
        tokens: int,
        idle_timeout: float | None,
        resume: ResumeStrategy | None = None,
        headers: Mapping[str, str] | None = None,
        query: Mapping[str, Any] | None = None,
        timeout: httpx.Timeout | None = None,
    ) -> None:
        self._requester = requester
        #: Where the next attempt goes (a subclass may change it between attempts: a
        #: background Responses stream that broke GETs the rest of its events).
        self._method = "POST"
        self._path = path
        self._body = body
        self._next_body = body
        self._tokens = tokens
        self._idle = idle_timeout
        self._resume = resume
        self._headers = dict(headers) if headers else None
        self._query = query
        # This call's timeout (None: the client's), its read timeout raised to the idle timeout.
        self._timeout = _stream_timeout(timeout or requester.timeout, idle_timeout) or timeout
        self._errors = Errors(requester.redact, self._rid)
        # The attempt being read.
        self._wire: Wire | None = None
        # Iteration.
        self._gen: AsyncGenerator[Any, None] | None = None
        self._entered = False
        self._iterated = False
        self._closed = False
        self._complete = False
        self._yielded = False
        self._retries_used = 0
        self._resuming_from: HolySheepError | None = None
        self._deltas_before = 0
        self._t0: float | None = None
        self._trace: _otel.ChatTrace | None = None  # the span, when OpenTelemetry listens
        self._last_text = 0.0  # when the last text delta went out (perf_counter)
        self._headers_seen: httpx.Headers | None = None
        #: True when the server ended the body with ``data: [DONE]``.
        self.done = False
        self.metrics = StreamMetrics()

    # -- the surface every stream has -----------------------------------------------

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

    async def aclose(self) -> None:
        """Close the HTTP response now (idempotent)."""
        # The generator is not closed here: aclose() may be called from inside
        # the consumer's loop body, where closing the suspended generator from
        # under the loop races the loop's next step. Closing the response
        # frees the connection at once; the generator sees ``_closed`` and
        # ends at its next step (or in __aexit__ / when it is collected).
        self._closed = True
        await self._close_wire()

    @property
    def response(self) -> httpx.Response | None:
        """The HTTP response of the current attempt (headers, request id), once opened."""
        wire = self._wire
        reply = wire.reply if wire is not None else None
        return reply.response if reply is not None else None

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

    # -- what a subclass says -------------------------------------------------------

    def _first_text(self, now: float) -> None:
        assert self._t0 is not None
        self.metrics.ttft = now - self._t0 - self.metrics.queued
        if self._trace is not None:
            self._trace.first_token(self.metrics.ttft)

    def _timed_text(self) -> None:
        """A text delta goes out now: the time to first token, or a gap; the count.

        (A surface's plain text loop inlines this: it is the per-chunk hot path.)
        """
        now = time.perf_counter()
        if self._last_text:
            self.metrics.gaps.append(now - self._last_text)
        else:
            self._first_text(now)
        self._last_text = now
        self.metrics.deltas += 1

    def _start_trace(self) -> _otel.ChatTrace | None:
        """The span of the stream, when OpenTelemetry listens (called before the first request)."""
        return None

    def _retry_open(self, error: BadRequestError) -> bool:
        """A 400 answered the request: True when the body was changed and may be sent again."""
        return False

    def _ended(self, reply: Replying | None) -> None:
        """The answer is complete (``reply``: the last attempt's): account for it."""

    def _annotate(self, error: HolySheepError) -> None:
        """An error leaves the stream after something was yielded: add what the protocol had
        beyond ``partial_text`` (``partial_text`` is set already)."""

    # -- iteration ------------------------------------------------------------------

    def _begin(self, gen: AsyncGenerator[Any, None]) -> AsyncGenerator[Any, None]:
        name = type(self).__name__
        if self._iterated:
            raise RuntimeError(f"a {name} can be iterated only once")
        if self._closed:
            raise RuntimeError(f"this {name} is closed")
        self._iterated = True
        # Inside `async with`, the stream owns the generator and closes it in
        # __aexit__. Iterated bare, only the loop holds it, so a loop left early
        # frees it at once and the event loop's finalizer closes the response.
        if self._entered:
            self._gen = gen
        return gen

    async def _next_batch(self) -> list[Any]:
        """The next items (what ``take`` returned), [] at the end; retries and resumes."""
        while True:
            if self._closed:
                raise RuntimeError(f"this {type(self).__name__} is closed")
            wire = self._wire
            if wire is None:
                if self._complete:
                    return []
                wire = await self._open()
            try:
                batch = await wire.read()
                if batch:
                    return batch
                await self._end(wire)
                return []
            except HolySheepError as exc:
                await self._close_wire()
                await self._recover(exc)

    # -- one attempt ----------------------------------------------------------------

    async def _open(self) -> Wire:
        requester = self._requester
        if self._t0 is None:
            self._t0 = time.perf_counter()
            self._trace = self._start_trace()
        wire = Wire(requester, self._state, self._errors, self.metrics, self._trace, self._idle)
        try:
            reply = await wire.send(
                self._path,
                self._next_body,
                method=self._method,
                tokens=self._tokens,
                max_retries=max(0, requester.retry.max_retries - self._retries_used),
                headers=self._headers,
                query=self._query,
                timeout=self._timeout,
            )
        except BadRequestError as exc:
            if self._retry_open(exc):
                return await self._open()
            self._raise_open_failed(exc)
        except HolySheepError as exc:
            self._raise_open_failed(exc)
        self._retries_used += reply.attempts - 1
        self.metrics.attempts += reply.attempts
        self.metrics.queued += reply.permit.waited
        self._headers_seen = reply.response.headers
        self._wire = wire
        try:
            await wire.begin()
        except HolySheepError as exc:
            self._wire = None  # begin() closed it
            self._raise_open_failed(exc)
        return wire

    def _raise_open_failed(self, error: HolySheepError) -> NoReturn:
        original = self._resuming_from
        if original is None:
            # Raised as it is: "raise error from error" would replace its own cause
            # (the httpx error) with itself.
            raise error
        # The follow-up request of a resume failed: what the caller needs to know
        # is that the stream broke (with its partial text); the resume failure is the cause.
        log.warning("resuming the stream failed: %s", error)
        raise self._with_partial(original) from error

    async def _end(self, wire: Wire) -> None:
        self.done = await wire.finish()
        metrics = self.metrics
        assert self._t0 is not None
        metrics.total = time.perf_counter() - self._t0 - metrics.queued
        self._complete = True
        self._ended(wire.reply)
        await self._close_wire()

    async def _close_wire(self) -> None:
        wire, self._wire = self._wire, None
        if wire is not None:
            await wire.close()

    # -- failures -------------------------------------------------------------------

    async def _recover(self, error: HolySheepError) -> None:
        """Get ready for another attempt after ``error``, or raise it."""
        policy = self._requester.retry
        action = decide(
            error,
            retries_used=self._retries_used,
            max_retries=policy.max_retries,
            yielded=self._yielded,
            can_resume=self._resume is not None and self._state.resumable(),
        )
        if self._closed or action == "raise":
            raise self._with_partial(error)
        resume = action == "resume"
        self._retries_used += 1
        wait = policy.backoff(self._retries_used)
        if is_rate_limit(error):
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
            self._next_body = resume_body(
                self._resume, self._body, self._state.partial_text(), self.metrics.deltas
            )
            self._resuming_from = error
            self.metrics.resumes += 1
        self._state.restart(resume)
        self._deltas_before = self.metrics.deltas

    def _with_partial(self, error: HolySheepError) -> HolySheepError:
        if self._yielded:
            error.partial_text = self._state.partial_text()
            self._annotate(error)
        return error

    def _rid(self) -> str:
        wire = self._wire
        return wire.rid() if wire is not None else ""
