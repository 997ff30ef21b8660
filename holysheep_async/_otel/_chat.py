"""Chat calls: a ``chat {model}`` span per ``create`` and per stream, and the GenAI metrics."""

from __future__ import annotations

import functools
import json
import sys
import time
from collections.abc import Callable, Coroutine, Mapping, Sequence
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

from ._content import input_messages, message_parts
from ._providers import (
    Live,
    capture_content,
    current,
    error_type,
    is_failure,
    mark_coroutine,
    server_attributes,
)

if TYPE_CHECKING:
    from ..models import ChatCompletion, Usage

__all__ = [
    "ChatTrace",
    "chat_create",
    "cooldown",
    "retrying",
    "stream_closed",
    "stream_started",
    "waited",
]

P = ParamSpec("P")
R = TypeVar("R")

# Request parameters -> span attributes (OpenAI's names -> the conventions').
_PARAMS = (
    ("temperature", "gen_ai.request.temperature", float),
    ("top_p", "gen_ai.request.top_p", float),
    ("top_k", "gen_ai.request.top_k", int),
    ("frequency_penalty", "gen_ai.request.frequency_penalty", float),
    ("presence_penalty", "gen_ai.request.presence_penalty", float),
    ("seed", "gen_ai.request.seed", int),
    ("max_completion_tokens", "gen_ai.request.max_tokens", int),
    ("max_tokens", "gen_ai.request.max_tokens", int),
)


