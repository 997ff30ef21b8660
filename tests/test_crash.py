"""``batches.run(journal=...)`` killed with SIGKILL at random points, restarted until done.

The emulator runs here, in the test process, so what it saw survives the
client's deaths; the client runs in a subprocess (tests/crash_client.py, on
asyncio or trio at random) that is killed:

- by the server, the moment the n-th request of that client process arrives
  (before the server acts on it), or right after the server acted on it but
  before the client could read the answer (the batch exists, its id is not in
  the journal yet);
- by the test, after a random delay.

Some requests also lose their answer without a kill (the server acts, then
drops the connection or answers 502), so the client's own retries meet a
request that did reach the server. The first starts hit the windows that
matter most on purpose (see ``BATCH_FIRST``), the rest are drawn at random.
At the end, from the server's side: every ``custom_id`` went into exactly one
batch, and the output file has exactly one result per ``custom_id``, the very
answer the server gave.

``CRASH_REQUESTS`` sets the size (the ``soak`` nox session runs 10,000),
``CRASH_SEED`` the random schedule.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from holysheep_async import AsyncClient
from holysheep_async.batches import CREATE_ID_KEY
from holysheep_async.jsonl import read_results, write_requests
from holysheep_async.testing import MockServer, answer_text
from holysheep_async.testing._batches import batch_store
from holysheep_async.testing._http import Request, Responder

from .crash_client import crash_tasks

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="needs SIGKILL")

CLIENT = Path(__file__).with_name("crash_client.py")
REQUESTS = int(os.environ.get("CRASH_REQUESTS", "240"))
SEED = int(os.environ.get("CRASH_SEED", "20261129"))


class _NullWriter:
    """Where an answer goes that the client never gets."""

    class transport:  # stands in for asyncio's transport attribute
        @staticmethod
        def abort() -> None:
            pass

    def write(self, data: bytes) -> None:
        pass

    async def drain(self) -> None:
        pass

    def is_closing(self) -> bool:
        return False


def kind(request: Request) -> str:
    """What a request does, as the kill plan names it."""
    path = request.path
    if path == "/v1/files":
        return "upload"
    if path == "/v1/batches":
        return "create" if request.method == "POST" else "list"
    if path.startswith("/v1/batches/"):
        return "poll"
    if path.startswith("/v1/files/"):
        return "download"
    return "call"


class CrashServer(MockServer):
    """The emulator, able to kill the client process at its n-th request of a kind."""

    def __init__(self, **options: Any) -> None:
        super().__init__(api_keys=["test-key"], **options)
        self.victim: int | None = None
        #: (kind, n) -> "kill-before", "kill-after" or "lose", for the current client process.
        self.plan: dict[tuple[str, int], str] = {}
        self.seen: Counter[str] = Counter()
        self.kills = 0
        self.lost: Counter[str] = Counter()

    def arm(self, plan: dict[tuple[str, int], str], victim: int | None = None) -> None:
        """Follow ``plan`` from now on, counting requests from zero, killing ``victim``."""
        self.plan, self.seen, self.victim = plan, Counter(), victim

    def _kill(self) -> None:
        if self.victim is not None:
            os.kill(self.victim, signal.SIGKILL)
            self.victim = None
            self.kills += 1

    async def _dispatch(self, request: Request, responder: Responder) -> None:
        what = kind(request)
        self.seen[what] += 1
        self.seen["any"] += 1
        action = self.plan.get((what, self.seen[what])) or self.plan.get(("any", self.seen["any"]))
        if action == "kill-before" and self.victim is not None:
            self._kill()
            responder.abort()
            return
        if action in ("kill-after", "lose", "error-after"):
            # The server does what was asked; the answer never reaches the client.
            await super()._dispatch(request, Responder(_NullWriter(), request, False))  # type: ignore[arg-type]
            if action == "kill-after":
                self._kill()
            else:
                self.lost[what] += 1
            if action == "error-after":
                await responder.error(502, "bad gateway", type="server_error")
            else:
                responder.abort()
            return
        await super()._dispatch(request, responder)


LOSE = ["lose", "error-after"]
KINDS = {
    "batch": ["upload", "create", "create", "poll", "download", "list", "any"],
    "direct": ["call", "call", "any"],
}


#: The windows that matter most, always hit: a create whose answer is lost (the client's
#: retry meets a batch that exists), and a kill after the server created a batch but
#: before the client saved its id; then a kill mid-upload and one mid-download.
BATCH_FIRST: list[dict[tuple[str, int], str]] = [
    {("create", 2): "lose", ("create", 3): "error-after", ("create", 4): "kill-after"},
    {("upload", 2): "kill-after"},
    {("create", 1): "kill-after"},
    {("download", 1): "kill-before"},
]
#: A call whose answer is lost, then kills while calls are in flight.
DIRECT_FIRST: list[dict[tuple[str, int], str]] = [
    {("call", 3): "lose", ("call", 10): "kill-after"},
    {("call", 5): "kill-before"},
]


def run_until_done(
    server: CrashServer,
    tmp_path: Path,
    n: int,
    per_batch: int,
    kills: int,
    seed: int,
    kinds: list[str],
    first: list[dict[tuple[str, int], str]],
) -> tuple[Path, int]:
    """Start the client again and again, killing it ``kills`` times; return (output, restarts).

    The first starts follow ``first``, the rest a random plan drawn from ``seed``.
    """
    rng = random.Random(seed)
    journal, output = tmp_path / "run.journal", tmp_path / "out.jsonl"
    for start in range(1, kills + 20):
        plan: dict[tuple[str, int], str] = {}
        delay = None
        if start <= len(first):
            plan = dict(first[start - 1])
        elif start <= kills:
            if rng.random() < 0.8:
                action = rng.choice(["kill-before", "kill-after"])
                what = rng.choice(kinds)
                plan[what, rng.randint(1, 20 if what == "any" else 3)] = action
                # If the client does no more of that kind, die at some other step.
                plan.setdefault(("any", rng.randint(1, 20)), action)
            else:
                delay = rng.uniform(0.3, 1.5)  # the fault injected: a kill at no particular step
        for _ in range(rng.randint(0, 2)):
            plan.setdefault((rng.choice(kinds), rng.randint(1, 6)), rng.choice(LOSE))
        backend = rng.choice(["asyncio", "trio"])
        args = [server.base_url, journal, output, n, per_batch, backend]
        proc = subprocess.Popen(
            [sys.executable, str(CLIENT), *map(str, args)],
            stderr=subprocess.PIPE,
            text=True,
        )
        server.arm(plan, proc.pid)  # long before the client's first request (imports)
        try:
            _, err = proc.communicate(timeout=delay if delay is not None else 120)
        except subprocess.TimeoutExpired:
            server.arm({})
            proc.kill()
            _, err = proc.communicate()
            server.kills += 1
        finally:
            server.arm({})
            if proc.poll() is None:  # the test itself failed: leave no client behind
                proc.kill()
                proc.wait()
        if proc.returncode == 0:
            return output, start
        assert proc.returncode == -signal.SIGKILL, (
            f"seed {seed} start {start}: client exited {proc.returncode}:\n{err[-3000:]}"
        )
    raise AssertionError(f"seed {seed}: still not done after {kills + 20} starts")


def expected_content(body: dict[str, Any]) -> str:
    return answer_text(body["messages"], body["max_tokens"])


def output_by_id(output: Path, ids: list[str]) -> dict[str, Any]:
    lines = [json.loads(x) for x in output.read_text("utf-8").splitlines()]
    assert [x["custom_id"] for x in lines] == ids, "one result per custom_id, in input order"
    assert len(list(read_results(output))) == len(ids)
    return {x["custom_id"]: x for x in lines}


def test_batch_run_survives_sigkill(tmp_path: Path) -> None:
    n = REQUESTS
    per_batch = max(10, n // 10)
    tasks = {t["custom_id"]: t for t in crash_tasks(n)}
    ids = list(tasks)
    with CrashServer(batch_speed=max(5, per_batch // 3)) as server:
        output, starts = run_until_done(
            server,
            tmp_path,
            n,
            per_batch,
            kills=8,
            seed=SEED,
            kinds=KINDS["batch"],
            first=BATCH_FIRST,
        )
        store = batch_store(server)
        # Server side: every custom_id went into exactly one created batch.
        placed: Counter[str] = Counter()
        answers: dict[str, dict[str, Any]] = {}
        for batch in store.batches.values():
            data = store.files[batch.obj["input_file_id"]].data
            placed.update(json.loads(line)["custom_id"] for line in data.splitlines())
            answers.update({a["custom_id"]: a for a in batch.done})
        twice = sorted(c for c, k in placed.items() if k > 1)
        assert not twice, f"seed {SEED}: submitted in more than one batch: {twice[:10]}"
        assert sorted(placed) == ids
        assert len(store.batches) == -(-n // per_batch), "one batch per part, none created twice"
        assert len({b.obj["input_file_id"] for b in store.batches.values()}) == len(store.batches)
        # Client side: exactly one result per custom_id, the answer the server gave.
        results = output_by_id(output, ids)
        for cid, line in results.items():
            assert line["response"] == answers[cid]["response"], cid
            body = line["response"]["body"]
            assert body["choices"][0]["message"]["content"] == expected_content(tasks[cid])
        assert not list(tmp_path.rglob("*.tmp")), "temporary files of killed runs removed"
        state = json.loads((tmp_path / "run.journal").read_text("utf-8"))
        assert sorted(p["batch_id"] for p in state["parts"]) == sorted(store.batches)
        assert server.kills >= 3, f"seed {SEED}: only {server.kills} kills in {starts} starts"


def test_direct_fallback_survives_sigkill(tmp_path: Path) -> None:
    """No Batch API: every request is a direct call, logged as it is answered.

    A call in flight when the process dies has no line in the log yet, so
    the resumed run sends it again: at most the calls in flight at each kill
    (and those whose answer was lost) are sent twice, and each still ends in
    exactly one result.
    """
    n = max(40, REQUESTS // 4)
    tasks = {t["custom_id"]: t for t in crash_tasks(n)}
    ids = list(tasks)
    with CrashServer(batch_api=False) as server:
        output, starts = run_until_done(
            server,
            tmp_path,
            n,
            n,
            kills=5,
            seed=SEED + 1,
            kinds=KINDS["direct"],
            first=DIRECT_FIRST,
        )
        sent: Counter[str] = Counter()
        for request in server.requests:
            if request.path == "/v1/chat/completions":
                sent[request.json()["messages"][0]["content"].split()[1].rstrip(":")] += 1
        assert sorted(sent) == ids
        again = sum(k - 1 for k in sent.values())
        # concurrency=8 in the client: at most 8 calls in flight when it dies.
        assert again <= 8 * server.kills + sum(server.lost.values()), (again, server.kills)
        results = output_by_id(output, ids)
        for cid, line in results.items():
            assert line["x_holysheep_direct"] is True
            body = line["response"]["body"]
            assert body["choices"][0]["message"]["content"] == expected_content(tasks[cid])
        assert server.kills >= 2, f"seed {SEED + 1}: only {server.kills} kills in {starts} starts"


@pytest.mark.anyio
@pytest.mark.parametrize("action", ["lose", "error-after"])
async def test_create_that_reached_the_server_is_not_sent_again(
    action: str, tmp_path: Path
) -> None:
    """POST /batches made the batch but its answer was lost (or a 502 came instead).

    The create goes out on the connection the upload used: the transport's
    rule of sending again on a reused connection that died is in play too.
    """
    async with CrashServer(batch_speed=100) as server:
        server.arm({("create", 1): action, ("create", 3): action})
        async with AsyncClient(api_key="test-key", base_url=server.base_url) as client:
            client._requester.sleep = _no_sleep
            report = await client.batches.run(
                crash_tasks(6), max_requests_per_batch=3, journal=tmp_path / "j"
            )
            submitted = await client.batches.submit(crash_tasks(2))
        store = batch_store(server)
        assert server.lost["create"] == 2
        assert len(store.batches) == 3, "one batch per part and one for submit, none twice"
        assert sorted([*report.batch_ids, submitted.id]) == sorted(store.batches)
        assert report.succeeded == [t["custom_id"] for t in crash_tasks(6)]


async def _no_sleep(seconds: float) -> None:
    pass


@pytest.mark.anyio
@pytest.mark.parametrize("action", ["lose", "error-after"])
async def test_public_create_of_a_used_file_finds_its_own_batch_not_an_older_one(
    action: str, tmp_path: Path
) -> None:
    """``batches.create`` on a file that already has a batch: the lost create's retry must
    return the batch this call made (found by its create id), and make no third one."""
    async with CrashServer(batch_speed=100) as server:
        async with AsyncClient(api_key="test-key", base_url=server.base_url) as client:
            client._requester.sleep = _no_sleep
            path = tmp_path / "in.jsonl"
            write_requests(path, crash_tasks(2))
            file = await client.batches.upload(path)
            first = await client.batches.create(file.id, metadata={"job": "a"})
            server.arm({("create", 1): action})
            second = await client.batches.create(file.id, metadata={"job": "b"})
        store = batch_store(server)
        assert server.lost["create"] == 1
        assert len(store.batches) == 2, "the lost create made one batch, not two"
        assert second.id != first.id
        assert second.metadata is not None and second.metadata["job"] == "b"
        assert second.metadata[CREATE_ID_KEY] != first.metadata[CREATE_ID_KEY]  # type: ignore[index]
