"""What OpenTelemetry costs the client: absent, present without a provider, and recording.

``python -m benchmarks.otel`` (``--quick`` for a correctness run). Each mode
runs in a child process of its own, since what is imported is the difference:

- ``absent``: ``opentelemetry`` cannot be imported (an import hook refuses it);
- ``noop``: ``opentelemetry-api`` imported, no provider set (the application did
  not configure one: the API's proxy providers);
- ``sdk``: the SDK's ``TracerProvider`` with a ``BatchSpanProcessor`` (to an
  exporter that drops the spans) and a ``MeterProvider`` with an in-memory reader.

Two kinds of figures:

- micro, timeit-style (best of ``repeats``, sequential calls, one process):
  the hook's check ``_otel.current()`` alone; what the hook around ``chat.create``
  adds to making the call (``create_hook_ns``); whole ``chat.create`` and
  ``chat.stream`` (20 chunks) calls against ``httpx.MockTransport`` (no network,
  so the client's own CPU is what is timed);
- throughput: the suite's ``nonstream`` (requests/s, 64 at a time) and
  ``fast_streams`` (256 concurrent streams of 100 chunks, wall seconds) against
  :mod:`benchmarks.server` over 127.0.0.1, modes alternating between runs.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
MODES = ("absent", "noop", "sdk")
MESSAGES = [{"role": "user", "content": "Say something about sheep."}]


# -- the child: one mode --------------------------------------------------------------


class _Block:
    def find_spec(self, name: str, path: Any = None, target: Any = None) -> None:
        if name == "opentelemetry" or name.startswith("opentelemetry."):
            raise ImportError(f"blocked by benchmarks.otel: {name}")


def _setup(mode: str) -> Any:
    if mode == "absent":
        sys.meta_path.insert(0, _Block())
        return None
    from opentelemetry import metrics, trace

    if mode == "noop":
        return None
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import (
        BatchSpanProcessor,
        SpanExporter,
        SpanExportResult,
    )

    class Drop(SpanExporter):
        def export(self, spans: Any) -> SpanExportResult:
            return SpanExportResult.SUCCESS

    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(BatchSpanProcessor(Drop()))
    trace.set_tracer_provider(tracer_provider)
    reader = InMemoryMetricReader()
    metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))
    return reader


def _mock_transport() -> Any:
    import httpx

    completion = {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1,
        "model": "bench-model",
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": "baa " * 16},
             "finish_reason": "stop"}
        ],
        "usage": {"prompt_tokens": 7, "completion_tokens": 16, "total_tokens": 23},
    }  # fmt: skip
    chunk = '{"id":"c","object":"chat.completion.chunk","created":1,"model":"bench-model","choices":[{"index":0,"delta":{"content":"baa "},"finish_reason":null}]}'  # noqa: E501
    last = '{"id":"c","object":"chat.completion.chunk","created":1,"model":"bench-model","choices":[{"index":0,"delta":{},"finish_reason":"stop"}],"usage":{"prompt_tokens":7,"completion_tokens":20,"total_tokens":27}}'  # noqa: E501
    events = [*(f"data: {chunk}\n\n" for _ in range(20)), f"data: {last}\n\ndata: [DONE]\n\n"]
    sse = "".join(events).encode()
    body = json.dumps(completion).encode()

    def handler(request: httpx.Request) -> httpx.Response:
        if b'"stream":true' in request.content:
            return httpx.Response(200, headers={"content-type": "text/event-stream"}, content=sse)
        return httpx.Response(200, headers={"content-type": "application/json"}, content=body)

    return httpx.MockTransport(handler)


async def _micro(n: int, repeats: int) -> dict[str, float]:
    import timeit

    import httpx

    from holysheep_async import AsyncClient, _otel
    from holysheep_async.chat import Chat

    out: dict[str, float] = {}
    timer = timeit.Timer(_otel.current)
    out["check_ns"] = min(timer.repeat(repeats, 100_000)) / 100_000 * 1e9
    http = httpx.AsyncClient(transport=_mock_transport())
    async with AsyncClient(api_key="k", base_url="https://bench.local/v1", http_client=http) as c:
        # What the hook around chat.create costs before anything is sent: making the
        # call's coroutine through it, against making it without (closed unstarted).
        raw = Chat.create.__wrapped__  # type: ignore[attr-defined]
        hooked = timeit.Timer(lambda: c.chat.create(model="m", messages=MESSAGES).close())
        bare = timeit.Timer(lambda: raw(c.chat, model="m", messages=MESSAGES).close())
        out["create_hook_ns"] = (
            min(hooked.repeat(repeats, 20_000)) - min(bare.repeat(repeats, 20_000))
        ) / 20_000 * 1e9
        for name, count in (("create_us", n), ("stream_us", n // 2)):
            best = float("inf")
            for _ in range(repeats):
                t0 = time.perf_counter()
                for _ in range(count):
                    if name == "create_us":
                        await c.chat.create(model="bench-model", messages=MESSAGES)
                    else:
                        async with c.chat.stream(model="bench-model", messages=MESSAGES) as s:
                            async for _text in s:
                                pass
                best = min(best, (time.perf_counter() - t0) / count)
            out[name] = best * 1e6
    await http.aclose()
    return out


async def _throughput(base_url: str, quick: bool) -> dict[str, float]:
    from . import peers, suite

    size = suite.QUICK if quick else suite.FULL
    out = await suite.scn_nonstream(peers.HolySheep, base_url, size)
    out.update(await suite.scn_fast_streams(peers.HolySheep, base_url, size))
    return out


def child(mode: str, base_url: str | None, quick: bool, repeats: int) -> dict[str, Any]:
    import anyio

    reader = _setup(mode)
    result: dict[str, Any] = {"mode": mode}
    if base_url is None:
        n = 20 if quick else 200
        for backend in ("asyncio", "trio"):
            for key, value in anyio.run(_micro, n, repeats, backend=backend).items():
                result[f"{backend}.{key}"] = value
    else:
        result.update(anyio.run(_throughput, base_url, quick))
    result["otel_modules"] = sorted(m for m in sys.modules if m.startswith("opentelemetry"))[:3]
    if reader is not None:  # the SDK did record: say how much
        data = reader.get_metrics_data()
        result["durations_recorded"] = sum(
            p.count
            for rm in data.resource_metrics
            for sm in rm.scope_metrics
            for m in sm.metrics
            if m.name == "gen_ai.client.operation.duration"
            for p in m.data.data_points
        )
    return result


# -- the parent: every mode, alternating ------------------------------------------------------


def _spawn(mode: str, base_url: str | None, quick: bool, repeats: int) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "benchmarks.otel", "--child", mode, "--repeats", str(repeats)]
    if base_url:
        cmd += ["--base-url", base_url]
    if quick:
        cmd.append("--quick")
    done = subprocess.run(cmd, cwd=HERE.parent, capture_output=True, text=True, check=False)
    if done.returncode:
        raise RuntimeError(f"{mode}: {done.stderr.strip()[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.otel", description=__doc__)
    p.add_argument("--quick", action="store_true", help="tiny sizes: correctness only")
    p.add_argument(
        "--repeats", type=int, default=None, help="timeit repeats per figure (default 15)"
    )
    p.add_argument("--rounds", type=int, default=None, help="rounds of every mode (default 3)")
    p.add_argument("--child", choices=MODES, help=argparse.SUPPRESS)
    p.add_argument("--base-url", help=argparse.SUPPRESS)
    p.add_argument("--out", type=Path, help="write the figures as JSON here")
    args = p.parse_args(argv)
    repeats = args.repeats or (1 if args.quick else 15)
    rounds = args.rounds or (1 if args.quick else 3)
    if args.child:
        print(json.dumps(child(args.child, args.base_url, args.quick, repeats)))
        return 0

    from .suite import bench_server

    print(f"load average at start: {os.getloadavg()}")
    # Modes alternate (the machine's load drifts); the best of every round is kept.
    micro: dict[str, list[dict[str, Any]]] = {m: [] for m in MODES}
    for r in range(rounds):
        for mode in MODES if r % 2 == 0 else tuple(reversed(MODES)):
            micro[mode].append(_spawn(mode, None, args.quick, repeats))
            print("micro", json.dumps(micro[mode][-1]))
    runs: dict[str, list[dict[str, Any]]] = {m: [] for m in MODES}
    with bench_server() as server:
        for r in range(rounds):
            for mode in MODES if r % 2 == 0 else tuple(reversed(MODES)):
                runs[mode].append(_spawn(mode, server.base_url, args.quick, 1))
                print("throughput", json.dumps(runs[mode][-1]))
    print(f"load average at end: {os.getloadavg()}")
    table = {
        mode: {
            **{
                k: min(run[k] for run in micro[mode])
                for k, v in micro[mode][0].items()
                if isinstance(v, float)
            },
            "req_per_s": statistics.median(r["req_per_s"] for r in runs[mode]),
            "fast_streams_wall_s": statistics.median(r["wall_s"] for r in runs[mode]),
        }
        for mode in MODES
    }
    keys = list(table["absent"])
    print(f"\n{'':<24}" + "".join(f"{m:>12}" for m in MODES))
    for key in keys:
        print(f"{key:<24}" + "".join(f"{table[m][key]:>12.2f}" for m in MODES))
    if args.out:
        args.out.write_text(json.dumps({"table": table, "micro": micro, "runs": runs}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
