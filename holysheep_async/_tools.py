"""Tools for ``chat.run_tools``: a Python function or a pydantic model, as the API sees it.

A function becomes a tool named after it, described by its docstring, whose
parameters' JSON schema pydantic makes from the signature (type hints,
defaults, ``Annotated[..., Field(description=...)]``); descriptions of
parameters are also read from the docstring's ``Args:`` section (Google
style) or ``:param name:`` lines (reST)::

    async def get_weather(city: str, unit: Literal["c", "f"] = "c") -> dict:
        '''The weather in a city now.

        Args:
            city: The city's name, e.g. "Paris".
            unit: Degrees Celsius or Fahrenheit.
        '''

A pydantic model class is a tool named after the class whose parameters are
the model's fields; a call validates the arguments into the model and, if the
model defines ``__call__`` (sync or async), runs it, else the validated model
is the answer (a way to have the model fill in a form and be told what is wrong).

:meth:`Tool.run` never raises for what the model got wrong or the tool threw:
invalid JSON, arguments that do not validate, an exception in the tool: each
becomes the tool's answer (``Error: ...``), so the model can see it and retry.
Cancellation is not caught. Sync functions run in a worker thread, so a
blocking call does not stall the event loop.
"""

from __future__ import annotations

import inspect
import json
import logging
import re
from collections.abc import Callable, Iterable
from typing import Any

import anyio.to_thread
from pydantic import BaseModel, TypeAdapter, ValidationError, validate_call
from pydantic_core import to_json

__all__ = ["Tool", "ToolOutcome", "make_tools"]

log = logging.getLogger("holysheep_async")

_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
# A docstring section that starts the parameters (Google) or ends the description.
_SECTION = re.compile(
    r"^\s*(Args|Arguments|Parameters|Params|Returns?|Raises|Yields|Examples?):\s*$"
)
_GOOGLE_ARG = re.compile(r"^(\s*)(\*{0,2}\w+)\s*(?:\([^)]*\))?\s*:\s*(.*)$")
_REST_PARAM = re.compile(r"^\s*:param\s+(?:[^:]*\s)?(\w+)\s*:\s*(.*)$")


class ToolOutcome:
    """What one tool call gave: ``output`` (the text sent back to the model), ``value``
    (what the tool returned, None on error), ``error`` (the exception, if any)."""

    __slots__ = ("error", "output", "value")

    def __init__(self, output: str, value: Any = None, error: BaseException | None = None):
        self.output = output
        self.value = value
        self.error = error


def _describe(doc: str | None) -> tuple[str, dict[str, str]]:
    """A docstring -> (the description, {parameter: description})."""
    if not doc:
        return "", {}
    lines = inspect.cleandoc(doc).splitlines()
    summary: list[str] = []
    params: dict[str, str] = {}
    section: str | None = None
    current: str | None = None
    indent = 0
    for line in lines:
        rest = _REST_PARAM.match(line)
        if rest:
            current = rest.group(1)
            params[current] = rest.group(2).strip()
            section = "rest"
            continue
        head = _SECTION.match(line)
        if head:
            section = head.group(1).lower()
            current = None
            continue
        if section is None:
            summary.append(line)
        elif section in ("args", "arguments", "parameters", "params"):
            arg = _GOOGLE_ARG.match(line)
            if arg and (current is None or len(arg.group(1)) <= indent):
                indent = len(arg.group(1))
                current = arg.group(2).lstrip("*")
                params[current] = arg.group(3).strip()
            elif current is not None and line.strip():
                params[current] = f"{params[current]} {line.strip()}".strip()
        elif section == "rest" and current is not None and line.strip():
            if line.lstrip().startswith(":"):
                current = None  # another field (:returns:, :raises:)
            else:
                params[current] = f"{params[current]} {line.strip()}".strip()
    return "\n".join(summary).strip(), params


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, BaseModel):
        return value.model_dump_json()
    try:
        return to_json(value).decode()
    except Exception:  # not serializable as JSON: its str()
        return str(value)


def _error(exc: BaseException) -> str:
    return f"Error: {type(exc).__name__}: {exc}"


