"""The benchmark suite: scenarios, peers side by side, medians, table + JSON + PNG.

``python -m benchmarks`` (or ``nox -s bench``, or ``holysheep bench``) runs it.
``--quick`` runs every scenario at a tiny size (a correctness check, not a
measurement). Every scenario runs against a fast local server in its own
process (:mod:`benchmarks.server`) whose CPU share is reported next to each
number, so a saturated server would show.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio

from . import peers

HERE = Path(__file__).resolve().parent

FULL = {
    "long_tokens": 50_000,
    "ttft_requests": 60,
    "fast_streams": 256,
    "fast_tokens": 100,
    "slow_streams": 1000,
    "slow_tokens": 50,
    "nonstream_requests": 2000,
    "nonstream_concurrency": 64,
    "jsonl_requests": 50_000,
    "compare_requests": 1000,
}
QUICK = {
    "long_tokens": 300,
    "ttft_requests": 3,
    "fast_streams": 4,
    "fast_tokens": 10,
    "slow_streams": 10,
    "slow_tokens": 5,
    "nonstream_requests": 20,
    "nonstream_concurrency": 4,
    "jsonl_requests": 200,
    "compare_requests": 10,
}


# -- the server -----------------------------------------------------------------


@dataclass
class Server:
    proc: subprocess.Popen[bytes]
    url: str

    @property
    def base_url(self) -> str:
        return f"{self.url}/v1"

    def stats(self) -> tuple[float, float]:
        with urllib.request.urlopen(f"{self.url}/stats", timeout=10) as r:
            data = json.loads(r.read())
        return float(data["cpu"]), float(data["wall"])


@contextlib.contextmanager
def bench_server() -> Iterator[Server]:
    """Start :mod:`benchmarks.server` in a child process; it exits when our pipe closes."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.server", "--port", "0"],
        cwd=HERE.parent,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().decode()
        if not line.startswith("PORT "):
            raise RuntimeError(f"benchmark server failed to start: {line!r}")
        yield Server(proc, f"http://127.0.0.1:{int(line.split()[1])}")
    finally:
        if proc.stdin is not None:
            proc.stdin.close()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# -- scenarios --------------------------------------------------------------------

Factory = Callable[..., peers.Adapter]


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


async def scn_long_stream(make: Factory, base_url: str, size: dict[str, int]) -> dict[str, float]:
    n = size["long_tokens"]
    async with make(base_url) as client:
        await client.stream(5)  # connect, warm caches
        cpu0, t0 = time.process_time(), time.perf_counter()
        _, got = await client.stream(n)
        wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    if got != n:
        raise AssertionError(f"long stream: expected {n} chunks, got {got}")
    return {"chunks_per_s": n / wall, "cpu_ms_per_1000": cpu / n * 1e6}


async def scn_ttft(make: Factory, base_url: str, size: dict[str, int]) -> dict[str, float]:
    server_ttft = 0.05
    async with make(base_url, profile=f"ttft={server_ttft};precise=1") as client:
        await client.stream(2)
        overheads = []
        for _ in range(size["ttft_requests"]):
            ttft, got = await client.stream(2)
            if got != 2:
                raise AssertionError(f"ttft: expected 2 chunks, got {got}")
            overheads.append((ttft - server_ttft) * 1000)
    return {"overhead_p50_ms": _pct(overheads, 0.5), "overhead_p99_ms": _pct(overheads, 0.99)}


async def _concurrent(
    make: Factory, base_url: str, profile: str, streams: int, tokens: int
) -> dict[str, float]:
    async with make(base_url, profile=profile) as client:
        counts: list[int] = []

        async def one() -> None:
            counts.append((await client.stream(tokens))[1])

        t0 = time.perf_counter()
        async with anyio.create_task_group() as tg:
            for _ in range(streams):
                tg.start_soon(one)
        wall = time.perf_counter() - t0
    if counts != [tokens] * streams:
        raise AssertionError(f"concurrent streams: some streams came back short: {set(counts)}")
    return {"wall_s": wall}


