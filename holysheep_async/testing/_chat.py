"""``POST /v1/chat/completions`` in the emulator, streamed and not.

Answers are deterministic (``_answers``): :func:`answer_text` gives the exact
text the emulator will send for a request, so tests can check every character.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from typing import Any

from ._agent import (
    TOOL_QUIRKS,
    answer_after_tools,
    reasoning_field,
    reasoning_tokens,
    tool_call_chunks,
    tool_calls,
    tool_usage_tokens,
)
from ._answers import (
    answer_text,
    answer_tokens,
    chat_answer,
    choice_count,
    completion_usage,
    is_refusal,
    prompt_tokens,
)
from ._faults import Fault
from ._http import Request, Responder
from ._state import Emulator, route

# answer_text and friends: re-exported (tests import them from here).
__all__ = ["ROUTES", "answer_text", "answer_tokens", "prompt_tokens"]


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


async def chat_completions(
    server: Emulator, request: Request, responder: Responder, match: re.Match[str]
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


def _token_logprobs(token: str) -> dict[str, Any]:
    return {"token": token, "logprob": -0.25, "bytes": None, "top_logprobs": []}


class _Plan:
    """What the answer to ``body`` holds, per choice: reasoning, text, tool calls (``_agent``)."""

    def __init__(self, server: Emulator, body: dict[str, Any]) -> None:
        n = choice_count(body)
        limit = body.get("max_completion_tokens") or body.get("max_tokens")
        after = answer_after_tools(body, limit if isinstance(limit, int) and limit > 0 else None)
        self.calls = [tool_calls(body, i) for i in range(n)]
        self.answers = [
            [] if self.calls[i] else after if after is not None else chat_answer(server, body, i)
            for i in range(n)
        ]
        self.thoughts = reasoning_tokens(body, server.options)
        self.field = reasoning_field(server.options)
        reasoning = len(self.thoughts) * n
        completion = sum(len(a) for a in self.answers) + reasoning
        completion += sum(tool_usage_tokens(c) for c in self.calls)
        self.usage: dict[str, Any] = dict(completion_usage(body, completion))
        if reasoning:
            self.usage["completion_tokens_details"] = {"reasoning_tokens": reasoning}

    def finish(self, choice: int) -> str:
        return "tool_calls" if self.calls[choice] else "stop"


async def _complete(
    server: Emulator, request: Request, responder: Responder, body: dict[str, Any]
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
    refused = is_refusal(body)
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
    server: Emulator, request: Request, responder: Responder, body: dict[str, Any]
) -> None:
    fault: Fault | None = request.fault
    kind = fault.kind if fault is not None else None
    relay = kind == "relay"
    sep = b"data:" if relay else b"data: "
    end = b"\r\n\r\n" if relay else b"\n\n"
    ping = b": ping\r\n\r\n" if relay else b": ping\n\n"
    # kind "ping": a comment before every event.
    lead = ping if kind == "ping" else b""
    n_choices = choice_count(body)
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
    delta_head = '{"refusal":' if is_refusal(body) else '{"content":'
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


ROUTES = (route("POST", "/v1/chat/completions", chat_completions),)
