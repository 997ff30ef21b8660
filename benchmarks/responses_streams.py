"""Responses streams next to chat streams and the official SDK's helpers, same run (issue 22).

``python -m benchmarks.responses_streams`` (``--quick`` for a correctness run at a
tiny size). A server in a process of its own writes prebuilt bodies (so the
client's parsing is what is timed), in the two protocols:

- Responses (``POST /v1/responses``) as OpenAI sends it: an ``event:`` line equal
  to the data's ``type``, a ``sequence_number`` on every event; response.created,
  response.in_progress, response.output_item.added, response.content_part.added,
  one response.output_text.delta per word (``logprobs``, ``obfuscation``), then
  response.output_text.done, response.content_part.done, response.output_item.done
  and response.completed with the whole response and its usage;
- chat (``POST /v1/chat/completions``): a role chunk, a chat.completion.chunk per
  word, the finish, the usage chunk, ``[DONE]``.

Two scenarios:

- ``long``: one stream of ``--deltas`` text deltas; chunks/s (text deltas per
  second) and client CPU ms per 1,000 deltas;
- ``ttft``: ``--ttft-requests`` sequential short streams on one client, the server
  writing the head (everything before the first delta) at once and the first
  delta exactly 50 ms after it read the request (it sleeps most of the way, then
  spins); the overhead is the client's TTFT (request sent to first text delta)
  minus those 50 ms, p50 and p99.

Clients, each checked for what it assembled (the text from its deltas, the final
object's text and output tokens, the events counted) before its numbers count:

- ``holysheep responses.stream``: ``async for text in stream``, then ``stream.response``;
- ``holysheep responses events()``: ``stream.events()`` (a typed event each), then
  ``stream.response``;
- ``holysheep chat.stream``: ``async for text in stream``, then ``final_completion()``;
- ``openai responses.stream``: the official SDK's ``client.responses.stream(...)``
  helper (its snapshot accumulation), events iterated, then ``get_final_response()``;
- ``openai chat.completions.stream``: the SDK's chat helper, then
  ``get_final_completion()``.

On asyncio, and on trio for this client (the SDK on trio too with ``--sdk-on-trio``).
Reported: medians of ``--repeats``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any

HERE = Path(__file__).resolve().parent
MODEL = "gpt-4o-2024-08-06"
PROMPT = "Tell me a long story about sheep."
WORDS = [" sheep", " stream", " token", " relay", " meadow", " quick", " batch", " wool"]
RID = "resp_68af4030592c81938ec0a5fbab4a3e9f05438e46b5f69a3b"
MID = "msg_68af4031b1f48193a2d8f5c1e0b7a4dc05438e46b5f69a3b"
CREATED = 1756315696
SERVER_TTFT = 0.05  # the server's wait before the first delta, in the ttft scenario
TTFT_DELTAS = 2  # text deltas of each ttft stream
FULL = {"deltas": 50_000, "ttft_requests": 100, "repeats": 3}
QUICK = {"deltas": 400, "ttft_requests": 3, "repeats": 1}
RESPONSES_FRAME = 8  # events of a Responses stream that are not text deltas

# -- the bodies -------------------------------------------------------------------------


def expected_text(n: int) -> str:
    return "".join(WORDS[i % len(WORDS)] for i in range(n))


def _compact(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"))


def _envelope(status: str, output: list[dict[str, Any]], usage: Any) -> dict[str, Any]:
    """The response object as OpenAI sends it in response.created / .completed."""
    return {
        "id": RID,
        "object": "response",
        "created_at": CREATED,
        "status": status,
        "background": False,
        "error": None,
        "incomplete_details": None,
        "instructions": None,
        "max_output_tokens": None,
        "max_tool_calls": None,
        "model": MODEL,
        "output": output,
        "parallel_tool_calls": True,
        "previous_response_id": None,
        "prompt_cache_key": None,
        "reasoning": {"effort": None, "summary": None},
        "safety_identifier": None,
        "service_tier": "default",
        "store": True,
        "temperature": 1.0,
        "text": {"format": {"type": "text"}, "verbosity": "medium"},
        "tool_choice": "auto",
        "tools": [],
        "top_logprobs": 0,
        "top_p": 1.0,
        "truncation": "disabled",
        "usage": usage,
        "user": None,
        "metadata": {},
    }


def responses_body(n: int) -> tuple[bytes, bytes]:
    """A Responses stream of ``n`` text deltas: (head before the first delta, the rest)."""
    seq = iter(range(n + RESPONSES_FRAME))

    def event(kind: str, fields: str) -> bytes:
        return b'event: %s\ndata: {"type":"%s","sequence_number":%d,%s}\n\n' % (
            kind.encode(),
            kind.encode(),
            next(seq),
            fields.encode(),
        )

    where = f'"item_id":"{MID}","output_index":0,"content_index":0'
    item = {
        "id": MID,
        "type": "message",
        "status": "in_progress",
        "content": [],
        "role": "assistant",
    }
    part = {"type": "output_text", "annotations": [], "logprobs": [], "text": ""}
    head = [
        event("response.created", '"response":' + _compact(_envelope("in_progress", [], None))),
        event("response.in_progress", '"response":' + _compact(_envelope("in_progress", [], None))),
        event("response.output_item.added", '"output_index":0,"item":' + _compact(item)),
        event("response.content_part.added", where + ',"part":' + _compact(part)),
    ]
    rest = [
        event(
            "response.output_text.delta",
            f'{where},"delta":{_compact(WORDS[i % len(WORDS)])},"logprobs":[],'
            f'"obfuscation":"{"qT7xZ0aLmP"[: 10 - len(WORDS[i % len(WORDS)])]}"',
        )
        for i in range(n)
    ]
    text = expected_text(n)
    done_part = {**part, "text": text}
    done_item = {**item, "status": "completed", "content": [done_part]}
    usage = {
        "input_tokens": 14,
        "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
        "output_tokens": n,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": n + 14,
    }
    rest += [
        event("response.output_text.done", f'{where},"text":{_compact(text)},"logprobs":[]'),
        event("response.content_part.done", where + ',"part":' + _compact(done_part)),
        event("response.output_item.done", '"output_index":0,"item":' + _compact(done_item)),
        event(
            "response.completed",
            '"response":' + _compact(_envelope("completed", [done_item], usage)),
        ),
    ]
    return b"".join(head), b"".join(rest)


_CHAT = (
    'data: {"id":"chatcmpl-Bq4nX1y2z3","object":"chat.completion.chunk","created":%d,'
    '"model":"%s","service_tier":"default","system_fingerprint":"fp_07871e2ad8",'
    '"choices":%%s,"usage":%%s}\n\n' % (CREATED, MODEL)
)


def _chat_chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
    choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
    return (_CHAT % (_compact([choice]), "null")).encode()


def chat_body(n: int) -> tuple[bytes, bytes]:
    """A chat stream of ``n`` text deltas: (head before the first delta, the rest)."""
    head = _chat_chunk({"role": "assistant", "content": "", "refusal": None})
    rest = [_chat_chunk({"content": WORDS[i % len(WORDS)]}) for i in range(n)]
    rest.append(_chat_chunk({}, "stop"))
    usage = {"prompt_tokens": 14, "completion_tokens": n, "total_tokens": n + 14}
    rest.append((_CHAT % ("[]", _compact(usage))).encode())
    rest.append(b"data: [DONE]\n\n")
    return head, b"".join(rest)


# -- the server (a child process) -------------------------------------------------------

_BODIES: dict[tuple[str, int], tuple[bytes, bytes]] = {}


class _Serve(asyncio.Protocol):
    def __init__(self) -> None:
        self.buf = b""
        self.transport: asyncio.Transport | None = None
        self.waiting = False  # a response's first delta is due: the next request waits

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while self.transport is not None and not self.waiting:
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
            received = time.perf_counter()
            request = json.loads(self.buf[end + 4 : end + 4 + length] or b"{}")
            self.buf = self.buf[end + 4 + length :]
            path = lines[0].split(" ")[1] if " " in lines[0] else ""
            if path.endswith("/responses"):
                kind, n = "responses", request.get("max_output_tokens")
            elif path.endswith("/chat/completions"):
                kind, n = "chat", request.get("max_tokens") or request.get("max_completion_tokens")
            else:
                self.transport.write(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n")
                continue
            key = (kind, int(n or 16))
            parts = _BODIES.get(key)
            if parts is None:
                build = responses_body if kind == "responses" else chat_body
                parts = _BODIES[key] = build(key[1])
            head, rest = parts
            self.transport.write(
                b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream; charset=utf-8\r\n"
                b"x-request-id: req_bench\r\ncontent-length: %d\r\n\r\n"
                % (len(head) + len(rest))
                + head
            )
            delay = float(headers.get("x-bench-ttft", "0") or 0)
            if delay:
                self.waiting = True
                asyncio.get_running_loop().create_task(self._later(rest, received + delay))
                return
            self.transport.write(rest)

    async def _later(self, rest: bytes, deadline: float) -> None:
        # The loop's timers overshoot by up to a millisecond: sleep most of the way, then
        # spin to the instant (this process serves one sequential stream at a time).
        await asyncio.sleep(max(0.0, deadline - time.perf_counter() - 0.003))
        while time.perf_counter() < deadline:
            pass
        self.waiting = False
        if self.transport is not None:
            self.transport.write(rest)
            self.data_received(b"")  # a request that arrived meanwhile


async def _serve() -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(_Serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    print(f"PORT {port}", flush=True)
    await loop.run_in_executor(None, sys.stdin.read)  # until the parent closes the pipe
    server.close()


# -- the clients ------------------------------------------------------------------------


def _delay(ttft: float) -> dict[str, str]:
    return {"x-bench-ttft": str(ttft)} if ttft else {}


class Adapter:
    """One client, opened once per scenario; ``stream(n, ttft)`` -> (TTFT s, what it got)."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url

    async def __aenter__(self) -> Adapter:
        return self

    async def __aexit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        raise NotImplementedError

    async def stream(self, n: int, ttft: float = 0.0) -> tuple[float, dict[str, Any]]:
        raise NotImplementedError


