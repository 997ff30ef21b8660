"""``batch_duration``: the emulator's batches move with the clock, not with the polls.

So a client that polls rarely (the real API's 30 s back-off) still sees its batch
finish in seconds; the per-poll steps of the test suite stay the default, and
``advance_batches()`` keeps stepping either way.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from holysheep_async.testing import MockServer, _batches

from .test_emulator_batches import create, http, jsonl, lines, options, poll

__all__ = ["http", "options"]  # fixtures

pytestmark = pytest.mark.anyio


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    fake = FakeClock()
    monkeypatch.setattr(_batches, "_clock", fake)
    return fake


async def test_progress_follows_the_clock(
    http: httpx.AsyncClient, options: dict[str, Any], clock: FakeClock
) -> None:
    options["batch_duration"] = 10.0
    batch = await create(http, jsonl(100))
    batch = await poll(http, batch["id"])
    assert batch["status"] == "in_progress"
    assert batch["request_counts"] == {"total": 100, "completed": 0, "failed": 0}
    for _ in range(5):  # polling alone does not move it
        batch = await poll(http, batch["id"])
    assert batch["request_counts"]["completed"] == 0
    clock.now += 4.0
    batch = await poll(http, batch["id"])
    assert batch["request_counts"]["completed"] == 40
    clock.now += 600.0  # one poll, however late: everything is answered
    batch = await poll(http, batch["id"])
    assert batch["status"] == "finalizing"
    assert batch["request_counts"]["completed"] == 100
    batch = await poll(http, batch["id"])
    assert batch["status"] == "completed"
    assert len(await lines(http, batch["output_file_id"])) == 100


async def test_zero_duration_answers_at_the_first_poll(
    http: httpx.AsyncClient, options: dict[str, Any]
) -> None:
    options["batch_duration"] = 0
    batch = await create(http, jsonl(1000))
    assert (await poll(http, batch["id"]))["status"] == "finalizing"
    assert (await poll(http, batch["id"]))["status"] == "completed"


async def test_advance_batches_still_steps(
    http: httpx.AsyncClient, options: dict[str, Any], server: MockServer, clock: FakeClock
) -> None:
    options["batch_duration"] = 3600.0
    batch = await create(http, jsonl(60))
    server.advance_batches()  # validating -> in_progress
    server.advance_batches()  # 25 answered (batch_speed)
    batch = await poll(http, batch["id"])
    assert batch["status"] == "in_progress"
    assert batch["request_counts"]["completed"] == 25


async def test_expiry_in_seconds(
    http: httpx.AsyncClient, options: dict[str, Any], clock: FakeClock
) -> None:
    options["batch_duration"] = 10.0
    options["batch_expire_after"] = 5.0
    batch = await create(http, jsonl(10))
    await poll(http, batch["id"])
    clock.now += 3.0
    assert (await poll(http, batch["id"]))["request_counts"]["completed"] == 3
    clock.now += 3.0
    batch = await poll(http, batch["id"])
    assert batch["status"] == "expired"
    assert batch["request_counts"] == {"total": 10, "completed": 3, "failed": 7}


async def test_a_rarely_polling_client_finishes_quickly(clock: FakeClock) -> None:
    # What `holysheep serve` does by default: the client's own back-off (from 1 s up to
    # 30 s) no longer decides how many polls a batch needs.
    from holysheep_async import AsyncClient

    polls = 0

    def tick(batch: Any) -> None:
        nonlocal polls
        polls += 1
        clock.now += 30.0  # each poll comes 30 s after the last

    tasks = [
        {"custom_id": f"q{i}", "model": "m", "messages": [{"role": "user", "content": "?"}]}
        for i in range(1000)
    ]
    async with (
        MockServer(batch_duration=2.0) as server,
        AsyncClient(api_key="k", base_url=server.base_url) as client,
    ):
        batch = await client.batches.submit(tasks)
        batch = await client.batches.wait(batch.id, poll_interval=0.01, on_progress=tick)
    assert batch.status == "completed"
    assert polls <= 3  # in_progress-and-done, finalizing, completed
