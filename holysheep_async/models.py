"""Pydantic models of the wire objects (chat completions, chunks, files, batches).

Servers differ: relays and inference engines leave fields out, add their own,
or send ``null`` where OpenAI sends a value. So every model keeps unknown
fields (``extra="allow"``, reachable as attributes and through
``model_dump()``), and only what the protocol cannot do without is required.
"""

from __future__ import annotations

import base64
import struct
from typing import Any, Generic, Literal, TypeVar

import httpx
from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = [
    "Batch",
    "BatchError",
    "BatchErrors",
    "BatchRequestCounts",
    "ChatCompletion",
    "ChatCompletionChunk",
    "ChatCompletionMessage",
    "Choice",
    "ChoiceDelta",
    "ChunkChoice",
    "Embedding",
    "EmbeddingsResponse",
    "FileDeleted",
    "FileObject",
    "Model",
    "ParsedChatCompletion",
    "Usage",
    "attach_response",
]

_HEADERS = "_response_headers"
_PARSED = "_parsed"


class _Wire(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True, protected_namespaces=())


def attach_response(obj: _FromResponse, response: httpx.Response) -> None:
    """Keep ``response``'s headers on ``obj`` (for ``request_id`` and ``rate_limits``).

    Stored in the instance's ``__dict__`` beside the fields, not as a pydantic
    ``PrivateAttr``: a private attribute costs every validation of the model
    ~4 us (measured), this costs ~0.4 us, and dumps and equality ignore it.
    """
    object.__setattr__(obj, _HEADERS, response.headers)


class _FromResponse(_Wire):
    """A whole response object: also carries the request id and the rate-limit headers."""

    @property
    def response_headers(self) -> httpx.Headers:
        """The HTTP headers of the response this came from (empty if built by hand)."""
        headers = self.__dict__.get(_HEADERS)
        return headers if headers is not None else httpx.Headers()

    @property
    def request_id(self) -> str | None:
        """The server's ``x-request-id`` (quote it when you report a problem), if sent."""
        headers = self.__dict__.get(_HEADERS)
        return headers.get("x-request-id") if headers is not None else None

    @property
    def rate_limits(self) -> dict[str, str]:
        """The ``x-ratelimit-*`` headers, without the prefix: ``{"remaining-requests": "59"}``."""
        headers = self.__dict__.get(_HEADERS)
        if headers is None:
            return {}
        return {
            k[12:]: v for k, v in headers.items() if k.lower().startswith("x-ratelimit-")
        }


class PromptTokensDetails(_Wire):
    cached_tokens: int | None = None


class CompletionTokensDetails(_Wire):
    reasoning_tokens: int | None = None


class Usage(_Wire):
    """Tokens of one answer. A Responses API usage (``input_tokens``, ``output_tokens``,
    their details) reads as the same counts: a batch of ``/v1/responses`` lines is
    counted and priced like any other."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    prompt_tokens_details: PromptTokensDetails | None = None
    completion_tokens_details: CompletionTokensDetails | None = None

    @model_validator(mode="before")
    @classmethod
    def _responses_shape(cls, data: Any) -> Any:
        if type(data) is dict and "input_tokens" in data and "prompt_tokens" not in data:
            data = dict(data)
            data["prompt_tokens"] = data.get("input_tokens") or 0
            data["completion_tokens"] = data.get("output_tokens") or 0
            if not data.get("total_tokens"):
                data["total_tokens"] = data["prompt_tokens"] + data["completion_tokens"]
            details = data.get("input_tokens_details")
            if isinstance(details, dict):
                data["prompt_tokens_details"] = details
            details = data.get("output_tokens_details")
            if isinstance(details, dict):
                data["completion_tokens_details"] = details
        return data


class FunctionCall(_Wire):
    name: str | None = None
    arguments: str | None = None


class ToolCall(_Wire):
    id: str | None = None
    type: str | None = "function"
    function: FunctionCall | None = None


def _one_reasoning(data: Any) -> Any:
    """``reasoning`` (vLLM, newer servers) read as ``reasoning_content`` (DeepSeek, relays).

    Servers name a message's (or delta's) reasoning either way; one name, whichever
    was sent. A server that sends both with the same text is read once; a
    ``reasoning`` that is not a string (some other feature) is left as it is.
    """
    if isinstance(data, dict) and "reasoning" in data:
        reasoning = data["reasoning"]
        current = data.get("reasoning_content")
        if isinstance(reasoning, str) and (current is None or current == reasoning):
            data = {k: v for k, v in data.items() if k != "reasoning"}
            data["reasoning_content"] = reasoning
        elif reasoning is None:
            data = {k: v for k, v in data.items() if k != "reasoning"}
    return data


class ChatCompletionMessage(_Wire):
    """An answer's message. ``reasoning_content``: the model's reasoning, whether the server
    called it ``reasoning_content`` or ``reasoning``."""

    role: str = "assistant"
    content: str | None = None
    refusal: str | None = None
    tool_calls: list[ToolCall] | None = None
    reasoning_content: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _reasoning_name(cls, data: Any) -> Any:
        return _one_reasoning(data)


class Choice(_Wire):
    index: int = 0
    message: ChatCompletionMessage = Field(default_factory=ChatCompletionMessage)
    finish_reason: str | None = None
    logprobs: Any = None


class ChatCompletion(_FromResponse):
    id: str = ""
    object: str = "chat.completion"
    created: int = 0
    model: str = ""
    choices: list[Choice] = Field(default_factory=list)
    usage: Usage | None = None
    system_fingerprint: str | None = None

    @property
    def text(self) -> str:
        """The first choice's message text ('' when there is none)."""
        if not self.choices:
            return ""
        return self.choices[0].message.content or ""