async def scn_fast_streams(make: Factory, base_url: str, size: dict[str, int]) -> dict[str, float]:
    return await _concurrent(make, base_url, "", size["fast_streams"], size["fast_tokens"])


async def scn_slow_streams(make: Factory, base_url: str, size: dict[str, int]) -> dict[str, float]:
    return await _concurrent(
        make, base_url, "ttft=0.2;itl=0.02", size["slow_streams"], size["slow_tokens"]
    )


async def scn_nonstream(make: Factory, base_url: str, size: dict[str, int]) -> dict[str, float]:
    total, conc = size["nonstream_requests"], size["nonstream_concurrency"]
    async with make(base_url) as client:
        await client.complete(16)
        left = total

        async def worker() -> None:
            nonlocal left
            while left > 0:
                left -= 1
                await client.complete(16)

        t0 = time.perf_counter()
        async with anyio.create_task_group() as tg:
            for _ in range(conc):
                tg.start_soon(worker)
        wall = time.perf_counter() - t0
    return {"req_per_s": total / wall}


SCENARIOS: dict[str, Callable[[Factory, str, dict[str, int]], Awaitable[dict[str, float]]]] = {
    "long_stream": scn_long_stream,
    "ttft": scn_ttft,
    "fast_streams": scn_fast_streams,
    "slow_streams": scn_slow_streams,
    "nonstream": scn_nonstream,
}

DESCRIPTIONS = {
    "long_stream": "one long stream",
    "ttft": "TTFT overhead (server TTFT 50 ms, sequential)",
    "fast_streams": "concurrent fast streams",
    "slow_streams": "concurrent slow streams (TTFT 200 ms, 50 x 20 ms; ideal 1.2 s)",
    "nonstream": "non-streaming requests",
}


# -- runner -----------------------------------------------------------------------


@dataclass
class Results:
    machine: dict[str, Any]
    command: str
    quick: bool
    size: dict[str, int]
    #: results[backend][scenario][client] -> {metric: [values per run]}
    runs: dict[str, dict[str, dict[str, dict[str, list[float]]]]] = field(default_factory=dict)
    #: server CPU share (0..1 of one core) per backend/scenario/client, per run
    server_cpu: dict[str, dict[str, dict[str, list[float]]]] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    def medians(self) -> dict[str, dict[str, dict[str, dict[str, float]]]]:
        return {
            b: {
                s: {
                    c: {m: statistics.median(v) for m, v in ms.items() if v} for c, ms in cs.items()
                }
                for s, cs in ss.items()
            }
            for b, ss in self.runs.items()
        }

    def to_json(self) -> dict[str, Any]:
        return {
            "machine": self.machine,
            "command": self.command,
            "quick": self.quick,
            "size": self.size,
            "medians": self.medians(),
            "runs": self.runs,
            "server_cpu_share_max": {
                b: {s: {c: max(v) for c, v in cs.items() if v} for s, cs in ss.items()}
                for b, ss in self.server_cpu.items()
            },
            "errors": self.errors,
            "notes": self.notes,
            "extra": self.extra,
        }


def machine_info() -> dict[str, Any]:
    cpu = platform.processor() or ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    from importlib.metadata import PackageNotFoundError, version

    versions = {}
    dists = ["httpx", "anyio", "openai", "trio", "h11", "pydantic", "httpx-sse"]
    for dist in [*dists, "aiohttp", "orjson"]:
        with contextlib.suppress(PackageNotFoundError):
            versions[dist] = version(dist)
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "versions": versions,
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        # Other processes on the machine skew every number: recorded, not hidden.
        "load_avg_at_start": os.getloadavg(),
    }


