"""Structured outputs: a pydantic model class as ``response_format``, and parsing the answer.

``response_format=Invoice`` sends ``{"type": "json_schema", "json_schema":
{"name": "Invoice", "schema": ..., "strict": true}}`` where the schema is
pydantic's, made to follow the rules of OpenAI's strict mode (every object
closed with ``additionalProperties: false``, every property listed in
``required``, no ``null`` defaults). The answer's text is then validated
into an ``Invoice``; a refusal or an answer that does not fit raises.
:class:`ParsedChatStream` does the same at the end of a stream.
"""

from __future__ import annotations

import re
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ValidationError

from .errors import RefusalError, StructuredOutputError
from .models import ModelT
from .streaming import ChatStream

__all__ = [
    "ParsedChatStream",
    "is_model_class",
    "parse_answer",
    "response_format_for",
    "strict_schema",
]

M = TypeVar("M", bound=BaseModel)

_formats: dict[type[BaseModel], dict[str, Any]] = {}


def is_model_class(value: object) -> bool:
    return isinstance(value, type) and issubclass(value, BaseModel)


def response_format_for(model: type[BaseModel]) -> dict[str, Any]:
    """The ``response_format`` body field for ``model`` (built once per class)."""
    fmt = _formats.get(model)
    if fmt is None:
        name = re.sub(r"[^a-zA-Z0-9_-]", "_", model.__name__)[:64] or "response"
        fmt = {
            "type": "json_schema",
            "json_schema": {"name": name, "schema": strict_schema(model), "strict": True},
        }
        if len(_formats) < 1024:
            _formats[model] = fmt
    return fmt


def strict_schema(model: type[BaseModel]) -> dict[str, Any]:
    """``model``'s JSON schema, closed and fully required as strict mode asks."""
    schema = model.model_json_schema()
    _strict(schema)
    return schema


def _strict(node: Any) -> None:
    if isinstance(node, list):
        for item in node:
            _strict(item)
        return
    if not isinstance(node, dict):
        return
    if node.get("type") == "object" or "properties" in node:
        node["additionalProperties"] = False
        node["required"] = list(node.get("properties", {}))
    if "default" in node and node["default"] is None:
        del node["default"]
    for key in ("properties", "$defs", "definitions"):
        sub = node.get(key)
        if isinstance(sub, dict):
            for value in sub.values():
                _strict(value)
    for key in ("items", "anyOf", "allOf", "oneOf", "prefixItems"):
        if key in node:
            _strict(node[key])


def parse_answer(
    model: type[M],
    text: str | None,
    refusal: str | None,
    finish_reason: str | None,
    completion: object = None,
) -> M:
    """``text`` validated into ``model``; raises :class:`RefusalError` or
    :class:`StructuredOutputError` with what went wrong."""
    if refusal:
        raise RefusalError(refusal, completion=completion)
    if not text:
        raise StructuredOutputError(
            f"The answer is empty (finish_reason={finish_reason!r}), not a {model.__name__}",
            text="",
            finish_reason=finish_reason,
            completion=completion,
        )
    try:
        return model.model_validate_json(text)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "the answer"
        cut = (
            " (cut off: finish_reason='length', raise max_tokens)"
            if finish_reason == "length"
            else ""
        )
        raise StructuredOutputError(
            f"The answer is not a valid {model.__name__}{cut}: {where}: {first['msg']};"
            f" it begins {text[:80]!r}",
            text=text,
            finish_reason=finish_reason,
            completion=completion,
        ) from exc


class ParsedChatStream(ChatStream, Generic[ModelT]):
    """A stream asked for with ``response_format=SomeModel``: ``.parsed`` once it has ended.

    The text streams as usual (partial JSON); at the end ``stream.parsed`` is
    the answer validated into ``SomeModel``. Reading it raises
    :class:`RefusalError` when the model refused, :class:`StructuredOutputError`
    when the answer does not fit, ``RuntimeError`` before the stream has ended.
    """

    _model_class: type[ModelT]

    @property
    def parsed(self) -> ModelT:
        if not self._complete:
            raise RuntimeError("stream.parsed is known once the stream has ended: iterate it first")
        cached = self.__dict__.get("_parsed_value")
        if cached is None:
            cached = parse_answer(
                self._model_class, self.text, self.refusal, self.finish_reason
            )
            self._parsed_value = cached
        return cached
