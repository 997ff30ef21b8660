"""``client.chat``: chat completions, whole (``create``) or streamed (``stream``), and the
tool loop (``run_tools`` / ``stream_tools``, see :mod:`._tool_run`).

Both take the request fields of the OpenAI spec as typed keyword arguments
(:class:`~holysheep_async.types.ChatParams`), checked per call by one set
difference against the known names, nothing more: an unknown name raises
``TypeError`` at once. ``extra_headers`` / ``extra_query`` / ``extra_body`` /
``timeout`` are options of the call (see :mod:`._options`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, Literal, TypeVar, overload

from pydantic import BaseModel, ValidationError
from typing_extensions import Unpack

from . import _otel
from ._options import call_timeout, check_extras, unknown_keywords
from ._structured import ParsedChatStream, is_model_class, parse_answer, response_format_for
from ._tool_run import ToolRun, ToolRunStream, run_tools
from ._tools import Tool, make_tools
from .errors import invalid_response
from .limits import estimate_tokens
from .models import _PARSED, ChatCompletion, ParsedChatCompletion, attach_response
from .streaming import RESUME_STRATEGIES, ChatStream, ResumeStrategy
from .types import (
    CHAT_PARAMS,
    TOOL_LOOP_PARAMS,
    ChatCompletionMessageParam,
    ChatParams,
    Headers,
    Query,
    ResponseFormatParam,
    Timeout,
    ToolLoopParams,
)

if TYPE_CHECKING:
    from ._requester import Requester

__all__ = ["Chat"]

M = TypeVar("M", bound=BaseModel)

#: What ``run_tools`` takes as a tool: a function (sync or async) or a pydantic model class.
ToolLike = Callable[..., Any] | type[BaseModel] | Tool


def _body(
    model: str, messages: Iterable[Mapping[str, Any]], params: Mapping[str, Any]
) -> dict[str, Any]:
    if not isinstance(model, str) or not model:
        raise TypeError(f"model must be a non-empty string, got {model!r}")
    if type(messages) is not list and (
        isinstance(messages, (str, bytes)) or not isinstance(messages, Iterable)
    ):
        raise TypeError(
            "messages must be a list of {'role': ..., 'content': ...} dicts, "
            f"got {type(messages).__name__}"
        )
    msgs = list(messages)
    for i, message in enumerate(msgs):
        # A dict first: the ABC check costs more than the rest of this loop.
        if (type(message) is not dict and not isinstance(message, Mapping)) or (
            "role" not in message
        ):
            raise TypeError(f"messages[{i}] must be a dict with a 'role', got {message!r:.80}")
    return {"model": model, "messages": msgs, **params}


def _check_params(method: str, params: Mapping[str, Any]) -> None:
    if "stream" in params:
        if method == "chat.create":
            raise ValueError("chat.create does not stream: use client.chat.stream(...)")
        raise ValueError("chat.stream always streams: use client.chat.create(...)")
    raise unknown_keywords(method, params, CHAT_PARAMS)


def _apply(
    body: dict[str, Any],
    response_format: object,
    extra_headers: object,
    extra_query: object,
    extra_body: object,
) -> type[BaseModel] | None:
    """Put ``response_format`` and ``extra_body`` into ``body``; the model class to parse into."""
    check_extras(extra_headers, extra_query, extra_body)
    parse: type[BaseModel] | None = None
    if response_format is not None:
        if is_model_class(response_format):
            parse = response_format  # type: ignore[assignment]
            assert parse is not None
            body["response_format"] = response_format_for(parse)
        elif isinstance(response_format, Mapping):
            body["response_format"] = response_format
        else:
            raise TypeError(
                "response_format must be a pydantic model class or a dict such as"
                f" {{'type': 'json_object'}}, got {response_format!r:.80}"
            )
    if extra_body:
        assert isinstance(extra_body, Mapping)
        body.update(extra_body)
    return parse


def _base_url(chat: Chat) -> str:
    return chat._requester.base_url


class Chat:
    """Chat completions (``create``, ``stream``) with the OpenAI spec's request fields."""

    def __init__(self, requester: Requester) -> None:
        self._requester = requester

    def _tokens(self, body: dict[str, Any]) -> int:
        """The request's estimated tokens, for a tokens-per-minute limit (0 without one)."""
        return estimate_tokens(body) if self._requester.limiter.tpm else 0

    @overload
    async def create(
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
    async def create(
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

    @_otel.chat_create(_base_url)
    async def create(
        self,
        *,
        model: str,
        messages: Iterable[ChatCompletionMessageParam],
        response_format: type[BaseModel] | ResponseFormatParam | None = None,
        extra_headers: Headers | None = None,
        extra_query: Query | None = None,
        extra_body: Mapping[str, object] | None = None,
        timeout: Timeout = None,
        **params: Unpack[ChatParams],
    ) -> ChatCompletion:
        """One chat completion, waited for whole.

        >>> completion = await client.chat.create(  # doctest: +SKIP
        ...     model="gpt-4o", messages=[{"role": "user", "content": "Hi"}], temperature=0.2)
        >>> completion.text  # doctest: +SKIP

        ``response_format=SomeModel`` (a pydantic model class): structured output;
        the result is a :class:`ParsedChatCompletion` whose ``.parsed`` is a
        ``SomeModel``, and a refusal or an answer that does not fit raises
        :class:`RefusalError` / :class:`StructuredOutputError`.
        """
        if params and not CHAT_PARAMS.issuperset(params):
            _check_params("chat.create", params)
        body = _body(model, messages, params)
        parse = None
        if (
            response_format is not None
            or extra_body is not None
            or extra_headers is not None
            or extra_query is not None
        ):
            parse = _apply(body, response_format, extra_headers, extra_query, extra_body)
            if body.get("stream"):
                raise ValueError("chat.create does not stream: use client.chat.stream(...)")
        reply = await self._requester.request(
            "POST",
            "/chat/completions",
            json=body,
            tokens=self._tokens(body),
            headers=extra_headers,
            params=extra_query,
            timeout=None if timeout is None else call_timeout(timeout),
        )
        cls = ChatCompletion if parse is None else ParsedChatCompletion
        try:
            completion = cls.model_validate_json(reply.response.content)
        except ValidationError:
            raise invalid_response(reply.response, "a chat.completion JSON object") from None
        attach_response(completion, reply.response)
        if completion.usage is not None:
            reply.permit.reconcile(completion.usage.total_tokens)
            self._requester.record_usage(completion.model or model, completion.usage)
        if parse is not None:
            choice = completion.choices[0] if completion.choices else None
            parsed = parse_answer(
                parse,
                choice.message.content if choice else None,
                choice.message.refusal if choice else None,
                choice.finish_reason if choice else None,
                completion,
            )
            object.__setattr__(completion, _PARSED, parsed)
        return completion

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
    ) -> ParsedChatStream[M]: ...

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
    ) -> ChatStream: ...

    def stream(
        self,
        *,
        model: str,
        messages: Iterable[ChatCompletionMessageParam],
        response_format: type[BaseModel] | ResponseFormatParam | None = None,
        include_usage: bool = True,
        idle_timeout: float | Literal["client"] | None = "client",
        resume: bool | str | ResumeStrategy = False,
        extra_headers: Headers | None = None,
        extra_query: Query | None = None,
        extra_body: Mapping[str, object] | None = None,
        timeout: Timeout = None,
        **params: Unpack[ChatParams],
    ) -> ChatStream:
        """A streamed chat completion (see :class:`ChatStream`); nothing is sent until iterated.

        >>> async with client.chat.stream(model=m, messages=msgs) as stream:  # doctest: +SKIP
        ...     async for text in stream:
        ...         print(text, end="", flush=True)

        ``stream_options.include_usage`` is requested unless ``include_usage=False``
        or ``stream_options`` is given; servers that ignore it still work (``usage``
        stays None), and one that rejects it with a 400 is asked again without it.
        ``idle_timeout``: the longest silence between data events for this call
        (default: the client's ``stream_idle_timeout``; None: no limit).
        ``resume``: after a drop, stall or cut that follows some text, continue the
        answer with a follow-up request that carries the text as an assistant
        prefix: ``True`` / ``"assistant"``, ``"prefix"`` (DeepSeek, Mistral),
        ``"vllm"`` (vLLM, SGLang), or your own ``(body, partial_text) -> body``.
        Only for servers that continue a prefix (not OpenAI's API), and with ``n=1``.
        ``response_format=SomeModel``: the stream's ``.parsed`` is a ``SomeModel``
        once it has ended (see :class:`ParsedChatStream`).
        """
        if params and not CHAT_PARAMS.issuperset(params):
            _check_params("chat.stream", params)
        body = _body(model, messages, params)
        parse = None
        if (
            response_format is not None
            or extra_body is not None
            or extra_headers is not None
            or extra_query is not None
        ):
            parse = _apply(body, response_format, extra_headers, extra_query, extra_body)
            if body.get("stream") is False:
                raise ValueError("chat.stream always streams: use client.chat.create(...)")
        body["stream"] = True
        by_default = include_usage and "stream_options" not in body
        if by_default:
            body["stream_options"] = {"include_usage": True}
        if idle_timeout == "client":
            idle: float | None = self._requester.stream_idle_timeout
        elif idle_timeout is None or (
            isinstance(idle_timeout, (int, float))
            and not isinstance(idle_timeout, bool)
            and math.isfinite(idle_timeout)
            and idle_timeout > 0
        ):
            idle = idle_timeout
        else:
            raise ValueError(f"idle_timeout must be a number > 0 or None, got {idle_timeout!r}")
        strategy: ResumeStrategy | None
        if resume is False:
            strategy = None
        elif resume is True:
            strategy = RESUME_STRATEGIES["assistant"]
        elif isinstance(resume, str):
            if resume not in RESUME_STRATEGIES:
                raise ValueError(
                    f"unknown resume strategy {resume!r}; one of {sorted(RESUME_STRATEGIES)}"
                    " or a callable (body, partial_text) -> body"
                )
            strategy = RESUME_STRATEGIES[resume]
        elif callable(resume):
            strategy = resume
        else:
            raise TypeError(f"resume must be a bool, a strategy name or a callable, got {resume!r}")
        n = body.get("n")
        if strategy is not None and isinstance(n, int) and n > 1:
            raise ValueError("resume works with one choice only (n=1)")
        stream = ChatStream if parse is None else ParsedChatStream
        made = stream(
            self._requester,
            body,
            tokens=self._tokens(body),
            idle_timeout=idle,
            resume=strategy,
            headers=extra_headers,
            query=extra_query,
            timeout=None if timeout is None else call_timeout(timeout),
            usage_by_default=by_default,
        )
        if isinstance(made, ParsedChatStream) and parse is not None:
            made._model_class = parse
        return made

    # -- the tool loop ------------------------------------------------------------

    async def run_tools(
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
        """Call the model, run the tools it asks for, send their answers back; until an answer
        asks for no tool. ``tools``: Python functions (sync or async; the JSON schema comes from
        the signature and the docstring) or pydantic model classes.

        >>> def get_weather(city: str) -> str:  # doctest: +SKIP
        ...     \"\"\"The weather in a city.\"\"\"
        ...     return "sunny"
        >>> run = await client.chat.run_tools(  # doctest: +SKIP
        ...     model=m, messages=[{"role": "user", "content": "Paris?"}], tools=[get_weather])
        >>> run.text, run.turns, run.messages  # doctest: +SKIP

        Several calls in one answer run at the same time; a tool that raises answers
        ``Error: ...`` to the model. After ``max_turns`` answers that all asked for tools,
        :class:`ToolLoopError` (with the transcript). Keywords as ``create``'s.
        """
        made, kwargs = self._tool_call(model, messages, tools, params)
        kwargs.update(_extras(extra_headers, extra_query, extra_body, timeout))
        return await run_tools(
            self.create, made, messages=list(messages), max_turns=max_turns, params=kwargs
        )

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
    ) -> ToolRunStream:
        """``run_tools``, streamed: every turn's events (text, reasoning, tool calls) and a
        :class:`ToolResult` per tool run; ``.result`` at the end (see :class:`ToolRunStream`).

        >>> async with chat.stream_tools(model=m, messages=ms, tools=t) as r:  # doctest: +SKIP
        ...     async for event in r:
        ...         if event.type == "content.delta":
        ...             print(event.delta, end="")
        >>> r.result.text  # doctest: +SKIP
        """
        made, kwargs = self._tool_call(model, messages, tools, params)
        kwargs.update(_extras(extra_headers, extra_query, extra_body, timeout))
        kwargs["include_usage"] = include_usage
        kwargs["idle_timeout"] = idle_timeout
        return ToolRunStream(
            self.stream, made, messages=list(messages), max_turns=max_turns, params=kwargs
        )

    def _tool_call(
        self,
        model: str,
        messages: Iterable[ChatCompletionMessageParam],
        tools: Iterable[ToolLike],
        params: Mapping[str, Any],
    ) -> tuple[dict[str, Tool], dict[str, Any]]:
        if params and not TOOL_LOOP_PARAMS.issuperset(params):
            if "stream" in params:
                raise ValueError("run_tools picks: use chat.stream_tools(...) to stream")
            raise unknown_keywords("chat.run_tools", params, TOOL_LOOP_PARAMS)
        _body(model, messages if isinstance(messages, list) else list(messages), {})
        if isinstance(tools, (str, bytes, Mapping)) or not isinstance(tools, Iterable):
            raise TypeError(
                f"tools must be a list of functions or pydantic model classes, got {tools!r:.80}"
            )
        return make_tools(tools), {"model": model, **params}


def _extras(
    extra_headers: object, extra_query: object, extra_body: object, timeout: object
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in (
        ("extra_headers", extra_headers),
        ("extra_query", extra_query),
        ("extra_body", extra_body),
        ("timeout", timeout),
    ):
        if value is not None:
            out[key] = value
    return out
