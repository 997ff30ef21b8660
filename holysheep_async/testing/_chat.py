"""``POST /v1/chat/completions`` in the emulator, streamed and not.

Answers are deterministic: :func:`answer_text` gives the exact text the
emulator will send for a request, so tests can check every character.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
import zlib
from typing import TYPE_CHECKING, Any

from ._agent import (
    TOOL_QUIRKS,
    answer_after_tools,
    reasoning_field,
    reasoning_tokens,
    tool_call_chunks,
    tool_calls,
    tool_usage_tokens,
)
from ._faults import Fault
from ._http import Request, Responder, route
from ._schema import structured_answer

if TYPE_CHECKING:
    from ._server import MockServer

__all__ = ["answer_text", "answer_tokens", "prompt_tokens"]

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


def _answer_length(server: MockServer, body: dict[str, Any]) -> int:
    limit = body.get("max_completion_tokens") or body.get("max_tokens")
    return limit if isinstance(limit, int) and limit > 0 else server.tokens


def _prefix(server: MockServer, body: dict[str, Any]) -> str:
    """The assistant prefix a request asks the emulator to continue ("" for none)."""
    if server.options.get("prefill", True) is False:
        return ""
    last = body["messages"][-1]
    if isinstance(last, dict) and last.get("role") == "assistant":
        content = last.get("content")
        if isinstance(content, str):
            return content
    return ""


def _answer(server: MockServer, body: dict[str, Any], choice: int) -> list[str]:
    """The tokens the emulator sends for one choice of ``body``.

    With an assistant prefix that begins the emulator's own answer, the rest of
    that answer: ``max_tokens`` more tokens when set, else up to ``server.tokens``
    in all, so that a resumed stream adds up to the answer an unbroken one gives.
    """
    messages = body["messages"]
    limit = body.get("max_completion_tokens") or body.get("max_tokens")
    limit = limit if isinstance(limit, int) and limit > 0 else None
    after = answer_after_tools(body, limit)
    if after is not None:
        return after
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


def _refused(body: dict[str, Any]) -> bool:
    """Whether the answer to ``body`` is a refusal (structured output asked, ``[refuse]`` said)."""
    if "response_format" not in body:
        return False
    structured = structured_answer(body, "")
    return structured is not None and structured[1]


def _choices(body: dict[str, Any]) -> int:
    n = body.get("n")
    return n if isinstance(n, int) and n > 0 else 1


async def _check(body: Any, responder: Responder) -> bool:
    if not isinstance(body, dict):
        await responder.error(400, "The request body must be a JSON object.")
        return False
    if not isinstance(body.get("model"), str) or not body["model"]:
        await responder.error(400, "you must provide a model parameter", param="model")
        return False
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        await responder.error(
            400, "'messages' must be a non-empty array", param="messages", code="invalid_type"
        )
        return False
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or not isinstance(message.get("role"), str):
            await responder.error(
                400, f"Invalid value for 'messages[{i}]': a 'role' is required", param="messages"
            )
            return False
    return True


@route("POST", "/v1/chat/completions")
async def chat_completions(
    server: MockServer, request: Request, responder: Responder, match: re.Match[str]
) -> None:
    try:
        body = request.json()
    except ValueError:
        await responder.error(400, "We could not parse the JSON body of your request.")
        return
    if not await _check(body, responder):
        return
    quota = server.state.get("quota_check")
    if quota is not None and not await quota(server, request, responder, body):
        return
    if body.get("stream"):
        await _stream(server, request, responder, body)
    else:
        await _complete(server, request, responder, body)


def _usage(body: dict[str, Any], completion: int, reasoning: int = 0) -> dict[str, Any]:
    prompt = prompt_tokens(body.get("messages"))
    usage: dict[str, Any] = {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }
    if reasoning:
        usage["completion_tokens_details"] = {"reasoning_tokens": reasoning}
    return usage


def _token_logprobs(token: str) -> dict[str, Any]:
    return {"token": token, "logprob": -0.25, "bytes": None, "top_logprobs": []}


class _Plan:
    """What the answer to ``body`` holds, per choice: reasoning, text, tool calls."""

    def __init__(self, server: MockServer, body: dict[str, Any]) -> None:
        n = _choices(body)
        self.calls = [tool_calls(body, i) for i in range(n)]
        self.answers = [[] if self.calls[i] else _answer(server, body, i) for i in range(n)]
        self.thoughts = reasoning_tokens(body, server.options)
        self.field = reasoning_field(server.options)
        reasoning = len(self.thoughts) * n
        completion = sum(len(a) for a in self.answers) + reasoning
        completion += sum(tool_usage_tokens(c) for c in self.calls)
        self.usage = _usage(body, completion, reasoning)

    def finish(self, choice: int) -> str:
        return "tool_calls" if self.calls[choice] else "stop"


async def _complete(
    server: MockServer, request: Request, responder: Responder, body: dict[str, Any]
) -> None:
    plan = _Plan(server, body)
    answers = plan.answers
    n_choices = len(answers)
    n_tokens = max(len(a) + len(c) for a, c in zip(answers, plan.calls, strict=True))
    n_tokens += len(plan.thoughts)
    delay = server.ttft + server.itl * max(0, n_tokens - 1)
    if delay > 0.1:
        # A long wait notices a client that gave up (and closes), as a real server would.
        loop = asyncio.get_running_loop()
        deadline = loop.time() + delay
        while loop.time() < deadline:
            if _client_gone(responder):
                responder.abort()
                return
            await asyncio.sleep(min(0.02, max(0.0, deadline - loop.time())))
    elif delay:
        await asyncio.sleep(delay)
    refused = _refused(body)
    want_logprobs = bool(body.get("logprobs"))
    choices = []
    for i in range(n_choices):
        text = "".join(answers[i])
        message: dict[str, Any] = {
            "role": "assistant",
            "content": None if refused or plan.calls[i] else text,
            "refusal": text if refused else None,
        }
        if plan.thoughts:
            message[plan.field] = "".join(plan.thoughts)
        if plan.calls[i]:
            message["tool_calls"] = plan.calls[i]
        logprobs = None
        if want_logprobs and answers[i] and not refused:
            logprobs = {"content": [_token_logprobs(t) for t in answers[i]], "refusal": None}
        choices.append(
            {
                "index": i,
                "message": message,
                "logprobs": logprobs,
                "finish_reason": plan.finish(i),
            }
        )
    await responder.send_json(
        200,
        {
            "id": f"chatcmpl-{request.request_id}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body["model"],
            "choices": choices,
            "usage": plan.usage,
            "system_fingerprint": "fp_holysheep_mock",
        },
        {"x-request-id": request.request_id or "", **request.answer_headers},
    )


_STREAM_FAULTS = frozenset({"drop", "stall", "malformed", "error", "truncate"})


async def _stream(
    server: MockServer, request: Request, responder: Responder, body: dict[str, Any]
) -> None:
    fault: Fault | None = request.fault
    kind = fault.kind if fault is not None else None
    relay = kind == "relay"
    sep = b"data:" if relay else b"data: "
    end = b"\r\n\r\n" if relay else b"\n\n"
    ping = b": ping\r\n\r\n" if relay else b": ping\n\n"
    # kind "ping": a comment before every event.
    lead = ping if kind == "ping" else b""
    n_choices = _choices(body)
    options = body.get("stream_options")
    include_usage = (
        isinstance(options, dict) and bool(options.get("include_usage")) and kind != "no_usage"
    )
    want_logprobs = bool(body.get("logprobs"))
    created = int(time.time())
    head = (
        '{"id":"chatcmpl-%s","object":"chat.completion.chunk","created":%d,"model":%s,'
        '"system_fingerprint":"fp_holysheep_mock",'
        % (request.request_id, created, json.dumps(body["model"]))
    )

    def event(obj_tail: str) -> bytes:
        return lead + sep + (head + obj_tail).encode() + end

    def choice(index: int, delta: str, finish: str | None, logprobs: str = "null") -> str:
        return '"choices":[{"index":%d,"delta":%s,"logprobs":%s,"finish_reason":%s}]}' % (
            index,
            delta,
            logprobs,
            "null" if finish is None else json.dumps(finish),
        )

    await responder.start(
        200,
        {
            "content-type": "text/event-stream; charset=utf-8",
            "cache-control": "no-cache",
            "x-request-id": request.request_id or "",
            **request.answer_headers,
        },
    )
    plan = _Plan(server, body)
    delta_head = '{"refusal":' if _refused(body) else '{"content":'
    quirk = kind if kind in TOOL_QUIRKS else None
    size = int(server.options.get("tool_args_chunk", 4))
    # Each choice's deltas in order (reasoning, text, tool-call fragments), with their logprobs.
    deltas: list[list[tuple[str, str]]] = []
    for i in range(n_choices):
        field = json.dumps(plan.field)
        mine = [("{%s:%s}" % (field, json.dumps(t)), "null") for t in plan.thoughts]
        for token in plan.answers[i]:
            logprobs = (
                '{"content":[%s]}' % json.dumps(_token_logprobs(token)) if want_logprobs else "null"
            )
            mine.append((delta_head + json.dumps(token) + "}", logprobs))
        for entries in tool_call_chunks(plan.calls[i], quirk, size):
            mine.append(('{"tool_calls":%s}' % json.dumps(entries), "null"))
        deltas.append(mine)
    n_tokens = max(len(d) for d in deltas)
    if kind == "ping":
        await responder.write(b"event: ping\ndata: {}\n\n", flush=False)
    for i in range(n_choices):
        await responder.write(
            event(choice(i, '{"role":"assistant","content":""}', None)), flush=False
        )
    await responder.write(b"", flush=True)
    first_delay = server.ttft
    if kind == "slow_first" and fault is not None:
        first_delay += fault.delay or 0.0
    if relay:
        await responder.write(ping)
    if first_delay:
        await asyncio.sleep(first_delay)
    sent = 0
    after = fault.after if fault is not None and kind in _STREAM_FAULTS else -1
    batch: list[bytes] = []
    for t in range(n_tokens):
        for i in range(n_choices):
            if t >= len(deltas[i]):
                continue
            if sent == after:
                assert fault is not None
                if batch:
                    await responder.write(b"".join(batch))
                    batch = []
                if not await _apply_fault(fault, responder, sep, end, ping):
                    return
                after = -1
            delta, logprobs = deltas[i][t]
            batch.append(event(choice(i, delta, None, logprobs)))
            sent += 1
        if server.itl and t < n_tokens - 1:
            await responder.write(b"".join(batch))
            batch = []
            if relay:
                await responder.write(ping)
            await asyncio.sleep(server.itl)
        elif len(batch) >= 256:
            await responder.write(b"".join(batch))
            batch = []
    if sent == after:
        assert fault is not None
        if batch:
            await responder.write(b"".join(batch))
            batch = []
        if not await _apply_fault(fault, responder, sep, end, ping):
            return
    for i in range(n_choices):
        batch.append(event(choice(i, "{}", plan.finish(i))))
    if include_usage:
        batch.append(event('"choices":[],"usage":%s}' % json.dumps(plan.usage)))
    if kind != "no_done":
        batch.append(lead + sep + b"[DONE]" + end)
    await responder.write(b"".join(batch))
    await responder.end()


def _client_gone(responder: Responder) -> bool:
    writer = responder._writer
    if writer.transport.is_closing():
        return True
    reader = getattr(writer, "_reader", None)
    return reader is not None and (reader.at_eof() or reader.exception() is not None)


async def _apply_fault(
    fault: Fault, responder: Responder, sep: bytes, end: bytes, ping: bytes
) -> bool:
    """Inject a stream fault; True when the stream goes on afterwards (a stall that ends)."""
    kind = fault.kind
    if kind == "drop":
        responder.abort()
    elif kind == "truncate":
        await responder.end()
    elif kind == "malformed":
        await responder.write(sep + b'{"id": "broken", "choices": [' + end)
        await responder.end()
    elif kind == "error":
        code = fault.code or "overloaded"
        if code in ("overloaded", "server_error"):
            etype = "server_error"
        elif "rate" in code:
            etype = "rate_limit_error"
        else:
            etype = "invalid_request_error"
        err = {
            "error": {
                "message": fault.message or "The server is overloaded, please try again later.",
                "type": etype,
                "code": code,
            }
        }
        await responder.write(sep + json.dumps(err).encode() + end)
        await responder.end()
    elif kind == "stall":
        # Silent (or pinging) until `delay` has passed, or until the client gives up.
        loop = asyncio.get_running_loop()
        deadline = None if fault.delay is None else loop.time() + fault.delay
        next_ping = loop.time() + fault.ping if fault.ping else None
        while deadline is None or loop.time() < deadline:
            if _client_gone(responder):
                responder.abort()
                return False
            wake = loop.time() + 0.02
            if deadline is not None:
                wake = min(wake, deadline)
            if next_ping is not None:
                wake = min(wake, next_ping)
            await asyncio.sleep(max(0.0, wake - loop.time()))
            if next_ping is not None and loop.time() >= next_ping:
                await responder.write(ping)
                next_ping += fault.ping or 0.0
        return True
    return False
