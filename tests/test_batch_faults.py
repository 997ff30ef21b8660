"""Batch downloads that break mid-way, and relays whose Files API answers a persistent 5xx."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from holysheep_async import APIConnectionError, AsyncClient, Batch, InternalServerError
from holysheep_async.testing import Fault, MockServer

from .conftest import FakeSleep

pytestmark = pytest.mark.anyio

RESULT = {
    "id": "r1",
    "custom_id": "t0",
    "response": {"status_code": 200, "request_id": "q", "body": {"choices": []}},
    "error": None,
}
LINE = json.dumps(RESULT).encode() + b"\n"

#: How the file content answer breaks: a Content-Length longer than the body, or a
#: chunked body cut before its last chunk. Both then close the connection.
BROKEN = {
    "short": (
        b"HTTP/1.1 200 OK\r\ncontent-type: application/octet-stream\r\n"
        b"content-length: %d\r\n\r\n%b" % (len(LINE) * 50, LINE * 3)
    ),
    "chunked": (
        b"HTTP/1.1 200 OK\r\ncontent-type: application/octet-stream\r\n"
        b"transfer-encoding: chunked\r\n\r\n%x\r\n%b\r\n" % (len(LINE) * 3, LINE * 3)
    ),
}


class BrokenFileServer:
    """Answers every request on 127.0.0.1 with ``answer``, then closes the connection."""

    def __init__(self, answer: bytes) -> None:
        self.answer = answer
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen()
        self.port = self.sock.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                data = b""
                while b"\r\n\r\n" not in data:
                    chunk = conn.recv(65536)
                    if not chunk:
                        break
                    data += chunk
                conn.sendall(self.answer)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)  # wakes the accept() (Linux)
        self.sock.close()
        self.thread.join(timeout=5)


@pytest.fixture(params=sorted(BROKEN))
def broken(request: pytest.FixtureRequest) -> Iterator[BrokenFileServer]:
    srv = BrokenFileServer(BROKEN[request.param])
    yield srv
    srv.close()


BATCH = Batch(id="batch_1", status="completed", output_file_id="file-out")


async def test_a_download_cut_mid_way_is_a_typed_error_and_leaves_no_file(
    broken: BrokenFileServer, tmp_path: Path, fake_sleep: FakeSleep
) -> None:
    async with AsyncClient(api_key="k", base_url=f"http://127.0.0.1:{broken.port}/v1") as client:
        client._requester.sleep = fake_sleep
        target = tmp_path / "out.jsonl"
        with pytest.raises(APIConnectionError, match="file-out"):
            await client.batches.download(BATCH, target)
        assert os.listdir(tmp_path) == []  # neither the file nor a temporary one


async def test_results_cut_mid_way_are_a_typed_error(
    broken: BrokenFileServer, fake_sleep: FakeSleep
) -> None:
    async with AsyncClient(api_key="k", base_url=f"http://127.0.0.1:{broken.port}/v1") as client:
        client._requester.sleep = fake_sleep
        seen: list[str] = []
        with pytest.raises(APIConnectionError, match="file-out"):
            async for result in client.batches.results(BATCH):
                seen.append(result.custom_id)
        assert seen == ["t0"] * 3  # the whole lines before the cut came through


# -- a relay whose Files API is not set up ------------------------------------------

FILES_NOT_CONFIGURED = json.dumps(
    {
        "error": {
            "message": "files API is not configured for this deployment",
            "type": "internal_server_error",
            "param": None,
            "code": "500",
        }
    }
)


def tasks(n: int, prefix: str = "t") -> list[dict[str, Any]]:
    return [
        {
            "custom_id": f"{prefix}{i}",
            "model": "gpt-4o-mini",
            "messages": [{"role": "user", "content": f"question {prefix}{i}"}],
            "max_tokens": 4,
        }
        for i in range(n)
    ]


async def test_an_upload_that_keeps_failing_with_5xx_falls_back_to_direct_calls(
    client: AsyncClient, server: MockServer
) -> None:
    start = len(server.requests)
    server.inject(
        Fault("status", status=500, body=FILES_NOT_CONFIGURED, path="/v1/files", times=50)
    )
    report = await client.batches.run(tasks(3))
    sent = [(r.method, r.path) for r in server.requests[start:]]
    assert report.mode == "direct" and report.succeeded == ["t0", "t1", "t2"]
    assert ("POST", "/v1/batches") not in sent  # no batch was ever made
    assert sent.count(("POST", "/v1/chat/completions")) == 3  # each request once
    assert report.fallback_reason is not None
    assert "500" in report.fallback_reason and "not configured" in report.fallback_reason


async def test_a_5xx_upload_after_a_batch_exists_is_raised_not_worked_around(
    client: AsyncClient, server: MockServer, options: Any
) -> None:
    """Once a batch of the run exists, direct calls could answer its requests twice."""
    options(batch_speed=100)
    start = len(server.requests)

    def second_upload_fails(progress: Any) -> None:
        if progress.phase == "submitted":
            server.inject(Fault("status", status=500, path="/v1/files", times=50))

    with pytest.raises(InternalServerError):
        await client.batches.run(
            tasks(4), max_requests_per_batch=2, on_progress=second_upload_fails
        )
    sent = [(r.method, r.path) for r in server.requests[start:]]
    assert sent.count(("POST", "/v1/batches")) == 1
    assert ("POST", "/v1/chat/completions") not in sent


@pytest.fixture
def options(server: MockServer, monkeypatch: pytest.MonkeyPatch) -> Any:
    def set_options(**kw: Any) -> None:
        for key, value in kw.items():
            monkeypatch.setitem(server.options, key, value)

    return set_options
