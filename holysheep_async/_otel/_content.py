"""Prompts and answers in the conventions' message shape (recorded only with the opt-in)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

__all__ = ["input_messages", "message_parts"]


def message_parts(
    role: str,
    content: Any,
    tool_calls: Iterable[Any],
    finish_reason: str | None = None,
    reasoning: str | None = None,
) -> dict[str, Any]:
    """One message in the conventions' shape: ``{"role", "parts": [...]}`` (+ finish_reason).

    Reasoning comes first, as a ``reasoning`` part; then text; then ``tool_call`` parts.
    """
    parts: list[dict[str, Any]] = []
    if reasoning:
        parts.append({"type": "reasoning", "content": reasoning})
    if isinstance(content, str):
        if content:
            parts.append({"type": "text", "content": content})
    elif isinstance(content, list):
        for part in content:
            if isinstance(part, Mapping) and part.get("type") == "text":
                parts.append({"type": "text", "content": part.get("text")})
            elif isinstance(part, Mapping):
                parts.append({"type": str(part.get("type"))})
    for call in tool_calls:
        if isinstance(call, Mapping):
            function = call.get("function") or {}
            parts.append(
                {
                    "type": "tool_call",
                    "id": call.get("id"),
                    "name": function.get("name") if isinstance(function, Mapping) else None,
                    "arguments": function.get("arguments")
                    if isinstance(function, Mapping)
                    else None,
                }
            )
    message: dict[str, Any] = {"role": role, "parts": parts}
    if finish_reason is not None:
        message["finish_reason"] = finish_reason
    return message


def input_messages(messages: Any) -> str:
    out = []
    for message in messages if isinstance(messages, list) else ():
        if not isinstance(message, Mapping):
            continue
        role = str(message.get("role"))
        if role == "tool":
            part = {
                "type": "tool_call_response",
                "id": message.get("tool_call_id"),
                "response": message.get("content"),
            }
            out.append({"role": role, "parts": [part]})
        else:
            calls = message.get("tool_calls") or ()
            reasoning = message.get("reasoning_content")
            out.append(
                message_parts(
                    role,
                    message.get("content"),
                    calls,
                    reasoning=reasoning if isinstance(reasoning, str) else None,
                )
            )
    return json.dumps(out, ensure_ascii=False, default=str)
