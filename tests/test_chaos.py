"""Chaos: many concurrent streams with random faults; none hangs, none lies, nothing leaks.

Every stream either yields exactly the emulator's answer or ends in a typed
``HolySheepError``. ``anyio.fail_after`` is a hang detector here, not a timing
assertion: its bound is far above what any stream needs. Two rounds run on one
client: after each, no connection of the client's pool is left in use, and the
second round leaves no more live objects behind than the first did (a leak per
stream would). Size: ``CHAOS_STREAMS`` concurrent streams per round (60 in the
suite; ``nox -s soak`` runs 1,000).
"""

from __future__ import annotations

import gc
import logging
import os
import random
from typing import Any

import anyio
import pytest

from holysheep_async import AsyncClient, HolySheepError
from holysheep_async._transport import Transport
from holysheep_async.testing import MockServer
from holysheep_async.testing._chat import answer_text

pytestmark = pytest.mark.anyio

STREAMS = int(os.environ.get("CHAOS_STREAMS", "60"))
SEED = int(os.environ.get("CHAOS_SEED", "7"))
TOKENS = 12
HANG_BOUND = 60.0  # far above any stream's need: only a hang reaches it

# (header value or None, weight): a few percent each, most streams healthy.
FAULTS: list[tuple[str | None, float]] = [
    ("status=429; retry-after=0", 0.04),
    ("status=500", 0.04),
    ("status=503", 0.03),
    ("drop; after=0", 0.03),
    ("drop; after=5", 0.04),
    ("stall; after=0", 0.02),
    ("stall; after=4", 0.03),
    ("truncate; after=6", 0.03),
    ("malformed; after=3", 0.03),
    ("error; after=0", 0.03),
    ("error; after=7; code=invalid_request_error; message=nope", 0.03),
    ("no_done", 0.03),
    ("relay", 0.03),
    ("ping", 0.03),
    (None, 0.56),
]


async def _no_sleep(seconds: float) -> None:
    await anyio.lowlevel.checkpoint()


def _in_use(client: AsyncClient) -> int:
    """Connections of the client's own pool still leased to a request."""
    transport: Any = client.http_client._transport
    if isinstance(transport, Transport):
        return transport.stats().in_use
    # httpx's stock pool (HOLYSHEEP_TRANSPORT=httpx, or a proxy configured).
    return sum(1 for c in transport._pool.connections if not (c.is_idle() or c.is_closed()))


def _idle(client: AsyncClient) -> int:
    transport: Any = client.http_client._transport
    if isinstance(transport, Transport):
        return transport.stats().idle
    return len(transport._pool.connections)


def _live_objects() -> int:
    """Objects the garbage collector tracks, less the log records pytest keeps for its report."""
    gc.collect()
    return sum(1 for o in gc.get_objects() if type(o) is not logging.LogRecord)


async def _settled_live_objects() -> int:
    """Live objects once the emulator's thread has finished its connection tasks.

    Its count of open connections drops before the handler task is gone; a task
    still finishing holds a few dozen objects. Measure until the count stops
    falling (a leak does not fall; the wait is bounded).
    """
    best = _live_objects()
    for _ in range(10):
        await anyio.sleep(0.02)
        now = _live_objects()
        if now >= best:
            break
        best = now
    return best


async def _round(client: AsyncClient, plan: list[str | None]) -> dict[int, str]:
    outcome: dict[int, str] = {}

    async def one(i: int, fault: str | None) -> None:
        messages = [{"role": "user", "content": f"chaos {SEED} {i}"}]
        headers = {"x-mock-fault": fault} if fault else {}
        got: list[str] = []
        with anyio.fail_after(HANG_BOUND):
            try:
                async with client.chat.stream(
                    model="m", messages=messages, max_tokens=TOKENS, extra_headers=headers
                ) as stream:
                    async for text in stream:
                        got.append(text)
            except HolySheepError as exc:
                # Never text yielded twice or lost: what the loop saw is what the error says.
                partial = getattr(exc, "partial_text", None)
                if partial is not None:
                    assert partial == "".join(got), (i, fault)
                assert answer_text(messages, TOKENS).startswith("".join(got)), (i, fault)
                outcome[i] = type(exc).__name__
                return
        assert "".join(got) == answer_text(messages, TOKENS), (i, fault)
        outcome[i] = "ok"

    async with anyio.create_task_group() as tg:
        for i, fault in enumerate(plan):
            tg.start_soon(one, i, fault)
    return outcome


async def test_chaos_streams_complete_or_fail_typed_and_leak_nothing(server: MockServer) -> None:
    rng = random.Random(SEED)
    kinds = [f for f, _ in FAULTS]
    weights = [w for _, w in FAULTS]
    plan = [rng.choices(kinds, weights)[0] for _ in range(STREAMS)]
    recording, server.record = server.record, False  # the emulator's request log would grow
    live: list[int] = []
    try:
        for _ in range(2):
            async with AsyncClient(
                api_key="test-key", base_url=server.base_url, stream_idle_timeout=0.2, max_retries=2
            ) as client:
                client._requester.sleep = _no_sleep  # retries do not wait (backoff is retry.py's)
                outcome = await _round(client, plan)
                assert len(outcome) == STREAMS
                # Healthy streams and harmless quirks always complete.
                for i, fault in enumerate(plan):
                    if fault is None or fault in ("no_done", "relay", "ping"):
                        assert outcome[i] == "ok", (i, fault, outcome[i])
                # The chaos actually produced failures, of more than one type.
                assert len({v for v in outcome.values() if v != "ok"}) >= 2
                # Every stream has ended: none of the client's connections is still leased ...
                assert _in_use(client) == 0
                # ... and the emulator sees no more connections than the client keeps idle.
                kept = _idle(client)
                left = await anyio.to_thread.run_sync(server.wait_connections, kept)
                assert left <= kept
                del outcome
            # Closing the client closes the idle ones too.
            assert await anyio.to_thread.run_sync(server.wait_connections, 0) == 0
            live.append(await _settled_live_objects())
    finally:
        server.record = recording
    # Memory is back where it started. The first round warms what is built once
    # (lazy imports, regexes, loggers, the emulator's state), so the second, doing
    # the same work with a new client, must end with as many live objects.
    # Measured (gc-tracked objects, once settled): 0 to 30 apart, at 60 as at 1,000
    # streams. Anything kept per stream costs more: a closed stream object alone is
    # about a dozen (a deliberate leak of it: +696 at 60 streams). The bound
    # 100 + STREAMS // 10 is three times the noise and grows far slower than any
    # per-stream leak would.
    growth = live[1] - live[0]
    assert growth < 100 + STREAMS // 10, f"{growth} more live objects after round 2 {live}"
