"""The client half of tests/test_crash.py: one ``batches.run`` in a process of its own.

The test kills this process with SIGKILL at random points and starts it again
until it exits 0. Usage::

    python tests/crash_client.py BASE_URL JOURNAL OUTPUT REQUESTS PER_BATCH BACKEND
"""

from __future__ import annotations

import sys
from typing import Any

import anyio

from holysheep_async import AsyncClient
from holysheep_async.retry import RetryPolicy


def crash_tasks(n: int) -> list[dict[str, Any]]:
    """``n`` requests; each prompt names its custom_id, so the server side can tell them apart."""
    return [
        {
            "custom_id": f"c{i:05d}",
            "model": "gpt-4o-mini",
            "messages": [{"role": "user", "content": f"request c{i:05d}: say something"}],
            "max_tokens": 3 + i % 5,
        }
        for i in range(n)
    ]


async def main(base_url: str, journal: str, output: str, n: int, per_batch: int) -> None:
    # Quick retries keep a lost response from slowing the test down; they are still retries.
    retry = RetryPolicy(max_retries=5, initial_delay=0.01, max_delay=0.05)
    async with AsyncClient(api_key="test-key", base_url=base_url, retry=retry) as client:
        report = await client.batches.run(
            crash_tasks(n),
            journal=journal,
            output=output,
            max_requests_per_batch=per_batch,
            poll_interval=0.001,
            concurrency=8,
        )
    if report.failed or report.missing:
        sys.exit(f"run ended with failed={report.failed[:5]} missing={report.missing[:5]}")


if __name__ == "__main__":
    url, journal_path, output_path, count, per, backend = sys.argv[1:7]
    anyio.run(main, url, journal_path, output_path, int(count), int(per), backend=backend)