class ChatTrace:
    """The span and the measurements of one chat call (``create``, or a stream until its end)."""

    __slots__ = ("_attrs", "_ended", "_live", "_queued", "_started", "_ttfc", "_ttft", "span")

    def __init__(self, live: Live, base_url: str, body: Mapping[str, Any], stream: bool):
        self._live = live
        self._started = time.perf_counter()
        self._ended = False
        self._queued = 0.0  # seconds behind the client's limits (not part of the TTFC)
        self._ttfc: float | None = None
        self._ttft: float | None = None
        model = body.get("model")
        provider, server = server_attributes(base_url)
        attrs: dict[str, Any] = {
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": provider,
            **server,
        }
        if isinstance(model, str):
            attrs["gen_ai.request.model"] = model
        #: What the metrics carry (the span carries more).
        self._attrs = attrs
        self.span: Any = None
        if live.tracer is not None:
            span_attrs = {**attrs, **_request_attributes(body)}
            if stream:
                span_attrs["gen_ai.request.stream"] = True
            if capture_content():
                span_attrs["gen_ai.input.messages"] = input_messages(body.get("messages"))
            self.span = live.tracer.start_span(
                f"chat {model}" if isinstance(model, str) else "chat",
                kind=live.otel_trace.SpanKind.CLIENT,
                attributes=span_attrs,
            )

    # -- during the call --

    def event(self, name: str, attributes: Mapping[str, Any]) -> None:
        if self.span is not None:
            self.span.add_event(name, attributes)

    def waited(self, seconds: float) -> None:
        self._queued += seconds
        self.event("holysheep.limiter.wait", {"holysheep.limiter.waited": seconds})

    def first_chunk(self) -> None:
        """A chunk arrived: the first one sets the time to first chunk (request sent -> chunk)."""
        if self._ttfc is None:
            self._ttfc = time.perf_counter() - self._started - self._queued

    def first_token(self, ttft: float | None) -> None:
        """The first text arrived ``ttft`` seconds after the request was sent."""
        if ttft is None or self._ttft is not None:
            return
        self._ttft = ttft
        self.event("holysheep.first_token", {"holysheep.time_to_first_token": ttft})

    # -- the end --

    def completed(self, completion: ChatCompletion) -> None:
        reasons = [c.finish_reason for c in completion.choices if c.finish_reason]
        output = None
        if self.span is not None and capture_content():
            output = [
                message_parts(
                    "assistant",
                    c.message.content,
                    [t.model_dump(mode="json") for t in c.message.tool_calls or ()],
                    c.finish_reason,
                    c.message.reasoning_content,
                )
                for c in completion.choices
            ]
        self._end(completion.id, completion.model, reasons, completion.usage, output)

    def stream_ended(
        self,
        response_id: str | None,
        response_model: str | None,
        finish: Mapping[int, str],
        usage: Usage | None,
        *,
        text: str,
        attempts: int,
        resumes: int,
        queued: float,
        reasoning: str = "",
        tool_calls: Sequence[Mapping[str, Any]] = (),
    ) -> None:
        """The stream read to its end (``[DONE]`` or every finish reason).

        ``finish``: the finish reasons by choice index; ``text``, ``reasoning`` and
        ``tool_calls`` (``{"id", "function": {"name", "arguments"}}``): the first choice's.
        """
        reasons = [finish[i] for i in sorted(finish)]
        output = None
        if self.span is not None:
            self.span.set_attributes(
                {
                    "holysheep.stream.attempts": attempts,
                    "holysheep.stream.resumes": resumes,
                    "holysheep.limiter.waited": queued,
                }
            )
            if capture_content():
                output = [
                    message_parts("assistant", text, tool_calls, finish.get(0), reasoning or None)
                ]
        self._end(response_id, response_model, reasons, usage, output)

    def closed(self, exc: BaseException | None) -> None:
        """The call is over, successfully or not (no-op after ``completed`` / ``stream_ended``)."""
        if self._ended:
            return
        error = error_type(exc) if exc is not None and is_failure(exc) else None
        self._finish(error, None, None)
        if self.span is not None:
            if self._ttfc is not None:  # a stream that broke after its first chunk
                self.span.set_attribute("gen_ai.response.time_to_first_chunk", self._ttfc)
            if error is not None:
                self.span.set_attribute("error.type", error)
                self.span.set_status(self._live.otel_trace.StatusCode.ERROR, error)
            self.span.end()

    def _end(
        self,
        response_id: str | None,
        response_model: str | None,
        reasons: list[str],
        usage: Usage | None,
        output: list[dict[str, Any]] | None,
    ) -> None:
        if self._ended:
            return
        self._finish(None, response_model, usage)
        span = self.span
        if span is None:
            return
        attrs: dict[str, Any] = {}
        if response_id:
            attrs["gen_ai.response.id"] = response_id
        if response_model:
            attrs["gen_ai.response.model"] = response_model
        if reasons:
            attrs["gen_ai.response.finish_reasons"] = reasons
        if self._ttfc is not None:
            attrs["gen_ai.response.time_to_first_chunk"] = self._ttfc
        if self._ttft is not None:
            attrs["holysheep.time_to_first_token"] = self._ttft
        if usage is not None:
            attrs.update(_usage_attributes(usage))
        if output is not None:
            attrs["gen_ai.output.messages"] = json.dumps(output, ensure_ascii=False)
        span.set_attributes(attrs)
        span.end()

    def _finish(self, error: str | None, response_model: str | None, usage: Usage | None) -> None:
        """Record the metrics, once."""
        self._ended = True
        live = self._live
        if live.duration is None:
            return
        attrs = self._attrs
        if response_model:
            attrs = {**attrs, "gen_ai.response.model": response_model}
        if error is not None:
            attrs = {**attrs, "error.type": error}
        live.duration.record(time.perf_counter() - self._started, attrs)
        if self._ttfc is not None:  # every stream that received a chunk, failed or not
            live.ttfc.record(self._ttfc, attrs)
        if error is not None:
            return
        if usage is not None:
            live.tokens.record(usage.prompt_tokens, {**attrs, "gen_ai.token.type": "input"})
            live.tokens.record(usage.completion_tokens, {**attrs, "gen_ai.token.type": "output"})


def _request_attributes(body: Mapping[str, Any]) -> dict[str, Any]:
    attrs: dict[str, Any] = {}
    for key, name, kind in _PARAMS:
        value = body.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and name not in attrs:
            attrs[name] = kind(value)
    stop = body.get("stop")
    if isinstance(stop, str):
        attrs["gen_ai.request.stop_sequences"] = [stop]
    elif isinstance(stop, list) and all(isinstance(s, str) for s in stop):
        attrs["gen_ai.request.stop_sequences"] = stop
    n = body.get("n")
    if isinstance(n, int) and not isinstance(n, bool) and n != 1:
        attrs["gen_ai.request.choice.count"] = n
    fmt = body.get("response_format")
    if isinstance(fmt, Mapping) and isinstance(fmt.get("type"), str):
        attrs["gen_ai.output.type"] = "json" if fmt["type"].startswith("json") else "text"
    tier = body.get("service_tier")
    if isinstance(tier, str):
        attrs["openai.request.service_tier"] = tier
    return attrs


