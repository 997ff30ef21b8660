"""holysheep_async: an async-first client for HolySheep and any OpenAI-compatible API.

>>> from holysheep_async import AsyncClient
>>> async with AsyncClient() as client:  # doctest: +SKIP
...     async with client.chat.stream(model="gpt-4o", messages=[...]) as stream:
...         async for text in stream:
...             print(text, end="")
"""

from ._structured import ParsedChatStream
from ._version import __version__
from .batches import BatchReport, RunProgress
from .client import DEFAULT_BASE_URL, AsyncClient
from .errors import (
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    BatchFailedError,
    BatchTimeoutError,
    BatchValidationError,
    ConfigurationError,
    ConflictError,
    HolySheepError,
    IncompleteStreamError,
    InternalServerError,
    InvalidResponseError,
    NotFoundError,
    PermissionDeniedError,
    QuotaExceededError,
    RateLimitError,
    RefusalError,
    ResponseFailedError,
    ResponsesNotSupportedError,
    ResponseTimeoutError,
    SharedLimitsError,
    StreamError,
    StreamIdleTimeout,
    StructuredOutputError,
)
from .jsonl import BatchRequest, BatchResult, ValidationReport
from .limits import Limiter
from .limits._shared_config import SharedLimits
from .models import (
    Batch,
    BatchRequestCounts,
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionMessage,
    Choice,
    ChoiceDelta,
    ChunkChoice,
    Embedding,
    EmbeddingsResponse,
    FileDeleted,
    FileObject,
    Model,
    ParsedChatCompletion,
    Usage,
)
from .pricing import MonthlyEstimate, PriceTable, UnknownModelError, UsageTally
from .responses import (
    ParsedResponse,
    ParsedResponseStream,
    Response,
    ResponseFunctionToolCall,
    ResponseOutputMessage,
    ResponseReasoningItem,
    ResponseStream,
    ResponseUsage,
)
from .retry import RetryPolicy
from .streaming import ChatStream, StreamMetrics
from .sync import Client, SyncChatStream, SyncParsedChatStream

__all__ = [
    "APIConnectionError",
    "APIStatusError",
    "APITimeoutError",
    "AsyncClient",
    "AuthenticationError",
    "BadRequestError",
    "Batch",
    "BatchFailedError",
    "BatchReport",
    "BatchRequest",
    "BatchRequestCounts",
    "BatchResult",
    "BatchTimeoutError",
    "BatchValidationError",
    "ChatCompletion",
    "ChatCompletionChunk",
    "ChatCompletionMessage",
    "ChatStream",
    "Choice",
    "ChoiceDelta",
    "ChunkChoice",
    "Client",
    "ConfigurationError",
    "ConflictError",
    "DEFAULT_BASE_URL",
    "Embedding",
    "EmbeddingsResponse",
    "FileDeleted",
    "FileObject",
    "HolySheepError",
    "IncompleteStreamError",
    "InternalServerError",
    "InvalidResponseError",
    "Limiter",
    "Model",
    "MonthlyEstimate",
    "NotFoundError",
    "ParsedChatCompletion",
    "ParsedChatStream",
    "ParsedResponse",
    "ParsedResponseStream",
    "PermissionDeniedError",
    "PriceTable",
    "QuotaExceededError",
    "RateLimitError",
    "RefusalError",
    "Response",
    "ResponseFailedError",
    "ResponseFunctionToolCall",
    "ResponseOutputMessage",
    "ResponseReasoningItem",
    "ResponseStream",
    "ResponseTimeoutError",
    "ResponseUsage",
    "ResponsesNotSupportedError",
    "RetryPolicy",
    "RunProgress",
    "SharedLimits",
    "SharedLimitsError",
    "StreamError",
    "StreamIdleTimeout",
    "StreamMetrics",
    "StructuredOutputError",
    "SyncChatStream",
    "SyncParsedChatStream",
    "UnknownModelError",
    "Usage",
    "UsageTally",
    "ValidationReport",
    "__version__",
]
