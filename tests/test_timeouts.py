"""The client's timeouts: the defaults, and which one bounds what (issue 13, item 7).

The default is the official SDK's ``httpx.Timeout(600, connect=10)``: a
non-streamed answer that takes minutes is waited for, not timed out and sent
again (which bills twice). A stream's silence is bounded by its idle timeout;
its read timeout is raised to the idle timeout when that is the longer.

The slow answers here take minutes on trio's virtual clock (``MockClock`` with
autojump: time jumps whenever every task waits), with the server a task on the
same loop, so nothing waits in real time.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import anyio
import anyio.abc
import httpx
import pytest

from holysheep_async import AsyncClient
from holysheep_async.client import DEFAULT_TIMEOUT

pytestmark = pytest.mark.anyio

MESSAGES = [{"role": "user", "content": "take your time"}]
COMPLETION = {
    "id": "c1",
    "object": "chat.completion",
    "created": 0,
    "model": "m",
    "choices": [
        {"index": 0, "message": {"role": "assistant", "content": "done"}, "finish_reason": "stop"}
    ],
    "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4},
}


def sse(obj: object) -> bytes:
    return b"data: " + json.dumps(obj).encode() + b"\n\n"


def delta(text: str | None, finish: str | None = None) -> bytes:
    d = {"content": text} if text is not None else {}
    choice = {"index": 0, "delta": d, "finish_reason": finish}
    return sse({"id": "c1", "model": "m", "choices": [choice]})


def test_default_timeouts_are_the_official_sdks() -> None:
    assert httpx.Timeout(600, connect=10) == DEFAULT_TIMEOUT
    client = AsyncClient(api_key="k")
    assert client.timeout == httpx.Timeout(600, connect=10)
    assert client.http_client.timeout == client.timeout
    assert client.stream_idle_timeout == 30.0


def test_stream_read_timeout_is_never_shorter_than_the_idle_timeout() -> None:
    from holysheep_async.streaming import _stream_timeout

    default = httpx.Timeout(600, connect=10)
    assert _stream_timeout(default, 30.0) is None  # the client's own
    assert _stream_timeout(default, None) is None
    longer = _stream_timeout(default, 900.0)
    assert longer == httpx.Timeout(10, read=900, write=600, pool=600)
    assert _stream_timeout(httpx.Timeout(None), 30.0) is None  # no read timeout at all


def recording(seen: list[dict[str, Any]]) -> httpx.AsyncClient:
    """An httpx client whose transport records each request's timeouts and answers."""

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.extensions["timeout"])
        if json.loads(request.content).get("stream"):
            body = delta("done") + delta(None, "stop") + b"data: [DONE]\n\n"
            return httpx.Response(200, content=body, headers={"content-type": "text/event-stream"})
        return httpx.Response(200, json=COMPLETION)

    return httpx.AsyncClient(transport=httpx.MockTransport(handler))


async def test_requests_carry_the_default_timeouts() -> None:
    seen: list[dict[str, Any]] = []
    async with recording(seen) as http, AsyncClient(api_key="k", http_client=http) as client:
        await client.chat.create(model="m", messages=MESSAGES)
        async with client.chat.stream(model="m", messages=MESSAGES) as stream:
            assert [t async for t in stream] == ["done"]
        async with client.chat.stream(model="m", messages=MESSAGES, idle_timeout=900) as stream:
            assert [t async for t in stream] == ["done"]
        async with client.chat.stream(model="m", messages=MESSAGES, idle_timeout=None) as stream:
            assert [t async for t in stream] == ["done"]
    plain = {"connect": 10.0, "read": 600.0, "write": 600.0, "pool": 600.0}
    assert seen == [plain, plain, {**plain, "read": 900.0}, plain]


async def test_a_shorter_read_timeout_of_the_users_is_raised_for_streams_only() -> None:
    seen: list[dict[str, Any]] = []
    async with (
        recording(seen) as http,
        AsyncClient(api_key="k", http_client=http, timeout=20, stream_idle_timeout=45) as client,
    ):
        await client.chat.create(model="m", messages=MESSAGES)
        async with client.chat.stream(model="m", messages=MESSAGES) as stream:
            assert [t async for t in stream] == ["done"]
    assert [t["read"] for t in seen] == [20.0, 45.0]


# -- minutes on trio's virtual clock ------------------------------------------------------


def virtual_trio() -> tuple[str, dict[str, Any]]:
    trio_testing = pytest.importorskip("trio.testing")
    return ("trio", {"clock": trio_testing.MockClock(autojump_threshold=0)})


async def serve_slowly(
    tg: anyio.abc.TaskGroup, answer: Callable[[anyio.abc.SocketStream], Any], seen: list[bytes]
) -> str:
    """A server task on this loop; ``answer(stream)`` writes each response."""
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    port = listener.extra(anyio.abc.SocketAttribute.local_port)

    async def handle(stream: anyio.abc.SocketStream) -> None:
        async with stream:
            data = b""
            while b"\r\n\r\n" not in data:
                data += await stream.receive()
            head, _, body = data.partition(b"\r\n\r\n")
            length = next(
                int(line.split(b":")[1])
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length:")
            )
            while len(body) < length:
                body += await stream.receive()
            seen.append(body)
            await answer(stream)

    tg.start_soon(listener.serve, handle)
    return f"http://127.0.0.1:{port}/v1"


@pytest.mark.parametrize("anyio_backend", [virtual_trio()], ids=["trio-virtual-clock"])
async def test_a_two_minute_answer_is_waited_for_and_sent_once() -> None:
    seen: list[bytes] = []

    async def answer(stream: anyio.abc.SocketStream) -> None:
        await anyio.sleep(120)  # a long generation, or a relay waiting out its rate window
        body = json.dumps(COMPLETION).encode()
        await stream.send(
            b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
            b"content-length: %d\r\nconnection: close\r\n\r\n%b" % (len(body), body)
        )

    async with anyio.create_task_group() as tg:
        url = await serve_slowly(tg, answer, seen)
        async with AsyncClient(api_key="k", base_url=url) as client:
            started = anyio.current_time()
            completion = await client.chat.create(model="m", messages=MESSAGES)
            waited = anyio.current_time() - started
        tg.cancel_scope.cancel()
    assert completion.text == "done"
    assert len(seen) == 1, "a slow answer within the read timeout is never sent twice"
    assert waited >= 120  # virtual seconds: the client really waited out the server


@pytest.mark.parametrize("anyio_backend", [virtual_trio()], ids=["trio-virtual-clock"])
async def test_a_stream_silent_longer_than_the_read_timeout_lives_by_its_idle_timeout() -> None:
    seen: list[bytes] = []

    async def answer(stream: anyio.abc.SocketStream) -> None:
        await stream.send(
            b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nconnection: close\r\n\r\n"
        )
        await stream.send(delta("thinking..."))
        await anyio.sleep(700)  # silent, no pings: longer than the 600 s read timeout
        await stream.send(delta(" done", "stop") + b"data: [DONE]\n\n")

    async with anyio.create_task_group() as tg:
        url = await serve_slowly(tg, answer, seen)
        client = AsyncClient(api_key="k", base_url=url, stream_idle_timeout=900)
        async with client, client.chat.stream(model="m", messages=MESSAGES) as stream:
            texts = [t async for t in stream]
        tg.cancel_scope.cancel()
    assert texts == ["thinking...", " done"]
    assert stream.done
    assert len(seen) == 1
