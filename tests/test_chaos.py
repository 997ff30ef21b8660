"""Chaos: many concurrent streams with random faults; none hangs, none lies, nothing leaks.

Every stream either yields exactly the emulator's answer or ends in a typed
``HolySheepError``. ``anyio.fail_after`` is a hang detector here, not a timing
assertion: its bound is far above what any stream needs. Size: ``CHAOS_STREAMS``
(150 in the suite; ``nox -s soak`` runs 1,000).
"""

from __future__ import annotations

import os
import random
from typing import Any

import anyio
import pytest

from holysheep_async import AsyncClient, HolySheepError
from holysheep_async.testing import MockServer
from holysheep_async.testing._chat import answer_text

pytestmark = pytest.mark.anyio

STREAMS = int(os.environ.get("CHAOS_STREAMS", "150"))
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


async def test_chaos_streams_complete_or_fail_typed_and_leak_nothing(server: MockServer) -> None:
    rng = random.Random(SEED)
    kinds = [f for f, _ in FAULTS]
    weights = [w for _, w in FAULTS]
    plan = [rng.choices(kinds, weights)[0] for _ in range(STREAMS)]
    outcome: dict[int, str] = {}

    async with AsyncClient(
        api_key="test-key", base_url=server.base_url, stream_idle_timeout=0.2, max_retries=2
    ) as client:
        client._requester.sleep = _no_sleep  # retries do not wait (backoff is retry.py's business)

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

        assert len(outcome) == STREAMS
        # Healthy streams and harmless quirks always complete.
        for i, fault in enumerate(plan):
            if fault is None or fault in ("no_done", "relay", "ping"):
                assert outcome[i] == "ok", (i, fault, outcome[i])
        # The chaos actually produced failures, of more than one type.
        assert len({v for v in outcome.values() if v != "ok"}) >= 2

        transport: Any = client.http_client._transport
        if hasattr(transport, "idle_connections"):
            kept = transport.idle_connections
        else:  # httpx's pool
            kept = len(transport._pool.connections)
        left = await anyio.to_thread.run_sync(server.wait_connections, kept)
        assert left <= kept
    # Closing the client closes the idle ones too.
    assert await anyio.to_thread.run_sync(server.wait_connections, 0) == 0
