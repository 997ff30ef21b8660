"""Shared limits on a real Redis: the in-process limiter's semantics, fleet-wide.

Two ``SharedLimiter`` objects on one namespace stand for two processes. Most
tests drive the Lua scripts with a virtual clock (``redis_time=``) and a sleep
that moves it, so no test waits for real time; the fleet tests with real
processes are in test_shared_fleet.py.
"""

from __future__ import annotations

import contextlib
import logging
import math
import sys
import time
import uuid
from collections.abc import Callable
from typing import Any

import anyio
import anyio.lowlevel
import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from holysheep_async import AsyncClient, RateLimitError, SharedLimits, SharedLimitsError
from holysheep_async.errors import ConfigurationError
from holysheep_async.limits._shared import SharedLimiter, SharedPermit
from holysheep_async.limits._shared_config import default_namespace, parse_reset
from holysheep_async.testing import MockServer

from .redis_server import RedisServer, free_port

pytestmark = pytest.mark.anyio


class VirtualTime:
    """One clock for the scripts (Redis time, us) and the limiters (seconds); sleeping moves it."""

    def __init__(self) -> None:
        self.now = 1_000.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def redis_time(self) -> int:
        return round(self.now * 1_000_000)

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        await anyio.lowlevel.checkpoint()


def _make(
    redis: RedisServer, vt: VirtualTime | None, namespace: str, **kwargs: Any
) -> SharedLimiter:
    options = {k: kwargs.pop(k) for k in list(kwargs) if k in SharedLimits.__dataclass_fields__}
    # A loaded CI machine can take longer than the default 0.5 s for a first call (connect,
    # load the script): these tests are about the limits, not the fallback.
    options.setdefault("timeout", 10.0)
    config = SharedLimits(redis.url, **options)
    if vt is None:
        return SharedLimiter(config, namespace, **kwargs)
    return SharedLimiter(
        config, namespace, clock=vt.clock, sleep=vt.sleep, redis_time=vt.redis_time, **kwargs
    )


@pytest.fixture
def ns() -> str:
    return f"test-{uuid.uuid4().hex}"


@pytest.fixture
def vt() -> VirtualTime:
    return VirtualTime()


Make = Callable[..., SharedLimiter]


@pytest.fixture
def make(redis_server: RedisServer, vt: VirtualTime, ns: str) -> Make:
    def make(**kwargs: Any) -> SharedLimiter:
        return _make(redis_server, vt, ns, **kwargs)

    return make


# -- rpm, shared -----------------------------------------------------------------------


async def test_two_processes_share_one_rpm_burst_then_pace(make: Make, vt: VirtualTime) -> None:
    a, b = make(rpm=60, burst=2), make(rpm=60, burst=2)  # 1 a second, 2 at once, for both
    start = vt.now
    times = []
    for limiter in (a, b, a, b, a):
        (await limiter.acquire()).release()
        times.append(round(vt.now - start, 6))
    # Without sharing, each would have had its own burst of 2: four at t=0.
    assert times == [0.0, 0.0, 1.0, 2.0, 3.0]
    await a.aclose()
    await b.aclose()


async def test_rpm_never_exceeds_burst_plus_rate_over_any_window(
    make: Make, vt: VirtualTime
) -> None:
    limiters = [make(rpm=120, burst=3) for _ in range(3)]
    grants: list[float] = []

    async def worker(limiter: SharedLimiter) -> None:
        for _ in range(8):
            permit = await limiter.acquire()
            permit.release()
            assert isinstance(permit, SharedPermit)
            grants.append(permit.granted_at / 1_000_000)  # Redis's time, the one that counts

    async with anyio.create_task_group() as tg:
        for limiter in limiters:
            tg.start_soon(worker, limiter)
    grants.sort()
    for i, t0 in enumerate(grants):
        for j in range(i, len(grants)):
            assert j - i + 1 <= 3 + 2.0 * (grants[j] - t0) + 1e-6
    assert grants[-1] - grants[0] >= (24 - 3) / 2.0 - 1e-6


