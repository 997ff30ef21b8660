"""The in-process limiter: :class:`Limiter`, the limits of one client in one process.

Every request the client sends first takes a :class:`~._permit.Permit` from
it; a stream keeps its permit until it ends. A limiter with every limit off
hands out permits without waiting. Its buckets are :mod:`._bucket`'s: the
request bucket ``aiolimiter``'s on asyncio, a :class:`~._bucket.LeakyBucket`
under trio or with an injected clock; the token bucket always a
:class:`~._bucket.LeakyBucket` (it refunds). A 429 answered with
``Retry-After`` calls :meth:`Limiter.cooldown` (see the package docstring).
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from functools import partial

import anyio

from .._compat import cross_loop_error, current_loop, loop_alive, running_library
from ._bucket import LeakyBucket, _AioBucket
from ._permit import Clock, LimiterStats, Permit, Sleep

__all__ = ["Limiter"]

# A limited acquire always costs a few scheduler turns; only longer counts as waiting.
_WAITED = 1e-3


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
