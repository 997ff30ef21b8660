"""Client-side limits: rpm pace and burst, tpm with reconcile, concurrency, the 429 cooldown.

Timing tests run in virtual time, so they are exact and instant:
trio's ``MockClock(autojump_threshold=0)`` and, on asyncio, an event loop
whose clock jumps to the next timer whenever nothing is ready. The same tests
run against every implementation of the request bucket: ``aiolimiter`` (asyncio),
the anyio :class:`LeakyBucket` on asyncio (forced by injecting the clock) and
on trio.
"""

from __future__ import annotations

import asyncio
import math
import selectors
from collections.abc import AsyncIterator, Callable
from typing import Any

import anyio
import anyio.lowlevel
import pytest
import trio.testing
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from holysheep_async import AsyncClient
from holysheep_async.errors import ConfigurationError, NotFoundError
from holysheep_async.limits import LeakyBucket, Limiter, Permit, estimate_tokens
from holysheep_async.limits import _bucket as limits_module
from holysheep_async.testing import MockServer

pytestmark = pytest.mark.anyio

EPS = 1e-6


# -- virtual time ---------------------------------------------------------------------


class _JumpingSelector:
    """A selector that, instead of blocking until the next timer, moves the clock to it."""

    def __init__(self, selector: selectors.BaseSelector, loop: VirtualTimeLoop) -> None:
        self._selector = selector
        self._loop = loop

    def select(self, timeout: float | None = None) -> list[Any]:
        events = self._selector.select(0)
        if events:
            return events
        if timeout is None:  # nothing scheduled: wait for real I/O (a thread finishing)
            return self._selector.select(None)
        # Time always moves a little, as a real clock does: aiolimiter reschedules a
        # timer "now" while float dust keeps its bucket a hair too full.
        self._loop.now += max(timeout, 1e-10)
        return []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._selector, name)


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    """asyncio with trio's autojump clock: sleeping costs no real time."""

    def __init__(self) -> None:
        super().__init__()
        self.now = 1000.0
        self._selector = _JumpingSelector(self._selector, self)  # type: ignore[has-type]

    def time(self) -> float:
        return self.now


FLAVOURS = ["asyncio-aiolimiter", "asyncio-anyio-bucket", "trio"]


def _backend(flavour: str) -> tuple[str, dict[str, Any]]:
    if flavour.startswith("asyncio"):
        return ("asyncio", {"loop_factory": VirtualTimeLoop})
    return ("trio", {"clock": trio.testing.MockClock(autojump_threshold=0)})