async def test_waiters_of_one_process_queue_locally_only_the_head_calls_redis(
    make: Make, vt: VirtualTime, monkeypatch: pytest.MonkeyPatch
) -> None:
    limiter = make(rpm=60, burst=1)
    calls = 0
    original = limiter._call

    async def counting(rt: Any, name: str, keys: list[str], args: list[Any]) -> Any:
        nonlocal calls
        if name == "acquire":
            calls += 1
        return await original(rt, name, keys, args)

    monkeypatch.setattr(limiter, "_call", counting)
    async with anyio.create_task_group() as tg:
        for _ in range(10):
            tg.start_soon(lambda: _take_release(limiter))
    # One call per grant (each also computes the next one's wait), plus the first wait:
    # never one per waiter per wait.
    assert calls == 11
    assert vt.now - 1000.0 == pytest.approx(9.0)


class ManualTime(VirtualTime):
    """Virtual time that moves only when the test says; ``sleeping`` is set when a task sleeps."""

    def __init__(self) -> None:
        super().__init__()
        self.sleeping = anyio.Event()
        self._sleepers: list[tuple[float, anyio.Event]] = []

    async def sleep(self, seconds: float) -> None:
        wake = anyio.Event()
        self._sleepers.append((self.now + seconds, wake))
        self.sleeping.set()
        await wake.wait()

    def advance(self, seconds: float) -> None:
        self.now += seconds
        for deadline, wake in self._sleepers:
            if deadline <= self.now:
                wake.set()
        self._sleepers = [(d, w) for d, w in self._sleepers if d > self.now]


async def test_a_cancelled_waiter_takes_nothing_and_the_queue_goes_on(
    redis_server: RedisServer, ns: str
) -> None:
    mt = ManualTime()
    limiter = SharedLimiter(
        SharedLimits(redis_server.url, timeout=10), ns, rpm=60, burst=1, max_concurrency=5,
        clock=mt.clock, sleep=mt.sleep, redis_time=mt.redis_time,
    )
    (await limiter.acquire()).release()
    scopes: dict[int, anyio.CancelScope] = {}
    got: list[int] = []
    done = anyio.Event()

    async def waiter(i: int) -> None:
        with anyio.CancelScope() as scopes[i]:
            (await limiter.acquire()).release()
            got.append(i)
            done.set()

    with anyio.fail_after(30):
        async with anyio.create_task_group() as tg:
            for i in range(3):
                tg.start_soon(waiter, i)
            await mt.sleeping.wait()  # the head sleeps for the turn Redis gave it
            scopes[0].cancel()  # the head: the next one takes over
            scopes[1].cancel()  # and one in the middle of the queue
            mt.advance(1.0)
            await done.wait()
    assert got == [2]
    assert limiter.stats().requests == 2 and limiter.stats().in_flight == 0
    await limiter.flush()
    assert redis_server.command("ZCARD", f"holysheep:{{{ns}}}:lease").strip() == "0"
    await limiter.aclose()


async def _take_release(limiter: SharedLimiter, tokens: int = 0) -> None:
    (await limiter.acquire(tokens)).release()


# -- tpm: estimate, then reconcile ------------------------------------------------------


async def test_tpm_refund_in_one_process_lets_the_other_go_sooner(
    make: Make, vt: VirtualTime
) -> None:
    a, b = make(tpm=600), make(tpm=600)  # 10 tokens at once, 10 a second
    permit = await a.acquire(10)
    permit.reconcile(2)  # 8 were never used
    await a.flush()
    start = vt.now
    (await b.acquire(8)).release()
    assert vt.now == start  # the refund made room at once
    assert a.stats().tokens_refunded == 8


async def test_tpm_charge_delays_the_other_process(make: Make, vt: VirtualTime) -> None:
    a, b = make(tpm=600), make(tpm=600)
    permit = await a.acquire(5)
    permit.reconcile(15)  # 10 more than estimated: the bucket is overdrawn by 10
    await a.flush()
    start = vt.now
    (await b.acquire(1)).release()
    assert vt.now - start == pytest.approx(0.6, abs=1e-3)  # 15 -> 9 at 10 tokens a second


async def test_a_late_refund_gives_back_only_what_has_not_drained(
    make: Make, vt: VirtualTime
) -> None:
    a = make(tpm=600)
    permit = await a.acquire(10)
    vt.now += 0.7  # 7 of the 10 drained
    permit.reconcile(0)
    await a.flush()
    assert a.stats().tokens_refunded == 3
    assert isinstance(permit, SharedPermit) and permit._withheld == pytest.approx(7)


# -- concurrency: leases --------------------------------------------------------------