class Tool:
    """One tool: its name, description, JSON schema of parameters, and how to run it."""

    __slots__ = ("_call", "_is_async", "_model", "description", "name", "parameters")

    def __init__(self, target: Callable[..., Any] | type[BaseModel]) -> None:
        self._model: type[BaseModel] | None = None
        if isinstance(target, type) and issubclass(target, BaseModel):
            self._model = target
            self.name = target.__name__
            description, _ = _describe(target.__doc__)
            schema = target.model_json_schema()
            schema.pop("title", None)
            schema.pop("description", None)
            self._is_async = inspect.iscoroutinefunction(target.__dict__.get("__call__"))
            self._call: Callable[..., Any] = target
        elif callable(target):
            name = getattr(target, "__name__", None)
            if not isinstance(name, str) or name == "<lambda>":
                raise TypeError(
                    f"a tool must be a named function or a pydantic model class, got {target!r}"
                )
            self.name = name
            for param in inspect.signature(target).parameters.values():
                if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
                    raise TypeError(
                        f"tool {name!r}: *{param.name} / **{param.name} cannot be described as"
                        " JSON parameters; name each parameter"
                    )
            description, documented = _describe(target.__doc__)
            schema = TypeAdapter(target).json_schema()  # type: ignore[arg-type]
            for key, text in documented.items():
                prop = schema.get("properties", {}).get(key)
                if isinstance(prop, dict) and text and "description" not in prop:
                    prop["description"] = text
            self._is_async = inspect.iscoroutinefunction(target)
            self._call = validate_call(target)
        else:
            raise TypeError(
                f"a tool must be a function or a pydantic model class, got {target!r:.80}"
            )
        if not _NAME.match(self.name):
            raise ValueError(
                f"tool name {self.name!r}: the API takes 1-64 letters, digits, '_' or '-'"
            )
        self.description = description
        self.parameters: dict[str, Any] = schema

    def param(self) -> dict[str, Any]:
        """The tool as a request's ``tools`` entry."""
        function: dict[str, Any] = {"name": self.name, "parameters": self.parameters}
        if self.description:
            function["description"] = self.description
        return {"type": "function", "function": function}

    async def run(self, arguments: str) -> ToolOutcome:
        """Run the tool with the model's ``arguments`` (JSON text); what it gave, as text."""
        try:
            args = json.loads(arguments) if arguments.strip() else {}
        except ValueError as exc:
            return ToolOutcome(
                f"Error: the arguments are not valid JSON ({exc}): {arguments[:200]}", error=exc
            )
        if not isinstance(args, dict):
            wrong = TypeError(f"the arguments must be a JSON object, got {arguments[:200]}")
            return ToolOutcome(_error(wrong), error=wrong)
        try:
            value = await self._invoke(args)
        except Exception as exc:
            log.info("tool %s failed: %s: %s", self.name, type(exc).__name__, exc)
            if isinstance(exc, ValidationError):
                problems = "; ".join(
                    f"{'.'.join(str(p) for p in e['loc']) or 'arguments'}: {e['msg']}"
                    for e in exc.errors(include_url=False)
                )
                return ToolOutcome(
                    f"Error: invalid arguments for {self.name}: {problems}", error=exc
                )
            return ToolOutcome(_error(exc), error=exc)
        return ToolOutcome(_text(value), value)

    async def _invoke(self, args: dict[str, Any]) -> Any:
        if self._model is not None:
            instance = self._model.model_validate(args)
            if not callable(instance):
                return instance
            if self._is_async:
                return await instance()
            return await anyio.to_thread.run_sync(instance)
        if self._is_async:
            return await self._call(**args)
        return await anyio.to_thread.run_sync(lambda: self._call(**args))

    def __repr__(self) -> str:
        return f"<Tool {self.name}>"


def make_tools(tools: Iterable[Callable[..., Any] | type[BaseModel] | Tool]) -> dict[str, Tool]:
    """Tools by name; ``ValueError`` for none, or two with one name."""
    made: dict[str, Tool] = {}
    for target in tools:
        tool = target if isinstance(target, Tool) else Tool(target)
        if tool.name in made:
            raise ValueError(f"two tools are named {tool.name!r}")
        made[tool.name] = tool
    if not made:
        raise ValueError("run_tools needs at least one tool")
    return made
