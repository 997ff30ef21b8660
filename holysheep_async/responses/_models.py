"""Pydantic models of the Responses API's objects: ``Response``, its items, its usage.

Shaped as the official SDK's ``openai.types.responses`` (the published
protocol), and as lenient as the rest of :mod:`holysheep_async.models`: every
model keeps fields it does not know (``extra="allow"``: relays add their own),
``null`` where a count or a list belongs reads as 0 or ``[]``, and only what the
protocol cannot do without is required.

Output (and input) items are typed by their ``type``: :class:`ResponseOutputMessage`,
:class:`ResponseFunctionToolCall`, :class:`ResponseFunctionCallOutputItem`,
:class:`ResponseReasoningItem`; any other type (a web search call, a tool this
client does not know yet) is an :class:`UnknownItem` that keeps every field it
came with (``.raw``), so that passing ``response.output`` back as input loses nothing.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Generic, Literal

from pydantic import BaseModel, BeforeValidator, Discriminator, Field, Tag

from ..models import (
    _PARSED,
    CompletionTokensDetails,
    ModelT,
    PromptTokensDetails,
    Usage,
    _FromResponse,
    _Wire,
)

__all__ = [
    "FINAL_STATUSES",
    "IncompleteDetails",
    "InputTokensDetails",
    "OutputTokensDetails",
    "ParsedResponse",
    "ReasoningContent",
    "ReasoningSummary",
    "Response",
    "ResponseContent",
    "ResponseDeleted",
    "ResponseError",
    "ResponseFunctionCallOutputItem",
    "ResponseFunctionToolCall",
    "ResponseInputText",
    "ResponseItem",
    "ResponseItemList",
    "ResponseOutputMessage",
    "ResponseOutputRefusal",
    "ResponseOutputText",
    "ResponseReasoningItem",
    "ResponseUsage",
    "UnknownContent",
    "UnknownItem",
]

#: A response in one of these states changes no more.
FINAL_STATUSES = frozenset({"completed", "failed", "cancelled", "incomplete"})


def _zero(value: Any) -> Any:
    return 0 if value is None else value


def _empty(value: Any) -> Any:
    return [] if value is None else value


_Count = Annotated[int, BeforeValidator(_zero)]


def _tag(known: frozenset[str], default: str) -> Any:
    def tag(value: Any) -> str:
        kind = value.get("type") if isinstance(value, dict) else getattr(value, "type", None)
        return kind if kind in known else default

    return Discriminator(tag)


class _Raw(_Wire):
    """Something of a type this client does not model: every field kept as it came."""

    type: str | None = None

    @property
    def raw(self) -> dict[str, Any]:
        """The object as the server sent it (the fields it had, nothing added)."""
        return self.model_dump(mode="json", exclude_unset=True)


# -- content parts ----------------------------------------------------------------------


class ResponseOutputText(_Wire):
    type: Literal["output_text"] = "output_text"
    text: str = ""
    annotations: Annotated[list[Any], BeforeValidator(_empty)] = Field(default_factory=list)
    logprobs: list[Any] | None = None


class ResponseOutputRefusal(_Wire):
    type: Literal["refusal"] = "refusal"
    refusal: str = ""


class ResponseInputText(_Wire):
    type: Literal["input_text"] = "input_text"
    text: str = ""


class UnknownContent(_Raw):
    """A content part of another type (``input_image``, ``input_file``, ...)."""


ResponseContent = Annotated[
    Annotated[ResponseOutputText, Tag("output_text")]
    | Annotated[ResponseOutputRefusal, Tag("refusal")]
    | Annotated[ResponseInputText, Tag("input_text")]
    | Annotated[UnknownContent, Tag("other")],
    _tag(frozenset({"output_text", "refusal", "input_text"}), "other"),
]

# -- items ------------------------------------------------------------------------------


class ResponseOutputMessage(_Wire):
    """A message: the model's (``role="assistant"``), or an input message of ``input_items``."""

    type: Literal["message"] = "message"
    id: str | None = None
    role: str = "assistant"
    status: str | None = None
    content: Annotated[list[ResponseContent], BeforeValidator(_empty)] = Field(default_factory=list)

    @property
    def text(self) -> str:
        """The message's text parts, joined."""
        return "".join(
            p.text for p in self.content if isinstance(p, (ResponseOutputText, ResponseInputText))
        )

    @property
    def refusal(self) -> str | None:
        """The message's refusal parts, joined (None without any)."""
        parts = [p.refusal for p in self.content if isinstance(p, ResponseOutputRefusal)]
        return "".join(parts) if parts else None


