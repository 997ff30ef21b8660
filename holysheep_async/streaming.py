"""Chat completion streams: SSE bytes -> events -> chunks -> text deltas.

A :class:`ChatStream` is what ``client.chat.stream(...)`` returns. It is an
async iterator of text deltas and an async context manager::

    async with client.chat.stream(model="gpt-4o", messages=msgs) as stream:
        async for text in stream:
            print(text, end="", flush=True)
    print(stream.metrics.ttft, stream.usage)

What it guarantees:

- Failures before the first text delta (connection errors, timeouts, 429,
  5xx, an "overloaded" error object inside the stream) are retried under the
  client's retry policy, invisibly.
- After text was yielded nothing is retried silently and nothing is yielded
  twice: the error raised carries ``partial_text``.
- ``stream_idle_timeout`` bounds the silence between data events; pings and
  comments do not reset it. A stall raises :class:`StreamIdleTimeout`.
- A stream that ends with neither ``[DONE]`` nor a finish reason raises
  :class:`IncompleteStreamError`: never a silently shorter answer.
- Leaving ``async with``, breaking out of the loop, or cancelling the
  enclosing scope closes the HTTP response.
"""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import anyio
import httpx
from pydantic_core import from_json

from .errors import (
    APIConnectionError,
    APITimeoutError,
    HolySheepError,
    IncompleteStreamError,
    InternalServerError,
    RateLimitError,
    StreamError,
    StreamIdleTimeout,
)
from .errors import describe_error_body as _describe
from .models import ChatCompletionChunk, Usage
from .sse import SSEDecoder

if TYPE_CHECKING:
    from ._requester import Reply, Requester

__all__ = ["ChatStream", "StreamMetrics"]

_RETRYABLE_IN_STREAM = re.compile(
    r"overload|rate.?limit|too many requests|capacity|try again|server.?error|unavailable|busy",
    re.IGNORECASE,
)


@dataclass
class StreamMetrics:
    """Timings of one stream.

    ``ttft``: seconds from sending the request to the first text delta (retries
    before the first token included). ``total``: to the end of the stream.
    ``chunks``: data events received. ``tokens``: completion tokens (from
    ``usage`` when the server sent it, else the number of text deltas).
    ``tokens_per_s``: tokens over the time after the first token.
    ``gaps``: seconds between consecutive text deltas. ``attempts``: requests sent.
    """

    ttft: float | None = None
    total: float | None = None
    chunks: int = 0
    tokens: int = 0
    attempts: int = 0
    gaps: list[float] = field(default_factory=list)

    @property
    def tokens_per_s(self) -> float | None:
        if self.ttft is None or self.total is None or self.tokens == 0:
            return None
        span = self.total - self.ttft
        return self.tokens / span if span > 0 else None

    @property
    def max_gap(self) -> float:
        return max(self.gaps, default=0.0)


def _retryable_stream_error(error: StreamError) -> bool:
    text = f"{error.code or ''} {error.message}"
    return bool(_RETRYABLE_IN_STREAM.search(text))


