"""OpenTelemetry: a GenAI client span per request and the GenAI client metrics.

Nothing here imports OpenTelemetry until the application has: every hook first
asks :func:`_live`, which looks for the API in ``sys.modules`` and, if it is
there, at the tracer and meter providers the application set. Neither imported
nor set (the API's default proxy providers, or ``NoOp*Provider``): the hooks do
nothing, at the cost of two dictionary lookups (API.md: nothing slower without
OpenTelemetry). The providers are read from the API's module globals, because
``get_tracer_provider()`` costs about 2 us a call (an environment lookup);
where those globals are missing (another API version) the public getters are used.

What is recorded follows the GenAI semantic conventions as last released with the
OpenTelemetry semantic conventions (schema 1.44; the names in
``opentelemetry-semantic-conventions`` 0.66b2). They now live in
open-telemetry/semantic-conventions-genai, with no release yet; its unreleased
``gen_ai.client.inference.*`` metrics are not followed. See docs/observability.md.

- span ``chat {model}``, kind CLIENT, child of the caller's current span, with
  ``gen_ai.operation.name``, ``gen_ai.provider.name``, ``gen_ai.request.*``,
  ``gen_ai.response.{id,model,finish_reasons}``, ``gen_ai.usage.*``,
  ``gen_ai.response.time_to_first_chunk`` (streams: the first chunk, which may
  carry no text; the first text is ``holysheep.time_to_first_token``), ``error.type``,
  ``server.address`` / ``server.port``; retries, 429 cooldowns and waits behind
  the client's limits are span events (``holysheep.retry`` ...);
- histograms ``gen_ai.client.operation.duration``, ``gen_ai.client.token.usage``
  and ``gen_ai.client.operation.time_to_first_chunk``, with the conventions'
  bucket boundaries;
- prompts and answers only with ``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=true``
  (as ``gen_ai.input.messages`` / ``gen_ai.output.messages``);
- batches: spans ``batches.run`` (with progress events), ``batches.upload``,
  ``batches.create``, ``batches.wait`` (an event per poll), ``batches.download``.

Error messages are not recorded (they may quote a server's answer): a failed
span has status ERROR with ``error.type`` as its description.
"""

from __future__ import annotations

import functools
import inspect
import json
import os
import sys
import time
from collections.abc import Callable, Coroutine, Iterable, Mapping
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

import httpx

if TYPE_CHECKING:
    from ._requester import Requester
    from .models import ChatCompletion, Usage
    from .streaming import ChatStream

__all__ = ["ChatTrace"]

P = ParamSpec("P")
R = TypeVar("R")

SCOPE = "holysheep_async"
CAPTURE_ENV = "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"
_CAPTURE_ON = frozenset({"true", "span_only", "span_and_event"})

# The conventions' recommended histogram buckets (gen-ai-metrics.md).
DURATION_BUCKETS = (
    0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92,
)  # fmt: skip
TOKEN_BUCKETS = (
    1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864,
)  # fmt: skip

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

# Hosts with a well-known gen_ai.provider.name; any other server speaks OpenAI's API
# (HolySheep, relays, vLLM, the emulator): "openai", as OpenAI's own instrumentation does.
_PROVIDERS = (
    ("api.openai.com", "openai"),
    (".openai.azure.com", "azure.ai.openai"),
    (".services.ai.azure.com", "azure.ai.inference"),
    ("api.deepseek.com", "deepseek"),
    ("api.groq.com", "groq"),
    ("api.mistral.ai", "mistral_ai"),
    ("api.x.ai", "x_ai"),
    ("api.perplexity.ai", "perplexity"),
    ("api.anthropic.com", "anthropic"),
    ("generativelanguage.googleapis.com", "gcp.gemini"),
    ("aiplatform.googleapis.com", "gcp.vertex_ai"),
    ("api.cohere.ai", "cohere"),
    ("api.cohere.com", "cohere"),
)


