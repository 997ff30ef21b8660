"""Client-side limits: requests per minute, tokens per minute, requests in flight.

Every request the client sends first takes a :class:`Permit` from the
client's :class:`Limiter`; a stream keeps its permit until it ends. A limiter
with every limit off hands out permits without waiting.

The algorithm is a leaky bucket (the one ``aiolimiter`` implements): a bucket
of ``capacity`` drains continuously at ``rate`` per second, a request pours
its amount in, and waits while it would overflow. Over any window of ``T``
seconds at most ``capacity + rate * T`` goes through, so ``capacity`` (the
``burst``) is what a cold start may send at once, and the long-run rate is
never above the limit. A request larger than the whole bucket (a big
``max_tokens`` against a small token bucket) waits for an empty bucket and
then overdraws it, so it is delayed, never refused, and the rate still holds.

Tokens are charged at the estimate and corrected when the usage is known. A
refund gives back only what of the over-estimate is still in the bucket: as
the bucket drains, the over-estimate drains with it, and once the bucket has
run low it is gone (giving it back then would let a later burst past the
rate). The bucket keeps the low points of its level since each charge (a few
dozen numbers at most) to know how much that is.

On asyncio the request bucket is ``aiolimiter.AsyncLimiter``. ``aiolimiter``
calls ``asyncio.get_running_loop()``, so under trio (and whenever a clock is
injected) the same algorithm runs in :class:`LeakyBucket`, written on anyio.
The token bucket is always a :class:`LeakyBucket` because it must refund and
charge (``Permit.reconcile``), which ``aiolimiter`` has no API for.

A 429 answered with ``Retry-After`` calls :meth:`Limiter.cooldown`: until it
ends no request of this client starts, and requests already waiting in a
bucket are sent back to wait for the cooldown, so a burst of 429s does not
become a storm.
"""

from __future__ import annotations

import math
import time
from bisect import bisect_right
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from collections.abc import Mapping

import anyio

from ._compat import cross_loop_error, current_loop, loop_alive, running_library

__all__ = ["LeakyBucket", "Limiter", "LimiterStats", "Limits", "Permit", "estimate_tokens"]

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]

# Float dust left by ``level - elapsed * rate`` must not cost another sleep.
_EPSILON = 1e-9
# A limited acquire always costs a few scheduler turns; only longer counts as waiting.
_WAITED = 1e-3
# Low points a bucket keeps (older ones merge, which only makes refunds smaller).
_MAX_LOWS = 64


class Limits(Protocol):
    """What the client needs of a limiter; :class:`Limiter` (one process) and
    ``SharedLimiter`` (every process on one Redis, ``AsyncClient(shared_limits=...)``)
    both have it. ``learns_quota``: whether :meth:`observe` wants the response headers."""

    rpm: float | None
    tpm: float | None
    max_concurrency: int | None
    burst: int | None
    learns_quota: bool
    _gen: int  # which event loop's permits count (Limiter._bind); a permit remembers it

    async def acquire(self, tokens: int = 0) -> Permit: ...
    def cooldown(self, seconds: float, *, caller_waits: bool = True) -> None: ...
    @property
    def cooling_down(self) -> bool: ...
    def observe(self, permit: Permit, headers: Mapping[str, str]) -> None: ...
    def stats(self) -> LimiterStats: ...
    async def aclose(self) -> None: ...
    def _reconcile(self, permit: Permit, tokens_used: int) -> None: ...
    def _release(self, permit: Permit | None = None) -> None: ...