def _usage_attributes(usage: Usage) -> dict[str, Any]:
    attrs: dict[str, Any] = {
        "gen_ai.usage.input_tokens": usage.prompt_tokens,
        "gen_ai.usage.output_tokens": usage.completion_tokens,
    }
    details = usage.prompt_tokens_details
    if details is not None and details.cached_tokens is not None:
        attrs["gen_ai.usage.cache_read.input_tokens"] = details.cached_tokens
    out = usage.completion_tokens_details
    if out is not None and out.reasoning_tokens is not None:
        attrs["gen_ai.usage.reasoning.output_tokens"] = out.reasoning_tokens
    return attrs


# -- hooks called from the rest of the package ------------------------------------------------


def stream_started(base_url: str, body: Mapping[str, Any]) -> ChatTrace | None:
    """A stream sends its first request: its span starts (None when nobody listens)."""
    live = current()
    return None if live is None else ChatTrace(live, base_url, body, stream=True)


def stream_closed(trace: ChatTrace | None) -> None:
    """Called in the stream's ``finally``: ends the span if the stream did not complete."""
    if trace is not None:
        trace.closed(sys.exc_info()[1])


def _span_event(trace: ChatTrace | None, name: str, attributes: Mapping[str, Any]) -> None:
    if trace is not None:
        trace.event(name, attributes)
        return
    live = current()
    if live is not None and live.tracer is not None:
        span = live.otel_trace.get_current_span()
        if span.is_recording():
            span.add_event(name, attributes)


def retrying(
    trace: ChatTrace | None, attempt: int, delay: float, error: BaseException, resume: bool = False
) -> None:
    """Attempt ``attempt`` follows in ``delay`` seconds, after ``error``."""
    attrs: dict[str, Any] = {
        "holysheep.retry.attempt": attempt,
        "holysheep.retry.delay": delay,
        "error.type": error_type(error),
    }
    if resume:
        attrs["holysheep.retry.resume"] = True
    _span_event(trace, "holysheep.retry", attrs)


def cooldown(trace: ChatTrace | None, seconds: float) -> None:
    """A 429 paused every request of the client for ``seconds``."""
    _span_event(trace, "holysheep.cooldown", {"holysheep.cooldown.delay": seconds})


def waited(trace: ChatTrace | None, seconds: float) -> None:
    """The request waited ``seconds`` behind the client's rpm / tpm / concurrency limits."""
    if trace is not None:
        trace.waited(seconds)
    else:
        _span_event(None, "holysheep.limiter.wait", {"holysheep.limiter.waited": seconds})


def chat_create(
    base_url: Callable[[Any], str],
) -> Callable[[Callable[P, Coroutine[Any, Any, R]]], Callable[P, Coroutine[Any, Any, R]]]:
    """Decorates ``Chat.create``: a span around the call when someone listens, else nothing.

    ``base_url``: the decorated method's ``self`` -> the base URL its requests go to
    (the caller knows its class; this module does not).
    """

    def decorate(fn: Callable[P, Coroutine[Any, Any, R]]) -> Callable[P, Coroutine[Any, Any, R]]:
        @functools.wraps(fn)
        def create(*args: P.args, **kwargs: P.kwargs) -> Coroutine[Any, Any, R]:
            live = current()
            if live is None:
                return fn(*args, **kwargs)
            return _traced_create(live, base_url(args[0]), fn, args, kwargs)

        mark_coroutine(create)
        return create

    return decorate


async def _traced_create(
    live: Live,
    base_url: str,
    fn: Callable[..., Coroutine[Any, Any, Any]],
    args: Any,
    kwargs: Any,
) -> Any:
    trace = ChatTrace(live, base_url, kwargs, stream=False)  # create's keywords: the body
    try:
        if trace.span is None:
            completion = await fn(*args, **kwargs)
        else:
            with live.otel_trace.use_span(
                trace.span, end_on_exit=False, record_exception=False, set_status_on_exception=False
            ):
                completion = await fn(*args, **kwargs)
    except BaseException as exc:
        trace.closed(exc)
        raise
    trace.completed(completion)
    return completion