# -- is anyone listening? ---------------------------------------------------------


class _Live:
    """The tracer and instruments of the providers in use (either may be None)."""

    __slots__ = ("duration", "otel_trace", "tokens", "tracer", "ttfc")

    def __init__(self, tracer_provider: Any, meter_provider: Any) -> None:
        from opentelemetry import trace

        from ._version import __version__

        self.otel_trace = trace
        self.tracer: Any = None
        self.duration: Any = None
        self.tokens: Any = None
        self.ttfc: Any = None
        if tracer_provider is not None:
            self.tracer = tracer_provider.get_tracer(SCOPE, __version__)
        if meter_provider is not None:
            meter = meter_provider.get_meter(SCOPE, __version__)
            self.duration = meter.create_histogram(
                "gen_ai.client.operation.duration",
                unit="s",
                description="GenAI operation duration.",
                explicit_bucket_boundaries_advisory=DURATION_BUCKETS,
            )
            self.tokens = meter.create_histogram(
                "gen_ai.client.token.usage",
                unit="{token}",
                description="Number of input and output tokens used.",
                explicit_bucket_boundaries_advisory=TOKEN_BUCKETS,
            )
            self.ttfc = meter.create_histogram(
                "gen_ai.client.operation.time_to_first_chunk",
                unit="s",
                description="Time to receive the first chunk, from when the client issues the"
                " generation request to when the first chunk is received in the response stream.",
                explicit_bucket_boundaries_advisory=DURATION_BUCKETS,
            )


_MISSING = object()
_modules = sys.modules
_seen: tuple[Any, Any] = (None, None)  # the provider globals _state was made from
_state: _Live | None = None
#: (tracer provider, meter provider) used instead of the global ones: tests set it.
_override: tuple[Any, Any] | None = None


def _live() -> _Live | None:
    """What to record to, or None: the one check on the hot path."""
    if _override is not None:
        tp, mp = _override
    else:
        tmod = _modules.get("opentelemetry.trace")
        mmod = _modules.get("opentelemetry.metrics._internal")
        if tmod is None and mmod is None:
            return None
        tp = getattr(tmod, "_TRACER_PROVIDER", _MISSING) if tmod is not None else None
        mp = getattr(mmod, "_METER_PROVIDER", _MISSING) if mmod is not None else None
    if tp is _seen[0] and mp is _seen[1]:
        return _state
    return _refresh(tp, mp)


def _refresh(tp: Any, mp: Any) -> _Live | None:
    global _seen, _state
    seen = (tp, mp)
    if tp is _MISSING:
        tp = _modules["opentelemetry.trace"].get_tracer_provider()
    if mp is _MISSING:
        mp = _modules["opentelemetry.metrics._internal"].get_meter_provider()
    tp = None if tp is None or _is_noop(tp) else tp
    mp = None if mp is None or _is_noop(mp) else mp
    state = _Live(tp, mp) if tp is not None or mp is not None else None
    if seen[0] is not _MISSING and seen[1] is not _MISSING:
        _seen, _state = seen, state
    return state


def _is_noop(provider: Any) -> bool:
    """The API's providers that record nothing (the proxies stand for "none set yet")."""
    from opentelemetry import metrics, trace

    internal = _modules.get("opentelemetry.metrics._internal")
    noop: tuple[type, ...] = (
        trace.NoOpTracerProvider,
        trace.ProxyTracerProvider,
        metrics.NoOpMeterProvider,
    )
    proxy = getattr(internal, "_ProxyMeterProvider", None)
    if isinstance(proxy, type):
        noop = (*noop, proxy)
    return isinstance(provider, noop)


def use_providers(tracer_provider: Any = None, meter_provider: Any = None) -> None:
    """Record to these providers instead of the global ones (tests); both None: back to global."""
    global _override, _seen, _state
    if tracer_provider is None and meter_provider is None:
        _override = None
    else:
        _override = (tracer_provider, meter_provider)
    _seen, _state = (None, None), None


