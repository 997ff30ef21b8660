"""The emulator's background responses: a clock, polling, resumable streams, cancel, delete.

Also the input items list (paginated), the per-key quota and batch lines for
``/v1/responses``. Checked with plain httpx and with the official SDK.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import anyio
import httpx
import pytest
from openai import AsyncOpenAI, NotFoundError
from openai.types.responses import Response

from holysheep_async.sse import SSEDecoder
from holysheep_async.testing import MockServer, _responses_store, response_answer_text

from .test_emulator_responses import (
    WEATHER,
    check_stream,
    create,
    http,
    options,
    sdk,
    stream,
    text_of,
)

__all__ = ["http", "options", "sdk"]  # fixtures

pytestmark = pytest.mark.anyio


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    fake = FakeClock()
    monkeypatch.setattr(_responses_store, "_clock", fake)
    return fake


async def get(http: httpx.AsyncClient, response_id: str) -> dict[str, Any]:
    r = await http.get(f"/responses/{response_id}")
    assert r.status_code == 200, r.text
    Response.model_validate(r.json())
    return dict(r.json())


# ---------------------------------------------------------------------------
# polling


async def test_background_answers_queued_then_moves_with_the_clock(
    http: httpx.AsyncClient,
    server: MockServer,
    options: dict[str, Any],
    clock: FakeClock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(server, "ttft", 1.0)
    monkeypatch.setattr(server, "itl", 0.5)
    options["background_queue"] = 2.0
    obj = await create(http, input="Slowly.", background=True)
    assert obj["status"] == "queued" and obj["background"] is True
    assert obj["output"] == [] and obj["usage"] is None
    for _ in range(3):  # polling alone does not move it
        assert (await get(http, obj["id"]))["status"] == "queued"
    clock.now += 2.0
    assert (await get(http, obj["id"]))["status"] == "in_progress"
    clock.now += 1.0 + 0.5 * 14  # the first token, then 14 more of 16
    assert (await get(http, obj["id"]))["status"] == "in_progress"
    clock.now += 0.5
    done = await get(http, obj["id"])
    assert done["status"] == "completed" and text_of(done) == response_answer_text("Slowly.")
    assert done["usage"]["output_tokens"] == 16


async def test_zero_latency_finishes_by_the_first_poll(http: httpx.AsyncClient) -> None:
    obj = await create(http, input="Quick.", background=True)
    assert obj["status"] == "queued"
    assert text_of(await get(http, obj["id"])) == response_answer_text("Quick.")


async def test_steps_per_poll_and_advance_responses(
    http: httpx.AsyncClient, server: MockServer, options: dict[str, Any]
) -> None:
    options["background_speed"] = 0  # only advance_responses moves it
    obj = await create(http, input="Steps.", background=True)
    for _ in range(3):
        assert (await get(http, obj["id"]))["status"] == "queued"
    server.advance_responses(1)  # response.in_progress
    assert (await get(http, obj["id"]))["status"] == "in_progress"
    server.advance_responses(2 + 16)  # item and part added, 16 deltas
    partial = await get(http, obj["id"])
    assert partial["status"] == "in_progress" and partial["output"] == []
    server.advance_responses(3)  # text done, part done, item done
    partial = await get(http, obj["id"])
    assert partial["status"] == "in_progress" and text_of(partial) == response_answer_text("Steps.")
    options["background_speed"] = 1  # each poll: one event (the last one here)
    assert (await get(http, obj["id"]))["status"] == "completed"


async def test_sdk_polls_a_background_response(sdk: AsyncOpenAI, options: dict[str, Any]) -> None:
    options["background_speed"] = 4
    response = await sdk.responses.create(model="gpt-4o", input="Poll me.", background=True)
    polls = 0
    while response.status in {"queued", "in_progress"}:
        response = await sdk.responses.retrieve(response.id)
        polls += 1
    assert response.status == "completed" and polls == 6  # 25 events: 2 at once, then 4 a poll
    assert response.output_text == response_answer_text("Poll me.")


# ---------------------------------------------------------------------------
# resumable streams


async def test_dropped_background_stream_resumes_without_gaps_or_repeats(
    http: httpx.AsyncClient, server: MockServer
) -> None:
    before = len(server.requests)
    first = await stream(http, fault="drop; after=9", background=True, input="Resume me.")
    assert isinstance(first.error, httpx.RemoteProtocolError)
    assert first.seqs == list(range(9))
    response_id = first.events[0]["response"]["id"]
    assert first.events[0]["response"]["status"] == "queued"
    assert [e["type"] for e in first.events[:3]] == [
        "response.created",
        "response.queued",
        "response.in_progress",
    ]
    rest = await stream(http, "GET", f"/responses/{response_id}?stream=true&starting_after=8")
    check_stream(rest)
    assert rest.seqs[0] == 9 and rest.events[-1]["type"] == "response.completed"
    whole = await stream(http, "GET", f"/responses/{response_id}?stream=true")
    check_stream(whole)
    assert first.events + rest.events == whole.events  # nothing lost, nothing twice
    text = "".join(e["delta"] for e in whole.events if e["type"] == "response.output_text.delta")
    assert text == response_answer_text("Resume me.")
    # One create, billed once: the resumes are GETs.
    posts = [r for r in server.requests[before:] if r.method == "POST"]
    assert len(posts) == 1


async def test_sdk_resumes_by_starting_after(sdk: AsyncOpenAI) -> None:
    created = await sdk.responses.create(model="gpt-4o", input="SDK resume.", background=True)
    raw = await sdk.responses.retrieve(created.id, stream=True, starting_after=5)
    seqs = [event.sequence_number async for event in raw]
    assert seqs[0] == 6 and seqs == list(range(6, 6 + len(seqs)))
    async with sdk.responses.stream(response_id=created.id, starting_after=5) as events:
        resumed = [e async for e in events]
        final = await events.get_final_response()
    assert [e.sequence_number for e in resumed] == seqs
    assert final.output_text == response_answer_text("SDK resume.")


async def test_sdk_streams_a_background_response(sdk: AsyncOpenAI) -> None:
    async with sdk.responses.stream(model="gpt-4o", input="Bg stream.", background=True) as events:
        kinds = [e.type async for e in events]
        final = await events.get_final_response()
    assert kinds[:3] == ["response.created", "response.queued", "response.in_progress"]
    assert final.output_text == response_answer_text("Bg stream.") and final.background is True
    again = await sdk.responses.retrieve(final.id)
    assert again.status == "completed" and again.output_text == final.output_text


async def test_background_stream_follows_the_response_as_it_moves(
    http: httpx.AsyncClient, server: MockServer, options: dict[str, Any]
) -> None:
    options["background_speed"] = 0
    obj = await create(http, input="Follow me.", background=True)
    seen: list[dict[str, Any]] = []
    decoder = SSEDecoder()

    async def read_until(stream: AsyncIterator[bytes], n: int) -> None:
        while len(seen) < n:
            chunk = await stream.__anext__()
            seen.extend(json.loads(e.data) for e in decoder.feed(chunk))

    with anyio.fail_after(20):
        async with http.stream("GET", f"/responses/{obj['id']}?stream=true") as r:
            raw = r.aiter_raw()
            await read_until(raw, 2)  # created and queued are out at once
            assert [e["sequence_number"] for e in seen] == [0, 1]
            server.advance_responses(3)
            await read_until(raw, 5)
            assert seen[-1]["type"] == "response.content_part.added"
            server.advance_responses(100)
            async for chunk in raw:
                seen.extend(json.loads(e.data) for e in decoder.feed(chunk))
    assert [e["sequence_number"] for e in seen] == list(range(len(seen)))
    assert seen[-1]["type"] == "response.completed"


async def test_only_background_responses_stream_again(http: httpx.AsyncClient) -> None:
    obj = await create(http)
    r = await http.get(f"/responses/{obj['id']}", params={"stream": "true"})
    assert r.status_code == 400 and "background" in r.json()["error"]["message"]
    bg = await create(http, background=True)
    r = await http.get(f"/responses/{bg['id']}", params={"stream": "true", "starting_after": "x"})
    assert r.status_code == 400 and r.json()["error"]["param"] == "starting_after"


# ---------------------------------------------------------------------------
# cancel and delete


async def test_cancel_stops_a_background_response(
    http: httpx.AsyncClient, server: MockServer, options: dict[str, Any]
) -> None:
    options["background_speed"] = 0
    obj = await create(http, input="Stop me.", tools=[WEATHER], background=True)
    server.advance_responses(6)  # in progress, call added, 4 argument deltas
    r = await http.post(f"/responses/{obj['id']}/cancel")
    assert r.status_code == 200
    cancelled = r.json()
    Response.model_validate(cancelled)
    assert cancelled["status"] == "cancelled" and cancelled["output"] == []
    again = (await http.post(f"/responses/{obj['id']}/cancel")).json()
    assert again == cancelled  # idempotent
    server.advance_responses(100)
    assert (await get(http, obj["id"]))["status"] == "cancelled"
    # Its stream ends with what was out, without a terminal event.
    got = await stream(http, "GET", f"/responses/{obj['id']}?stream=true")
    assert got.error is None and got.seqs == list(range(8))


async def test_cancel_rules(http: httpx.AsyncClient, sdk: AsyncOpenAI) -> None:
    plain = await create(http)
    r = await http.post(f"/responses/{plain['id']}/cancel")
    assert r.status_code == 400 and "background" in r.json()["error"]["message"]
    done = await sdk.responses.create(model="gpt-4o", input="Done.", background=True)
    done = await sdk.responses.retrieve(done.id)
    assert done.status == "completed"
    after = await sdk.responses.cancel(done.id)  # a finished one is returned as it is
    assert after.status == "completed" and after.output_text == done.output_text
    with pytest.raises(NotFoundError):
        await sdk.responses.cancel("resp_missing")


async def test_delete(http: httpx.AsyncClient, sdk: AsyncOpenAI) -> None:
    obj = await create(http)
    r = await http.delete(f"/responses/{obj['id']}")
    assert r.status_code == 200
    assert r.json() == {"id": obj["id"], "object": "response", "deleted": True}
    assert (await http.get(f"/responses/{obj['id']}")).status_code == 404
    assert (await http.delete(f"/responses/{obj['id']}")).status_code == 404
    r = await http.post(
        "/responses", json={"model": "m", "input": "x", "previous_response_id": obj["id"]}
    )
    assert r.json()["error"]["code"] == "previous_response_not_found"
    other = await sdk.responses.create(model="gpt-4o", input="Bye.")
    await sdk.responses.delete(other.id)
    with pytest.raises(NotFoundError):
        await sdk.responses.retrieve(other.id)


# ---------------------------------------------------------------------------
# input items


async def conversation(http: httpx.AsyncClient) -> tuple[dict[str, Any], list[str]]:
    """Three turns and a tool call: eight input items for the last response."""
    first = await create(http, input="One.", tools=[WEATHER], tool_choice="none")
    call = await create(http, input="Weather?", previous_response_id=first["id"], tools=[WEATHER])
    output = {
        "type": "function_call_output",
        "call_id": call["output"][0]["call_id"],
        "output": "sunny",
    }
    answer = await create(http, input=[output], previous_response_id=call["id"], tools=[WEATHER])
    last = await create(
        http,
        input=[{"role": "user", "content": "Thanks."}, {"role": "user", "content": "Bye."}],
        previous_response_id=answer["id"],
    )
    kinds = [
        "message",  # One.
        "message",  # its answer
        "message",  # Weather?
        "function_call",
        "function_call_output",
        "message",  # the answer
        "message",  # Thanks.
        "message",  # Bye.
    ]
    return last, kinds


async def test_input_items_pages(http: httpx.AsyncClient) -> None:
    last, kinds = await conversation(http)
    url = f"/responses/{last['id']}/input_items"
    everything = (await http.get(url, params={"order": "asc", "limit": 100})).json()
    assert [i["type"] for i in everything["data"]] == kinds
    assert everything["has_more"] is False
    ids = [i["id"] for i in everything["data"]]
    assert len(set(ids)) == len(ids)
    assert everything["data"][0]["content"] == [{"type": "input_text", "text": "One."}]
    for order, expected in (("asc", ids), ("desc", ids[::-1])):
        pages: list[str] = []
        after = None
        while True:
            params: dict[str, Any] = {"order": order, "limit": 3}
            if after:
                params["after"] = after
            page = (await http.get(url, params=params)).json()
            got = [i["id"] for i in page["data"]]
            assert page["first_id"] == got[0] and page["last_id"] == got[-1]
            pages += got
            after = page["last_id"]
            if not page["has_more"]:
                break
        assert pages == expected
    default = (await http.get(url)).json()  # newest first, 20 at most
    assert [i["id"] for i in default["data"]] == ids[::-1]
    for bad in ({"limit": 0}, {"limit": 101}, {"order": "up"}, {"after": "nope"}):
        assert (await http.get(url, params=bad)).status_code == 400


async def test_sdk_lists_input_items_page_by_page(
    http: httpx.AsyncClient, sdk: AsyncOpenAI
) -> None:
    last, kinds = await conversation(http)
    items = [i async for i in sdk.responses.input_items.list(last["id"], limit=3, order="asc")]
    assert [i.type for i in items] == kinds


# ---------------------------------------------------------------------------
# quota and batches


async def test_the_quota_charges_a_response_its_usage() -> None:
    headers = {"authorization": "Bearer k"}
    body = {"model": "o3", "input": "Count.", "reasoning": {"summary": "auto"}}
    async with (
        MockServer(api_keys=["k"], tpm_quota=10_000, quota_burst=60) as server,
        httpx.AsyncClient(base_url=server.base_url, headers=headers) as client,
    ):
        r = await client.post("/responses", json=body)
        usage = r.json()["usage"]
        assert usage["total_tokens"] > 16
        assert int(r.headers["x-ratelimit-remaining-tokens"]) == 10_000 - usage["total_tokens"]
    async with (
        MockServer(api_keys=["k"], rpm_quota=1) as strict,
        httpx.AsyncClient(base_url=strict.base_url, headers=headers) as client,
    ):
        assert (await client.post("/responses", json=body)).status_code == 200
        r = await client.post("/responses", json=body)
        assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1


async def test_batch_lines_for_responses(http: httpx.AsyncClient, server: MockServer) -> None:
    lines = "".join(
        json.dumps(
            {
                "custom_id": f"r{i}",
                "method": "POST",
                "url": "/v1/responses",
                "body": {"model": "gpt-4o", "input": f"q{i}", "max_output_tokens": 16},
            }
        )
        + "\n"
        for i in range(3)
    )
    up = await http.post("/files", files={"file": ("in.jsonl", lines)}, data={"purpose": "batch"})
    batch = (
        await http.post(
            "/batches",
            json={
                "input_file_id": up.json()["id"],
                "endpoint": "/v1/responses",
                "completion_window": "24h",
            },
        )
    ).json()
    server.advance_batches(3)
    batch = (await http.get(f"/batches/{batch['id']}")).json()
    assert batch["status"] == "completed", batch
    out = (await http.get(f"/files/{batch['output_file_id']}/content")).text.splitlines()
    answers = {json.loads(x)["custom_id"]: json.loads(x)["response"] for x in out}
    assert set(answers) == {"r0", "r1", "r2"}
    for cid, answer in answers.items():
        assert answer["status_code"] == 200
        Response.model_validate(answer["body"])
        assert text_of(answer["body"]) == response_answer_text(f"q{cid[1:]}")
        assert answer["body"]["store"] is False
