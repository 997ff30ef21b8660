"""Responses API objects and event streams shaped as OpenAI publishes them (API reference,
streaming guide), for the client's tests. ``test_responses_samples`` checks them against
the official SDK's models when it is installed."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

CREATED_AT = 1741290958


def envelope(
    rid: str = "resp_1", model: str = "gpt-4o-2024-08-06", **fields: Any
) -> dict[str, Any]:
    """A response object as OpenAI sends it, without output yet."""
    response: dict[str, Any] = {
        "id": rid,
        "object": "response",
        "created_at": CREATED_AT,
        "status": "in_progress",
        "background": False,
        "error": None,
        "incomplete_details": None,
        "instructions": None,
        "max_output_tokens": None,
        "model": model,
        "output": [],
        "parallel_tool_calls": True,
        "previous_response_id": None,
        "reasoning": {"effort": None, "summary": None},
        "store": True,
        "temperature": 1.0,
        "text": {"format": {"type": "text"}},
        "tool_choice": "auto",
        "tools": [],
        "top_p": 1.0,
        "truncation": "disabled",
        "usage": None,
        "user": None,
        "metadata": {},
    }
    response.update(fields)
    return response


def usage(input_tokens: int = 12, output_tokens: int = 7, reasoning: int = 0) -> dict[str, Any]:
    return {
        "input_tokens": input_tokens,
        "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
        "output_tokens": output_tokens,
        "output_tokens_details": {"reasoning_tokens": reasoning},
        "total_tokens": input_tokens + output_tokens,
    }


def message(text: str, mid: str = "msg_1", status: str = "completed") -> dict[str, Any]:
    return {
        "id": mid,
        "type": "message",
        "status": status,
        "role": "assistant",
        "content": [{"type": "output_text", "text": text, "annotations": []}],
    }


def function_call(
    name: str, arguments: str, call_id: str = "call_1", fid: str = "fc_1"
) -> dict[str, Any]:
    return {
        "id": fid,
        "type": "function_call",
        "status": "completed",
        "call_id": call_id,
        "name": name,
        "arguments": arguments,
    }


def reasoning(summary: str, rid: str = "rs_1") -> dict[str, Any]:
    return {
        "id": rid,
        "type": "reasoning",
        "summary": [{"type": "summary_text", "text": summary}],
    }


def completed(
    output: list[dict[str, Any]],
    rid: str = "resp_1",
    model: str = "gpt-4o-2024-08-06",
    **fields: Any,
) -> dict[str, Any]:
    fields.setdefault("usage", usage())
    return envelope(rid, model, status="completed", output=output, **fields)


class Events:
    """Builds an event stream with OpenAI's sequence numbers."""

    def __init__(self, rid: str = "resp_1", model: str = "gpt-4o-2024-08-06", **fields: Any):
        self.rid = rid
        self.model = model
        self.fields = fields
        self.events: list[dict[str, Any]] = []
        self.output: list[dict[str, Any]] = []

    def add(self, kind: str, **fields: Any) -> Events:
        self.events.append({"type": kind, "sequence_number": len(self.events), **fields})
        return self

    def start(self, status: str = "in_progress") -> Events:
        base = envelope(self.rid, self.model, **self.fields)
        base["status"] = status
        self.add("response.created", response=base)
        return self.add("response.in_progress", response={**base, "status": "in_progress"})

    def text(self, pieces: Iterable[str], mid: str = "msg_1") -> Events:
        index = len(self.output)
        pieces = list(pieces)
        where = {"item_id": mid, "output_index": index}
        item = message("", mid, status="in_progress")
        item["content"] = []
        self.add("response.output_item.added", output_index=index, item=item)
        part = {"type": "output_text", "text": "", "annotations": []}
        self.add("response.content_part.added", **where, content_index=0, part=part)
        for piece in pieces:
            self.add(
                "response.output_text.delta", **where, content_index=0, delta=piece, logprobs=[]
            )
        text = "".join(pieces)
        self.add("response.output_text.done", **where, content_index=0, text=text, logprobs=[])
        done_part = {"type": "output_text", "text": text, "annotations": []}
        self.add("response.content_part.done", **where, content_index=0, part=done_part)
        done = message(text, mid)
        self.add("response.output_item.done", output_index=index, item=done)
        self.output.append(done)
        return self

    def call(self, name: str, pieces: Iterable[str], call_id: str = "call_1") -> Events:
        index = len(self.output)
        fid = f"fc_{call_id}"
        pieces = list(pieces)
        item = function_call(name, "", call_id, fid)
        item["status"] = "in_progress"
        self.add("response.output_item.added", output_index=index, item=item)
        for piece in pieces:
            self.add(
                "response.function_call_arguments.delta",
                item_id=fid,
                output_index=index,
                delta=piece,
            )
        arguments = "".join(pieces)
        self.add(
            "response.function_call_arguments.done",
            item_id=fid,
            output_index=index,
            arguments=arguments,
        )
        done = function_call(name, arguments, call_id, fid)
        self.add("response.output_item.done", output_index=index, item=done)
        self.output.append(done)
        return self

    def think(self, pieces: Iterable[str], rid: str = "rs_1") -> Events:
        index = len(self.output)
        pieces = list(pieces)
        where = {"item_id": rid, "output_index": index}
        self.add(
            "response.output_item.added",
            output_index=index,
            item={"id": rid, "type": "reasoning", "summary": []},
        )
        part = {"type": "summary_text", "text": ""}
        self.add("response.reasoning_summary_part.added", **where, summary_index=0, part=part)
        for piece in pieces:
            self.add("response.reasoning_summary_text.delta", **where, summary_index=0, delta=piece)
        text = "".join(pieces)
        self.add("response.reasoning_summary_text.done", **where, summary_index=0, text=text)
        done_part = {"type": "summary_text", "text": text}
        self.add("response.reasoning_summary_part.done", **where, summary_index=0, part=done_part)
        done = reasoning(text, rid)
        self.add("response.output_item.done", output_index=index, item=done)
        self.output.append(done)
        return self

    def complete(self, kind: str = "response.completed", **fields: Any) -> Events:
        status = {"response.completed": "completed", "response.incomplete": "incomplete"}.get(
            kind, "failed"
        )
        fields.setdefault("usage", usage())
        response = envelope(self.rid, self.model, **self.fields)
        response.update(status=status, output=list(self.output), **fields)
        return self.add(kind, response=response)

    def final(self) -> dict[str, Any]:
        last = self.events[-1]
        assert last["type"].startswith("response."), last
        response: dict[str, Any] = last["response"]
        return response


