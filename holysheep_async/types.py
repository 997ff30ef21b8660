"""Typed request parameters: what ``chat.create`` / ``chat.stream`` and friends accept.

TypedDicts and Literals for the request side of the OpenAI chat API (shared
spec, ``CreateChatCompletionRequest``), named as the official SDK names them
where it helps someone coming from there. At run time they are plain dicts:
nothing here is validated or converted, so they cost nothing per call. They
are for the editor and for mypy::

    from holysheep_async.types import ChatCompletionMessageParam

    messages: list[ChatCompletionMessageParam] = [{"role": "user", "content": "Hi"}]

Fields a server adds beyond the spec (``top_k``, a relay's own options) go in
``extra_body={...}``, not here.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Literal, TypeAlias

import httpx
from typing_extensions import Required, TypedDict

__all__ = [
    "CHAT_PARAMS",
    "TOOL_LOOP_PARAMS",
    "ChatCompletionAssistantMessageParam",
    "ChatCompletionContentPartParam",
    "ChatCompletionDeveloperMessageParam",
    "ChatCompletionMessageParam",
    "ChatCompletionSystemMessageParam",
    "ChatCompletionToolChoiceOptionParam",
    "ChatCompletionToolMessageParam",
    "ChatCompletionToolParam",
    "ChatCompletionUserMessageParam",
    "ChatParams",
    "ToolLoopParams",
    "FunctionDefinition",
    "Headers",
    "Query",
    "ReasoningEffort",
    "ResponseFormatParam",
    "StreamOptionsParam",
    "Timeout",
]

#: Per-call options every request method takes (never sent in the body).
Headers: TypeAlias = Mapping[str, str]
Query: TypeAlias = Mapping[str, str | int | float | bool]
Timeout: TypeAlias = float | httpx.Timeout | None

# -- message content parts ------------------------------------------------------


class ChatCompletionContentPartTextParam(TypedDict):
    type: Literal["text"]
    text: str


class ImageURL(TypedDict, total=False):
    url: Required[str]
    detail: Literal["auto", "low", "high"]


class ChatCompletionContentPartImageParam(TypedDict):
    type: Literal["image_url"]
    image_url: ImageURL


class InputAudio(TypedDict):
    data: str
    format: Literal["wav", "mp3"]


class ChatCompletionContentPartInputAudioParam(TypedDict):
    type: Literal["input_audio"]
    input_audio: InputAudio


class FileContent(TypedDict, total=False):
    file_data: str
    file_id: str
    filename: str


class ChatCompletionContentPartFileParam(TypedDict):
    type: Literal["file"]
    file: FileContent


class ChatCompletionContentPartRefusalParam(TypedDict):
    type: Literal["refusal"]
    refusal: str


ChatCompletionContentPartParam: TypeAlias = (
    ChatCompletionContentPartTextParam
    | ChatCompletionContentPartImageParam
    | ChatCompletionContentPartInputAudioParam
    | ChatCompletionContentPartFileParam
)

# -- messages -------------------------------------------------------------------


class ChatCompletionSystemMessageParam(TypedDict, total=False):
    role: Required[Literal["system"]]
    content: Required[str | Iterable[ChatCompletionContentPartTextParam]]
    name: str


class ChatCompletionDeveloperMessageParam(TypedDict, total=False):
    role: Required[Literal["developer"]]
    content: Required[str | Iterable[ChatCompletionContentPartTextParam]]
    name: str


class ChatCompletionUserMessageParam(TypedDict, total=False):
    role: Required[Literal["user"]]
    content: Required[str | Iterable[ChatCompletionContentPartParam]]
    name: str


class FunctionCallParam(TypedDict):
    name: str
    arguments: str


class ChatCompletionMessageToolCallParam(TypedDict):
    id: str
    type: Literal["function"]
    function: FunctionCallParam


class ChatCompletionAssistantMessageParam(TypedDict, total=False):
    role: Required[Literal["assistant"]]
    content: (
        str
        | Iterable[ChatCompletionContentPartTextParam | ChatCompletionContentPartRefusalParam]
        | None
    )
    refusal: str | None
    name: str
    tool_calls: Iterable[ChatCompletionMessageToolCallParam]
    audio: dict[str, str] | None
    function_call: FunctionCallParam | None
    #: Not in OpenAI's spec: DeepSeek's / Mistral's "continue this prefix" flag.
    prefix: bool


class ChatCompletionToolMessageParam(TypedDict):
    role: Literal["tool"]
    content: str | Iterable[ChatCompletionContentPartTextParam]
    tool_call_id: str


class ChatCompletionFunctionMessageParam(TypedDict):
    role: Literal["function"]
    content: str | None
    name: str


ChatCompletionMessageParam: TypeAlias = (
    ChatCompletionDeveloperMessageParam
    | ChatCompletionSystemMessageParam
    | ChatCompletionUserMessageParam
    | ChatCompletionAssistantMessageParam
    | ChatCompletionToolMessageParam
    | ChatCompletionFunctionMessageParam
)

# -- tools ----------------------------------------------------------------------


class FunctionDefinition(TypedDict, total=False):
    name: Required[str]
    description: str
    parameters: dict[str, Any]
    strict: bool | None


class ChatCompletionToolParam(TypedDict):
    type: Literal["function"]
    function: FunctionDefinition


class CustomToolParam(TypedDict):
    type: Literal["custom"]
    custom: dict[str, Any]


class NamedFunction(TypedDict):
    name: str


class ChatCompletionNamedToolChoiceParam(TypedDict):
    type: Literal["function"]
    function: NamedFunction


class AllowedTools(TypedDict):
    mode: Literal["auto", "required"]
    tools: Iterable[dict[str, Any]]


class ChatCompletionAllowedToolsChoiceParam(TypedDict):
    type: Literal["allowed_tools"]
    allowed_tools: AllowedTools


ChatCompletionToolChoiceOptionParam: TypeAlias = (
    Literal["none", "auto", "required"]
    | ChatCompletionNamedToolChoiceParam
    | ChatCompletionAllowedToolsChoiceParam
)

# -- response format ------------------------------------------------------------


class ResponseFormatText(TypedDict):
    type: Literal["text"]


class ResponseFormatJSONObject(TypedDict):
    type: Literal["json_object"]


class JSONSchema(TypedDict, total=False):
    name: Required[str]
    description: str
    schema: dict[str, Any]
    strict: bool | None


class ResponseFormatJSONSchema(TypedDict):
    type: Literal["json_schema"]
    json_schema: JSONSchema


#: ``response_format`` as a dict; a pydantic model class is accepted too (structured outputs).
ResponseFormatParam: TypeAlias = (
    ResponseFormatText | ResponseFormatJSONObject | ResponseFormatJSONSchema
)

# -- the rest -------------------------------------------------------------------


class StreamOptionsParam(TypedDict, total=False):
    include_usage: bool
    include_obfuscation: bool


class PredictionContentParam(TypedDict):
    type: Literal["content"]
    content: str | Iterable[ChatCompletionContentPartTextParam]


class AudioParam(TypedDict):
    voice: str | dict[str, str]
    format: Literal["wav", "aac", "mp3", "flac", "opus", "pcm16"]


class WebSearchLocation(TypedDict, total=False):
    country: str
    region: str
    city: str
    timezone: str


class UserLocation(TypedDict):
    type: Literal["approximate"]
    approximate: WebSearchLocation


class WebSearchOptions(TypedDict, total=False):
    user_location: UserLocation | None
    search_context_size: Literal["low", "medium", "high"]


class PromptCacheOptionsParam(TypedDict, total=False):
    ttl: str
    mode: str


ReasoningEffort: TypeAlias = Literal["none", "minimal", "low", "medium", "high", "xhigh", "max"]


class ToolLoopParams(TypedDict, total=False):
    """:class:`ChatParams` but ``tools`` (``chat.run_tools`` takes its tools as functions)."""

    audio: AudioParam | None
    frequency_penalty: float | None
    function_call: Literal["none", "auto"] | NamedFunction
    functions: Iterable[FunctionDefinition]
    logit_bias: dict[str, int] | None
    logprobs: bool | None
    max_completion_tokens: int | None
    max_tokens: int | None
    metadata: dict[str, str] | None
    modalities: list[Literal["text", "audio"]] | None
    moderation: dict[str, Any] | None
    n: int | None
    parallel_tool_calls: bool
    prediction: PredictionContentParam | None
    presence_penalty: float | None
    prompt_cache_key: str | None
    prompt_cache_options: PromptCacheOptionsParam
    prompt_cache_retention: Literal["in_memory", "24h"] | None
    reasoning_effort: ReasoningEffort | None
    safety_identifier: str | None
    seed: int | None
    service_tier: Literal["auto", "default", "flex", "scale", "priority"] | None
    stop: str | list[str] | None
    store: bool | None
    stream_options: StreamOptionsParam | None
    temperature: float | None
    tool_choice: ChatCompletionToolChoiceOptionParam
    top_logprobs: int | None
    top_p: float | None
    user: str
    verbosity: Literal["low", "medium", "high"] | None
    web_search_options: WebSearchOptions


class ChatParams(ToolLoopParams, total=False):
    """The optional request fields of ``CreateChatCompletionRequest``, as keyword arguments.

    ``model``, ``messages`` and ``response_format`` are parameters of their own;
    ``stream`` is chosen by the method (``create`` or ``stream``).
    """

    tools: Iterable[ChatCompletionToolParam | CustomToolParam]


#: The keyword names ``ChatParams`` allows (checked per call: one set difference).
CHAT_PARAMS: frozenset[str] = frozenset(ChatParams.__optional_keys__ | ChatParams.__required_keys__)
#: The keyword names ``ToolLoopParams`` allows.
TOOL_LOOP_PARAMS: frozenset[str] = CHAT_PARAMS - {"tools"}


class EmbeddingParams(TypedDict, total=False):
    """Optional fields of an embeddings request."""

    dimensions: int
    user: str