def capture_content() -> bool:
    return os.environ.get(CAPTURE_ENV, "").strip().lower() in _CAPTURE_ON


# -- where the requests go -----------------------------------------------------------


@functools.lru_cache(maxsize=64)
def server_attributes(base_url: str) -> tuple[str, dict[str, Any]]:
    """``(gen_ai.provider.name, {server.address, server.port})`` of a base URL.

    The host only: never the URL's userinfo or query.
    """
    url = httpx.URL(base_url)
    host = url.host
    port = url.port or (443 if url.scheme == "https" else 80)
    provider = "openai"
    for suffix, name in _PROVIDERS:
        if host == suffix or (suffix.startswith(".") and host.endswith(suffix)):
            provider = name
            break
    return provider, {"server.address": host, "server.port": port}


def _error_type(exc: BaseException) -> str:
    return type(exc).__qualname__


def _is_failure(exc: BaseException | None) -> bool:
    # Cancellation, GeneratorExit (a stream left early), KeyboardInterrupt: not the call's failure.
    return isinstance(exc, Exception)


# -- chat: one span per call -------------------------------------------------------------


class ChatTrace:
    """The span and the measurements of one chat call (``create``, or a stream until its end)."""

    __slots__ = ("_attrs", "_ended", "_live", "_queued", "_started", "_ttfc", "_ttft", "span")

    def __init__(self, live: _Live, requester: Requester, body: Mapping[str, Any], stream: bool):
        self._live = live
        self._started = time.perf_counter()
        self._ended = False
        self._queued = 0.0  # seconds behind the client's limits (not part of the TTFC)
        self._ttfc: float | None = None
        self._ttft: float | None = None
        model = body.get("model")
        provider, server = server_attributes(requester.base_url)
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
                span_attrs["gen_ai.input.messages"] = _input_messages(body.get("messages"))
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
                _message_parts(
                    "assistant",
                    c.message.content,
                    [t.model_dump(mode="json") for t in c.message.tool_calls or ()],
                    c.finish_reason,
                )
                for c in completion.choices
            ]
        self._end(completion.id, completion.model, reasons, completion.usage, output)

    def stream_ended(self, stream: ChatStream) -> None:
        """The stream read to its end (``[DONE]`` or every finish reason)."""
        finish: dict[int, str] = getattr(stream, "_finish", {})
        reasons = [finish[i] for i in sorted(finish)]
        output = None
        if self.span is not None:
            metrics = stream.metrics
            self.span.set_attributes(
                {
                    "holysheep.stream.attempts": metrics.attempts,
                    "holysheep.stream.resumes": metrics.resumes,
                    "holysheep.limiter.waited": metrics.queued,
                }
            )
            if capture_content():
                output = [_message_parts("assistant", stream.text, [], stream.finish_reason)]
        self._end(stream.id, stream.model, reasons, stream.usage, output)

    def closed(self, exc: BaseException | None) -> None:
        """The call is over, successfully or not (no-op after ``completed`` / ``stream_ended``)."""
        if self._ended:
            return
        error = _error_type(exc) if exc is not None and _is_failure(exc) else None
        self._finish(error, None, None)
        if self.span is not None:
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
            live.duration.record(
                time.perf_counter() - self._started, {**attrs, "error.type": error}
            )
            return
        live.duration.record(time.perf_counter() - self._started, attrs)
        if self._ttfc is not None:
            live.ttfc.record(self._ttfc, attrs)
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


# -- message content (opt-in) --------------------------------------------------------------


