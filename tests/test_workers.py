"""examples/celery_tasks.py on a real Celery 5 prefork worker, Redis as broker and quota.

The worker (``celery -A celery_tasks worker --pool prefork --concurrency 2``)
imports the task module, which makes the ``Client`` at import; the pool forks
its processes from there. This test sends 20 tasks through the module's own
``run_job`` and checks every answer, that forked processes answered them, and
that the quota was one for the whole pool (``shared_limits``): the emulator
saw the requests no faster than one shared ``rpm`` allows. The worker runs in
a session of its own and is killed whole at the end, whatever happens.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from holysheep_async.testing import MockServer, answer_text

from .redis_server import RedisServer

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
TASKS = 20
RPM = 300  # a burst of 5, then one every 0.2 s: 20 requests take >= 3 s in all


def load_example(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        f"holysheep_example_{name}", EXAMPLES / f"{name}.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def emulator() -> Iterator[MockServer]:
    with MockServer(api_keys=["test-key"]) as server:
        yield server


@contextlib.contextmanager
def celery_worker(env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                sys.executable, "-m", "celery",
                "-A", "celery_tasks",
                "worker",
                "--pool", "prefork",
                "--concurrency", "2",
                "--loglevel", "INFO",
                "--hostname", "holysheep-test@%h",
                "--without-gossip", "--without-mingle", "--without-heartbeat",
            ],
            cwd=str(log.parent),
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)  # warm shutdown
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                pass
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # the pool's processes too
        proc.wait(timeout=30)


def test_celery_prefork_worker_answers_under_one_shared_quota(
    emulator: MockServer,
    redis_server: RedisServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = {
        "REDIS_URL": redis_server.url,
        "HOLYSHEEP_BASE_URL": emulator.base_url,
        "HOLYSHEEP_RPM": str(RPM),
    }
    for name, value in settings.items():
        monkeypatch.setenv(name, value)
    env = {k: v for k, v in os.environ.items() if k != "HOLYSHEEP_API_KEY"}
    env["PYTHONPATH"] = os.pathsep.join([str(EXAMPLES), env.get("PYTHONPATH", "")])
    # The sending side: the same module, as a program would import it (its client unused).
    tasks = load_example("celery_tasks")
    prompts = [f"Celery prompt {i}" for i in range(TASKS)]
    log = tmp_path / "worker.log"
    with celery_worker(env, log) as worker:
        results = tasks.run_job(prompts, max_tokens=6, timeout=120)
        assert worker.poll() is None, log.read_text()
        main_pid = worker.pid
    output = log.read_text()
    assert [r["custom_id"] for r in results] == [f"p{i}" for i in range(TASKS)]
    for prompt, result in zip(prompts, results, strict=True):
        assert "error" not in result, result
        assert result["text"] == answer_text([{"role": "user", "content": prompt}], 6)
    # Answered in the pool's forked processes (both of them), not in the main one.
    pids = {r["worker_pid"] for r in results}
    assert main_pid not in pids and len(pids) == 2, pids
    # One quota for the pool: at most RPM a minute in all (a burst of 5, then 5 a second).
    # Each process on its own would have let 10 go at once and finished in ~1 s.
    seen = sorted(r.received_at for r in emulator.requests if r.path == "/v1/chat/completions")
    assert len(seen) == TASKS
    assert seen[-1] - seen[0] >= 0.8 * (TASKS - 5) * 60 / RPM, seen
    assert "Traceback" not in output, output
