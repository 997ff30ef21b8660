"""Building a response from the events of its stream. Pure: event dicts in, a dict out.

:class:`Accumulator` is fed each event object of a Responses stream in order
and keeps what a stream surface needs: the output text so far, the id, model
and status, the last ``sequence_number`` (to resume a background stream
after it, and to drop an event seen twice), how the stream ended, and the
output items as they grow. :meth:`Accumulator.build` gives the final response
object: the one ``response.completed`` (or ``.incomplete`` / ``.failed``)
carries, with the output items rebuilt from the events where that one has
none (servers that send a bare final event).

Lenient where servers are: a delta for an item or a part that was never
announced (relays that skip ``output_item.added``) creates it; events
without a ``sequence_number`` are taken as they come. The text path builds
no pydantic object: a few dict lookups per event.
"""

from __future__ import annotations

import copy
from typing import Any

__all__ = ["ENDINGS", "Accumulator"]

#: The events that end a stream, and the status each one means.
ENDINGS = {
    "response.completed": "completed",
    "response.incomplete": "incomplete",
    "response.failed": "failed",
}
_LIFECYCLE = frozenset({"response.created", "response.queued", "response.in_progress"})

Key = tuple[int, int]


class Accumulator:
    """The state of one Responses stream, event by event (see the module docstring)."""

    def __init__(self) -> None:
        self.id: str | None = None
        self.model: str | None = None
        self.status: str | None = None
        #: The ``sequence_number`` of the last event taken (None before any, or if never sent).
        self.sequence_number: int | None = None
        #: The event type that ended the stream (``response.completed``...), None until then.
        self.ended: str | None = None
        #: The ``error`` event, when the stream sent one.
        self.error: dict[str, Any] | None = None
        #: Events taken (duplicates not counted).
        self.events = 0
        self._snapshot: dict[str, Any] | None = None
        self._final: dict[str, Any] | None = None
        self._items: dict[int, dict[str, Any]] = {}
        self._done: dict[int, dict[str, Any]] = {}
        self._ids: dict[str, int] = {}  # item id -> output_index
        self._text: list[str] = []
        self._reasoning: list[str] = []
        # Pieces of what grows by deltas, joined in build(): (output_index, index) -> pieces.
        self._parts: dict[Key, list[str]] = {}
        self._refusals: dict[Key, list[str]] = {}
        self._summaries: dict[Key, list[str]] = {}
        self._reasoning_texts: dict[Key, list[str]] = {}
        self._arguments: dict[int, list[str]] = {}

    # -- what the stream said so far --------------------------------------------------------

    @property
    def text(self) -> str:
        """The output text so far (every output_text delta, in order)."""
        text = self._text
        if len(text) > 1:
            joined = "".join(text)
            text.clear()
            text.append(joined)
        return text[0] if text else ""

    @property
    def reasoning(self) -> str:
        """The reasoning summary text (or reasoning text) so far."""
        return "".join(self._reasoning)

    # -- feeding ----------------------------------------------------------------------------

    def is_new(self, event: dict[str, Any]) -> bool:
        """False for an event at or before the last ``sequence_number`` taken (seen already)."""
        seq = event.get("sequence_number")
        last = self.sequence_number
        return not (seq.__class__ is int and last is not None and seq <= last)

    def feed(self, event: dict[str, Any]) -> str | None:
        """Take one event (call :meth:`is_new` first); return its output text delta, if any."""
        seq = event.get("sequence_number")
        if seq.__class__ is int:
            self.sequence_number = seq
        self.events += 1
        kind = event.get("type")
        if kind == "response.output_text.delta":
            delta = event.get("delta")
            if delta.__class__ is not str:
                raise ValueError("response.output_text.delta without a string delta")
            if not delta:
                return None
            key = self._part_key(event, "output_text")
            self._parts.setdefault(key, []).append(delta)
            self._text.append(delta)
            return delta
        handler = _HANDLERS.get(kind)  # type: ignore[arg-type]
        if handler is not None:
            handler(self, event)
        return None

    def _response(self, event: dict[str, Any]) -> None:
        response = event.get("response")
        if not isinstance(response, dict):
            return
        if event.get("type") in ENDINGS:
            self.ended = event["type"]
            self._final = response
            self.status = response.get("status") or ENDINGS[event["type"]]
        else:
            self._snapshot = response
            self.status = response.get("status") or self.status
        self.id = response.get("id") or self.id
        self.model = response.get("model") or self.model

    def _error(self, event: dict[str, Any]) -> None:
        self.error = event

    def _item_added(self, event: dict[str, Any]) -> None:
        item = event.get("item")
        if not isinstance(item, dict):
            return
        index = _index(event, "output_index", len(self._items))
        self._items[index] = copy.deepcopy(item)
        if isinstance(item.get("id"), str):
            self._ids[item["id"]] = index

    def _item_done(self, event: dict[str, Any]) -> None:
        item = event.get("item")
        if not isinstance(item, dict):
            return
        index = _index(event, "output_index", len(self._items))
        self._done[index] = item
        self._items.setdefault(index, item)
        if isinstance(item.get("id"), str):
            self._ids[item["id"]] = index

    def _part_added(self, event: dict[str, Any]) -> None:
        part = event.get("part")
        if not isinstance(part, dict):
            return
        item = self._item(event, "message")
        content = item.setdefault("content", [])
        index = _index(event, "content_index", len(content))
        while len(content) <= index:
            content.append(None)
        content[index] = dict(part)

    def _text_done(self, event: dict[str, Any]) -> None:
        text = event.get("text")
        if isinstance(text, str):
            self._parts[self._part_key(event, "output_text")] = [text]

    def _refusal_delta(self, event: dict[str, Any]) -> None:
        delta = event.get("delta")
        if isinstance(delta, str):
            self._refusals.setdefault(self._part_key(event, "refusal"), []).append(delta)

    def _refusal_done(self, event: dict[str, Any]) -> None:
        refusal = event.get("refusal")
        if isinstance(refusal, str):
            self._refusals[self._part_key(event, "refusal")] = [refusal]

    def _arguments_delta(self, event: dict[str, Any]) -> None:
        delta = event.get("delta")
        if isinstance(delta, str):
            index = self._item_index(event, "function_call")
            self._arguments.setdefault(index, []).append(delta)

    def _arguments_done(self, event: dict[str, Any]) -> None:
        arguments = event.get("arguments")
        if isinstance(arguments, str):
            self._arguments[self._item_index(event, "function_call")] = [arguments]
        name = event.get("name")
        if isinstance(name, str) and name:
            self._item(event, "function_call")["name"] = name

    def _summary_part(self, event: dict[str, Any]) -> None:
        item = self._item(event, "reasoning")
        summary = item.setdefault("summary", [])
        index = _index(event, "summary_index", len(summary))
        while len(summary) <= index:
            summary.append({"type": "summary_text", "text": ""})
        part = event.get("part")
        if isinstance(part, dict):
            summary[index] = dict(part)

    def _summary_delta(self, event: dict[str, Any]) -> None:
        delta = event.get("delta")
        if isinstance(delta, str):
            key = (self._item_index(event, "reasoning"), _index(event, "summary_index", 0))
            if self._summaries and key not in self._summaries and self._reasoning:
                self._reasoning.append("\n\n")  # a new summary part
            self._summaries.setdefault(key, []).append(delta)
            self._reasoning.append(delta)

    def _summary_done(self, event: dict[str, Any]) -> None:
        text = event.get("text")
        if isinstance(text, str):
            key = (self._item_index(event, "reasoning"), _index(event, "summary_index", 0))
            self._summaries[key] = [text]

    def _reasoning_delta(self, event: dict[str, Any]) -> None:
        delta = event.get("delta")
        if isinstance(delta, str):
            key = (self._item_index(event, "reasoning"), _index(event, "content_index", 0))
            self._reasoning_texts.setdefault(key, []).append(delta)
            if not self._summaries:
                self._reasoning.append(delta)

    def _reasoning_done(self, event: dict[str, Any]) -> None:
        text = event.get("text")
        if isinstance(text, str):
            key = (self._item_index(event, "reasoning"), _index(event, "content_index", 0))
            self._reasoning_texts[key] = [text]

    # -- items the events point at ------------------------------------------------------------

    def _item_index(self, event: dict[str, Any], kind: str) -> int:
        index = event.get("output_index")
        if index.__class__ is not int:
            item_id = event.get("item_id")
            index = self._ids.get(item_id) if isinstance(item_id, str) else None
            if index is None:
                # No index and no known id: the latest item if it is of this kind, else a new one.
                last = max(self._items, default=-1)
                same = last >= 0 and self._items[last].get("type") == kind
                index = last if same else last + 1
        if index not in self._items:
            # Never announced (a relay that skips output_item.added): made from the delta.
            item: dict[str, Any] = {"type": kind, "status": "in_progress"}
            if isinstance(event.get("item_id"), str):
                item["id"] = event["item_id"]
                self._ids[event["item_id"]] = index
            if kind == "message":
                item.update(role="assistant", content=[])
            elif kind == "function_call":
                item.update(call_id="", name="", arguments="")
            elif kind == "reasoning":
                item["summary"] = []
            self._items[index] = item
        return index

    def _item(self, event: dict[str, Any], kind: str) -> dict[str, Any]:
        return self._items[self._item_index(event, kind)]

    def _part_key(self, event: dict[str, Any], kind: str) -> Key:
        output_index = self._item_index(event, "message")
        content = self._items[output_index].setdefault("content", [])
        index = _index(event, "content_index", 0)
        while len(content) <= index:
            content.append(None)
        if content[index] is None:
            content[index] = (
                {"type": "output_text", "text": "", "annotations": []}
                if kind == "output_text"
                else {"type": kind, kind: ""}
            )
        return (output_index, index)

    # -- the result ---------------------------------------------------------------------------

    def output(self) -> list[dict[str, Any]]:
        """The output items so far, in order: finished ones as the server sent them, the
        others with what their deltas said."""
        out = []
        for index in sorted(self._items):
            done = self._done.get(index)
            out.append(done if done is not None else self._grown(index))
        return out

    def _grown(self, index: int) -> dict[str, Any]:
        item = copy.deepcopy(self._items[index])
        kind = item.get("type")
        if kind == "message":
            content = [p for p in item.get("content") or () if p is not None]
            for i, part in enumerate(item.get("content") or ()):
                if part is None:
                    continue
                pieces = self._parts.get((index, i))
                if pieces is not None and part.get("type") == "output_text":
                    part["text"] = "".join(pieces)
                refusal = self._refusals.get((index, i))
                if refusal is not None and part.get("type") == "refusal":
                    part["refusal"] = "".join(refusal)
            item["content"] = content
        elif kind == "function_call":
            pieces = self._arguments.get(index)
            if pieces is not None:
                item["arguments"] = "".join(pieces)
        elif kind == "reasoning":
            summary = item.get("summary") or []
            for (i, j), pieces in self._summaries.items():
                if i == index:
                    while len(summary) <= j:
                        summary.append({"type": "summary_text", "text": ""})
                    summary[j]["text"] = "".join(pieces)
            item["summary"] = summary
            texts = sorted((j, p) for (i, j), p in self._reasoning_texts.items() if i == index)
            if texts:
                item["content"] = [{"type": "reasoning_text", "text": "".join(p)} for _, p in texts]
        return item

    def build(self) -> dict[str, Any]:
        """The response object: the final event's, its output rebuilt from the events
        where it has none; before the end, the snapshot with the output so far."""
        base = self._final if self._final is not None else self._snapshot
        response: dict[str, Any] = dict(base) if base is not None else {"object": "response"}
        if self.id is not None:
            response.setdefault("id", self.id)
        if self.model is not None and not response.get("model"):
            response["model"] = self.model
        if self.status is not None and not response.get("status"):
            response["status"] = self.status
        if not response.get("output") and self._items:
            response["output"] = self.output()
        return response


