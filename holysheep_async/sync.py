"""``Client``: the same surface as ``AsyncClient``, blocking, for scripts and notebooks.

Not a second implementation: a ``Client`` holds an ``AsyncClient`` and runs
it in one background event loop thread (see :mod:`._blocking`)::

    with Client() as client:
        completion = client.chat.create(model="gpt-4o", messages=[...])
        with client.chat.stream(model="gpt-4o", messages=[...]) as stream:
            for text in stream:
                print(text, end="", flush=True)

Any thread may call it (calls from several threads run concurrently in the
loop, under the client's limits), a thread running an event loop of its own
too (a Jupyter notebook's cells); only a callback running in the client's own
loop thread is refused. The loop thread starts at the first call. A client
made before ``os.fork()`` works in the children (Celery prefork, ``gunicorn
--preload``, ``multiprocessing``): each gets its own loop thread and fresh
connections (see :mod:`._fork`). Ctrl-C during a call or a stream cancels it
and closes its connection.
"""

from __future__ import annotations

import os
import weakref
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, TypeVar, overload

import httpx
from pydantic import BaseModel
from typing_extensions import Self, Unpack

from ._blocking import Portal, SyncResource, SyncStream, blocking, blocking_iter, iterate
from ._body import DEFAULT_MAX_RESPONSE_BYTES
from ._structured import ParsedChatStream
from ._tool_run import ToolResult, ToolRun, ToolRunStream
from .batches import Batches
from .chat import ToolLike
from .client import AsyncClient
from .limits import Limits
from .limits._shared_config import SharedLimits
from .models import ChatCompletion, ChatCompletionChunk, ModelT, ParsedChatCompletion, Usage
from .pricing import UsageTally
from .resources import Embeddings, Files, Models
from .responses._sync import SyncResponses
from .retry import RetryPolicy
from .streaming import (
    ChatStream,
    ChatStreamEvent,
    ResumeStrategy,
    StreamedToolCall,
    StreamMetrics,
)
from .types import (
    ChatCompletionMessageParam,
    ChatParams,
    Headers,
    Query,
    ResponseFormatParam,
    Timeout,
    ToolLoopParams,
)

__all__ = ["Client", "SyncChatStream", "SyncParsedChatStream", "SyncToolRunStream"]

M = TypeVar("M", bound=BaseModel)
_S = TypeVar("_S", bound=ChatStream)


class SyncChatStream(SyncStream[_S]):
    """A :class:`ChatStream`, blocking: ``with client.chat.stream(...) as s: for text in s``.

    Leaving ``with``, breaking out of the loop or Ctrl-C closes the connection.
    """

    def chunks(self) -> Iterator[ChatCompletionChunk]:
        """The stream as typed chunks (see :meth:`ChatStream.chunks`)."""
        return iterate(self._portal, self._stream.chunks(), self._stream.aclose)

    def events(self) -> Iterator[ChatStreamEvent]:
        """The stream as typed events (see :meth:`ChatStream.events`)."""
        return iterate(self._portal, self._stream.events(), self._stream.aclose)

    def final_completion(self) -> ChatCompletion:
        """The whole answer as a ``ChatCompletion`` (see :meth:`ChatStream.final_completion`)."""
        return self._stream.final_completion()

    @property
    def reasoning(self) -> str:
        return self._stream.reasoning

    @property
    def tool_calls(self) -> list[StreamedToolCall]:
        return self._stream.tool_calls

    @property
    def text(self) -> str:
        return self._stream.text

    @property
    def finish_reason(self) -> str | None:
        return self._stream.finish_reason

    @property
    def usage(self) -> Usage | None:
        return self._stream.usage

    @property
    def metrics(self) -> StreamMetrics:
        return self._stream.metrics

    @property
    def refusal(self) -> str | None:
        return self._stream.refusal

    @property
    def request_id(self) -> str | None:
        return self._stream.request_id

    @property
    def rate_limits(self) -> dict[str, str]:
        return self._stream.rate_limits

    @property
    def id(self) -> str | None:
        return self._stream.id

    @property
    def model(self) -> str | None:
        return self._stream.model

    @property
    def done(self) -> bool:
        return self._stream.done

    @property
    def response(self) -> httpx.Response | None:
        return self._stream.response



