"""The server events of a Responses stream, typed (``stream.events()``).

Each SSE event of a Responses stream is a JSON object whose ``type`` names it
(the SSE ``event:`` field repeats it) and whose ``sequence_number`` orders it.
:func:`parse_event` turns one into its model, as the official SDK's
``ResponseStreamEvent`` union does; a type this client does not model (web
search progress, image generation, MCP calls...) becomes an
:class:`UnknownEvent` that keeps every field. Pure: dicts in, objects out.
"""

from __future__ import annotations

from typing import Any, Literal, TypeAlias

from pydantic import ValidationError

from ..models import _Wire
from ._models import (
    ReasoningSummary,
    Response,
    ResponseContent,
    ResponseItem,
    UnknownItem,
)

__all__ = [
    "EVENT_TYPES",
    "ResponseCompletedEvent",
    "ResponseContentPartAddedEvent",
    "ResponseContentPartDoneEvent",
    "ResponseCreatedEvent",
    "ResponseErrorEvent",
    "ResponseEvent",
    "ResponseFailedEvent",
    "ResponseFunctionCallArgumentsDeltaEvent",
    "ResponseFunctionCallArgumentsDoneEvent",
    "ResponseInProgressEvent",
    "ResponseIncompleteEvent",
    "ResponseOutputItemAddedEvent",
    "ResponseOutputItemDoneEvent",
    "ResponseQueuedEvent",
    "ResponseReasoningSummaryPartAddedEvent",
    "ResponseReasoningSummaryPartDoneEvent",
    "ResponseReasoningSummaryTextDeltaEvent",
    "ResponseReasoningSummaryTextDoneEvent",
    "ResponseReasoningTextDeltaEvent",
    "ResponseReasoningTextDoneEvent",
    "ResponseRefusalDeltaEvent",
    "ResponseRefusalDoneEvent",
    "ResponseStreamEvent",
    "ResponseTextDeltaEvent",
    "ResponseTextDoneEvent",
    "UnknownEvent",
    "parse_event",
]


class ResponseEvent(_Wire):
    """Every event: its ``type`` and ``sequence_number`` (None from servers that omit it)."""

    type: str
    sequence_number: int | None = None


# -- the response's lifecycle -------------------------------------------------------------


class _Lifecycle(ResponseEvent):
    response: Response = Response()


class ResponseCreatedEvent(_Lifecycle):
    type: Literal["response.created"] = "response.created"


class ResponseQueuedEvent(_Lifecycle):
    type: Literal["response.queued"] = "response.queued"


class ResponseInProgressEvent(_Lifecycle):
    type: Literal["response.in_progress"] = "response.in_progress"


class ResponseCompletedEvent(_Lifecycle):
    type: Literal["response.completed"] = "response.completed"


class ResponseIncompleteEvent(_Lifecycle):
    type: Literal["response.incomplete"] = "response.incomplete"


class ResponseFailedEvent(_Lifecycle):
    type: Literal["response.failed"] = "response.failed"


class ResponseErrorEvent(ResponseEvent):
    """An error inside the stream: the stream raises :class:`StreamError` after it."""

    type: Literal["error"] = "error"
    code: str | None = None
    message: str = ""
    param: str | None = None


# -- items and content parts --------------------------------------------------------------


class _ItemEvent(ResponseEvent):
    output_index: int = 0
    item: ResponseItem = UnknownItem()


class ResponseOutputItemAddedEvent(_ItemEvent):
    type: Literal["response.output_item.added"] = "response.output_item.added"


class ResponseOutputItemDoneEvent(_ItemEvent):
    type: Literal["response.output_item.done"] = "response.output_item.done"


class _InItem(ResponseEvent):
    item_id: str | None = None
    output_index: int = 0


class _Part(_InItem):
    content_index: int = 0
    part: ResponseContent | None = None


class ResponseContentPartAddedEvent(_Part):
    type: Literal["response.content_part.added"] = "response.content_part.added"


class ResponseContentPartDoneEvent(_Part):
    type: Literal["response.content_part.done"] = "response.content_part.done"


class ResponseTextDeltaEvent(_InItem):
    """Output text: the deltas ``async for text in stream`` yields."""

    type: Literal["response.output_text.delta"] = "response.output_text.delta"
    content_index: int = 0
    delta: str = ""
    logprobs: list[Any] | None = None


class ResponseTextDoneEvent(_InItem):
    type: Literal["response.output_text.done"] = "response.output_text.done"
    content_index: int = 0
    text: str = ""


class ResponseRefusalDeltaEvent(_InItem):
    type: Literal["response.refusal.delta"] = "response.refusal.delta"
    content_index: int = 0
    delta: str = ""


class ResponseRefusalDoneEvent(_InItem):
    type: Literal["response.refusal.done"] = "response.refusal.done"
    content_index: int = 0
    refusal: str = ""


