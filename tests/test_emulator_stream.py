"""The emulator's streams, read with plain httpx: each fault does what it says, byte for byte."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import anyio
import httpx
import pytest

from holysheep_async.sse import SSEDecoder
from holysheep_async.testing import Fault, MockServer, answer_text, answer_tokens

pytestmark = pytest.mark.anyio

MSGS = [{"role": "user", "content": "Count the sheep."}]
TOKENS = answer_tokens(MSGS, 16)
AUTH = {"authorization": "Bearer test-key"}


@pytest.fixture
async def http(server: MockServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=server.base_url, headers=AUTH) as client:
        yield client


class Got:
    def __init__(self) -> None:
        self.raw = b""
        self.status = 0
        self.headers: httpx.Headers = httpx.Headers()
        self.error: Exception | None = None

    @property
    def events(self) -> list[str]:
        decoder = SSEDecoder()
        return [e.data for e in decoder.feed(self.raw) + decoder.flush()]

    @property
    def chunks(self) -> list[dict[str, Any]]:
        return [json.loads(d) for d in self.events if d != "[DONE]"]

    @property
    def contents(self) -> list[str]:
        return [
            c["choices"][0]["delta"]["content"]
            for c in self.chunks
            if c.get("choices") and c["choices"][0]["delta"].get("content")
        ]


async def fetch(http: httpx.AsyncClient, fault: str | None = None, **body: Any) -> Got:
    payload = {"model": "m", "messages": MSGS, "stream": True, **body}
    headers = {"x-mock-fault": fault} if fault else {}
    got = Got()
    with anyio.fail_after(20):
        async with http.stream("POST", "/chat/completions", json=payload, headers=headers) as r:
            got.status = r.status_code
            got.headers = r.headers
            try:
                async for part in r.aiter_raw():
                    got.raw += part
            except httpx.HTTPError as exc:
                got.error = exc
    return got


async def test_plain_stream_shape(http: httpx.AsyncClient) -> None:
    got = await fetch(http, stream_options={"include_usage": True})
    assert got.status == 200 and got.headers["content-type"].startswith("text/event-stream")
    assert got.raw.endswith(b"data: [DONE]\n\n")
    assert got.contents == TOKENS
    first, *_, finish, usage = got.chunks
    assert first["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert finish["choices"][0]["finish_reason"] == "stop"
    assert usage["choices"] == [] and usage["usage"]["completion_tokens"] == 16


async def test_usage_only_when_asked_or_not_ignored(http: httpx.AsyncClient) -> None:
    assert "usage" not in (await fetch(http)).chunks[-1]
    ignored = await fetch(http, "no_usage", stream_options={"include_usage": True})
    assert "usage" not in ignored.chunks[-1] and ignored.contents == TOKENS


async def test_relay_style(http: httpx.AsyncClient, server: MockServer) -> None:
    server.itl = 0.001
    try:
        got = await fetch(http, "relay")
    finally:
        server.itl = 0.0
    assert b"data: " not in got.raw and b"data:{" in got.raw
    assert b"\r\n\r\n" in got.raw and b"\n\n" not in got.raw.replace(b"\r\n\r\n", b"")
    assert got.raw.count(b": ping\r\n") >= 15
    assert got.contents == TOKENS


async def test_ping_style(http: httpx.AsyncClient) -> None:
    got = await fetch(http, "ping")
    assert got.raw.startswith(b"event: ping\ndata: {}\n\n")
    assert got.raw.count(b": ping\n\n") == len(got.events) - 1  # every event but the ping
    assert got.contents == TOKENS


@pytest.mark.parametrize("after", [0, 3, 16])
async def test_drop_after_n_chunks(http: httpx.AsyncClient, after: int) -> None:
    got = await fetch(http, f"drop; after={after}")
    assert isinstance(got.error, httpx.RemoteProtocolError)
    assert got.contents == TOKENS[:after]
    assert all(c["choices"][0]["finish_reason"] is None for c in got.chunks)


async def test_truncate_ends_cleanly_without_finish_or_done(http: httpx.AsyncClient) -> None:
    got = await fetch(http, "truncate; after=4")
    assert got.error is None and got.contents == TOKENS[:4]
    assert b"[DONE]" not in got.raw and b'"finish_reason":"stop"' not in got.raw


async def test_no_done(http: httpx.AsyncClient) -> None:
    got = await fetch(http, "no_done")
    assert got.error is None and got.contents == TOKENS and b"[DONE]" not in got.raw
    assert got.chunks[-1]["choices"][0]["finish_reason"] == "stop"


async def test_malformed_event(http: httpx.AsyncClient) -> None:
    got = await fetch(http, "malformed; after=2")
    assert got.events[-1] == '{"id": "broken", "choices": ['
    assert len(got.events) == 1 + 2 + 1


async def test_error_object_inside_a_200_stream(http: httpx.AsyncClient) -> None:
    got = await fetch(http, "error; after=1; code=rate_limit_exceeded; message=Slow down")
    assert got.status == 200
    error = json.loads(got.events[-1])["error"]
    assert error == {
        "message": "Slow down",
        "type": "rate_limit_error",
        "code": "rate_limit_exceeded",
    }


async def test_default_error_object_says_overloaded(http: httpx.AsyncClient) -> None:
    got = await fetch(http, "error")
    assert json.loads(got.events[-1])["error"]["code"] == "overloaded"
    assert got.contents == []


async def test_stall_that_ends_goes_on_with_pings(http: httpx.AsyncClient) -> None:
    got = await fetch(http, "stall; after=2; delay=0.2; ping=0.05")
    assert got.contents == TOKENS and got.raw.endswith(b"data: [DONE]\n\n")
    assert got.raw.count(b": ping\n\n") >= 2


async def test_endless_stall_ends_when_the_client_leaves(
    http: httpx.AsyncClient, server: MockServer
) -> None:
    before = server.open_connections
    payload = {"model": "m", "messages": MSGS, "stream": True}
    async with http.stream(
        "POST", "/chat/completions", json=payload, headers={"x-mock-fault": "stall; after=1"}
    ) as r:
        decoder = SSEDecoder()
        seen = 0
        async for part in r.aiter_raw():
            seen += len(decoder.feed(part))
            if seen >= 2:  # the role chunk and one token, then silence
                break
    await http.aclose()
    # The handler notices the client left (it would otherwise stall forever).
    assert await anyio.to_thread.run_sync(server.wait_connections, before) <= before


async def test_slow_first_token(http: httpx.AsyncClient, server: MockServer) -> None:
    got = await fetch(http, "slow_first; delay=0.01")
    assert got.contents == TOKENS


async def test_status_faults_before_the_stream(http: httpx.AsyncClient) -> None:
    got = await fetch(http, "status=429; retry-after=2")
    assert got.status == 429 and got.headers["retry-after"] == "2"
    assert json.loads(got.raw)["error"]["type"] == "rate_limit_error"
    assert (await fetch(http, "status=503")).status == 503


async def test_queued_fault_hits_one_request(http: httpx.AsyncClient, server: MockServer) -> None:
    server.inject(Fault("drop", after=1))
    assert (await fetch(http)).error is not None
    assert (await fetch(http)).error is None


async def test_prefill_continues_the_answer(http: httpx.AsyncClient) -> None:
    prefix = "".join(TOKENS[:5])
    for extra in ({}, {"prefix": True}):
        msgs = [*MSGS, {"role": "assistant", "content": prefix, **extra}]
        got = await fetch(http, messages=msgs)
        assert prefix + "".join(got.contents) == answer_text(MSGS, 16)
    # With max_tokens: that many more tokens.
    msgs = [*MSGS, {"role": "assistant", "content": prefix}]
    got = await fetch(http, messages=msgs, max_tokens=3, continue_final_message=True)
    assert got.contents == answer_tokens(MSGS, 8)[5:8]
    # A prefix cut inside a token: the rest of that token first.
    got = await fetch(http, messages=[*MSGS, {"role": "assistant", "content": prefix[:-2]}])
    assert prefix[:-2] + "".join(got.contents) == answer_text(MSGS, 16)


async def test_prefill_off_answers_from_scratch(
    http: httpx.AsyncClient, server: MockServer
) -> None:
    server.options["prefill"] = False
    try:
        msgs = [*MSGS, {"role": "assistant", "content": "".join(TOKENS[:5])}]
        got = await fetch(http, messages=msgs)
    finally:
        del server.options["prefill"]
    assert got.contents == TOKENS


async def test_non_stream_answer_also_continues_a_prefix(http: httpx.AsyncClient) -> None:
    prefix = "".join(TOKENS[:4])
    msgs = [*MSGS, {"role": "assistant", "content": prefix}]
    r = await http.post("/chat/completions", json={"model": "m", "messages": msgs})
    content = r.json()["choices"][0]["message"]["content"]
    assert prefix + content == answer_text(MSGS, 16)
