"""Typed request parameters of ``responses.create`` / ``responses.stream``.

TypedDicts named as the official SDK names them (``openai.types.responses``),
for the editor and for mypy; at run time they are plain dicts, sent as given.
Items and tools of kinds not spelled out here (web search, MCP, computer use...)
are accepted as plain dicts, and ``response.output`` items (pydantic models) are
accepted as input items as they are.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Literal, TypeAlias

from pydantic import BaseModel
from typing_extensions import Required, TypedDict

from ..types import ReasoningEffort

__all__ = [
    "RESPONSES_PARAMS",
    "EasyInputMessageParam",
    "FunctionCallOutputParam",
    "FunctionToolParam",
    "ReasoningParam",
    "ResponseFormatTextConfigParam",
    "ResponseFunctionToolCallParam",
    "ResponseInputItemParam",
    "ResponseInputParam",
    "ResponseTextConfigParam",
    "ResponsesParams",
    "ToolChoiceParam",
    "ToolParam",
]

# -- input ----------------------------------------------------------------------------


class ResponseInputTextParam(TypedDict):
    type: Literal["input_text"]
    text: str


class ResponseInputImageParam(TypedDict, total=False):
    type: Required[Literal["input_image"]]
    image_url: str | None
    file_id: str | None
    detail: Literal["low", "high", "auto"]


class ResponseInputFileParam(TypedDict, total=False):
    type: Required[Literal["input_file"]]
    file_data: str
    file_id: str | None
    file_url: str
    filename: str


class ResponseOutputTextParam(TypedDict, total=False):
    type: Required[Literal["output_text"]]
    text: Required[str]
    annotations: Iterable[dict[str, Any]]


ResponseInputContentParam: TypeAlias = (
    ResponseInputTextParam
    | ResponseInputImageParam
    | ResponseInputFileParam
    | ResponseOutputTextParam
    | dict[str, Any]
)


class EasyInputMessageParam(TypedDict, total=False):
    role: Required[Literal["user", "assistant", "system", "developer"]]
    content: Required[str | Iterable[ResponseInputContentParam]]
    type: Literal["message"]
    phase: Literal["commentary", "final_answer"] | None


class ResponseFunctionToolCallParam(TypedDict, total=False):
    type: Required[Literal["function_call"]]
    call_id: Required[str]
    name: Required[str]
    arguments: Required[str]
    id: str
    status: Literal["in_progress", "completed", "incomplete"]


class FunctionCallOutputParam(TypedDict, total=False):
    type: Required[Literal["function_call_output"]]
    call_id: Required[str]
    output: Required[str | Iterable[ResponseInputContentParam]]
    id: str | None
    status: Literal["in_progress", "completed", "incomplete"] | None


class ResponseReasoningItemParam(TypedDict, total=False):
    type: Required[Literal["reasoning"]]
    id: Required[str]
    summary: Required[Iterable[dict[str, Any]]]
    encrypted_content: str | None


class ItemReferenceParam(TypedDict, total=False):
    type: Literal["item_reference"] | None
    id: Required[str]


#: One input item: a message, a function call and its output, a reasoning item,
#: an item reference, any other item as a dict, or an item of ``response.output``.
ResponseInputItemParam: TypeAlias = (
    EasyInputMessageParam
    | ResponseFunctionToolCallParam
    | FunctionCallOutputParam
    | ResponseReasoningItemParam
    | ItemReferenceParam
    | dict[str, Any]
    | BaseModel
)
ResponseInputParam: TypeAlias = Iterable[ResponseInputItemParam]

# -- tools ----------------------------------------------------------------------------


class FunctionToolParam(TypedDict, total=False):
    """A function tool, flat (not nested under ``function`` as in chat)."""

    type: Required[Literal["function"]]
    name: Required[str]
    parameters: dict[str, Any] | None
    strict: bool | None
    description: str | None


ToolParam: TypeAlias = FunctionToolParam | dict[str, Any]


class ToolChoiceFunctionParam(TypedDict):
    type: Literal["function"]
    name: str


class ToolChoiceAllowedParam(TypedDict):
    type: Literal["allowed_tools"]
    mode: Literal["auto", "required"]
    tools: Iterable[dict[str, Any]]


ToolChoiceParam: TypeAlias = (
    Literal["none", "auto", "required"]
    | ToolChoiceFunctionParam
    | ToolChoiceAllowedParam
    | dict[str, Any]
)

# -- text, reasoning ------------------------------------------------------------------


class ResponseFormatTextParam(TypedDict):
    type: Literal["text"]


class ResponseFormatJSONObjectParam(TypedDict):
    type: Literal["json_object"]


class ResponseFormatTextJSONSchemaConfigParam(TypedDict, total=False):
    type: Required[Literal["json_schema"]]
    name: Required[str]
    schema: Required[dict[str, Any]]
    description: str
    strict: bool | None


ResponseFormatTextConfigParam: TypeAlias = (
    ResponseFormatTextParam
    | ResponseFormatJSONObjectParam
    | ResponseFormatTextJSONSchemaConfigParam
)


class ResponseTextConfigParam(TypedDict, total=False):
    format: ResponseFormatTextConfigParam
    verbosity: Literal["low", "medium", "high"] | None


class ReasoningParam(TypedDict, total=False):
    effort: ReasoningEffort | None
    summary: Literal["auto", "concise", "detailed"] | None
    generate_summary: Literal["auto", "concise", "detailed"] | None


class StreamOptionsParam(TypedDict, total=False):
    include_obfuscation: bool


# -- the request ----------------------------------------------------------------------


class ResponsesParams(TypedDict, total=False):
    """The optional fields of ``POST /responses``, as keyword arguments.

    ``model``, ``input`` and ``text_format`` are parameters of their own;
    ``stream`` is chosen by the method (``create`` or ``stream``).
    """

    background: bool | None
    context_management: Iterable[dict[str, Any]] | None
    conversation: str | dict[str, Any] | None
    include: list[str] | None
    instructions: str | None
    max_output_tokens: int | None
    max_tool_calls: int | None
    metadata: dict[str, str] | None
    parallel_tool_calls: bool | None
    previous_response_id: str | None
    prompt: dict[str, Any] | None
    prompt_cache_key: str | None
    prompt_cache_retention: Literal["in_memory", "24h"] | None
    reasoning: ReasoningParam | None
    safety_identifier: str | None
    service_tier: Literal["auto", "default", "flex", "scale", "priority"] | None
    store: bool | None
    stream_options: StreamOptionsParam | None
    temperature: float | None
    text: ResponseTextConfigParam
    tool_choice: ToolChoiceParam
    tools: Iterable[ToolParam]
    top_logprobs: int | None
    top_p: float | None
    truncation: Literal["auto", "disabled"] | None
    user: str


#: The keyword names ``ResponsesParams`` allows (checked per call: one set difference).
RESPONSES_PARAMS: frozenset[str] = frozenset(
    ResponsesParams.__optional_keys__ | ResponsesParams.__required_keys__
)
