"""The chat fallback, streamed: chat completion chunks -> the events of a Responses stream.

:class:`ChunkConverter` is fed the chunks of a streamed chat completion (dicts)
and returns the events a Responses server would have sent for the same answer,
with their ``sequence_number``: ``response.created``, ``response.in_progress``,
an output item per reasoning / message / function call (``output_item.added``,
the deltas, the ``.done`` events, ``output_item.done``), then
``response.completed`` (``response.incomplete`` when the answer was cut by
``max_tokens`` or a content filter) carrying the whole response and its usage.
An ``error`` object inside a chunk becomes an ``error`` event.

Tool-call fragments are assembled as the chat stream assembles them: by
``index``; a fragment with a new ``id`` starts a new call even at a used index
(servers that give every call index 0); one with neither continues the last call.
Pure: dicts in, dicts out.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from ._fallback import _envelope, _status, _usage, as_map

__all__ = ["ChunkConverter"]


class ChunkConverter:
    """Chat chunks in, Responses events out (see the module docstring)."""

    def __init__(self, request: Mapping[str, Any]) -> None:
        self._request = request
        self._seq = -1
        self._started = False
        self._id = ""
        self._model: Any = None
        self._created: Any = None
        self._output: list[dict[str, Any]] = []
        self._reasoning_at: int | None = None
        self._reasoning: list[str] = []
        self._message_at: int | None = None
        self._text_at: int | None = None  # content index of the text part
        self._text: list[str] = []
        self._refusal_at: int | None = None
        self._refusal: list[str] = []
        self._calls: dict[int, list[str]] = {}  # open calls: output index -> argument pieces
        self._by_index: dict[int, int] = {}  # a chunk's tool-call index -> output index
        self._by_id: dict[str, int] = {}
        self._last_call: int | None = None
        self._usage: Any = None
        #: The chat finish reason, once a chunk gave it.
        self.finish_reason: str | None = None

    def _event(self, kind: str, **fields: Any) -> dict[str, Any]:
        self._seq += 1
        return {"type": kind, "sequence_number": self._seq, **fields}

    def _in(self, at: int) -> dict[str, Any]:
        return {"item_id": self._output[at].get("id"), "output_index": at}

    def _add(self, item: dict[str, Any], out: list[dict[str, Any]]) -> int:
        at = len(self._output)
        self._output.append(item)
        out.append(self._event("response.output_item.added", output_index=at, item=dict(item)))
        return at

    def _response(self, status: str) -> dict[str, Any]:
        return _envelope(self._request, self._id, self._created, self._model, status)

    # -- feeding ------------------------------------------------------------------------

    def feed(self, chunk: Mapping[str, Any]) -> list[dict[str, Any]]:
        """The events for one chunk (the first chunk also starts the response)."""
        out: list[dict[str, Any]] = []
        error = chunk.get("error")
        if error:
            inner = error if isinstance(error, Mapping) else {"message": str(error)}
            out.append(
                self._event(
                    "error",
                    code=None if inner.get("code") is None else str(inner.get("code")),
                    message=str(inner.get("message") or error),
                    param=inner.get("param"),
                )
            )
            return out
        if not self._started:
            self._started = True
            self._id = str(chunk.get("id") or "")
            self._model = chunk.get("model")
            self._created = chunk.get("created")
            response = self._response("in_progress")
            out.append(self._event("response.created", response=response))
            out.append(self._event("response.in_progress", response=copy.deepcopy(response)))
        if chunk.get("usage"):
            self._usage = chunk["usage"]
        for choice in chunk.get("choices") or ():
            if not isinstance(choice, Mapping) or (choice.get("index") or 0) != 0:
                continue
            delta = choice.get("delta")
            if isinstance(delta, Mapping):
                reasoning = delta.get("reasoning_content") or delta.get("reasoning")
                if isinstance(reasoning, str) and reasoning:
                    self._reasoning_delta(reasoning, out)
                content = delta.get("content")
                if isinstance(content, str) and content:
                    self._text_delta(content, out)
                if isinstance(delta.get("refusal"), str) and delta["refusal"]:
                    self._refusal_delta(delta["refusal"], out)
                for call in delta.get("tool_calls") or ():
                    if isinstance(call, Mapping):
                        self._call_delta(call, out)
                if isinstance(delta.get("function_call"), Mapping):
                    self._call_delta({"index": 0, "function": delta["function_call"]}, out)
            if choice.get("finish_reason"):
                self.finish_reason = choice["finish_reason"]
        return out

    def _reasoning_delta(self, text: str, out: list[dict[str, Any]]) -> None:
        if self._reasoning_at is None:
            self._close_message(out)
            self._close_calls(out)
            item = {"type": "reasoning", "id": self._item_id("rs"), "summary": []}
            item["status"] = "in_progress"
            at = self._reasoning_at = self._add(item, out)
            part = {"type": "summary_text", "text": ""}
            out.append(
                self._event(
                    "response.reasoning_summary_part.added",
                    **self._in(at),
                    summary_index=0,
                    part=part,
                )
            )
        self._reasoning.append(text)
        out.append(
            self._event(
                "response.reasoning_summary_text.delta",
                **self._in(self._reasoning_at),
                summary_index=0,
                delta=text,
            )
        )

    def _message(self, out: list[dict[str, Any]]) -> int:
        if self._message_at is None:
            self._close_reasoning(out)
            self._close_calls(out)
            item = {
                "type": "message",
                "id": self._item_id("msg"),
                "role": "assistant",
                "status": "in_progress",
                "content": [],
            }
            self._message_at = self._add(item, out)
        return self._message_at

    def _text_delta(self, text: str, out: list[dict[str, Any]]) -> None:
        at = self._message(out)
        if self._text_at is None:
            self._text_at = int(self._refusal_at is not None)
            part = {"type": "output_text", "text": "", "annotations": []}
            out.append(
                self._event(
                    "response.content_part.added",
                    **self._in(at),
                    content_index=self._text_at,
                    part=part,
                )
            )
        self._text.append(text)
        out.append(
            self._event(
                "response.output_text.delta",
                **self._in(at),
                content_index=self._text_at,
                delta=text,
                logprobs=[],
            )
        )

    def _refusal_delta(self, text: str, out: list[dict[str, Any]]) -> None:
        at = self._message(out)
        if self._refusal_at is None:
            self._refusal_at = int(self._text_at is not None)
            part = {"type": "refusal", "refusal": ""}
            out.append(
                self._event(
                    "response.content_part.added",
                    **self._in(at),
                    content_index=self._refusal_at,
                    part=part,
                )
            )
        self._refusal.append(text)
        out.append(
            self._event(
                "response.refusal.delta", **self._in(at), content_index=self._refusal_at, delta=text
            )
        )

    def _call_delta(self, call: Mapping[str, Any], out: list[dict[str, Any]]) -> None:
        index = call.get("index")
        call_id = call.get("id") if isinstance(call.get("id"), str) and call.get("id") else None
        function = as_map(call.get("function"))
        at: int | None
        if call_id is not None:
            at = self._by_id.get(call_id)
        elif isinstance(index, int):
            at = self._by_index.get(index)
        else:
            at = self._last_call
        if at is None or at not in self._calls:
            self._close_reasoning(out)
            self._close_message(out)
            call_id = call_id or f"call_{self._id}_{len(self._output)}"
            item = {
                "type": "function_call",
                "id": f"fc_{call_id}",
                "call_id": call_id,
                "name": function.get("name") or "",
                "arguments": "",
                "status": "in_progress",
            }
            at = self._add(item, out)
            self._calls[at] = []
            self._by_id[call_id] = at
        if isinstance(index, int):
            self._by_index[index] = at
        self._last_call = at
        item = self._output[at]
        if function.get("name") and not item["name"]:
            item["name"] = function["name"]
        arguments = function.get("arguments")
        if isinstance(arguments, str) and arguments:
            self._calls[at].append(arguments)
            out.append(
                self._event(
                    "response.function_call_arguments.delta", **self._in(at), delta=arguments
                )
            )

    # -- closing items ------------------------------------------------------------------

    def _item_id(self, prefix: str) -> str:
        taken = any(i.get("id") == f"{prefix}_{self._id}" for i in self._output)
        return f"{prefix}_{self._id}_{len(self._output)}" if taken else f"{prefix}_{self._id}"

    def _close_reasoning(self, out: list[dict[str, Any]]) -> None:
        at, self._reasoning_at = self._reasoning_at, None
        if at is None:
            return
        text = "".join(self._reasoning)
        self._reasoning = []
        part = {"type": "summary_text", "text": text}
        where = self._in(at)
        out.append(
            self._event("response.reasoning_summary_text.done", **where, summary_index=0, text=text)
        )
        out.append(
            self._event(
                "response.reasoning_summary_part.done", **where, summary_index=0, part=dict(part)
            )
        )
        item = self._output[at]
        item.update(summary=[part], status="completed")
        out.append(self._event("response.output_item.done", output_index=at, item=item))

    def _close_message(self, out: list[dict[str, Any]], status: str = "completed") -> None:
        at, self._message_at = self._message_at, None
        if at is None:
            return
        where = self._in(at)
        parts: list[tuple[int, dict[str, Any]]] = []
        if self._text_at is not None:
            text = "".join(self._text)
            part = {"type": "output_text", "text": text, "annotations": []}
            out.append(
                self._event(
                    "response.output_text.done",
                    **where,
                    content_index=self._text_at,
                    text=text,
                    logprobs=[],
                )
            )
            out.append(
                self._event(
                    "response.content_part.done", **where, content_index=self._text_at, part=part
                )
            )
            parts.append((self._text_at, part))
        if self._refusal_at is not None:
            refusal = "".join(self._refusal)
            part = {"type": "refusal", "refusal": refusal}
            out.append(
                self._event(
                    "response.refusal.done",
                    **where,
                    content_index=self._refusal_at,
                    refusal=refusal,
                )
            )
            out.append(
                self._event(
                    "response.content_part.done", **where, content_index=self._refusal_at, part=part
                )
            )
            parts.append((self._refusal_at, part))
        self._text_at = self._refusal_at = None
        self._text = []
        self._refusal = []
        item = self._output[at]
        item.update(content=[p for _, p in sorted(parts, key=lambda x: x[0])], status=status)
        out.append(self._event("response.output_item.done", output_index=at, item=item))

    def _close_calls(self, out: list[dict[str, Any]]) -> None:
        for at in sorted(self._calls):
            arguments = "".join(self._calls[at])
            item = self._output[at]
            out.append(
                self._event(
                    "response.function_call_arguments.done",
                    **self._in(at),
                    arguments=arguments,
                    name=item["name"],
                )
            )
            item.update(arguments=arguments, status="completed")
            out.append(self._event("response.output_item.done", output_index=at, item=item))
        self._calls = {}
        self._last_call = None

    def finish(self) -> list[dict[str, Any]]:
        """The closing events, once the chat stream has ended with a finish reason."""
        out: list[dict[str, Any]] = []
        status, incomplete = _status(self.finish_reason)
        self._close_reasoning(out)
        self._close_message(out, status)
        self._close_calls(out)
        response = self._response(status)
        response["output"] = copy.deepcopy(self._output)
        response["incomplete_details"] = incomplete
        response["usage"] = _usage(self._usage)
        kind = "response.incomplete" if status == "incomplete" else "response.completed"
        out.append(self._event(kind, response=response))
        return out
