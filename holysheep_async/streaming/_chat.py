"""Chat completion chunks: what each ``chat.completion.chunk`` says, accumulated. No I/O.

:class:`ChatState` is the chat protocol of the stream core (it satisfies
``_protocol.StreamProtocol``): ``take`` reads one decoded chunk and returns
``(chunk, first-choice text or None)``; the state keeps the id, model, usage,
finish reason and refusal of every choice. The first choice's text is added by
whoever hands it on (:meth:`ChatState.feed` does; the stream adds a delta
when it yields it, so ``stream.text`` is what the caller has seen).

>>> state = ChatState()
>>> state.feed({"choices": [{"index": 0, "delta": {"content": "Hi"}}]})
'Hi'
>>> state.feed({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
>>> state.text, state.finish_reason, state.complete()
('Hi', 'stop', True)

The text path builds no object per chunk: a few dict lookups on the decoded
JSON. Chunks are checked only as far as reading them needs (a chunk that is
not an object, choices that are not objects, content that is not a string
raise :class:`StreamError` with code ``malformed_event``).
"""

from __future__ import annotations

import logging
from typing import Any

from pydantic import ValidationError

from ..models import Usage
from ._protocol import Errors

__all__ = ["ChatState", "completion_as_chunk"]

log = logging.getLogger("holysheep_async")

#: What ``ChatState.take`` returns: the chunk (a dict) and its first-choice text.
ChatItem = tuple[dict[str, Any], str | None]


def completion_as_chunk(obj: dict[str, Any], errors: Errors, data: str) -> dict[str, Any]:
    """A whole ``chat.completion`` as one ``chat.completion.chunk`` (messages become deltas)."""
    choices = []
    for choice in obj["choices"]:
        message = choice.get("message") if isinstance(choice, dict) else None
        if not isinstance(message, dict):
            raise errors.malformed(data, "a choice without a message")
        delta = dict(message)
        if isinstance(delta.get("tool_calls"), list):
            delta["tool_calls"] = [
                {**call, "index": i} if isinstance(call, dict) else call
                for i, call in enumerate(delta["tool_calls"])
            ]
        choices.append(
            {
                "index": choice.get("index", 0),
                "delta": delta,
                "logprobs": choice.get("logprobs"),
                "finish_reason": choice.get("finish_reason"),
            }
        )
    return {**obj, "object": "chat.completion.chunk", "choices": choices}


class ChatState:
    """What a chat completion stream said so far, per choice (``n`` choices asked for)."""

    whole_name = "a chat.completion JSON object"
    ending = "finish reason"
    done_marker = True

    __slots__ = (
        "_usage",
        "_usage_raw",
        "errors",
        "finish",
        "id",
        "model",
        "n",
        "parts",
        "refusal_parts",
        "tool_calls_seen",
    )

    def __init__(self, n: int = 1, errors: Errors | None = None) -> None:
        #: Choices asked for (the answer is complete once each has a finish reason).
        self.n = n
        self.errors = errors or Errors()
        #: The first choice's text, in pieces (``text`` joins them).
        self.parts: list[str] = []
        self.refusal_parts: list[str] = []
        #: Finish reasons by choice index.
        self.finish: dict[int, str] = {}
        self.tool_calls_seen = False
        self._usage_raw: Any = None
        self._usage: Usage | None = None
        self.id: str | None = None
        self.model: str | None = None

    # -- the protocol -----------------------------------------------------------------

    def take(self, obj: Any, data: str) -> ChatItem:
        """Record what a chunk says (id, usage, finish reasons); return it with its
        first-choice text (not added to ``text``: see the module docstring)."""
        if obj.__class__ is not dict:
            raise self.errors.malformed(data, "not a JSON object")
        if obj.get("error"):
            raise self.errors.error_object(data)
        if self.id is None:
            self.id = obj.get("id")
            self.model = obj.get("model")
        usage = obj.get("usage")
        if usage:
            self._usage_raw = usage
            self._usage = None
        choices = obj.get("choices")
        if not choices:
            return obj, None
        text = None
        try:
            for choice in choices:
                index = choice.get("index") or 0
                delta = choice.get("delta")
                if delta:
                    content = delta.get("content")
                    if content and index == 0:
                        if content.__class__ is not str:
                            raise self.errors.malformed(data, "delta.content is not a string")
                        text = content
                    elif delta.get("tool_calls") or delta.get("function_call"):
                        self.tool_calls_seen = True
                    elif index == 0 and delta.get("refusal"):
                        self.refusal_parts.append(delta["refusal"])
                reason = choice.get("finish_reason")
                if reason:
                    self.finish[index] = reason
        except (AttributeError, TypeError):
            raise self.errors.malformed(data, "choices are not objects") from None
        return obj, text

    def whole(self, obj: Any, data: str) -> list[ChatItem]:
        if isinstance(obj, dict) and not obj.get("error") and isinstance(obj.get("choices"), list):
            obj = completion_as_chunk(obj, self.errors, data)
        return [self.take(obj, data)]

    def complete(self) -> bool:
        finish = self.finish
        return bool(finish) and 0 in finish and len(finish) >= self.n

    def partial_text(self) -> str:
        return self.text

    def restart(self) -> None:
        self.finish = {}
        self._usage_raw = None
        self._usage = None
        self.id = None
        self.model = None

    def resumable(self) -> bool:
        return self.n == 1 and not self.tool_calls_seen

    # -- reading it -------------------------------------------------------------------

    def feed(self, obj: Any, data: str = "") -> str | None:
        """``take`` a chunk and add its first-choice text: the whole stream, without one."""
        _, text = self.take(obj, data)
        if text is not None:
            self.parts.append(text)
        return text

    @property
    def text(self) -> str:
        """The first choice's text so far."""
        parts = self.parts
        if len(parts) > 1:
            joined = "".join(parts)
            parts.clear()
            parts.append(joined)
        return parts[0] if parts else ""

    @property
    def finish_reason(self) -> str | None:
        """The first choice's finish reason, None until known."""
        return self.finish.get(0)

    @property
    def refusal(self) -> str | None:
        return "".join(self.refusal_parts) if self.refusal_parts else None

    @property
    def usage(self) -> Usage | None:
        """Token usage, once a chunk carried it (a malformed one is logged and ignored)."""
        if self._usage is None and self._usage_raw is not None:
            try:
                self._usage = Usage.model_validate(self._usage_raw)
            except ValidationError:
                log.warning("ignoring a malformed usage object: %.200r", self._usage_raw)
                self._usage_raw = None
        return self._usage
