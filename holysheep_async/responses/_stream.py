"""ResponseStream: what ``client.responses.stream(...)`` returns.

The stream core (:mod:`holysheep_async.streaming`) does the requests, the
reading under the idle deadline, the retries and the closing;
:class:`~._state.ResponsesState` reads the events. What is left here:

- the surface: iterate the output text (``async for text in stream``) or the
  typed server events (:meth:`ResponseStream.events`); ``stream.response`` is
  the final :class:`Response` once the stream has ended;
- where each attempt goes: ``POST /responses``; for a background response
  whose stream broke, ``GET /responses/{id}?stream=true&starting_after=N``
  (the events after the last one taken: no text twice, nothing lost, no
  second request billed); on a server without a Responses API, the chat
  fallback (``POST /chat/completions``, chunks read as Responses events).

The chat stream's guarantees hold: failures before anything was yielded are
retried from scratch (a background response: resumed), after that the error
raised carries ``partial_text``; the idle timeout bounds the silence between
events; an ``error`` event is a :class:`StreamError`, ``response.failed`` a
:class:`ResponseFailedError`; leaving ``async with`` or cancelling closes the
connection at once.
"""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic

import httpx
from pydantic import BaseModel, ValidationError

from .. import _otel
from ..errors import (
    APIStatusError,
    HolySheepError,
    InvalidResponseError,
    ResponseFailedError,
    StreamError,
)
from ..models import ModelT, attach_response
from ..streaming import StreamCore, StreamMetrics
from ._events import ResponseStreamEvent, parse_event
from ._fallback import check_stateless, to_chat_body
from ._models import ParsedResponse, Response, ResponseUsage
from ._request import no_responses_api, parse_output, prompt, trace_end
from ._state import MALFORMED, Item, ResponsesState

if TYPE_CHECKING:
    from ..streaming._wire import Replying, Requesting, Wire

__all__ = ["ParsedResponseStream", "ResponseStream", "StreamMetrics", "StreamSetup"]

#: ``(response, reply, created=...)``: counts a response's usage once (the resource's).
Count = Callable[..., None]


@dataclass
class StreamSetup:
    """What a stream is given by ``client.responses`` (plain values and callbacks)."""

    requester: Requesting
    body: dict[str, Any] | None
    response_id: str | None
    starting_after: int | None
    tokens: int
    idle_timeout: float | None
    headers: Mapping[str, str] | None
    query: Mapping[str, Any] | None
    timeout: httpx.Timeout | None
    fallback: Callable[[], str | None]
    on_no_api: Callable[[str], None]
    count: Count


def _same(body: dict[str, Any], partial: str) -> dict[str, Any]:
    return body  # a background response resumes by GET, its body is not sent again


