"""client.batches: submit, wait, results, download, cancel, list, and the run pipeline."""

from __future__ import annotations

import json
import sys
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
import yaml
from openapi_schema_validator import OAS31Validator

from holysheep_async import (
    AsyncClient,
    Batch,
    BatchReport,
    BatchRequest,
    BatchTimeoutError,
    BatchValidationError,
    HolySheepError,
    RunProgress,
)
from holysheep_async.batches import adaptive_poll_interval as poll_interval
from holysheep_async.batches import split_requests
from holysheep_async.models import Usage
from holysheep_async.testing import MockServer, answer_text

pytestmark = pytest.mark.anyio

SPEC = yaml.safe_load((Path(__file__).parent / "openai-chat-files-batches.yaml").read_text())


def check_schema(name: str, instance: Any) -> None:
    schema = {"$ref": f"#/components/schemas/{name}", "components": SPEC["components"]}
    OAS31Validator(schema).validate(instance)


def tasks(n: int, model: str = "gpt-4o-mini", prefix: str = "t") -> list[dict[str, Any]]:
    return [
        {
            "custom_id": f"{prefix}{i}",
            "model": model,
            "messages": [{"role": "user", "content": f"question {prefix}{i}"}],
            "max_tokens": 4,
        }
        for i in range(n)
    ]


