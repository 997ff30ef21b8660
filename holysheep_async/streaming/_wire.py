"""One attempt on the wire: send, read the body under the idle deadline, drain, close.

A :class:`Wire` is made for each request a stream sends. It knows bytes, SSE
events and JSON, not what they mean: each data event goes to the protocol's
``take`` (see ``_protocol``). It reads the events of each network read as one
batch, so the per-chunk cost is one JSON decode and one ``take`` call.

- The idle deadline counts from the response headers and is pushed back only by
  data events (pings, comments and empty data lines do not count); a stall
  raises :class:`StreamIdleTimeout`.
- A body from this package's transport is read directly (``next_piece``, the
  deadline folded into the read's own timer); any other through httpx.
- A read that fails after the protocol says the answer is complete is the end
  of the body (``broke_after_finish``), not an error; the unfinished last event
  is discarded, as the SSE standard says.
- :meth:`Wire.finish`: what the end of the body means (``[DONE]`` seen; complete
  without it, with a warning; cut short, an error), and the drain after ``[DONE]``
  that lets the connection go back to the pool.

Nothing here names the client's classes: :class:`Requesting` is what a wire
needs from the requester (``_requester.Requester`` satisfies it).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any, Protocol

import anyio
import httpx
from pydantic_core import from_json

from .. import _otel
from .._body import read_capped, read_error_body
from .._compat import loop_clock
from ..errors import (
    APIConnectionError,
    APITimeoutError,
    HolySheepError,
    IncompleteStreamError,
    StreamError,
    StreamIdleTimeout,
    invalid_response,
)
from ..models import Usage
from ..retry import RetryPolicy
from ..sse import RawEvent, SSEDecoder, SSEError
from ._metrics import StreamMetrics
from ._protocol import MALFORMED, PING_EVENTS, Errors, StreamProtocol, lenient

__all__ = ["Body", "Cooling", "Permitting", "Replying", "Requesting", "Wire"]

log = logging.getLogger("holysheep_async")

_HEAD = 120  # bytes of a body kept to show in an error
# After [DONE], how long to wait for the end of the HTTP body so that the
# connection can go back to the pool (normally it is already there).
_DRAIN_GRACE = 0.5

# A chunk's JSON: orjson where it is installed (CPython; see pyproject.toml), ~15% fewer
# instructions than pydantic-core's parser for a chat chunk. They read the same JSON the
# same way but for two things: orjson refuses NaN and infinities, numbers past a double's
# range and escaped lone surrogates (those events go on to pydantic-core, below, as
# before), and reads an integer past 64 bits as a float (no field of a chunk holds one:
# token counts, indexes, timestamps).
_loads: Callable[[str], Any]
try:
    from orjson import loads as _loads
except ImportError:  # pragma: no cover - PyPy, or installed without it
    _loads = from_json


def _strict_or_lenient(text: str, errors: Errors) -> list[Any]:
    """An event's data the fast decoder refused: pydantic-core's parser (what read every
    event before: it takes NaN and infinities), else :func:`lenient`."""
    try:
        return [from_json(text)]
    except ValueError:
        return lenient(text, errors)


# -- what a wire needs from the layers it is handed ---------------------------------


class Permitting(Protocol):
    """The limiter's permit a reply holds."""

    @property
    def waited(self) -> float: ...

    def reconcile(self, tokens_used: int) -> None: ...


class Replying(Protocol):
    """An open response, the permit it holds, and how many requests it took."""

    @property
    def response(self) -> httpx.Response: ...

    @property
    def permit(self) -> Permitting: ...

    @property
    def attempts(self) -> int: ...

    async def aclose(self) -> None: ...


class Cooling(Protocol):
    """The client's limiter, as a stream uses it: a rate-limit error pauses every request."""

    def cooldown(self, seconds: float, *, caller_waits: bool = True) -> None: ...


class Requesting(Protocol):
    """What a stream needs from the client's request path (``_requester.Requester``)."""

    @property
    def base_url(self) -> str: ...

    @property
    def timeout(self) -> httpx.Timeout: ...

    @property
    def retry(self) -> RetryPolicy: ...

    @property
    def limiter(self) -> Cooling: ...

    @property
    def max_response_bytes(self) -> int | None: ...

    @property
    def sleep(self) -> Callable[[float], Awaitable[None]]: ...

    def redact(self, text: str) -> str: ...

    def record_usage(self, model: str, usage: Usage | None, *, batch: bool = False) -> None: ...

    async def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        tokens: int = 0,
        stream: bool = False,
        max_retries: int | None = None,
        timeout: httpx.Timeout | None = None,
        trace: _otel.ChatTrace | None = None,
    ) -> Replying: ...