ModelT = TypeVar("ModelT", bound=BaseModel)


class ParsedChatCompletion(ChatCompletion, Generic[ModelT]):
    """A completion asked for with ``response_format=SomeModel``: ``.parsed`` is a ``SomeModel``.

    ``chat.create`` returns one only when the answer parsed; a refusal raises
    :class:`~holysheep_async.RefusalError`, an answer that is not valid for the
    model raises :class:`~holysheep_async.StructuredOutputError` (both carry
    the completion).
    """

    @property
    def parsed(self) -> ModelT:
        """The first choice's answer, validated into the ``response_format`` model."""
        parsed: ModelT = self.__dict__[_PARSED]
        return parsed


class ToolCallDelta(_Wire):
    index: int = 0
    id: str | None = None
    type: str | None = None
    function: FunctionCall | None = None


class ChoiceDelta(_Wire):
    """A chunk's delta. ``reasoning_content``: reasoning, under either name (as the message)."""

    role: str | None = None
    content: str | None = None
    refusal: str | None = None
    tool_calls: list[ToolCallDelta] | None = None
    reasoning_content: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _reasoning_name(cls, data: Any) -> Any:
        return _one_reasoning(data)


class ChunkChoice(_Wire):
    index: int = 0
    delta: ChoiceDelta = Field(default_factory=ChoiceDelta)
    finish_reason: str | None = None
    logprobs: Any = None


class ChatCompletionChunk(_Wire):
    id: str = ""
    object: str = "chat.completion.chunk"
    created: int = 0
    model: str = ""
    choices: list[ChunkChoice] = Field(default_factory=list)
    usage: Usage | None = None
    system_fingerprint: str | None = None


class FileObject(_FromResponse):
    id: str
    object: str = "file"
    bytes: int | None = None
    created_at: int = 0
    filename: str | None = None
    purpose: str | None = None
    status: str | None = None


class FileDeleted(_FromResponse):
    id: str
    object: str = "file"
    deleted: bool = False


class Model(_FromResponse):
    """One model of ``client.models.list()`` / ``retrieve()``."""

    id: str
    object: str = "model"
    created: int = 0
    owned_by: str = ""


class Embedding(_Wire):
    """One vector: a list of floats (``encoding_format="float"``) or base64 of float32s."""

    object: str = "embedding"
    index: int = 0
    embedding: list[float] | str

    def vector(self) -> list[float]:
        """The vector as floats, whichever encoding the server sent."""
        if isinstance(self.embedding, str):
            raw = base64.b64decode(self.embedding)
            return list(struct.unpack(f"<{len(raw) // 4}f", raw))  # little-endian float32
        return self.embedding


class EmbeddingsResponse(_FromResponse):
    object: str = "list"
    data: list[Embedding] = Field(default_factory=list)
    model: str = ""
    usage: Usage | None = None

    @property
    def vectors(self) -> list[list[float]]:
        """Every input's vector as floats, in input order."""
        return [e.vector() for e in sorted(self.data, key=lambda e: e.index)]


class BatchRequestCounts(_Wire):
    total: int = 0
    completed: int = 0
    failed: int = 0


class BatchError(_Wire):
    code: str | None = None
    message: str | None = None
    param: str | None = None
    line: int | None = None


class BatchErrors(_Wire):
    object: str = "list"
    data: list[BatchError] = Field(default_factory=list)


BatchStatus = Literal[
    "validating",
    "failed",
    "in_progress",
    "finalizing",
    "completed",
    "expired",
    "cancelling",
    "cancelled",
]

FINAL_STATUSES = frozenset({"failed", "completed", "expired", "cancelled"})


class Batch(_FromResponse):
    """The OpenAI batch object, plus ``progress`` and ``is_final``."""

    id: str
    object: str = "batch"
    endpoint: str = "/v1/chat/completions"
    errors: BatchErrors | None = None
    input_file_id: str | None = None
    completion_window: str = "24h"
    status: str
    output_file_id: str | None = None
    error_file_id: str | None = None
    created_at: int = 0
    in_progress_at: int | None = None
    expires_at: int | None = None
    finalizing_at: int | None = None
    completed_at: int | None = None
    failed_at: int | None = None
    expired_at: int | None = None
    cancelling_at: int | None = None
    cancelled_at: int | None = None
    request_counts: BatchRequestCounts | None = None
    metadata: dict[str, str] | None = None

    @property
    def is_final(self) -> bool:
        """True once the batch can no longer change (completed, failed, expired, cancelled)."""
        return self.status in FINAL_STATUSES

    @property
    def progress(self) -> float:
        """Share of requests done (completed or failed), 0-100; 100 once completed."""
        if self.status == "completed":
            return 100.0
        counts = self.request_counts
        if counts is None or counts.total <= 0:
            return 0.0
        return min(100.0, 100.0 * (counts.completed + counts.failed) / counts.total)
