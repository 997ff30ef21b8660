"""What ``stream.events()`` yields, and the tool calls a chat stream assembles.

Each event has a ``type`` (the official SDK's names where it has one) and
the ``choice`` it belongs to (0 unless ``n > 1``)::

    async for event in stream.events():
        if event.type == "content.delta":
            print(event.delta, end="")
        elif event.type == "tool_calls.function.arguments.done":
            print(event.call.name, event.call.parsed_arguments())
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Literal

if TYPE_CHECKING:
    from ..models import ChatCompletion

__all__ = [
    "ChatStreamEvent",
    "ReasoningDelta",
    "RefusalDelta",
    "StreamDone",
    "StreamedToolCall",
    "TextDelta",
    "ToolCallArgumentsDelta",
    "ToolCallDone",
]


class StreamedToolCall:
    """A tool call put together from a stream's fragments.

    ``id``, ``name``, ``arguments`` (the JSON text, whole once the call is
    done), ``index`` (its place among the choice's calls: 0, 1, ...),
    ``done`` (its choice finished, so no fragment can follow).
    """

    __slots__ = ("_parts", "done", "id", "index", "name", "type")

    def __init__(self, index: int, id: str, name: str, type: str = "function") -> None:
        self.index = index
        self.id = id
        self.name = name
        self.type = type
        self.done = False
        self._parts: list[str] = []

    @property
    def arguments(self) -> str:
        """The arguments so far, as the JSON text the model wrote."""
        parts = self._parts
        if len(parts) > 1:
            joined = "".join(parts)
            parts.clear()
            parts.append(joined)
        return parts[0] if parts else ""

    def parsed_arguments(self) -> Any:
        """The arguments decoded from JSON (``{}`` for none); ``ValueError`` naming the call if
        they are not JSON (a cut-off call, a model that wrote something else)."""
        text = self.arguments
        if not text.strip():
            return {}
        try:
            return json.loads(text)
        except ValueError as exc:
            raise ValueError(
                f"the arguments of tool call {self.id or self.index} ({self.name!r}) are not"
                f" valid JSON ({exc}): {text[:200]!r}"
            ) from None

    def to_dict(self) -> dict[str, Any]:
        """The call as a message's ``tool_calls`` entry (what ``chat.create`` returns)."""
        return {
            "id": self.id,
            "type": self.type,
            "function": {"name": self.name, "arguments": self.arguments},
        }

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, StreamedToolCall):
            return NotImplemented
        return (self.index, self.id, self.name, self.arguments, self.done) == (
            other.index,
            other.id,
            other.name,
            other.arguments,
            other.done,
        )

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        state = "done" if self.done else "open"
        return (
            f"StreamedToolCall(index={self.index}, id={self.id!r}, name={self.name!r},"
            f" arguments={self.arguments!r}, {state})"
        )


@dataclass(frozen=True, slots=True)
class TextDelta:
    """Answer text."""

    type: ClassVar[Literal["content.delta"]] = "content.delta"
    delta: str
    choice: int = 0


@dataclass(frozen=True, slots=True)
class ReasoningDelta:
    """Reasoning text (``delta.reasoning_content`` or ``delta.reasoning``)."""

    type: ClassVar[Literal["reasoning.delta"]] = "reasoning.delta"
    delta: str
    choice: int = 0


@dataclass(frozen=True, slots=True)
class RefusalDelta:
    """Refusal text (a model declining a ``response_format``)."""

    type: ClassVar[Literal["refusal.delta"]] = "refusal.delta"
    delta: str
    choice: int = 0


@dataclass(frozen=True, slots=True)
class ToolCallArgumentsDelta:
    """A fragment of a tool call's arguments (``delta`` may be "" on the call's first one).

    ``index``: the call's place among its choice's calls; ``id`` and ``name``:
    the call's, as known so far.
    """

    type: ClassVar[Literal["tool_calls.function.arguments.delta"]] = (
        "tool_calls.function.arguments.delta"
    )
    index: int
    id: str
    name: str
    delta: str
    choice: int = 0


@dataclass(frozen=True, slots=True)
class ToolCallDone:
    """A tool call is whole (its choice finished): ``call.parsed_arguments()`` is safe to try."""

    type: ClassVar[Literal["tool_calls.function.arguments.done"]] = (
        "tool_calls.function.arguments.done"
    )
    call: StreamedToolCall
    choice: int = 0


@dataclass(frozen=True, slots=True)
class StreamDone:
    """The stream ended complete: ``completion`` is ``stream.final_completion()``."""

    type: ClassVar[Literal["done"]] = "done"
    completion: ChatCompletion


#: Any event of ``stream.events()``.
ChatStreamEvent = (
    TextDelta | ReasoningDelta | RefusalDelta | ToolCallArgumentsDelta | ToolCallDone | StreamDone
)
