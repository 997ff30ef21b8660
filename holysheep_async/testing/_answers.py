"""What the emulator answers, deterministically: text, tokens, usage. No I/O.

:func:`answer_text` gives the exact text the emulator sends for a request, so
tests can check every character; every route family that answers with text
(chat, batches, and any new one) takes its answer from here, so they agree.
"""

from __future__ import annotations

import json
import zlib
from typing import Any

from ._schema import structured_answer
from ._state import Emulator

__all__ = [
    "answer_length",
    "answer_text",
    "answer_tokens",
    "chat_answer",
    "choice_count",
    "completion_usage",
    "is_refusal",
    "prompt_tokens",
]

_WORDS = [
    "the",
    "sheep",
    "stream",
    "batch",
    "token",
    "quick",
    "answer",
    "model",
    "relay",
    "cost",
    "fast",
    "steady",
    "cloud",
    "wool",
    "meadow",
    "shepherd",
    "flock",
    "river",
    "light",
    "byte",
    "queue",
    "window",
    "minute",
    "second",
    "request",
    "result",
    "price",
    "half",
    "file",
    "line",
    "order",
    "retry",
    "limit",
    "bucket",
    "async",
    "trio",
    "event",
    "chunk",
    "usage",
    "report",
    "green",
    "hill",
    "morning",
    "field",
    "quiet",
    "clear",
    "bright",
    "simple",
    "exact",
    "small",
    "large",
    "every",
    "each",
]


def _seed(messages: Any) -> int:
    last = ""
    if isinstance(messages, list):
        for message in reversed(messages):
            if isinstance(message, dict) and message.get("role") == "user":
                content = message.get("content")
                last = content if isinstance(content, str) else json.dumps(content)
                break
    return zlib.crc32(last.encode("utf-8", "replace"))


def answer_tokens(messages: Any, n: int, choice: int = 0) -> list[str]:
    """The ``n`` tokens of the emulator's answer to ``messages`` (choice ``choice``)."""
    seed = _seed(messages) + 7919 * choice
    size = len(_WORDS)
    out = []
    for i in range(n):
        word = _WORDS[(seed + i * 13) % size]
        out.append(word if i == 0 else " " + word)
    if out:
        out[0] = out[0].capitalize()
    return out


def answer_text(messages: Any, n: int = 16, choice: int = 0) -> str:
    """The exact text the emulator answers to ``messages`` with ``n`` tokens."""
    return "".join(answer_tokens(messages, n, choice))


def prompt_tokens(messages: Any) -> int:
    """The emulator's prompt token count: about four characters per token."""
    chars = 0
    if isinstance(messages, list):
        for message in messages:
            if isinstance(message, dict):
                content = message.get("content")
                chars += len(content) if isinstance(content, str) else len(json.dumps(content))
    return chars // 4 + 1


def answer_length(server: Emulator, body: dict[str, Any]) -> int:
    limit = body.get("max_completion_tokens") or body.get("max_tokens")
    return limit if isinstance(limit, int) and limit > 0 else server.tokens


def _prefix(server: Emulator, body: dict[str, Any]) -> str:
    """The assistant prefix a request asks the emulator to continue ("" for none)."""
    if server.options.get("prefill", True) is False:
        return ""
    last = body["messages"][-1]
    if isinstance(last, dict) and last.get("role") == "assistant":
        content = last.get("content")
        if isinstance(content, str):
            return content
    return ""


def chat_answer(server: Emulator, body: dict[str, Any], choice: int) -> list[str]:
    """The tokens the emulator sends for one choice of ``body``.

    With an assistant prefix that begins the emulator's own answer, the rest of
    that answer: ``max_tokens`` more tokens when set, else up to ``server.tokens``
    in all, so that a resumed stream adds up to the answer an unbroken one gives.
    """
    messages = body["messages"]
    limit = body.get("max_completion_tokens") or body.get("max_tokens")
    limit = limit if isinstance(limit, int) and limit > 0 else None
    if "response_format" in body:
        plain = "".join(answer_tokens(messages, limit or server.tokens, choice))
        structured = structured_answer(body, plain)
        if structured is not None:
            return structured[0]
    prefix = _prefix(server, body) if choice == 0 else ""
    if prefix:
        full = answer_tokens(messages, len(prefix) + (limit or server.tokens) + 1, choice)
        said = ""
        k = 0
        while k < len(full) and len(said) < len(prefix):
            said += full[k]
            k += 1
        if said.startswith(prefix):
            # A prefix that ends inside a token gets the rest of that token first.
            piece = [said[len(prefix) :]] if len(said) > len(prefix) else []
            count = limit if limit is not None else max(0, server.tokens - k)
            return piece + full[k : k + count]
    return answer_tokens(messages, limit or server.tokens, choice)


def is_refusal(body: dict[str, Any]) -> bool:
    """Whether the answer to ``body`` is a refusal (structured output asked, ``[refuse]`` said)."""
    if "response_format" not in body:
        return False
    structured = structured_answer(body, "")
    return structured is not None and structured[1]


def choice_count(body: dict[str, Any]) -> int:
    n = body.get("n")
    return n if isinstance(n, int) and n > 0 else 1


def completion_usage(body: dict[str, Any], completion: int) -> dict[str, int]:
    prompt = prompt_tokens(body.get("messages"))
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }
