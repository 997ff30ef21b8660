"""The emulator speaks the protocol: auth, routing, errors, non-streamed and streamed answers."""

from __future__ import annotations

import json
import subprocess
import sys

import httpx
import pytest

from holysheep_async.testing import MockServer, answer_text

pytestmark = pytest.mark.anyio

MESSAGES = [{"role": "user", "content": "Hello emulator"}]
AUTH = {"authorization": "Bearer test-key"}


async def test_bearer_key_is_checked(server: MockServer) -> None:
    async with httpx.AsyncClient(base_url=server.url) as http:
        body = {"model": "m", "messages": MESSAGES}
        missing = await http.post("/v1/chat/completions", json=body)
        wrong = await http.post(
            "/v1/chat/completions", json=body, headers={"authorization": "Bearer nope"}
        )
        right = await http.post("/v1/chat/completions", json=body, headers=AUTH)
    assert missing.status_code == 401
    assert wrong.status_code == 401
    assert wrong.json()["error"]["code"] == "invalid_api_key"
    assert "nope" not in wrong.text
    assert right.status_code == 200


async def test_any_key_when_none_configured() -> None:
    async with MockServer() as srv, httpx.AsyncClient(base_url=srv.url) as http:
        r = await http.post(
            "/v1/chat/completions",
            json={"model": "m", "messages": MESSAGES},
            headers={"authorization": "Bearer whatever"},
        )
    assert r.status_code == 200


async def test_routing_errors(server: MockServer) -> None:
    async with httpx.AsyncClient(base_url=server.url, headers=AUTH) as http:
        unknown = await http.get("/v1/nothing-here")
        wrong_method = await http.get("/v1/chat/completions")
        bad_json = await http.post(
            "/v1/chat/completions",
            content=b"{not json",
            headers={"content-type": "application/json"},
        )
        no_messages = await http.post("/v1/chat/completions", json={"model": "m"})
    assert unknown.status_code == 404
    assert wrong_method.status_code == 405
    assert bad_json.status_code == 400
    assert no_messages.status_code == 400
    assert no_messages.json()["error"]["param"] == "messages"
    for r in (unknown, wrong_method, bad_json, no_messages):
        assert r.headers["x-request-id"].startswith("req_")


async def test_answer_length_follows_max_tokens(server: MockServer) -> None:
    async with httpx.AsyncClient(base_url=server.url, headers=AUTH) as http:
        r = await http.post(
            "/v1/chat/completions", json={"model": "m", "messages": MESSAGES, "max_tokens": 9}
        )
        default = await http.post("/v1/chat/completions", json={"model": "m", "messages": MESSAGES})
    assert r.json()["choices"][0]["message"]["content"] == answer_text(MESSAGES, 9)
    assert r.json()["usage"]["completion_tokens"] == 9
    assert default.json()["usage"]["completion_tokens"] == server.tokens


def _events(raw: str) -> list[str]:
    return [block[len("data: ") :] for block in raw.split("\n\n") if block.startswith("data: ")]


async def test_stream_is_shaped_like_openai(server: MockServer) -> None:
    body = {
        "model": "gpt-4o",
        "messages": MESSAGES,
        "max_tokens": 5,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    async with httpx.AsyncClient(base_url=server.url, headers=AUTH) as http:
        r = await http.post("/v1/chat/completions", json=body)
    assert r.headers["content-type"].startswith("text/event-stream")
    data = _events(r.text)
    assert data[-1] == "[DONE]"
    chunks = [json.loads(d) for d in data[:-1]]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text == answer_text(MESSAGES, 5)
    finish = [c for c in chunks if c["choices"] and c["choices"][0]["finish_reason"]]
    assert len(finish) == 1 and finish[0]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"]["completion_tokens"] == 5


async def test_no_usage_chunk_unless_asked(server: MockServer) -> None:
    body = {"model": "m", "messages": MESSAGES, "max_tokens": 3, "stream": True}
    async with httpx.AsyncClient(base_url=server.url, headers=AUTH) as http:
        r = await http.post("/v1/chat/completions", json=body)
    chunks = [json.loads(d) for d in _events(r.text)[:-1]]
    assert all("usage" not in c for c in chunks)


async def test_request_log_and_connections(server: MockServer) -> None:
    async with httpx.AsyncClient(base_url=server.url, headers=AUTH) as http:
        before = len(server.requests)
        await http.post("/v1/chat/completions", json={"model": "m", "messages": MESSAGES})
        assert server.open_connections >= 1
        req = server.requests[before]
        assert req.method == "POST" and req.path == "/v1/chat/completions"
        assert req.api_key == "test-key"
        assert req.status == 200
        assert req.json()["messages"] == MESSAGES


def test_sync_use_and_restart_rules() -> None:
    srv = MockServer()
    with srv:
        r = httpx.post(
            srv.base_url + "/chat/completions",
            json={"model": "m", "messages": MESSAGES},
            headers={"authorization": "Bearer k"},
        )
        assert r.status_code == 200
        with pytest.raises(RuntimeError, match="already started"):
            srv.start()
    srv.stop()  # idempotent


def test_holysheep_serve_command() -> None:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "holysheep_async",
            "serve",
            "--port",
            "0",
            "--ttft",
            "0",
            "--itl",
            "0",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert "listening on http://127.0.0.1:" in line
        base_url = line.split("listening on ", 1)[1].strip()
        r = httpx.post(
            base_url + "/chat/completions",
            json={"model": "m", "messages": MESSAGES, "max_tokens": 4},
            headers={"authorization": "Bearer k"},
        )
        assert r.json()["choices"][0]["message"]["content"] == answer_text(MESSAGES, 4)
    finally:
        proc.terminate()
        assert proc.wait(timeout=10) == 0
