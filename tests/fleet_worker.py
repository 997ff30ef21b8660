"""One worker process of the fleet tests (test_shared_fleet.py); prints JSON lines.

python tests/fleet_worker.py '{"mode": "requests", "backend": "trio", ...}'
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

import anyio

from holysheep_async import AsyncClient, RateLimitError, SharedLimits
from holysheep_async.limits._shared import SharedLimiter


def say(**fields: Any) -> None:
    print(json.dumps(fields), flush=True)


async def requests(cfg: dict[str, Any]) -> None:
    """``n`` chat requests, ``tasks`` at a time, under shared (or, for the control, own) limits."""
    shared = (
        SharedLimits(cfg["redis"], timeout=cfg.get("timeout", 5.0), retry_after=0.3, lease_ttl=2)
        if cfg.get("redis")
        else None
    )
    ok = limited = failed = 0
    times: list[float] = []
    async with AsyncClient(
        api_key="fleet-key",
        base_url=cfg["base_url"],
        rpm=cfg["rpm"],
        max_concurrency=cfg.get("max_concurrency"),
        max_retries=cfg.get("max_retries", 0),
        shared_limits=shared,
        limits_namespace=cfg.get("namespace"),
    ) as client:
        left = cfg["n"]
        if cfg.get("barrier"):  # start together: say ready, wait for the go line
            say(ready=True)
            await anyio.to_thread.run_sync(sys.stdin.readline)

        async def one() -> None:
            nonlocal left, ok, limited, failed
            while left > 0:
                left -= 1
                try:
                    await client.chat.create(
                        model="m", messages=[{"role": "user", "content": "hi"}], max_tokens=4
                    )
                    ok += 1
                    times.append(time.time())
                    say(progress=ok)
                except RateLimitError:
                    limited += 1
                except Exception as exc:
                    failed += 1
                    say(error=f"{type(exc).__name__}: {exc}")

        async with anyio.create_task_group() as tg:
            for _ in range(cfg.get("tasks", 4)):
                tg.start_soon(one)
        degraded = getattr(client.limiter, "fallback_requests", 0)
    say(done=True, ok=ok, rate_limited=limited, failed=failed, times=times, fallback=degraded)


async def hold(cfg: dict[str, Any]) -> None:
    """Take ``slots`` concurrency slots, say so, and hold them until killed."""
    limiter = SharedLimiter(
        SharedLimits(cfg["redis"], lease_ttl=cfg["lease_ttl"], timeout=10),
        cfg["namespace"],
        max_concurrency=cfg["slots"],
    )
    permits = [await limiter.acquire() for _ in range(cfg["slots"])]
    say(held=len(permits))
    await anyio.sleep_forever()


def main() -> None:
    cfg = json.loads(sys.argv[1])
    modes = {"requests": requests, "hold": hold}
    anyio.run(modes[cfg["mode"]], cfg, backend=cfg["backend"])


if __name__ == "__main__":
    main()
