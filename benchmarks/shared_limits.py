"""Shared limits on Redis: the cost of one acquire, and 1,000 waiting tasks in 4 processes.

``nox -s bench -- --shared-limits`` (or ``python -m benchmarks --shared-limits``).
Starts its own ``redis-server`` on a free port (``--redis URL`` to use another).

1. acquire + release, one task, no waiting (rpm far above what is reached):
   p50 / p99 through Redis against the in-process limiter.
2. 1,000 tasks (250 in each of 4 processes, asyncio and trio mixed) acquiring
   in a loop on one shared bucket for a few seconds: acquires per second, the
   latency of one acquire (p50 / p99), and fairness (Jain's index over the
   tasks' counts, 1.0 = perfectly even; each process's share). Twice: with the
   rate out of reach (Redis and the client are the limit), and at rpm=30,000
   (500 a second: the bucket is the limit).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import anyio

from holysheep_async import SharedLimits
from holysheep_async.limits import Limiter
from holysheep_async.limits._shared import SharedLimiter


@contextmanager
def redis_server(url: str | None) -> Iterator[str]:
    if url:
        yield url
        return
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("redis-server not found: run .ci/install-redis or pass --redis URL")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    workdir = tempfile.mkdtemp()
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--dir", workdir],
        stdout=subprocess.DEVNULL,
    )
    try:
        for _ in range(500):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.01)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.kill()
        proc.wait()
        shutil.rmtree(workdir, ignore_errors=True)


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))] if values else float("nan")


async def _acquire_cost(limiter: Any, n: int) -> list[float]:
    times = []
    for _ in range(50):  # warm: connection, scripts loaded
        (await limiter.acquire()).release()
    for _ in range(n):
        t0 = time.perf_counter()
        (await limiter.acquire()).release()
        times.append(time.perf_counter() - t0)
    if hasattr(limiter, "aclose"):
        await limiter.aclose()
    return times


def acquire_cost(url: str, n: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for backend in ("asyncio", "trio"):
        for name, make in (
            ("in-process", lambda: Limiter(rpm=6e7, max_concurrency=1000)),
            (
                "redis",
                lambda: SharedLimiter(
                    SharedLimits(url), f"cost-{uuid.uuid4().hex}", rpm=6e7, max_concurrency=1000
                ),
            ),
        ):
            times = anyio.run(_acquire_cost, make(), n, backend=backend)
            out[f"{name} {backend}"] = {
                "p50_us": pct(times, 0.5) * 1e6,
                "p99_us": pct(times, 0.99) * 1e6,
            }
    return out


async def _worker(cfg: dict[str, Any]) -> dict[str, Any]:
    limiter = SharedLimiter(SharedLimits(cfg["url"]), cfg["ns"], rpm=cfg["rpm"])
    counts = [0] * cfg["tasks"]
    latencies: list[float] = []
    for _ in range(20):  # warm: the connection, the scripts
        (await limiter.acquire()).release()
    print("ready", flush=True)  # then wait for the go line: all processes start together
    await anyio.to_thread.run_sync(sys.stdin.readline)
    start = time.time()
    end = start + cfg["seconds"]

    async def task(i: int) -> None:
        while time.time() < end:
            t0 = time.perf_counter()
            (await limiter.acquire()).release()
            if time.time() < end:
                latencies.append(time.perf_counter() - t0)
                counts[i] += 1

    with anyio.move_on_after(cfg["seconds"] + 30):
        async with anyio.create_task_group() as tg:
            for i in range(cfg["tasks"]):
                tg.start_soon(task, i)
    await limiter.aclose()
    return {"counts": counts, "latencies": latencies}


def fleet(
    url: str, rpm: float, seconds: float, processes: int = 4, tasks: int = 250
) -> dict[str, Any]:
    cfg = {"url": url, "ns": f"fleet-{uuid.uuid4().hex}", "rpm": rpm, "tasks": tasks,
           "seconds": seconds}
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "benchmarks.shared_limits", "--worker",
             json.dumps({**cfg, "backend": "asyncio" if i % 2 == 0 else "trio"})],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for i in range(processes)
    ]
    for proc in procs:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    for proc in procs:
        assert proc.stdin is not None
        proc.stdin.write("go\n")
        proc.stdin.flush()
    results = [json.loads(p.communicate(timeout=seconds + 120)[0].splitlines()[-1]) for p in procs]
    counts = [c for r in results for c in r["counts"]]
    latencies = [x for r in results for x in r["latencies"]]
    total = sum(counts)
    jain = total**2 / (len(counts) * sum(c * c for c in counts)) if total else 0.0
    return {
        "rpm": rpm,
        "tasks": len(counts),
        "acquires_per_s": total / seconds,
        "p50_s": pct(latencies, 0.5),
        "p99_s": pct(latencies, 0.99),
        "jain_fairness": jain,
        "process_shares": [round(sum(r["counts"]) / total, 3) if total else 0 for r in results],
        "min_max_task": [min(counts), max(counts)],
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks --shared-limits")
    p.add_argument("--redis", default=None)
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--shared-limits", action="store_true", help=argparse.SUPPRESS)
    args, _ = p.parse_known_args(argv)
    if args.worker:
        cfg = json.loads(args.worker)
        print(json.dumps(anyio.run(_worker, cfg, backend=cfg["backend"])))
        return 0
    seconds = 2.0 if args.quick else 6.0
    with redis_server(args.redis) as url:
        report: dict[str, Any] = {"load_avg": os.getloadavg(), "cpus": os.cpu_count()}
        report["acquire_cost"] = acquire_cost(url, 300 if args.quick else 3000)
        for name, cost in report["acquire_cost"].items():
            p50, p99 = cost["p50_us"], cost["p99_us"]
            print(f"acquire+release {name:22} p50 {p50:8.1f} us  p99 {p99:8.1f} us")
        for label, rpm in (("rate out of reach", 6e8), ("rpm=30,000", 30_000.0)):
            r = fleet(url, rpm, seconds)
            report[label] = r
            print(
                f"1,000 tasks / 4 processes, {label}: {r['acquires_per_s']:.0f} acquires/s,"
                f" p50 {r['p50_s'] * 1000:.1f} ms, p99 {r['p99_s'] * 1000:.1f} ms,"
                f" Jain {r['jain_fairness']:.3f}, process shares {r['process_shares']},"
                f" per task min/max {r['min_max_task']}"
            )
        report["load_avg_end"] = os.getloadavg()
        print(json.dumps(report, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