class Permit:
    """What one request took from the limiter.

    ``waited``: seconds spent waiting for it. ``tokens``: the tokens it is
    charged (the estimate, then the real usage once reconciled).
    ``reconcile(tokens)`` corrects the estimate with the real usage (a refund
    when less, a charge when more); ``release()`` frees the concurrency slot
    (idempotent).
    """

    __slots__ = ("_gen", "_limiter", "_mark", "_released", "_withheld", "tokens", "waited")

    def __init__(self, limiter: Limits, tokens: int, waited: float, mark: int = -1) -> None:
        self._limiter = limiter
        self._gen = limiter._gen  # the event loop it was taken on (see Limiter._bind)
        self._released = False
        self.tokens = tokens
        self.waited = waited
        self._mark = mark  # the token bucket's pour of these tokens
        self._withheld = 0.0  # over-estimate not given back (it had drained already)

    def reconcile(self, tokens_used: int) -> None:
        self._limiter._reconcile(self, tokens_used)

    def release(self) -> None:
        if not self._released:
            self._released = True
            self._limiter._release(self)

    def __repr__(self) -> str:
        state = "released" if self._released else "held"
        return f"<Permit tokens={self.tokens} waited={self.waited:.3f}s {state}>"


class LeakyBucket:
    """A leaky bucket on anyio: the algorithm of ``aiolimiter.AsyncLimiter``, any backend.

    ``capacity``: what may go through at once; ``rate``: units drained per
    second. Waiters are served first come, first served. ``clock`` and
    ``sleep`` default to ``anyio.current_time`` / ``anyio.sleep``; tests pass
    a fake pair.

    >>> bucket = LeakyBucket(capacity=2, rate=0.5)  # 30 per minute, 2 at once
    >>> await bucket.acquire(1)  # doctest: +SKIP
    """

    __slots__ = (
        "_clock",
        "_last",
        "_level",
        "_lock",
        "_lows",
        "_seq",
        "_sleep",
        "_waker",
        "capacity",
        "rate",
    )

    def __init__(
        self,
        capacity: float,
        rate: float,
        *,
        clock: Clock | None = None,
        sleep: Sleep | None = None,
    ) -> None:
        if not capacity > 0 or not rate > 0:
            raise ValueError(f"capacity and rate must be > 0, got {capacity!r}, {rate!r}")
        self.capacity = float(capacity)
        self.rate = float(rate)
        self._clock = clock or anyio.current_time
        self._sleep = sleep or anyio.sleep
        self._level = 0.0
        self._last = 0.0
        self._lock = _lock()
        # The sleeping head waiter, woken early when a refund makes room.
        self._waker: anyio.CancelScope | None = None
        # (event number, level) at the level's low points (just before each pour,
        # just after each refund), levels rising: the first entry after an event is
        # the lowest the level has been since (``refund``).
        self._lows: list[tuple[int, float]] = []
        self._seq = 0

    def rebind(self, shift: float) -> None:
        """Carry on in another event loop whose clock reads ``shift`` more (same level).

        A new lock (the old one may belong to the old loop's library); no waiter
        survives its loop.
        """
        self._last += shift
        self._lock = _lock()
        self._waker = None

    def _leak(self) -> None:
        now = self._clock()
        if self._level:
            self._level = max(0.0, self._level - (now - self._last) * self.rate)
        self._last = now

    @property
    def level(self) -> float:
        """How full the bucket is now (above ``capacity`` after an overdraft)."""
        self._leak()
        return self._level

    def _low_point(self) -> None:
        """Note the level now (just leaked) as a low point."""
        lows, level = self._lows, self._level
        while lows and lows[-1][1] >= level:
            lows.pop()
        if len(lows) >= _MAX_LOWS:
            # Merge the two oldest: the lower level now covers both spans (safe side).
            lows[0:2] = [(lows[1][0], lows[0][1])]
        lows.append((self._seq, level))
        self._seq += 1

    def has_capacity(self, amount: float = 1) -> bool:
        self._leak()
        return self._level <= max(0.0, self.capacity - amount) + _EPSILON

    async def acquire(
        self, amount: float = 1, *, then: Callable[[], Awaitable[object]] | None = None
    ) -> int:
        """Wait until ``amount`` fits, then take it. Cancelled while waiting: takes nothing.

        ``then``: awaited once ``amount`` fits, with the bucket held, and the
        amount is taken when it returns. The limiter waits for the request pace
        there, so tokens are spent at the moment the request goes, not earlier
        (tokens taken early and sent late would bunch up past the limit).
        Returns the pour's mark, for :meth:`refund`.
        """
        if amount < 0:
            raise ValueError(f"amount must be >= 0, got {amount!r}")
        await self._lock.acquire()
        try:
            while True:
                self._leak()
                excess = self._level - max(0.0, self.capacity - amount)
                if excess <= _EPSILON:
                    break
                try:
                    with anyio.CancelScope() as self._waker:
                        await self._sleep(excess / self.rate)
                finally:
                    self._waker = None
            if then is not None:
                await then()  # the level only drains meanwhile: the amount still fits
                self._leak()
            # Nothing may await between this line and returning: a cancellation
            # must never arrive after the amount was taken.
            self._low_point()
            self._level += amount
            mark = self._seq
            self._seq += 1
            return mark
        finally:
            self._lock.release()

    def adjust(self, delta: float) -> None:
        """Pour in ``delta`` more (a charge) or take it back out (``delta < 0``, unconditional)."""
        self._leak()
        self._low_point()
        self._level = max(0.0, self._level + delta)
        if delta < 0:
            self._after_refund(-delta, self._seq - 1)

    def refund(self, amount: float, mark: int) -> float:
        """Give back up to ``amount`` of the pour ``mark`` (from :meth:`acquire`); return how much.

        Only what is still in the bucket: taking ``amount`` out of that pour
        would have lowered the level since by ``amount``, or to zero where the
        level was lower than that, so the level now falls by ``amount`` capped
        at the lowest the level has been since the pour.
        """
        if amount <= 0:
            return 0.0
        self._leak()
        lows = self._lows
        i = bisect_right(lows, (mark, math.inf))
        lowest = min(self._level, lows[i][1]) if i < len(lows) else self._level
        give = min(amount, lowest)
        if give <= 0:
            return 0.0
        self._level -= give
        self._after_refund(amount, mark)
        return give

    def _after_refund(self, amount: float, mark: int) -> None:
        # The level since ``mark`` was lower by up to ``amount``: lower the low points
        # by all of it (the safe side: later refunds can only come out smaller), and
        # drop older ones no longer below everything after them.
        lows = self._lows
        i = bisect_right(lows, (mark, math.inf))
        for j in range(i, len(lows)):
            seq, level = lows[j]
            lows[j] = (seq, max(0.0, level - amount))
        keep: list[tuple[int, float]] = []
        floor = math.inf
        for entry in reversed(lows):
            if entry[1] < floor:
                keep.append(entry)
                floor = entry[1]
        keep.reverse()
        self._lows = keep
        self._low_point()
        if self._waker is not None:
            self._waker.cancel()

    def __repr__(self) -> str:
        return (
            f"<LeakyBucket capacity={self.capacity:g} rate={self.rate:g}/s level={self._level:.3f}>"
        )