class ResponseFunctionCallArgumentsDeltaEvent(_InItem):
    type: Literal["response.function_call_arguments.delta"] = (
        "response.function_call_arguments.delta"
    )
    delta: str = ""


class ResponseFunctionCallArgumentsDoneEvent(_InItem):
    type: Literal["response.function_call_arguments.done"] = "response.function_call_arguments.done"
    arguments: str = ""
    name: str | None = None


class _Summary(_InItem):
    summary_index: int = 0


class ResponseReasoningSummaryPartAddedEvent(_Summary):
    type: Literal["response.reasoning_summary_part.added"] = "response.reasoning_summary_part.added"
    part: ReasoningSummary = ReasoningSummary()


class ResponseReasoningSummaryPartDoneEvent(_Summary):
    type: Literal["response.reasoning_summary_part.done"] = "response.reasoning_summary_part.done"
    part: ReasoningSummary = ReasoningSummary()


class ResponseReasoningSummaryTextDeltaEvent(_Summary):
    type: Literal["response.reasoning_summary_text.delta"] = "response.reasoning_summary_text.delta"
    delta: str = ""


class ResponseReasoningSummaryTextDoneEvent(_Summary):
    type: Literal["response.reasoning_summary_text.done"] = "response.reasoning_summary_text.done"
    text: str = ""


class ResponseReasoningTextDeltaEvent(_InItem):
    type: Literal["response.reasoning_text.delta"] = "response.reasoning_text.delta"
    content_index: int = 0
    delta: str = ""


class ResponseReasoningTextDoneEvent(_InItem):
    type: Literal["response.reasoning_text.done"] = "response.reasoning_text.done"
    content_index: int = 0
    text: str = ""


class UnknownEvent(ResponseEvent):
    """An event of a type this client does not model; ``.raw`` is the event as it came."""

    @property
    def raw(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_unset=True)


ResponseStreamEvent: TypeAlias = (
    ResponseCreatedEvent
    | ResponseQueuedEvent
    | ResponseInProgressEvent
    | ResponseCompletedEvent
    | ResponseIncompleteEvent
    | ResponseFailedEvent
    | ResponseErrorEvent
    | ResponseOutputItemAddedEvent
    | ResponseOutputItemDoneEvent
    | ResponseContentPartAddedEvent
    | ResponseContentPartDoneEvent
    | ResponseTextDeltaEvent
    | ResponseTextDoneEvent
    | ResponseRefusalDeltaEvent
    | ResponseRefusalDoneEvent
    | ResponseFunctionCallArgumentsDeltaEvent
    | ResponseFunctionCallArgumentsDoneEvent
    | ResponseReasoningSummaryPartAddedEvent
    | ResponseReasoningSummaryPartDoneEvent
    | ResponseReasoningSummaryTextDeltaEvent
    | ResponseReasoningSummaryTextDoneEvent
    | ResponseReasoningTextDeltaEvent
    | ResponseReasoningTextDoneEvent
    | UnknownEvent
)

_CLASSES: tuple[type[ResponseEvent], ...] = (
    ResponseCreatedEvent,
    ResponseQueuedEvent,
    ResponseInProgressEvent,
    ResponseCompletedEvent,
    ResponseIncompleteEvent,
    ResponseFailedEvent,
    ResponseErrorEvent,
    ResponseOutputItemAddedEvent,
    ResponseOutputItemDoneEvent,
    ResponseContentPartAddedEvent,
    ResponseContentPartDoneEvent,
    ResponseTextDeltaEvent,
    ResponseTextDoneEvent,
    ResponseRefusalDeltaEvent,
    ResponseRefusalDoneEvent,
    ResponseFunctionCallArgumentsDeltaEvent,
    ResponseFunctionCallArgumentsDoneEvent,
    ResponseReasoningSummaryPartAddedEvent,
    ResponseReasoningSummaryPartDoneEvent,
    ResponseReasoningSummaryTextDeltaEvent,
    ResponseReasoningSummaryTextDoneEvent,
    ResponseReasoningTextDeltaEvent,
    ResponseReasoningTextDoneEvent,
)
#: Event type -> its model (the types this client models).
EVENT_TYPES: dict[str, type[ResponseEvent]] = {
    cls.model_fields["type"].default: cls for cls in _CLASSES
}


def parse_event(obj: dict[str, Any]) -> ResponseStreamEvent:
    """One event object as its model; ValueError when a known type has the wrong shape."""
    cls = EVENT_TYPES.get(obj.get("type"))  # type: ignore[arg-type]
    try:
        if cls is None:
            return UnknownEvent.model_validate(obj)
        event: ResponseStreamEvent = cls.model_validate(obj)  # type: ignore[assignment]
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ValueError(
            f"a {obj.get('type')!r} event with a bad {where}: {first['msg']}"
        ) from None
    return event