async def test_concurrency_cap_holds_across_processes(redis_server: RedisServer, ns: str) -> None:
    # Real time: a holder renews its leases on the real clock.
    a, b = (_make(redis_server, None, ns, max_concurrency=2, lease_ttl=30) for _ in range(2))
    p1, p2 = await a.acquire(), await b.acquire()
    got = anyio.Event()

    async def third() -> None:
        permit = await b.acquire()
        got.set()
        permit.release()

    async with anyio.create_task_group() as tg:
        tg.start_soon(third)
        await anyio.wait_all_tasks_blocked()
        assert not got.is_set()
        assert not got.is_set()
        p1.release()  # released in the other "process": b hears of it by looking again
        await a.flush()
        with anyio.fail_after(30):
            await got.wait()
    p2.release()
    await a.aclose()
    await b.aclose()


async def test_a_dead_holders_slot_comes_back_after_the_lease_ttl(
    make: Make, vt: VirtualTime, redis_server: RedisServer, ns: str
) -> None:
    limiter = make(max_concurrency=1, lease_ttl=5)
    # A holder that died: its lease is in Redis and nobody renews it.
    expiry = int((vt.now + 5) * 1_000_000)
    redis_server.command("ZADD", f"holysheep:{{{ns}}}:lease", str(expiry), "dead-worker")
    start = vt.now
    permit = await limiter.acquire()
    assert 4.9 <= vt.now - start <= 5.5
    permit.release()


async def test_live_leases_are_renewed_and_survive_a_flushall(
    make: Make, vt: VirtualTime, redis_server: RedisServer, ns: str
) -> None:
    a = make(max_concurrency=1, lease_ttl=5)
    permit = await a.acquire()
    assert isinstance(permit, SharedPermit)
    key = f"holysheep:{{{ns}}}:lease"
    redis_server.command("FLUSHALL")  # Redis lost everything: the lease too
    assert redis_server.command("ZSCORE", key, permit._lease).strip() == ""
    vt.now += 4
    await a.flush()  # the renewal writes the live lease back, with a fresh expiry
    score = float(redis_server.command("ZSCORE", key, permit._lease))
    assert score == pytest.approx((vt.now + 5) * 1_000_000)
    permit.release()
    await a.flush()
    assert redis_server.command("ZSCORE", key, permit._lease).strip() == ""


# -- the shared 429 cooldown ------------------------------------------------------------


async def test_a_429_in_one_process_pauses_the_others(make: Make, vt: VirtualTime) -> None:
    a, b = make(rpm=6000), make(rpm=6000)
    (await a.acquire()).release()
    a.cooldown(7.0, caller_waits=False)
    await a.flush()
    start = vt.now
    (await b.acquire()).release()
    assert vt.now - start == pytest.approx(7.0, abs=1e-3)


async def test_the_task_that_reported_the_429_does_not_wait_twice(
    make: Make, vt: VirtualTime
) -> None:
    a = make(rpm=6000)
    (await a.acquire()).release()
    a.cooldown(3.0)  # this task waits it out in its own retry backoff
    await a.flush()
    await vt.sleep(3.0)
    start = vt.now
    (await a.acquire()).release()
    assert vt.now == start


# -- the server's word ----------------------------------------------------------------


async def test_never_more_than_the_server_says_is_left(make: Make, vt: VirtualTime) -> None:
    a = make(rpm=6000, learn_quota=True)
    permit = await a.acquire()
    permit.release()
    # The server answered: 2 requests left (1, counted safely), full again in 2 s.
    a.observe(
        permit,
        {"x-ratelimit-remaining-requests": "2", "x-ratelimit-reset-requests": "2s"},
    )
    await a.flush()
    start = vt.now
    (await a.acquire()).release()  # the one left
    assert vt.now == start
    (await a.acquire()).release()  # none left: waits for the reset
    assert vt.now - start == pytest.approx(2.0, abs=1e-3)


class HeaderQuota:
    """A server (an httpx handler) that, like OpenAI, sends x-ratelimit-* on every answer.

    5 requests at once, 5 a second refilled continuously; over it, a 429.
    """

    def __init__(self) -> None:
        self.available = 5.0
        self.last = time.monotonic()
        self.refused = 0

    def __call__(self, request: httpx.Request) -> httpx.Response:
        now = time.monotonic()
        self.available = min(5.0, self.available + (now - self.last) * 5)
        self.last = now
        ok = self.available >= 1
        if ok:
            self.available -= 1
        else:
            self.refused += 1
        headers = {
            "x-ratelimit-limit-requests": "300",
            "x-ratelimit-remaining-requests": str(int(self.available)),
            "x-ratelimit-reset-requests": f"{(5 - self.available) / 5 * 1000:.0f}ms",
        }
        if not ok:
            return httpx.Response(429, headers=headers, json={"error": {"message": "slow down"}})
        body = {
            "id": "c", "object": "chat.completion", "created": 0, "model": "m",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "a"},
                         "finish_reason": "stop"}],
        }
        return httpx.Response(200, headers=headers, json=body)