class ResponseFunctionToolCall(_Wire):
    """The model asks for a function call: answer it with a ``function_call_output`` item."""

    type: Literal["function_call"] = "function_call"
    id: str | None = None
    call_id: str = ""
    name: str = ""
    arguments: str = ""
    status: str | None = None

    def parsed_arguments(self) -> Any:
        """``arguments`` decoded from JSON (``{}`` when empty); ValueError when not JSON."""
        return json.loads(self.arguments) if self.arguments.strip() else {}


class ResponseFunctionCallOutputItem(_Wire):
    """The result of a function call, sent back as input (``call_id`` names the call)."""

    type: Literal["function_call_output"] = "function_call_output"
    id: str | None = None
    call_id: str = ""
    output: Any = ""
    status: str | None = None


class ReasoningSummary(_Wire):
    type: str = "summary_text"
    text: str = ""


class ReasoningContent(_Wire):
    type: str = "reasoning_text"
    text: str = ""


class ResponseReasoningItem(_Wire):
    """What a reasoning model thought: its summary parts (and, on some servers, the text)."""

    type: Literal["reasoning"] = "reasoning"
    id: str | None = None
    summary: Annotated[list[ReasoningSummary], BeforeValidator(_empty)] = Field(
        default_factory=list
    )
    content: list[ReasoningContent] | None = None
    encrypted_content: str | None = None
    status: str | None = None

    @property
    def text(self) -> str:
        """The summary's text, or the reasoning text where a server sends that instead."""
        summary = "\n\n".join(s.text for s in self.summary if s.text)
        if summary:
            return summary
        return "".join(c.text for c in self.content or ())


class UnknownItem(_Raw):
    """An item of a type this client does not model; ``.raw`` is the item as it came."""

    id: str | None = None


#: One item of ``response.output`` (or of ``input_items``), typed by its ``type``.
ResponseItem = Annotated[
    Annotated[ResponseOutputMessage, Tag("message")]
    | Annotated[ResponseFunctionToolCall, Tag("function_call")]
    | Annotated[ResponseFunctionCallOutputItem, Tag("function_call_output")]
    | Annotated[ResponseReasoningItem, Tag("reasoning")]
    | Annotated[UnknownItem, Tag("other")],
    _tag(frozenset({"message", "function_call", "function_call_output", "reasoning"}), "other"),
]

# -- usage, errors ----------------------------------------------------------------------


class InputTokensDetails(_Wire):
    cached_tokens: _Count = 0


class OutputTokensDetails(_Wire):
    reasoning_tokens: _Count = 0


class ResponseUsage(_Wire):
    """Tokens of one response: ``input_tokens``, ``output_tokens`` (reasoning included)."""

    input_tokens: _Count = 0
    output_tokens: _Count = 0
    total_tokens: _Count = 0
    input_tokens_details: InputTokensDetails | None = None
    output_tokens_details: OutputTokensDetails | None = None

    @property
    def reasoning_tokens(self) -> int:
        """Output tokens spent thinking (0 when the server does not say)."""
        details = self.output_tokens_details
        return details.reasoning_tokens if details is not None else 0

    @property
    def cached_tokens(self) -> int:
        details = self.input_tokens_details
        return details.cached_tokens if details is not None else 0

    def to_usage(self) -> Usage:
        """The same counts in chat's shape (what ``client.usage`` and the prices count)."""
        return Usage(
            prompt_tokens=self.input_tokens,
            completion_tokens=self.output_tokens,
            total_tokens=self.total_tokens or self.input_tokens + self.output_tokens,
            prompt_tokens_details=PromptTokensDetails(cached_tokens=self.cached_tokens)
            if self.input_tokens_details is not None
            else None,
            completion_tokens_details=CompletionTokensDetails(
                reasoning_tokens=self.reasoning_tokens
            )
            if self.output_tokens_details is not None
            else None,
        )


class ResponseError(_Wire):
    code: str | None = None
    message: str = ""
    param: str | None = None
    type: str | None = None


