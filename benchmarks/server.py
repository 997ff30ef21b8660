"""A fast OpenAI-compatible chat server for benchmarks, run in a process of its own.

Raw ``asyncio.Protocol`` (no streams layer), answers prebuilt from a few
templates, timers on ``loop.call_later``: it must never be what a benchmark
measures. ``GET /stats`` reports its CPU time so the harness can show the
server's CPU share of every scenario.

The latency profile of one request comes from the ``x-bench-profile`` header
(``ttft=0.05;itl=0.02``), so every peer client can ask for it with its own
default-headers option; the answer length from ``max_tokens`` (default 16).

Run it alone::

    python -m benchmarks.server --port 8100
"""

from __future__ import annotations

import argparse
import asyncio
import heapq
import json
import sys
import time
from typing import Any

WORDS = [b" sheep", b" stream", b" token", b" relay", b" meadow", b" quick", b" batch", b" wool"]

HEAD = (
    b'data: {"id":"chatcmpl-bench","object":"chat.completion.chunk","created":1700000000,'
    b'"model":"bench-model","choices":[{"index":0,"delta":'
)
TAIL = b',"logprobs":null,"finish_reason":%s}]}\n\n'
ROLE_EVENT = HEAD + b'{"role":"assistant","content":""}' + TAIL % b"null"
TOKEN_EVENTS = [HEAD + b'{"content":"%s"}' % w + TAIL % b"null" for w in WORDS]
STOP_EVENT = HEAD + b"{}" + TAIL % b'"stop"'
DONE = b"data: [DONE]\n\n"


def _usage_event(n: int) -> bytes:
    return (
        b'data: {"id":"chatcmpl-bench","object":"chat.completion.chunk","created":1700000000,'
        b'"model":"bench-model","choices":[],"usage":{"prompt_tokens":8,'
        b'"completion_tokens":%d,"total_tokens":%d}}\n\n' % (n, n + 8)
    )


def _chunk(data: bytes) -> bytes:
    return b"%x\r\n%b\r\n" % (len(data), data)


STREAM_HEAD = (
    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream; charset=utf-8\r\n"
    b"cache-control: no-cache\r\nx-request-id: req_bench\r\ntransfer-encoding: chunked\r\n\r\n"
)


def _completion(n: int) -> bytes:
    text = b"".join(WORDS[i % len(WORDS)] for i in range(n)).decode().strip()
    body = json.dumps(
        {
            "id": "chatcmpl-bench",
            "object": "chat.completion",
            "created": 1700000000,
            "model": "bench-model",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text, "refusal": None},
                    "logprobs": None,
                    "finish_reason": "stop",
                }
            ],
            "usage": {"prompt_tokens": 8, "completion_tokens": n, "total_tokens": n + 8},
        },
        separators=(",", ":"),
    ).encode()
    return (
        b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nx-request-id: req_bench\r\n"
        b"content-length: %d\r\n\r\n%b" % (len(body), body)
    )


_COMPLETIONS: dict[int, bytes] = {}


def _parse_profile(value: str) -> tuple[float, float, bool]:
    """``ttft=0.05;itl=0.02;precise=1`` -> (ttft, itl, precise)."""
    ttft = itl = 0.0
    precise = False
    for part in value.split(";"):
        name, _, num = part.partition("=")
        if name.strip() == "ttft":
            ttft = float(num)
        elif name.strip() == "itl":
            itl = float(num)
        elif name.strip() == "precise":
            precise = num.strip() == "1"
    return ttft, itl, precise


