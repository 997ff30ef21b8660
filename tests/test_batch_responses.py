"""/v1/responses requests in batches: validation, typed results, usage and cost, and the
direct-call fallback through ``client.responses`` (itself falling back to chat)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx

from holysheep_async import AsyncClient
from holysheep_async.jsonl import BatchResult, validate_requests, write_requests
from holysheep_async.pricing import cost

from .conftest import FakeSleep
from .responses_samples import chat_completion, completed, message, usage

RESPONSES = "/v1/responses"
BASE = "https://relay.test/v1"
MODEL = "gpt-4o"


def prompts(n: int) -> list[dict[str, Any]]:
    return [{"custom_id": f"r{i}", "model": MODEL, "input": f"question {i}"} for i in range(n)]


def test_validation_checks_the_input_of_responses_lines(tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    assert write_requests(path, prompts(2), endpoint=RESPONSES) == 2
    assert validate_requests(path, endpoint=RESPONSES).ok
    line = {"method": "POST", "url": RESPONSES}
    bad = [
        {**line, "custom_id": "a", "body": {"model": MODEL}},
        {**line, "custom_id": "b", "body": {"model": MODEL, "input": []}},
        {**line, "custom_id": "c", "body": {"model": MODEL, "input": "x", "background": True}},
        {
            **line,
            "custom_id": "d",
            "body": {"model": MODEL, "input": [{"role": "user", "content": "x"}]},
        },
    ]
    path.write_text("".join(json.dumps(b) + "\n" for b in bad))
    report = validate_requests(path, endpoint=RESPONSES)
    assert [n for n, _ in report.problems] == [1, 2, 3]
    assert "body.input" in report.problems[0][1] and "body.input" in report.problems[1][1]
    assert "background" in report.problems[2][1]


def test_a_result_reads_its_output_text_and_usage() -> None:
    body = completed([message("Paris.")], usage=usage(20, 5, reasoning=2))
    result = BatchResult("r0", 200, body)
    assert result.ok and result.content == "Paris."
    assert result.usage is not None
    assert (result.usage.prompt_tokens, result.usage.completion_tokens) == (20, 5)
    assert result.usage.total_tokens == 25
    assert result.usage.completion_tokens_details is not None
    assert result.usage.completion_tokens_details.reasoning_tokens == 2


@pytest.fixture
def relay() -> Iterator[respx.MockRouter]:
    with respx.mock(base_url=BASE, using="httpx", assert_all_called=False) as router:
        router.post("/files").mock(
            return_value=httpx.Response(404, json={"error": {"message": "no"}})
        )
        yield router


@pytest.fixture
async def relay_client(
    relay: respx.MockRouter, fake_sleep: FakeSleep
) -> AsyncIterator[AsyncClient]:
    async with AsyncClient(api_key="sk-test-key", base_url=BASE) as c:
        c._requester.sleep = fake_sleep
        yield c


def echo(request: httpx.Request) -> httpx.Response:
    body = json.loads(request.content)
    return httpx.Response(
        200, json=completed([message(f"answer to {body['input']}")], usage=usage(10, 4))
    )


@pytest.mark.anyio
async def test_without_a_batch_api_responses_are_created_directly(
    relay_client: AsyncClient, relay: respx.MockRouter, tmp_path: Path
) -> None:
    route = relay.post("/responses").mock(side_effect=echo)
    report = await relay_client.batches.run(
        prompts(3), endpoint=RESPONSES, journal=tmp_path / "run.journal"
    )
    assert report.mode == "direct" and sorted(report.succeeded) == ["r0", "r1", "r2"]
    assert report.results["r1"].content == "answer to question 1"
    assert all(r.direct for r in report.results.values())
    bodies = sorted((json.loads(c.request.content) for c in route.calls), key=lambda b: b["input"])
    assert bodies == [{"model": MODEL, "input": f"question {i}"} for i in range(3)]
    assert report.total_tokens == 3 * 14
    assert report.cost_usd == pytest.approx(3 * cost(MODEL, 10, 4))  # direct: full price
    assert relay_client.usage.requests == 3


@pytest.mark.anyio
async def test_without_a_batch_api_nor_responses_the_lines_go_as_chat(
    relay_client: AsyncClient, relay: respx.MockRouter, tmp_path: Path
) -> None:
    relay.post("/responses").mock(
        return_value=httpx.Response(404, json={"error": {"message": "no"}})
    )
    chat = relay.post("/chat/completions").mock(
        return_value=httpx.Response(200, json=chat_completion("via chat"))
    )
    report = await relay_client.batches.run(
        prompts(2), endpoint=RESPONSES, journal=tmp_path / "run.journal"
    )
    assert sorted(report.succeeded) == ["r0", "r1"]
    assert report.results["r0"].content == "via chat"
    assert report.results["r0"].body["object"] == "response"
    assert chat.call_count == 2
    assert relay_client.responses.fallback_reason == "POST /responses answered 404"
