"""``client.chat``: chat completions, whole (``create``) or streamed (``stream``)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from .errors import invalid_response
from .limits import estimate_tokens
from .models import ChatCompletion
from .streaming import ChatStream

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
            "POST", "/chat/completions", json=body, tokens=estimate_tokens(body)
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
        **params: Any,
    ) -> ChatStream:
        """A streamed chat completion (see :class:`ChatStream`).

        ``stream_options.include_usage`` is requested unless ``include_usage=False``
        or ``stream_options`` is given; servers that ignore it still work.
        """
        body = _body(model, messages, params)
        body["stream"] = True
        if include_usage and "stream_options" not in body:
            body["stream_options"] = {"include_usage": True}
        return ChatStream(self._requester, body, tokens=estimate_tokens(body))
