"""What the emulator answers to a Responses API request: output items, usage and events.

Pure (no I/O): :func:`plan` turns a checked request (:class:`Spec`) and its
conversation into a :class:`Plan`: the final ``Response`` object, every
server-sent event of its stream in order with its ``sequence_number``, and the
wait before each event (the server's ``ttft`` before the first delta, ``itl``
between deltas). A non-streamed answer waits the sum and sends the final object;
a stream sends the events; a background response releases them on a clock. So
the three always agree, event for event.

What the answer holds:

- a reasoning model (see ``reasoning_model``) first has a ``reasoning`` item:
  reasoning tokens as ``EFFORTS`` says for the effort, and summary parts when
  ``reasoning.summary`` is set (two parts for ``"detailed"``, else one);
- when function tools are offered and ``tool_choice`` allows, ``function_call``
  items (arguments: JSON matching the tool's ``parameters``) instead of text:
  the tools the last user message names (only the first of them with
  ``parallel_tool_calls=false``), or the first tool; ``"auto"`` answers with text
  once a ``function_call_output`` follows the last user message;
- else a ``message``: the emulator's usual words (``answer_text``), JSON matching
  ``text.format``'s schema, or a refusal when the user said ``[refuse]``.

``max_output_tokens`` counts reasoning tokens first, as OpenAI does; an answer it
cuts short ends ``incomplete`` (``incomplete_details.reason: "max_output_tokens"``).
"""

from __future__ import annotations

import base64
import copy
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ._answers import answer_tokens, prompt_tokens
from ._responses_input import EFFORTS, Spec, chat_messages, text_of
from ._schema import _pieces, instance, structured_answer

__all__ = ["DELTAS", "TERMINAL", "Plan", "plan", "usage_of"]

#: Event types that carry generated tokens (each one waits ``itl``, the first ``ttft``).
DELTAS = frozenset(
    {
        "response.output_text.delta",
        "response.refusal.delta",
        "response.reasoning_summary_text.delta",
        "response.function_call_arguments.delta",
    }
)
#: Event types that end a response's stream.
TERMINAL = frozenset({"response.completed", "response.incomplete", "response.failed"})


@dataclass
class Plan:
    """The whole answer to one request, decided before anything is sent."""

    final: dict[str, Any]
    events: list[dict[str, Any]]
    #: Seconds to wait before sending each event.
    delays: list[float]
    #: The response's status once each event is out.
    statuses: list[str]
    usage: dict[str, Any]

    @property
    def total_delay(self) -> float:
        return sum(self.delays)


def usage_of(input_tokens: int, cached: int, output: int, reasoning: int) -> dict[str, Any]:
    return {
        "input_tokens": input_tokens,
        "input_tokens_details": {"cached_tokens": cached, "cache_write_tokens": 0},
        "output_tokens": output,
        "output_tokens_details": {"reasoning_tokens": reasoning},
        "total_tokens": input_tokens + output,
    }


def envelope(spec: Spec, response_id: str, created_at: int) -> dict[str, Any]:
    """A ``Response`` object as the request shapes it, before any output."""
    body = spec.body
    return {
        "id": response_id,
        "object": "response",
        "created_at": created_at,
        "status": "in_progress",
        "background": spec.background,
        "completed_at": None,
        "error": None,
        "incomplete_details": None,
        "instructions": spec.instructions,
        "max_output_tokens": spec.max_output_tokens,
        "max_tool_calls": body.get("max_tool_calls"),
        "model": spec.model,
        "output": [],
        "parallel_tool_calls": body.get("parallel_tool_calls") is not False,
        "previous_response_id": spec.previous_response_id,
        "prompt_cache_key": body.get("prompt_cache_key"),
        "reasoning": {"effort": spec.effort, "summary": spec.summary},
        "safety_identifier": body.get("safety_identifier"),
        "service_tier": body.get("service_tier") or "default",
        "store": spec.store,
        "temperature": body.get("temperature", 1.0),
        "text": {"format": spec.text_format, "verbosity": "medium"},
        "tool_choice": spec.tool_choice,
        "tools": spec.tools,
        "top_logprobs": body.get("top_logprobs", 0),
        "top_p": body.get("top_p", 1.0),
        "truncation": body.get("truncation") or "disabled",
        "usage": None,
        "user": body.get("user"),
        "metadata": spec.metadata,
    }


# ---------------------------------------------------------------------------
# deciding the output


def _last_user_index(context: list[dict[str, Any]]) -> int:
    for i in range(len(context) - 1, -1, -1):
        item = context[i]
        if item.get("type") == "message" and item.get("role") == "user":
            return i
    return -1


