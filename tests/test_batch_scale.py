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
from pathlib import Path

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
