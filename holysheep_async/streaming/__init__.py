"""Streams: SSE bytes -> events -> protocol items -> what the caller iterates.

A :class:`ChatStream` is what ``client.chat.stream(...)`` returns. It is an
async iterator of text deltas and an async context manager::

    async with client.chat.stream(model="gpt-4o", messages=msgs) as stream:
        async for text in stream:
            print(text, end="", flush=True)
    print(stream.metrics.ttft, stream.usage)

What it guarantees:

- Failures before anything was yielded (connection errors, timeouts, 429,
  5xx, a stall, an "overloaded" or "rate limited" error object inside the
  stream, a stream cut short) are retried under the client's retry policy,
  invisibly. One budget (``max_retries``) covers both the retries of the
  request and the retries of the stream.
- After something was yielded nothing is retried silently and nothing is
  yielded twice: the error raised carries ``partial_text``. With
  ``resume=...`` a broken stream is continued by a follow-up request that
  sends the partial answer as an assistant prefix (see :data:`RESUME_STRATEGIES`).
- The idle timeout bounds the silence between data events, counted from the
  response headers; pings and comments do not reset it. A stall raises
  :class:`StreamIdleTimeout`.
- A stream that ends with neither ``[DONE]`` nor a finish reason raises
  :class:`IncompleteStreamError`: never a silently shorter answer. One that
  has the finish reason but no ``[DONE]`` is complete: ``stream.done`` stays
  False and a warning is logged. So is one whose connection breaks after the
  finish reason, inside the usage event: that unfinished last event is
  discarded (the SSE standard's rule) and ``usage`` stays None. Broken inside
  an event before the finish reason, the stream raises
  :class:`APIConnectionError` (with ``partial_text``).
- Leaving ``async with``, breaking out of the loop, or cancelling the
  enclosing scope closes the HTTP response. (Without ``async with``, a loop
  left early is closed when the iterator is garbage collected: at once on
  CPython under asyncio; trio does it too but warns. Use ``async with``.)

Beyond the text (docs/agents.md): ``stream.reasoning`` (``delta.reasoning_content``
or ``delta.reasoning``), ``stream.tool_calls`` (assembled from fragments, robust to a
repeated index, a missing index, every call at index 0), ``stream.events()`` (typed
events), ``stream.final_completion()`` (the ``ChatCompletion`` ``chat.create``
returns for the same answer). A stream that breaks inside a tool call after
something was yielded is not resumed: the error carries ``partial_text``,
``partial_reasoning`` and ``partial_tool_calls``.

The text path builds no pydantic object per chunk: one JSON decode and a few
dict lookups. :meth:`ChatStream.chunks` validates each chunk into a
:class:`ChatCompletionChunk`, which costs more.

The package: a protocol-neutral core, and chat on top of it
------------------------------------------------------------

``_protocol``  the plug: :class:`~._protocol.StreamProtocol` (below), the
               event errors (:class:`~._protocol.Errors`), lenient JSON.
``_wire``      one attempt: send via the requester, read under the idle deadline,
               hand each data event to the protocol, drain, close. Bytes and SSE
               events, no chat. Declares what it needs from the requester as
               :class:`~._wire.Requesting` (a ``typing.Protocol``).
``_policy``    retry / resume decisions, what is retryable, resume strategies,
               the stream's timeouts.
``_metrics``   :class:`StreamMetrics`.
``_core``      :class:`~._core.StreamCore`: the attempts of one stream (a Wire
               each; retry, resume or raise), ``async with`` / ``aclose``, the
               response and its headers. Neutral: a stream class subclasses it.
``_chat``      :class:`~._chat.ChatState`: ``chat.completion.chunk`` parsing and
               accumulation (text, reasoning, refusal, tool calls, logprobs, per
               choice; the final completion). Pure (dicts in, state out), tested
               without a network. ``_chat_events``: the typed events of
               ``stream.events()`` and :class:`StreamedToolCall`.
``_stream``    :class:`ChatStream`: the core with a ChatState; the text and chunk
               iterators and the properties.

Imports go down that list (``_stream`` -> ``_core`` -> ``_wire`` / ``_policy``
-> ``_protocol``; ``_chat`` -> ``_protocol``); nothing in the package names a
class of the client above it.

A second protocol (the Responses API's typed events) plugs in as chat does:

1. a state class satisfying :class:`~._protocol.StreamProtocol`:
   ``take(obj, data)`` (one decoded data event -> the item to yield; raise the
   ``StreamError`` of an error event, built with :class:`~._protocol.Errors`),
   ``whole(obj, data)`` (the server sent one JSON body instead of a stream),
   ``complete()`` (is the answer finished? decides what a body that ends or
   breaks without ``[DONE]`` is), ``partial_text()`` (what errors carry and a
   resume continues), ``restart()`` (another attempt follows), ``resumable()``
   (may a partly yielded answer be continued?), and the attributes
   ``whole_name`` / ``ending`` (words for errors) and ``done_marker`` (is
   ``data: [DONE]`` expected at the end?);
2. a surface subclassing :class:`~._core.StreamCore` that sets ``_state``,
   yields from ``_next_batch()`` in its generators (setting ``_yielded`` when
   the caller got something: from then on a failure is resumed or raised, never
   retried from scratch), and overrides ``_start_trace`` / ``_ended`` /
   ``_retry_open`` as it needs.

Named events, ``event: error``, pings, keep-alives and ``[DONE]`` are handled
by the core for every protocol (see ``_protocol``).
"""

from ._chat import ChatState as ChatState
from ._chat_events import (
    ChatStreamEvent,
    ReasoningDelta,
    RefusalDelta,
    StreamDone,
    StreamedToolCall,
    TextDelta,
    ToolCallArgumentsDelta,
    ToolCallDone,
)
from ._core import StreamCore as StreamCore
from ._metrics import StreamMetrics
from ._policy import RESUME_STRATEGIES, ResumeStrategy
from ._policy import _stream_timeout as _stream_timeout
from ._protocol import MALFORMED as MALFORMED
from ._protocol import StreamProtocol as StreamProtocol
from ._stream import ChatStream

__all__ = [
    "RESUME_STRATEGIES",
    "ChatStream",
    "ChatStreamEvent",
    "ReasoningDelta",
    "RefusalDelta",
    "ResumeStrategy",
    "StreamDone",
    "StreamMetrics",
    "StreamedToolCall",
    "TextDelta",
    "ToolCallArgumentsDelta",
    "ToolCallDone",
]