class BenchProtocol(asyncio.Protocol):
    """One connection: parse requests (Content-Length bodies), answer, keep alive."""

    def __init__(self) -> None:
        self.buf = b""
        self.transport: asyncio.Transport | None = None
        self.busy = False
        self.paused = False
        self.resume: asyncio.Future[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        if self.resume is not None and not self.resume.done():
            self.resume.set_result(None)

    def pause_writing(self) -> None:
        self.paused = True

    def resume_writing(self) -> None:
        self.paused = False
        if self.resume is not None and not self.resume.done():
            self.resume.set_result(None)

    def data_received(self, data: bytes) -> None:
        self.buf += data
        if not self.busy:
            self._next()

    def _next(self) -> None:
        while not self.busy and self.transport is not None:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = self.buf[:end].decode("latin-1")
            lines = head.split("\r\n")
            method, target, _ = lines[0].split(" ", 2)
            headers: dict[str, str] = {}
            for line in lines[1:]:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            length = int(headers.get("content-length", "0"))
            if "chunked" in headers.get("transfer-encoding", ""):
                body_end = self.buf.find(b"\r\n0\r\n\r\n", end + 4)
                if body_end < 0:
                    return
                body = _dechunk(self.buf[end + 4 : body_end + 7])
                self.buf = self.buf[body_end + 7 :]
            else:
                if len(self.buf) < end + 4 + length:
                    return
                body = self.buf[end + 4 : end + 4 + length]
                self.buf = self.buf[end + 4 + length :]
            self._handle(method, target, headers, body)

    def _handle(self, method: str, target: str, headers: dict[str, str], body: bytes) -> None:
        transport = self.transport
        assert transport is not None
        if target.endswith("/stats"):
            payload = json.dumps({"cpu": time.process_time(), "wall": time.monotonic()}).encode()
            transport.write(
                b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%b"
                % (len(payload), payload)
            )
            return
        if method != "POST" or not target.endswith("/chat/completions"):
            transport.write(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n")
            return
        req: dict[str, Any] = json.loads(body)
        n = int(req.get("max_tokens") or req.get("max_completion_tokens") or 16)
        received = time.perf_counter()
        ttft, itl, precise = _parse_profile(headers.get("x-bench-profile", ""))
        if not req.get("stream"):
            self.busy = True
            asyncio.get_running_loop().call_later(ttft + itl * max(0, n - 1), self._complete, n)
            return
        self.busy = True
        usage = bool((req.get("stream_options") or {}).get("include_usage"))
        if itl and not precise:
            transport.write(STREAM_HEAD + _chunk(ROLE_EVENT))
            loop = asyncio.get_running_loop()
            TICKER.add(loop.time() + ttft, _Paced(self, n, itl, usage))
            return
        asyncio.get_running_loop().create_task(self._stream(n, ttft, itl, usage, received, precise))

    def _complete(self, n: int) -> None:
        if self.transport is not None:
            answer = _COMPLETIONS.get(n)
            if answer is None:
                answer = _COMPLETIONS[n] = _completion(n)
            self.transport.write(answer)
        self.busy = False
        self._next()

    async def _drain(self) -> None:
        if self.paused and self.transport is not None:
            self.resume = asyncio.get_running_loop().create_future()
            await self.resume

    async def _stream(
        self, n: int, ttft: float, itl: float, usage: bool, received: float, precise: bool
    ) -> None:
        t = self.transport
        if t is None:
            return
        t.write(STREAM_HEAD + _chunk(ROLE_EVENT))
        if ttft and precise:
            # The event loop's timers overshoot by up to a millisecond (epoll's
            # resolution): sleep most of the way, then spin to the exact instant.
            # Only for sequential TTFT runs: spinning would stall other streams.
            deadline = received + ttft
            await asyncio.sleep(max(0.0, deadline - time.perf_counter() - 0.003))
            while time.perf_counter() < deadline:
                pass
        elif ttft:
            await asyncio.sleep(ttft)
        events = TOKEN_EVENTS
        k = len(events)
        if itl:
            for i in range(n):
                if self.transport is None:
                    return
                t.write(_chunk(events[i % k]))
                if i < n - 1:
                    await asyncio.sleep(itl)
        else:
            # Batched like a fast real server: many events per write.
            i = 0
            while i < n:
                step = min(n - i, 256)
                t.write(_chunk(b"".join(events[j % k] for j in range(i, i + step))))
                i += step
                await self._drain()
                if self.transport is None:
                    return
        tail = STOP_EVENT + (_usage_event(n) if usage else b"") + DONE
        t.write(_chunk(tail) + b"0\r\n\r\n")
        self.busy = False
        self._next()


class _Paced:
    """A stream with a latency profile, written by the shared :class:`Ticker`."""

    __slots__ = ("i", "itl", "n", "proto", "usage")

    def __init__(self, proto: BenchProtocol, n: int, itl: float, usage: bool) -> None:
        self.proto, self.n, self.itl, self.usage, self.i = proto, n, itl, usage, 0

    def step(self, due: float) -> float | None:
        """Write the next token; the time the one after is due, or None when done."""
        t = self.proto.transport
        if t is None:
            return None
        i = self.i
        data = TOKEN_EVENTS[i % len(TOKEN_EVENTS)]
        self.i = i = i + 1
        if i < self.n:
            t.write(_chunk(data))
            return due + self.itl  # on schedule, not "now + itl": no drift under load
        tail = STOP_EVENT + (_usage_event(self.n) if self.usage else b"") + DONE
        t.write(_chunk(data) + _chunk(tail) + b"0\r\n\r\n")
        self.proto.busy = False
        self.proto._next()
        return None


class Ticker:
    """One timer for every paced stream: a heap of due times, one loop callback per tick.

    A task and a sleep per token cost the server more than the write itself;
    with 1,000 synchronized streams at 20 ms that decided whether the server
    or the client was being measured.
    """

    def __init__(self) -> None:
        self.heap: list[tuple[float, int, _Paced]] = []
        self.seq = 0
        self.armed: asyncio.TimerHandle | None = None
        self.armed_at = 0.0

    def add(self, when: float, job: _Paced) -> None:
        self.seq += 1
        heapq.heappush(self.heap, (when, self.seq, job))
        if self.armed is None or when < self.armed_at:
            self._arm(when)

    def _arm(self, when: float) -> None:
        if self.armed is not None:
            self.armed.cancel()
        self.armed_at = when
        self.armed = asyncio.get_running_loop().call_at(when, self._run)

    def _run(self) -> None:
        self.armed = None
        heap = self.heap
        now = asyncio.get_running_loop().time() + 0.0002
        while heap and heap[0][0] <= now:
            due, _, job = heapq.heappop(heap)
            nxt = job.step(due)
            if nxt is not None:
                self.seq += 1
                heapq.heappush(heap, (nxt, self.seq, job))
        if heap:
            self._arm(heap[0][0])


TICKER = Ticker()


def _dechunk(data: bytes) -> bytes:
    out = []
    pos = 0
    while True:
        eol = data.index(b"\r\n", pos)
        size = int(data[pos:eol].split(b";")[0], 16)
        if size == 0:
            return b"".join(out)
        out.append(data[eol + 2 : eol + 2 + size])
        pos = eol + 4 + size


async def serve(host: str, port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(BenchProtocol, host, port, backlog=4096)
    sock = server.sockets[0]
    print(f"PORT {sock.getsockname()[1]}", flush=True)
    # Stop when the parent goes away (its pipe to our stdin closes).
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    await reader.read()
    server.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    asyncio.run(serve(args.host, args.port))


if __name__ == "__main__":
    main()
