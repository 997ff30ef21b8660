"""Batch at scale: ``batches.run(path, output=...)`` over 10,000 to 1,000,000 requests.

The emulator runs in a process of its own (its files on disk, batches
finishing in a few polls), the client in another, one per size, so each
size's peak RSS (``ru_maxrss``) is the client's alone. The parent checks the
output afterwards: every ``custom_id`` exactly once, each a success.

    python -m benchmarks.batch_scale                       # 10k, 100k, 1M
    python -m benchmarks.batch_scale --sizes 10000,200000  # any sizes
    nox -s bench_batch                                     # the same, in nox

Writes ``benchmarks/batch_scale.json`` and prints a table for RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
SIZES = (10_000, 100_000, 1_000_000)


def serve() -> None:
    """The emulator, in this process, until stdin closes."""
    from holysheep_async.testing import MockServer

    # Killed, it still exits through Python, so the emulator's temporary folder goes too.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    server = MockServer(api_keys=["bench-key"], record=False)
    # Batches answer everything in one step: the client's own work is what is measured.
    server.options["batch_speed"] = 10_000_000
    server.start()
    print(server.base_url, flush=True)
    sys.stdin.read()
    server.stop()


def write_input(path: Path, n: int) -> None:
    with path.open("w") as fh:
        for i in range(n):
            task = {
                "custom_id": f"r{i:07d}",
                "model": "gpt-4o-mini",
                "messages": [{"role": "user", "content": f"classify item {i}: sheep or wool?"}],
                "max_tokens": 4,
            }
            fh.write(json.dumps(task) + "\n")


def client(base_url: str, path: str, output: str) -> None:
    """One run, in this process; prints wall time and peak RSS as JSON."""
    import anyio

    from holysheep_async import AsyncClient

    async def go() -> dict[str, Any]:
        async with AsyncClient(api_key="bench-key", base_url=base_url) as c:
            start = time.perf_counter()
            report = await c.batches.run(path, output=output, poll_interval=0.2)
            wall = time.perf_counter() - start
            return {
                "wall_s": wall,
                "succeeded": len(report.succeeded),
                "failed": len(report.failed),
                "missing": len(report.missing),
                "batches": len(report.batch_ids),
            }

    result = anyio.run(go)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    result["peak_rss_mb"] = usage.ru_maxrss / 1024
    # CPU seconds of the client: steadier than wall time on a shared machine.
    result["cpu_s"] = usage.ru_utime + usage.ru_stime
    print(json.dumps(result), flush=True)


def check_output(output: Path, n: int) -> None:
    seen = set()
    with output.open("rb") as fh:
        for raw in fh:
            line = json.loads(raw)
            cid = line["custom_id"]
            if cid in seen:
                raise SystemExit(f"{cid} twice in the output")
            seen.add(cid)
            if line["response"]["status_code"] != 200:
                raise SystemExit(f"{cid} failed: {line}")
    if len(seen) != n:
        raise SystemExit(f"{len(seen)} results for {n} requests")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default=",".join(map(str, SIZES)))
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--client", nargs=3, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, default=HERE / "batch_scale.json")
    args = parser.parse_args(argv)
    if args.serve:
        serve()
        return 0
    if args.client:
        client(*args.client)
        return 0
    sizes = [int(s) for s in args.sizes.split(",")]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE.parent), *sys.path])}
    server = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.batch_scale", "--serve"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env=env,
    )
    rows = []
    try:
        assert server.stdout is not None
        base_url = server.stdout.readline().decode().strip()
        for n in sizes:
            with tempfile.TemporaryDirectory(prefix="holysheep-bench-") as tmp:
                path, output = Path(tmp) / "in.jsonl", Path(tmp) / "out.jsonl"
                write_input(path, n)
                proc = subprocess.run(
                    [
                        sys.executable,
                        "-m",
                        "benchmarks.batch_scale",
                        "--client",
                        base_url,
                        str(path),
                        str(output),
                    ],
                    capture_output=True,
                    env=env,
                    check=False,
                )
                if proc.returncode:
                    sys.stderr.write(proc.stderr.decode())
                    return 1
                row = json.loads(proc.stdout.decode().strip().splitlines()[-1])
                check_output(output, n)
                row["requests"] = n
                row["req_per_s"] = n / row["wall_s"]
                rows.append(row)
                print(
                    f"{n:>10,} requests  {row['wall_s']:8.1f} s  {row['req_per_s']:8,.0f} req/s"
                    f"  client CPU {row['cpu_s']:7.1f} s  peak RSS {row['peak_rss_mb']:6.1f} MB"
                    f"  ({row['batches']} batches)",
                    flush=True,
                )
    finally:
        if server.stdin is not None:
            server.stdin.close()
        server.wait(timeout=30)
    args.out.write_text(
        json.dumps(
            {
                "python": platform.python_version(),
                "machine": platform.machine(),
                "cpus": os.cpu_count(),
                "rows": rows,
            },
            indent=1,
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