def run_scenarios(
    server: Server,
    backends: list[str],
    clients: dict[str, Factory],
    scenarios: list[str],
    size: dict[str, int],
    repeats: int,
    results: Results,
    log: Callable[[str], None],
    timeout: float,
    table: dict[str, Any] | None = None,
) -> None:
    """Each scenario of ``table`` (SCENARIOS), each client in turn, ``repeats`` times."""
    for backend in backends:
        for rep in range(repeats):
            for scenario in scenarios:
                fn = (table or SCENARIOS)[scenario]
                order = list(clients) if rep % 2 == 0 else list(reversed(clients))
                for name in order:
                    make = clients[name]
                    if backend not in getattr(make, "backends", (backend,)):
                        continue  # an asyncio-only peer (aiohttp) on trio

                    async def one(fn: Any = fn, make: Factory = make) -> dict[str, float] | None:
                        with anyio.move_on_after(timeout):
                            return await fn(make, server.base_url, size)  # type: ignore[no-any-return]
                        return None

                    gc.collect()
                    cpu0, wall0 = server.stats()
                    try:
                        metrics = anyio.run(one, backend=backend)
                    except Exception as exc:  # a peer failing is a result, not a crash
                        msg = f"{backend}/{scenario}/{name}: {type(exc).__name__}: {exc}"
                        if msg not in results.errors:
                            results.errors.append(msg)
                        log(f"  ! {msg}")
                        continue
                    cpu1, wall1 = server.stats()
                    if metrics is None:
                        msg = f"{backend}/{scenario}/{name}: gave up after {timeout:.0f} s"
                        if msg not in results.errors:
                            results.errors.append(msg)
                        log(f"  ! {msg}")
                        continue
                    share = (cpu1 - cpu0) / max(1e-9, wall1 - wall0)
                    slot = results.runs.setdefault(backend, {}).setdefault(scenario, {})
                    for metric, value in metrics.items():
                        slot.setdefault(name, {}).setdefault(metric, []).append(value)
                    results.server_cpu.setdefault(backend, {}).setdefault(scenario, {}).setdefault(
                        name, []
                    ).append(share)
                    shown = ", ".join(f"{k}={v:,.2f}" for k, v in metrics.items())
                    log(
                        f"  [{backend} run {rep + 1}/{repeats}] {scenario:<13} {name:<22}"
                        f" {shown}  (server cpu {share:.0%})"
                    )


# -- batch side (needs holysheep_async.jsonl) ----------------------------------------


def batch_scenarios(size: dict[str, int], results: Results, log: Callable[[str], None]) -> None:
    try:
        from holysheep_async import jsonl  # type: ignore[attr-defined]
    except ImportError:
        note = (
            "batch side (JSONL write/validate, results parse) skipped: holysheep_async.jsonl absent"
        )
        results.notes.append(note)
        log(f"  - {note}")
        return
    import tracemalloc

    n = size["jsonl_requests"]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "requests.jsonl"
        requests = [
            {
                "custom_id": f"req-{i}",
                "model": "bench-model",
                "messages": [{"role": "user", "content": f"Question number {i}?"}],
                "max_tokens": 64,
            }
            for i in range(n)
        ]
        # Timed without tracemalloc (it slows every allocation several times over),
        # then once more under it for the peak memory.
        t0 = time.perf_counter()
        written = jsonl.write_requests(path, requests)
        report = jsonl.validate_requests(path)
        wall = time.perf_counter() - t0
        tracemalloc.start()
        jsonl.write_requests(path, requests)
        jsonl.validate_requests(path)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        if written != n or not report.ok:
            raise AssertionError(f"jsonl: wrote {written}, report ok={report.ok}")
        results.extra["jsonl_write_validate"] = {
            "requests": n,
            "seconds": wall,
            "peak_mb": peak / 2**20,
        }
        log(f"  jsonl write+validate {n:,}: {wall:.2f} s, peak {peak / 2**20:.1f} MB")
        out = Path(tmp) / "results.jsonl"
        with out.open("w") as f:
            for i in range(n):
                f.write(
                    json.dumps(
                        {
                            "id": f"batch_req_{i}",
                            "custom_id": f"req-{i}",
                            "response": {
                                "status_code": 200,
                                "request_id": f"r{i}",
                                "body": {
                                    "id": f"chatcmpl-{i}",
                                    "object": "chat.completion",
                                    "created": 1700000000,
                                    "model": "bench-model",
                                    "choices": [
                                        {
                                            "index": 0,
                                            "message": {"role": "assistant", "content": "Baa."},
                                            "finish_reason": "stop",
                                        }
                                    ],
                                    "usage": {
                                        "prompt_tokens": 8,
                                        "completion_tokens": 2,
                                        "total_tokens": 10,
                                    },
                                },
                            },
                            "error": None,
                        }
                    )
                    + "\n"
                )
        t0 = time.perf_counter()
        count = sum(1 for _ in jsonl.read_results(out))
        wall = time.perf_counter() - t0
        if count != n:
            raise AssertionError(f"read_results: {count} of {n} lines")
        results.extra["jsonl_read_results"] = {"lines": n, "lines_per_s": n / wall}
        log(f"  read_results {n:,}: {n / wall:,.0f} lines/s")