class _HolySheep(Adapter):
    def __init__(self, base_url: str) -> None:
        super().__init__(base_url)
        from holysheep_async import AsyncClient

        self.client = AsyncClient(api_key="bench", base_url=base_url, max_retries=0)

    async def aclose(self) -> None:
        await self.client.aclose()


class HolySheepResponsesText(_HolySheep):
    """``async for text in stream`` (or, in the subclass, ``stream.events()``)."""

    events = False

    async def stream(self, n: int, ttft: float = 0.0) -> tuple[float, dict[str, Any]]:
        from holysheep_async.responses import ResponseTextDeltaEvent

        pieces: list[str] = []
        events = 0
        first = 0.0
        start = time.perf_counter()
        async with self.client.responses.stream(
            model=MODEL, input=PROMPT, max_output_tokens=n, extra_headers=_delay(ttft)
        ) as stream:
            if self.events:
                async for event in stream.events():
                    events += 1
                    if isinstance(event, ResponseTextDeltaEvent):
                        if not pieces:
                            first = time.perf_counter() - start
                        pieces.append(event.delta)
            else:
                async for text in stream:
                    if not pieces:
                        first = time.perf_counter() - start
                    pieces.append(text)
        response = stream.response
        usage = response.usage
        got = {
            "text": "".join(pieces),
            "final_text": response.output_text,
            "output_tokens": usage.output_tokens if usage else None,
        }
        return first, {**got, "events": events} if self.events else got