def _index(event: dict[str, Any], key: str, default: int) -> int:
    value = event.get(key)
    return value if value.__class__ is int and value >= 0 else default


_HANDLERS = {
    "response.created": Accumulator._response,
    "response.queued": Accumulator._response,
    "response.in_progress": Accumulator._response,
    "response.completed": Accumulator._response,
    "response.incomplete": Accumulator._response,
    "response.failed": Accumulator._response,
    "error": Accumulator._error,
    "response.output_item.added": Accumulator._item_added,
    "response.output_item.done": Accumulator._item_done,
    "response.content_part.added": Accumulator._part_added,
    "response.output_text.done": Accumulator._text_done,
    "response.refusal.delta": Accumulator._refusal_delta,
    "response.refusal.done": Accumulator._refusal_done,
    "response.function_call_arguments.delta": Accumulator._arguments_delta,
    "response.function_call_arguments.done": Accumulator._arguments_done,
    "response.reasoning_summary_part.added": Accumulator._summary_part,
    "response.reasoning_summary_text.delta": Accumulator._summary_delta,
    "response.reasoning_summary_text.done": Accumulator._summary_done,
    "response.reasoning_text.delta": Accumulator._reasoning_delta,
    "response.reasoning_text.done": Accumulator._reasoning_done,
}
