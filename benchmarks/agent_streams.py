"""Chunk throughput of agent streams: reasoning and tool calls accumulated, next to text only.

``python -m benchmarks.agent_streams`` (``--quick`` for a correctness run at a
tiny size). One long stream per run, from a server in a process of its own
that writes prebuilt bodies (so the client's parsing is what is timed), in
two shapes:

- ``text``: content deltas only (the suite's long stream);
- ``agent``: a quarter reasoning deltas (``delta.reasoning_content``), a
  quarter text, half tool-call fragments (two calls, their arguments a few
  characters a chunk), finish reason ``tool_calls``, usage, ``[DONE]``.

Clients, each checked for what it assembled (text, reasoning, the calls'
arguments as JSON) before its numbers count:

- ``holysheep text``: ``async for text in stream`` (reasoning and tool calls are
  still accumulated: ``stream.reasoning``, ``stream.tool_calls``);
- ``holysheep events``: ``stream.events()`` (a typed event per delta), then
  ``final_completion()``;
- ``openai stream()``: the official SDK's ``chat.completions.stream`` helper
  (its ``ChatCompletionStreamState`` accumulation), then ``get_final_completion()``;
- ``openai chunks``: the SDK's ``create(stream=True)``, chunks only (no accumulation).

Reported: chunks/s (median of ``--repeats``) and client CPU ms per 1,000 chunks.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
MODEL = "bench-reasoner"
MESSAGES = [{"role": "user", "content": "Weather in Paris and Oslo?"}]
WORDS = [" sheep", " stream", " token", " relay", " meadow", " quick", " batch", " wool"]
CALLS = [
    ("call_paris", "get_weather", '{"city": "Paris", "unit": "celsius", "days": 3}'),
    ("call_oslo", "get_weather", '{"city": "Oslo", "unit": "celsius", "days": 3}'),
]
FULL = {"chunks": 50_000, "repeats": 3}
QUICK = {"chunks": 400, "repeats": 1}

# -- the bodies -------------------------------------------------------------------------

_HEAD = (
    '{"id":"chatcmpl-agent","object":"chat.completion.chunk","created":1700000000,'
    '"model":"bench-reasoner","choices":[{"index":0,"delta":%s,"logprobs":null,'
    '"finish_reason":%s}]}'
)


def _event(delta: dict[str, Any], finish: str | None = None) -> bytes:
    data = _HEAD % (json.dumps(delta, separators=(",", ":")), json.dumps(finish))
    return b"data: " + data.encode() + b"\n\n"


def expected(shape: str, n: int) -> dict[str, Any]:
    """What a client must assemble from a body of ``shape`` with ``n`` chunks."""
    if shape == "text":
        return {"text": "".join(WORDS[i % len(WORDS)] for i in range(n)), "reasoning": ""}
    quarter = n // 4
    return {
        "reasoning": "".join(WORDS[i % len(WORDS)] for i in range(quarter)),
        "text": "".join(WORDS[i % len(WORDS)] for i in range(quarter)),
        "calls": _fragmented_calls(n - 2 * quarter)[1],
    }


def _fragmented_calls(count: int) -> tuple[list[tuple[int, str]], list[tuple[str, str, Any]]]:
    """``count`` argument fragments over the two calls: (call index, fragment) each, and
    the calls (id, name, parsed arguments). Each call's arguments: a JSON object whose
    ``note`` string is padded so that the fragments add up to ``count``."""
    per_call = max(2, count // len(CALLS))
    fragments: list[tuple[int, str]] = []
    calls = []
    for index, (call_id, name, args) in enumerate(CALLS):
        base = json.loads(args)
        size = 3
        pad = max(0, per_call * size - len(json.dumps({**base, "note": ""})))
        text = json.dumps({**base, "note": "x" * pad})
        pieces = [text[i : i + size] for i in range(0, len(text), size)]
        fragments += [(index, p) for p in pieces]
        calls.append((call_id, name, json.loads(text)))
    return fragments, calls


def body(shape: str, n: int) -> bytes:
    out = [_event({"role": "assistant", "content": ""})]
    if shape == "text":
        out += [_event({"content": WORDS[i % len(WORDS)]}) for i in range(n)]
        out.append(_event({}, "stop"))
    else:
        quarter = n // 4
        out += [
            _event({"content": None, "reasoning_content": WORDS[i % len(WORDS)]})
            for i in range(quarter)
        ]
        out += [_event({"content": WORDS[i % len(WORDS)]}) for i in range(quarter)]
        fragments, _ = _fragmented_calls(n - 2 * quarter)
        started: set[int] = set()
        for index, piece in fragments:
            call: dict[str, Any] = {"index": index, "function": {"arguments": piece}}
            if index not in started:
                started.add(index)
                call_id, name, _ = CALLS[index]
                call = {
                    "index": index,
                    "id": call_id,
                    "type": "function",
                    "function": {"name": name, "arguments": piece},
                }
            out.append(_event({"tool_calls": [call]}))
        out.append(_event({}, "tool_calls"))
    usage = {"prompt_tokens": 9, "completion_tokens": n, "total_tokens": n + 9}
    out.append(
        b'data: {"id":"chatcmpl-agent","object":"chat.completion.chunk","created":1700000000,'
        b'"model":"bench-reasoner","choices":[],"usage":' + json.dumps(usage).encode() + b"}\n\n"
    )
    out.append(b"data: [DONE]\n\n")
    return b"".join(out)


# -- the server (a child process) -------------------------------------------------------


_BODIES: dict[tuple[str, int], bytes] = {}


class _Serve(asyncio.Protocol):
    def __init__(self) -> None:
        self.buf = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while self.transport is not None:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            lines = self.buf[:end].decode("latin-1").split("\r\n")
            headers = {
                k.strip().lower(): v.strip()
                for k, _, v in (line.partition(":") for line in lines[1:])
            }
            length = int(headers.get("content-length", "0"))
            if len(self.buf) < end + 4 + length:
                return
            request = json.loads(self.buf[end + 4 : end + 4 + length] or b"{}")
            self.buf = self.buf[end + 4 + length :]
            shape = headers.get("x-bench-shape", "text")
            n = int(request.get("max_tokens") or 16)
            key = (shape, n)
            payload = _BODIES.get(key)
            if payload is None:
                payload = _BODIES[key] = body(shape, n)
            self.transport.write(
                b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
                b"x-request-id: req_agent\r\ncontent-length: %d\r\n\r\n" % len(payload) + payload
            )


async def _serve() -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(_Serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    print(f"PORT {port}", flush=True)
    await loop.run_in_executor(None, sys.stdin.read)  # until the parent closes the pipe
    server.close()


# -- the clients ------------------------------------------------------------------------

Run = Callable[[str, str, int], Awaitable[dict[str, Any]]]


def _headers(shape: str) -> dict[str, str]:
    return {"x-bench-shape": shape}


async def holysheep_text(base_url: str, shape: str, n: int) -> dict[str, Any]:
    from holysheep_async import AsyncClient

    async with AsyncClient(api_key="bench", base_url=base_url, max_retries=0) as client:
        async with client.chat.stream(
            model=MODEL, messages=MESSAGES, max_tokens=n, extra_headers=_headers(shape)
        ) as stream:
            async for _ in stream:
                pass
        calls = [(c.id, c.name, c.parsed_arguments()) for c in stream.tool_calls]
        return {"text": stream.text, "reasoning": stream.reasoning, "calls": calls}


async def holysheep_events(base_url: str, shape: str, n: int) -> dict[str, Any]:
    from holysheep_async import AsyncClient

    async with AsyncClient(api_key="bench", base_url=base_url, max_retries=0) as client:
        async with client.chat.stream(
            model=MODEL, messages=MESSAGES, max_tokens=n, extra_headers=_headers(shape)
        ) as stream:
            async for _ in stream.events():
                pass
        return _from_completion(stream.final_completion())


async def openai_stream_helper(base_url: str, shape: str, n: int) -> dict[str, Any]:
    import openai

    client = openai.AsyncOpenAI(
        api_key="bench", base_url=base_url, max_retries=0, default_headers=_headers(shape)
    )
    try:
        async with client.chat.completions.stream(
            model=MODEL,
            messages=MESSAGES,
            max_tokens=n,  # type: ignore[arg-type]
        ) as stream:
            async for _ in stream:
                pass
            final = await stream.get_final_completion()
        return _from_completion(final)
    finally:
        await client.close()


async def openai_chunks(base_url: str, shape: str, n: int) -> dict[str, Any]:
    import openai

    client = openai.AsyncOpenAI(
        api_key="bench", base_url=base_url, max_retries=0, default_headers=_headers(shape)
    )
    try:
        stream = await client.chat.completions.create(
            model=MODEL,
            messages=MESSAGES,
            max_tokens=n,
            stream=True,  # type: ignore[arg-type]
        )
        count = 0
        async for _ in stream:
            count += 1
        return {"chunks": count}
    finally:
        await client.close()


def _from_completion(completion: Any) -> dict[str, Any]:
    message = completion.choices[0].message
    reasoning = getattr(message, "reasoning_content", None) or ""
    calls = [
        (c.id, c.function.name, json.loads(c.function.arguments)) for c in message.tool_calls or ()
    ]
    return {"text": message.content or "", "reasoning": reasoning, "calls": calls}


def clients() -> dict[str, Run]:
    out: dict[str, Run] = {
        "holysheep text": holysheep_text,
        "holysheep events": holysheep_events,
    }
    try:
        import openai  # noqa: F401
    except ImportError:
        pass
    else:
        out["openai stream()"] = openai_stream_helper
        out["openai chunks"] = openai_chunks
    return out


def _check(name: str, shape: str, n: int, got: dict[str, Any]) -> None:
    if "chunks" in got:  # chunks only: the count (role, n deltas, finish, usage)
        want = n + 3 if shape == "text" else n - 2 * (n // 4) + 2 * (n // 4) + 3
        if got["chunks"] < want - 1:
            raise AssertionError(f"{name}/{shape}: {got['chunks']} chunks, expected ~{want}")
        return
    want = expected(shape, n)
    for key, value in want.items():
        if got.get(key) != value:
            raise AssertionError(f"{name}/{shape}: {key} differs ({str(got.get(key))[:80]!r})")


# -- the run ----------------------------------------------------------------------------


def run(args: argparse.Namespace, log: Callable[[str], None] = print) -> dict[str, Any]:
    import anyio

    size = QUICK if args.quick else FULL
    n = args.chunks or size["chunks"]
    repeats = args.repeats or size["repeats"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.agent_streams", "--serve"],
        cwd=HERE.parent,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    results: dict[str, Any] = {"chunks": n, "repeats": repeats, "quick": args.quick, "runs": {}}
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().decode()
        if not line.startswith("PORT "):
            raise RuntimeError(f"server failed to start: {line!r}")
        base_url = f"http://127.0.0.1:{int(line.split()[1])}/v1"
        for backend in args.backend:
            for name, client in clients().items():
                if backend == "trio" and name.startswith("openai") and not args.sdk_on_trio:
                    continue
                for shape in ("text", "agent"):
                    rates, cpus = [], []
                    for _ in range(repeats + 1):  # the first run warms up
                        wall0, cpu0 = time.perf_counter(), time.process_time()
                        got = anyio.run(client, base_url, shape, n, backend=backend)
                        wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
                        _check(name, shape, n, got)
                        rates.append(n / wall)
                        cpus.append(cpu / n * 1e6)
                    key = f"{backend}/{name}/{shape}"
                    results["runs"][key] = {
                        "chunks_per_s": statistics.median(rates[1:]),
                        "cpu_ms_per_1000": statistics.median(cpus[1:]),
                    }
                    log(
                        f"{key:40} {results['runs'][key]['chunks_per_s']:>12,.0f} chunks/s"
                        f" {results['runs'][key]['cpu_ms_per_1000']:>8.1f} CPU ms/1k"
                    )
    finally:
        if proc.stdin is not None:
            proc.stdin.close()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    return results


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks.agent_streams", description=__doc__)
    p.add_argument("--quick", action="store_true", help="tiny size: a correctness run")
    p.add_argument("--chunks", type=int, help="chunks per stream")
    p.add_argument("--repeats", type=int, help="timed runs per client and shape")
    p.add_argument("--backend", action="append", choices=["asyncio", "trio"])
    p.add_argument("--sdk-on-trio", action="store_true", help="run the official SDK on trio too")
    p.add_argument("--out", help="write the results as JSON here")
    p.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.serve:
        asyncio.run(_serve())
        return 0
    args.backend = args.backend or ["asyncio", "trio"]
    run(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