class HolySheepResponsesEvents(HolySheepResponsesText):
    events = True


class HolySheepChat(_HolySheep):
    async def stream(self, n: int, ttft: float = 0.0) -> tuple[float, dict[str, Any]]:
        pieces: list[str] = []
        first = 0.0
        start = time.perf_counter()
        async with self.client.chat.stream(
            model=MODEL,
            messages=[{"role": "user", "content": PROMPT}],
            max_tokens=n,
            extra_headers=_delay(ttft),
        ) as stream:
            async for text in stream:
                if not pieces:
                    first = time.perf_counter() - start
                pieces.append(text)
        completion = stream.final_completion()
        usage = completion.usage
        return first, {
            "text": "".join(pieces),
            "final_text": completion.choices[0].message.content,
            "output_tokens": usage.completion_tokens if usage else None,
        }


class _OpenAI(Adapter):
    def __init__(self, base_url: str) -> None:
        super().__init__(base_url)
        import openai

        self.client = openai.AsyncOpenAI(api_key="bench", base_url=base_url, max_retries=0)

    async def aclose(self) -> None:
        await self.client.close()


class OpenAIResponses(_OpenAI):
    async def stream(self, n: int, ttft: float = 0.0) -> tuple[float, dict[str, Any]]:
        pieces: list[str] = []
        events = 0
        first = 0.0
        start = time.perf_counter()
        async with self.client.responses.stream(
            model=MODEL, input=PROMPT, max_output_tokens=n, extra_headers=_delay(ttft)
        ) as stream:
            async for event in stream:
                events += 1
                if event.type == "response.output_text.delta":
                    if not pieces:
                        first = time.perf_counter() - start
                    pieces.append(event.delta)
            response = await stream.get_final_response()
        usage = response.usage
        return first, {
            "text": "".join(pieces),
            "final_text": response.output_text,
            "output_tokens": usage.output_tokens if usage else None,
            "events": events,
        }