# -- streaming vs batch on the emulator (the seed's comparison) -------------------------


def compare_stream_batch(
    size: dict[str, int], backend: str, results: Results, log: Callable[[str], None]
) -> None:
    from holysheep_async import AsyncClient
    from holysheep_async.testing import MockServer

    n_req = size["compare_requests"]
    out: dict[str, Any] = {"emulator": "MockServer(ttft=0.05, itl=0.01)", "requests": n_req}

    async def main() -> None:
        async with (
            MockServer(ttft=0.05, itl=0.01, record=False) as server,
            AsyncClient(api_key="bench", base_url=server.base_url, max_retries=0) as client,
        ):
            msgs = [{"role": "user", "content": "Hello"}]
            for tokens in (100, 1000) if not results.quick else (10, 20):
                t0 = time.perf_counter()
                async with client.chat.stream(
                    model="bench-model", messages=msgs, max_tokens=tokens
                ) as stream:
                    async for _ in stream:
                        pass
                out[f"stream_{tokens}_tokens"] = {
                    "ttft_s": stream.metrics.ttft,
                    "total_s": time.perf_counter() - t0,
                }
            t0 = time.perf_counter()
            async with anyio.create_task_group() as tg:
                for i in range(n_req):

                    async def one(i: int = i) -> None:
                        await client.chat.create(
                            model="bench-model",
                            messages=[{"role": "user", "content": f"q{i}"}],
                            max_tokens=16,
                        )

                    tg.start_soon(one)
            wall = time.perf_counter() - t0
            out["direct"] = {"wall_s": wall, "req_per_s": n_req / wall}
            batches = getattr(client, "batches", None)
            if batches is None:
                out["batch"] = "skipped: client.batches absent on this branch"
                return
            requests = [
                {
                    "custom_id": f"q{i}",
                    "model": "bench-model",
                    "messages": [{"role": "user", "content": f"q{i}"}],
                    "max_tokens": 16,
                }
                for i in range(n_req)
            ]
            t0 = time.perf_counter()
            # The emulator moves a batch one step per poll: poll it quickly (a real
            # batch takes minutes to hours; this measures the client's pipeline).
            report = await batches.run(requests, poll_interval=0.05)
            wall = time.perf_counter() - t0
            out["batch"] = {
                "wall_s": wall,
                "succeeded": len(report.succeeded),
                "cost_usd": getattr(report, "cost_usd", None),
            }

    try:
        anyio.run(main, backend=backend)
    except Exception as exc:
        out["error"] = f"{type(exc).__name__}: {exc}"
    with contextlib.suppress(Exception):
        from holysheep_async import pricing  # type: ignore[attr-defined]

        out["cost_per_1000_requests_usd"] = {
            "standard": pricing.cost("gpt-4o-mini", 8_000, 16_000),
            "batch": pricing.cost("gpt-4o-mini", 8_000, 16_000, batch=True),
        }
    if "cost_per_1000_requests_usd" not in out:
        out["cost_per_1000_requests_usd"] = "skipped: holysheep_async.pricing absent on this branch"
    results.extra["stream_vs_batch"] = out
    log(f"  stream vs batch: {json.dumps(out, default=str)}")