@pytest.mark.parametrize("learn", [True, False])
async def test_learning_the_quota_keeps_a_too_generous_client_from_429s(
    redis_server: RedisServer, ns: str, learn: bool
) -> None:
    """The client's rpm is far above the key's quota; the server's headers hold it back."""
    server = HeaderQuota()
    async with httpx.AsyncClient(transport=httpx.MockTransport(server)) as http, AsyncClient(
        api_key="k",
        base_url="https://quota.test/v1",
        rpm=60_000,
        max_retries=0,
        http_client=http,
        shared_limits=SharedLimits(redis_server.url, learn_quota=learn, timeout=10),
        limits_namespace=ns,
    ) as client:
        for _ in range(12):
            with contextlib.suppress(RateLimitError):
                await client.chat.create(model="m", messages=[{"role": "user", "content": "q"}])
    assert (server.refused == 0) is learn, server.refused


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("6m0s", 360.0), ("1.5s", 1.5), ("20ms", 0.02), ("2", 2.0), ("1h2m3s", 3723.0)],
)
def test_reset_durations_parse(text: str, seconds: float) -> None:
    assert parse_reset(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "soon", "-1", "1x", "nan"])
def test_bad_reset_durations_are_ignored(text: str) -> None:
    assert parse_reset(text) is None


# -- Redis down: no hang, no crash, the policy ------------------------------------------


def _down(**options: Any) -> SharedLimiter:
    url = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    return SharedLimiter(
        SharedLimits(url, timeout=0.2, **options), f"down-{uuid.uuid4().hex}", rpm=60, burst=2
    )


async def test_redis_down_falls_back_to_a_share_of_the_limit_and_warns_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    limiter = _down(local_share=0.5)
    with caplog.at_level(logging.WARNING, "holysheep_async"), anyio.fail_after(10):
        for _ in range(1):  # burst 2 at half: 1 at once
            (await limiter.acquire()).release()
    assert limiter.degraded
    assert limiter._fallback is not None and limiter._fallback.rpm == 30
    assert limiter._fallback.burst == 1
    warnings = [r for r in caplog.records if "unreachable" in r.getMessage()]
    assert len(warnings) == 1
    assert "0.5 of the limits" in warnings[0].getMessage()
    assert limiter.stats().requests == 1  # the fallback's permits count too
    await limiter.aclose()
    assert not any("/0 is back" in r.getMessage() for r in caplog.records)  # it never was


async def test_redis_down_fail_closed_raises(caplog: pytest.LogCaptureFixture) -> None:
    limiter = _down(on_error="closed")
    with anyio.fail_after(10), pytest.raises(SharedLimitsError, match="unreachable"):
        await limiter.acquire()


async def test_redis_down_fail_open_sends_without_limits() -> None:
    limiter = _down(on_error="open")
    with anyio.fail_after(10):
        for _ in range(20):
            (await limiter.acquire()).release()
    assert limiter._fallback is not None and limiter._fallback.rpm is None


async def test_back_to_shared_limits_when_redis_returns(
    caplog: pytest.LogCaptureFixture,
) -> None:
    server = RedisServer()
    limiter = SharedLimiter(
        SharedLimits(server.url, timeout=0.2, retry_after=0.05), "back", rpm=6000
    )
    try:
        with caplog.at_level(logging.WARNING, "holysheep_async"), anyio.fail_after(20):
            (await limiter.acquire()).release()
            assert limiter.degraded
            server.start()
            while limiter.degraded:
                await anyio.sleep(0.06)
                (await limiter.acquire()).release()
            assert "holysheep:{back}:rq" in server.command("KEYS", "*")
        assert any("/0 is back" in r.getMessage() for r in caplog.records)
        await limiter.aclose()
    finally:
        server.stop()


# -- the client ---------------------------------------------------------------------------