@pytest.fixture(params=FLAVOURS)
def flavour(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def anyio_backend(flavour: str) -> tuple[str, dict[str, Any]]:
    return _backend(flavour)


MakeLimiter = Callable[..., Limiter]


def _maker(flavour: str) -> MakeLimiter:
    def make(**kwargs: Any) -> Limiter:
        if flavour == "asyncio-anyio-bucket":
            # An injected clock makes the anyio bucket serve rpm on asyncio too.
            kwargs.setdefault("clock", anyio.current_time)
        return Limiter(**kwargs)

    return make


@pytest.fixture
def make(flavour: str) -> MakeLimiter:
    return _maker(flavour)


async def _run_all(
    limiter: Limiter, amounts: list[int], *, arrivals: list[float] | None = None
) -> list[tuple[float, Permit]]:
    """Start one task per amount (at ``arrivals`` offsets); return (grant time, permit) each."""
    start = anyio.current_time()
    grants: list[tuple[float, Permit]] = [(0.0, Permit(limiter, 0, 0.0))] * len(amounts)

    async def one(i: int) -> None:
        if arrivals is not None:
            await anyio.sleep(arrivals[i])
        permit = await limiter.acquire(amounts[i])
        grants[i] = (anyio.current_time() - start, permit)
        permit.release()

    async with anyio.create_task_group() as tg:
        for i in range(len(amounts)):
            tg.start_soon(one, i)
    return grants


# -- rpm: burst, then the pace -----------------------------------------------------------


async def test_rpm_sends_the_burst_at_once_then_one_per_interval(make: MakeLimiter) -> None:
    limiter = make(rpm=60, burst=3)
    grants = await _run_all(limiter, [0] * 8)
    times = sorted(t for t, _ in grants)
    assert times == pytest.approx([0, 0, 0, 1, 2, 3, 4, 5], abs=EPS)


async def test_rpm_cold_start_with_default_burst_is_small(make: MakeLimiter) -> None:
    limiter = make(rpm=600)  # default burst: one second's worth = 10
    assert limiter.burst == 10
    grants = await _run_all(limiter, [0] * 30)
    times = sorted(t for t, _ in grants)
    assert sum(1 for t in times if t < EPS) == 10
    # 10 per second after the burst: the 30th request waits 2 s, not 0.
    assert times[-1] == pytest.approx(2.0, abs=EPS)


async def test_rpm_never_exceeds_the_limit_over_any_minute(make: MakeLimiter) -> None:
    limiter = make(rpm=30, burst=2)
    arrivals = [(i * 7) % 50 / 3 for i in range(70)]  # uneven, overlapping arrivals
    grants = await _run_all(limiter, [0] * 70, arrivals=arrivals)
    times = sorted(t for t, _ in grants)
    for i, t in enumerate(times):
        in_window = sum(1 for u in times[i:] if u < t + 60 - EPS)
        assert in_window <= 30 + 2


async def test_waiting_is_measured_per_request_and_in_total(make: MakeLimiter) -> None:
    limiter = make(rpm=60, burst=1)
    grants = await _run_all(limiter, [0] * 4)
    waits = sorted(p.waited for _, p in grants)
    assert waits == pytest.approx([0, 1, 2, 3], abs=EPS)
    stats = limiter.stats()
    assert stats.requests == 4
    assert stats.waited == 3
    assert stats.total_wait == pytest.approx(6.0, abs=EPS)
    assert limiter.total_wait == stats.total_wait
    assert stats.max_wait == pytest.approx(3.0, abs=EPS)
    assert stats.in_flight == 0


# -- tpm: estimates, reconcile, overdraft ---------------------------------------------------


async def test_tpm_paces_by_tokens(make: MakeLimiter) -> None:
    # 600 tokens a minute = 10 per second; without rpm the bucket holds one second's worth.
    limiter = make(tpm=600)
    grants = await _run_all(limiter, [10, 10, 10, 10])
    assert sorted(t for t, _ in grants) == pytest.approx([0, 1, 2, 3], abs=EPS)
    assert limiter.stats().tokens_charged == 40


async def test_reconcile_refund_lets_the_next_request_go_sooner(make: MakeLimiter) -> None:
    limiter = make(tpm=600)
    first = await limiter.acquire(10)
    second_at: list[float] = []
    start = anyio.current_time()

    async def second() -> None:
        permit = await limiter.acquire(10)
        second_at.append(anyio.current_time() - start)
        permit.release()

    async with anyio.create_task_group() as tg:
        tg.start_soon(second)
        await anyio.sleep(0.25)
        first.reconcile(4)  # the answer used 4 tokens, not 10: 6 come back now
        first.release()
    assert first.tokens == 4
    # Without the refund it would go at 1.0 s; with it, as soon as 4 tokens have drained.
    assert second_at == [pytest.approx(0.4, abs=EPS)]
    stats = limiter.stats()
    assert (stats.tokens_charged, stats.tokens_refunded) == (20, 6)


async def test_reconcile_charge_delays_the_next_request(make: MakeLimiter) -> None:
    limiter = make(tpm=600)
    first = await limiter.acquire(10)
    first.reconcile(25)  # the answer used 15 more than estimated
    first.release()
    start = anyio.current_time()
    permit = await limiter.acquire(10)
    # 25 tokens in a 10-token bucket: it must drain to 0 before 10 more fit.
    assert anyio.current_time() - start == pytest.approx(2.5, abs=EPS)
    assert permit.waited == pytest.approx(2.5, abs=EPS)
    assert limiter.stats().tokens_charged == 35


async def test_reconcile_is_relative_to_what_was_charged(make: MakeLimiter) -> None:
    limiter = make(tpm=600)
    permit = await limiter.acquire(10)
    permit.reconcile(4)
    permit.reconcile(4)  # a second report of the same usage changes nothing
    assert limiter.stats().tokens_refunded == 6
    permit.reconcile(10)
    stats = limiter.stats()
    assert (stats.tokens_charged, stats.tokens_refunded) == (16, 6)


async def test_request_larger_than_the_token_bucket_waits_for_empty_then_goes(
    make: MakeLimiter,
) -> None:
    limiter = make(tpm=600)  # bucket: 10 tokens
    grants = await _run_all(limiter, [5, 30, 5], arrivals=[0, 0.01, 0.02])
    times = [t for t, _ in grants]
    # 5 at 0; 30 waits until the 5 drained (0.5 s) and overdraws; the last 5 waits until
    # the 30 drained to 5 (2.5 s more).
    assert times == pytest.approx([0.0, 0.5, 3.0], abs=EPS)


async def test_zero_tokens_skip_the_token_bucket(make: MakeLimiter) -> None:
    limiter = make(tpm=60)
    grants = await _run_all(limiter, [0] * 5)  # files and batch calls carry no estimate
    assert [t for t, _ in grants] == pytest.approx([0] * 5, abs=EPS)


# -- concurrency ---------------------------------------------------------------------------


async def test_concurrency_cap_holds(make: MakeLimiter) -> None:
    limiter = make(max_concurrency=3)
    in_flight = peak = done = 0

    async def one() -> None:
        nonlocal in_flight, peak, done
        permit = await limiter.acquire()
        in_flight += 1
        peak = max(peak, in_flight)
        assert limiter.in_flight == in_flight
        await anyio.sleep(1)
        in_flight -= 1
        permit.release()
        done += 1

    async with anyio.create_task_group() as tg:
        for _ in range(10):
            tg.start_soon(one)
    assert (peak, done, limiter.in_flight) == (3, 10, 0)


async def test_release_is_idempotent(make: MakeLimiter) -> None:
    limiter = make(max_concurrency=1)
    permit = await limiter.acquire()
    permit.release()
    permit.release()
    a = await limiter.acquire()
    with anyio.move_on_after(5) as scope:
        await limiter.acquire()  # a double release would have made room for this
    assert scope.cancelled_caught
    a.release()


# -- cancellation takes nothing --------------------------------------------------------------


async def test_cancelled_wait_takes_no_slot_no_tokens_no_pace(make: MakeLimiter) -> None:
    limiter = make(rpm=60, burst=1, tpm=6000, max_concurrency=2)
    held = await limiter.acquire(50)  # takes the rpm burst and 50 tokens
    with anyio.move_on_after(0.5) as scope:
        await limiter.acquire(50)  # waits for the rpm pace (1 s)
    assert scope.cancelled_caught
    stats = limiter.stats()
    assert (stats.requests, stats.in_flight, stats.tokens_charged) == (1, 1, 50)
    # The cancelled request took no pace: the next one still goes at 1 s, not 2 s.
    start = anyio.current_time()
    nxt = await limiter.acquire(50)
    assert anyio.current_time() - start == pytest.approx(0.5, abs=EPS)
    # ... and no slot: with both permits held, a third waits (cap 2 holds).
    with anyio.move_on_after(10) as scope:
        await limiter.acquire()
    assert scope.cancelled_caught
    held.release()
    nxt.release()
    assert limiter.stats().in_flight == 0


async def test_cancelled_while_waiting_for_pace_gives_back_its_tokens(make: MakeLimiter) -> None:
    limiter = make(rpm=60, burst=1, tpm=600)  # token bucket: 10 tokens
    await limiter.acquire(0)  # the pace is used up for 1 s
    with anyio.move_on_after(0.5) as scope:
        await limiter.acquire(10)  # tokens fit, then waits for the pace
    assert scope.cancelled_caught
    start = anyio.current_time()
    await limiter.acquire(10)
    # Had the cancelled request kept its 10 tokens, this would wait until 1.5 s.
    assert anyio.current_time() - start == pytest.approx(0.5, abs=EPS)


async def test_cancelled_while_waiting_for_a_slot_releases_nothing(make: MakeLimiter) -> None:
    limiter = make(max_concurrency=1)
    a = await limiter.acquire()
    with anyio.move_on_after(1):
        await limiter.acquire()
    a.release()
    assert limiter.in_flight == 0
    b = await limiter.acquire()  # the slot is free exactly once
    with anyio.move_on_after(1) as scope:
        await limiter.acquire()
    assert scope.cancelled_caught
    b.release()


# -- the shared 429 cooldown ---------------------------------------------------------------------


@pytest.mark.parametrize("limits", [{}, {"rpm": 6000, "tpm": 100_000, "max_concurrency": 50}])
async def test_cooldown_holds_every_task(make: MakeLimiter, limits: dict[str, Any]) -> None:
    limiter = make(**limits)
    start = anyio.current_time()
    limiter.cooldown(5, caller_waits=False)
    assert limiter.cooling_down
    grants = await _run_all(limiter, [10] * 20, arrivals=[i * 0.2 for i in range(20)])
    assert min(t for t, _ in grants) >= 5 - EPS
    assert anyio.current_time() - start >= 5 - EPS
    assert not limiter.cooling_down
    assert limiter.stats().cooldowns == 1


async def test_cooldown_sends_bucket_waiters_back_and_refunds(make: MakeLimiter) -> None:
    limiter = make(rpm=60, burst=1, tpm=600)
    await limiter.acquire(0)
    grants: list[float] = []

    async def waiter() -> None:
        await limiter.acquire(10)  # tokens fit, waits for the pace until 1 s
        grants.append(anyio.current_time())

    start = anyio.current_time()
    async with anyio.create_task_group() as tg:
        tg.start_soon(waiter)
        await anyio.sleep(0.5)
        limiter.cooldown(3, caller_waits=False)
        await anyio.wait_all_tasks_blocked()
        # The waiter's tokens went back while it waits for the cooldown (kept: 5 left).
        assert limiter._tokens is not None
        assert limiter._tokens.level == pytest.approx(0.0, abs=EPS)
    assert [t - start for t in grants] == [pytest.approx(3.5, abs=EPS)]


async def test_longer_cooldown_extends_shorter_never_shortens(make: MakeLimiter) -> None:
    limiter = make()
    start = anyio.current_time()
    limiter.cooldown(4, caller_waits=False)
    limiter.cooldown(1, caller_waits=False)
    limiter.cooldown(float("nan"))
    limiter.cooldown(-3)
    permit = await limiter.acquire()
    assert anyio.current_time() - start == pytest.approx(4, abs=EPS)
    assert permit.waited == pytest.approx(4, abs=EPS)
    assert limiter.stats().cooldowns == 2


async def test_the_task_that_reported_the_429_does_not_wait_twice(make: MakeLimiter) -> None:
    limiter = make()
    start = anyio.current_time()
    limiter.cooldown(4)  # this task sleeps its own retry backoff...
    await anyio.sleep(4)
    assert (await limiter.acquire()).waited == 0
    # ... while with a fake retry sleep it would not have waited at all: still no second wait.
    limiter.cooldown(4)
    assert (await limiter.acquire()).waited == 0
    assert (await limiter.acquire()).waited == 0  # e.g. its retry met a 503 and retries again
    # Another task still waits the cooldown out.
    others: list[float] = []

    async def other() -> None:
        others.append((await limiter.acquire()).waited)

    async with anyio.create_task_group() as tg:
        tg.start_soon(other)
    assert others == [pytest.approx(4, abs=EPS)]
    assert anyio.current_time() - start == pytest.approx(8, abs=EPS)


# -- configuration ------------------------------------------------------------------------------


def test_default_burst_is_one_second_of_rpm_at_least_one() -> None:
    assert Limiter(rpm=30).burst == 1
    assert Limiter(rpm=5700).burst == 95
    assert Limiter(rpm=0.5).burst == 1
    assert Limiter(rpm=600, burst=4).burst == 4
    assert Limiter().burst is None


def test_token_bucket_holds_the_same_share_of_a_minute_as_the_burst() -> None:
    limiter = Limiter(rpm=60, burst=5, tpm=6000)  # 5 requests = 5 s = 500 tokens
    assert limiter._tokens is not None
    assert limiter._tokens.capacity == 500
    assert limiter._tokens.rate == 100


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"rpm": 0}, "rpm must be a positive number"),
        ({"tpm": float("inf")}, "tpm must be a positive number"),
        ({"rpm": True}, "rpm must be a positive number"),
        ({"max_concurrency": 0}, "max_concurrency must be an int >= 1"),
        ({"rpm": 60, "burst": 0}, "burst must be an int >= 1"),
        ({"rpm": 60, "burst": 2.5}, "burst must be an int >= 1"),
        ({"burst": 5}, "it needs rpm"),
    ],
)
def test_bad_settings_are_named(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Limiter(**kwargs)
    with pytest.raises(ConfigurationError, match=message):
        AsyncClient(api_key="k", **kwargs)


def test_client_passes_burst_through() -> None:
    client = AsyncClient(api_key="k", rpm=120, burst=7, tpm=1000, max_concurrency=3)
    assert (client.limiter.rpm, client.limiter.burst) == (120, 7)
    assert (client.limiter.tpm, client.limiter.max_concurrency) == (1000, 3)


def test_estimate_counts_prompt_answer_and_choices() -> None:
    body: dict[str, object] = {"messages": [{"role": "user", "content": "x" * 40}]}
    assert estimate_tokens(body) == (40 + 16) // 4 + 1 + 256
    assert estimate_tokens({**body, "max_tokens": 10}) == 14 + 1 + 10
    assert estimate_tokens({**body, "max_completion_tokens": 7, "max_tokens": 10}) == 22
    assert estimate_tokens({**body, "max_tokens": 10, "n": 3}) == 15 + 30
    parts = [{"type": "text", "text": "y" * 80}, {"type": "image_url", "image_url": {}}]
    assert estimate_tokens({"messages": [{"role": "user", "content": parts}], "max_tokens": 1}) == (
        (80 + 16) // 4 + 1 + 1
    )


def test_leaky_bucket_with_an_injected_clock() -> None:
    now = [0.0]
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds
        await anyio.lowlevel.checkpoint()

    bucket = LeakyBucket(2, 0.5, clock=lambda: now[0], sleep=sleep)

    async def main() -> None:
        for _ in range(4):
            await bucket.acquire(1)

    anyio.run(main)
    assert slept == [2.0, 2.0]
    assert bucket.level == pytest.approx(2.0)
    with pytest.raises(ValueError, match="capacity and rate"):
        LeakyBucket(0, 1)


# -- property: no window ever sees more than capacity + rate * T ----------------------------------


def _window_violations(grants: list[tuple[float, int]], capacity: float, rate: float) -> list[str]:
    grants = sorted(grants)
    biggest = max((a for _, a in grants), default=0)
    bound = max(capacity, biggest)
    bad = []
    for i, (t0, _) in enumerate(grants):
        total = 0
        for t1, amount in grants[i:]:
            total += amount
            if total > bound + rate * (t1 - t0) + 1e-6:
                bad.append(f"{total} granted in [{t0:.3f}, {t1:.3f}]")
                break
    return bad


@settings(
    max_examples=max(10, settings().max_examples // 3),
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    rpm=st.sampled_from([6, 30, 60, 600]),
    burst=st.integers(1, 5),
    tpm=st.sampled_from([None, 120, 1000]),
    jobs=st.lists(
        st.tuples(st.floats(0, 20, allow_nan=False), st.integers(0, 40)), min_size=1, max_size=25
    ),
    cooldown=st.one_of(st.none(), st.tuples(st.floats(0, 10), st.floats(0.1, 5))),
)
def test_property_rate_never_exceeds_the_limit(
    flavour: str,
    rpm: int,
    burst: int,
    tpm: int | None,
    jobs: list[tuple[float, int]],
    cooldown: tuple[float, float] | None,
) -> None:
    backend, options = _backend(flavour)

    async def main() -> tuple[Limiter, list[tuple[float, Permit]], tuple[float, float] | None]:
        limiter = _maker(flavour)(rpm=rpm, burst=burst, tpm=tpm)
        origin = anyio.current_time()
        paused: list[tuple[float, float]] = []

        async def cool() -> None:
            assert cooldown is not None
            await anyio.sleep(cooldown[0])
            begin = anyio.current_time() - origin
            paused.append((begin, begin + cooldown[1]))
            limiter.cooldown(cooldown[1], caller_waits=False)

        async with anyio.create_task_group() as tg:
            if cooldown is not None:
                tg.start_soon(cool)
            grants = await _run_all(limiter, [a for _, a in jobs], arrivals=[t for t, _ in jobs])
        return limiter, grants, paused[0] if paused else None

    limiter, grants, pause = anyio.run(main, backend=backend, backend_options=options)
    assert _window_violations([(t, 1) for t, _ in grants], burst, rpm / 60) == []
    if tpm is not None:
        assert limiter._tokens is not None
        cap, rate = limiter._tokens.capacity, limiter._tokens.rate
        assert _window_violations([(t, p.tokens) for t, p in grants], cap, rate) == []
    if pause is not None:
        begin, end = pause
        assert [t for t, _ in grants if begin + EPS < t < end - EPS] == []
    # Liveness: every request was granted and gave its permit back.
    stats = limiter.stats()
    assert stats.requests == len(jobs)
    assert stats.in_flight == 0


# -- through the client: every request path goes through the limiter ----------------------------


class TestThroughTheClient:
    """Real emulator, real clocks: the limiter sees every request and holds streams' slots."""

    @pytest.fixture(params=["asyncio", "trio"])
    def anyio_backend(self, request: pytest.FixtureRequest) -> str:
        return str(request.param)

    @pytest.fixture
    async def capped(self, server: MockServer) -> AsyncIterator[AsyncClient]:
        async with AsyncClient(
            api_key="test-key", base_url=server.base_url, max_concurrency=1, tpm=10**6
        ) as c:
            yield c

    async def test_a_stream_holds_its_slot_until_it_ends(self, capped: AsyncClient) -> None:
        messages = [{"role": "user", "content": "hold"}]
        started = anyio.Event()
        async with capped.chat.stream(model="m", messages=messages) as stream:
            texts = stream.__aiter__()
            assert await texts.__anext__()  # mid-stream: the answer has started
            assert capped.limiter.in_flight == 1

            async def other() -> None:
                started.set()
                await capped.chat.create(model="m", messages=messages, max_tokens=2)

            async with anyio.create_task_group() as tg:
                tg.start_soon(other)
                await started.wait()
                await anyio.wait_all_tasks_blocked()
                # The other request is parked at the slot: no permit was handed out.
                assert capped.limiter.stats().requests == 1
                await stream.aclose()
        stats = capped.limiter.stats()
        assert (stats.requests, stats.in_flight) == (2, 0)

    async def test_usage_is_reconciled_for_create_and_stream(self, capped: AsyncClient) -> None:
        # Time stands still for the token bucket: every over-estimate is still in it
        # when the usage comes, so all of it is given back.
        bucket = capped.limiter._tokens
        assert bucket is not None
        bucket._clock = lambda: 0.0
        messages = [{"role": "user", "content": "count me"}]
        completion = await capped.chat.create(model="m", messages=messages, max_tokens=5)
        async with capped.chat.stream(model="m", messages=messages, max_tokens=5) as stream:
            async for _ in stream:
                pass
        assert completion.usage is not None and stream.usage is not None
        estimate = estimate_tokens({"messages": messages, "max_tokens": 5})
        stats = capped.limiter.stats()
        spent = completion.usage.total_tokens + stream.usage.total_tokens
        assert stats.tokens_charged - stats.tokens_refunded == spent
        assert stats.tokens_refunded == 2 * estimate - spent

    async def test_every_path_takes_a_permit_and_gives_it_back(self, capped: AsyncClient) -> None:
        with pytest.raises(NotFoundError):
            await capped._requester.request("GET", "/no-such-thing")
        await capped._requester.request(
            "POST",
            "/chat/completions",
            json={"model": "m", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 1},
        )
        stats = capped.limiter.stats()
        assert (stats.requests, stats.in_flight) == (2, 0)

    async def test_a_429_pauses_the_other_requests_through_the_cooldown(
        self, server: MockServer
    ) -> None:
        now = 50.0
        limiter_waits: list[float] = []
        backoff_started = anyio.Event()

        async def limiter_sleep(seconds: float) -> None:
            nonlocal now
            limiter_waits.append(seconds)
            now += seconds
            await anyio.lowlevel.checkpoint()

        async def retry_sleep(seconds: float) -> None:
            backoff_started.set()
            await anyio.lowlevel.checkpoint()

        async with AsyncClient(api_key="test-key", base_url=server.base_url) as client:
            client.limiter.clock = lambda: now
            client.limiter.sleep = limiter_sleep
            client._requester.sleep = retry_sleep
            messages = [{"role": "user", "content": "again"}]
            server.inject("status", status=429, headers={"retry-after": "7"})
            async with anyio.create_task_group() as tg:
                tg.start_soon(lambda: client.chat.create(model="m", messages=messages))
                await backoff_started.wait()
                assert client.limiter.cooling_down
                # A request starting now waits the server's 7 s in the limiter.
                await client.chat.create(model="m", messages=messages)
        # The request that got the 429 waited in its backoff only, not twice.
        assert limiter_waits == [7.0]
        assert client.limiter.stats().cooldowns == 1

    async def test_the_429_request_itself_never_waits_in_the_limiter(
        self, client: AsyncClient, server: MockServer
    ) -> None:
        """Its retry backoff is the wait (a test's fake sleep included), even after a 503."""
        limiter_waits: list[float] = []

        async def limiter_sleep(seconds: float) -> None:
            limiter_waits.append(seconds)

        client.limiter.sleep = limiter_sleep
        server.inject("status", status=429, headers={"retry-after": "2"})
        server.inject("status", status=503)
        await client.chat.create(model="m", messages=[{"role": "user", "content": "x"}])
        assert limiter_waits == []
        assert client.limiter.stats().cooldowns == 1


# Jobs: (arrival, estimated tokens, share of the estimate really used, seconds held, patience).
_Job = tuple[float, int, float, float, float | None]


@settings(
    max_examples=max(10, settings().max_examples // 3),
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    rpm=st.sampled_from([None, 6, 60, 600]),
    burst=st.integers(1, 4),
    tpm=st.sampled_from([None, 120, 1000]),
    cap=st.sampled_from([None, 1, 3]),
    jobs=st.lists(
        st.tuples(
            st.floats(0, 20),
            st.integers(0, 60),
            st.sampled_from([0.0, 0.1, 0.5, 1.0]),
            st.floats(0, 15),
            st.one_of(st.none(), st.floats(0.01, 10)),
        ),
        min_size=1,
        max_size=25,
    ),
)
def test_property_limits_hold_with_refunds_slots_and_cancellations(
    flavour: str,
    rpm: int | None,
    burst: int,
    tpm: int | None,
    cap: int | None,
    jobs: list[_Job],
) -> None:
    """Every limit at once, with the real usage reported late (a refund) and impatient callers.

    Token windows count what each request really used, at the moment it was
    granted: however late a refund comes, no window holds more than
    ``capacity + rate * T`` of real usage (the estimates bound it from above).
    """
    backend, options = _backend(flavour)
    burst_arg = burst if rpm else None

    async def main() -> tuple[Limiter, list[tuple[float, int, int]], int, int]:
        limiter = _maker(flavour)(rpm=rpm, burst=burst_arg, tpm=tpm, max_concurrency=cap)
        origin = anyio.current_time()
        grants: list[tuple[float, int, int]] = []  # (granted at, really used, estimated)
        holding = peak = 0

        async def one(
            arrival: float, tokens: int, used: float, hold: float, patience: float | None
        ) -> None:
            nonlocal holding, peak
            await anyio.sleep(arrival)
            permit: Permit | None = None
            with anyio.move_on_after(patience if patience is not None else math.inf):
                permit = await limiter.acquire(tokens)
            if permit is None:
                return  # gave up waiting: took nothing
            holding += 1
            peak = max(peak, holding)
            real = int(tokens * used)
            granted = anyio.current_time() - origin
            grants.append((granted, real, tokens))
            await anyio.sleep(hold)
            permit.reconcile(real)
            holding -= 1
            permit.release()

        async with anyio.create_task_group() as tg:
            for job in jobs:
                tg.start_soon(one, *job)
        return limiter, grants, peak, holding

    limiter, grants, peak, holding = anyio.run(main, backend=backend, backend_options=options)
    if cap is not None:
        assert peak <= cap
    if rpm is not None:
        assert _window_violations([(t, 1) for t, _, _ in grants], burst, rpm / 60) == []
    if tpm is not None:
        assert limiter._tokens is not None
        bucket = limiter._tokens
        # A request larger than the bucket overdraws it: that is the burst then.
        burst_tokens = max([bucket.capacity, *(est for _, _, est in grants)])
        ordered = sorted(grants)
        for i, (t0, _, _) in enumerate(ordered):
            total = 0
            for t1, real, _ in ordered[i:]:
                total += real
                allowed = burst_tokens + bucket.rate * (t1 - t0) + 1e-6
                assert total <= allowed, (t0, t1, total, allowed)
    stats = limiter.stats()
    assert stats.requests == len(grants) and stats.in_flight == 0 and holding == 0
    if tpm is not None:
        # Refunds give back at most the over-estimates (less what had drained).
        estimated = sum(est for _, _, est in grants)
        assert stats.tokens_charged == estimated
        assert 0 <= stats.tokens_refunded <= estimated - sum(real for _, real, _ in grants)


def test_a_late_refund_gives_back_only_what_has_not_drained() -> None:
    """Regression: a refund credited tokens whose estimate had drained already.

    A estimates 10 tokens at t=0 and really uses 1; by t=0.9 the bucket has
    drained to 1 and B takes 9. A full refund of 9 then would empty the bucket,
    so C would take 9 at once: 18 tokens really used at t=0.9 against a
    10-token bucket. Only 1 of A's 9 is still in the bucket to give back.
    """

    async def main() -> float:
        limiter = Limiter(tpm=600)  # 10 tokens, 10 a second
        start = anyio.current_time()
        a = await limiter.acquire(10)
        await anyio.sleep(0.9)
        await limiter.acquire(9)
        a.reconcile(1)
        await limiter.acquire(9)
        return anyio.current_time() - start

    clock = trio.testing.MockClock(autojump_threshold=0)
    granted = anyio.run(main, backend="trio", backend_options={"clock": clock})
    # Exactly as if A had been charged its real 1: C waits for 8 of B's 9 tokens to drain.
    assert granted == pytest.approx(0.9 + 0.8, abs=EPS)


@settings(max_examples=settings().max_examples)
@given(
    ops=st.lists(
        st.one_of(
            st.tuples(st.just("take"), st.integers(1, 30), st.sampled_from([0.0, 0.2, 0.5, 1.0])),
            st.tuples(st.just("wait"), st.floats(0, 3), st.just(0.0)),
            st.tuples(st.just("report"), st.integers(0, 20), st.just(0.0)),
        ),
        max_size=40,
    ),
    lows=st.sampled_from([2, 3, 64]),
)
def test_property_refunds_never_let_real_usage_past_the_rate(
    ops: list[tuple[str, float, float]], lows: int
) -> None:
    """The token bucket alone, one caller, a fake clock: any mix of takes, waits and refunds.

    ``take`` charges an estimate, of which ``share`` is really used; ``report``
    reconciles an earlier take with its real usage (a refund, at any later
    time). Windows of real usage at grant time stay within
    ``capacity + rate * T`` (the largest estimate, when it overdraws). ``lows``:
    how many low points the bucket keeps (few: the merging of old ones is exercised).
    """
    now = [0.0]

    async def sleep(seconds: float) -> None:
        now[0] += seconds
        await anyio.lowlevel.checkpoint()

    limiter = Limiter(tpm=600, clock=lambda: now[0], sleep=sleep)  # 10 tokens, 10 a second
    bucket = limiter._tokens
    assert bucket is not None
    taken: list[tuple[Permit, float, int, int]] = []  # (permit, granted at, real, estimate)

    async def main() -> None:
        for op, x, share in ops:
            if op == "take":
                permit = await limiter.acquire(int(x))
                taken.append((permit, now[0], int(x * share), int(x)))
            elif op == "wait":
                now[0] += x
            elif taken:
                permit, _, real, _ = taken[int(x) % len(taken)]
                permit.reconcile(real)  # a second report changes nothing

    saved, limits_module._MAX_LOWS = limits_module._MAX_LOWS, lows
    try:
        anyio.run(main)
    finally:
        limits_module._MAX_LOWS = saved
    grants = [(at, real, est) for _, at, real, est in taken]
    biggest = max([bucket.capacity, *(est for _, _, est in grants)]) if grants else 0
    for i, (t0, _, _) in enumerate(grants):
        total = 0
        for t1, real, _ in grants[i:]:
            total += real
            assert total <= biggest + bucket.rate * (t1 - t0) + 1e-6, (t0, t1, total)


def test_a_charge_after_a_withheld_refund_is_not_charged_twice() -> None:
    now = [0.0]

    async def sleep(seconds: float) -> None:
        now[0] += seconds
        await anyio.lowlevel.checkpoint()

    async def main() -> Limiter:
        limiter = Limiter(tpm=600, clock=lambda: now[0], sleep=sleep)  # 10 tokens, 10 a second
        permit = await limiter.acquire(10)
        now[0] += 5  # drained: the over-estimate is gone from the bucket
        permit.reconcile(4)  # nothing left to give back: 6 withheld
        assert limiter.stats().tokens_refunded == 0
        permit.reconcile(10)  # the 6 were counted all along: no charge
        assert limiter.stats().tokens_charged == 10
        permit.reconcile(12)  # 2 beyond the estimate: charged now
        return limiter

    limiter = anyio.run(main)
    assert (limiter.stats().tokens_charged, limiter._tokens.level if limiter._tokens else None) == (
        12,
        pytest.approx(2.0),
    )