class IncompleteDetails(_Wire):
    reason: str | None = None


# -- the response -----------------------------------------------------------------------


class Response(_FromResponse):
    """A model response (``POST /responses``): its output items, usage and status.

    >>> response = await client.responses.create(model="gpt-4o", input="Hi")  # doctest: +SKIP
    >>> response.output_text, response.usage.output_tokens  # doctest: +SKIP
    """

    id: str = ""
    object: str = "response"
    created_at: float | None = None
    status: str | None = None
    model: str = ""
    output: Annotated[list[ResponseItem], BeforeValidator(_empty)] = Field(default_factory=list)
    usage: ResponseUsage | None = None
    error: ResponseError | None = None
    incomplete_details: IncompleteDetails | None = None
    instructions: Any = None
    metadata: dict[str, Any] | None = None
    previous_response_id: str | None = None
    background: bool | None = None
    parallel_tool_calls: bool | None = None
    temperature: float | None = None
    top_p: float | None = None
    max_output_tokens: int | None = None
    tool_choice: Any = None
    tools: list[Any] | None = None
    text: Any = None
    reasoning: Any = None
    truncation: str | None = None
    user: str | None = None
    store: bool | None = None
    service_tier: str | None = None

    @property
    def output_text(self) -> str:
        """Every ``output_text`` part of every message of ``output``, joined ('' if none)."""
        return "".join(
            part.text
            for item in self.output
            if isinstance(item, ResponseOutputMessage)
            for part in item.content
            if isinstance(part, ResponseOutputText)
        )

    @property
    def refusal(self) -> str | None:
        """The refusal parts of the output messages, joined (None when the model did not refuse)."""
        parts = [
            part.refusal
            for item in self.output
            if isinstance(item, ResponseOutputMessage)
            for part in item.content
            if isinstance(part, ResponseOutputRefusal)
        ]
        return "".join(parts) if parts else None

    @property
    def function_calls(self) -> list[ResponseFunctionToolCall]:
        """The function calls the model asks for, in order."""
        return [item for item in self.output if isinstance(item, ResponseFunctionToolCall)]

    @property
    def reasoning_text(self) -> str:
        """The reasoning summaries of the output, joined ('' if none)."""
        return "\n\n".join(
            item.text
            for item in self.output
            if isinstance(item, ResponseReasoningItem) and item.text
        )

    @property
    def is_final(self) -> bool:
        """True once it can no longer change (completed, failed, cancelled, incomplete)."""
        return self.status in FINAL_STATUSES or self.status is None

    @property
    def finish_reason(self) -> str | None:
        """Chat's word for how it ended: "stop", "length" (max_output_tokens), "tool_calls"..."""
        if self.status == "incomplete":
            reason = self.incomplete_details.reason if self.incomplete_details else None
            return "length" if reason in (None, "max_output_tokens") else reason
        if self.status not in ("completed", None):
            return None
        return "tool_calls" if self.function_calls else "stop"


class ParsedResponse(Response, Generic[ModelT]):
    """A response asked for with ``text_format=SomeModel``: ``.parsed`` is a ``SomeModel``.

    ``responses.create`` returns one only when the answer parsed; a refusal raises
    :class:`~holysheep_async.RefusalError`, an answer that does not fit raises
    :class:`~holysheep_async.StructuredOutputError` (both carry the response).
    """

    @property
    def parsed(self) -> ModelT:
        """The output text, validated into the ``text_format`` model."""
        parsed: ModelT = self.__dict__[_PARSED]
        return parsed

    @property
    def output_parsed(self) -> ModelT:
        """``parsed``, by the official SDK's name."""
        return self.parsed


class ResponseDeleted(_FromResponse):
    id: str = ""
    object: str = "response"
    deleted: bool = True


class ResponseItemList(_Wire):
    """One page of ``GET /responses/{id}/input_items``."""

    object: str = "list"
    data: Annotated[list[ResponseItem], BeforeValidator(_empty)] = Field(default_factory=list)
    first_id: str | None = None
    last_id: str | None = None
    has_more: bool = False


def item_to_input(item: BaseModel) -> dict[str, Any]:
    """An output item as an input item: its fields as they are, without nulls."""
    if isinstance(item, _Raw):
        return item.raw
    return item.model_dump(mode="json", exclude_none=True, by_alias=True)
