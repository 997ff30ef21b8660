"""``batches.run`` at size: memory does not grow with the number of requests.

The figures at 10,000 to 1,000,000 requests are in benchmarks/RESULTS.md
(``python -m benchmarks.batch_scale``); this checks the property at a size
the suite can afford: the Python heap's peak (tracemalloc, which sees the
client and the emulator in this process, not SQLite's own cache) for ten
times the requests stays about the same.
"""

from __future__ import annotations

import json
import tracemalloc
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from holysheep_async import AsyncClient
from holysheep_async.testing import MockServer

pytestmark = pytest.mark.anyio

SMALL, BIG = 500, 5_000


def write_tasks(path: Path, n: int) -> None:
    with path.open("w") as fh:
        for i in range(n):
            task = {
                "custom_id": f"r{i:06d}",
                "model": "gpt-4o-mini",
                "messages": [{"role": "user", "content": f"item {i}"}],
                "max_tokens": 2,
            }
            fh.write(json.dumps(task) + "\n")


async def test_run_memory_stays_flat_from_500_to_5000_requests(tmp_path: Path) -> None:
    server = MockServer(api_keys=["test-key"], record=False)
    server.options["batch_speed"] = 10_000_000  # a batch is done at its first poll
    async with server, AsyncClient(api_key="test-key", base_url=server.base_url) as client:
        peaks: dict[int, int] = {}
        for n in (50, SMALL, BIG):  # the first one warms caches up
            path, output = tmp_path / f"in-{n}.jsonl", tmp_path / f"out-{n}.jsonl"
            write_tasks(path, n)
            tracemalloc.start()
            try:
                report = await client.batches.run(
                    path, output=output, max_requests_per_batch=250, poll_interval=0
                )
                peaks[n] = tracemalloc.get_traced_memory()[1]
            finally:
                tracemalloc.stop()
            assert len(report.succeeded) == n and not report.failed and not report.missing
            assert report.succeeded[-1] == f"r{n - 1:06d}" and f"r{n // 2:06d}" in report.results
            with output.open("rb") as fh:
                assert sum(1 for _ in fh) == n
            del report
    assert peaks[BIG] < 1.5 * peaks[SMALL], peaks