class ChatStream:
    """One streamed chat completion. See the module docstring."""

    def __init__(self, requester: Requester, body: dict[str, Any], *, tokens: int) -> None:
        self._requester = requester
        self._body = body
        self._tokens = tokens
        self._reply: Reply | None = None
        self._started = False
        self._parts: list[str] = []
        self._new_text = False
        self.finish_reason: str | None = None
        self.usage: Usage | None = None
        self.metrics = StreamMetrics()
        self.model: str | None = None
        self.id: str | None = None

    # -- public surface ---------------------------------------------------------

    async def __aenter__(self) -> ChatStream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def __aiter__(self) -> AsyncIterator[str]:
        return self._texts()

    def chunks(self) -> AsyncIterator[ChatCompletionChunk]:
        """The stream as typed chunks (all choices, tool-call deltas, usage, logprobs)."""
        return self._typed_chunks()

    async def aclose(self) -> None:
        """Close the HTTP response now (idempotent)."""
        reply, self._reply = self._reply, None
        if reply is not None:
            with anyio.CancelScope(shield=True):
                await reply.aclose()

    @property
    def text(self) -> str:
        """The text of the first choice received so far."""
        if len(self._parts) > 1:
            self._parts = ["".join(self._parts)]
        return self._parts[0] if self._parts else ""

    @property
    def response(self) -> httpx.Response | None:
        """The HTTP response of the current attempt (headers, request id), once opened."""
        return self._reply.response if self._reply is not None else None

    def __repr__(self) -> str:
        return (
            f"<ChatStream model={self._body.get('model')!r} chars={len(self.text)} "
            f"finish_reason={self.finish_reason!r}>"
        )

    # -- iteration --------------------------------------------------------------

    async def _texts(self) -> AsyncIterator[str]:
        async for obj in self._run():
            choices = obj.get("choices")
            if not choices:
                continue
            for choice in choices:
                if choice.get("index", 0) == 0:
                    delta = choice.get("delta")
                    content = delta.get("content") if delta else None
                    if content:
                        yield content

    async def _typed_chunks(self) -> AsyncIterator[ChatCompletionChunk]:
        async for obj in self._run():
            yield ChatCompletionChunk.model_validate(obj)

    async def _run(self) -> AsyncIterator[dict[str, Any]]:
        if self._started:
            raise RuntimeError("a ChatStream can be iterated only once")
        self._started = True
        requester = self._requester
        policy = requester.retry
        retries_left = policy.max_retries
        start = time.perf_counter()
        last_text_at = 0.0
        try:
            while True:
                reply = await requester.request(
                    "POST",
                    "/chat/completions",
                    json=self._body,
                    tokens=self._tokens,
                    stream=True,
                    max_retries=retries_left,
                )
                retries_left -= reply.attempts - 1
                self.metrics.attempts += reply.attempts
                self._reply = reply
                try:
                    async for obj in self._read(reply.response):
                        if self._new_text:
                            now = time.perf_counter()
                            if self.metrics.ttft is None:
                                self.metrics.ttft = now - start
                            else:
                                self.metrics.gaps.append(now - last_text_at)
                            last_text_at = now
                        yield obj
                    break
                except (APIConnectionError, StreamError) as exc:
                    if self._parts or retries_left <= 0 or not self._retryable(exc):
                        if self._parts:
                            exc.partial_text = self.text
                        raise
                    retries_left -= 1
                    await self.aclose()
                    await requester.sleep(policy.backoff(policy.max_retries - retries_left))
            self.metrics.total = time.perf_counter() - start
            if self.usage is not None and self.usage.completion_tokens:
                self.metrics.tokens = self.usage.completion_tokens
            if self.usage is not None:
                reply.permit.reconcile(self.usage.total_tokens)
                requester.record_usage(self.model or str(self._body.get("model")), self.usage)
        finally:
            await self.aclose()

    @staticmethod
    def _retryable(exc: HolySheepError) -> bool:
        if isinstance(exc, StreamError) and not isinstance(exc, IncompleteStreamError):
            return _retryable_stream_error(exc)
        return isinstance(exc, (APIConnectionError, RateLimitError, InternalServerError))

    async def _read(self, response: httpx.Response) -> AsyncIterator[dict[str, Any]]:
        """Decode one HTTP response into chunk dicts, updating the stream's state."""
        idle = self._requester.stream_idle_timeout
        decoder = SSEDecoder()
        raw = response.aiter_raw()
        done = False
        deadline = time.monotonic() + idle if idle is not None else None
        while True:
            chunk = await self._next_bytes(raw, deadline)
            events = decoder.feed(chunk) if chunk is not None else decoder.flush()
            for event in events:
                if done:
                    continue
                if idle is not None:
                    deadline = time.monotonic() + idle
                data = event.data
                if data == "[DONE]":
                    done = True
                    continue
                for obj in self._parse(data, event.event):
                    self._apply(obj)
                    yield obj
            if chunk is None:
                break
        if not done and self.finish_reason is None:
            raise IncompleteStreamError(
                "The stream ended without 'data: [DONE]' or a finish reason: the answer may be cut"
                f" short ({len(self.text)} characters received)",
                partial_text=self.text or None,
            )

    async def _next_bytes(self, raw: AsyncIterator[bytes], deadline: float | None) -> bytes | None:
        try:
            if deadline is None:
                return await raw.__anext__()
            with anyio.fail_after(max(0.0, deadline - time.monotonic())):
                return await raw.__anext__()
        except StopAsyncIteration:
            return None
        except TimeoutError:
            raise StreamIdleTimeout(
                f"No data from the stream for {self._requester.stream_idle_timeout} s"
                " (stream_idle_timeout); pings do not count",
                partial_text=self.text or None,
            ) from None
        except httpx.TimeoutException as exc:
            raise APITimeoutError(
                f"Timed out reading the stream ({type(exc).__name__})",
                partial_text=self.text or None,
            ) from exc
        except httpx.TransportError as exc:
            raise APIConnectionError(
                f"The connection broke mid-stream ({type(exc).__name__}: {exc})",
                partial_text=self.text or None,
            ) from exc

    def _parse(self, data: str, event_name: str) -> list[dict[str, Any]]:
        try:
            obj = from_json(data)
        except ValueError:
            # Some relays put several events on consecutive data: lines without blank lines.
            parts = data.split("\n")
            try:
                objs = [from_json(p) for p in parts if p.strip()] if len(parts) > 1 else None
            except ValueError:
                objs = None
            if not objs:
                raise StreamError(
                    f"Malformed event in the stream: {data[:200]!r}",
                    body=data,
                    partial_text=self.text or None,
                ) from None
            for one in objs:
                self._check(one, event_name, data)
            return objs
        self._check(obj, event_name, data)
        return [obj]

    def _check(self, obj: object, event_name: str, data: str) -> None:
        if not isinstance(obj, dict):
            raise StreamError(
                f"Malformed event in the stream (not an object): {data[:200]!r}",
                body=obj,
                partial_text=self.text or None,
            )
        if ("error" in obj and not obj.get("choices")) or event_name == "error":
            body, message, code, _ = _describe(data.encode())
            raise StreamError(
                f"Error inside the stream: {message or data[:200]}"
                + (f" (code {code})" if code else ""),
                body=body,
                code=code,
                partial_text=self.text or None,
            )

    def _apply(self, obj: dict[str, Any]) -> None:
        self.metrics.chunks += 1
        self._new_text = False
        if self.id is None:
            self.id = obj.get("id")
            self.model = obj.get("model")
        usage = obj.get("usage")
        if usage:
            self.usage = Usage.model_validate(usage)
        for choice in obj.get("choices") or ():
            if choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta")
            if delta:
                content = delta.get("content")
                if content:
                    self._parts.append(content)
                    self._new_text = True
                    if self.usage is None:
                        self.metrics.tokens += 1
            reason = choice.get("finish_reason")
            if reason:
                self.finish_reason = reason
