"""Pydantic models of the wire objects (chat completions, chunks, files, batches).

Servers differ: relays and inference engines leave fields out, add their own,
or send ``null`` where OpenAI sends a value. So every model keeps unknown
fields (``extra="allow"``, reachable as attributes and through
``model_dump()``), and only what the protocol cannot do without is required.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

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
    "FileObject",
    "Usage",
]


class _Wire(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True, protected_namespaces=())


class PromptTokensDetails(_Wire):
    cached_tokens: int | None = None


class CompletionTokensDetails(_Wire):
    reasoning_tokens: int | None = None


class Usage(_Wire):
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    prompt_tokens_details: PromptTokensDetails | None = None
    completion_tokens_details: CompletionTokensDetails | None = None


class FunctionCall(_Wire):
    name: str | None = None
    arguments: str | None = None


class ToolCall(_Wire):
    id: str | None = None
    type: str | None = "function"
    function: FunctionCall | None = None


class ChatCompletionMessage(_Wire):
    role: str = "assistant"
    content: str | None = None
    refusal: str | None = None
    tool_calls: list[ToolCall] | None = None
    reasoning_content: str | None = None


class Choice(_Wire):
    index: int = 0
    message: ChatCompletionMessage = Field(default_factory=ChatCompletionMessage)
    finish_reason: str | None = None
    logprobs: Any = None


class ChatCompletion(_Wire):
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


class ToolCallDelta(_Wire):
    index: int = 0
    id: str | None = None
    type: str | None = None
    function: FunctionCall | None = None


class ChoiceDelta(_Wire):
    role: str | None = None
    content: str | None = None
    refusal: str | None = None
    tool_calls: list[ToolCallDelta] | None = None
    reasoning_content: str | None = None


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


class FileObject(_Wire):
    id: str
    object: str = "file"
    bytes: int | None = None
    created_at: int = 0
    filename: str | None = None
    purpose: str | None = None
    status: str | None = None


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


class Batch(_Wire):
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