class SyncParsedChatStream(SyncChatStream[ParsedChatStream[ModelT]]):
    """A stream with ``response_format=SomeModel``: ``.parsed`` once it has ended."""

    @property
    def parsed(self) -> ModelT:
        return self._stream.parsed


class SyncToolRunStream:
    """``client.chat.stream_tools(...)``, blocking: ``with ... as run: for event in run``.

    The events and ``result`` of :class:`~holysheep_async.ToolRunStream`; leaving
    ``with`` or the loop early closes the current stream.
    """

    def __init__(self, run: ToolRunStream, portal: Portal) -> None:
        self._run = run
        self._portal = portal

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __iter__(self) -> Iterator[ChatStreamEvent | ToolResult]:
        return iterate(self._portal, self._run.__aiter__(), self._run.aclose)

    def close(self) -> None:
        """Close the current stream now (idempotent)."""
        if not self._portal.closed:
            self._portal.run(self._run.aclose)

    @property
    def result(self) -> ToolRun:
        return self._run.result

    @property
    def messages(self) -> list[dict[str, Any]]:
        return self._run.messages


class SyncChat(SyncResource):
    """``client.chat``, blocking."""

    _async: Any

    @overload
    def create(
        self,
        *,
        model: str,
        messages: Iterable[ChatCompletionMessageParam],
        response_format: type[M],
        extra_headers: Headers | None = None,
        extra_query: Query | None = None,
        extra_body: Mapping[str, object] | None = None,
        timeout: Timeout = None,
        **params: Unpack[ChatParams],
    ) -> ParsedChatCompletion[M]: ...

    @overload
    def create(
        self,
        *,
        model: str,
        messages: Iterable[ChatCompletionMessageParam],
        response_format: ResponseFormatParam | None = None,
        extra_headers: Headers | None = None,
        extra_query: Query | None = None,
        extra_body: Mapping[str, object] | None = None,
        timeout: Timeout = None,
        **params: Unpack[ChatParams],
    ) -> ChatCompletion: ...

    def create(self, **kwargs: Any) -> ChatCompletion:
        """One chat completion (see ``AsyncClient.chat.create``)."""
        result: ChatCompletion = self._portal.run(lambda: self._async.create(**kwargs))
        return result

    @overload
    def stream(
        self,
        *,
        model: str,
        messages: Iterable[ChatCompletionMessageParam],
        response_format: type[M],
        include_usage: bool = True,
        idle_timeout: float | Literal["client"] | None = "client",
        resume: bool | str | ResumeStrategy = False,
        extra_headers: Headers | None = None,
        extra_query: Query | None = None,
        extra_body: Mapping[str, object] | None = None,
        timeout: Timeout = None,
        **params: Unpack[ChatParams],
    ) -> SyncParsedChatStream[M]: ...

    @overload
    def stream(
        self,
        *,
        model: str,
        messages: Iterable[ChatCompletionMessageParam],
        response_format: ResponseFormatParam | None = None,
        include_usage: bool = True,
        idle_timeout: float | Literal["client"] | None = "client",
        resume: bool | str | ResumeStrategy = False,
        extra_headers: Headers | None = None,
        extra_query: Query | None = None,
        extra_body: Mapping[str, object] | None = None,
        timeout: Timeout = None,
        **params: Unpack[ChatParams],
    ) -> SyncChatStream[ChatStream]: ...

    def stream(self, **kwargs: Any) -> SyncChatStream[Any]:
        """A streamed chat completion (see ``AsyncClient.chat.stream``); sent when iterated."""
        stream = self._async.stream(**kwargs)  # checks its arguments at once, sends nothing
        if isinstance(stream, ParsedChatStream):
            return SyncParsedChatStream(stream, self._portal)
        return SyncChatStream(stream, self._portal)

    def run_tools(
        self,
        *,
        model: str,
        messages: Iterable[ChatCompletionMessageParam],
        tools: Iterable[ToolLike],
        max_turns: int = 10,
        extra_headers: Headers | None = None,
        extra_query: Query | None = None,
        extra_body: Mapping[str, object] | None = None,
        timeout: Timeout = None,
        **params: Unpack[ToolLoopParams],
    ) -> ToolRun:
        """The tool loop (see ``AsyncClient.chat.run_tools``). Sync tools run in a worker
        thread, async ones in the client's loop."""
        kwargs: dict[str, Any] = dict(
            model=model,
            messages=messages,
            tools=tools,
            max_turns=max_turns,
            extra_headers=extra_headers,
            extra_query=extra_query,
            extra_body=extra_body,
            timeout=timeout,
            **params,
        )
        result: ToolRun = self._portal.run(lambda: self._async.run_tools(**kwargs))
        return result

    def stream_tools(
        self,
        *,
        model: str,
        messages: Iterable[ChatCompletionMessageParam],
        tools: Iterable[ToolLike],
        max_turns: int = 10,
        include_usage: bool = True,
        idle_timeout: float | Literal["client"] | None = "client",
        extra_headers: Headers | None = None,
        extra_query: Query | None = None,
        extra_body: Mapping[str, object] | None = None,
        timeout: Timeout = None,
        **params: Unpack[ToolLoopParams],
    ) -> SyncToolRunStream:
        """The tool loop, streamed (see ``AsyncClient.chat.stream_tools``)."""
        run = self._async.stream_tools(
            model=model,
            messages=messages,
            tools=tools,
            max_turns=max_turns,
            include_usage=include_usage,
            idle_timeout=idle_timeout,
            extra_headers=extra_headers,
            extra_query=extra_query,
            extra_body=extra_body,
            timeout=timeout,
            **params,
        )
        return SyncToolRunStream(run, self._portal)