class OpenAIChat(_OpenAI):
    async def stream(self, n: int, ttft: float = 0.0) -> tuple[float, dict[str, Any]]:
        pieces: list[str] = []
        first = 0.0
        start = time.perf_counter()
        async with self.client.chat.completions.stream(
            model=MODEL,
            messages=[{"role": "user", "content": PROMPT}],
            max_tokens=n,
            extra_headers=_delay(ttft),
        ) as stream:
            async for event in stream:
                if event.type == "content.delta" and event.delta:  # not the role chunk's ""
                    if not pieces:
                        first = time.perf_counter() - start
                    pieces.append(event.delta)
            completion = await stream.get_final_completion()
        usage = completion.usage
        return first, {
            "text": "".join(pieces),
            "final_text": completion.choices[0].message.content,
            "output_tokens": usage.completion_tokens if usage else None,
        }


def clients(notes: list[str] | None = None) -> dict[str, type[Adapter]]:
    out: dict[str, type[Adapter]] = {
        "holysheep responses.stream": HolySheepResponsesText,
        "holysheep responses events()": HolySheepResponsesEvents,
        "holysheep chat.stream": HolySheepChat,
    }
    try:
        from openai.resources.responses import AsyncResponses
    except ImportError:
        if notes is not None:
            notes.append("openai not installed: the SDK's helpers are not run")
        return out
    if hasattr(AsyncResponses, "stream"):
        out["openai responses.stream"] = OpenAIResponses
    elif notes is not None:
        notes.append("this openai has no responses.stream (openai>=1.66 has)")
    out["openai chat.completions.stream"] = OpenAIChat
    return out


def check(name: str, n: int, got: dict[str, Any]) -> None:
    """What ``name`` assembled from a stream of ``n`` deltas, or AssertionError."""
    want: dict[str, Any] = {"text": expected_text(n), "final_text": expected_text(n)}
    want["output_tokens"] = n
    if "events" in got:
        want["events"] = n + RESPONSES_FRAME
    for key, value in want.items():
        if got.get(key) != value:
            raise AssertionError(f"{name}: {key} differs ({str(got.get(key))[:80]!r})")


# -- the scenarios (one anyio.run each) -------------------------------------------------


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


async def scn_long(
    name: str, adapter: type[Adapter], base_url: str, n: int, repeats: int
) -> list[dict[str, float]]:
    out = []
    async with adapter(base_url) as client:
        check(name, 5, (await client.stream(5))[1])  # connect, warm the code paths
        for _ in range(repeats):
            wall0, cpu0 = time.perf_counter(), time.process_time()
            _, got = await client.stream(n)
            wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
            check(name, n, got)
            out.append({"chunks_per_s": n / wall, "cpu_ms_per_1000": cpu / n * 1e6})
    return out