def sse(events: Iterable[dict[str, Any]], named: bool = True) -> bytes:
    """The event stream as OpenAI sends it: ``event: <type>`` then ``data: <json>``."""
    out = []
    for event in events:
        head = f"event: {event['type']}\n" if named else ""
        out.append(f"{head}data: {json.dumps(event)}\n\n")
    return "".join(out).encode()


def chat_chunks(
    pieces: Iterable[str], cid: str = "chatcmpl-1", model: str = "gpt-4o", finish: str = "stop"
) -> list[dict[str, Any]]:
    """A streamed chat completion: a role chunk, a chunk per piece, the finish, the usage."""
    base = {"id": cid, "object": "chat.completion.chunk", "created": CREATED_AT, "model": model}
    chunks = [
        {**base, "choices": [{"index": 0, "delta": {"role": "assistant"}, "finish_reason": None}]}
    ]
    for piece in pieces:
        chunks.append(
            {**base, "choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}]}
        )
    chunks.append({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": finish}]})
    chunks.append(
        {
            **base,
            "choices": [],
            "usage": {"prompt_tokens": 9, "completion_tokens": 4, "total_tokens": 13},
        }
    )
    return chunks


def chat_completion(
    content: str | None,
    *,
    cid: str = "chatcmpl-1",
    model: str = "gpt-4o",
    tool_calls: list[dict[str, Any]] | None = None,
    finish: str = "stop",
    reasoning_content: str | None = None,
    refusal: str | None = None,
) -> dict[str, Any]:
    msg: dict[str, Any] = {"role": "assistant", "content": content, "refusal": refusal}
    if tool_calls:
        msg["tool_calls"] = tool_calls
    if reasoning_content:
        msg["reasoning_content"] = reasoning_content
    return {
        "id": cid,
        "object": "chat.completion",
        "created": CREATED_AT,
        "model": model,
        "choices": [{"index": 0, "message": msg, "finish_reason": finish, "logprobs": None}],
        "usage": {"prompt_tokens": 9, "completion_tokens": 4, "total_tokens": 13},
    }