def _calls(spec: Spec, context: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The function tools the answer calls (none: it answers with a message)."""
    tools = spec.function_tools
    choice = spec.tool_choice
    if not tools or choice == "none":
        return []
    required = choice == "required"
    if isinstance(choice, dict):
        if choice.get("type") == "function":
            return [t for t in tools if t["name"] == choice["name"]][:1]
        if choice.get("type") == "allowed_tools":
            names = {r.get("name") for r in choice.get("tools", []) if isinstance(r, dict)}
            tools = [t for t in tools if t["name"] in names]
            required = choice.get("mode") == "required"
        else:  # a hosted tool the emulator does not run
            return []
    if not tools:
        return []
    last_user = _last_user_index(context)
    answered = any(item.get("type") == "function_call_output" for item in context[last_user + 1 :])
    if answered and not required:
        return []
    said = text_of(context[last_user].get("content")) if last_user >= 0 else ""
    named = [t for t in tools if t["name"] in said] or tools[:1]
    if spec.body.get("parallel_tool_calls") is False:
        named = named[:1]
    return named


class _Budget:
    """``max_output_tokens``: what is left of it (None: no limit)."""

    def __init__(self, limit: int | None) -> None:
        self.left = limit
        self.cut = False

    def take(self, n: int) -> int:
        if self.left is None:
            return n
        got = min(n, self.left)
        self.left -= got
        if got < n:
            self.cut = True
        return got


class _Writer:
    """Collects events with their sequence numbers, delays and statuses."""

    def __init__(self, ttft: float, itl: float) -> None:
        self.events: list[dict[str, Any]] = []
        self.delays: list[float] = []
        self.statuses: list[str] = []
        self.ttft = ttft
        self.itl = itl
        self.status = "in_progress"
        self._first = True

    def add(self, kind: str, **fields: Any) -> None:
        delay = 0.0
        if kind in DELTAS or (kind in TERMINAL and self._first):
            delay = self.ttft if self._first else self.itl
            self._first = False
        self.events.append({"type": kind, "sequence_number": len(self.events), **fields})
        self.delays.append(delay)
        self.statuses.append(self.status)


def _reasoning_item(
    spec: Spec,
    w: _Writer,
    budget: _Budget,
    messages: list[dict[str, Any]],
    tokens: int,
    new_id: Callable[[str], str],
    index: int,
) -> tuple[dict[str, Any], int]:
    wanted = round(tokens * EFFORTS[spec.effort or "medium"])
    got = budget.take(wanted)
    item: dict[str, Any] = {"id": new_id("rs_"), "type": "reasoning", "summary": []}
    w.add("response.output_item.added", output_index=index, item=copy.deepcopy(item))
    parts = 0 if spec.summary is None else 2 if spec.summary == "detailed" else 1
    for s in range(parts):
        # A bold heading, then a sentence, as OpenAI's summaries read.
        words = answer_tokens(messages, 8, choice=s + 1)
        words[0] = "**" + words[0] + "**\n\n"
        words[1] = words[1].lstrip().capitalize()
        w.add(
            "response.reasoning_summary_part.added",
            item_id=item["id"],
            output_index=index,
            summary_index=s,
            part={"type": "summary_text", "text": ""},
        )
        for word in words:
            w.add(
                "response.reasoning_summary_text.delta",
                item_id=item["id"],
                output_index=index,
                summary_index=s,
                delta=word,
            )
        text = "".join(words)
        w.add(
            "response.reasoning_summary_text.done",
            item_id=item["id"],
            output_index=index,
            summary_index=s,
            text=text,
        )
        part = {"type": "summary_text", "text": text}
        w.add(
            "response.reasoning_summary_part.done",
            item_id=item["id"],
            output_index=index,
            summary_index=s,
            part=dict(part),
        )
        item["summary"].append(part)
    if "reasoning.encrypted_content" in spec.include:
        secret = json.dumps({"id": item["id"], "tokens": got}).encode()
        item["encrypted_content"] = "gAAAA" + base64.urlsafe_b64encode(secret).decode()
    w.add("response.output_item.done", output_index=index, item=copy.deepcopy(item))
    return item, got


def _call_item(
    tool: dict[str, Any],
    w: _Writer,
    budget: _Budget,
    new_id: Callable[[str], str],
    index: int,
) -> tuple[dict[str, Any], int]:
    schema = tool.get("parameters") or {"type": "object", "properties": {}}
    pieces = _pieces(json.dumps(instance(schema)))
    got = budget.take(len(pieces))
    pieces = pieces[:got]
    item: dict[str, Any] = {
        "id": new_id("fc_"),
        "type": "function_call",
        "status": "in_progress",
        "arguments": "",
        "call_id": new_id("call_"),
        "name": tool["name"],
    }
    w.add("response.output_item.added", output_index=index, item=dict(item))
    for piece in pieces:
        w.add(
            "response.function_call_arguments.delta",
            item_id=item["id"],
            output_index=index,
            delta=piece,
        )
    item["arguments"] = "".join(pieces)
    item["status"] = "incomplete" if budget.cut else "completed"
    w.add(
        "response.function_call_arguments.done",
        item_id=item["id"],
        output_index=index,
        arguments=item["arguments"],
    )
    w.add("response.output_item.done", output_index=index, item=dict(item))
    return item, got


def _message_tokens(
    spec: Spec, messages: list[dict[str, Any]], tokens: int
) -> tuple[list[str], bool]:
    """The message's tokens and whether they are a refusal."""
    fmt = spec.text_format
    if fmt["type"] in ("json_schema", "json_object"):
        chat_format: dict[str, Any] = {"type": fmt["type"]}
        if fmt["type"] == "json_schema":
            chat_format["json_schema"] = {"name": fmt["name"], "schema": fmt["schema"]}
        plain = "".join(answer_tokens(messages, tokens))
        structured = structured_answer(
            {"response_format": chat_format, "messages": messages}, plain
        )
        if structured is not None:
            return structured
    return answer_tokens(messages, tokens), False


def _message_item(
    spec: Spec,
    w: _Writer,
    budget: _Budget,
    messages: list[dict[str, Any]],
    tokens: int,
    new_id: Callable[[str], str],
    index: int,
) -> tuple[dict[str, Any], int]:
    words, refused = _message_tokens(spec, messages, tokens)
    got = budget.take(len(words))
    words = words[:got]
    item: dict[str, Any] = {
        "id": new_id("msg_"),
        "type": "message",
        "status": "in_progress",
        "role": "assistant",
        "content": [],
    }
    w.add("response.output_item.added", output_index=index, item=copy.deepcopy(item))
    ids = {"item_id": item["id"], "output_index": index, "content_index": 0}
    if refused:
        w.add("response.content_part.added", **ids, part={"type": "refusal", "refusal": ""})
        for word in words:
            w.add("response.refusal.delta", **ids, delta=word)
        text = "".join(words)
        w.add("response.refusal.done", **ids, refusal=text)
        part: dict[str, Any] = {"type": "refusal", "refusal": text}
    else:
        empty = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
        w.add("response.content_part.added", **ids, part=empty)
        for word in words:
            w.add("response.output_text.delta", **ids, delta=word, logprobs=[])
        text = "".join(words)
        w.add("response.output_text.done", **ids, text=text, logprobs=[])
        part = {"type": "output_text", "text": text, "annotations": [], "logprobs": []}
    w.add("response.content_part.done", **ids, part=dict(part))
    item["content"] = [part]
    item["status"] = "incomplete" if budget.cut else "completed"
    w.add("response.output_item.done", output_index=index, item=copy.deepcopy(item))
    return item, got


def plan(
    spec: Spec,
    *,
    response_id: str,
    context: list[dict[str, Any]],
    carried: int,
    new_id: Callable[[str], str],
    created_at: int,
    tokens: int,
    ttft: float,
    itl: float,
    queue_delay: float = 0.0,
) -> Plan:
    """The answer to ``spec`` given the whole conversation ``context`` (input items).

    ``carried``: how many of ``context``'s items came from ``previous_response_id``
    (their tokens count as cached input). ``tokens``: the answer's length when
    nothing limits it; ``queue_delay``: seconds a background response stays queued.
    """
    messages = chat_messages(spec.instructions, context)
    input_tokens = prompt_tokens(messages)
    cached = 0
    if carried:
        cached = min(input_tokens, prompt_tokens(chat_messages(None, context[:carried])) - 1)
    base = envelope(spec, response_id, created_at)
    w = _Writer(ttft, itl)
    if spec.background:
        w.status = "queued"
        snapshot = {**copy.deepcopy(base), "status": "queued"}
        w.add("response.created", response=snapshot)
        w.add("response.queued", response=copy.deepcopy(snapshot))
        w.status = "in_progress"
        w.add("response.in_progress", response=copy.deepcopy(base))
        w.delays[-1] = queue_delay
    else:
        w.add("response.created", response=copy.deepcopy(base))
        w.add("response.in_progress", response=copy.deepcopy(base))
    budget = _Budget(spec.max_output_tokens)
    output: list[dict[str, Any]] = []
    reasoning = produced = 0
    if spec.effort is not None and spec.effort != "none":
        item, reasoning = _reasoning_item(spec, w, budget, messages, tokens, new_id, len(output))
        output.append(item)
    if not budget.cut:
        calls = _calls(spec, context)
        for tool in calls:
            item, got = _call_item(tool, w, budget, new_id, len(output))
            output.append(item)
            produced += got
            if budget.cut:
                break
        if not calls:
            item, got = _message_item(spec, w, budget, messages, tokens, new_id, len(output))
            output.append(item)
            produced += got
    usage = usage_of(input_tokens, cached, reasoning + produced, reasoning)
    final = {**base, "output": output, "usage": usage}
    if budget.cut:
        final.update(status="incomplete", incomplete_details={"reason": "max_output_tokens"})
        w.status = "incomplete"
        w.add("response.incomplete", response=final)
    else:
        final.update(status="completed", completed_at=created_at)
        w.status = "completed"
        w.add("response.completed", response=final)
    return Plan(final=final, events=w.events, delays=w.delays, statuses=w.statuses, usage=usage)
