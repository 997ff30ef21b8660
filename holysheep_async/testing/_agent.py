"""Agent answers of the emulator's chat: reasoning, tool calls, the answer after tool results.

Pure functions of the request (and the server's options): the chat handler
sends what they say, streamed or whole, so both give the same answer.

- **Reasoning** for models whose name says so (``reason``, ``think``, ``-r1``
  in it): ``reasoning_tokens`` tokens (option, default 8) of reasoning before
  the answer, in ``delta.reasoning_content`` / ``message.reasoning_content``,
  or under ``reasoning`` with ``MockServer(reasoning_field="reasoning")`` (vLLM).
  They count as completion tokens (``completion_tokens_details.reasoning_tokens``).
- **Tool calls** when the request offers ``tools`` and the conversation waits
  for them (its last message is the user's, or ``tool_choice`` is
  ``"required"`` or names a function; never with ``"none"``): a call to every
  offered function (only the first with ``parallel_tool_calls=false``; only the
  named one with a named ``tool_choice``), with arguments made from each
  function's JSON schema: its required properties, strings from the user's
  last message (its last capitalized word, else its longest). Ids are
  deterministic (the same streamed or not). Streamed, the arguments come in
  fragments of ``tool_args_chunk`` characters (option, default 4).
- **After tool results** (the last messages are ``tool`` answers): the answer
  quotes them: ``According to get_weather: sunny.``
- The server quirks, as faults of one request (:mod:`._faults`):
  ``repeat_index`` (two fragments of a call in one chunk, the same index),
  ``no_index`` (no ``index`` at all), ``index_zero`` (every call at index 0,
  each whole in one chunk, distinct ids: Ollama through LiteLLM),
  ``char_args`` (arguments one character a chunk).
"""

from __future__ import annotations

import json
import re
import zlib
from collections.abc import Mapping
from typing import Any

__all__ = [
    "TOOL_QUIRKS",
    "answer_after_tools",
    "is_reasoning_model",
    "reasoning_field",
    "reasoning_tokens",
    "tool_call_chunks",
    "tool_calls",
    "tool_usage_tokens",
]

#: Fault kinds that change how tool calls are streamed.
TOOL_QUIRKS = frozenset({"repeat_index", "no_index", "index_zero", "char_args"})

_REASONING_MODEL = re.compile(r"reason|think|-r1\b", re.IGNORECASE)
_THOUGHTS = [
    "Let",
    " me",
    " think",
    " this",
    " through",
    ":",
    " the",
    " user",
    " asks",
    " about",
    " it",
    ",",
    " so",
    " I",
    " answer",
    " step",
    " by",
    " step",
    ".",
]


def is_reasoning_model(model: Any) -> bool:
    return isinstance(model, str) and bool(_REASONING_MODEL.search(model))


def reasoning_field(options: Mapping[str, Any]) -> str:
    field = options.get("reasoning_field", "reasoning_content")
    if field not in ("reasoning_content", "reasoning"):
        raise ValueError(f"reasoning_field must be 'reasoning_content' or 'reasoning': {field!r}")
    return str(field)


def reasoning_tokens(body: Mapping[str, Any], options: Mapping[str, Any]) -> list[str]:
    """The reasoning the emulator sends before the answer ([] for other models)."""
    if not is_reasoning_model(body.get("model")):
        return []
    count = options.get("reasoning_tokens", 8)
    return [_THOUGHTS[i % len(_THOUGHTS)] for i in range(int(count))]


def _last_user_text(messages: Any) -> str:
    for message in reversed(messages if isinstance(messages, list) else []):
        if isinstance(message, dict) and message.get("role") == "user":
            content = message.get("content")
            return content if isinstance(content, str) else json.dumps(content)
    return ""


def _waiting_for_tools(body: Mapping[str, Any]) -> bool:
    choice = body.get("tool_choice")
    if choice == "none":
        return False
    if choice == "required" or isinstance(choice, dict):
        return True
    messages = body.get("messages")
    last = messages[-1] if isinstance(messages, list) and messages else None
    return isinstance(last, dict) and last.get("role") == "user"


def _word(text: str) -> str:
    words: list[str] = re.findall(r"[^\W\d_][\w'-]*", text)
    capitalized = [w for w in words[1:] if w[:1].isupper()]
    if capitalized:
        return capitalized[-1]
    return str(max(words, key=len)) if words else "sheep"


