"""``client.chat``: chat completions, whole (``create``) or streamed (``stream``)."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, Literal

from pydantic import ValidationError

from . import _otel
from .errors import invalid_response
from .limits import estimate_tokens
from .models import ChatCompletion
from .streaming import RESUME_STRATEGIES, ChatStream, ResumeStrategy

if TYPE_CHECKING:
    from ._requester import Requester

__all__ = ["Chat"]


def _body(
    model: str, messages: Iterable[Mapping[str, Any]], params: dict[str, Any]
) -> dict[str, Any]:
    if not isinstance(model, str) or not model:
        raise TypeError(f"model must be a non-empty string, got {model!r}")
    if isinstance(messages, (str, bytes)) or not isinstance(messages, Iterable):
        raise TypeError(
            "messages must be a list of {'role': ..., 'content': ...} dicts, "
            f"got {type(messages).__name__}"
        )
    msgs = list(messages)
    for i, message in enumerate(msgs):
        if not isinstance(message, Mapping) or "role" not in message:
            raise TypeError(f"messages[{i}] must be a dict with a 'role', got {message!r:.80}")
    return {"model": model, "messages": msgs, **params}


class Chat:
    """Chat completions. Extra keyword arguments go into the request body unchanged."""

    def __init__(self, requester: Requester) -> None:
        self._requester = requester

    def _tokens(self, body: dict[str, Any]) -> int:
        """The request's estimated tokens, for a tokens-per-minute limit (0 without one)."""
        return estimate_tokens(body) if self._requester.limiter.tpm else 0

    @_otel.chat_create
    async def create(
        self, *, model: str, messages: Iterable[Mapping[str, Any]], **params: Any
    ) -> ChatCompletion:
        """One chat completion, waited for whole.

        >>> completion = await client.chat.create(  # doctest: +SKIP
        ...     model="gpt-4o", messages=[{"role": "user", "content": "Hi"}], temperature=0.2)
        >>> completion.text  # doctest: +SKIP
        """
        if params.get("stream"):
            raise ValueError("chat.create does not stream: use client.chat.stream(...)")
        body = _body(model, messages, params)
        reply = await self._requester.request(
            "POST", "/chat/completions", json=body, tokens=self._tokens(body)
        )
        try:
            completion = ChatCompletion.model_validate_json(reply.response.content)
        except ValidationError:
            raise invalid_response(reply.response, "a chat.completion JSON object") from None
        if completion.usage is not None:
            reply.permit.reconcile(completion.usage.total_tokens)
            self._requester.record_usage(completion.model or model, completion.usage)
        return completion

    def stream(
        self,
        *,
        model: str,
        messages: Iterable[Mapping[str, Any]],
        include_usage: bool = True,
        idle_timeout: float | Literal["client"] | None = "client",
        resume: bool | str | ResumeStrategy = False,
        extra_headers: Mapping[str, str] | None = None,
        **params: Any,
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
        ``extra_headers``: sent with this request only.
        """
        if params.get("stream") is False:
            raise ValueError("chat.stream always streams: use client.chat.create(...)")
        body = _body(model, messages, params)
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
        return ChatStream(
            self._requester,
            body,
            tokens=self._tokens(body),
            idle_timeout=idle,
            resume=strategy,
            headers=extra_headers,
            usage_by_default=by_default,
        )
