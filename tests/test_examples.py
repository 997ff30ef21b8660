"""The examples under examples/: FastAPI and aiohttp SSE relays, a trio service, Celery tasks.

The relays run in real servers (uvicorn, aiohttp) on 127.0.0.1 in a thread of
their own; the browser is an httpx client on the test's backend (asyncio or
trio). The disconnect tests check, through the emulator's open connections,
that the upstream request is closed when the browser goes away.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import anyio
import httpx
import pytest

from holysheep_async import AsyncClient
from holysheep_async.testing import MockServer, answer_text

from .redis_server import RedisServer

pytestmark = pytest.mark.anyio

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
PROMPT = "Relay me"
MSGS = [{"role": "user", "content": PROMPT}]


def load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        f"holysheep_example_{name}", EXAMPLES / f"{name}.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


fastapi_sse = load("fastapi_sse")
aiohttp_sse = load("aiohttp_sse")
trio_service = load("trio_service")


def listening_socket() -> socket.socket:
    """Bound and listening before the server starts, so a client can never be refused."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    return sock


@contextlib.contextmanager
def uvicorn_app(app: Any) -> Iterator[str]:
    import uvicorn

    sock = listening_socket()
    server = uvicorn.Server(uvicorn.Config(app, lifespan="on", log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


@contextlib.contextmanager
def aiohttp_app(app: Any) -> Iterator[str]:
    from aiohttp import web

    sock = listening_socket()
    stop = threading.Event()
    loop_box: list[asyncio.AbstractEventLoop] = []
    stopped: list[asyncio.Event] = []

    async def serve() -> None:
        runner = web.AppRunner(app, **aiohttp_sse.RUNNER_OPTIONS)
        await runner.setup()
        await web.SockSite(runner, sock).start()
        done = asyncio.Event()
        loop_box.append(asyncio.get_running_loop())
        stopped.append(done)
        stop.set()
        await done.wait()
        await runner.cleanup()

    thread = threading.Thread(target=asyncio.run, args=(serve(),), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        stop.wait(10)
        if loop_box:
            loop_box[0].call_soon_threadsafe(stopped[0].set)
        thread.join(10)
        sock.close()


@pytest.fixture
def upstream() -> Iterator[MockServer]:
    """A fresh emulator whose answers, unless limited, take about 20 s to stream."""
    with MockServer(api_keys=["test-key"], itl=0.005, tokens=4000) as srv:
        yield srv


def parse_events(raw: str) -> list[tuple[str, Any]]:
    events = []
    for block in raw.split("\n\n"):
        if not block.strip():
            continue
        name = "message"
        data = []
        for line in block.splitlines():
            if line.startswith("event:"):
                name = line[6:].strip()
            elif line.startswith("data:"):
                data.append(line[5:].strip())
        events.append((name, json.loads("\n".join(data))))
    return events


def check_sse_headers(response: httpx.Response) -> None:
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.headers["cache-control"] == "no-cache"
    assert response.headers["x-accel-buffering"] == "no"


def check_answer(raw: str, n: int) -> None:
    events = parse_events(raw)
    text = "".join(data["text"] for name, data in events if "text" in data)
    assert text == answer_text(MSGS, n)
    name, last = events[-1]
    assert name == "message" and last["done"] is True
    assert last["finish_reason"] == "stop"
    assert last["usage"]["completion_tokens"] == n


async def wait_until(predicate: Callable[[], bool], what: str, timeout: float = 8.0) -> None:
    """Wait for a state change in another thread (bounded; checks, does not order)."""
    with anyio.move_on_after(timeout):
        # The emulator runs in another thread and has no hook for a closed connection.
        while not predicate():  # noqa: ASYNC110
            await anyio.sleep(0.01)
    assert predicate(), f"timed out waiting for {what}"


async def disconnect_midstream(url: str, upstream: MockServer) -> None:
    """Open the relay, read the first text, hang up; the upstream must close too.

    The upstream goes silent after one token (pings only), so the relay writes
    nothing more to the browser: only noticing the disconnect itself can close it.
    """
    upstream.inject("stall", after=1, ping=0.02)
    async with (
        httpx.AsyncClient(timeout=10) as browser,
        browser.stream("GET", f"{url}/chat", params={"prompt": PROMPT}) as response,
    ):
        check_sse_headers(response)
        async for line in response.aiter_lines():
            if line.startswith("data:") and "text" in line:
                break
        # The relay is mid-answer: its upstream stream is open right now.
        assert upstream.open_connections == 1
        assert upstream.requests[-1].json()["stream"] is True
    await wait_until(lambda: upstream.open_connections == 0, "the upstream connection to close")


# -- FastAPI -------------------------------------------------------------------------


async def test_fastapi_relay_through_asgi_transport(server: MockServer) -> None:
    async with AsyncClient(api_key="test-key", base_url=server.base_url) as client:
        app = fastapi_sse.create_app(client)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://relay") as browser:
            response = await browser.get("/chat", params={"prompt": PROMPT, "max_tokens": 6})
            check_sse_headers(response)
            check_answer(response.text, 6)
            missing = await browser.get("/chat")
            assert missing.status_code == 422


async def test_fastapi_relay_reports_upstream_errors_as_events(server: MockServer) -> None:
    async with AsyncClient(api_key="wrong-key", base_url=server.base_url) as client:
        app = fastapi_sse.create_app(client)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://relay") as browser:
            response = await browser.get("/chat", params={"prompt": PROMPT})
    [(name, data)] = parse_events(response.text)
    assert name == "error" and data["error"] == "AuthenticationError"
    assert "wrong-key" not in response.text


async def test_fastapi_relay_in_uvicorn(upstream: MockServer) -> None:
    app = fastapi_sse.create_app(base_url=upstream.base_url, api_key="test-key")
    with uvicorn_app(app) as url:
        async with httpx.AsyncClient(timeout=10) as browser:
            response = await browser.get(f"{url}/chat", params={"prompt": PROMPT, "max_tokens": 5})
        check_sse_headers(response)
        check_answer(response.text, 5)


async def test_fastapi_browser_disconnect_cancels_upstream(upstream: MockServer) -> None:
    app = fastapi_sse.create_app(base_url=upstream.base_url, api_key="test-key")
    with uvicorn_app(app) as url:
        await disconnect_midstream(url, upstream)


# -- aiohttp -------------------------------------------------------------------------


async def test_aiohttp_relay(upstream: MockServer) -> None:
    with aiohttp_app(aiohttp_sse.create_app(base_url=upstream.base_url, api_key="test-key")) as url:
        async with httpx.AsyncClient(timeout=10) as browser:
            response = await browser.get(f"{url}/chat", params={"prompt": PROMPT, "max_tokens": 4})
            check_sse_headers(response)
            check_answer(response.text, 4)
            bad = await browser.get(f"{url}/chat")
            assert bad.status_code == 400 and "prompt" in bad.text


async def test_aiohttp_browser_disconnect_cancels_upstream(upstream: MockServer) -> None:
    with aiohttp_app(aiohttp_sse.create_app(base_url=upstream.base_url, api_key="test-key")) as url:
        await disconnect_midstream(url, upstream)


# -- trio ----------------------------------------------------------------------------


@pytest.mark.parametrize("anyio_backend", ["trio"])  # the service is written for trio
async def test_trio_service_answers_every_prompt(server: MockServer) -> None:
    prompts = [f"prompt {i}" for i in range(7)]
    async with AsyncClient(api_key="test-key", base_url=server.base_url) as client:
        results = await trio_service.answer_all(client, prompts, workers=3, max_tokens=4)
        assert client.usage.requests == 7
    assert results == {
        i: answer_text([{"role": "user", "content": p}], 4) for i, p in enumerate(prompts)
    }


@pytest.mark.parametrize("anyio_backend", ["trio"])
async def test_trio_service_reports_a_failed_prompt(server: MockServer) -> None:
    server.inject("status", status=400, message="no such model")
    async with AsyncClient(api_key="test-key", base_url=server.base_url) as client:
        results = await trio_service.answer_all(client, ["only"], workers=1, max_tokens=2)
    assert results[0].startswith("error: BadRequestError") and "no such model" in results[0]


def test_trio_service_runs_as_a_script() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HOLYSHEEP_")}
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / "trio_service.py"), "first", "second"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    for prompt in ("first", "second"):
        expected = answer_text([{"role": "user", "content": prompt}], 24)
        assert f"-> {expected}" in result.stdout
    assert "total" in result.stdout and "gpt-4o" in result.stdout


fastapi_shared_quota = load("fastapi_shared_quota")


async def test_fastapi_shared_quota_in_two_apps(server: MockServer, redis_server: Any) -> None:
    """Two app instances (two "workers") answer through one quota on Redis."""
    import httpx

    apps = [
        fastapi_shared_quota.create_app(
            redis_url=redis_server.url, base_url=server.base_url, api_key="test-key"
        )
        for _ in range(2)
    ]
    async with contextlib.AsyncExitStack() as stack:
        for app in apps:
            await stack.enter_async_context(app.router.lifespan_context(app))
        for app in apps:
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://app") as http:
                reply = await http.get("/ask", params={"prompt": "hi"})
                assert reply.status_code == 200, reply.text
                assert reply.json()["answer"]
    keys = redis_server.command("KEYS", "*")
    assert ":rq" in keys  # the quota lives in Redis, shared by both


# -- celery_tasks: a real Celery 5 prefork worker, Redis as broker and shared quota --------
#
# The worker (``celery -A celery_tasks worker --pool prefork --concurrency 2``) imports
# the task module, which makes the ``Client`` at import; the pool forks its processes
# from there. The test sends 20 tasks through the module's own ``run_job`` and checks
# every answer, that forked processes answered them, and that the quota was one for the
# whole pool (``shared_limits``): the emulator saw the requests no faster than one
# shared ``rpm`` allows. The worker runs in a session of its own and is killed whole at
# the end, whatever happens.

CELERY_TASKS = 20
CELERY_RPM = 300  # a burst of 5, then one every 0.2 s: 20 requests take >= 3 s in all


@contextlib.contextmanager
def celery_worker(env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                sys.executable, "-m", "celery",
                "-A", "celery_tasks",
                "worker",
                "--pool", "prefork",
                "--concurrency", "2",
                "--loglevel", "INFO",
                "--hostname", "holysheep-test@%h",
                "--without-gossip", "--without-mingle", "--without-heartbeat",
            ],
            cwd=str(log.parent),
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)  # warm shutdown
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                pass
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # the pool's processes too
        proc.wait(timeout=30)


def test_celery_prefork_worker_answers_under_one_shared_quota(
    upstream: MockServer,
    redis_server: RedisServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = {
        "REDIS_URL": redis_server.url,
        "HOLYSHEEP_BASE_URL": upstream.base_url,
        "HOLYSHEEP_RPM": str(CELERY_RPM),
    }
    for name, value in settings.items():
        monkeypatch.setenv(name, value)
    env = {k: v for k, v in os.environ.items() if k != "HOLYSHEEP_API_KEY"}
    env["PYTHONPATH"] = os.pathsep.join([str(EXAMPLES), env.get("PYTHONPATH", "")])
    # The sending side: the same module, as a program would import it (its client unused).
    tasks = load("celery_tasks")
    prompts = [f"Celery prompt {i}" for i in range(CELERY_TASKS)]
    log = tmp_path / "worker.log"
    with celery_worker(env, log) as worker:
        results = tasks.run_job(prompts, max_tokens=6, timeout=120)
        assert worker.poll() is None, log.read_text()
        main_pid = worker.pid
    output = log.read_text()
    assert [r["custom_id"] for r in results] == [f"p{i}" for i in range(CELERY_TASKS)]
    for prompt, result in zip(prompts, results, strict=True):
        assert "error" not in result, result
        assert result["text"] == answer_text([{"role": "user", "content": prompt}], 6)
    # Answered in the pool's forked processes (both of them), not in the main one.
    pids = {r["worker_pid"] for r in results}
    assert main_pid not in pids and len(pids) == 2, pids
    # One quota for the pool: CELERY_RPM a minute in all (a burst of 5, then 5 a second).
    # Each process on its own would have let 10 go at once and finished in ~1 s.
    seen = sorted(r.received_at for r in upstream.requests if r.path == "/v1/chat/completions")
    assert len(seen) == CELERY_TASKS
    assert seen[-1] - seen[0] >= 0.8 * (CELERY_TASKS - 5) * 60 / CELERY_RPM, seen
    assert "Traceback" not in output, output
