"""client.batches' per-call options: extra_headers / extra_query / extra_body / timeout.

A method that makes several requests (submit, wait, download, results, list,
run) sends the headers and query with every one of them and merges
``extra_body`` into the batch create body only; none of the four is ever in a
body under its own name. ``wait`` and ``run`` keep ``timeout`` for the overall
wait and take ``request_timeout`` for each request.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx

from holysheep_async import APITimeoutError, AsyncClient, Batch, Client
from holysheep_async.testing import MockServer

pytestmark = pytest.mark.anyio

NAMES = {"extra_headers", "extra_query", "extra_body", "timeout", "request_timeout"}
HEADERS = {"X-Trace": "t-1"}
QUERY = {"tenant": "acme"}
EXTRA = {"relay_priority": "low"}


def tasks(n: int, prefix: str = "o") -> list[dict[str, Any]]:
    return [
        {
            "custom_id": f"{prefix}{i}",
            "model": "gpt-4o-mini",
            "messages": [{"role": "user", "content": f"question {i}"}],
            "max_tokens": 4,
        }
        for i in range(n)
    ]


@pytest.fixture
def fast(server: MockServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """The session emulator finishes batches at once, for this test only."""
    monkeypatch.setitem(server.options, "batch_speed", 100)


class Log:
    """The emulator's requests from a point on."""

    def __init__(self, server: MockServer) -> None:
        self.server = server
        self.start = len(server.requests)

    def all(self) -> list[Any]:
        return list(self.server.requests[self.start :])

    def calls(self, method: str, path: str) -> list[Any]:
        return [r for r in self.all() if r.method == method and r.path == path]


def assert_options_went_where_they_belong(log: Log) -> None:
    """Every request carried the header and the query; no body holds an option's name,
    and the extra field is in batch create bodies only."""
    requests = log.all()
    assert requests
    for request in requests:
        assert request.headers["x-trace"] == "t-1", request
        assert request.query.get("tenant") == "acme", request
        for name in NAMES:
            assert name.encode() not in request.body, request
        is_create = request.method == "POST" and request.path == "/v1/batches"
        assert (b"relay_priority" in request.body) == is_create, request


