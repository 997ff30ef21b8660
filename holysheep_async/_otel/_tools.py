"""Tool runs of ``chat.run_tools``: an ``execute_tool {name}`` span per tool call."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from ._providers import capture_content, current, error_type

__all__ = ["ToolSpan", "tool_span"]


class ToolSpan:
    """The span of one tool call: :meth:`done` records what it gave."""

    __slots__ = ("_live", "span")

    def __init__(self, live: Any, span: Any) -> None:
        self._live = live
        self.span = span

    def done(self, output: str, error: BaseException | None) -> None:
        """The tool answered ``output``; ``error``: the exception it raised (then its answer)."""
        if capture_content():
            self.span.set_attribute("gen_ai.tool.call.result", output)
        if error is not None:
            kind = error_type(error)
            self.span.set_attribute("error.type", kind)
            self.span.set_status(self._live.otel_trace.StatusCode.ERROR, kind)


@contextmanager
def tool_span(
    name: str, call_id: str, description: str, arguments: str
) -> Iterator[ToolSpan | None]:
    """A span ``execute_tool {name}`` (kind INTERNAL) around running one tool call, current
    while it runs (so the tool's own calls nest under it); None when nobody traces.

    Attributes per the GenAI conventions: ``gen_ai.operation.name`` ``execute_tool``,
    ``gen_ai.tool.name`` / ``.call.id`` / ``.type`` / ``.description``; the arguments
    and the result only with the content opt-in.
    """
    live = current()
    if live is None or live.tracer is None:
        yield None
        return
    attrs: dict[str, Any] = {
        "gen_ai.operation.name": "execute_tool",
        "gen_ai.tool.name": name,
        "gen_ai.tool.type": "function",
    }
    if call_id:
        attrs["gen_ai.tool.call.id"] = call_id
    if description:
        attrs["gen_ai.tool.description"] = description
    if capture_content():
        attrs["gen_ai.tool.call.arguments"] = arguments
    with live.tracer.start_as_current_span(
        f"execute_tool {name}",
        kind=live.otel_trace.SpanKind.INTERNAL,
        attributes=attrs,
        record_exception=False,
        set_status_on_exception=False,
    ) as span:
        yield ToolSpan(live, span)