# -- a real endpoint -------------------------------------------------------------------


def real_endpoint(
    backend: str, clients: dict[str, Factory], results: Results, log: Callable[[str], None]
) -> None:
    key = os.environ.get("HOLYSHEEP_API_KEY")
    base = os.environ.get("HOLYSHEEP_BASE_URL")
    if not key or not base:
        results.notes.append("real endpoint skipped: set HOLYSHEEP_API_KEY and HOLYSHEEP_BASE_URL")
        return
    model = os.environ.get("HOLYSHEEP_BENCH_MODEL", "gpt-4o-mini")
    out: dict[str, Any] = {"base_url": base, "model": model}
    for name, make in clients.items():

        async def go(make: Factory = make) -> dict[str, float]:
            async with make(base, api_key=key, model=model) as client:
                ttfts = []
                for _ in range(5):
                    ttft, _n = await client.stream(32)
                    ttfts.append(ttft)
            return {"ttft_median_s": statistics.median(ttfts)}

        try:
            out[name] = anyio.run(go, backend=backend)
        except Exception as exc:
            out[name] = f"{type(exc).__name__}: {exc}"
    results.extra["real_endpoint"] = out
    log(f"  real endpoint: {out}")


# -- output ----------------------------------------------------------------------------

HEADLINE = [
    ("long_stream", "chunks_per_s", "chunks/s", "{:,.0f}"),
    ("long_stream", "cpu_ms_per_1000", "CPU ms/1k chunks", "{:.1f}"),
    ("ttft", "overhead_p50_ms", "TTFT +p50 ms", "{:.2f}"),
    ("ttft", "overhead_p99_ms", "TTFT +p99 ms", "{:.2f}"),
    ("fast_streams", "wall_s", "fast streams s", "{:.2f}"),
    ("slow_streams", "wall_s", "slow streams s", "{:.2f}"),
    ("nonstream", "req_per_s", "non-stream req/s", "{:,.0f}"),
]


def table(results: Results) -> str:
    med = results.medians()
    lines = []
    for backend, scen in med.items():
        clients: list[str] = []
        for cs in scen.values():
            clients += [c for c in cs if c not in clients]
        cols = [h for s, _m, h, _f in HEADLINE if s in scen]
        lines.append(f"\n### {backend}\n")
        lines.append("| client | " + " | ".join(cols) + " |")
        lines.append("|---|" + "---:|" * len(cols))
        for c in clients:
            cells = []
            for s, m, _h, f in HEADLINE:
                if s not in scen:
                    continue
                v = scen[s].get(c, {}).get(m)
                cells.append(f.format(v) if v is not None else "n/a")
            lines.append(f"| {c} | " + " | ".join(cells) + " |")
        shares = results.server_cpu.get(backend, {})
        top = max((max(v) for cs in shares.values() for v in cs.values() if v), default=0.0)
        lines.append(f"\nserver CPU share, highest over every run: {top:.0%} of one core")
    return "\n".join(lines)


