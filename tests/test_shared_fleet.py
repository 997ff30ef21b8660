"""A fleet of real processes (asyncio and trio mixed) sharing one quota on a real Redis.

Against the emulator's per-key quota just above the shared ``rpm``: with
``shared_limits`` no request meets a 429; the control without it does. A
worker killed with SIGKILL gives its concurrency slots back within the lease
TTL. Redis killed and restarted mid-run: every worker ends.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from holysheep_async import SharedLimits
from holysheep_async.limits._shared import SharedLimiter
from holysheep_async.testing import MockServer

from .redis_server import RedisServer

WORKER = Path(__file__).with_name("fleet_worker.py")
BACKENDS = ["asyncio", "trio", "asyncio", "trio"]
RPM = 1200  # 20 a second, a burst of 20, for the whole fleet
PER_WORKER = 20


@pytest.fixture
def quota_server() -> Iterator[MockServer]:
    # The server's quota for the key: 10% above the fleet's rpm, 1.5 s worth at once.
    server = MockServer(api_keys=["fleet-key"], rpm_quota=RPM * 1.1, quota_burst=1.5)
    server.start()
    yield server
    server.stop()


def _spawn(cfg: dict[str, Any]) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(WORKER.parent.parent)}
    return subprocess.Popen(
        [sys.executable, str(WORKER), json.dumps(cfg)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def _result(proc: subprocess.Popen[str], timeout: float = 120) -> dict[str, Any]:
    out, err = proc.communicate(timeout=timeout)
    lines = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    done = [line for line in lines if line.get("done")]
    assert proc.returncode == 0 and done, f"worker failed ({proc.returncode}): {err[-2000:]}"
    result: dict[str, Any] = done[-1]
    result["stderr"] = err
    return result


def _fleet(server: MockServer, redis_url: str | None, ns: str) -> list[dict[str, Any]]:
    procs = [
        _spawn(
            {
                "mode": "requests",
                "backend": backend,
                "base_url": server.base_url,
                "redis": redis_url,
                "namespace": ns,
                "rpm": RPM,
                "n": PER_WORKER,
                "barrier": True,
            }
        )
        for backend in BACKENDS
    ]
    # All four start together (however long each took to import): the quota is shared
    # only if they overlap.
    for proc in procs:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert json.loads(line) == {"ready": True}, line
    for proc in procs:
        assert proc.stdin is not None
        proc.stdin.write("go\n")
        proc.stdin.flush()
    return [_result(proc) for proc in procs]


def test_four_processes_share_one_rpm_and_meet_no_429(
    redis_server: RedisServer, quota_server: MockServer
) -> None:
    results = _fleet(quota_server, redis_server.url, f"fleet-{uuid.uuid4().hex}")
    assert [r["rate_limited"] for r in results] == [0, 0, 0, 0]
    assert [r["failed"] for r in results] == [0, 0, 0, 0]
    assert sum(r["ok"] for r in results) == 4 * PER_WORKER
    assert quota_server.state["quota_rejected"] == 0
    times = sorted(t for r in results for t in r["times"])
    span = times[-1] - times[0]
    rate = (len(times) - 20) / span * 60  # after the burst of 20: the pace
    print(f"\nfleet: {len(times)} in {span:.2f} s, {rate:.0f} rpm after the burst (limit {RPM})")
    # The fleet cannot have gone faster than its burst plus the rate (shared, not 4x).
    assert span >= (len(times) - 20) / (RPM / 60) * 0.9


def test_without_shared_limits_the_same_fleet_meets_429s(quota_server: MockServer) -> None:
    results = _fleet(quota_server, None, "unused")
    assert sum(r["rate_limited"] for r in results) > 0
    assert quota_server.state["quota_rejected"] > 0


@pytest.mark.anyio
async def test_a_worker_killed_while_holding_slots_gives_them_back(
    redis_server: RedisServer,
) -> None:
    ns = f"kill-{uuid.uuid4().hex}"
    holder = _spawn(
        {"mode": "hold", "backend": "trio", "redis": redis_server.url, "namespace": ns,
         "slots": 2, "lease_ttl": 1.0}
    )
    try:
        assert holder.stdout is not None
        line = await anyio.to_thread.run_sync(holder.stdout.readline)
        assert json.loads(line) == {"held": 2}, holder.stderr.read() if holder.stderr else ""
        assert redis_server.command("ZCARD", f"holysheep:{{{ns}}}:lease").strip() == "2"
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait()
        limiter = SharedLimiter(
            SharedLimits(redis_server.url, lease_ttl=1.0, timeout=10), ns, max_concurrency=2
        )
        # Both slots were the dead worker's: they come back once its leases expire.
        with anyio.fail_after(20):
            permits = [await limiter.acquire(), await limiter.acquire()]
        for permit in permits:
            permit.release()
        await limiter.aclose()
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()


def test_redis_killed_and_restarted_mid_run_no_worker_hangs(quota_server: MockServer) -> None:
    redis = RedisServer()
    redis.start()
    try:
        procs = [
            _spawn(
                {
                    "mode": "requests",
                    "backend": backend,
                    "base_url": quota_server.base_url,
                    "redis": redis.url,
                    "namespace": "restart",
                    "rpm": RPM,
                    "n": 40,
                    "max_concurrency": 8,
                    "max_retries": 3,
                    "timeout": 0.3,  # short: the outage is noticed at once
                }
            )
            for backend in BACKENDS
        ]
        # Wait until the fleet is sending, then take Redis away and bring it back.
        first = procs[0]
        assert first.stdout is not None
        seen = 0
        while seen < 5:
            line = first.stdout.readline()
            assert line, "the first worker ended before it sent anything"
            seen += '"progress"' in line
        redis.kill()
        time.sleep(0.5)  # not ordering: how long Redis stays away
        redis.start()
        results = []
        for proc in procs:
            out, err = proc.communicate(timeout=120)  # a hang fails here
            assert proc.returncode == 0, err[-2000:]
            results.append((out, err))
        for out, err in results:
            done = [json.loads(x) for x in out.splitlines() if '"done"' in x]
            if done:  # the first worker's early lines were read above
                assert done[-1]["failed"] == 0
            assert "Traceback" not in err
        # The outage was seen (one warning per worker at most), and the fleet went on.
        warned = [err.count("is unreachable") for _, err in results]
        assert any(warned) and max(warned) <= 2, warned
        # Redis came back within the run: each worker that lost it went back to it.
        assert all("/0 is back" in err for (_, err), n in zip(results, warned, strict=True) if n)
    finally:
        redis.stop()
