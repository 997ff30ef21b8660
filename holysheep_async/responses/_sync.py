"""``Client.responses``: the Responses API, blocking (the sync client's resource).

The same methods as ``AsyncClient.responses``, run in the sync client's loop
thread (see :mod:`holysheep_async._blocking`); ``create`` and ``stream`` are
written out for their overloads (the result type follows ``text_format``).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, Literal, TypeVar, overload

import httpx
from pydantic import BaseModel
from typing_extensions import Unpack

from .._blocking import SyncResource, SyncStream, blocking, blocking_iter, iterate
from ..models import ModelT
from ..types import Headers, Query, Timeout
from ._events import ResponseStreamEvent
from ._models import ParsedResponse, Response, ResponseUsage
from ._resource import Responses
from ._stream import ParsedResponseStream, ResponseStream, StreamMetrics
from ._types import ResponseInputParam, ResponsesParams

__all__ = ["SyncParsedResponseStream", "SyncResponseStream", "SyncResponses"]

M = TypeVar("M", bound=BaseModel)
_S = TypeVar("_S", bound=ResponseStream)


class SyncResponseStream(SyncStream[_S]):
    """A :class:`ResponseStream`, blocking: ``with client.responses.stream(...) as s: for t in s``.

    Leaving ``with``, breaking out of the loop or Ctrl-C closes the connection.
    """

    def events(self) -> Iterator[ResponseStreamEvent]:
        """The typed server events (see :meth:`ResponseStream.events`)."""
        return iterate(self._portal, self._stream.events(), self._stream.aclose)

    @property
    def text(self) -> str:
        return self._stream.text

    @property
    def response(self) -> Response:
        return self._stream.response

    @property
    def reasoning(self) -> str:
        return self._stream.reasoning

    @property
    def usage(self) -> ResponseUsage | None:
        return self._stream.usage

    @property
    def id(self) -> str | None:
        return self._stream.id

    @property
    def sequence_number(self) -> int | None:
        return self._stream.sequence_number

    @property
    def metrics(self) -> StreamMetrics:
        return self._stream.metrics

    @property
    def request_id(self) -> str | None:
        return self._stream.request_id

    @property
    def http_response(self) -> httpx.Response | None:
        return self._stream.http_response



class SyncParsedResponseStream(SyncResponseStream[ParsedResponseStream[ModelT]]):
    """A stream with ``text_format=SomeModel``: ``.parsed`` once it has ended."""

    @property
    def parsed(self) -> ModelT:
        return self._stream.parsed


class SyncResponses(SyncResource):
    """``client.responses``, blocking."""

    _async: Responses

    retrieve = blocking(Responses.retrieve)
    cancel = blocking(Responses.cancel)
    delete = blocking(Responses.delete)
    wait = blocking(Responses.wait)
    input_items = blocking_iter(Responses.input_items)

    @property
    def fallback_reason(self) -> str | None:
        """Why requests go as chat completions on this server (None: they do not)."""
        return self._async.fallback_reason

    @overload
    def create(
        self,
        *,
        model: str,
        input: str | ResponseInputParam | None = None,
        text_format: type[M],
        extra_headers: Headers | None = None,
        extra_query: Query | None = None,
        extra_body: Mapping[str, object] | None = None,
        timeout: Timeout = None,
        **params: Unpack[ResponsesParams],
    ) -> ParsedResponse[M]: ...

    @overload
    def create(
        self,
        *,
        model: str,
        input: str | ResponseInputParam | None = None,
        text_format: None = None,
        extra_headers: Headers | None = None,
        extra_query: Query | None = None,
        extra_body: Mapping[str, object] | None = None,
        timeout: Timeout = None,
        **params: Unpack[ResponsesParams],
    ) -> Response: ...

    def create(self, **kwargs: Any) -> Response:
        """One response (see ``AsyncClient.responses.create``)."""
        result: Response = self._portal.run(lambda: self._async.create(**kwargs))
        return result

    @overload
    def stream(
        self,
        *,
        model: str,
        input: str | ResponseInputParam | None = None,
        text_format: type[M],
        idle_timeout: float | Literal["client"] | None = "client",
        extra_headers: Headers | None = None,
        extra_query: Query | None = None,
        extra_body: Mapping[str, object] | None = None,
        timeout: Timeout = None,
        **params: Unpack[ResponsesParams],
    ) -> SyncParsedResponseStream[M]: ...

    @overload
    def stream(
        self,
        *,
        model: str,
        input: str | ResponseInputParam | None = None,
        text_format: None = None,
        idle_timeout: float | Literal["client"] | None = "client",
        extra_headers: Headers | None = None,
        extra_query: Query | None = None,
        extra_body: Mapping[str, object] | None = None,
        timeout: Timeout = None,
        **params: Unpack[ResponsesParams],
    ) -> SyncResponseStream[ResponseStream]: ...

    def stream(self, **kwargs: Any) -> SyncResponseStream[Any]:
        """A streamed response (see ``AsyncClient.responses.stream``); sent when iterated."""
        stream = self._async.stream(**kwargs)  # checks its arguments at once, sends nothing
        return self._wrap(stream)

    def resume(self, response_id: str, **kwargs: Any) -> SyncResponseStream[Any]:
        """Stream a background response already created (see ``AsyncClient.responses.resume``)."""
        return self._wrap(self._async.resume(response_id, **kwargs))

    def _wrap(self, stream: ResponseStream) -> SyncResponseStream[Any]:
        if isinstance(stream, ParsedResponseStream):
            return SyncParsedResponseStream(stream, self._portal)
        return SyncResponseStream(stream, self._portal)
