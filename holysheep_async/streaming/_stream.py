"""ChatStream: what ``client.chat.stream(...)`` returns: the core plus the chat state.

The stream core (:class:`~._core.StreamCore`) does the requests, the reading,
the retries and the closing; :class:`~._chat.ChatState` reads the chunks.
What is left here is the surface: iterate the text (the hot path), the
typed chunks or the typed events, and the properties that read the state
(text, reasoning, tool calls, the final completion).
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from typing import Any

import httpx
from pydantic import ValidationError

from .. import _otel
from ..errors import BadRequestError, HolySheepError, StreamError
from ..models import _HEADERS, ChatCompletion, ChatCompletionChunk, Usage
from ._chat import ChatState
from ._chat_events import ChatStreamEvent, StreamDone, StreamedToolCall, TextDelta
from ._core import StreamCore
from ._policy import ResumeStrategy
from ._protocol import MALFORMED
from ._wire import Replying, Requesting

__all__ = ["ChatStream"]

log = logging.getLogger("holysheep_async")


def _drop_none(obj: dict[str, Any]) -> dict[str, Any]:
    # Relays send null where OpenAI sends a value ("id": null, "choices": null).
    return {k: v for k, v in obj.items() if v is not None}


class ChatStream(StreamCore):
    """One streamed chat completion (the guarantees: the ``holysheep_async.streaming`` docstring).

    Attributes: ``text`` (first choice, so far), ``finish_reason``, ``usage``,
    ``metrics``, ``id``, ``model``, ``done`` (the server sent ``[DONE]``),
    ``response`` (the current ``httpx.Response``).
    """

    def __init__(
        self,
        requester: Requesting,
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
        super().__init__(
            requester,
            "/chat/completions",
            body,
            tokens=tokens,
            idle_timeout=idle_timeout,
            resume=resume,
            headers=headers,
            query=query,
            timeout=timeout,
        )
        self._usage_by_default = usage_by_default
        n = body.get("n")
        self._chat = self._state = ChatState(
            n if isinstance(n, int) and n > 1 else 1,
            self._errors,
            want_logprobs=bool(body.get("logprobs")),
        )
        # Tool calls the end of the answer finished (their events, for events()).
        self._closing_events: list[Any] = []

    # -- public surface ---------------------------------------------------------

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

    def events(self) -> AsyncIterator[ChatStreamEvent]:
        """The stream as typed events: text, reasoning, refusal and tool-call-argument deltas,
        each tool call once done (whole), and a last :class:`StreamDone` carrying
        :meth:`final_completion`.

        >>> async with client.chat.stream(model=m, messages=msgs, tools=t) as s:  # doctest: +SKIP
        ...     async for event in s.events():
        ...         if event.type == "content.delta":
        ...             print(event.delta, end="")
        ...         elif event.type == "tool_calls.function.arguments.done":
        ...             print(event.call.name, event.call.parsed_arguments())
        """
        self._chat.want_events = True
        return self._begin(self._events())

    def final_completion(self) -> ChatCompletion:
        """The whole answer as the ``ChatCompletion`` ``chat.create`` returns for it: every
        choice's text, ``reasoning_content``, ``tool_calls``, ``refusal``, ``finish_reason``,
        logprobs (if asked for), and ``usage``. ``RuntimeError`` before the stream has ended."""
        if not self._complete:
            raise RuntimeError(
                "stream.final_completion() is known once the stream has ended: iterate it first"
            )
        completion = self._chat.final_completion()
        headers = self._headers_seen
        if headers is not None:
            object.__setattr__(completion, _HEADERS, headers)
        return completion

    @property
    def text(self) -> str:
        """The text of the first choice yielded so far."""
        return self._chat.text

    @property
    def finish_reason(self) -> str | None:
        """The first choice's finish reason ("stop", "length", ...), None until known."""
        return self._chat.finish.get(0)

    @property
    def usage(self) -> Usage | None:
        """Token usage, when the server sent it (it is asked for unless ``include_usage=False``)."""
        return self._chat.usage

    @property
    def refusal(self) -> str | None:
        """The first choice's refusal text (a model declining a ``response_format``), if any."""
        return self._chat.refusal

    @property
    def reasoning(self) -> str:
        """The first choice's reasoning so far (``delta.reasoning_content`` or
        ``delta.reasoning``, whichever the server sends), "" if none."""
        return self._chat.reasoning

    @property
    def tool_calls(self) -> list[StreamedToolCall]:
        """The first choice's finished tool calls (all of them once the stream has ended)."""
        return self._chat.tool_calls

    @property
    def id(self) -> str | None:
        """The completion's id (``chatcmpl-...``), once the first chunk came."""
        return self._chat.id

    @property
    def model(self) -> str | None:
        """The model that answered, as the server names it."""
        return self._chat.model

    def __repr__(self) -> str:
        return (
            f"<{type(self).__name__} model={self._body.get('model')!r} chars={len(self.text)} "
            f"finish_reason={self.finish_reason!r}>"
        )

    # -- iteration --------------------------------------------------------------

    async def _texts(self) -> AsyncGenerator[str, None]:
        parts = self._chat.parts
        metrics = self.metrics
        gaps = metrics.gaps
        clock = time.perf_counter
        try:
            while True:
                batch = await self._next_batch()
                if not batch:
                    return
                for _, text, _ in batch:
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
            await self._close_wire()

    async def _typed_chunks(self) -> AsyncGenerator[ChatCompletionChunk, None]:
        validate = ChatCompletionChunk.model_validate
        try:
            while True:
                batch = await self._next_batch()
                if not batch:
                    return
                for obj, text, _ in batch:
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
                        self._chat.parts.append(text)
                        self._timed_text()
                    self._yielded = True
                    yield chunk
                    if self._closed:
                        return
        finally:
            _otel.stream_closed(self._trace)
            await self._close_wire()

    async def _events(self) -> AsyncGenerator[ChatStreamEvent, None]:
        parts = self._chat.parts
        try:
            while True:
                batch = await self._next_batch()
                if not batch:
                    break
                for _, text, extra in batch:
                    if text is not None:
                        parts.append(text)
                        self._timed_text()
                        self._yielded = True
                        yield TextDelta(text)
                        if self._closed:
                            return
                    if extra is not None:
                        for event in extra:
                            self._yielded = True
                            yield event
                            if self._closed:
                                return
            for event in self._closing_events:
                yield event
                if self._closed:
                    return
            yield StreamDone(self.final_completion())
        finally:
            _otel.stream_closed(self._trace)
            await self._close_wire()

    # -- what the core asks ---------------------------------------------------------

    def _start_trace(self) -> _otel.ChatTrace | None:
        return _otel.stream_started(self._requester.base_url, self._body)

    def _retry_open(self, error: BadRequestError) -> bool:
        # Some servers (older Azure API versions, a few relays) reject stream_options.
        if not self._usage_by_default or "stream_options" not in str(error):
            return False
        self._usage_by_default = False
        self._body = {k: v for k, v in self._body.items() if k != "stream_options"}
        self._next_body = {k: v for k, v in self._next_body.items() if k != "stream_options"}
        log.info("the server rejected stream_options; streaming without usage: %s", error)
        return True

    def _annotate(self, error: HolySheepError) -> None:
        chat = self._chat
        reasoning = chat.reasoning
        if reasoning:
            error.partial_reasoning = reasoning
        calls = chat.calls()
        if calls:
            error.partial_tool_calls = calls

    def _ended(self, reply: Replying | None) -> None:
        chat = self._chat
        self._closing_events = chat.end()
        metrics = self.metrics
        usage = chat.usage
        if usage is not None:
            if reply is not None:
                reply.permit.reconcile(usage.total_tokens)
            self._requester.record_usage(chat.model or str(self._body.get("model")), usage)
        if usage is not None and usage.completion_tokens:
            metrics.tokens = self._deltas_before + usage.completion_tokens
        else:
            metrics.tokens = metrics.deltas
        if self._trace is not None:
            self._trace.stream_ended(
                chat.id,
                chat.model,
                chat.finish,
                usage,
                text=chat.text,
                reasoning=chat.reasoning,
                tool_calls=[call.to_dict() for call in chat.calls()],
                attempts=metrics.attempts,
                resumes=metrics.resumes,
                queued=metrics.queued,
            )