@pytest.fixture
def options(server: MockServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """Emulator options for one test, restored afterwards."""

    def set_options(**kw: Any) -> None:
        for key, value in kw.items():
            monkeypatch.setitem(server.options, key, value)

    yield set_options


class Log:
    """The emulator's requests from a point on."""

    def __init__(self, server: MockServer) -> None:
        self.server = server
        self.start = len(server.requests)

    def calls(self, method: str, path: str) -> list[Any]:
        return [
            r for r in self.server.requests[self.start :] if r.method == method and r.path == path
        ]


def assert_accounted(report: BatchReport, ids: list[str]) -> None:
    every = report.succeeded + report.failed + report.missing
    assert sorted(every) == sorted(ids)
    assert len(set(every)) == len(every)
    assert set(report.results) == set(report.succeeded) | set(report.failed)


# -- submit / wait / results ---------------------------------------------------


async def test_invalid_input_is_refused_before_any_upload(
    client: AsyncClient, server: MockServer
) -> None:
    log = Log(server)
    bad = [*tasks(2), {"custom_id": "t0", "model": "gpt-4o-mini", "messages": "nope"}]
    with pytest.raises(BatchValidationError) as info:
        await client.batches.submit(bad)
    assert [n for n, _ in info.value.problems] == [3, 3]
    assert "duplicate custom_id 't0'" in str(info.value)
    assert log.calls("POST", "/v1/files") == [] and log.calls("POST", "/v1/batches") == []


async def test_submit_sends_what_the_spec_describes(
    client: AsyncClient, server: MockServer, tmp_path: Path
) -> None:
    log = Log(server)
    batch = await client.batches.submit(tasks(3), metadata={"job": "nightly"})
    assert batch.status == "validating" and batch.metadata == {"job": "nightly"}
    (upload,) = log.calls("POST", "/v1/files")
    assert upload.headers["content-type"].startswith("multipart/form-data")
    assert b'name="purpose"\r\n\r\nbatch' in upload.body
    (create,) = log.calls("POST", "/v1/batches")
    check_schema("CreateBatchRequest", create.json())
    assert create.json()["input_file_id"] == batch.input_file_id
    content = (
        await client.http_client.get(
            f"{server.base_url}/files/{batch.input_file_id}/content",
            headers={"Authorization": "Bearer test-key"},
        )
    ).text
    for raw in content.splitlines():
        line = json.loads(raw)
        assert line["url"] == "/v1/chat/completions"
        check_schema("CreateChatCompletionRequest", line["body"])
    check_schema(
        "Batch",
        (
            await client.http_client.get(
                f"{server.base_url}/batches/{batch.id}",
                headers={"Authorization": "Bearer test-key"},
            )
        ).json(),
    )
    # A file path works too, and is validated the same way.
    path = tmp_path / "in.jsonl"
    path.write_text("{oops\n")
    with pytest.raises(BatchValidationError, match="line 1: invalid JSON"):
        await client.batches.submit(path)


async def test_wait_polls_adaptively_with_progress(
    client: AsyncClient, fake_sleep: Any, options: Any
) -> None:
    options(batch_speed=2)
    batch = await client.batches.submit(tasks(8))
    seen: list[tuple[str, float]] = []
    done = await client.batches.wait(
        batch.id, on_progress=lambda b: seen.append((b.status, b.progress))
    )
    assert done.status == "completed" and done.is_final
    assert seen[0] == ("in_progress", 0.0) and seen[-1] == ("completed", 100.0)
    assert [p for _, p in seen] == sorted(p for _, p in seen)
    assert len(fake_sleep.calls) == len(seen) - 1
    assert 1.0 <= fake_sleep.calls[0] <= 2.0
    assert all(b > a for a, b in zip(fake_sleep.calls, fake_sleep.calls[1:], strict=False))


def test_poll_interval_adapts_to_size_and_age() -> None:
    small = Batch(id="b", status="in_progress", request_counts={"total": 10})
    big = Batch(id="b", status="in_progress", request_counts={"total": 20_000})
    assert poll_interval(small, 0) == 1.0 and poll_interval(big, 0) == 2.0
    assert poll_interval(small, 100) == 30.0 and poll_interval(big, 100) == 60.0
    old = Batch(id="b", status="in_progress", created_at=int(__import__("time").time()) - 600)
    assert poll_interval(old, 0) >= 19


async def test_wait_timeout_and_fixed_interval(
    client: AsyncClient, fake_sleep: Any, options: Any
) -> None:
    options(batch_speed=0)
    batch = await client.batches.submit(tasks(2))
    with pytest.raises(BatchTimeoutError, match="still validating") as info:
        await client.batches.wait(batch, poll_interval=3, timeout=10)
    assert fake_sleep.calls == [3, 3, 3, 1]
    assert isinstance(info.value.batch, Batch) and info.value.batch.id == batch.id


async def test_wait_is_cancelled_with_its_scope(client: AsyncClient, options: Any) -> None:
    options(batch_speed=0)
    batch = await client.batches.submit(tasks(2))
    polls = 0
    with anyio.CancelScope() as scope:

        def progress(b: Batch) -> None:
            nonlocal polls
            polls += 1
            if polls == 3:
                scope.cancel()

        await client.batches.wait(batch, on_progress=progress)
    assert scope.cancelled_caught and polls == 3


async def test_results_download_cancel_list(
    client: AsyncClient, server: MockServer, tmp_path: Path, options: Any
) -> None:
    options(batch_speed=100, batch_fail=r"^t2$")
    batch = await client.batches.wait(await client.batches.submit(tasks(5)))
    results = {r.custom_id: r async for r in client.batches.results(batch)}
    assert set(results) == {f"t{i}" for i in range(5)}
    assert not results["t2"].ok and results["t2"].status_code == 500
    t0 = results["t0"]
    assert t0.ok and t0.content == answer_text([{"role": "user", "content": "question t0"}], 4)
    assert t0.usage is not None and t0.usage.completion_tokens == 4
    path = await client.batches.download(batch, tmp_path / "out.jsonl")
    assert sorted(json.loads(x)["custom_id"] for x in path.read_text().splitlines()) == sorted(
        results
    )
    # A batch id works as well as a Batch: it is retrieved first.
    by_id = await client.batches.download(batch.id, tmp_path / "by-id.jsonl")
    assert sorted(by_id.read_text().splitlines()) == sorted(path.read_text().splitlines())
    assert {r.custom_id async for r in client.batches.results(batch.id)} == set(results)
    with pytest.raises(TypeError, match="Batch or a batch id"):
        await client.batches.download(42, tmp_path / "x.jsonl")  # type: ignore[arg-type]

    options(batch_speed=0)
    pending = await client.batches.submit(tasks(2, prefix="c"))
    cancelling = await client.batches.cancel(pending.id)
    assert cancelling.status == "cancelling"
    server.advance_batches()
    assert (await client.batches.retrieve(pending.id)).status == "cancelled"

    log = Log(server)
    listed = []
    async for b in client.batches.list(limit=1):
        listed.append(b.id)
        if len(listed) == 3:
            break
    assert listed[:2] == [pending.id, batch.id]
    pages = log.calls("GET", "/v1/batches")
    assert [p.query.get("after") for p in pages] == [None, pending.id, batch.id]
    assert all(p.query["limit"] == "1" for p in pages)


# -- run -------------------------------------------------------------------------


def test_split_by_count_bytes_and_model() -> None:
    reqs = [BatchRequest(f"a{i}", {"model": "m1", "messages": []}) for i in range(7)]
    reqs += [BatchRequest(f"b{i}", {"model": "m2", "messages": []}) for i in range(2)]
    chunks = split_requests(reqs, max_requests=3)
    assert [[r.custom_id for r in c] for c in chunks] == [
        ["a0", "a1", "a2"],
        ["a3", "a4", "a5"],
        ["a6"],
        ["b0", "b1"],
    ]
    size = len(json.dumps(reqs[0].to_line()).encode()) + 1
    assert [len(c) for c in split_requests(reqs, max_bytes=size * 2)] == [2, 2, 2, 1, 2]


async def test_run_splits_and_merges(client: AsyncClient, server: MockServer, options: Any) -> None:
    options(batch_speed=3)
    log = Log(server)
    inputs = tasks(7) + tasks(2, model="gpt-4o", prefix="x")
    progress: list[RunProgress] = []
    report = await client.batches.run(inputs, max_requests_per_batch=3, on_progress=progress.append)
    assert len(log.calls("POST", "/v1/batches")) == 4  # 3 + 3 + 1 for one model, 2 for the other
    assert len(report.batch_ids) == 4 and report.mode == "batch"
    ids = [t["custom_id"] for t in inputs]
    assert report.succeeded == ids and not report.failed and not report.missing
    assert_accounted(report, ids)
    assert report.results["x1"].model == "gpt-4o"
    assert report.total_tokens == sum(r.usage.total_tokens for r in report.results.values())  # type: ignore[union-attr]
    assert progress[-1].phase == "done" and progress[-1].done == 9
    assert {p.phase for p in progress} >= {"submitting", "waiting"}


async def test_run_records_batch_usage(client: AsyncClient, options: Any) -> None:
    options(batch_speed=100)
    seen: list[tuple[str, int, bool]] = []
    client._requester.usage_hooks.append(lambda m, u, b: seen.append((m, u.total_tokens, b)))
    report = await client.batches.run(tasks(3))
    assert len(seen) == 3 and all(b for _, _, b in seen)
    assert sum(t for _, t, _ in seen) == report.total_tokens > 0


async def test_failed_requests_are_retried_directly(
    client: AsyncClient, server: MockServer, options: Any
) -> None:
    options(batch_speed=100, batch_fail=r"^t[14]$")
    log = Log(server)
    report = await client.batches.run(tasks(6))
    assert sorted(report.succeeded) == [f"t{i}" for i in range(6)]
    assert report.results["t1"].direct and not report.results["t0"].direct
    assert len(log.calls("POST", "/v1/chat/completions")) == 2


async def test_failed_requests_reported_without_retry(client: AsyncClient, options: Any) -> None:
    options(batch_speed=100, batch_fail=r"^t[14]$")
    report = await client.batches.run(tasks(6), retry="none")
    assert report.failed == ["t1", "t4"] and report.results["t1"].status_code == 500
    assert_accounted(report, [f"t{i}" for i in range(6)])


async def test_retry_in_a_new_batch(
    client: AsyncClient, server: MockServer, options: Any, anyio_backend: str
) -> None:
    prefix = f"retry-{anyio_backend}-"  # batch_fail_once remembers ids for the server's life
    options(batch_speed=100, batch_fail=f"^{prefix}[02]$", batch_fail_once=True)
    log = Log(server)
    report = await client.batches.run(tasks(4, prefix=prefix), retry="batch")
    assert len(log.calls("POST", "/v1/batches")) == 2
    assert log.calls("POST", "/v1/chat/completions") == []
    assert report.succeeded == [f"{prefix}{i}" for i in range(4)]
    assert len(report.batch_ids) == 2


async def test_expired_requests_are_retried(
    client: AsyncClient, server: MockServer, options: Any
) -> None:
    options(batch_speed=2, batch_expire_after=1)
    log = Log(server)
    report = await client.batches.run(tasks(6))
    assert len(log.calls("POST", "/v1/chat/completions")) == 4
    assert sorted(report.succeeded) == [f"t{i}" for i in range(6)]
    # retried once only: expired again and still failing means reported, not lost
    options(batch_api=True)
    report = await client.batches.run(tasks(6, prefix="e"), retry="batch")
    assert len(report.succeeded) == 4 and len(report.failed) == 2
    assert {report.results[i].error["code"] for i in report.failed} == {"batch_expired"}  # type: ignore[index]
    assert_accounted(report, [f"e{i}" for i in range(6)])


async def test_batch_failed_at_validation_is_reported(client: AsyncClient, options: Any) -> None:
    options(batch_speed=100, batch_token_limit=1)
    report = await client.batches.run(tasks(3), retry="none")
    assert report.failed == ["t0", "t1", "t2"]
    error = report.results["t0"].error
    assert error is not None and error["code"] == "batch_failed"
    assert "token_limit_exceeded" in error["message"]


@pytest.mark.parametrize("switch", [False, 405, 501])
async def test_no_batch_api_falls_back_to_direct_calls(
    client: AsyncClient, server: MockServer, options: Any, switch: object, tmp_path: Path
) -> None:
    options(batch_speed=100)
    batch_report = await client.batches.run(tasks(5), output=tmp_path / "a.jsonl")
    options(batch_api=switch)
    log = Log(server)
    report = await client.batches.run(tasks(5), output=tmp_path / "b.jsonl")
    assert report.mode == "direct" and not report.batch_ids
    assert len(log.calls("POST", "/v1/chat/completions")) == 5
    assert report.succeeded == batch_report.succeeded
    for cid, result in report.results.items():
        assert result.content == batch_report.results[cid].content
        assert result.usage == batch_report.results[cid].usage
    assert report.total_tokens == batch_report.total_tokens
    lines = [json.loads(x) for x in (tmp_path / "b.jsonl").read_text().splitlines()]
    assert [x["custom_id"] for x in lines] == [f"t{i}" for i in range(5)]
    assert set(lines[0]) >= {"id", "custom_id", "response", "error"}


async def test_fallback_stays_under_the_concurrency_limit(
    server: MockServer, fake_sleep: Any, options: Any
) -> None:
    options(batch_api=False)
    async with AsyncClient(api_key="test-key", base_url=server.base_url, max_concurrency=2) as c:
        c._requester.sleep = fake_sleep
        report = await c.batches.run(tasks(6), concurrency=50)
        assert len(report.succeeded) == 6
        assert c.limiter._slots is not None and c.limiter._slots.value == 2


class Crash(Exception):
    pass


async def crash_while_waiting(client: AsyncClient, inputs: Any, journal: Path, **kw: Any) -> None:
    def progress(p: RunProgress) -> None:
        if p.phase == "waiting":
            raise Crash

    with pytest.raises(Crash):
        await client.batches.run(inputs, journal=journal, on_progress=progress, **kw)


async def test_journal_resumes_without_submitting_again(
    client: AsyncClient, server: MockServer, tmp_path: Path, options: Any
) -> None:
    options(batch_speed=100)
    journal = tmp_path / "run.journal"
    log = Log(server)
    await crash_while_waiting(client, tasks(5), journal, max_requests_per_batch=2)
    assert len(log.calls("POST", "/v1/batches")) == 3
    state = json.loads(journal.read_text())
    assert [p["batch_id"] is not None for p in state["parts"]] == [True, True, True]
    report = await client.batches.run(tasks(5), journal=journal, max_requests_per_batch=2)
    assert len(log.calls("POST", "/v1/batches")) == 3
    assert len(log.calls("POST", "/v1/files")) == 3
    assert report.succeeded == [f"t{i}" for i in range(5)]
    # A finished journal gives the same report again, without a request.
    before = len(server.requests)
    again = await client.batches.run(tasks(5), journal=journal, max_requests_per_batch=2)
    assert len(server.requests) == before and again.succeeded == report.succeeded


async def test_crash_between_create_and_journal_finds_the_batch(
    client: AsyncClient, server: MockServer, tmp_path: Path, options: Any
) -> None:
    options(batch_speed=100)
    journal = tmp_path / "run.journal"
    await crash_while_waiting(client, tasks(3), journal)
    state = json.loads(journal.read_text())
    state["parts"][0]["batch_id"] = None  # as if killed right after POST /batches
    journal.write_text(json.dumps(state))
    log = Log(server)
    report = await client.batches.run(tasks(3), journal=journal)
    assert log.calls("POST", "/v1/batches") == [] and log.calls("POST", "/v1/files") == []
    assert len(report.succeeded) == 3


async def test_journal_in_use_refuses_a_second_run(
    client: AsyncClient, server: MockServer, tmp_path: Path, options: Any
) -> None:
    options(batch_speed=1)
    journal = tmp_path / "run.journal"
    refused: list[str] = []

    async def progress(p: RunProgress) -> None:
        if p.phase == "waiting" and not refused:
            with pytest.raises(HolySheepError, match="in use by another run") as info:
                await client.batches.run(tasks(3), journal=journal)
            refused.append(str(info.value))

    log = Log(server)
    report = await client.batches.run(tasks(3), journal=journal, on_progress=progress)
    assert refused and report.succeeded == ["t0", "t1", "t2"]
    assert len(log.calls("POST", "/v1/batches")) == 1
    # Released when the run ends: the journal is usable again.
    assert (await client.batches.run(tasks(3), journal=journal)).succeeded == report.succeeded


async def test_journal_refuses_other_input(
    client: AsyncClient, tmp_path: Path, options: Any
) -> None:
    options(batch_speed=100)
    journal = tmp_path / "run.journal"
    await client.batches.run(tasks(2), journal=journal)
    with pytest.raises(HolySheepError, match="different input"):
        await client.batches.run(tasks(3), journal=journal)


async def test_cost_through_pricing(
    client: AsyncClient, options: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    options(batch_speed=100, batch_api=True)
    calls: list[tuple[str, int, int, bool]] = []

    def cost(model: str, inp: int, out: int, *, batch: bool = False) -> float:
        calls.append((model, inp, out, batch))
        if model == "unknown-model":
            raise LookupError(model)
        return 1.0 if batch else 2.0

    fake = types.ModuleType("holysheep_async.pricing")
    fake.cost = cost  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "holysheep_async.pricing", fake)
    report = await client.batches.run(tasks(3))
    assert report.cost_usd == 3.0 and {c[3] for c in calls} == {True}
    report = await client.batches.run(tasks(1, model="unknown-model", prefix="u"))
    assert report.cost_usd is None and report.total_tokens > 0


def test_usage_cost_without_pricing(monkeypatch: pytest.MonkeyPatch) -> None:
    from holysheep_async.batches._cost import usage_cost

    monkeypatch.setitem(sys.modules, "holysheep_async.pricing", None)
    assert usage_cost("gpt-4o", Usage(prompt_tokens=1, completion_tokens=1), batch=True) is None


def test_split_at_the_real_limit() -> None:
    reqs = [BatchRequest(f"r{i}", {"model": "m", "messages": []}) for i in range(50_001)]
    assert [len(c) for c in split_requests(reqs)] == [50_000, 1]


async def test_results_skip_and_report_a_broken_line(
    client: AsyncClient, server: MockServer, options: Any
) -> None:
    from holysheep_async.testing._batches import batch_store

    options(batch_speed=100)
    batch = await client.batches.wait(await client.batches.submit(tasks(3)))
    assert batch.output_file_id is not None
    batch_store(server).files[batch.output_file_id].data += b"\n{cut off"
    problems: list[tuple[int, str]] = []
    results = [r async for r in client.batches.results(batch, problems=problems)]
    assert sorted(r.custom_id for r in results) == ["t0", "t1", "t2"]
    assert len(problems) == 1 and problems[0][0] == 5 and "not a batch result" in problems[0][1]


async def test_direct_fallback_resumes_after_a_crash(
    client: AsyncClient, server: MockServer, tmp_path: Path, options: Any
) -> None:
    options(batch_api=False)
    journal = tmp_path / "run.journal"

    def progress(p: RunProgress) -> None:
        if p.phase == "direct" and p.done == 2:
            raise Crash

    log = Log(server)
    with pytest.raises(Crash):
        await client.batches.run(tasks(6), journal=journal, on_progress=progress, concurrency=1)
    direct_log = tmp_path / "run.journal.d" / "direct-0.jsonl"
    assert len(direct_log.read_text().splitlines()) == 2
    with direct_log.open("a") as fh:
        fh.write('{"id": "direct-x", "custom_id": "t')  # killed in the middle of a line
    report = await client.batches.run(tasks(6), journal=journal, concurrency=1)
    assert report.succeeded == [f"t{i}" for i in range(6)] and report.mode == "direct"
    assert len(log.calls("POST", "/v1/chat/completions")) == 6  # 2 before the crash, 4 after


async def test_a_wrong_key_stops_the_run_with_a_plain_error(
    server: MockServer, fake_sleep: Any, options: Any
) -> None:
    from holysheep_async import AuthenticationError

    options(batch_api=False)
    async with AsyncClient(api_key="wrong-key", base_url=server.base_url) as c:
        c._requester.sleep = fake_sleep
        with pytest.raises(AuthenticationError) as info:
            await c.batches.run(tasks(3))
        assert "wrong-key" not in str(info.value)


async def test_run_reads_task_files_and_names_bad_lines(
    client: AsyncClient, tmp_path: Path, options: Any
) -> None:
    options(batch_speed=100)
    path = tmp_path / "tasks.jsonl"
    path.write_text("".join(json.dumps(t) + "\n" for t in tasks(3)))  # seed-style, no body
    report = await client.batches.run(path)
    assert report.succeeded == ["t0", "t1", "t2"]
    path.write_text(json.dumps(tasks(1)[0]) + "\n\n[1]\n" + json.dumps(tasks(1)[0]) + "\n")
    with pytest.raises(BatchValidationError) as info:
        await client.batches.run(path)
    assert [n for n, _ in info.value.problems] == [2, 3]
    path.write_text(json.dumps(tasks(1)[0]) + "\n" + json.dumps(tasks(1)[0]) + "\n")
    with pytest.raises(BatchValidationError, match="line 2: duplicate custom_id 't0'"):
        await client.batches.run(path)


async def test_a_web_page_instead_of_the_files_api_means_no_batch_api(
    client: AsyncClient, server: MockServer
) -> None:
    from holysheep_async.testing import Fault

    page = "<!doctype html><html><title>My Relay</title><body>app</body></html>"
    server.inject(Fault("status", status=200, body=page, path="/v1/files"))
    report = await client.batches.run(tasks(2))
    assert report.mode == "direct" and report.succeeded == ["t0", "t1"]


async def test_results_keep_lines_whole_whatever_unicode_line_breaks_they_hold(
    client: AsyncClient, server: MockServer, options: Any
) -> None:
    """U+2028, U+2029 and U+0085 may stand unescaped in a JSON string: they end no JSONL line."""
    from holysheep_async.testing._batches import batch_store

    options(batch_speed=100)
    batch = await client.batches.wait(await client.batches.submit(tasks(2)))
    assert batch.output_file_id is not None
    texts = {"t0": "one\u2028two\u2029three", "t1": "nel\x85here\rand\x1cthere"}
    lines = [
        {
            "id": f"r{i}",
            "custom_id": cid,
            "response": {
                "status_code": 200,
                "request_id": f"q{i}",
                "body": {"choices": [{"message": {"content": text}}]},
            },
            "error": None,
        }
        for i, (cid, text) in enumerate(texts.items())
    ]
    data = "".join(json.dumps(x, ensure_ascii=False) + "\n" for x in lines).encode()
    batch_store(server).files[batch.output_file_id].data = b"\xef\xbb\xbf" + data
    problems: list[tuple[int, str]] = []
    results = {
        r.custom_id: r.content async for r in client.batches.results(batch, problems=problems)
    }
    assert problems == []
    assert results == texts