def _value(schema: Any, word: str) -> Any:
    if not isinstance(schema, dict):
        return word
    if "default" in schema:
        return schema["default"]
    if isinstance(schema.get("enum"), list) and schema["enum"]:
        return schema["enum"][0]
    for key in ("anyOf", "oneOf"):
        options = schema.get(key)
        if isinstance(options, list) and options:
            return _value(options[0], word)
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "string")
    if kind == "integer":
        return 1
    if kind == "number":
        return 1.5
    if kind == "boolean":
        return True
    if kind == "array":
        return []
    if kind == "object":
        return _arguments(schema, word)
    return word


def _arguments(schema: Any, word: str) -> dict[str, Any]:
    if not isinstance(schema, dict):
        return {}
    props = schema.get("properties")
    if not isinstance(props, dict):
        return {}
    required = schema.get("required")
    names = [n for n in props if n in required] if isinstance(required, list) else list(props)
    return {name: _value(props[name], word) for name in names}


def tool_calls(body: Mapping[str, Any], choice: int = 0) -> list[dict[str, Any]]:
    """The calls the emulator answers ``body`` with ([] when it answers in text)."""
    tools = body.get("tools")
    if not isinstance(tools, list) or not tools or not _waiting_for_tools(body):
        return []
    functions = [
        t["function"]
        for t in tools
        if isinstance(t, dict)
        and t.get("type", "function") == "function"
        and isinstance(t.get("function"), dict)
        and isinstance(t["function"].get("name"), str)
    ]
    named = body.get("tool_choice")
    if isinstance(named, dict):
        wanted = (named.get("function") or {}).get("name")
        functions = [f for f in functions if f["name"] == wanted]
    if body.get("parallel_tool_calls") is False:
        functions = functions[:1]
    text = _last_user_text(body.get("messages"))
    word = _word(text)
    seed = zlib.crc32(text.encode("utf-8", "replace"))
    calls = []
    for i, function in enumerate(functions):
        tag = zlib.crc32(f"{seed}:{choice}:{i}:{function['name']}".encode()) & 0xFFFFFFFF
        arguments = _arguments(function.get("parameters"), word)
        calls.append(
            {
                "id": f"call_{tag:08x}",
                "type": "function",
                "function": {
                    "name": function["name"],
                    "arguments": json.dumps(arguments, ensure_ascii=False),
                },
            }
        )
    return calls


def answer_after_tools(body: Mapping[str, Any], limit: int | None) -> list[str] | None:
    """The answer to a conversation whose last messages are tool results (None otherwise)."""
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return None
    results: list[dict[str, Any]] = []
    for message in reversed(messages):
        if not isinstance(message, dict) or message.get("role") != "tool":
            break
        results.insert(0, message)
    if not results:
        return None
    names: dict[str, str] = {}
    for message in messages:
        if isinstance(message, dict) and isinstance(message.get("tool_calls"), list):
            for call in message["tool_calls"]:
                if isinstance(call, dict) and isinstance(call.get("function"), dict):
                    names[str(call.get("id"))] = str(call["function"].get("name"))
    parts = []
    for result in results:
        content = result.get("content")
        text = content if isinstance(content, str) else json.dumps(content)
        name = names.get(str(result.get("tool_call_id")), "the tool")
        parts.append(f"According to {name}: {text[:200]}.")
    words = " ".join(parts).split(" ")
    tokens = [w if i == 0 else " " + w for i, w in enumerate(words)]
    return tokens[:limit] if limit else tokens


def tool_call_chunks(
    calls: list[dict[str, Any]], quirk: str | None, size: int
) -> list[list[dict[str, Any]]]:
    """The ``delta.tool_calls`` lists of the chunks that stream ``calls`` (one list a chunk)."""
    if quirk == "index_zero":
        return [[{**call, "index": 0}] for call in calls]
    size = 1 if quirk == "char_args" else max(1, size)
    chunks: list[list[dict[str, Any]]] = []
    for index, call in enumerate(calls):
        arguments = call["function"]["arguments"]
        pieces = [arguments[i : i + size] for i in range(0, len(arguments), size)] or [""]
        head = {
            "index": index,
            "id": call["id"],
            "type": "function",
            "function": {"name": call["function"]["name"], "arguments": ""},
        }
        entries = [head] + [{"index": index, "function": {"arguments": p}} for p in pieces]
        if quirk == "repeat_index":
            # Two entries of one call in one chunk (vLLM speculative decoding).
            chunks += [entries[i : i + 2] for i in range(0, len(entries), 2)]
        else:
            chunks += [[entry] for entry in entries]
    if quirk == "no_index":
        for chunk in chunks:
            for entry in chunk:
                entry.pop("index", None)
    return chunks


def tool_usage_tokens(calls: list[dict[str, Any]]) -> int:
    """Completion tokens the calls count for (about four characters a token)."""
    return sum(len(c["function"]["arguments"]) // 4 + 1 for c in calls)
