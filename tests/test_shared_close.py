"""``aclose()`` with shared limits whose Redis is down: prompt, no attempt at Redis (issue 24).

A real ``redis-server`` is started, used, then killed. The Redis timeouts are set far
above the tests' deadlines (``timeout=30``, ``retry_after=3600``), so a close that
waited on any of them would miss its deadline; what the close does is counted (the
connections it opens to Redis), not timed.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import anyio
import pytest

from holysheep_async import AsyncClient, SharedLimits
from holysheep_async.testing import MockServer

from .redis_server import RedisServer

pytestmark = pytest.mark.anyio

MSGS = [{"role": "user", "content": "hi"}]
SLOW = {"timeout": 30.0, "retry_after": 3600.0, "lease_ttl": 3600.0}


@pytest.fixture
def connects(monkeypatch: pytest.MonkeyPatch) -> list[tuple[Any, ...]]:
    """Every TCP connection the Redis client tries to open."""
    tcp = pytest.importorskip("coredis.connection._tcp")
    attempts: list[tuple[Any, ...]] = []
    real = tcp.connect_tcp

    async def counted(*args: Any, **kwargs: Any) -> Any:
        attempts.append(args)
        return await real(*args, **kwargs)

    monkeypatch.setattr(tcp, "connect_tcp", counted)
    return attempts


@pytest.fixture
def redis() -> Iterator[RedisServer]:
    server = RedisServer()
    server.start()
    yield server
    server.stop()


def client_on(server: MockServer, redis: RedisServer, namespace: str) -> AsyncClient:
    return AsyncClient(
        api_key="test-key",
        base_url=server.base_url,
        rpm=6_000,
        max_concurrency=4,
        shared_limits=SharedLimits(redis.url, **SLOW),  # type: ignore[arg-type]
        limits_namespace=namespace,
    )


async def test_aclose_with_redis_down_returns_at_once(
    server: MockServer, redis: RedisServer, connects: list[tuple[Any, ...]]
) -> None:
    client = client_on(server, redis, "close-down")
    redis.kill()  # started, then killed before the client's first request
    with anyio.fail_after(20):
        completion = await client.chat.create(model="m", messages=MSGS)
        assert completion.text and client.limiter.degraded  # type: ignore[attr-defined]
        before = len(connects)
        await client.aclose()  # used to wait retry_after (2 s by default) here
    assert len(connects) == before  # no last try at the dead Redis


async def test_aclose_with_a_lease_held_and_redis_known_down_makes_no_attempt(
    server: MockServer, redis: RedisServer, connects: list[tuple[Any, ...]]
) -> None:
    client = client_on(server, redis, "close-held")
    with anyio.fail_after(20):
        held = await client.limiter.acquire()  # a lease in Redis, still held at the close
        # Twice: the second waits for the background task's own send (renewing the
        # lease) if the first went before it, so nothing is left in flight.
        await client.limiter.flush()  # type: ignore[attr-defined]
        await client.limiter.flush()  # type: ignore[attr-defined]
        redis.kill()
        (await client.limiter.acquire()).release()  # Redis gone: the local fallback
        assert client.limiter.degraded  # type: ignore[attr-defined]
        before = len(connects)
        await client.aclose()
    assert len(connects) == before
    assert held  # (its lease expires in Redis after lease_ttl)


async def test_aclose_right_after_redis_died_tries_once_and_returns(
    server: MockServer, redis: RedisServer, connects: list[tuple[Any, ...]]
) -> None:
    client = client_on(server, redis, "close-died")
    with anyio.fail_after(20):
        held = await client.limiter.acquire()
        held.release()  # queued for Redis: the close sends it
        redis.kill()  # ... but Redis has just died, and nobody knows yet
        assert not client.limiter.degraded  # type: ignore[attr-defined]
        await client.aclose()  # one refused attempt, then no retry_after sleep
    assert client.limiter.degraded  # type: ignore[attr-defined]
