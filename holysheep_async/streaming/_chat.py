"""Chat completion chunks: what each ``chat.completion.chunk`` says, accumulated. No I/O.

:class:`ChatState` is the chat protocol of the stream core (it satisfies
``_protocol.StreamProtocol``). ``take`` reads one decoded chunk and returns
``(chunk, first-choice text or None, events or None)``; the state keeps, per
choice: text, reasoning, refusal, tool calls, logprobs (when asked for),
finish reason; and the id, model and usage of the answer.
:meth:`ChatState.final_completion` is all of it as the ``ChatCompletion``
``chat.create`` returns for the same answer.

The first choice's text is added by whoever hands it on (:meth:`ChatState.feed`
does; the stream adds a delta when it yields it, so ``stream.text`` is what the
caller has seen).

>>> state = ChatState()
>>> state.feed({"choices": [{"index": 0, "delta": {"content": "Hi"}}]})
'Hi'
>>> state.feed({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
>>> state.text, state.finish_reason, state.complete()
('Hi', 'stop', True)

What servers send, and how it is read:

- reasoning as ``delta.reasoning_content`` (DeepSeek, most relays) or
  ``delta.reasoning`` (vLLM, newer servers): either, into one ``reasoning``;
  a server that sends both with the same text is read once.
- tool calls in fragments, assembled by ``index``: the first fragment has
  ``id`` and ``name``, later ones only arguments. Also right when a server
  repeats an index inside one chunk (vLLM speculative decoding: both are
  fragments of that call, in order), omits the index (a fragment without
  index or id continues the latest call), or gives every call index 0 with
  distinct ids (Ollama through LiteLLM: a new id is a new call).

The text path builds no object per chunk: a few dict lookups on the decoded
JSON; anything but the first choice's text (a delta with more keys than
``content``) takes the slower path. Chunks are checked only as far as reading
them needs (a chunk that is not an object, choices or tool calls that are not
objects, text that is not a string raise :class:`StreamError` with code
``malformed_event``).
"""

from __future__ import annotations

import logging
from typing import Any

from pydantic import ValidationError

from ..models import ChatCompletion, Usage
from ._chat_events import (
    ReasoningDelta,
    RefusalDelta,
    StreamedToolCall,
    TextDelta,
    ToolCallArgumentsDelta,
    ToolCallDone,
)
from ._protocol import Errors

__all__ = ["ChatItem", "ChatState", "completion_as_chunk"]

log = logging.getLogger("holysheep_async")

#: What ``ChatState.take`` returns: the chunk (a dict), its first-choice text, and the
#: events it holds besides that text (only when ``want_events``; else None).
ChatItem = tuple[dict[str, Any], str | None, list[Any] | None]

# Top-level fields of a completion copied from the first chunk into final_completion().
_KEPT = ("system_fingerprint", "service_tier")


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


class _Choice:
    """What one choice said so far."""

    __slots__ = ("by_id", "by_index", "calls", "logprobs", "parts", "reasoning", "refusal")

    def __init__(self, parts: list[str]) -> None:
        self.parts = parts
        self.reasoning: list[str] = []
        self.refusal: list[str] = []
        self.calls: list[StreamedToolCall] = []
        self.by_index: dict[Any, StreamedToolCall] = {}
        self.by_id: dict[str, StreamedToolCall] = {}
        #: ``{"content": [...], "refusal": [...]}``: the token logprobs of every chunk, joined.
        self.logprobs: dict[str, list[Any]] = {}


def _joined(parts: list[str]) -> str:
    if len(parts) > 1:
        joined = "".join(parts)
        parts.clear()
        parts.append(joined)
    return parts[0] if parts else ""


