"""100 tasks, at most 10 in flight, 30 requests a minute, backoff with jitter on 429.

The classic pattern (a semaphore, a rate limiter, a retry loop around every
call) written with holysheep_async, where all three are client settings::

    python examples/rate_limited.py                 # the seed's numbers: about 3.3 minutes
    python examples/rate_limited.py --rpm 600       # the same, ten times faster
    python examples/rate_limited.py --backend trio
    HOLYSHEEP_API_KEY=... python examples/rate_limited.py --base-url https://api.holysheep.ai/v1

Without ``--base-url`` it runs against the embedded emulator, given a quota
of its own (``--quota`` requests a minute, 10% above ``--rpm`` by default) so
that you can see the client stay under it: ``429s answered: 0``. Try
``--no-client-limit`` to see what the limits save you from: 100 requests at
once against the quota, a storm of 429s that retries alone do not absorb.
"""

from __future__ import annotations

import argparse
import os
import time
from typing import Any

import anyio

from holysheep_async import AsyncClient, RateLimitError
from holysheep_async.retry import RetryPolicy
from holysheep_async.testing import MockServer


async def run(args: argparse.Namespace, base_url: str, api_key: str | None) -> dict[str, Any]:
    limits: dict[str, Any] = {}
    if not args.no_client_limit:
        limits = {"rpm": args.rpm, "max_concurrency": args.concurrency}
    async with AsyncClient(
        api_key=api_key,
        base_url=base_url,
        # On 429 (and 5xx, timeouts) wait what the server's Retry-After says,
        # else exponential backoff from 1 s, doubled each time, with jitter.
        retry=RetryPolicy(max_retries=6, initial_delay=1.0, max_delay=30.0, jitter=0.5),
        **limits,
    ) as client:
        answers: dict[int, str] = {}
        failed: dict[int, str] = {}

        async def task(i: int) -> None:
            try:
                completion = await client.chat.create(
                    model=args.model,
                    messages=[{"role": "user", "content": f"Task {i}: say something short."}],
                    max_tokens=8,
                )
            except RateLimitError as exc:  # still 429 after every retry
                failed[i] = str(exc)
            else:
                answers[i] = completion.choices[0].message.content or ""

        started = time.perf_counter()
        async with anyio.create_task_group() as tg:
            for i in range(args.requests):
                tg.start_soon(task, i)
        stats = client.limiter.stats()
        return {
            "answers": len(answers),
            "failed": len(failed),
            "seconds": time.perf_counter() - started,
            "waited_in_limiter_s": stats.total_wait,
            "longest_wait_s": stats.max_wait,
            "permits": stats.requests,
            "cooldowns": stats.cooldowns,
            "sample": answers.get(0) or next(iter(answers.values()), ""),
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=100)
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument("--rpm", type=float, default=30)
    parser.add_argument("--model", default="gpt-4o-mini")
    parser.add_argument("--backend", choices=["asyncio", "trio"], default="asyncio")
    parser.add_argument("--base-url", help="a real server (default: the embedded emulator)")
    parser.add_argument("--quota", type=float, help="the emulator's RPM quota (default rpm * 1.1)")
    parser.add_argument(
        "--no-client-limit", action="store_true", help="no rpm / concurrency on the client"
    )
    args = parser.parse_args()

    if args.base_url:
        result = anyio.run(
            run, args, args.base_url, os.environ.get("HOLYSHEEP_API_KEY"), backend=args.backend
        )
        rejected = None
    else:
        quota = args.quota or args.rpm * 1.1
        with MockServer(ttft=0.05, itl=0.01, rpm_quota=quota, record=False) as server:
            result = anyio.run(run, args, server.base_url, "demo-key", backend=args.backend)
            rejected = server.state["quota_rejected"]
        client_rpm = "off" if args.no_client_limit else f"{args.rpm:g}"
        print(f"emulator quota: {quota:g} requests/min; client rpm: {client_rpm}")
    print(
        f"{result['answers']}/{args.requests} answered, {result['failed']} failed with 429"
        f" in {result['seconds']:.1f} s ({result['permits']} requests sent, retries included)"
    )
    print(
        f"waited in the limiter: {result['waited_in_limiter_s']:.1f} s in total,"
        f" {result['longest_wait_s']:.1f} s at most; 429 cooldowns: {result['cooldowns']}"
    )
    if rejected is not None:
        print(f"429s answered: {rejected}")
    print(f"an answer: {result['sample']!r}")


if __name__ == "__main__":
    main()
