"""CPU time and Python calls per request and per chunk: the hot path, measured without a clock.

Wall-clock throughput moves with whatever else runs on the machine; the CPU
time this process spends (``time.process_time``) and the number of Python
function calls it makes (cProfile) move far less. For each client: N
non-streamed requests at concurrency C, and S streams of T chunks each,
against :mod:`benchmarks.server` in its own process (its CPU is not counted).

    python -m benchmarks.hotpath                       # holysheep and the floor
    python -m benchmarks.hotpath --before main         # and holysheep@main, alternating
    python -m benchmarks.hotpath --client openai --backend trio

CPU: the best of ``--rounds`` rounds (the least disturbed one), the clients
taking turns round by round. Calls: one more round under cProfile (which
slows it, so it is not timed).
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import pstats
import time
from typing import Any

import anyio

from . import peers
from .suite import bench_server


async def _nonstream(make: Any, base_url: str, n: int, conc: int) -> None:
    async with make(base_url) as client:
        await client.complete(16)
        left = n

        async def worker() -> None:
            nonlocal left
            while left > 0:
                left -= 1
                await client.complete(16)

        async with anyio.create_task_group() as tg:
            for _ in range(conc):
                tg.start_soon(worker)


async def _streams(make: Any, base_url: str, streams: int, tokens: int) -> None:
    async with make(base_url) as client:
        await client.stream(5)
        for _ in range(streams):
            _, got = await client.stream(tokens)
            if got != tokens:
                raise AssertionError(f"expected {tokens} chunks, got {got}")


def _runner(make: Any, base_url: str, what: str, args: argparse.Namespace) -> tuple[Any, int]:
    """The coroutine function of one round, and its units (requests or chunks)."""
    if what == "nonstream":

        async def requests() -> None:
            await _nonstream(make, base_url, args.requests, args.concurrency)

        return requests, args.requests

    async def streams() -> None:
        await _streams(make, base_url, args.streams, args.tokens)

    return streams, args.streams * args.tokens


def measure(
    clients: dict[str, Any], base_url: str, backend: str, what: str, args: argparse.Namespace
) -> dict[str, tuple[float, float]]:
    """Per client: (CPU us, Python calls) per request (``nonstream``) or per chunk (``stream``).

    The clients take turns round by round (a disturbance hits them alike); each
    one's best round counts.
    """
    best = dict.fromkeys(clients, float("inf"))
    for _ in range(args.rounds):
        for name, make in clients.items():
            run, units = _runner(make, base_url, what, args)
            gc.collect()
            cpu0 = time.process_time()
            anyio.run(run, backend=backend)
            best[name] = min(best[name], (time.process_time() - cpu0) / units * 1e6)
    out = {}
    for name, make in clients.items():
        run, units = _runner(make, base_url, what, args)
        profile = cProfile.Profile()
        profile.enable()
        anyio.run(run, backend=backend)
        profile.disable()
        stats = pstats.Stats(profile)
        calls: int = stats.total_calls  # type: ignore[attr-defined]
        if args.dump:
            print(f"-- {name}")
            stats.sort_stats("tottime").print_stats(args.dump)
        out[name] = (best[name], calls / units)
    return out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks.hotpath", description=__doc__)
    p.add_argument("--client", action="append", dest="clients", help="default: holysheep, floor")
    p.add_argument("--before", metavar="REF", help="also holysheep as it was at git REF")
    p.add_argument("--backend", action="append", choices=["asyncio", "trio"])
    p.add_argument("--what", action="append", choices=["nonstream", "stream"])
    p.add_argument("--requests", type=int, default=2000)
    p.add_argument("--concurrency", type=int, default=64)
    p.add_argument("--streams", type=int, default=4)
    p.add_argument("--tokens", type=int, default=5000)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--dump", type=int, default=0, help="print the top N functions by own time")
    args = p.parse_args(argv)
    every = peers.available()
    names = args.clients or ["holysheep", "socket (floor)"]
    clients = {name: every[name] for name in names}
    if args.before:
        name, make = peers.before(args.before)
        clients[name] = make
    with bench_server() as server:
        for backend in args.backend or ["asyncio", "trio"]:
            here = {
                n: m for n, m in clients.items() if backend in getattr(m, "backends", (backend,))
            }
            for what in args.what or ["nonstream", "stream"]:
                unit = "request" if what == "nonstream" else "chunk"
                for name, (cpu, calls) in measure(
                    here, server.base_url, backend, what, args
                ).items():
                    print(
                        f"{backend:<8} {what:<10} {name:<22} {cpu:8.2f} us CPU/{unit}"
                        f"  {calls:8.1f} calls/{unit}",
                        flush=True,
                    )


if __name__ == "__main__":
    main()