class ChatState:
    """What a chat completion stream said so far, per choice (``n`` choices asked for).

    ``want_events``: ``take`` also returns the typed events of each chunk (the
    stream sets it for ``events()``); ``want_logprobs``: logprobs are collected.
    """

    whole_name = "a chat.completion JSON object"
    ending = "finish reason"
    done_marker = True

    __slots__ = (
        "_first",
        "_usage",
        "_usage_raw",
        "choices",
        "errors",
        "finish",
        "id",
        "model",
        "n",
        "parts",
        "tool_calls_seen",
        "want_events",
        "want_logprobs",
    )

    def __init__(
        self, n: int = 1, errors: Errors | None = None, *, want_logprobs: bool = False
    ) -> None:
        #: Choices asked for (the answer is complete once each has a finish reason).
        self.n = n
        self.errors = errors or Errors()
        self.want_events = False
        self.want_logprobs = want_logprobs
        #: The first choice's text, in pieces (``text`` joins them).
        self.parts: list[str] = []
        self.choices: dict[int, _Choice] = {0: _Choice(self.parts)}
        #: Finish reasons by choice index.
        self.finish: dict[int, str] = {}
        self.tool_calls_seen = False
        self._usage_raw: Any = None
        self._usage: Usage | None = None
        self._first: dict[str, Any] | None = None
        self.id: str | None = None
        self.model: str | None = None

    # -- the protocol -----------------------------------------------------------------

    def take(self, obj: Any, data: str) -> ChatItem:
        """Record what a chunk says; return it with its first-choice text (not added to
        ``text``: see the module docstring) and its other events (with ``want_events``)."""
        if obj.__class__ is not dict:
            raise self.errors.malformed(data, "not a JSON object")
        if obj.get("error"):
            raise self.errors.error_object(data)
        if self.id is None:
            self.id = obj.get("id")
            self.model = obj.get("model")
            self._first = obj
        usage = obj.get("usage")
        if usage:
            self._usage_raw = usage
            self._usage = None
        choices = obj.get("choices")
        if not choices:
            return obj, None, None
        text = None
        extra: list[Any] | None = None
        try:
            for choice in choices:
                index = choice.get("index") or 0
                delta = choice.get("delta")
                if delta:
                    content = delta.get("content")
                    if content and index == 0:
                        if content.__class__ is not str:
                            raise self.errors.malformed(data, "delta.content is not a string")
                        text = content if text is None else text + content
                        if len(delta) > 1:  # a role, reasoning, tool calls beside the text
                            extra = self._delta(0, delta, data, extra, False)
                    else:
                        extra = self._delta(index, delta, data, extra, True)
                if self.want_logprobs:
                    logprobs = choice.get("logprobs")
                    if logprobs:
                        self._logprobs(index, logprobs)
                reason = choice.get("finish_reason")
                if reason:
                    extra = self._finished(index, reason, extra)
        except (AttributeError, TypeError):
            raise self.errors.malformed(data, "choices are not objects") from None
        return obj, text, extra

    def whole(self, obj: Any, data: str) -> list[ChatItem]:
        if isinstance(obj, dict) and not obj.get("error") and isinstance(obj.get("choices"), list):
            obj = completion_as_chunk(obj, self.errors, data)
        return [self.take(obj, data)]

    def complete(self) -> bool:
        finish = self.finish
        return bool(finish) and 0 in finish and len(finish) >= self.n

    def partial_text(self) -> str:
        return self.text

    def restart(self, resume: bool) -> None:
        self.finish = {}
        self._usage_raw = None
        self._usage = None
        self._first = None
        self.id = None
        self.model = None
        if not resume:
            # From scratch: nothing was handed on, so nothing of the failed attempt counts.
            self.parts.clear()
            self.choices = {0: _Choice(self.parts)}
            self.tool_calls_seen = False

    def resumable(self) -> bool:
        # A tool call cannot be continued from a text prefix; reasoning shown without any
        # text yet would be reasoned (and shown) again.
        if self.n != 1 or self.tool_calls_seen:
            return False
        return bool(self.parts) or not self.choices[0].reasoning

    # -- the slower path: anything but the first choice's text --------------------------

    def _choice(self, index: int) -> _Choice:
        choice = self.choices.get(index)
        if choice is None:
            choice = self.choices[index] = _Choice([])
        return choice

    def _delta(
        self,
        index: int,
        delta: dict[str, Any],
        data: str,
        extra: list[Any] | None,
        with_content: bool,
    ) -> list[Any] | None:
        choice = self._choice(index)
        events = self.want_events
        if with_content:
            content = delta.get("content")
            if content:  # another choice's text (the first choice's takes the fast path)
                if content.__class__ is not str:
                    raise self.errors.malformed(data, "delta.content is not a string")
                choice.parts.append(content)
                if events:
                    extra = _add(extra, TextDelta(content, index))
        reasoning = delta.get("reasoning_content") or delta.get("reasoning")
        if reasoning:
            if reasoning.__class__ is not str:
                raise self.errors.malformed(data, "the reasoning is not a string")
            choice.reasoning.append(reasoning)
            if events:
                extra = _add(extra, ReasoningDelta(reasoning, index))
        refusal = delta.get("refusal")
        if refusal:
            if refusal.__class__ is not str:
                raise self.errors.malformed(data, "delta.refusal is not a string")
            choice.refusal.append(refusal)
            if events:
                extra = _add(extra, RefusalDelta(refusal, index))
        calls = delta.get("tool_calls")
        if calls:
            self.tool_calls_seen = True
            if calls.__class__ is not list:
                raise self.errors.malformed(data, "delta.tool_calls is not a list")
            for call in calls:
                extra = self._call(choice, index, call, data, extra)
        elif delta.get("function_call"):
            # The deprecated functions API: flagged (no resume), readable through chunks().
            self.tool_calls_seen = True
        return extra

    def _call(
        self, choice: _Choice, cindex: int, call: Any, data: str, extra: list[Any] | None
    ) -> list[Any] | None:
        """One tool-call fragment: onto the call it continues, or a new call."""
        if call.__class__ is not dict:
            raise self.errors.malformed(data, "a tool call is not an object")
        index = call.get("index")
        cid = call.get("id")
        function = call.get("function")
        name = args = None
        if function:
            name = function.get("name")
            args = function.get("arguments")
        target = None
        if cid:
            # Known id: a fragment repeating its call's id. New id: a new call, even on an
            # index in use (every call index 0, distinct ids).
            target = choice.by_id.get(cid)
        elif index is not None:
            target = choice.by_index.get(index)
        elif choice.calls:
            target = choice.calls[-1]  # no index, no id: the latest call goes on
        new = target is None
        if target is None:
            kind = call.get("type")
            target = StreamedToolCall(
                len(choice.calls), cid or "", "", kind if kind.__class__ is str else "function"
            )
            choice.calls.append(target)
            if cid:
                choice.by_id[cid] = target
        if index is not None:
            choice.by_index[index] = target
        if name and name != target.name:
            if name.__class__ is not str:
                raise self.errors.malformed(data, "a tool call's name is not a string")
            # A name comes whole in the first fragment; one sent in pieces is joined.
            target.name = target.name + name if target.name else name
        if args:
            if args.__class__ is not str:
                raise self.errors.malformed(data, "a tool call's arguments are not a string")
            target._parts.append(args)
        if self.want_events and (args or new):
            extra = _add(
                extra,
                ToolCallArgumentsDelta(target.index, target.id, target.name, args or "", cindex),
            )
        return extra

    def _logprobs(self, index: int, logprobs: Any) -> None:
        kept = self._choice(index).logprobs
        for key in ("content", "refusal"):
            tokens = logprobs.get(key)
            if tokens:
                kept.setdefault(key, []).extend(tokens)

    def _finished(self, index: int, reason: str, extra: list[Any] | None) -> list[Any] | None:
        self.finish[index] = reason
        choice = self.choices.get(index)
        if choice is not None and choice.calls:
            extra = self._close_calls(choice, index, extra)
        return extra

    def _close_calls(
        self, choice: _Choice, index: int, extra: list[Any] | None
    ) -> list[Any] | None:
        for call in choice.calls:
            if not call.done:
                call.done = True
                if self.want_events:
                    extra = _add(extra, ToolCallDone(call, index))
        return extra

    def end(self) -> list[Any]:
        """The answer is complete: calls still open are done (their events with ``want_events``)."""
        extra: list[Any] | None = None
        for index, choice in self.choices.items():
            if choice.calls:
                extra = self._close_calls(choice, index, extra)
        return extra or []

    # -- reading it -------------------------------------------------------------------

    def feed(self, obj: Any, data: str = "") -> str | None:
        """``take`` a chunk and add its first-choice text: the whole stream, without one."""
        _, text, _ = self.take(obj, data)
        if text is not None:
            self.parts.append(text)
        return text

    @property
    def text(self) -> str:
        """The first choice's text so far."""
        return _joined(self.parts)

    @property
    def reasoning(self) -> str:
        """The first choice's reasoning so far ("" if none)."""
        return _joined(self.choices[0].reasoning)

    @property
    def finish_reason(self) -> str | None:
        """The first choice's finish reason, None until known."""
        return self.finish.get(0)

    @property
    def refusal(self) -> str | None:
        parts = self.choices[0].refusal
        return _joined(parts) if parts else None

    @property
    def tool_calls(self) -> list[StreamedToolCall]:
        """The first choice's finished tool calls."""
        return [call for call in self.choices[0].calls if call.done]

    def calls(self, choice: int = 0) -> list[StreamedToolCall]:
        """Every tool call of ``choice`` so far, finished or not."""
        found = self.choices.get(choice)
        return list(found.calls) if found is not None else []

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

    def final_completion(self) -> ChatCompletion:
        """Everything said, as the ``ChatCompletion`` ``chat.create`` returns for this answer."""
        first = self._first or {}
        choices = []
        for index in sorted(set(self.choices) | set(self.finish)):
            choice = self._choice(index)
            text = _joined(choice.parts)
            message: dict[str, Any] = {"role": "assistant", "content": text or None}
            if choice.refusal:
                message["refusal"] = _joined(choice.refusal)
            if choice.calls:
                message["tool_calls"] = [call.to_dict() for call in choice.calls]
            if choice.reasoning:
                message["reasoning_content"] = _joined(choice.reasoning)
            logprobs = None
            if choice.logprobs:
                logprobs = {
                    "content": choice.logprobs.get("content"),
                    "refusal": choice.logprobs.get("refusal"),
                }
            choices.append(
                {
                    "index": index,
                    "message": message,
                    "finish_reason": self.finish.get(index),
                    "logprobs": logprobs,
                }
            )
        out: dict[str, Any] = {
            "id": self.id or "",
            "object": "chat.completion",
            "created": first.get("created") or 0,
            "model": self.model or "",
            "choices": choices,
            "usage": self._usage_raw if self.usage is not None else None,
        }
        for key in _KEPT:
            if first.get(key) is not None:
                out[key] = first[key]
        return ChatCompletion.model_validate(out)


def _add(extra: list[Any] | None, event: Any) -> list[Any]:
    if extra is None:
        return [event]
    extra.append(event)
    return extra
