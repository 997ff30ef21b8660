"""Responses API calls: the same ``chat {model}`` span and GenAI metrics as chat calls.

Takes plain values (the base URL, the request body, the answer's id, model,
status and token counts), never the Responses classes. The span carries
``holysheep.api = "responses"`` to tell it from a chat completion's.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Mapping
from typing import Any

from ..models import CompletionTokensDetails, PromptTokensDetails, Usage
from ._chat import ChatTrace
from ._content import input_messages, message_parts
from ._providers import Live, capture_content, current, server_attributes

__all__ = ["ResponsesTrace", "responses_started"]

_PARAMS = (
    ("temperature", "gen_ai.request.temperature"),
    ("top_p", "gen_ai.request.top_p"),
    ("max_output_tokens", "gen_ai.request.max_tokens"),
)


class ResponsesTrace(ChatTrace):
    """The span and measurements of one ``responses.create`` or ``responses.stream``."""

    __slots__ = ()

    def __init__(
        self,
        live: Live,
        base_url: str,
        body: Mapping[str, Any],
        stream: bool,
        messages: Callable[[], Any] | None = None,
    ) -> None:
        self._live = live
        self._started = time.perf_counter()
        self._ended = False
        self._queued = 0.0
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
        self._attrs = attrs
        self.span: Any = None
        if live.tracer is not None:
            span_attrs = {**attrs, "holysheep.api": "responses"}
            for key, name in _PARAMS:
                value = body.get(key)
                if isinstance(value, (int, float)) and not isinstance(value, bool):
                    span_attrs[name] = value
            text = body.get("text")
            fmt = text.get("format") if isinstance(text, Mapping) else None
            if isinstance(fmt, Mapping) and isinstance(fmt.get("type"), str):
                span_attrs["gen_ai.output.type"] = (
                    "json" if fmt["type"].startswith("json") else "text"
                )
            if stream:
                span_attrs["gen_ai.request.stream"] = True
            if capture_content() and messages is not None:
                span_attrs["gen_ai.input.messages"] = input_messages(messages())
            self.span = live.tracer.start_span(
                f"chat {model}" if isinstance(model, str) else "chat",
                kind=live.otel_trace.SpanKind.CLIENT,
                attributes=span_attrs,
            )

    def active(self) -> contextlib.AbstractContextManager[Any]:
        """The span as the current one (for the requester's events), while the call runs."""
        if self.span is None:
            return contextlib.nullcontext()
        return self._live.otel_trace.use_span(  # type: ignore[no-any-return]
            self.span, end_on_exit=False, record_exception=False, set_status_on_exception=False
        )

    def finished(
        self,
        *,
        response_id: str | None,
        model: str | None,
        finish_reason: str | None,
        input_tokens: int | None,
        output_tokens: int | None,
        reasoning_tokens: int | None = None,
        cached_tokens: int | None = None,
        output_text: str | None = None,
        attributes: Mapping[str, Any] | None = None,
    ) -> None:
        """The answer is whole: end the span with what it said, record the metrics."""
        usage = None
        if input_tokens is not None and output_tokens is not None:
            usage = Usage(
                prompt_tokens=input_tokens,
                completion_tokens=output_tokens,
                total_tokens=input_tokens + output_tokens,
                prompt_tokens_details=None
                if cached_tokens is None
                else PromptTokensDetails(cached_tokens=cached_tokens),
                completion_tokens_details=None
                if reasoning_tokens is None
                else CompletionTokensDetails(reasoning_tokens=reasoning_tokens),
            )
        output = None
        if self.span is not None:
            if attributes:
                self.span.set_attributes(dict(attributes))
            if capture_content():
                output = [message_parts("assistant", output_text, [], finish_reason)]
        reasons = [finish_reason] if finish_reason else []
        self._end(response_id, model, reasons, usage, output)


def responses_started(
    base_url: str,
    body: Mapping[str, Any],
    *,
    stream: bool,
    messages: Callable[[], Any] | None = None,
) -> ResponsesTrace | None:
    """A Responses call starts: its span (None when nobody listens: nothing else to do).

    ``messages``: called only when content capture is on, for the prompt as chat messages.
    """
    live = current()
    return None if live is None else ResponsesTrace(live, base_url, body, stream, messages)