class _AioBucket:
    """``aiolimiter.AsyncLimiter`` as a request bucket (asyncio only, no refunds)."""

    __slots__ = ("_limiter",)

    def __init__(self, capacity: float, rate: float) -> None:
        from aiolimiter import AsyncLimiter

        # AsyncLimiter(max_rate, time_period) holds max_rate and drains
        # max_rate / time_period per second: capacity and rate as we mean them.
        self._limiter = AsyncLimiter(capacity, capacity / rate)

    async def acquire(self, amount: float = 1) -> None:
        await self._limiter.acquire(amount)

    # aiolimiter keeps its level and last check (asyncio loop time, i.e. time.monotonic)
    # in private attributes; without them a carried-over bucket starts full (the safe side).
    def level(self) -> float:
        """The level now, read outside any loop (to carry it to the next loop's bucket)."""
        lim = self._limiter
        level = getattr(lim, "_level", None)
        last = getattr(lim, "_last_check", None)
        if level is None or last is None:
            return float(lim.max_rate)
        rate = lim.max_rate / lim.time_period
        return max(0.0, float(level) - (time.monotonic() - float(last)) * rate)

    def preset(self, level: float) -> None:
        lim = self._limiter
        if hasattr(lim, "_level") and hasattr(lim, "_last_check"):
            lim._level = level
            lim._last_check = time.monotonic()