class ResponseStream(StreamCore):
    """One streamed response (see the module docstring).

    >>> async with client.responses.stream(model="gpt-4o", input="Hi") as stream:  # doctest: +SKIP
    ...     async for text in stream:
    ...         print(text, end="")
    >>> stream.response.usage  # doctest: +SKIP

    Attributes: ``text`` (the output text so far), ``reasoning``, ``id``,
    ``status``, ``sequence_number`` (of the last event), ``usage`` and
    ``response`` (once ended), ``metrics``, ``request_id``, ``http_response``.
    """

    def __init__(self, setup: StreamSetup) -> None:
        super().__init__(
            setup.requester,
            "/responses",
            setup.body or {},
            tokens=setup.tokens,
            idle_timeout=setup.idle_timeout,
            headers=setup.headers,
            query=setup.query,
            timeout=setup.timeout,
        )
        self._setup = setup
        self._rs = ResponsesState(setup.body, redact=setup.requester.redact, where=self._rid)
        self._state = self._rs
        # A stream of a response created earlier (``responses.resume``): GET from the start.
        self._attach = setup.response_id
        if setup.response_id is not None:
            self._rs.background = True
            self._rs.acc.id = setup.response_id
            self._rs.acc.sequence_number = setup.starting_after
        if self._rs.background:
            self._resume = _same
        self._final: Response | None = None

    # -- public surface -------------------------------------------------------------------

    def __aiter__(self) -> AsyncIterator[str]:
        return self._begin(self._texts())

    def events(self) -> AsyncIterator[ResponseStreamEvent]:
        """The typed server events (``response.created``, ``response.output_text.delta``,
        ``response.function_call_arguments.delta``, ..., ``response.completed``).

        >>> async with client.responses.stream(model=m, input=q, tools=t) as s:  # doctest: +SKIP
        ...     async for event in s.events():
        ...         if event.type == "response.function_call_arguments.delta":
        ...             print(event.delta, end="")
        """
        return self._begin(self._typed())

    @property
    def text(self) -> str:
        """The output text so far."""
        return self._rs.acc.text

    @property
    def reasoning(self) -> str:
        """The reasoning summary text so far ('' if none)."""
        return self._rs.acc.reasoning

    @property
    def id(self) -> str | None:
        """The response's id, once ``response.created`` came."""
        return self._rs.acc.id

    @property
    def model(self) -> str | None:
        return self._rs.acc.model

    @property
    def status(self) -> str | None:
        return self._rs.acc.status

    @property
    def sequence_number(self) -> int | None:
        """The ``sequence_number`` of the last event taken (resume after it)."""
        return self._rs.acc.sequence_number

    @property
    def fallback(self) -> bool:
        """True when the answer came as a chat completion (a server without ``/responses``)."""
        return self._rs.chat

    @property
    def response(self) -> Response:  # type: ignore[override]
        """The final :class:`Response`, once the stream has ended (RuntimeError before)."""
        if self._final is None:
            raise RuntimeError(
                "stream.response is known once the stream has ended: iterate it first"
                " (stream.text holds the text so far)"
            )
        return self._final

    @property
    def http_response(self) -> httpx.Response | None:
        """The HTTP response of the current attempt (headers, request id), once opened."""
        return StreamCore.response.fget(self)  # type: ignore[attr-defined,no-any-return]

    @property
    def usage(self) -> ResponseUsage | None:
        """Token usage, once the stream has ended (None before, or when the server sent none)."""
        return self._final.usage if self._final is not None else None

    def __repr__(self) -> str:
        return (
            f"<{type(self).__name__} model={self._body.get('model')!r} id={self.id!r}"
            f" chars={len(self.text)} status={self.status!r}>"
        )

    # -- iteration ------------------------------------------------------------------------

    async def _texts(self) -> AsyncGenerator[str, None]:
        metrics = self.metrics
        gaps = metrics.gaps
        clock = time.perf_counter
        try:
            while True:
                batch = await self._next_batch()
                if not batch:
                    return
                for items in batch:
                    for _, text in items:
                        if text is None:
                            continue
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
            await self._close_wire()

    async def _typed(self) -> AsyncGenerator[ResponseStreamEvent, None]:
        try:
            while True:
                batch = await self._next_batch()
                items: list[Item] = [i for group in batch for i in group]
                if not batch:
                    items = self._rs.closing  # the fallback's closing events
                    self._rs.closing = []
                for obj, text in items:
                    try:
                        event = parse_event(obj)
                    except ValueError as exc:
                        raise self._with_partial(
                            StreamError(f"{exc}{self._rid()}", body=obj, code=MALFORMED)
                        ) from None
                    if text is not None:
                        self._timed_text()
                    self._yielded = True
                    yield event
                    if self._closed:
                        return
                if not batch:
                    return
        finally:
            _otel.stream_closed(self._trace)
            await self._close_wire()

    # -- where each attempt goes ----------------------------------------------------------

    async def _open(self) -> Wire:
        rs = self._rs
        target = rs.resume_id() or self._attach
        if target is not None:
            self._attach = None
            self._method = "GET"
            self._path = f"/responses/{target}"
            self._next_body = {}  # a GET: no body
            query: dict[str, Any] = {**(self._setup.query or {}), "stream": "true"}
            if rs.acc.sequence_number is not None:
                query["starting_after"] = rs.acc.sequence_number
            self._query = query
            self._tokens = 0  # nothing new is asked for: nothing to count against tpm
            return await super()._open()
        if not rs.chat and self._setup.body is not None:
            reason = self._setup.fallback()
            if reason is not None:
                self._to_chat(reason)
        try:
            return await super()._open()
        except (APIStatusError, InvalidResponseError) as exc:
            reason = no_responses_api(exc)
            if rs.chat or self._setup.body is None or reason is None:
                raise
            self._setup.on_no_api(reason)
            self._to_chat(reason)
            return await super()._open()

    def _to_chat(self, reason: str) -> None:
        body = self._setup.body
        assert body is not None
        check_stateless(body, reason)
        chat = to_chat_body(body, reason)
        chat["stream"] = True
        chat.setdefault("stream_options", {"include_usage": True})
        self._path = "/chat/completions"
        self._body = self._next_body = chat
        self._rs.to_chat()
        self._resume = None

    async def _recover(self, error: HolySheepError) -> None:
        if isinstance(error, ResponseFailedError):
            raise self._with_partial(error)  # the server gave up: asking again gets the same
        await super()._recover(error)

    # -- what the core asks ---------------------------------------------------------------

    def _start_trace(self) -> _otel.ChatTrace | None:
        body = self._setup.body or {"model": None}
        return _otel.responses_started(
            self._requester.base_url, body, stream=True, messages=lambda: prompt(body)
        )

    def _ended(self, reply: Replying | None) -> None:
        rs = self._rs
        rs.finish()
        cls: type[Response] = Response if self._model_class() is None else ParsedResponse
        try:
            response = cls.model_validate(rs.acc.build())
        except ValidationError as exc:
            first = exc.errors()[0]
            raise StreamError(
                f"The final response does not have the shape of a response: {first['loc']}:"
                f" {first['msg']}{self._rid()}",
                body=rs.acc.build(),
                code=MALFORMED,
            ) from None
        if reply is not None:
            attach_response(response, reply.response)
        self._final = response
        self._setup.count(
            response, reply, created=self._setup.body is not None, asked=self._setup.response_id
        )
        usage = response.usage
        metrics = self.metrics
        metrics.tokens = usage.output_tokens if usage and usage.output_tokens else metrics.deltas
        if self._trace is not None and isinstance(self._trace, _otel.ResponsesTrace):
            trace_end(
                self._trace,
                response,
                attributes={
                    "holysheep.stream.attempts": metrics.attempts,
                    "holysheep.stream.resumes": metrics.resumes,
                    "holysheep.limiter.waited": metrics.queued,
                },
            )

    def _model_class(self) -> type[BaseModel] | None:
        return None


class ParsedResponseStream(ResponseStream, Generic[ModelT]):
    """A stream asked for with ``text_format=SomeModel``: ``.parsed`` once it has ended.

    The text streams as usual (partial JSON); at the end ``stream.parsed`` is
    the answer validated into ``SomeModel``. Reading it raises
    :class:`RefusalError` when the model refused, :class:`StructuredOutputError`
    when the answer does not fit, ``RuntimeError`` before the stream has ended.
    """

    _model_class_: type[ModelT]

    def _model_class(self) -> type[BaseModel] | None:
        return self._model_class_

    @property
    def response(self) -> ParsedResponse[ModelT]:  # type: ignore[override]
        response = super().response
        assert isinstance(response, ParsedResponse)
        return response

    @property
    def parsed(self) -> ModelT:
        response = self.response
        if "_parsed" not in response.__dict__:
            parse_output(response, self._model_class_)
        return response.parsed
