"""``client.responses``: create, stream, retrieve, cancel, delete, input_items, wait.

``create`` and ``stream`` take the request fields of ``POST /responses`` as
typed keyword arguments (:class:`~._types.ResponsesParams`), checked per call
against the known names (an unknown one is a ``TypeError`` pointing at
``extra_body``), plus the per-call options every method takes
(``extra_headers``, ``extra_query``, ``extra_body``, ``timeout``; see
:mod:`holysheep_async._options`).

A server that answers ``POST /responses`` with 404, 405 or 501 has no
Responses API: the request goes again as a chat completion (see
:mod:`._fallback`), and every later one of this client goes that way at once
(``client.responses.fallback_reason`` says why). A 404 that names a model is a
wrong model, not a missing API, and is raised as it is.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any, Literal, TypeVar, overload

import anyio
import httpx
from pydantic import BaseModel, ValidationError
from typing_extensions import Unpack

from .. import _otel
from .._options import call_timeout, check_extras
from .._structured import is_model_class
from ..errors import APIStatusError, InvalidResponseError, ResponseTimeoutError, invalid_response
from ..models import attach_response
from ..types import Headers, Query, Timeout
from ._fallback import check_stateless, response_from_chat, to_chat_body
from ._models import ParsedResponse, Response, ResponseDeleted, ResponseItem, ResponseItemList
from ._request import (
    build_body,
    check_id,
    estimate,
    no_responses_api,
    parse_output,
    prompt,
    trace_end,
)
from ._stream import ParsedResponseStream, ResponseStream, StreamSetup
from ._types import ResponseInputParam, ResponsesParams

if TYPE_CHECKING:
    from .._requester import Reply, Requester

__all__ = ["Responses"]

log = logging.getLogger("holysheep_async")

M = TypeVar("M", bound=BaseModel)

#: Polls of ``wait``: the first at once, then from 0.5 s, 1.5 times longer each, up to 5 s.
_POLL_FIRST, _POLL_GROWTH, _POLL_MAX = 0.5, 1.5, 5.0

ProgressCallback = Callable[[Response], "Awaitable[None] | None"]


class Responses:
    """The Responses API (``POST /responses`` and friends), with the chat fallback."""

    def __init__(self, requester: Requester) -> None:
        self._requester = requester
        #: Why this client sends Responses requests as chat completions (None: it does not).
        self.fallback_reason: str | None = None
        # Background responses created here whose usage is not counted yet (it comes when
        # they end: counted once, by whichever call sees the final state first).
        self._unbilled: set[str] = set()

    def _fall_back(self, reason: str) -> None:
        if self.fallback_reason is None:
            log.warning(
                "%s: this server has no Responses API; requests go as chat completions", reason
            )
        self.fallback_reason = reason

    def _count(
        self,
        response: Response,
        reply: Reply | None = None,
        *,
        created: bool,
        asked: str | None = None,
    ) -> None:
        """Count ``response``'s usage in ``client.usage`` once (see ``_unbilled``).

        ``asked``: the id the caller asked for. A relay may answer under another id
        than the one it gave at creation (LiteLLM encodes the routing in the id,
        differently each time), so either id names an unbilled response.
        """
        if response.status in ("queued", "in_progress"):
            if created and response.id:
                self._unbilled.add(response.id)
            return
        if not created:
            ids = {response.id, asked} & self._unbilled
            if not ids:
                return
            self._unbilled -= ids
        usage = response.usage
        if usage is None:
            return
        chat_usage = usage.to_usage()
        if reply is not None and created:
            reply.permit.reconcile(chat_usage.total_tokens)
        self._requester.record_usage(response.model or "unknown", chat_usage)

    def _tokens(self, body: Mapping[str, Any]) -> int:
        return estimate(body) if self._requester.limiter.tpm else 0

    async def _send(
        self,
        method: str,
        path: str,
        *,
        json: dict[str, Any] | None = None,
        params: Mapping[str, Any] | None = None,
        extra_headers: Headers | None,
        extra_query: Query | None,
        extra_body: Mapping[str, object] | None,
        timeout: Timeout,
    ) -> Reply:
        check_extras(extra_headers, extra_query, extra_body)
        if extra_body:
            json = {**(json or {}), **extra_body}
        query = {**(params or {}), **(extra_query or {})} or None
        return await self._requester.request(
            method,
            path,
            json=json,
            params=query,
            headers=extra_headers,
            timeout=call_timeout(timeout),
        )

    @staticmethod
    def _parse(response: httpx.Response, cls: type[Response]) -> Response:
        try:
            obj = cls.model_validate_json(response.content)
        except ValidationError:
            raise invalid_response(response, "a response object") from None
        attach_response(obj, response)
        return obj

    # -- create -------------------------------------------------------------------------

    @overload
    async def create(
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
    async def create(
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

    async def create(
        self,
        *,
        model: str,
        input: str | ResponseInputParam | None = None,
        text_format: type[BaseModel] | None = None,
        extra_headers: Headers | None = None,
        extra_query: Query | None = None,
        extra_body: Mapping[str, object] | None = None,
        timeout: Timeout = None,
        **params: Unpack[ResponsesParams],
    ) -> Response:
        """One response, waited for whole (``POST /responses``).

        >>> response = await client.responses.create(  # doctest: +SKIP
        ...     model="gpt-4o", input="Say hi", instructions="Be brief")
        >>> response.output_text  # doctest: +SKIP

        ``text_format=SomeModel`` (a pydantic model class): structured output
        with a strict JSON schema; the result is a :class:`ParsedResponse` whose
        ``.parsed`` is a ``SomeModel``, and a refusal or an answer that does not
        fit raises :class:`RefusalError` / :class:`StructuredOutputError`.
        ``background=True``: the answer is computed on the server; the result is
        ``queued`` or ``in_progress``: :meth:`wait` for it, or :meth:`stream` it.
        """
        body, parse = build_body(
            "responses.create",
            model,
            input,
            text_format,
            params,
            extra_headers,
            extra_query,
            extra_body,
        )
        per_call = None if timeout is None else call_timeout(timeout)
        trace = _otel.responses_started(
            self._requester.base_url, body, stream=False, messages=lambda: prompt(body)
        )
        if trace is None:
            return await self._create(body, parse, extra_headers, extra_query, per_call)
        try:
            with trace.active():
                response = await self._create(body, parse, extra_headers, extra_query, per_call)
        except BaseException as exc:
            trace.closed(exc)
            raise
        trace_end(trace, response)
        return response

    async def _create(
        self,
        body: dict[str, Any],
        parse: type[BaseModel] | None,
        extra_headers: Headers | None,
        extra_query: Query | None,
        per_call: httpx.Timeout | None,
    ) -> Response:
        cls: type[Response] = Response if parse is None else ParsedResponse
        if self.fallback_reason is None:
            try:
                reply = await self._requester.request(
                    "POST",
                    "/responses",
                    json=body,
                    tokens=self._tokens(body),
                    headers=extra_headers,
                    params=extra_query,
                    timeout=per_call,
                )
                response = self._parse(reply.response, cls)
            except (APIStatusError, InvalidResponseError) as exc:
                reason = no_responses_api(exc)
                if reason is None:
                    raise
                self._fall_back(reason)
            else:
                self._count(response, reply, created=True)
                if parse is not None and response.is_final:
                    parse_output(response, parse)
                return response
        reason = self.fallback_reason
        assert reason is not None
        check_stateless(body, reason)
        chat_body = to_chat_body(body, reason)
        reply = await self._requester.request(
            "POST",
            "/chat/completions",
            json=chat_body,
            tokens=self._tokens(body),
            headers=extra_headers,
            params=extra_query,
            timeout=per_call,
        )
        try:
            completion = reply.response.json()
            if not isinstance(completion, dict) or not isinstance(completion.get("choices"), list):
                raise ValueError
            response = cls.model_validate(response_from_chat(completion, body))
        except (ValueError, ValidationError):
            raise invalid_response(reply.response, "a chat.completion JSON object") from None
        attach_response(response, reply.response)
        self._count(response, reply, created=True)
        if parse is not None:
            parse_output(response, parse)
        return response

    # -- stream -------------------------------------------------------------------------

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
    ) -> ParsedResponseStream[M]: ...

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
    ) -> ResponseStream: ...

    def stream(
        self,
        *,
        model: str,
        input: str | ResponseInputParam | None = None,
        text_format: type[BaseModel] | None = None,
        idle_timeout: float | Literal["client"] | None = "client",
        extra_headers: Headers | None = None,
        extra_query: Query | None = None,
        extra_body: Mapping[str, object] | None = None,
        timeout: Timeout = None,
        **params: Unpack[ResponsesParams],
    ) -> ResponseStream:
        """A streamed response (see :class:`ResponseStream`); nothing is sent until iterated.

        >>> async with client.responses.stream(model=m, input="Hi") as stream:  # doctest: +SKIP
        ...     async for text in stream:
        ...         print(text, end="", flush=True)
        >>> stream.response.usage  # doctest: +SKIP

        ``idle_timeout``: the longest silence between events for this call
        (default: the client's ``stream_idle_timeout``; None: no limit).
        With ``background=True`` a dropped stream is resumed where it broke
        (``GET /responses/{id}?stream=true&starting_after=N``), never sent again.
        ``text_format=SomeModel``: ``stream.parsed`` once it has ended.
        """
        body, parse = build_body(
            "responses.stream",
            model,
            input,
            text_format,
            params,
            extra_headers,
            extra_query,
            extra_body,
        )
        body["stream"] = True
        return self._make_stream(
            body, None, None, parse, idle_timeout, extra_headers, extra_query, timeout
        )

    def resume(
        self,
        response_id: str,
        *,
        starting_after: int | None = None,
        text_format: type[BaseModel] | None = None,
        idle_timeout: float | Literal["client"] | None = "client",
        extra_headers: Headers | None = None,
        extra_query: Query | None = None,
        timeout: Timeout = None,
    ) -> ResponseStream:
        """Stream a background response already created, from after event ``starting_after``.

        ``GET /responses/{id}?stream=true&starting_after=N``: the events after
        the N-th (all of them without ``starting_after``); iterating yields the
        text of those events only.
        """
        check_id(response_id)
        if starting_after is not None and (
            not isinstance(starting_after, int) or isinstance(starting_after, bool)
        ):
            raise TypeError(f"starting_after must be an int, got {starting_after!r}")
        check_extras(extra_headers, extra_query, None)
        if text_format is not None and not is_model_class(text_format):
            raise TypeError(f"text_format must be a pydantic model class, got {text_format!r:.80}")
        return self._make_stream(
            None,
            response_id,
            starting_after,
            text_format,
            idle_timeout,
            extra_headers,
            extra_query,
            timeout,
        )

    def _make_stream(
        self,
        body: dict[str, Any] | None,
        response_id: str | None,
        starting_after: int | None,
        parse: type[BaseModel] | None,
        idle_timeout: object,
        extra_headers: Headers | None,
        extra_query: Query | None,
        timeout: Timeout,
    ) -> ResponseStream:
        if idle_timeout == "client":
            idle: float | None = self._requester.stream_idle_timeout
        elif idle_timeout is None or (
            isinstance(idle_timeout, (int, float))
            and not isinstance(idle_timeout, bool)
            and idle_timeout > 0
            and idle_timeout != float("inf")
        ):
            idle = idle_timeout
        else:
            raise ValueError(f"idle_timeout must be a number > 0 or None, got {idle_timeout!r}")
        setup = StreamSetup(
            requester=self._requester,
            body=body,
            response_id=response_id,
            starting_after=starting_after,
            tokens=self._tokens(body) if body is not None else 0,
            idle_timeout=idle,
            headers=extra_headers,
            query=extra_query,
            timeout=None if timeout is None else call_timeout(timeout),
            fallback=lambda: self.fallback_reason,
            on_no_api=self._fall_back,
            count=self._count,
        )
        if body is not None and self.fallback_reason is not None:
            check_stateless(body, self.fallback_reason)  # at once, not when iterated
        if parse is None:
            return ResponseStream(setup)
        stream: ParsedResponseStream[Any] = ParsedResponseStream(setup)
        stream._model_class_ = parse
        return stream

    # -- the stored response ------------------------------------------------------------

    async def retrieve(
        self,
        response_id: str,
        *,
        include: list[str] | None = None,
        extra_headers: Headers | None = None,
        extra_query: Query | None = None,
        extra_body: Mapping[str, object] | None = None,
        timeout: Timeout = None,
    ) -> Response:
        """The response as the server has it now (``GET /responses/{id}``)."""
        params = {"include[]": include} if include else None
        reply = await self._send(
            "GET",
            f"/responses/{check_id(response_id)}",
            params=params,
            extra_headers=extra_headers,
            extra_query=extra_query,
            extra_body=no_body("retrieve", extra_body),
            timeout=timeout,
        )
        response = self._parse(reply.response, Response)
        self._count(response, created=False, asked=response_id)
        return response

    async def cancel(
        self,
        response_id: str,
        *,
        extra_headers: Headers | None = None,
        extra_query: Query | None = None,
        extra_body: Mapping[str, object] | None = None,
        timeout: Timeout = None,
    ) -> Response:
        """Cancel a background response (``POST /responses/{id}/cancel``); returns it."""
        reply = await self._send(
            "POST",
            f"/responses/{check_id(response_id)}/cancel",
            extra_headers=extra_headers,
            extra_query=extra_query,
            extra_body=extra_body,
            timeout=timeout,
        )
        response = self._parse(reply.response, Response)
        self._count(response, created=False, asked=response_id)
        return response

    async def delete(
        self,
        response_id: str,
        *,
        extra_headers: Headers | None = None,
        extra_query: Query | None = None,
        extra_body: Mapping[str, object] | None = None,
        timeout: Timeout = None,
    ) -> ResponseDeleted:
        """Delete a stored response (``DELETE /responses/{id}``)."""
        reply = await self._send(
            "DELETE",
            f"/responses/{check_id(response_id)}",
            extra_headers=extra_headers,
            extra_query=extra_query,
            extra_body=no_body("delete", extra_body),
            timeout=timeout,
        )
        self._unbilled.discard(response_id)
        if not reply.response.content.strip():
            deleted = ResponseDeleted(id=response_id)  # 204 or an empty 200
            attach_response(deleted, reply.response)
            return deleted
        try:
            deleted = ResponseDeleted.model_validate_json(reply.response.content)
        except ValidationError:
            raise invalid_response(reply.response, "a response.deleted object") from None
        attach_response(deleted, reply.response)
        return deleted

    async def input_items(
        self,
        response_id: str,
        *,
        limit: int | None = None,
        order: Literal["asc", "desc"] | None = None,
        after: str | None = None,
        include: list[str] | None = None,
        extra_headers: Headers | None = None,
        extra_query: Query | None = None,
        timeout: Timeout = None,
    ) -> AsyncIterator[ResponseItem]:
        """Every input item of a stored response, page after page (``GET .../input_items``).

        >>> async for item in client.responses.input_items(response.id):  # doctest: +SKIP
        ...     print(item.type)

        ``limit`` is the page size (the server's default without it).
        """
        check_id(response_id)
        check_extras(extra_headers, extra_query, None)
        params: dict[str, Any] = {}
        if limit is not None:
            params["limit"] = limit
        if order is not None:
            params["order"] = order
        if include:
            params["include[]"] = include
        while True:
            if after is not None:
                params["after"] = after
            reply = await self._send(
                "GET",
                f"/responses/{response_id}/input_items",
                params=params,
                extra_headers=extra_headers,
                extra_query=extra_query,
                extra_body=None,
                timeout=timeout,
            )
            try:
                page = ResponseItemList.model_validate_json(reply.response.content)
            except ValidationError:
                raise invalid_response(reply.response, "a list of input items") from None
            for item in page.data:
                yield item
            last = page.last_id or (page.data[-1].id if page.data else None)
            if not page.has_more or not page.data or last is None or last == after:
                return
            after = last

    async def wait(
        self,
        response: str | Response,
        *,
        poll_interval: float | None = None,
        timeout: float | None = None,
        on_progress: ProgressCallback | None = None,
        extra_headers: Headers | None = None,
        extra_query: Query | None = None,
        request_timeout: Timeout = None,
    ) -> Response:
        """Poll a background response until it is final, and return it.

        >>> started = await client.responses.create(  # doctest: +SKIP
        ...     model=m, input=q, background=True)
        >>> response = await client.responses.wait(started)  # doctest: +SKIP

        The first poll goes at once; then every 0.5 s, each wait 1.5 times the
        last, up to 5 s (``poll_interval`` fixes it). ``on_progress(response)``
        (sync or async) is called after every poll. After ``timeout`` seconds,
        :class:`ResponseTimeoutError` (the response keeps running on the server:
        :meth:`cancel` stops it). ``request_timeout``: the timeout of each poll.
        """
        response_id = response.id if isinstance(response, Response) else check_id(response)
        call_timeout(request_timeout, "request_timeout")
        check_extras(extra_headers, extra_query, None)
        started = anyio.current_time()
        slept = 0.0  # counted apart from the clock: the sleep may be a test's fake
        interval = _POLL_FIRST
        while True:
            current = await self.retrieve(
                response_id,
                extra_headers=extra_headers,
                extra_query=extra_query,
                timeout=request_timeout,
            )
            if on_progress is not None:
                result = on_progress(current)
                if inspect.isawaitable(result):
                    await result
            if current.is_final:
                return current
            waited = max(slept, anyio.current_time() - started)
            if timeout is not None and waited >= timeout:
                raise ResponseTimeoutError(
                    f"response {response_id} is still {current.status} after {waited:.1f} s"
                    f" (timeout={timeout} s); it keeps running on the server",
                    response=current,
                )
            pause = poll_interval if poll_interval is not None else interval
            interval = min(_POLL_MAX, interval * _POLL_GROWTH)
            if timeout is not None:
                pause = min(pause, timeout - waited)
            slept += pause
            await self._requester.sleep(pause)


def no_body(method: str, extra_body: Mapping[str, object] | None) -> Mapping[str, object] | None:
    """``extra_body`` of a request that sends none: TypeError when it holds anything."""
    if extra_body:
        raise TypeError(f"responses.{method} sends no body: extra_body has nowhere to go")
    return None