async def test_client_with_shared_limits_talks_to_redis_without_the_key(
    redis_server: RedisServer, server: MockServer
) -> None:
    secret = "test-key"
    async with AsyncClient(
        api_key=secret,
        base_url=server.base_url,
        rpm=6000,
        max_concurrency=4,
        shared_limits=SharedLimits(redis_server.url, timeout=10),
    ) as client:
        assert isinstance(client.limiter, SharedLimiter)
        await client.chat.create(model="m", messages=[{"role": "user", "content": "hi"}])
        assert client.limiter.stats().requests == 1
        assert client.limiter.stats().in_flight == 0
        keys = redis_server.command("KEYS", "*")
    namespace = default_namespace(server.base_url, secret)
    assert f"holysheep:{{{namespace}}}:rq" in keys
    assert secret not in namespace and secret not in keys
    assert secret not in repr(client.limiter)


def test_shared_limits_settings_are_checked() -> None:
    with pytest.raises(ConfigurationError, match="redis://"):
        AsyncClient(api_key="k", shared_limits="http://x")
    with pytest.raises(ConfigurationError, match="on_error"):
        SharedLimits("redis://x", on_error="maybe")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="local_share"):
        SharedLimits("redis://x", local_share=2)
    with pytest.raises(ConfigurationError, match="limits_namespace"):
        AsyncClient(api_key="k", shared_limits="redis://x", limits_namespace="")
    with pytest.raises(ConfigurationError, match="rpm"):
        AsyncClient(api_key="k", shared_limits="redis://x", rpm=-1)


def test_without_coredis_the_error_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "coredis", None)  # as if not installed
    with pytest.raises(ConfigurationError, match=r"pip install 'holysheep-async\[redis\]'"):
        AsyncClient(api_key="k", shared_limits="redis://localhost:6379/0")


def test_password_never_shows() -> None:
    limiter = SharedLimiter(SharedLimits("redis://:hunter22@localhost:1/0"), "ns", rpm=1)
    assert "hunter22" not in repr(limiter)
    with pytest.raises(ConfigurationError) as info:
        SharedLimits("http://:hunter22@localhost:1/0")
    assert "hunter22" not in str(info.value)


# -- property: over any window, at most capacity + rate * T --------------------------------


@settings(max_examples=max(10, settings().max_examples // 4))
@given(
    ops=st.lists(
        st.one_of(
            st.tuples(st.just("take"), st.integers(0, 2), st.integers(1, 30), st.floats(0, 1)),
            st.tuples(st.just("wait"), st.just(0), st.just(0), st.floats(0, 3)),
            st.tuples(st.just("report"), st.integers(0, 40), st.just(0), st.just(0.0)),
        ),
        max_size=30,
    ),
    backend=st.sampled_from(["asyncio", "trio"]),
)
def test_property_the_fleet_never_exceeds_capacity_plus_rate_times_t(
    redis_server: RedisServer, ops: list[tuple[str, int, int, float]], backend: str
) -> None:
    """Three processes' limiters, any mix of takes, waits and refunds, a virtual clock.

    Requests over any window stay within ``burst + rate * T``; the real usage of
    tokens (counted when granted) within ``capacity + rate * T`` (the largest
    estimate when it overdraws the bucket).
    """
    vt = VirtualTime()
    ns = f"prop-{uuid.uuid4().hex}"
    limiters = [_make(redis_server, vt, ns, rpm=120, burst=2, tpm=600) for _ in range(3)]
    taken: list[tuple[SharedLimiter, Any, float, int, int]] = []

    async def main() -> None:
        for op, who, amount, x in ops:
            if op == "take":
                limiter = limiters[who]
                permit = await limiter.acquire(amount)
                permit.release()
                taken.append((limiter, permit, vt.now, int(amount * x), amount))
            elif op == "wait":
                vt.now += x
            elif taken:
                limiter, permit, _, real, _ = taken[who % len(taken)]
                permit.reconcile(real)
                await limiter.flush()
        for limiter in limiters:
            await limiter.aclose()

    anyio.run(main, backend=backend)
    grants = [(at, real, est) for _, _, at, real, est in taken]
    biggest = max([10, *(est for _, _, est in grants)]) if grants else 0
    for i, (t0, _, _) in enumerate(grants):
        tokens = 0
        for j, (t1, real, _) in enumerate(grants[i:]):
            tokens += real
            assert j + 1 <= 2 + 2.0 * (t1 - t0) + 1e-6, ("requests", t0, t1, j + 1)
            assert tokens <= biggest + 10.0 * (t1 - t0) + 1e-3, ("tokens", t0, t1, tokens)
    assert not math.isnan(vt.now)