def _message_parts(
    role: str, content: Any, tool_calls: Iterable[Any], finish_reason: str | None = None
) -> dict[str, Any]:
    """One message in the conventions' shape: ``{"role", "parts": [...]}`` (+ finish_reason)."""
    parts: list[dict[str, Any]] = []
    if isinstance(content, str):
        if content:
            parts.append({"type": "text", "content": content})
    elif isinstance(content, list):
        for part in content:
            if isinstance(part, Mapping) and part.get("type") == "text":
                parts.append({"type": "text", "content": part.get("text")})
            elif isinstance(part, Mapping):
                parts.append({"type": str(part.get("type"))})
    for call in tool_calls:
        if isinstance(call, Mapping):
            function = call.get("function") or {}
            parts.append(
                {
                    "type": "tool_call",
                    "id": call.get("id"),
                    "name": function.get("name") if isinstance(function, Mapping) else None,
                    "arguments": function.get("arguments")
                    if isinstance(function, Mapping)
                    else None,
                }
            )
    message: dict[str, Any] = {"role": role, "parts": parts}
    if finish_reason is not None:
        message["finish_reason"] = finish_reason
    return message


def _input_messages(messages: Any) -> str:
    out = []
    for message in messages if isinstance(messages, list) else ():
        if not isinstance(message, Mapping):
            continue
        role = str(message.get("role"))
        if role == "tool":
            part = {
                "type": "tool_call_response",
                "id": message.get("tool_call_id"),
                "response": message.get("content"),
            }
            out.append({"role": role, "parts": [part]})
        else:
            calls = message.get("tool_calls") or ()
            out.append(_message_parts(role, message.get("content"), calls))
    return json.dumps(out, ensure_ascii=False, default=str)


# -- hooks called from the rest of the package ------------------------------------------------


def stream_started(requester: Requester, body: Mapping[str, Any]) -> ChatTrace | None:
    """A stream sends its first request: its span starts (None when nobody listens)."""
    live = _live()
    return None if live is None else ChatTrace(live, requester, body, stream=True)


def stream_closed(trace: ChatTrace | None) -> None:
    """Called in the stream's ``finally``: ends the span if the stream did not complete."""
    if trace is not None:
        trace.closed(sys.exc_info()[1])


def _span_event(trace: ChatTrace | None, name: str, attributes: Mapping[str, Any]) -> None:
    if trace is not None:
        trace.event(name, attributes)
        return
    live = _live()
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
        "error.type": _error_type(error),
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
    fn: Callable[P, Coroutine[Any, Any, R]],
) -> Callable[P, Coroutine[Any, Any, R]]:
    """Decorates ``Chat.create``: a span around the call when someone listens, else nothing."""

    @functools.wraps(fn)
    def create(*args: P.args, **kwargs: P.kwargs) -> Coroutine[Any, Any, R]:
        live = _live()
        if live is None:
            return fn(*args, **kwargs)
        return _traced_create(live, fn, args, kwargs)

    _mark(create)
    return create


async def _traced_create(
    live: _Live, fn: Callable[..., Coroutine[Any, Any, Any]], args: Any, kwargs: Any
) -> Any:
    requester = args[0]._requester
    body = {k: v for k, v in kwargs.items() if k != "messages"}
    body["messages"] = kwargs.get("messages")
    trace = ChatTrace(live, requester, body, stream=False)
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


# -- batches ------------------------------------------------------------------------------


def batch_op(
    name: str, *, first: str | None = None, progress: bool = False, kind: str = "CLIENT"
) -> Callable[[Callable[P, Coroutine[Any, Any, R]]], Callable[P, Coroutine[Any, Any, R]]]:
    """Decorates a ``Batches`` method: a span ``batches.<name>`` around it.

    ``first``: the attribute the first argument goes into (a batch or a batch id:
    ``"holysheep.batch.id"``; a file id: ``"holysheep.batch.input_file_id"``).
    ``progress``: the method's ``on_progress`` callback also adds a span event.
    """

    def decorate(fn: Callable[P, Coroutine[Any, Any, R]]) -> Callable[P, Coroutine[Any, Any, R]]:
        @functools.wraps(fn)
        def call(*args: P.args, **kwargs: P.kwargs) -> Coroutine[Any, Any, R]:
            live = _live()
            if live is None or live.tracer is None:
                return fn(*args, **kwargs)
            return _traced_batch(live, name, kind, first, progress, fn, args, kwargs)

        _mark(call)
        return call

    return decorate


