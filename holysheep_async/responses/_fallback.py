"""The chat fallback: a Responses request as a chat completion, and the answer back.

Many relays have no ``/responses`` (they answer 404, 405 or 501). For them the
stateless part of a Responses request is sent to ``/chat/completions``:

- ``instructions`` -> a first ``system`` message; ``input`` (a string, or
  items) -> messages: message items keep their role (content parts become chat
  parts), ``function_call`` items -> the assistant message's ``tool_calls``,
  ``function_call_output`` items -> ``tool`` messages, a ``reasoning`` item's
  summary -> the next assistant message's ``reasoning_content``;
- ``tools`` (flat) -> chat tools (nested under ``function``), ``tool_choice``
  likewise; ``text.format`` -> ``response_format``, ``text.verbosity`` ->
  ``verbosity``; ``max_output_tokens`` -> ``max_tokens``; ``reasoning.effort``
  -> ``reasoning_effort``; ``top_logprobs`` -> ``logprobs`` + ``top_logprobs``;
  the rest (``temperature``, ``top_p``, ``user``, ``metadata``, server-specific
  fields from ``extra_body``) as it is;
- ``include``, ``truncation``, ``max_tool_calls``, ``stream_options`` and
  ``store=False`` have no chat counterpart and are left out (what they ask for
  does not change the answer's text).

What needs the server's own state cannot be emulated, and raises
:class:`ResponsesNotSupportedError` naming the field before anything is sent:
``previous_response_id``, ``background``, ``store=True``, ``conversation``,
``prompt``, ``context_management``, item references, tools other than functions.

The answer comes back as a response object: :func:`response_from_chat` for a
completion, :class:`ChunkConverter` for a stream (chat chunks -> the events a
Responses stream sends). All pure: dicts in, dicts out.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping
from typing import Any

from pydantic import BaseModel

from ..errors import ResponsesNotSupportedError
from ._models import item_to_input

__all__ = [
    "as_map",
    "check_stateless",
    "response_from_chat",
    "to_chat_body",
    "to_chat_messages",
]

# Request fields that need the server's own state: none of them can go as a chat completion.
_STATEFUL = {
    "previous_response_id": "continues a conversation stored on the server",
    "background": "runs the response on the server, to be fetched later",
    "conversation": "adds to a conversation stored on the server",
    "prompt": "refers to a prompt stored on the server",
    "context_management": "asks the server to compact the stored context",
}
# Fields without a chat counterpart that do not change the answer: left out.
_DROPPED = frozenset({"include", "truncation", "max_tool_calls", "stream_options", "stream"})
# Fields chat takes under the same name.
_SAME = frozenset(
    {
        "model",
        "temperature",
        "top_p",
        "user",
        "metadata",
        "parallel_tool_calls",
        "service_tier",
        "safety_identifier",
        "prompt_cache_key",
        "prompt_cache_retention",
    }
)


def as_map(value: Any) -> Mapping[str, Any]:
    """``value`` if it is a mapping, else an empty one (relays send null where objects belong)."""
    return value if isinstance(value, Mapping) else {}


def _unsupported(field: str, why: str, reason: str) -> ResponsesNotSupportedError:
    return ResponsesNotSupportedError(
        f"{field}: this server has no Responses API ({reason}), so requests go to it as chat"
        f" completions, and {field} {why}, which a chat completion cannot do. Keep the"
        " conversation on your side (pass response.output back as input items) or use a"
        " server that serves /responses",
        field=field,
    )


def check_stateless(body: Mapping[str, Any], reason: str) -> None:
    """Raise :class:`ResponsesNotSupportedError` for a field the fallback cannot emulate."""
    for field, why in _STATEFUL.items():
        value = body.get(field)
        if value is not None and value is not False and value != []:
            raise _unsupported(field, why, reason)
    if body.get("store") is True:
        raise _unsupported("store", "asks the server to keep the response", reason)


def _as_dict(item: Any, what: str) -> dict[str, Any]:
    if isinstance(item, BaseModel):
        return item_to_input(item)
    if isinstance(item, Mapping):
        return dict(item)
    raise TypeError(f"{what} must be a dict or an item of response.output, got {item!r:.80}")


# -- request: Responses -> chat ---------------------------------------------------------


def _part(part: Mapping[str, Any], reason: str) -> dict[str, Any]:
    kind = part.get("type")
    if kind in ("input_text", "output_text", "text"):
        return {"type": "text", "text": part.get("text") or ""}
    if kind == "refusal":
        return {"type": "text", "text": part.get("refusal") or ""}
    if kind == "input_image" and part.get("image_url"):
        image: dict[str, Any] = {"url": part["image_url"]}
        if part.get("detail"):
            image["detail"] = part["detail"]
        return {"type": "image_url", "image_url": image}
    if kind == "input_file":
        file = {k: part[k] for k in ("file_id", "file_data", "filename") if part.get(k)}
        if file:
            return {"type": "file", "file": file}
    if kind == "input_audio" and isinstance(part.get("input_audio"), Mapping):
        return {"type": "input_audio", "input_audio": dict(part["input_audio"])}
    raise _unsupported(
        "input", f"holds a content part of type {kind!r} (or one chat cannot refer to)", reason
    )


def _content(content: Any, role: str, reason: str) -> Any:
    if content is None or isinstance(content, str):
        return content or ""
    parts = [_part(_as_dict(p, "a content part"), reason) for p in content]
    if all(p["type"] == "text" for p in parts) and (len(parts) == 1 or role != "user"):
        return "".join(p["text"] for p in parts)
    return parts


def _tool_output(output: Any) -> str:
    if isinstance(output, str):
        return output
    if isinstance(output, list) and all(
        isinstance(p, Mapping) and p.get("type") in ("input_text", "output_text") for p in output
    ):
        return "".join(str(p.get("text") or "") for p in output)
    return json.dumps(output, ensure_ascii=False, default=str)


def to_chat_messages(
    input: str | Iterable[Any] | None, instructions: Any, reason: str = "fallback"
) -> list[dict[str, Any]]:
    """``instructions`` and ``input`` as chat messages (see the module docstring)."""
    messages: list[dict[str, Any]] = []
    if isinstance(instructions, str) and instructions:
        messages.append({"role": "system", "content": instructions})
    elif instructions:
        raise _unsupported("instructions", "is not a string", reason)
    if input is None:
        return messages
    if isinstance(input, str):
        messages.append({"role": "user", "content": input})
        return messages
    reasoning: list[str] = []
    turn: dict[str, Any] | None = None  # the assistant message items are being merged into
    for raw in input:
        item = _as_dict(raw, "an input item")
        kind = item.get("type")
        if kind in (None, "message"):
            role = item.get("role")
            if role not in ("user", "assistant", "system", "developer"):
                raise TypeError(f"an input message needs a role, got {item!r:.80}")
            message = {"role": role, "content": _content(item.get("content"), role, reason)}
            turn = None
            if role == "assistant":
                turn = message
                if reasoning:
                    message["reasoning_content"] = "\n\n".join(reasoning)
                    reasoning = []
            messages.append(message)
        elif kind == "function_call":
            call = {
                "id": item.get("call_id") or item.get("id") or "",
                "type": "function",
                "function": {
                    "name": item.get("name") or "",
                    "arguments": item.get("arguments") or "",
                },
            }
            if turn is None:
                turn = {"role": "assistant", "content": None}
                if reasoning:
                    turn["reasoning_content"] = "\n\n".join(reasoning)
                    reasoning = []
                messages.append(turn)
            turn.setdefault("tool_calls", []).append(call)
        elif kind == "function_call_output":
            turn = None
            messages.append(
                {
                    "role": "tool",
                    "tool_call_id": item.get("call_id") or "",
                    "content": _tool_output(item.get("output")),
                }
            )
        elif kind == "reasoning":
            parts = item.get("summary") or item.get("content") or []
            text = "\n\n".join(
                str(p.get("text")) for p in parts if isinstance(p, Mapping) and p.get("text")
            )
            if text:
                reasoning.append(text)
        elif kind == "item_reference":
            raise _unsupported("input", "refers to an item stored on the server", reason)
        else:
            raise _unsupported("input", f"holds an item of type {kind!r}", reason)
    return messages


def _tools(tools: Iterable[Any], reason: str) -> list[dict[str, Any]]:
    out = []
    for raw in tools:
        tool = _as_dict(raw, "a tool")
        if tool.get("type") != "function":
            raise _unsupported("tools", f"holds a {tool.get('type')!r} tool", reason)
        function = {"name": tool.get("name")}
        for key in ("description", "parameters", "strict"):
            if tool.get(key) is not None:
                function[key] = tool[key]
        out.append({"type": "function", "function": function})
    return out


def _tool_choice(choice: Any, reason: str) -> Any:
    if isinstance(choice, str) or choice is None:
        return choice
    choice = dict(choice)
    if choice.get("type") == "function":
        return {"type": "function", "function": {"name": choice.get("name")}}
    if choice.get("type") == "allowed_tools":
        tools = [
            {"type": "function", "function": {"name": t.get("name")}}
            for t in choice.get("tools") or ()
        ]
        return {
            "type": "allowed_tools",
            "allowed_tools": {"mode": choice.get("mode", "auto"), "tools": tools},
        }
    raise _unsupported("tool_choice", f"is {choice.get('type')!r}", reason)


def _response_format(fmt: Mapping[str, Any]) -> dict[str, Any] | None:
    kind = fmt.get("type")
    if kind == "json_schema":
        schema = {k: fmt[k] for k in ("name", "schema", "strict", "description") if k in fmt}
        return {"type": "json_schema", "json_schema": schema}
    if kind == "text":
        return None
    return dict(fmt)


def to_chat_body(body: Mapping[str, Any], reason: str = "fallback") -> dict[str, Any]:
    """The chat completion request for a Responses request (call :func:`check_stateless` first)."""
    out: dict[str, Any] = {}
    out["model"] = body.get("model")
    out["messages"] = to_chat_messages(body.get("input"), body.get("instructions"), reason)
    for key, value in body.items():
        if key in ("model", "input", "instructions") or key in _DROPPED or key in _STATEFUL:
            continue
        if key in _SAME:
            out[key] = value
        elif key == "store":
            continue  # False (True was refused): chat's default
        elif key == "tools":
            if value:
                out["tools"] = _tools(value, reason)
        elif key == "tool_choice":
            out["tool_choice"] = _tool_choice(value, reason)
        elif key == "text":
            if isinstance(value, Mapping):
                fmt = value.get("format")
                if isinstance(fmt, Mapping):
                    converted = _response_format(fmt)
                    if converted is not None:
                        out["response_format"] = converted
                if value.get("verbosity") is not None:
                    out["verbosity"] = value["verbosity"]
        elif key == "max_output_tokens":
            if value is not None:
                out["max_tokens"] = value
        elif key == "reasoning":
            if isinstance(value, Mapping) and value.get("effort") is not None:
                out["reasoning_effort"] = value["effort"]
        elif key == "top_logprobs":
            if value is not None:
                out["logprobs"] = True
                out["top_logprobs"] = value
        else:
            out[key] = value  # a server-specific field (extra_body): as it is
    return out


# -- answer: chat -> Responses ----------------------------------------------------------


def _usage(usage: Any) -> dict[str, Any] | None:
    if not isinstance(usage, Mapping):
        return None
    prompt = usage.get("prompt_tokens") or 0
    completion = usage.get("completion_tokens") or 0
    out: dict[str, Any] = {
        "input_tokens": prompt,
        "output_tokens": completion,
        "total_tokens": usage.get("total_tokens") or prompt + completion,
    }
    cached = as_map(usage.get("prompt_tokens_details")).get("cached_tokens") or 0
    out["input_tokens_details"] = {"cached_tokens": cached, "cache_write_tokens": 0}
    thought = as_map(usage.get("completion_tokens_details")).get("reasoning_tokens") or 0
    out["output_tokens_details"] = {"reasoning_tokens": thought}
    return out


def _status(finish_reason: Any) -> tuple[str, dict[str, Any] | None]:
    if finish_reason == "length":
        return "incomplete", {"reason": "max_output_tokens"}
    if finish_reason == "content_filter":
        return "incomplete", {"reason": "content_filter"}
    return "completed", None


def _envelope(
    request: Mapping[str, Any], rid: str, created: Any, model: Any, status: str
) -> dict[str, Any]:
    return {
        "id": rid,
        "object": "response",
        "created_at": created if isinstance(created, (int, float)) else int(time.time()),
        "status": status,
        "model": model or request.get("model") or "",
        "output": [],
        "error": None,
        "incomplete_details": None,
        "instructions": request.get("instructions"),
        "metadata": request.get("metadata"),
        "max_output_tokens": request.get("max_output_tokens"),
        "temperature": request.get("temperature"),
        "top_p": request.get("top_p"),
        "tools": list(request.get("tools") or []),
        "tool_choice": request.get("tool_choice", "auto"),
        "parallel_tool_calls": request.get("parallel_tool_calls", True),
        "text": request.get("text"),
        "previous_response_id": None,
        "background": False,
        "store": False,
        "usage": None,
    }


def _function_call(call: Mapping[str, Any], status: str = "completed") -> dict[str, Any]:
    function = as_map(call.get("function")) or call
    call_id = call.get("id") or ""
    return {
        "type": "function_call",
        "id": f"fc_{call_id}",
        "call_id": call_id,
        "name": function.get("name") or "",
        "arguments": function.get("arguments") or "",
        "status": status,
    }


def response_from_chat(completion: Mapping[str, Any], request: Mapping[str, Any]) -> dict[str, Any]:
    """A chat completion (a dict) as the response object ``request`` would have had."""
    choices = completion.get("choices") or []
    choice = as_map(choices[0] if choices else None)
    message = as_map(choice.get("message"))
    cid = str(completion.get("id") or "")
    status, incomplete = _status(choice.get("finish_reason"))
    response = _envelope(request, cid, completion.get("created"), completion.get("model"), status)
    output: list[dict[str, Any]] = response["output"]
    reasoning = message.get("reasoning_content") or message.get("reasoning")
    if isinstance(reasoning, str) and reasoning:
        output.append(
            {
                "type": "reasoning",
                "id": f"rs_{cid}",
                "summary": [{"type": "summary_text", "text": reasoning}],
                "status": "completed",
            }
        )
    parts: list[dict[str, Any]] = []
    content = message.get("content")
    if isinstance(content, list):
        content = "".join(str(p.get("text") or "") for p in content if isinstance(p, Mapping))
    if content:
        parts.append({"type": "output_text", "text": content, "annotations": []})
    if message.get("refusal"):
        parts.append({"type": "refusal", "refusal": message["refusal"]})
    if parts:
        output.append(
            {
                "type": "message",
                "id": f"msg_{cid}",
                "role": "assistant",
                "status": status,
                "content": parts,
            }
        )
    for call in message.get("tool_calls") or ():
        if isinstance(call, Mapping):
            output.append(_function_call(call))
    if isinstance(message.get("function_call"), Mapping):
        output.append(_function_call({"id": f"call_{cid}", "function": message["function_call"]}))
    response["incomplete_details"] = incomplete
    response["usage"] = _usage(completion.get("usage"))
    return response
