"""``client.responses``: the Responses API (``POST /responses``), on every relay.

- :mod:`._resource`: :class:`Responses`, the methods (create, stream, retrieve,
  cancel, delete, input_items, wait) and the memory of the chat fallback;
- :mod:`._request`: building a request body, reading an answer (pure);
- :mod:`._models`: ``Response`` and its typed items; :mod:`._types`: the typed
  request parameters; :mod:`._events`: the typed stream events;
- :mod:`._accumulate`: a response built from its stream's events (pure);
- :mod:`._state`: the stream protocol the stream core reads with (pure);
  :mod:`._stream`: :class:`ResponseStream`, the surface on the stream core;
- :mod:`._sync`: the sync client's ``client.responses``;
- :mod:`._fallback`, :mod:`._fallback_stream`: a request as a chat completion,
  the answer (whole or streamed) back as a response (pure).

A wing: it uses the requester, the models, the errors, the limits and the
stream core, never the chat or batches wings.
"""

from ._events import *  # noqa: F403
from ._events import __all__ as _events_all
from ._models import (
    IncompleteDetails,
    ParsedResponse,
    ReasoningSummary,
    Response,
    ResponseDeleted,
    ResponseError,
    ResponseFunctionCallOutputItem,
    ResponseFunctionToolCall,
    ResponseInputText,
    ResponseItem,
    ResponseItemList,
    ResponseOutputMessage,
    ResponseOutputRefusal,
    ResponseOutputText,
    ResponseReasoningItem,
    ResponseUsage,
    UnknownContent,
    UnknownItem,
)
from ._resource import Responses
from ._stream import ParsedResponseStream, ResponseStream

__all__ = [
    "IncompleteDetails",
    "ParsedResponse",
    "ParsedResponseStream",
    "ReasoningSummary",
    "Response",
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
    "ResponseStream",
    "ResponseUsage",
    "Responses",
    "UnknownContent",
    "UnknownItem",
    *_events_all,
]
