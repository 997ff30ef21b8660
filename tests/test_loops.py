"""One client, one event loop after another (issue 13): what sync scripts and notebooks do.

``asyncio.run`` or ``anyio.run`` called twice with the same client, asyncio then
trio, a loop per thread one after another: each works. Two loops using the client
at the same time from two threads: the second fails at once with a clear error.
Nothing hangs: every scenario runs in a thread joined with a hard timeout, so a
regression fails here instead of hanging the suite. (These tests drive the event
loops themselves, so they are plain functions: each one names its backends.)
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable
from typing import Any, TypeVar

import anyio
import pytest

from holysheep_async import AsyncClient
from holysheep_async.limits import Limiter
from holysheep_async.testing import MockServer

from .rawserver import Conn, RawServer, ok

T = TypeVar("T")

HARD_TIMEOUT = 60.0  # a hang, not a slow machine


def in_thread(fn: Callable[[], T]) -> T:
    """``fn()`` in a thread of its own; fails the test if it has not ended in time."""
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["result"] = fn()
        except BaseException as exc:
            box["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(HARD_TIMEOUT)
    if thread.is_alive():
        pytest.fail(f"{fn!r} hung (still running after {HARD_TIMEOUT:.0f} s)")
    if "error" in box:
        raise box["error"]
    return box["result"]  # type: ignore[no-any-return]


def run_on(backend: str, fn: Callable[[], Any]) -> Any:
    """One event loop, start to end: ``asyncio.run`` itself, or ``anyio.run`` on a backend."""
    if backend == "asyncio.run":
        return asyncio.run(fn())
    return anyio.run(fn, backend=backend)


def make_client(url: str, limits: bool) -> AsyncClient:
    kw: dict[str, Any] = {"rpm": 6000, "tpm": 1_000_000, "max_concurrency": 4} if limits else {}
    return AsyncClient(api_key="test-key", base_url=url, **kw)


SEQUENCES = [
    ["asyncio.run", "asyncio.run"],
    ["asyncio", "asyncio", "asyncio"],
    ["trio", "trio"],
    ["asyncio", "trio"],
    ["trio", "asyncio"],
    ["trio", "asyncio.run", "trio", "asyncio"],
]


@pytest.mark.parametrize("limits", [True, False], ids=["limits", "no-limits"])
@pytest.mark.parametrize("backends", SEQUENCES, ids=["-".join(s) for s in SEQUENCES])
def test_one_client_one_loop_after_another(
    server: MockServer, backends: list[str], limits: bool
) -> None:
    client = make_client(server.base_url, limits)

    async def work() -> str:
        done = await client.chat.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}], max_tokens=20
        )
        async with client.chat.stream(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}], max_tokens=20
        ) as stream:
            text = "".join([piece async for piece in stream])
        assert text
        return done.choices[0].message.content or ""

    for backend in backends:
        assert in_thread(lambda b=backend: run_on(b, work))  # type: ignore[misc]
    in_thread(lambda: run_on(backends[-1], client.aclose))
    assert client.limiter.stats().in_flight == 0


def test_a_loop_per_thread_one_after_another(server: MockServer) -> None:
    client = make_client(server.base_url, limits=True)

    async def work() -> None:
        await client.chat.create(model="m", messages=[{"role": "user", "content": "hi"}])

    for backend in ["asyncio", "trio", "asyncio.run", "trio"]:
        in_thread(lambda b=backend: run_on(b, work))  # type: ignore[misc]
    in_thread(lambda: run_on("asyncio", client.aclose))


ANSWER = json.dumps(
    {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1,
        "model": "m",
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}
        ],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    }
).encode()


@pytest.mark.parametrize("limits", [True, False], ids=["limits", "no-limits"])
@pytest.mark.parametrize("second", ["asyncio", "trio"])
@pytest.mark.parametrize("first", ["asyncio", "trio"])
def test_two_loops_at_the_same_time_fail_at_once(first: str, second: str, limits: bool) -> None:
    got, release = threading.Event(), threading.Event()

    def handler(conn: Conn) -> None:
        while conn.read_request() is not None:
            got.set()
            release.wait(HARD_TIMEOUT)
            conn.send(ok(ANSWER, b"content-type: application/json\r\n"))

    srv = RawServer(handler)
    client = make_client(srv.url + "/v1", limits)

    async def work() -> str:
        done = await client.chat.create(model="m", messages=[{"role": "user", "content": "x"}])
        return done.choices[0].message.content or ""

    try:
        box: dict[str, Any] = {}
        a = threading.Thread(target=lambda: box.update(a=run_on(first, work)), daemon=True)
        a.start()
        assert got.wait(HARD_TIMEOUT), "the first loop's request reached the server"
        # The first loop is waiting for its answer: a second loop cannot share the client.
        with pytest.raises(RuntimeError, match="one client serves one event loop at a time"):
            in_thread(lambda: run_on(second, work))
        release.set()
        a.join(HARD_TIMEOUT)
        assert not a.is_alive() and box["a"] == "hi", "the first loop is not disturbed"
        # Once it has ended, the client carries on in another loop.
        assert in_thread(lambda: run_on(second, work)) == "hi"
    finally:
        release.set()
        srv.close()


@pytest.mark.parametrize(
    ("first", "second"), [("asyncio", "trio"), ("trio", "asyncio"), ("trio", "trio")]
)
def test_limits_hold_across_loops(first: str, second: str) -> None:
    # A request bucket full in one loop is still full in the next (whose clock may
    # read anything: trio's starts at a random offset), and a cooldown keeps its end.
    limiter = Limiter(rpm=6, burst=1)  # one request, then one every 10 s

    async def take() -> bool:
        with anyio.move_on_after(0.5):
            (await limiter.acquire()).release()
            return True
        return False

    async def cool() -> None:
        limiter.cooldown(30, caller_waits=False)

    assert in_thread(lambda: run_on(first, take))
    assert not in_thread(lambda: run_on(second, take)), "the rate held across the loops"

    limiter = Limiter(max_concurrency=1)
    in_thread(lambda: run_on(first, cool))

    async def remaining() -> float:
        assert limiter.cooling_down
        return limiter._paused_until - anyio.current_time()

    left = in_thread(lambda: run_on(second, remaining))
    assert 0 < left <= 30, "the cooldown's end, moved to the new loop's clock"