@dataclass(frozen=True)
class LimiterStats:
    """A snapshot of a limiter's counters (``client.limiter.stats()``)."""

    #: Permits handed out.
    requests: int
    #: Of those, how many waited a millisecond or more.
    waited: int
    #: Seconds spent waiting, summed over requests, and the longest single wait.
    total_wait: float
    max_wait: float
    #: Permits taken and not yet released (streams hold theirs until they end).
    in_flight: int
    #: 429 cooldowns reported, and whether one is running now.
    cooldowns: int
    cooling_down: bool
    #: Tokens charged to the tpm budget (estimates plus reconciled extra) and refunded
    #: (the part of an over-estimate still in the bucket when the usage came; rounded).
    tokens_charged: int
    tokens_refunded: int


def _lock() -> anyio.Lock:
    # fast_acquire (anyio >= 4.5) skips the scheduler turn when nobody waits: 1 us, not 10.
    try:
        return anyio.Lock(fast_acquire=True)
    except TypeError:  # pragma: no cover - anyio 4.4
        return anyio.Lock()


def _semaphore(value: int) -> anyio.Semaphore:
    try:
        return anyio.Semaphore(value, fast_acquire=True)
    except TypeError:  # pragma: no cover - anyio 4.4
        return anyio.Semaphore(value)


def _positive(name: str, value: object) -> None:
    if value is not None and (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or value <= 0
    ):
        raise ValueError(f"{name} must be a positive number or None, got {value!r}")


def _current_task_id() -> int | None:
    try:
        return anyio.get_current_task().id
    except Exception:  # outside a task: no id
        return None