class Body(Protocol):
    """A response body of this package's transport, read directly (``_transport.exchange``)."""

    @property
    def finished(self) -> bool: ...

    async def next_piece(self, stall: float = math.inf) -> bytes | None: ...


# -- one attempt ----------------------------------------------------------------------


class Wire:
    """One request of a stream and the reading of its body. Made by the core per attempt."""

    __slots__ = (
        "_body",
        "_broke_after_finish",
        "_bytes",
        "_deadline",
        "_decoder",
        "_done_seen",
        "_eof",
        "_errors",
        "_events",
        "_head",
        "_idle",
        "_json_body",
        "_metrics",
        "_now",
        "_pending_error",
        "_protocol",
        "_requester",
        "_take",
        "_trace",
        "reply",
    )

    def __init__(
        self,
        requester: Requesting,
        protocol: StreamProtocol,
        errors: Errors,
        metrics: StreamMetrics,
        trace: _otel.ChatTrace | None,
        idle: float | None,
    ) -> None:
        self._requester = requester
        self._protocol = protocol
        self._take = protocol.take
        self._errors = errors
        self._metrics = metrics
        self._trace = trace
        self._idle = idle
        #: The response being read (None once closed).
        self.reply: Replying | None = None
        self._bytes: AsyncIterator[bytes] | None = None
        # The body of a response from our own transport, read directly (see begin).
        self._body: Body | None = None
        self._decoder = SSEDecoder()
        self._json_body = False
        self._deadline = math.inf
        self._now: Callable[[], float] = time.monotonic  # the loop's clock, set in begin
        self._eof = False
        self._done_seen = False
        self._broke_after_finish = False
        # What this attempt's body held: its first bytes and how many events (for errors).
        self._head = b""
        self._events = 0
        self._pending_error: HolySheepError | None = None

    # -- opening --

    async def send(
        self,
        path: str,
        body: dict[str, Any],
        *,
        tokens: int,
        max_retries: int,
        headers: Mapping[str, str] | None,
        query: Mapping[str, Any] | None,
        timeout: httpx.Timeout | None,
        method: str = "POST",
    ) -> Replying:
        """Send the request (the requester's limits and retries apply); the open reply.
        A ``GET`` (a stored stream read again) sends no body."""
        reply = await self._requester.request(
            method,
            path,
            json=None if method == "GET" else body,
            tokens=tokens,
            stream=True,
            max_retries=max_retries,
            headers=headers,
            params=query,
            timeout=timeout,
            trace=self._trace,
        )
        self.reply = reply
        return reply

    async def begin(self) -> None:
        """Look at the response's head and get ready to read its body (the idle deadline starts).

        An HTML page answering 200 (a captive portal, a relay's error page) raises
        :class:`InvalidResponseError`, the response closed.
        """
        assert self.reply is not None
        response = self.reply.response
        ctype = response.headers.get("content-type", "").lower()
        if "html" in ctype:
            error: HolySheepError
            try:
                await read_error_body(response)
                error = invalid_response(response, "an event stream (text/event-stream)")
            except httpx.HTTPError as exc:
                error = APIConnectionError(
                    f"The connection broke reading an HTML answer ({type(exc).__name__})"
                    f"{self.rid()}"
                )
            finally:
                await self.close()
            raise error
        self._json_body = "json" in ctype
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
            self._body = body
        else:
            self._bytes = response.aiter_bytes()

    # -- reading --

    async def read(self) -> list[Any]:
        """Items from the next network read(s) that held data events; [] at the end."""
        if self._pending_error is not None:
            error, self._pending_error = self._pending_error, None
            raise error
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
                raise StreamError(f"Not an event stream: {exc}{self.rid()}", code=MALFORMED)
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

    async def _receive(self) -> bytes | None:
        """The next bytes of the body, None at its end; the idle deadline applies."""
        body = self._body
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

    def _parse(self, events: list[RawEvent]) -> list[Any]:
        """The items of a read's events: no Python call per chunk but the JSON decode and
        ``take``."""
        out: list[Any] = []
        append = out.append
        take = self._take
        loads = _loads
        try:
            for name, data, _, _ in events:
                if name != "message":
                    if name in PING_EVENTS:
                        continue
                    if name == "error":
                        raise self._errors.error_object(data)
                if data[:1] != "{":
                    if data.strip() == "[DONE]":
                        self._done_seen = True
                        self._eof = True
                        break
                    if not data or data.isspace():
                        continue  # an empty data line: a keep-alive
                try:
                    obj = loads(data)
                except ValueError:
                    for one in _strict_or_lenient(data, self._errors):
                        append(take(one, data))
                    continue
                append(take(obj, data))
        except HolySheepError as exc:
            if not out:
                raise
            # Deliver what came before the error first; raise it on the next read.
            self._pending_error = exc
        self._metrics.chunks += len(out)
        return out

    def _parse_tail(self, events: list[RawEvent]) -> list[Any]:
        """The last event of a body that ended without the blank line after it.

        A whole one is used (servers that close right after ``data: [DONE]``
        with no blank line); one that cannot be read was cut off, and is
        discarded as the SSE standard says of an unfinished event. What the
        stream then is depends on what came before it (:meth:`finish`):
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
                self.rid(),
            )
            return []

    async def _read_json(self) -> list[Any]:
        # The server ignored "stream": true and answered with a whole JSON body.
        self._eof = True
        self._done_seen = True
        assert self.reply is not None
        response = self.reply.response
        raw: bytes | None = None
        try:
            with anyio.CancelScope(deadline=self._deadline):
                raw = await read_capped(response, self._requester.max_response_bytes)
        except httpx.HTTPError as exc:
            raise APIConnectionError(
                f"The connection broke reading the answer ({type(exc).__name__}){self.rid()}"
            ) from exc
        if raw is None:
            raise self._idle_error()
        try:
            obj = from_json(raw)
        except ValueError:
            # A JSON content type with a body that is not JSON (empty, a proxy's text).
            raise invalid_response(
                response, f"an event stream or {self._protocol.whole_name}"
            ) from None
        return self._protocol.whole(obj, raw.decode("utf-8", "replace"))

    def _read_failed(self, exc: httpx.HTTPError) -> None:
        """A read failed: raise the matching error, or return when the answer was complete."""
        if self._protocol.complete():
            self._broke_after_finish = True
            return
        if isinstance(exc, httpx.TimeoutException):
            raise APITimeoutError(
                f"Timed out reading the stream ({type(exc).__name__}){self.rid()}"
            ) from exc
        raise APIConnectionError(
            f"The connection broke mid-stream ({type(exc).__name__}: {exc}){self.rid()}"
        ) from exc

    def _idle_error(self) -> StreamIdleTimeout:
        return StreamIdleTimeout(
            f"No data from the stream for {self._idle} s (idle timeout; pings do not count),"
            f" after {len(self._protocol.partial_text())} characters{self.rid()}. Models that"
            " think silently for long need a larger stream_idle_timeout, or None"
        )

    # -- the end --

    async def finish(self) -> bool:
        """The body ended: raise if the answer was cut short; True when ``[DONE]`` came."""
        protocol = self._protocol
        ending = protocol.ending
        if self._done_seen:
            await self._drain()
        elif not protocol.complete() and not self._events:
            raise IncompleteStreamError(self._no_events_text())
        elif not protocol.complete():
            raise IncompleteStreamError(
                f"The stream ended with neither 'data: [DONE]' nor a {ending}: the answer"
                f" is cut short after {len(protocol.partial_text())} characters{self.rid()}"
            )
        elif self._broke_after_finish:
            log.warning(
                "the connection broke after the %s%s: the text is complete,"
                " the usage may be missing",
                ending,
                self.rid(),
            )
        elif protocol.done_marker:
            log.warning(
                "the stream ended without 'data: [DONE]' after its %s%s", ending, self.rid()
            )
        return self._done_seen

    async def _drain(self) -> None:
        grace = min(_DRAIN_GRACE, self._idle or _DRAIN_GRACE)
        body = self._body
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

    async def close(self) -> None:
        """Close the response (idempotent; shielded: it runs when cancelled too)."""
        reply, self.reply = self.reply, None
        stream, self._bytes = self._bytes, None
        body, self._body = self._body, None
        if reply is None:
            return
        if stream is None and body is not None and body.finished:
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

    # -- what errors say --

    def rid(self) -> str:
        """`` [request id ...]`` of the open response, or ""."""
        reply = self.reply
        rid = reply.response.headers.get("x-request-id") if reply is not None else None
        return f" [request id {self._requester.redact(rid)}]" if rid else ""

    def _no_events_text(self) -> str:
        """What a 2xx answer that held no event at all was (status, content type, bytes)."""
        assert self.reply is not None
        response = self.reply.response
        ctype = response.headers.get("content-type", "")
        kind = f"content-type {ctype}" if ctype else "no content-type"
        head = self._requester.redact(self._head.decode("utf-8", "replace"))
        what = f"{head[:120]!r}" if head else "an empty body"
        return (
            f"{response.status_code} from POST {response.request.url.path} ({kind}) held no"
            f" event stream: got {what}{self.rid()}"
        )