async def test_create_and_upload(client: AsyncClient, server: MockServer, tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    path.write_text(
        '{"custom_id": "a", "method": "POST", "url": "/v1/chat/completions",'
        ' "body": {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}}\n'
    )
    log = Log(server)
    file = await client.batches.upload(path, extra_headers=HEADERS, extra_query=QUERY, timeout=5)
    batch = await client.batches.create(
        file.id,
        metadata={"job": "j"},
        extra_headers=HEADERS,
        extra_query=QUERY,
        extra_body=EXTRA,
        timeout=5,
    )
    assert batch.input_file_id == file.id
    assert_options_went_where_they_belong(log)
    (create,) = log.calls("POST", "/v1/batches")
    body = create.json()
    assert body["relay_priority"] == "low" and body["input_file_id"] == file.id
    assert body["metadata"]["job"] == "j"


async def test_submit_sends_them_with_the_upload_and_the_create(
    client: AsyncClient, server: MockServer
) -> None:
    log = Log(server)
    await client.batches.submit(
        tasks(2), extra_headers=HEADERS, extra_query=QUERY, extra_body=EXTRA, timeout=5
    )
    assert_options_went_where_they_belong(log)
    assert len(log.calls("POST", "/v1/files")) == 1
    assert log.calls("POST", "/v1/batches")[0].json()["relay_priority"] == "low"


async def test_retrieve_cancel_wait_download_results_list(
    client: AsyncClient, server: MockServer, fast: None, tmp_path: Path
) -> None:
    opts: dict[str, Any] = {"extra_headers": HEADERS, "extra_query": QUERY}
    submitted = await client.batches.submit(tasks(3))
    other = await client.batches.submit(tasks(1, prefix="c"))
    log = Log(server)
    assert (await client.batches.retrieve(submitted.id, **opts, timeout=5)).id == submitted.id
    done = await client.batches.wait(submitted.id, **opts, request_timeout=5, timeout=60)
    assert done.status == "completed"
    await client.batches.download(submitted.id, tmp_path / "out.jsonl", **opts, timeout=5)
    results = [r async for r in client.batches.results(submitted.id, **opts, timeout=5)]
    assert sorted(r.custom_id for r in results) == ["o0", "o1", "o2"]
    assert (await client.batches.cancel(other.id, **opts, timeout=5)).id == other.id
    listed = []
    async for b in client.batches.list(limit=1, **opts, timeout=5):
        listed.append(b)
        if len(listed) == 3:
            break
    assert len(listed) == 3
    assert_options_went_where_they_belong(log)
    assert not any(r.body for r in log.all())  # GETs and the cancel send no body
    # Pages of one: extra_query goes with limit and after in every page's URL.
    pages = log.calls("GET", "/v1/batches")
    assert len(pages) == 3 and all(p.query["limit"] == "1" for p in pages)
    assert "after" in pages[1].query and "after" in pages[2].query
    paths = {(r.method, r.path) for r in log.all()}
    assert ("GET", f"/v1/batches/{submitted.id}") in paths
    assert ("GET", f"/v1/files/{done.output_file_id}/content") in paths
    assert ("POST", f"/v1/batches/{other.id}/cancel") in paths


async def test_run_sends_them_with_every_request(
    client: AsyncClient, server: MockServer, fast: None
) -> None:
    log = Log(server)
    report = await client.batches.run(
        tasks(3),
        extra_headers=HEADERS,
        extra_query=QUERY,
        extra_body=EXTRA,
        request_timeout=5,
        timeout=60,
    )
    assert report.mode == "batch" and sorted(report.succeeded) == ["o0", "o1", "o2"]
    assert_options_went_where_they_belong(log)
    kinds = {(r.method, r.path.rsplit("/", 1)[0]) for r in log.all()}
    assert {("POST", "/v1"), ("GET", "/v1/batches")} <= kinds  # upload, create, polls
    assert any(r.path.endswith("/content") for r in log.all())


async def test_run_direct_fallback_gets_headers_and_query_not_extra_body(
    client: AsyncClient, server: MockServer, fast: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(server.options, "batch_api", False)
    log = Log(server)
    report = await client.batches.run(
        tasks(2), extra_headers=HEADERS, extra_query=QUERY, extra_body=EXTRA, request_timeout=5
    )
    assert report.mode == "direct" and sorted(report.succeeded) == ["o0", "o1"]
    calls = log.calls("POST", "/v1/chat/completions")
    assert len(calls) == 2
    for call in calls:
        assert call.headers["x-trace"] == "t-1" and call.query == QUERY
        body = call.json()
        assert "relay_priority" not in body and not NAMES & set(body)
        assert body["max_tokens"] == 4  # the line's own body, as given
    assert_options_went_where_they_belong(log)


async def test_extra_body_where_nothing_is_sent_is_a_type_error(
    client: AsyncClient, server: MockServer
) -> None:
    log = Log(server)
    with pytest.raises(TypeError, match="extra_body has nowhere to go"):
        await client.batches.retrieve("batch_x", extra_body=EXTRA)
    with pytest.raises(TypeError, match="extra_body has nowhere to go"):
        await client.batches.wait("batch_x", extra_body=EXTRA)
    with pytest.raises(TypeError, match="extra_body has nowhere to go"):
        await client.batches.cancel("batch_x", extra_body=EXTRA)
    with pytest.raises(TypeError, match="extra_body has nowhere to go"):
        async for _ in client.batches.list(extra_body=EXTRA):
            pass
    assert not log.all()


async def test_bad_options_and_unknown_keywords_are_type_errors(
    client: AsyncClient, server: MockServer
) -> None:
    log = Log(server)
    bad: dict[str, Any] = {"extra_headers": {"X-N": 1}}
    with pytest.raises(TypeError, match="extra_headers must map str to str"):
        await client.batches.submit(tasks(1), **bad)
    with pytest.raises(TypeError, match="extra_body must be a dict"):
        await client.batches.run(tasks(1), extra_body=[1])  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="request_timeout must be a number"):
        await client.batches.wait("batch_x", request_timeout="5")  # type: ignore[arg-type]
    typo: dict[str, Any] = {"extra_header": HEADERS}
    with pytest.raises(TypeError, match="extra_header"):
        await client.batches.retrieve("batch_x", **typo)
    with pytest.raises(TypeError, match="request_timout"):
        await client.batches.run(tasks(1), request_timout=5)  # type: ignore[call-arg]
    assert not log.all()


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A server that accepts connections and never answers."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    yield sock.getsockname()[1]
    sock.close()


async def test_per_request_timeout_is_honoured(silent_port: int) -> None:
    # The client's own timeout is long; only the call's 0.2 s can end these.
    async with AsyncClient(
        api_key="k", base_url=f"http://127.0.0.1:{silent_port}/v1", timeout=600, max_retries=0
    ) as client:
        with pytest.raises(APITimeoutError):
            await client.batches.retrieve("batch_x", timeout=0.2)
        with pytest.raises(APITimeoutError):
            await client.batches.wait("batch_x", request_timeout=0.2, timeout=600)
        with pytest.raises(APITimeoutError):
            await client.batches.run(tasks(1), request_timeout=0.2, timeout=600)


FILE = {"id": "file-1", "object": "file", "bytes": 1, "created_at": 1, "filename": "f"}
BATCH = {"id": "batch_1", "object": "batch", "input_file_id": "file-1", "status": "validating"}


async def test_timeout_reaches_every_request_of_submit() -> None:
    seen: list[tuple[str, dict[str, Any]]] = []

    def answer(body: dict[str, Any]) -> Any:
        def respond(request: httpx.Request) -> httpx.Response:
            seen.append((request.url.path, request.extensions["timeout"]))
            return httpx.Response(200, json={**body, "purpose": "batch"})

        return respond

    with respx.mock(base_url="https://relay.test/v1", using="httpx") as router:
        router.post("/files").mock(side_effect=answer(FILE))
        router.post("/batches").mock(side_effect=answer(BATCH))
        async with AsyncClient(api_key="k", base_url="https://relay.test/v1") as client:
            batch = await client.batches.submit(tasks(1), timeout=7)
    assert isinstance(batch, Batch)
    assert seen == [
        ("/v1/files", httpx.Timeout(7.0).as_dict()),
        ("/v1/batches", httpx.Timeout(7.0).as_dict()),
    ]


def test_sync_client_takes_them(server: MockServer, fast: None) -> None:
    with Client(api_key="test-key", base_url=server.base_url) as client:
        batch = client.batches.submit(tasks(1), extra_body=EXTRA)
        log = Log(server)
        done = client.batches.wait(batch, extra_headers=HEADERS, extra_query=QUERY, timeout=60)
        assert done.status == "completed"
        assert [b.id for b in client.batches.list(limit=1, extra_headers=HEADERS)][:1]
        typo: dict[str, Any] = {"extra_heders": HEADERS}
        with pytest.raises(TypeError, match="extra_heders"):
            client.batches.retrieve(batch.id, **typo)
    polls = log.calls("GET", f"/v1/batches/{batch.id}")
    assert polls and all(p.headers["x-trace"] == "t-1" and p.query == QUERY for p in polls)
    assert all(p.headers["x-trace"] == "t-1" for p in log.calls("GET", "/v1/batches"))
