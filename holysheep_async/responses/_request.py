"""Building a Responses request, and reading its answer: pure helpers of ``client.responses``.

:func:`build_body` checks the keyword arguments of ``create`` / ``stream``
(an unknown one is a ``TypeError`` that points at ``extra_body``) and makes
the JSON body: ``input`` items of ``response.output`` become dicts,
``text_format=SomeModel`` becomes ``text.format`` with the strict JSON schema
(the same schema chat's ``response_format=SomeModel`` sends),
``extra_body`` is merged in last. :func:`no_responses_api` tells a server
without ``/responses`` from a wrong model.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from pydantic import BaseModel

from .. import _otel
from .._options import check_extras, unknown_keywords
from .._structured import is_model_class, parse_answer, response_format_for
from ..errors import APIStatusError, InvalidResponseError
from ..models import _PARSED
from ._fallback import to_chat_messages
from ._models import Response, item_to_input
from ._types import RESPONSES_PARAMS

__all__ = [
    "NO_RESPONSES_API",
    "build_body",
    "check_id",
    "estimate",
    "no_responses_api",
    "parse_output",
    "prompt",
    "text_format_for",
    "trace_end",
]

#: Statuses of ``POST /responses`` that mean the server has no Responses API.
NO_RESPONSES_API = frozenset({404, 405, 501})
_MODEL_WORDS = re.compile(r"\bmodel", re.IGNORECASE)
#: A 404 whose message names the route is about the route, even if it names a model too
#: (LiteLLM relays the backend's "Invalid URL (POST /v1/responses)" with "model group 'x'").
_ROUTE_WORDS = re.compile(r"/responses\b|\b(?:url|path|route|endpoint)\b", re.IGNORECASE)


def no_responses_api(exc: APIStatusError | InvalidResponseError) -> str | None:
    """Why ``exc`` (the answer to ``POST /responses``) means there is no Responses API, or None."""
    if isinstance(exc, InvalidResponseError):
        # Relays that lack the route may answer 200 with their web page instead of 404.
        if exc.status_code == 200 and exc.body.lstrip()[:1] == "<":
            return "POST /responses answered a web page"
        return None
    if exc.status_code not in NO_RESPONSES_API:
        return None
    message = exc.message or ""
    if exc.status_code == 404 and (
        exc.code == "model_not_found"
        or (_MODEL_WORDS.search(message) and not _ROUTE_WORDS.search(message))
    ):
        return None  # the model is unknown, not the route
    return f"POST /responses answered {exc.status_code}"


def _input(value: object) -> str | list[Any] | None:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, (bytes, Mapping)) or not isinstance(value, Iterable):
        raise TypeError(
            "input must be a string or a list of items ({'role': ..., 'content': ...},"
            f" function_call_output, items of response.output), got {type(value).__name__}"
        )
    items: list[Any] = []
    for i, item in enumerate(value):
        if isinstance(item, BaseModel):
            items.append(item_to_input(item))
        elif isinstance(item, Mapping):
            items.append(item)
        else:
            raise TypeError(
                f"input[{i}] must be a dict or an item of response.output, got {item!r:.80}"
            )
    return items


def text_format_for(model: type[BaseModel]) -> dict[str, Any]:
    """``text.format`` for structured outputs into ``model`` (the strict JSON schema)."""
    schema = response_format_for(model)["json_schema"]
    return {
        "type": "json_schema",
        "name": schema["name"],
        "schema": schema["schema"],
        "strict": True,
    }


def build_body(
    method: str,
    model: object,
    input: object,
    text_format: object,
    params: Mapping[str, Any],
    extra_headers: object,
    extra_query: object,
    extra_body: object,
) -> tuple[dict[str, Any], type[BaseModel] | None]:
    """The request body of ``method`` and the model class to parse the answer into."""
    if params and not RESPONSES_PARAMS.issuperset(params):
        if "stream" in params:
            other = "responses.stream" if method == "responses.create" else "responses.create"
            raise ValueError(f"{method} chooses whether to stream: use client.{other}(...)")
        raise unknown_keywords(method, params, RESPONSES_PARAMS)
    if not isinstance(model, str) or not model:
        raise TypeError(f"model must be a non-empty string, got {model!r}")
    body: dict[str, Any] = {"model": model}
    items = _input(input)
    if items is not None:
        body["input"] = items
    body.update(params)
    parse: type[BaseModel] | None = None
    if text_format is not None:
        if not is_model_class(text_format):
            raise TypeError(
                f"text_format must be a pydantic model class, got {text_format!r:.80};"
                " for a schema of your own pass text={'format': {...}}"
            )
        parse = text_format  # type: ignore[assignment]
        assert parse is not None
        text = dict(body.get("text") or {})
        if "format" in text:
            raise ValueError("give text_format= or text={'format': ...}, not both")
        text["format"] = text_format_for(parse)
        body["text"] = text
    if extra_body is not None or extra_headers is not None or extra_query is not None:
        check_extras(extra_headers, extra_query, extra_body)
        if extra_body:
            assert isinstance(extra_body, Mapping)
            body.update(extra_body)
    return body, parse


def estimate(body: Mapping[str, Any]) -> int:
    """A request's tokens before sending (about four characters a token, plus the answer's)."""
    chars = len(body.get("instructions") or "") if isinstance(body.get("instructions"), str) else 0
    items = body.get("input")
    if isinstance(items, str):
        chars += len(items)
    elif isinstance(items, list):
        for item in items:
            content = item.get("content") if isinstance(item, Mapping) else None
            if isinstance(content, str):
                chars += len(content)
            elif isinstance(content, list):
                chars += sum(
                    len(p["text"])
                    for p in content
                    if isinstance(p, Mapping) and isinstance(p.get("text"), str)
                )
            elif isinstance(item, Mapping) and isinstance(item.get("output"), str):
                chars += len(item["output"])
            chars += 16
    answer = body.get("max_output_tokens")
    out = answer if isinstance(answer, int) and not isinstance(answer, bool) and answer > 0 else 256
    return chars // 4 + 1 + out


def parse_output(response: Response, model: type[BaseModel]) -> None:
    """Validate ``response``'s text into ``model`` and keep it as ``.parsed`` (or raise)."""
    parsed = parse_answer(
        model, response.output_text, response.refusal, response.finish_reason, response
    )
    object.__setattr__(response, _PARSED, parsed)


def prompt(body: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The request's instructions and input as chat messages (for the opt-in span content)."""
    try:
        return to_chat_messages(body.get("input"), body.get("instructions"))
    except (TypeError, ValueError):
        return []


def trace_end(
    trace: _otel.ResponsesTrace,
    response: Response,
    attributes: Mapping[str, Any] | None = None,
) -> None:
    """End ``trace`` with what ``response`` says (plain values)."""
    usage = response.usage
    trace.finished(
        response_id=response.id or None,
        model=response.model or None,
        finish_reason=response.finish_reason or response.status,
        input_tokens=usage.input_tokens if usage is not None else None,
        output_tokens=usage.output_tokens if usage is not None else None,
        reasoning_tokens=usage.reasoning_tokens if usage is not None else None,
        cached_tokens=usage.cached_tokens if usage is not None else None,
        output_text=response.output_text,
        attributes=attributes,
    )


def check_id(value: object) -> str:
    if not isinstance(value, str) or not value or "/" in value or value.strip() != value:
        raise ValueError(
            f"response_id must be a non-empty id without '/' or spaces, got {value!r:.60}"
        )
    return value
