"""The leaky bucket, on anyio (:class:`LeakyBucket`) and on ``aiolimiter`` (asyncio only).

A bucket of ``capacity`` drains continuously at ``rate`` per second, a request
pours its amount in, and waits while it would overflow (see the package
docstring for what that guarantees, and for refunds, which only
:class:`LeakyBucket` has).
"""

from __future__ import annotations

import math
import time
from bisect import bisect_right
from collections.abc import Awaitable, Callable

import anyio

from ._permit import Clock, Sleep

__all__ = ["LeakyBucket"]

# Float dust left by ``level - elapsed * rate`` must not cost another sleep.
_EPSILON = 1e-9
# Low points a bucket keeps (older ones merge, which only makes refunds smaller).
_MAX_LOWS = 64


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


def _lock() -> anyio.Lock:
    # fast_acquire (anyio >= 4.5) skips the scheduler turn when nobody waits: 1 us, not 10.
    try:
        return anyio.Lock(fast_acquire=True)
    except TypeError:  # pragma: no cover - anyio 4.4
        return anyio.Lock()