async def test_run_takes_an_async_generator_and_numbers_bad_items(
    client: AsyncClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from holysheep_async import BatchValidationError

    async def items(n: int, bad: int | None = None) -> AsyncIterator[dict[str, Any]]:
        for i in range(n):
            task: dict[str, Any] = {
                "custom_id": f"a{i}",
                "model": "gpt-4o-mini",
                "messages": [{"role": "user", "content": f"q{i}"}],
            }
            if i == bad:
                task["messages"] = "not a list"
            yield task

    report = await client.batches.run(items(5), output=tmp_path / "out.jsonl")
    assert report.succeeded == [f"a{i}" for i in range(5)]
    with pytest.raises(BatchValidationError) as info:
        await client.batches.run(items(5, bad=3))
    assert [n for n, _ in info.value.problems] == [4]  # the 4th item
    dup = [*[t async for t in items(3)], {"custom_id": "a1", "model": "m", "messages": []}]
    with pytest.raises(BatchValidationError, match="line 4: duplicate custom_id 'a1'"):
        await client.batches.run(dup)


async def test_a_report_read_from_the_output_file_acts_like_lists_and_a_dict(
    client: AsyncClient, server: MockServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(server.options, "batch_speed", 100)
    monkeypatch.setitem(server.options, "batch_fail", r"^s[14]$")
    tasks = [
        {"custom_id": f"s{i}", "model": "m", "messages": [{"role": "user", "content": f"x{i}"}]}
        for i in range(6)
    ]
    report = await client.batches.run(tasks, output=tmp_path / "out.jsonl", retry="none")
    ok = ["s0", "s2", "s3", "s5"]
    assert report.succeeded == ok and report.failed == ["s1", "s4"] and report.missing == []
    assert len(report.succeeded) == 4 and report.succeeded[1] == "s2"
    assert report.succeeded[-1] == "s5"
    assert report.succeeded[1:3] == ["s2", "s3"] and "s3" in report.succeeded
    assert "s1" not in report.succeeded and list(report.failed) == ["s1", "s4"]
    assert report.succeeded + report.failed == [*ok, "s1", "s4"]
    assert "s2" in repr(report.succeeded)
    assert len(report.results) == 6 and list(report.results) == [f"s{i}" for i in range(6)]
    assert report.results["s1"].status_code == 500 and report.results["s0"].ok
    assert "nope" not in report.results
    with pytest.raises(KeyError):
        report.results["nope"]
    with pytest.raises(IndexError):
        report.succeeded[4]


async def test_the_run_index_lives_as_long_as_its_report_and_leftovers_are_swept(
    client: AsyncClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import gc
    import os
    import tempfile

    temp = tmp_path / "tmp"
    temp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", os.fspath(temp))
    tasks = [
        {"custom_id": f"i{i}", "model": "m", "messages": [{"role": "user", "content": "x"}]}
        for i in range(3)
    ]
    def ours() -> list[str]:  # the emulator keeps its files in the temporary folder too
        return [p.name[:16] for p in temp.iterdir() if not p.name.startswith("holysheep-emu")]

    report = await client.batches.run(tasks, output=tmp_path / "out.jsonl")
    assert ours() == ["holysheep-index-"]
    assert report.results["i1"].ok
    del report
    gc.collect()
    assert ours() == []
    # With a journal the index lives in its work folder; a killed run's is swept next time.
    journal = tmp_path / "run.journal"
    (tmp_path / "run.journal.d").mkdir()
    (tmp_path / "run.journal.d" / "index-killed.sqlite").write_bytes(b"left by a SIGKILL")
    report = await client.batches.run(tasks, journal=journal)
    assert report.succeeded == ["i0", "i1", "i2"]
    assert list((tmp_path / "run.journal.d").glob("index-*")) == []
    assert ours() == []


async def test_batches_of_a_run_are_polled_together_and_progress_covers_the_run(
    client: AsyncClient, server: MockServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    from holysheep_async import RunProgress

    monkeypatch.setitem(server.options, "batch_speed", 1)
    tasks = [
        {"custom_id": f"p{i}", "model": "m", "messages": [{"role": "user", "content": "x"}]}
        for i in range(9)
    ]
    start = len(server.requests)
    seen: list[RunProgress] = []
    report = await client.batches.run(tasks, max_requests_per_batch=3, on_progress=seen.append)
    assert report.succeeded == [t["custom_id"] for t in tasks] and len(report.batch_ids) == 3
    polled = [
        r.path.rsplit("/", 1)[1]
        for r in server.requests[start:]
        if r.method == "GET" and r.path.startswith("/v1/batches/")
    ]
    first, second, third = report.batch_ids
    # Interleaved: the last batch is polled before the first one is done, not after.
    assert polled.index(third) < len(polled) - 1 - polled[::-1].index(first)
    waiting = [p for p in seen if p.phase == "waiting"]
    assert all(p.total == 9 for p in waiting)
    assert [p.done for p in waiting] == sorted(p.done for p in waiting)
    assert waiting[-1].done == 9 and seen[-1].phase == "done"
    assert max(len(p.in_flight) for p in waiting) == 3
    assert {b.id for p in waiting for b in p.in_flight} == {first, second, third}


async def test_direct_calls_go_through_a_fixed_pool_of_workers(
    client: AsyncClient, server: MockServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(server.options, "batch_api", False)
    real = client.chat.create
    in_flight = 0
    peak = 0

    async def counting(**kw: Any) -> Any:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        try:
            return await real(**kw)
        finally:
            in_flight -= 1

    monkeypatch.setattr(client.chat, "create", counting)
    tasks = [
        {"custom_id": f"d{i}", "model": "m", "messages": [{"role": "user", "content": "x"}]}
        for i in range(40)
    ]
    report = await client.batches.run(tasks, concurrency=3)
    assert report.mode == "direct" and len(report.succeeded) == 40
    assert peak == 3
