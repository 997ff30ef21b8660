"""The emulator's /v1/files and /v1/batches: the OpenAI Batch API with a visible lifecycle."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from holysheep_async.testing import MockServer

pytestmark = pytest.mark.anyio

MSG = [{"role": "user", "content": "Hi"}]


def jsonl(n: int, model: str = "m", prefix: str = "t") -> bytes:
    return "".join(
        json.dumps(
            {
                "custom_id": f"{prefix}{i}",
                "method": "POST",
                "url": "/v1/chat/completions",
                "body": {"model": model, "messages": [{"role": "user", "content": f"q{i}"}]},
            }
        )
        + "\n"
        for i in range(n)
    ).encode()


@pytest.fixture
async def http(server: MockServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(
        base_url=server.base_url, headers={"Authorization": "Bearer test-key"}
    ) as client:
        yield client


@pytest.fixture
def options(server: MockServer, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """Set emulator options for one test; they are restored afterwards."""

    class Opts(dict[str, Any]):
        def __setitem__(self, key: str, value: Any) -> None:
            monkeypatch.setitem(server.options, key, value)

    return Opts()


async def upload(http: httpx.AsyncClient, data: bytes, purpose: str = "batch") -> dict[str, Any]:
    r = await http.post("/files", files={"file": ("in.jsonl", data)}, data={"purpose": purpose})
    assert r.status_code == 200, r.text
    return dict(r.json())


async def create(http: httpx.AsyncClient, data: bytes) -> dict[str, Any]:
    file = await upload(http, data)
    r = await http.post(
        "/batches",
        json={
            "input_file_id": file["id"],
            "endpoint": "/v1/chat/completions",
            "completion_window": "24h",
        },
    )
    assert r.status_code == 200, r.text
    return dict(r.json())


async def poll(http: httpx.AsyncClient, batch_id: str) -> dict[str, Any]:
    r = await http.get(f"/batches/{batch_id}")
    assert r.status_code == 200, r.text
    return dict(r.json())


async def lines(http: httpx.AsyncClient, file_id: str | None) -> list[dict[str, Any]]:
    if file_id is None:
        return []
    r = await http.get(f"/files/{file_id}/content")
    assert r.status_code == 200
    return [json.loads(x) for x in r.text.splitlines()]


async def test_files_upload_retrieve_content_delete(http: httpx.AsyncClient) -> None:
    data = jsonl(3)
    file = await upload(http, data)
    assert file["object"] == "file" and file["purpose"] == "batch"
    assert file["bytes"] == len(data) and file["filename"] == "in.jsonl"
    assert (await http.get(f"/files/{file['id']}")).json()["id"] == file["id"]
    assert (await http.get(f"/files/{file['id']}/content")).content == data
    assert (await http.delete(f"/files/{file['id']}")).json()["deleted"] is True
    assert (await http.get(f"/files/{file['id']}")).status_code == 404
    bad = await http.post("/files", files={"file": ("x", b"")}, data={"purpose": "nope"})
    assert bad.status_code == 400


async def test_lifecycle_moves_one_step_per_poll(
    http: httpx.AsyncClient, options: dict[str, Any]
) -> None:
    options["batch_speed"] = 4
    batch = await create(http, jsonl(10))
    assert batch["status"] == "validating"
    seen = []
    while batch["status"] != "completed":
        batch = await poll(http, batch["id"])
        counts = batch["request_counts"]
        seen.append((batch["status"], counts["completed"] + counts["failed"]))
    assert seen == [
        ("in_progress", 0),
        ("in_progress", 4),
        ("in_progress", 8),
        ("finalizing", 10),
        ("completed", 10),
    ]
    assert batch["completed_at"] and "error_file_id" not in batch
    out = await lines(http, batch["output_file_id"])
    assert sorted(x["custom_id"] for x in out) == sorted(f"t{i}" for i in range(10))
    assert [x["custom_id"] for x in out] != [f"t{i}" for i in range(10)]  # shuffled
    first = out[0]
    assert set(first) == {"id", "custom_id", "response", "error"} and first["error"] is None
    assert first["response"]["status_code"] == 200 and first["response"]["request_id"]
    assert first["response"]["body"]["object"] == "chat.completion"


async def test_invalid_input_fails_the_batch(http: httpx.AsyncClient) -> None:
    data = jsonl(2) + b"{nope\n" + jsonl(1, model="other", prefix="x")
    batch = await create(http, data)
    batch = await poll(http, batch["id"])
    assert batch["status"] == "failed" and batch["failed_at"]
    errors = batch["errors"]["data"]
    assert {"line": 3, "code": "invalid_json_line"}.items() <= errors[0].items()
    assert any(e["code"] == "mismatched_model" for e in errors)


async def test_token_limit_fails_after_creation(
    http: httpx.AsyncClient, options: dict[str, Any]
) -> None:
    options["batch_token_limit"] = 10
    batch = await create(http, jsonl(5))
    assert batch["status"] == "validating"
    batch = await poll(http, batch["id"])
    assert batch["status"] == "failed"
    assert batch["errors"]["data"][0]["code"] == "token_limit_exceeded"


async def test_expired_batch_keeps_partial_results(
    http: httpx.AsyncClient, options: dict[str, Any]
) -> None:
    options["batch_speed"] = 3
    options["batch_expire_after"] = 2
    batch = await create(http, jsonl(10))
    while batch["status"] != "expired":
        batch = await poll(http, batch["id"])
    assert batch["request_counts"] == {"total": 10, "completed": 6, "failed": 4}
    out = await lines(http, batch["output_file_id"])
    err = await lines(http, batch["error_file_id"])
    assert len(out) == 6 and len(err) == 4
    assert {x["error"]["code"] for x in err} == {"batch_expired"}
    assert all(x["response"] is None for x in err)
    assert {x["custom_id"] for x in out + err} == {f"t{i}" for i in range(10)}


async def test_cancel_goes_through_cancelling(
    http: httpx.AsyncClient, options: dict[str, Any]
) -> None:
    options["batch_speed"] = 2
    batch = await create(http, jsonl(6))
    await poll(http, batch["id"])
    await poll(http, batch["id"])  # 2 answered
    r = await http.post(f"/batches/{batch['id']}/cancel")
    assert r.json()["status"] == "cancelling"
    batch = await poll(http, batch["id"])
    assert batch["status"] == "cancelled" and batch["cancelled_at"]
    err = await lines(http, batch["error_file_id"])
    assert len(await lines(http, batch["output_file_id"])) == 2
    assert len(err) == 4 and {x["error"]["code"] for x in err} == {"batch_cancelled"}
    assert (await http.post(f"/batches/{batch['id']}/cancel")).status_code == 409


async def test_per_request_failures_on_demand(
    http: httpx.AsyncClient, options: dict[str, Any]
) -> None:
    options["batch_speed"] = 100
    options["batch_fail"] = r"^t[13]$"
    batch = await create(http, jsonl(5))
    while batch["status"] != "completed":
        batch = await poll(http, batch["id"])
    assert batch["request_counts"] == {"total": 5, "completed": 3, "failed": 2}
    err = await lines(http, batch["error_file_id"])
    assert sorted(x["custom_id"] for x in err) == ["t1", "t3"]
    assert {x["response"]["status_code"] for x in err} == {500}


async def test_manual_speed_moves_only_on_advance(
    http: httpx.AsyncClient, server: MockServer, options: dict[str, Any]
) -> None:
    options["batch_speed"] = 0
    batch = await create(http, jsonl(3))
    for _ in range(3):
        assert (await poll(http, batch["id"]))["status"] == "validating"
    server.advance_batches(4)
    assert (await poll(http, batch["id"]))["status"] == "completed"


async def test_list_paginates_newest_first(http: httpx.AsyncClient) -> None:
    made = [(await create(http, jsonl(1)))["id"] for _ in range(3)]
    page = (await http.get("/batches", params={"limit": 2})).json()
    assert [b["id"] for b in page["data"]] == made[::-1][:2]
    assert page["has_more"] is True and page["last_id"] == made[1]
    page = (await http.get("/batches", params={"limit": 2, "after": made[1]})).json()
    assert page["data"][0]["id"] == made[0]
    assert (await http.get("/batches", params={"limit": 0})).status_code == 400


@pytest.mark.parametrize("switch,status", [(False, 404), (405, 405), (501, 501)])
async def test_batch_api_can_be_switched_off(
    http: httpx.AsyncClient, options: dict[str, Any], switch: object, status: int
) -> None:
    options["batch_api"] = switch
    r = await http.post("/files", files={"file": ("in.jsonl", b"x")}, data={"purpose": "batch"})
    assert r.status_code == status
    assert (await http.get("/batches")).status_code == status
    chat = await http.post("/chat/completions", json={"model": "m", "messages": MSG})
    assert chat.status_code == 200


async def test_failure_rate_is_deterministic_per_custom_id(
    http: httpx.AsyncClient, options: dict[str, Any]
) -> None:
    options["batch_speed"] = 100
    options["batch_fail_rate"] = 0.5
    failed = []
    for _ in range(2):
        batch = await create(http, jsonl(40, prefix="rate"))
        while batch["status"] != "completed":
            batch = await poll(http, batch["id"])
        failed.append(sorted(x["custom_id"] for x in await lines(http, batch.get("error_file_id"))))
    assert 5 < len(failed[0]) < 35
    assert failed[0] == failed[1]