async def scn_ttft(
    name: str, adapter: type[Adapter], base_url: str, requests: int, repeats: int
) -> list[dict[str, float]]:
    out = []
    async with adapter(base_url) as client:
        check(name, TTFT_DELTAS, (await client.stream(TTFT_DELTAS, SERVER_TTFT))[1])
        for _ in range(repeats):
            overheads = []
            for _ in range(requests):
                ttft, got = await client.stream(TTFT_DELTAS, SERVER_TTFT)
                check(name, TTFT_DELTAS, got)
                if ttft < SERVER_TTFT:
                    raise AssertionError(f"{name}: TTFT {ttft * 1000:.2f} ms < the server's wait")
                overheads.append((ttft - SERVER_TTFT) * 1000)
            out.append(
                {"overhead_p50_ms": _pct(overheads, 0.5), "overhead_p99_ms": _pct(overheads, 0.99)}
            )
    return out


# -- the run ----------------------------------------------------------------------------


def _median(runs: list[dict[str, float]]) -> dict[str, float]:
    return {k: statistics.median(r[k] for r in runs) for k in runs[0]}


def table(results: dict[str, Any]) -> str:
    """The medians as a markdown table: a row per backend and client."""
    lines = [
        "| backend | client | chunks/s | CPU ms / 1k deltas | TTFT +p50 ms | TTFT +p99 ms |",
        "|---|---|---:|---:|---:|---:|",
    ]
    rows: dict[tuple[str, str], dict[str, float]] = {}
    for key, value in results["runs"].items():
        backend, name, _ = key.split("/")
        rows.setdefault((backend, name), {}).update(value)
    for (backend, name), v in rows.items():
        cells = [
            f"{v['chunks_per_s']:,.0f}" if "chunks_per_s" in v else "-",
            f"{v['cpu_ms_per_1000']:.1f}" if "cpu_ms_per_1000" in v else "-",
            f"{v['overhead_p50_ms']:.2f}" if "overhead_p50_ms" in v else "-",
            f"{v['overhead_p99_ms']:.2f}" if "overhead_p99_ms" in v else "-",
        ]
        lines.append(f"| {backend} | {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def run(args: argparse.Namespace, log: Callable[[str], None] = print) -> dict[str, Any]:
    import anyio

    size = QUICK if args.quick else FULL
    n = args.deltas or size["deltas"]
    requests = args.ttft_requests or size["ttft_requests"]
    repeats = args.repeats or size["repeats"]
    notes: list[str] = []
    chosen = clients(notes)
    results: dict[str, Any] = {
        "deltas": n,
        "ttft_requests": requests,
        "server_ttft_ms": SERVER_TTFT * 1000,
        "repeats": repeats,
        "quick": args.quick,
        "notes": notes,
        "runs": {},
    }
    for note in notes:
        log(f"note: {note}")
    proc = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.responses_streams", "--serve"],
        cwd=HERE.parent,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().decode()
        if not line.startswith("PORT "):
            raise RuntimeError(f"server failed to start: {line!r}")
        base_url = f"http://127.0.0.1:{int(line.split()[1])}/v1"
        for backend in args.backend:
            for name, adapter in chosen.items():
                if backend == "trio" and name.startswith("openai") and not args.sdk_on_trio:
                    continue
                for scenario, fn, amount in (("long", scn_long, n), ("ttft", scn_ttft, requests)):
                    runs = anyio.run(fn, name, adapter, base_url, amount, repeats, backend=backend)
                    key = f"{backend}/{name}/{scenario}"
                    got = results["runs"][key] = _median(runs)
                    shown = " ".join(f"{k}={v:,.2f}" for k, v in got.items())
                    log(f"{key:50} {shown}")
    finally:
        if proc.stdin is not None:
            proc.stdin.close()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    log("")
    log(table(results))
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    return results


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.responses_streams",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--quick", action="store_true", help="tiny sizes: a correctness run")
    p.add_argument("--deltas", type=int, help="text deltas of the long stream")
    p.add_argument("--ttft-requests", type=int, help="sequential short streams per TTFT run")
    p.add_argument("--repeats", type=int, help="timed runs per client and scenario")
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
