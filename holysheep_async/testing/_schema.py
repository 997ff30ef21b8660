"""Structured outputs in the emulator: a deterministic JSON answer for a JSON schema.

A request with ``response_format: {"type": "json_schema", ...}`` is answered
with the smallest plain instance of the schema (first enum value, ``"sheep"``
for strings, 1 for numbers, one item per array, ``$ref`` and ``anyOf``
followed), streamed in pieces of a few characters. A last user message that
contains ``[refuse]`` gets a refusal instead, as a model declining would.
``json_object`` gets ``{"answer": <the usual text>}``. No dependencies.
"""

from __future__ import annotations

import json
from typing import Any

__all__ = ["REFUSAL", "instance", "structured_answer"]

REFUSAL = "I'm sorry, I can't help with that request."
_PIECE = 6  # characters per streamed token


def instance(schema: Any, root: dict[str, Any] | None = None, depth: int = 0) -> Any:
    """A value that matches ``schema`` (the subset strict mode allows)."""
    root = root if root is not None else schema
    if not isinstance(schema, dict) or depth > 16:
        return None
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/"):
        node: Any = root
        for part in ref[2:].split("/"):
            node = node.get(part, {}) if isinstance(node, dict) else {}
        return instance(node, root, depth + 1)
    if "const" in schema:
        return schema["const"]
    if isinstance(schema.get("enum"), list) and schema["enum"]:
        return schema["enum"][0]
    for key in ("anyOf", "oneOf", "allOf"):
        options = schema.get(key)
        if isinstance(options, list) and options:
            non_null = [o for o in options if not (isinstance(o, dict) and o.get("type") == "null")]
            return instance((non_null or options)[0], root, depth + 1)
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object" or "properties" in schema:
        props = schema.get("properties") or {}
        return {name: instance(sub, root, depth + 1) for name, sub in props.items()}
    if kind == "array":
        return [instance(schema.get("items", {}), root, depth + 1)]
    if kind == "string":
        return "sheep"
    if kind == "integer":
        return 1
    if kind == "number":
        return 1.5
    if kind == "boolean":
        return True
    return None


def _last_user(messages: Any) -> str:
    if isinstance(messages, list):
        for message in reversed(messages):
            if isinstance(message, dict) and message.get("role") == "user":
                content = message.get("content")
                return content if isinstance(content, str) else json.dumps(content)
    return ""


def structured_answer(body: dict[str, Any], text: str) -> tuple[list[str], bool] | None:
    """``(tokens, is_refusal)`` for a request that asks for JSON, else None.

    ``text`` is the emulator's usual answer (used for ``json_object``).
    """
    fmt = body.get("response_format")
    if not isinstance(fmt, dict) or fmt.get("type") not in ("json_schema", "json_object"):
        return None
    if "[refuse]" in _last_user(body.get("messages")):
        return _pieces(REFUSAL), True
    if fmt["type"] == "json_object":
        out = json.dumps({"answer": text})
    else:
        spec = fmt.get("json_schema")
        schema = spec.get("schema") if isinstance(spec, dict) else None
        out = json.dumps(instance(schema or {"type": "object"}))
    return _pieces(out), False


def _pieces(text: str) -> list[str]:
    return [text[i : i + _PIECE] for i in range(0, len(text), _PIECE)] or [""]