class SyncBatches(SyncResource):
    """``client.batches``, blocking (the same methods as ``AsyncClient.batches``)."""

    upload = blocking(Batches.upload)
    submit = blocking(Batches.submit)
    create = blocking(Batches.create)
    retrieve = blocking(Batches.retrieve)
    cancel = blocking(Batches.cancel)
    wait = blocking(Batches.wait)
    download = blocking(Batches.download)
    run = blocking(Batches.run)
    results = blocking_iter(Batches.results)
    list = blocking_iter(Batches.list)


class SyncModels(SyncResource):
    """``client.models``, blocking."""

    list = blocking(Models.list)
    retrieve = blocking(Models.retrieve)


class SyncEmbeddings(SyncResource):
    """``client.embeddings``, blocking."""

    create = blocking(Embeddings.create)


class SyncFiles(SyncResource):
    """``client.files``, blocking."""

    _async: Any

    create = blocking(Files.create)
    retrieve = blocking(Files.retrieve)
    list = blocking(Files.list)
    delete = blocking(Files.delete)

    @overload
    def content(
        self,
        file_id: str,
        path: None = None,
        *,
        extra_headers: Headers | None = None,
        extra_query: Query | None = None,
        extra_body: Mapping[str, object] | None = None,
        timeout: Timeout = None,
    ) -> bytes: ...

    @overload
    def content(
        self,
        file_id: str,
        path: str | os.PathLike[str],
        *,
        extra_headers: Headers | None = None,
        extra_query: Query | None = None,
        extra_body: Mapping[str, object] | None = None,
        timeout: Timeout = None,
    ) -> Path: ...

    def content(
        self, file_id: str, path: str | os.PathLike[str] | None = None, **kwargs: Any
    ) -> bytes | Path:
        """A file's content: the bytes, or streamed to ``path`` (see ``AsyncClient.files``)."""
        result: bytes | Path = self._portal.run(
            lambda: self._async.content(file_id, path, **kwargs)
        )
        return result


