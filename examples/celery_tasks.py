"""A large job on Celery workers, one quota for all of them: Redis is the broker and the limits.

Run it (``pip install 'holysheep-async[redis]' 'celery[redis]'`` and a Redis)::

    export REDIS_URL=redis://localhost:6379/0
    # on each machine, as many worker processes as you like:
    celery -A celery_tasks worker --concurrency 8 --workdir examples
    # then send the job (one task per prompt) and print the answers:
    python examples/celery_tasks.py "What is a sheep?" "Name three breeds."

The client is made once, at import, in the worker's main process; Celery's
prefork pool then forks the worker processes, and each one gets fresh
connections and a loop thread of its own at its first call (the client is
fork-safe: see docs/workers.md). ``shared_limits=`` makes ``rpm``, ``tpm``,
``max_concurrency`` and the 429 cooldown hold for every worker process on
every machine with the same Redis: ``rpm=600`` means 600 requests a minute in
all, however many workers there are.

A task returns its answer or its error (a dict), so one failed prompt never
fails the job. Celery acknowledges a task when a worker takes it (its
default): a worker killed in the middle of one loses that task (its result
never comes and ``get`` times out: send the missing ids again); the request
is never sent twice (``task_acks_late=True`` would redeliver it, and so
could send it twice).

Without ``HOLYSHEEP_API_KEY`` the client talks to ``HOLYSHEEP_BASE_URL`` (an
emulator you run with ``holysheep serve``) with a test key.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from celery import Celery, group

from holysheep_async import Client, HolySheepError, SharedLimits

REDIS_URL = os.environ.get("REDIS_URL", "redis://localhost:6379/0")
MODEL = os.environ.get("HOLYSHEEP_MODEL", "gpt-4o-mini")

app = Celery("celery_tasks", broker=REDIS_URL, backend=REDIS_URL)
app.conf.update(
    task_serializer="json",
    result_serializer="json",
    accept_content=["json"],
    # A worker process waiting for the quota keeps no other tasks from idle ones.
    worker_prefetch_multiplier=1,
    result_expires=24 * 3600,
    broker_connection_retry_on_startup=True,
)

# Made at import: in the worker's main process, before the pool forks.
client = Client(
    api_key=os.environ.get("HOLYSHEEP_API_KEY") or "test-key",
    rpm=float(os.environ.get("HOLYSHEEP_RPM", "600")),
    tpm=float(os.environ.get("HOLYSHEEP_TPM", "1000000")),
    max_concurrency=int(os.environ.get("HOLYSHEEP_MAX_CONCURRENCY", "32")),
    shared_limits=SharedLimits(REDIS_URL),
)


@app.task(name="holysheep.ask")
def ask(custom_id: str, prompt: str, max_tokens: int = 256) -> dict[str, Any]:
    """One prompt, answered under the shared quota: its text, or its error."""
    try:
        completion = client.chat.create(
            model=MODEL, messages=[{"role": "user", "content": prompt}], max_tokens=max_tokens
        )
    except HolySheepError as exc:
        return {"custom_id": custom_id, "error": f"{type(exc).__name__}: {exc}"}
    usage = completion.usage
    return {
        "custom_id": custom_id,
        "text": completion.text,
        "total_tokens": usage.total_tokens if usage else 0,
        "worker_pid": os.getpid(),
    }


def run_job(
    prompts: list[str], *, max_tokens: int = 256, timeout: float = 3600
) -> list[dict[str, Any]]:
    """Send one task per prompt (ids ``p0``, ``p1``, ...); the answers, in order."""
    job = group(ask.s(f"p{i}", prompt, max_tokens) for i, prompt in enumerate(prompts))
    results: list[dict[str, Any]] = job.apply_async().get(timeout=timeout)
    return results


if __name__ == "__main__":
    for result in run_job(sys.argv[1:] or ["Say hello"]):
        print(result["custom_id"], result.get("text") or result["error"])
