"""JSONL helpers: writing request files, validating them line by line, reading results."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from holysheep_async import BatchRequest, BatchResult
from holysheep_async.jsonl import (
    MAX_REQUESTS,
    read_results,
    validate_requests,
    write_requests,
    write_results,
)

MSG = [{"role": "user", "content": "Hi"}]


def line(cid: str | None = "a", model: str = "gpt-4o-mini", **over: object) -> str:
    obj: dict[str, object] = {
        "custom_id": cid,
        "method": "POST",
        "url": "/v1/chat/completions",
        "body": {"model": model, "messages": MSG},
    }
    if cid is None:
        del obj["custom_id"]
    obj.update(over)
    return json.dumps(obj)


def test_write_requests_from_tasks_and_batch_requests(tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    n = write_requests(
        path,
        [
            {"custom_id": "x", "model": "m", "messages": MSG, "max_tokens": 5},
            {"model": "m", "messages": MSG},
            BatchRequest("y", {"model": "m", "messages": MSG}),
        ],
    )
    assert n == 3
    lines = [json.loads(raw) for raw in path.read_text().splitlines()]
    assert [x["custom_id"] for x in lines] == ["x", "request-2", "y"]
    assert lines[0] == {
        "custom_id": "x",
        "method": "POST",
        "url": "/v1/chat/completions",
        "body": {"model": "m", "messages": MSG, "max_tokens": 5},
    }
    assert validate_requests(path).ok


def test_write_requests_never_leaves_half_a_file(tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    path.write_text("old\n")

    def items() -> object:
        yield {"model": "m", "messages": MSG}
        yield 42  # not a request

    with pytest.raises(TypeError, match="request 2"):
        write_requests(path, items())  # type: ignore[arg-type]
    assert path.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["in.jsonl"]


def test_validation_finds_each_kind_of_bad_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    rows = [
        line("a"),  # 1 ok
        "{not json",  # 2
        "[1, 2]",  # 3
        line(None),  # 4 missing custom_id
        line("a"),  # 5 duplicate
        line("b", body=[1]),  # 6 body not an object
        line("c", body={"model": "gpt-4o-mini", "messages": "hi"}),  # 7 messages not a list
        line("d", method="GET"),  # 8
        line("e", url="/v1/embeddings"),  # 9 url does not match the endpoint
        line("f", model="gpt-4o"),  # 10 mixed models
        "",  # 11 blank
        line("g"),  # 12 ok
    ]
    path.write_text("\n".join(rows) + "\n")
    report = validate_requests(path)
    assert not report.ok
    assert report.count == 11
    found = {n: msg for n, msg in report.problems}
    assert sorted(found) == [2, 3, 4, 5, 6, 7, 8, 9, 10, 11]
    assert "invalid JSON" in found[2]
    assert "JSON object" in found[3]
    assert "missing custom_id" in found[4]
    assert "duplicate custom_id 'a' (first on line 1)" in found[5]
    assert "body must be a JSON object" in found[6]
    assert "messages must be a list" in found[7]
    assert "method" in found[8]
    assert "does not match the batch endpoint" in found[9]
    assert "differs from 'gpt-4o-mini' (line 1)" in found[10]
    assert "blank" in found[11]
    assert "line 2:" in str(report)


def test_validation_limits_name_the_line(tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    path.write_text("".join(line(f"r{i}") + "\n" for i in range(5)))
    report = validate_requests(path, max_requests=3)
    assert report.problems == [(4, "more than 3 requests in one file")]
    size = len(line("r0")) + 1
    report = validate_requests(path, max_bytes=size * 2 + 1)
    assert [n for n, _ in report.problems] == [3]
    assert "byte limit" in report.problems[0][1]
    assert validate_requests(path, max_requests=None, max_bytes=None).ok


def test_validation_at_the_real_request_limit(tmp_path: Path) -> None:
    path = tmp_path / "big.jsonl"
    tasks = ({"custom_id": f"t{i}", "model": "m", "messages": MSG} for i in range(MAX_REQUESTS + 1))
    assert write_requests(path, tasks) == MAX_REQUESTS + 1
    report = validate_requests(path)
    assert report.count == MAX_REQUESTS + 1
    assert report.problems == [(MAX_REQUESTS + 1, "more than 50,000 requests in one file")]


def test_validation_of_missing_and_empty_files(tmp_path: Path) -> None:
    report = validate_requests(tmp_path / "nope.jsonl")
    assert not report.ok and report.problems[0][0] == 0 and "cannot read" in report.problems[0][1]
    (tmp_path / "empty.jsonl").write_text("")
    assert validate_requests(tmp_path / "empty.jsonl").problems == [(0, "the file has no requests")]


def test_read_results_is_tolerant_and_typed(tmp_path: Path) -> None:
    ok = {
        "id": "r1",
        "custom_id": "a",
        "response": {
            "status_code": 200,
            "request_id": "q1",
            "body": {
                "model": "m",
                "choices": [{"message": {"content": "Hello"}}],
                "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5},
            },
        },
        "error": None,
    }
    failed = {
        "id": "r2",
        "custom_id": "b",
        "response": {
            "status_code": 400,
            "request_id": "q2",
            "body": {"error": {"code": "invalid_type", "message": "bad"}},
        },
        "error": None,
    }
    expired = {
        "id": "r3",
        "custom_id": "c",
        "response": None,
        "error": {"code": "batch_expired", "message": "too late"},
    }
    path = tmp_path / "out.jsonl"
    path.write_text(
        "\n".join(
            [json.dumps(ok), "", "{broken", json.dumps(failed), '{"x": 1}', json.dumps(expired)]
        )
        + "\n"
    )
    problems: list[tuple[int, str]] = []
    results = {r.custom_id: r for r in read_results(path, problems=problems)}
    assert [n for n, _ in problems] == [2, 3, 5]
    assert set(results) == {"a", "b", "c"}
    a, b, c = results["a"], results["b"], results["c"]
    assert a.ok and a.content == "Hello" and a.usage is not None and a.usage.total_tokens == 5
    assert a.request_id == "q1"
    assert (
        not b.ok and b.status_code == 400 and b.error == {"code": "invalid_type", "message": "bad"}
    )
    assert not c.ok and c.status_code is None and c.error is not None
    assert c.error["code"] == "batch_expired" and c.content is None and c.usage is None


def test_results_round_trip(tmp_path: Path) -> None:
    original = [
        BatchResult("a", 200, {"choices": [{"message": {"content": "x"}}]}, None, id="1"),
        BatchResult(
            "b", None, None, {"code": "APIConnectionError", "message": "down"}, direct=True
        ),
    ]
    path = tmp_path / "r.jsonl"
    assert write_results(path, original) == 2
    assert list(read_results(path)) == original


def test_text_that_is_not_unicode_is_named_not_half_written(tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    bad = [{"role": "user", "content": "a\ud800b"}]  # a lone surrogate: no UTF-8 for it
    with pytest.raises(ValueError, match=r"request 3: '\\ud800' at column \d+ is a lone surrogate"):
        write_requests(
            path, [{"model": "m", "messages": MSG}] * 2 + [{"model": "m", "messages": bad}]
        )
    assert not path.exists() and list(tmp_path.iterdir()) == []
    with pytest.raises(ValueError, match="result 2: "):
        write_results(path, [BatchResult("a", 200, {}), BatchResult("b", 200, {"x": "\udfff"})])
    assert not path.exists()
