"""/v1/embeddings requests in batches: validation, batches.run, typed results, direct fallback."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from holysheep_async import AsyncClient, Client
from holysheep_async.jsonl import validate_requests, write_requests
from holysheep_async.pricing import cost
from holysheep_async.testing import MockServer
from holysheep_async.testing._embeddings import embedding_vector

EMBEDDINGS = "/v1/embeddings"
MODEL = "text-embedding-3-small"


def texts(n: int) -> list[dict[str, Any]]:
    return [{"custom_id": f"e{i}", "model": MODEL, "input": f"text number {i}"} for i in range(n)]


def test_validation_checks_the_input_of_embedding_lines(tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    assert write_requests(path, texts(2), endpoint=EMBEDDINGS) == 2
    assert validate_requests(path, endpoint=EMBEDDINGS).ok
    line = {"method": "POST", "url": EMBEDDINGS}
    bad = [
        {**line, "custom_id": "a", "body": {"model": MODEL}},
        {**line, "custom_id": "b", "body": {"model": MODEL, "input": []}},
        {**line, "custom_id": "c", "body": {"model": MODEL, "input": ["x"]}},
    ]
    path.write_text("".join(json.dumps(b) + "\n" for b in bad))
    report = validate_requests(path, endpoint=EMBEDDINGS)
    assert [n for n, _ in report.problems] == [1, 2]
    assert all("body.input" in message for _, message in report.problems)
    # A chat file is still checked as chat: no input is asked of it.
    path.write_text(json.dumps({**bad[2], "url": "/v1/chat/completions"}) + "\n")
    report = validate_requests(path)
    assert [m for _, m in report.problems] == ["body.messages must be a list, got null"]


@pytest.mark.anyio
async def test_run_embeddings_through_the_batch_api(
    client: AsyncClient, server: MockServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(server.options, "batch_speed", 100)
    report = await client.batches.run(texts(3), endpoint=EMBEDDINGS)
    assert report.mode == "batch" and report.succeeded == ["e0", "e1", "e2"]
    for i in range(3):
        result = report.results[f"e{i}"]
        assert not result.direct and result.content is None
        assert result.embeddings == [embedding_vector(f"text number {i}")]
    assert report.total_tokens > 0
    expected = sum(
        cost(MODEL, r.usage.prompt_tokens, 0, batch=True)
        for r in report.results.values()
        if r.usage is not None
    )
    assert report.cost_usd == pytest.approx(expected)


@pytest.mark.anyio
async def test_without_a_batch_api_embeddings_are_called_directly(
    client: AsyncClient, server: MockServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(server.options, "batch_api", False)
    start = len(server.requests)
    report = await client.batches.run(texts(2), endpoint=EMBEDDINGS)
    assert report.mode == "direct" and report.succeeded == ["e0", "e1"]
    assert all(r.direct for r in report.results.values())
    assert report.results["e1"].embeddings == [embedding_vector("text number 1")]
    sent = [r for r in server.requests[start:] if r.path == EMBEDDINGS]
    bodies = sorted((r.json() for r in sent), key=lambda b: b["input"])  # sent concurrently
    assert bodies == [{"model": MODEL, "input": f"text number {i}"} for i in range(2)]


def test_the_sync_client_runs_an_embeddings_batch(
    server: MockServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(server.options, "batch_speed", 100)
    with Client(api_key="test-key", base_url=server.base_url) as client:
        report = client.batches.run(texts(2), endpoint=EMBEDDINGS)
    assert report.succeeded == ["e0", "e1"]
    assert report.results["e0"].embeddings == [embedding_vector("text number 0")]