async def _traced_batch(
    live: _Live,
    name: str,
    kind: str,
    first: str | None,
    progress: bool,
    fn: Callable[..., Coroutine[Any, Any, Any]],
    args: Any,
    kwargs: Any,
) -> Any:
    otel = live.otel_trace
    provider, server = server_attributes(args[0]._requester.base_url)
    attrs: dict[str, Any] = {"gen_ai.provider.name": provider, **server}
    if first is not None and len(args) > 1:
        value = args[1]
        value = getattr(value, "id", value)  # a Batch
        if isinstance(value, str):
            attrs[first] = value
    with live.tracer.start_as_current_span(
        f"batches.{name}",
        kind=getattr(otel.SpanKind, kind),
        attributes=attrs,
        record_exception=False,
        set_status_on_exception=False,
    ) as span:
        if progress:
            kwargs = {**kwargs, "on_progress": _progress_events(span, kwargs.get("on_progress"))}
        try:
            result = await fn(*args, **kwargs)
        except BaseException as exc:
            if _is_failure(exc):
                error = _error_type(exc)
                span.set_attribute("error.type", error)
                span.set_status(otel.StatusCode.ERROR, error)
            raise
        span.set_attributes(_batch_attributes(result))
        return result


def _batch_attributes(value: Any) -> dict[str, Any]:
    """What a batch method took or gave, as span attributes (ids, status, counts; no content)."""
    attrs: dict[str, Any] = {}
    kind = getattr(value, "object", None)
    if kind == "batch":
        attrs["holysheep.batch.id"] = value.id
        attrs["holysheep.batch.status"] = value.status
        counts = value.request_counts
        if counts is not None:
            attrs["holysheep.batch.request_counts.total"] = counts.total
            attrs["holysheep.batch.request_counts.completed"] = counts.completed
            attrs["holysheep.batch.request_counts.failed"] = counts.failed
    elif kind == "file":
        attrs["holysheep.file.id"] = value.id
        if value.bytes is not None:
            attrs["holysheep.file.bytes"] = value.bytes
    elif hasattr(value, "succeeded") and hasattr(value, "missing"):  # a BatchReport
        attrs["holysheep.batch.mode"] = value.mode
        attrs["holysheep.batch.succeeded"] = len(value.succeeded)
        attrs["holysheep.batch.failed"] = len(value.failed)
        attrs["holysheep.batch.missing"] = len(value.missing)
        attrs["holysheep.batch.total_tokens"] = value.total_tokens
        if value.batch_ids:
            attrs["holysheep.batch.ids"] = list(value.batch_ids)
        if value.cost_usd is not None:
            attrs["holysheep.batch.cost_usd"] = value.cost_usd
    return attrs


def _progress_events(span: Any, callback: Callable[[Any], Any] | None) -> Callable[[Any], Any]:
    def on_progress(value: Any) -> Any:
        if getattr(value, "object", None) == "batch":  # wait(): a poll
            span.add_event("holysheep.batch.poll", _batch_attributes(value))
        else:  # run(): a RunProgress
            attrs: dict[str, Any] = {
                "holysheep.batch.phase": value.phase,
                "holysheep.batch.done": value.done,
                "holysheep.batch.total": value.total,
            }
            if value.batch is not None:
                attrs["holysheep.batch.id"] = value.batch.id
            span.add_event("holysheep.batch.progress", attrs)
        return callback(value) if callback is not None else None

    return on_progress


def _mark(wrapper: Callable[..., Any]) -> None:
    # The wrapper returns the coroutine of the function it wraps: it is still awaited like one.
    mark = getattr(inspect, "markcoroutinefunction", None)
    if mark is not None:
        mark(wrapper)