class Client:
    """Blocking client: the same arguments, resources and methods as :class:`AsyncClient`.

    >>> with Client() as client:  # doctest: +SKIP
    ...     print(client.chat.create(model="gpt-4o", messages=[...]).text)

    Runs an ``AsyncClient`` in one background event loop thread, started at the
    first call (an ``http_client`` handed in is used from that thread). Close
    it (``with``, or ``close()``) to stop that thread; one left open is closed
    when it is garbage collected or at exit. Made before a fork, it works in
    the children (their own thread, fresh connections).
    """

    def __init__(
        self,
        api_key: str | None = None,
        base_url: str | None = None,
        *,
        timeout: float | httpx.Timeout | None = None,
        max_retries: int = 3,
        rpm: float | None = None,
        tpm: float | None = None,
        max_concurrency: int | None = None,
        burst: int | None = None,
        stream_idle_timeout: float | None = 30.0,
        http_client: httpx.AsyncClient | None = None,
        retry: RetryPolicy | None = None,
        default_headers: Mapping[str, str] | None = None,
        allow_insecure_http: bool = False,
        shared_limits: str | SharedLimits | None = None,
        limits_namespace: str | None = None,
        max_response_bytes: int | None = DEFAULT_MAX_RESPONSE_BYTES,
        proxy: str | httpx.URL | httpx.Proxy | None = None,
    ) -> None:
        # Built first: bad settings raise here, before a thread is started.
        client = AsyncClient(
            api_key,
            base_url,
            timeout=timeout,
            max_retries=max_retries,
            rpm=rpm,
            tpm=tpm,
            max_concurrency=max_concurrency,
            burst=burst,
            stream_idle_timeout=stream_idle_timeout,
            http_client=http_client,
            retry=retry,
            default_headers=default_headers,
            allow_insecure_http=allow_insecure_http,
            shared_limits=shared_limits,
            limits_namespace=limits_namespace,
            max_response_bytes=max_response_bytes,
            proxy=proxy,
        )
        portal = Portal()
        self._client = client
        self._portal = portal
        self.chat = SyncChat(client.chat, portal)
        self.responses = SyncResponses(client.responses, portal)
        self.batches = SyncBatches(client.batches, portal)
        self.models = SyncModels(client.models, portal)
        self.embeddings = SyncEmbeddings(client.embeddings, portal)
        self.files = SyncFiles(client.files, portal)
        self._finalizer = weakref.finalize(self, _shutdown, portal, client)

    @property
    def async_client(self) -> AsyncClient:
        """The ``AsyncClient`` underneath (use it only from this client's loop)."""
        return self._client

    @property
    def base_url(self) -> str:
        return self._client.base_url

    @property
    def timeout(self) -> httpx.Timeout:
        return self._client.timeout

    @property
    def max_retries(self) -> int:
        return self._client.max_retries

    @property
    def limiter(self) -> Limits:
        return self._client.limiter

    @property
    def usage(self) -> UsageTally:
        """Requests, tokens and cost of every answer so far, per model."""
        return self._client.usage

    @property
    def has_api_key(self) -> bool:
        return self._client.has_api_key

    def __repr__(self) -> str:
        return repr(self._client).replace("<AsyncClient", "<Client", 1)

    __str__ = __repr__

    def __reduce__(self) -> Any:
        raise TypeError("Client cannot be pickled (it holds a connection pool and a secret)")

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection pool and stop the loop thread. Idempotent."""
        self._finalizer()


def _shutdown(portal: Portal, client: AsyncClient) -> None:
    if portal.closed:
        return
    if not portal.started:
        # Never used in this process (or only by the parent before a fork): nothing of
        # ours is open here, and no thread is started just to close nothing.
        portal.close()
        return
    try:
        portal.run(client.aclose)
    except RuntimeError:
        pass  # closed from inside an event loop: the pool goes with the loop thread
    finally:
        portal.close()
