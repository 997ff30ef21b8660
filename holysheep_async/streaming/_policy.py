"""When a broken stream is tried again, and how: retry, resume, or raise. Pure decisions.

- :func:`retryable`: what may be tried again (a dropped or stalled connection,
  a stream cut short, an "overloaded" or "rate limited" error object inside the
  stream); never a quota error, a malformed event or a 4xx.
- :func:`decide`: with the error, the budget and what was yielded: raise, retry
  from scratch (nothing was yielded yet) or resume (something was, and the caller
  asked for ``resume=`` and the protocol allows it). One budget, the client's
  ``max_retries``, covers the retries of the request and those of the stream.
- :func:`resume_body`: the follow-up request of a resume, from a
  :data:`ResumeStrategy` (:data:`RESUME_STRATEGIES`: the built-in ones, for
  bodies with ``messages``).
- :func:`_stream_timeout`: the timeouts of a stream's request.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, Literal

import httpx

from ..errors import (
    _QUOTA_WORDS,
    APIConnectionError,
    HolySheepError,
    IncompleteStreamError,
    StreamError,
)
from ._protocol import MALFORMED

__all__ = [
    "RESUME_STRATEGIES",
    "ResumeStrategy",
    "decide",
    "is_rate_limit",
    "resume_body",
    "retryable",
]

#: ``(original request body, text received so far) -> body of the follow-up request``.
ResumeStrategy = Callable[[dict[str, Any], str], dict[str, Any]]

# Words of an error object inside a stream that make it safe to try again.
_RETRYABLE_IN_STREAM = re.compile(
    r"overload|rate.?limit|too many requests|capacity|temporar|unavailable|server.?error"
    r"|internal.?error|try again|busy|timed? ?out",
    re.IGNORECASE,
)
_RATE_LIMIT_WORDS = re.compile(r"rate.?limit|too many requests", re.IGNORECASE)
_RETRYABLE_CODES = frozenset({"408", "409", "429", "500", "502", "503", "504", "529"})


def _assistant_prefix(body: dict[str, Any], partial: str) -> dict[str, Any]:
    messages = [*body["messages"], {"role": "assistant", "content": partial}]
    return {**body, "messages": messages}


def _prefix_flag(body: dict[str, Any], partial: str) -> dict[str, Any]:
    messages = [*body["messages"], {"role": "assistant", "content": partial, "prefix": True}]
    return {**body, "messages": messages}


def _vllm(body: dict[str, Any], partial: str) -> dict[str, Any]:
    new = _assistant_prefix(body, partial)
    new["continue_final_message"] = True
    new["add_generation_prompt"] = False
    return new


#: Built-in ways to continue a broken answer (``resume=`` of ``chat.stream``):
#:
#: ``"assistant"`` (also ``resume=True``): the partial answer as a last
#: ``assistant`` message. Servers that treat a trailing assistant message as a
#: prefill continue it (Anthropic's OpenAI-compatible API, llama.cpp, the emulator).
#: ``"prefix"``: the same message with ``"prefix": true`` (DeepSeek's beta
#: endpoint, Mistral). ``"vllm"``: the same message plus
#: ``continue_final_message=true, add_generation_prompt=false`` (vLLM, SGLang).
#: OpenAI's own API does not continue a prefix: it starts a new answer, so do
#: not use resume there.
RESUME_STRATEGIES: dict[str, ResumeStrategy] = {
    "assistant": _assistant_prefix,
    "prefix": _prefix_flag,
    "vllm": _vllm,
}


def _stream_error_retryable(error: StreamError) -> bool:
    if error.code == MALFORMED:
        return False
    etype = ""
    body = error.body
    if isinstance(body, dict):
        inner = body.get("error")
        if isinstance(inner, dict):
            etype = str(inner.get("type") or "")
    text = f"{error.code or ''} {etype} {error.message}"
    if _QUOTA_WORDS.search(text):
        return False
    return error.code in _RETRYABLE_CODES or bool(_RETRYABLE_IN_STREAM.search(text))


def is_rate_limit(error: HolySheepError) -> bool:
    """An error object inside a 200 stream that says the rate limit was hit (a 429 in disguise)."""
    if not isinstance(error, StreamError) or error.code == MALFORMED:
        return False
    if error.code in ("429", "rate_limit_exceeded"):
        return True
    return bool(_RATE_LIMIT_WORDS.search(f"{error.code or ''} {error.message}"))


def retryable(error: HolySheepError) -> bool:
    """May the stream be tried again after ``error`` (budget and what was yielded aside)?"""
    if isinstance(error, IncompleteStreamError):
        return True
    if isinstance(error, StreamError):
        return _stream_error_retryable(error)
    return isinstance(error, APIConnectionError)


def decide(
    error: HolySheepError,
    *,
    retries_used: int,
    max_retries: int,
    yielded: bool,
    can_resume: bool,
) -> Literal["raise", "retry", "resume"]:
    """What to do after ``error``: ``"retry"`` from scratch (nothing was yielded),
    ``"resume"`` (something was; ``can_resume``: a strategy was given and the
    protocol allows it), or ``"raise"``."""
    if not retryable(error) or retries_used >= max_retries:
        return "raise"
    if not yielded:
        return "retry"
    return "resume" if can_resume else "raise"


def resume_body(
    strategy: ResumeStrategy, body: dict[str, Any], partial: str, deltas: int
) -> dict[str, Any]:
    """The follow-up request that continues ``partial`` (``deltas`` text deltas so far)."""
    new = strategy(dict(body), partial)
    for key in ("max_completion_tokens", "max_tokens"):
        limit = body.get(key)
        if isinstance(limit, int) and not isinstance(limit, bool):
            # One delta is about one token: what is left of the original budget.
            new[key] = max(1, limit - deltas)
    return new


def _stream_timeout(timeout: httpx.Timeout, idle: float | None) -> httpx.Timeout | None:
    """The timeouts of a stream's request: the client's, with the read timeout raised to
    the idle timeout when that is longer (None: the client's as they are).

    The read timeout bounds each read, pings included; the idle timeout bounds the
    silence between data events. A user who allows a stream 900 s of silence
    (a model that thinks long) must not be cut at the 600 s read timeout.
    """
    if idle is None or timeout.read is None or timeout.read >= idle:
        return None
    return httpx.Timeout(timeout.connect, read=idle, write=timeout.write, pool=timeout.pool)