def chart(results: Results, path: Path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        results.notes.append("no PNG: matplotlib not installed (pip install '.[bench]')")
        return False
    med = results.medians()
    panels = [h for h in HEADLINE if h[1] != "overhead_p50_ms"]
    fig, axes = plt.subplots(len(med), len(panels), figsize=(3.2 * len(panels), 3.4 * len(med)))
    if len(med) == 1:
        axes = [axes]
    for row, (backend, scen) in zip(axes, med.items(), strict=True):
        for ax, (s, m, h, _f) in zip(row, panels, strict=True):
            names = [c for c in scen.get(s, {}) if m in scen[s][c]]
            values = [scen[s][c][m] for c in names]
            ax.barh(names, values, color=["#2a7" if c == "holysheep" else "#999" for c in names])
            ax.set_title(f"{h}\n({backend})", fontsize=9)
            ax.tick_params(labelsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return True


# -- entry point -----------------------------------------------------------------------


def build_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    p = parser or argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    p.add_argument("--quick", action="store_true", help="tiny sizes, one run: correctness only")
    p.add_argument("--repeats", type=int, default=None, help="runs per measurement (default 3)")
    p.add_argument("--backend", action="append", choices=["asyncio", "trio"], help="default: both")
    p.add_argument(
        "--client", action="append", dest="clients", help="only these clients (repeatable)"
    )
    p.add_argument(
        "--scenario", action="append", dest="scenarios", choices=list(SCENARIOS), help="repeatable"
    )
    p.add_argument(
        "--before",
        metavar="REF",
        default=None,
        help="also run this client as it was at git REF (holysheep@REF), same run, alternating",
    )
    p.add_argument("--no-batch", action="store_true", help="skip the JSONL scenarios")
    p.add_argument("--no-compare", action="store_true", help="skip streaming vs batch")
    p.add_argument("--out", type=Path, default=None, help="directory for results.json/.png")
    p.add_argument("--timeout", type=float, default=90.0, help="give up on one run after this")
    p.add_argument(
        "--shared-limits",
        action="store_true",
        help="only the shared-limits benchmarks on Redis (benchmarks/shared_limits.py)",
    )
    p.add_argument("--redis", default=None, help="--shared-limits: use this Redis URL")
    return p


def run(args: argparse.Namespace, log: Callable[[str], None] = print) -> Results:
    size = QUICK if args.quick else FULL
    repeats = args.repeats or (1 if args.quick else 3)
    backends = args.backend or ["asyncio", "trio"]
    every = peers.available()
    if args.clients:
        unknown = [c for c in args.clients if c not in every]
        if unknown:
            raise SystemExit(f"unknown or unavailable client(s) {unknown}; have {list(every)}")
        clients = {c: every[c] for c in args.clients}
    else:
        clients = every
    if args.before:
        name, make = peers.before(args.before)
        clients = {**clients, name: make}
    scenarios = args.scenarios or list(SCENARIOS)
    results = Results(
        machine=machine_info(),
        command=" ".join(["python -m benchmarks", *sys.argv[1:]]),
        quick=args.quick,
        size=dict(size),
    )
    missing = {"openai", "openai[aiohttp]"} - set(every)
    if missing:
        results.notes.append(f"peers not installed, left out: {sorted(missing)}")
    log(f"clients: {list(clients)}; backends: {backends}; repeats: {repeats}")
    with bench_server() as server:
        run_scenarios(
            server, backends, clients, scenarios, size, repeats, results, log, args.timeout
        )
        if not args.scenarios:  # the whole suite: the proxy scenarios too
            from . import proxy  # (it imports this module)

            proxy.run(server, backends, clients, size, repeats, results, log, args.timeout)
    if not args.no_batch:
        batch_scenarios(size, results, log)
    if not args.no_compare:
        compare_stream_batch(size, backends[0], results, log)
    real_endpoint(backends[0], clients, results, log)
    results.machine["load_avg_at_end"] = os.getloadavg()
    out = args.out or (Path(tempfile.gettempdir()) / "holysheep-bench" if args.quick else HERE)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results.to_json(), indent=1, default=str))
    chart(results, out / "results.png")
    log(table(results))
    for note in results.notes:
        log(f"note: {note}")
    for err in results.errors:
        log(f"error: {err}")
    log(f"written: {out / 'results.json'}, {out / 'results.png'}")
    return results


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.shared_limits:
        from . import shared_limits

        redis = ["--redis", args.redis] if args.redis else []
        return shared_limits.main(["--quick"] * args.quick + redis)
    results = run(args)
    # Our own client failing is a failure of the run; a peer failing is a result.
    return 1 if any("/holysheep:" in e for e in results.errors) else 0
