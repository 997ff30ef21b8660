"""The Responses API's request body in the emulator: checked, and its input made plain.

Pure functions (no I/O, no server): :func:`read_request` checks a
``POST /v1/responses`` body the way OpenAI does and returns a :class:`Spec`, or
raises :class:`BadRequest` with OpenAI's status, message, ``param`` and ``code``.
:func:`chat_messages` turns input items into chat-like messages, which is how
the emulator seeds its answer and counts input tokens, the same way the chat
route does, so a prompt gets the same words from ``/v1/responses`` as from
``/v1/chat/completions``.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from ._answers import answer_text

__all__ = [
    "EFFORTS",
    "BadRequest",
    "Spec",
    "chat_messages",
    "read_request",
    "reasoning_model",
    "response_answer_text",
    "text_of",
]

#: A model is a reasoning model when its name (after a ``provider/`` prefix) starts
#: with ``o1``..``o9``, ``gpt-5`` or ``gpt-oss``, or contains ``reason``, ``thinking``
#: or an ``r1`` segment: o3-mini, gpt-5.2, openai/o4-mini, deepseek-reasoner,
#: deepseek-r1, qwen3-235b-thinking. Not: gpt-4o, gpt-4.1-mini, omni-moderation.
_REASONING = re.compile(
    r"^(?:[\w.-]+/)*(?:o[1-9]|gpt-5|gpt-oss)|reason|thinking|(?:^|[-_/.])r1(?:$|[-_/.:])",
    re.IGNORECASE,
)

#: Reasoning tokens per effort, as a multiple of the server's answer length
#: (``MockServer(tokens=...)``); ``medium`` is the default effort.
EFFORTS = {"none": 0.0, "minimal": 0.25, "low": 0.5, "medium": 1.0, "high": 2.0, "xhigh": 4.0}
_SUMMARIES = ("auto", "concise", "detailed")
_ROLES = ("user", "assistant", "system", "developer")
_INPUT_PARTS = ("input_text", "input_image", "input_file", "input_audio")
_OUTPUT_PARTS = ("output_text", "refusal")
_ITEMS = ("message", "function_call", "function_call_output", "reasoning", "item_reference")


def reasoning_model(model: str) -> bool:
    """Whether the emulator treats ``model`` as a reasoning model (see ``_REASONING``)."""
    return _REASONING.search(model) is not None


class BadRequest(Exception):
    """A request OpenAI would refuse: answered with ``status`` and an OpenAI error body."""

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        status: int = 400,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code
        self.status = status


@dataclass
class Spec:
    """A checked ``POST /v1/responses`` body."""

    body: dict[str, Any]
    model: str
    items: list[dict[str, Any]]
    instructions: str | None
    tools: list[dict[str, Any]]
    tool_choice: Any
    text_format: dict[str, Any]
    effort: str | None
    summary: str | None
    max_output_tokens: int | None
    store: bool
    background: bool
    stream: bool
    previous_response_id: str | None
    metadata: dict[str, str]
    include: list[str] = field(default_factory=list)

    @property
    def function_tools(self) -> list[dict[str, Any]]:
        return [t for t in self.tools if t.get("type") == "function"]


def _missing(name: str) -> BadRequest:
    return BadRequest(
        f"Missing required parameter: '{name}'.", param=name, code="missing_required_parameter"
    )


def _invalid(name: str, what: str) -> BadRequest:
    return BadRequest(f"Invalid value for '{name}': {what}", param=name, code="invalid_value")


def _check_part(part: Any, where: str, role: str) -> None:
    if not isinstance(part, dict) or not isinstance(part.get("type"), str):
        raise _invalid(where, "each content part must be an object with a 'type'.")
    kind = part["type"]
    allowed = _OUTPUT_PARTS if role == "assistant" else _INPUT_PARTS
    if kind not in allowed:
        raise _invalid(
            f"{where}.type",
            f"'{kind}' is not supported for role '{role}'; expected one of {', '.join(allowed)}.",
        )
    if kind in ("input_text", "output_text") and not isinstance(part.get("text"), str):
        raise _missing(f"{where}.text")
    if kind == "refusal" and not isinstance(part.get("refusal"), str):
        raise _missing(f"{where}.refusal")


def _check_item(item: Any, where: str) -> dict[str, Any]:
    if not isinstance(item, dict):
        raise _invalid(where, "each input item must be an object.")
    kind = item.get("type", "message" if "role" in item else None)
    if kind not in _ITEMS:
        raise _invalid(f"{where}.type", f"unsupported input item type {kind!r}.")
    if kind == "message":
        role = item.get("role")
        if role not in _ROLES:
            raise _invalid(f"{where}.role", f"expected one of {', '.join(_ROLES)}, got {role!r}.")
        content = item.get("content")
        if isinstance(content, list):
            for j, part in enumerate(content):
                _check_part(part, f"{where}.content[{j}]", role)
        elif not isinstance(content, str):
            raise _missing(f"{where}.content")
    elif kind == "function_call":
        for name in ("call_id", "name", "arguments"):
            if not isinstance(item.get(name), str):
                raise _missing(f"{where}.{name}")
    elif kind == "function_call_output":
        if not isinstance(item.get("call_id"), str):
            raise _missing(f"{where}.call_id")
        if not isinstance(item.get("output"), (str, list)):
            raise _missing(f"{where}.output")
    elif kind == "item_reference" and not isinstance(item.get("id"), str):
        raise _missing(f"{where}.id")
    return {**item, "type": kind}


def _input_items(body: dict[str, Any]) -> list[dict[str, Any]]:
    raw = body.get("input")
    if raw is None:
        if body.get("previous_response_id"):
            return []
        raise _missing("input")
    if isinstance(raw, str):
        return [{"type": "message", "role": "user", "content": raw}]
    if not isinstance(raw, list):
        raise _invalid("input", "expected a string or an array of input items.")
    return [_check_item(item, f"input[{i}]") for i, item in enumerate(raw)]


def _tools(body: dict[str, Any]) -> list[dict[str, Any]]:
    tools = body.get("tools")
    if tools is None:
        return []
    if not isinstance(tools, list):
        raise _invalid("tools", "expected an array of tools.")
    out: list[dict[str, Any]] = []
    for i, tool in enumerate(tools):
        if not isinstance(tool, dict) or not isinstance(tool.get("type"), str):
            raise _missing(f"tools[{i}].type")
        if tool["type"] == "function":
            if "function" in tool and "name" not in tool:
                raise BadRequest(
                    f"Missing required parameter: 'tools[{i}].name'. (The Responses API takes"
                    " flat function tools: {'type': 'function', 'name': ..., 'parameters': ...};"
                    " the nested 'function' object is the Chat Completions shape.)",
                    param=f"tools[{i}].name",
                    code="missing_required_parameter",
                )
            if not isinstance(tool.get("name"), str) or not tool["name"]:
                raise _missing(f"tools[{i}].name")
            params = tool.get("parameters")
            if params is not None and not isinstance(params, dict):
                raise _invalid(f"tools[{i}].parameters", "expected a JSON schema object.")
            strict = tool.get("strict", True)
            out.append({"description": None, "parameters": params, "strict": strict, **tool})
        else:
            out.append(tool)
    return out


def _tool_choice(body: dict[str, Any], tools: list[dict[str, Any]]) -> Any:
    choice = body.get("tool_choice", "auto")
    if choice is None:
        return "auto"
    names = {t["name"] for t in tools if t.get("type") == "function"}
    if isinstance(choice, str):
        if choice not in ("auto", "none", "required"):
            raise _invalid("tool_choice", "expected 'auto', 'none', 'required' or an object.")
        if choice == "required" and not tools:
            raise BadRequest(
                "Tool choice 'required' must be specified with 'tools' parameter.",
                param="tool_choice",
            )
        return choice
    if not isinstance(choice, dict):
        raise _invalid("tool_choice", "expected a string or an object.")
    if choice.get("type") == "function":
        if choice.get("name") not in names:
            raise BadRequest(
                f"Tool choice 'function' with name {choice.get('name')!r} not found in"
                " 'tools' parameter.",
                param="tool_choice",
            )
    elif choice.get("type") == "allowed_tools":
        if choice.get("mode", "auto") not in ("auto", "required"):
            raise _invalid("tool_choice.mode", "expected 'auto' or 'required'.")
        allowed = choice.get("tools")
        if not isinstance(allowed, list):
            raise _missing("tool_choice.tools")
        for j, ref in enumerate(allowed):
            named = isinstance(ref, dict) and ref.get("type") == "function"
            if named and ref.get("name") not in names:
                raise BadRequest(
                    f"Tool {ref.get('name')!r} in 'tool_choice.tools' is not in 'tools'.",
                    param=f"tool_choice.tools[{j}]",
                )
    return choice


def _text_format(body: dict[str, Any]) -> dict[str, Any]:
    text = body.get("text")
    if text is None:
        return {"type": "text"}
    if not isinstance(text, dict):
        raise _invalid("text", "expected an object.")
    if "response_format" in body:
        raise BadRequest(
            "Unsupported parameter: 'response_format'. In the Responses API, this parameter"
            " has moved to 'text.format'.",
            param="response_format",
            code="unsupported_parameter",
        )
    fmt = text.get("format")
    if fmt is None:
        return {"type": "text"}
    if not isinstance(fmt, dict) or fmt.get("type") not in ("text", "json_object", "json_schema"):
        raise _invalid("text.format.type", "expected 'text', 'json_object' or 'json_schema'.")
    if fmt["type"] == "json_schema":
        if not isinstance(fmt.get("name"), str) or not fmt["name"]:
            raise _missing("text.format.name")
        if not isinstance(fmt.get("schema"), dict):
            raise _missing("text.format.schema")
        return {"description": None, "strict": fmt.get("strict", False), **fmt}
    return dict(fmt)


def _reasoning(body: dict[str, Any], model: str) -> tuple[str | None, str | None]:
    reasoning = body.get("reasoning")
    if reasoning is not None and not isinstance(reasoning, dict):
        raise _invalid("reasoning", "expected an object.")
    reasoning = reasoning or {}
    effort = reasoning.get("effort")
    summary = reasoning.get("summary", reasoning.get("generate_summary"))
    if not reasoning_model(model):
        for key, value in (("effort", effort), ("summary", summary)):
            if value is not None:
                raise BadRequest(
                    f"Unsupported parameter: 'reasoning.{key}' is not supported with this model.",
                    param=f"reasoning.{key}",
                    code="unsupported_parameter",
                )
        return None, None
    if effort is None:
        effort = "medium"
    if effort not in EFFORTS:
        raise _invalid("reasoning.effort", f"expected one of {', '.join(EFFORTS)}.")
    if summary is not None and summary not in _SUMMARIES:
        raise _invalid("reasoning.summary", f"expected one of {', '.join(_SUMMARIES)}.")
    return effort, summary


def _metadata(body: dict[str, Any]) -> dict[str, str]:
    metadata = body.get("metadata")
    if metadata is None:
        return {}
    if not isinstance(metadata, dict) or len(metadata) > 16:
        raise _invalid("metadata", "expected an object with at most 16 keys.")
    for key, value in metadata.items():
        if len(key) > 64 or not isinstance(value, str) or len(value) > 512:
            raise _invalid(
                "metadata", "keys are strings of at most 64 characters, values at most 512."
            )
    return dict(metadata)


def read_request(body: Any) -> Spec:
    """Check a ``POST /v1/responses`` body; :class:`BadRequest` when OpenAI would refuse it."""
    if not isinstance(body, dict):
        raise BadRequest("The request body must be a JSON object.")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise _missing("model")
    if "messages" in body and "input" not in body:
        raise BadRequest(
            "Unsupported parameter: 'messages'. The Responses API takes 'input'.",
            param="messages",
            code="unsupported_parameter",
        )
    items = _input_items(body)
    instructions = body.get("instructions")
    if instructions is not None and not isinstance(instructions, str):
        raise _invalid("instructions", "expected a string.")
    limit = body.get("max_output_tokens")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int)):
        raise _invalid("max_output_tokens", "expected an integer.")
    if limit is not None and limit < 16:
        raise BadRequest(
            "Invalid 'max_output_tokens': integer below minimum value. Expected a value >= 16,"
            f" but got {limit} instead.",
            param="max_output_tokens",
            code="integer_below_min_value",
        )
    store = body.get("store")
    store = True if store is None else bool(store)
    background = bool(body.get("background"))
    if background and not store:
        raise BadRequest(
            "Background mode requires 'store' to be true.", param="background", code="invalid_value"
        )
    previous = body.get("previous_response_id")
    if previous is not None and (not isinstance(previous, str) or not previous):
        raise _invalid("previous_response_id", "expected a response id.")
    include = body.get("include") or []
    if not isinstance(include, list):
        raise _invalid("include", "expected an array.")
    tools = _tools(body)
    effort, summary = _reasoning(body, model)
    return Spec(
        body=body,
        model=model,
        items=items,
        instructions=instructions,
        tools=tools,
        tool_choice=_tool_choice(body, tools),
        text_format=_text_format(body),
        effort=effort,
        summary=summary,
        max_output_tokens=limit,
        store=store,
        background=background,
        stream=bool(body.get("stream")),
        previous_response_id=previous,
        metadata=_metadata(body),
        include=[str(x) for x in include],
    )


# ---------------------------------------------------------------------------
# input items as chat-like messages


def text_of(content: Any) -> str:
    """The text of a message's content: a string, or its parts' text joined.

    A part without text (an image, a file) counts as its JSON, as the chat
    route counts a content list.
    """
    if isinstance(content, str):
        return content
    pieces: list[str] = []
    if isinstance(content, list):
        for part in content:
            if isinstance(part, dict) and isinstance(part.get("text"), str):
                pieces.append(part["text"])
            elif isinstance(part, dict) and isinstance(part.get("refusal"), str):
                pieces.append(part["refusal"])
            else:
                pieces.append(json.dumps(part))
    return "".join(pieces)


def chat_messages(instructions: str | None, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Input items as chat messages: what the emulator seeds answers and counts tokens on.

    ``instructions`` becomes a system message; a ``function_call`` an assistant
    message holding its name and arguments; a ``function_call_output`` a tool
    message; reasoning items count for nothing.
    """
    out: list[dict[str, Any]] = []
    if instructions:
        out.append({"role": "system", "content": instructions})
    for item in items:
        kind = item.get("type")
        if kind == "message":
            out.append({"role": item["role"], "content": text_of(item.get("content"))})
        elif kind == "function_call":
            out.append({"role": "assistant", "content": f"{item['name']}{item['arguments']}"})
        elif kind == "function_call_output":
            out.append({"role": "tool", "content": text_of(item.get("output"))})
    return out


def response_answer_text(input: Any, n: int = 16) -> str:
    """The exact text the emulator's ``/v1/responses`` answers to ``input`` with ``n`` tokens.

    ``input`` as the request gives it (a string or input items). The answer is
    seeded on the last user message's text, so ``input="Hi"`` gets the same
    text as a chat completion of ``[{"role": "user", "content": "Hi"}]``.
    """
    spec = read_request({"model": "m", "input": input})
    return answer_text(chat_messages(None, spec.items), n)