class Limiter:
    """Requests per minute (``rpm``), tokens per minute (``tpm``), in flight (``max_concurrency``).

    ``burst``: how many requests may start at once before the rpm pace sets
    in (default: one second's worth of ``rpm``, at least 1); the token bucket
    holds the same share of a minute of ``tpm`` (one second's worth without
    ``rpm``). ``clock`` / ``sleep``: time source for the buckets and cooldowns
    (default ``anyio.current_time`` / ``anyio.sleep``; injecting either one
    makes the anyio bucket serve rpm on asyncio too).

    >>> limiter = Limiter(rpm=30, max_concurrency=10)
    >>> permit = await limiter.acquire(tokens=300)  # doctest: +SKIP
    >>> permit.reconcile(120)  # doctest: +SKIP  (usage.total_tokens: 180 refunded)
    >>> permit.release()  # doctest: +SKIP
    """

    def __init__(
        self,
        *,
        rpm: float | None = None,
        tpm: float | None = None,
        max_concurrency: int | None = None,
        burst: int | None = None,
        clock: Clock | None = None,
        sleep: Sleep | None = None,
    ) -> None:
        _positive("rpm", rpm)
        _positive("tpm", tpm)
        if max_concurrency is not None and (
            isinstance(max_concurrency, bool)
            or not isinstance(max_concurrency, int)
            or max_concurrency < 1
        ):
            raise ValueError(
                f"max_concurrency must be an int >= 1 or None, got {max_concurrency!r}"
            )
        if burst is not None:
            if isinstance(burst, bool) or not isinstance(burst, int) or burst < 1:
                raise ValueError(f"burst must be an int >= 1 or None, got {burst!r}")
            if rpm is None:
                raise ValueError("burst sets how many requests may start at once: it needs rpm")
        self.rpm = rpm
        self.tpm = tpm
        self.max_concurrency = max_concurrency
        self.burst = burst if burst is not None else max(1, int(rpm // 60)) if rpm else None
        self._injected = clock is not None or sleep is not None
        self.clock: Clock = clock or anyio.current_time
        self.sleep: Sleep = sleep or anyio.sleep
        self._slots = _semaphore(max_concurrency) if max_concurrency else None
        # Seconds of a minute's quota the buckets hold at once.
        share = self.burst / rpm * 60.0 if rpm and self.burst else 1.0
        self._tokens = (
            LeakyBucket(max(1.0, tpm * share / 60.0), tpm / 60.0, clock=clock, sleep=sleep)
            if tpm
            else None
        )
        # The request bucket is built on first use, for the backend running then.
        self._requests: _AioBucket | LeakyBucket | None = None
        self._requests_backend = ""
        self._carried = 0.0  # the level the next request bucket starts at (see _bind)
        # The event loop the semaphore, lock and buckets work on, a count of the loops
        # so far (permits carry theirs) and the default clock's offset from monotonic.
        self._loop: object | None = None
        self._gen = 0
        self._offset = 0.0
        self._plain = rpm is None and tpm is None and max_concurrency is None
        self._buckets = rpm is not None or tpm is not None
        self._paused_until = 0.0
        # Tasks that reported a 429 and wait it out in their own retry backoff.
        self._self_waiting: dict[int, float] = {}
        self._waiting: set[anyio.CancelScope] = set()
        #: Total seconds requests spent waiting in this limiter.
        self.total_wait = 0.0
        self.max_wait = 0.0
        self.requests = 0
        self.waited = 0
        self.in_flight = 0
        self.cooldowns = 0
        self.tokens_charged = 0
        self.tokens_refunded = 0
        # Exact sums behind them (refunds and late charges may be fractions of a token).
        self._charged_early = 0
        self._charged_late = 0.0
        self._refunded = 0.0

    def _after_fork(self) -> object:
        """In a forked child: start afresh, as a new limiter with the same settings.

        Full buckets, no cooldown, no permits in flight (the parent's are the
        parent's), counters at zero. Each process has limits of its own; a
        quota for all of them is what ``shared_limits=`` is for.
        """
        forgotten, gen = dict(vars(self)), self._gen
        injected = self._injected
        Limiter.__init__(
            self,
            rpm=self.rpm,
            tpm=self.tpm,
            max_concurrency=self.max_concurrency,
            burst=self.burst if self.rpm else None,
            clock=self.clock if injected else None,
            sleep=self.sleep if injected else None,
        )
        self._gen = gen + 1  # a permit of the parent's never counts here
        return forgotten

    def __repr__(self) -> str:
        return (
            f"<Limiter rpm={self.rpm} tpm={self.tpm} max_concurrency={self.max_concurrency}"
            f" burst={self.burst} in_flight={self.in_flight}>"
        )

    # -- taking permits ------------------------------------------------------------

    async def acquire(self, tokens: int = 0) -> Permit:
        """Wait for every limit that is on, then return the request's :class:`Permit`.

        Order: a concurrency slot, then the end of any cooldown, then room for
        the tokens, then the request pace; tokens and pace are taken at the
        same moment, when the request goes. Cancelled while waiting, it takes
        nothing.
        """
        if self._plain and not self._paused_until:
            # The hot path: every limit off, no cooldown. Keep it this short.
            self.requests += 1
            self.in_flight += 1
            return Permit(self, tokens, 0.0)
        return await self._acquire(tokens)

    def _bind(self) -> None:
        """Work on the running event loop: on a new one, rebuild what was bound to the last.

        The semaphore and locks belong to the loop (and library) they were first
        used on; deadlines are in that loop's clock (trio's has an offset of its
        own per run). On a new loop, once the last one has ended, the buckets
        keep their levels (the rates hold across ``asyncio.run`` calls) with
        their times moved to the new clock, a cooldown keeps its end, and the
        concurrency slots start afresh (permits of the ended loop no longer
        count). A last loop still running in another thread: a clear error.
        """
        loop = current_loop()
        if loop is self._loop or loop is None:
            return
        old, self._loop = self._loop, loop
        now = time.monotonic()
        if old is None:
            if not self._injected and loop is not None:
                self._offset = self.clock() - now
            return
        if loop_alive(old):
            self._loop = old
            raise cross_loop_error("rate and concurrency limits")
        shift = 0.0
        if not self._injected and loop is not None:
            offset = self.clock() - now
            shift, self._offset = offset - self._offset, offset
        self._gen += 1
        self.in_flight = 0
        if self._slots is not None:
            self._slots = _semaphore(self.max_concurrency or 1)
        self._waiting = set()
        self._self_waiting.clear()
        if self._paused_until:
            self._paused_until += shift
        if self._tokens is not None:
            self._tokens.rebind(shift)
        bucket, self._requests = self._requests, None
        if isinstance(bucket, _AioBucket):
            self._carried = bucket.level()
        elif bucket is not None:
            bucket.rebind(shift)
            self._carried = bucket.level

    async def _acquire(self, tokens: int) -> Permit:
        self._bind()
        clock = self.clock
        start = clock()
        slots = self._slots
        if slots is not None:
            await slots.acquire()
        mark: int | None = -1
        try:
            while True:
                if self._paused_until:
                    await self._wait_cooldown()
                if not self._buckets:
                    break
                mark = await self._fill(tokens)
                if mark is not None:
                    break
        except BaseException:
            if slots is not None:
                slots.release()
            raise
        waited = max(0.0, clock() - start)
        self.requests += 1
        self.in_flight += 1
        if tokens and self._tokens is not None:
            self._charged_early += tokens
            self.tokens_charged = self._charged_early + round(self._charged_late)
        if waited:
            self.total_wait += waited
            self.max_wait = max(self.max_wait, waited)
            if waited >= _WAITED:
                self.waited += 1
        return Permit(self, tokens, waited, -1 if mark is None else mark)

    async def _fill(self, tokens: int) -> int | None:
        """Take ``tokens`` and one request's pace together.

        Returns the token bucket's mark of the pour (-1: no tokens poured), or
        None when a cooldown interrupted.
        """
        token_bucket = self._tokens
        requests = self._request_bucket()
        mark = -1
        with anyio.CancelScope() as scope:
            self._waiting.add(scope)
            try:
                if token_bucket is not None and tokens > 0:
                    pace = partial(requests.acquire, 1) if requests is not None else None
                    mark = await token_bucket.acquire(tokens, then=pace)
                elif requests is not None:
                    await requests.acquire(1)
            finally:
                self._waiting.discard(scope)
        return None if scope.cancelled_caught else mark

    def _request_bucket(self) -> _AioBucket | LeakyBucket | None:
        if self.rpm is None:
            return None
        backend = "anyio" if self._injected else running_library()
        if backend != self._requests_backend or self._requests is None:
            assert self.burst is not None
            capacity, rate = float(self.burst), self.rpm / 60.0
            bucket = (
                _AioBucket(capacity, rate)
                if backend == "asyncio"
                else LeakyBucket(capacity, rate, clock=self.clock, sleep=self.sleep)
            )
            if self._carried:
                if isinstance(bucket, _AioBucket):
                    bucket.preset(self._carried)
                else:
                    bucket.adjust(self._carried)
                self._carried = 0.0
            self._requests = bucket
            self._requests_backend = backend
        return self._requests

    # -- the shared 429 cooldown ---------------------------------------------------

    def cooldown(self, seconds: float, *, caller_waits: bool = True) -> None:
        """Hold every request of this client for ``seconds`` (a 429's ``Retry-After``).

        A later, longer cooldown extends it; a shorter one never shortens it.
        Requests waiting in a bucket go back to wait for the cooldown.
        ``caller_waits``: the calling task waits the time out itself (the
        requester sleeps its retry backoff right after reporting the 429), so
        its own acquires during this cooldown do not wait a second time (with
        a real clock the pause is over by then anyway; with a test's fake
        retry sleep it is not, and the retry must not wait in real time).
        """
        if not (isinstance(seconds, (int, float)) and math.isfinite(seconds)) or seconds <= 0:
            return
        self._bind()
        until = self.clock() + seconds
        self.cooldowns += 1
        if until > self._paused_until:
            self._paused_until = until
        if caller_waits:
            task = _current_task_id()
            if task is not None:
                self._self_waiting[task] = until
        for scope in self._waiting:
            scope.cancel()

    @property
    def cooling_down(self) -> bool:
        """Whether a 429 cooldown holds requests now (False outside an event loop)."""
        if not self._paused_until:
            return False
        try:
            self._bind()  # the cooldown's end in this loop's clock
            return self.clock() < self._paused_until
        except RuntimeError:  # the default clock needs a running event loop
            return False

    async def _wait_cooldown(self) -> None:
        while self._paused_until:
            now = self.clock()
            until = self._paused_until
            if now >= until:
                self._paused_until = 0.0
                self._self_waiting.clear()
                return
            if self._self_waiting:
                # For the whole pause: its retry may meet a 5xx and back off again.
                task = _current_task_id()
                if task is not None and self._self_waiting.get(task, -math.inf) >= until:
                    return
            await self.sleep(until - now)

    # -- giving back ---------------------------------------------------------------

    def _reconcile(self, permit: Permit, tokens_used: int) -> None:
        delta = tokens_used - permit.tokens
        permit.tokens = tokens_used
        bucket = self._tokens
        if bucket is None or not delta:
            return
        if delta < 0:
            given = bucket.refund(-delta, permit._mark) if permit._mark >= 0 else 0.0
            permit._withheld += -delta - given
            self._refunded += given
            self.tokens_refunded = round(self._refunded)
            return
        # More than estimated. What was withheld from an earlier refund is still
        # counted in the bucket (it drained as used): only the rest is charged now.
        absorbed = min(float(delta), permit._withheld)
        permit._withheld -= absorbed
        charge = delta - absorbed
        if charge > 0:
            bucket.adjust(charge)
            self._charged_late += charge
            self.tokens_charged = self._charged_early + round(self._charged_late)

    def _release(self, permit: Permit | None = None) -> None:
        if permit is not None and permit._gen != self._gen:
            return  # taken on an event loop that is gone: its slot went with it
        self.in_flight -= 1
        if self._slots is not None:
            self._slots.release()

    #: One process's limits learn nothing from the server's headers (see SharedLimits).
    learns_quota = False

    def observe(self, permit: Permit, headers: Mapping[str, str]) -> None:
        """Nothing to do in one process (the shared limiter learns the server's quota)."""

    async def aclose(self) -> None:
        """Nothing to close (the shared limiter closes its Redis connection)."""

    def stats(self) -> LimiterStats:
        """The counters now: requests, waits, in flight, cooldowns, tokens."""
        return LimiterStats(
            requests=self.requests,
            waited=self.waited,
            total_wait=self.total_wait,
            max_wait=self.max_wait,
            in_flight=self.in_flight,
            cooldowns=self.cooldowns,
            cooling_down=self.cooling_down,
            tokens_charged=self.tokens_charged,
            tokens_refunded=self.tokens_refunded,
        )


def estimate_tokens(body: dict[str, object]) -> int:
    """A request's token cost estimated before sending: prompt estimate plus ``max_tokens``.

    The prompt is counted at about four characters per token (no tokenizer
    download); the answer at ``max_completion_tokens`` / ``max_tokens``, or 256
    when neither is set, times ``n`` choices. The real usage corrects it
    afterwards (``Permit.reconcile``).
    """
    chars = 0
    messages = body.get("messages")
    if isinstance(messages, list):
        for message in messages:
            if isinstance(message, dict):
                content = message.get("content")
                if isinstance(content, str):
                    chars += len(content)
                elif isinstance(content, list):
                    for part in content:
                        if isinstance(part, dict) and isinstance(part.get("text"), str):
                            chars += len(part["text"])
                chars += 16  # role and framing
    answer = body.get("max_completion_tokens") or body.get("max_tokens")
    out = answer if isinstance(answer, int) and answer > 0 else 256
    n = body.get("n")
    if isinstance(n, int) and not isinstance(n, bool) and n > 1:
        out *= n
    return chars // 4 + 1 + out
