"""Limits shared by every process and machine on one Redis: ``AsyncClient(shared_limits=...)``.

The same limits as :class:`~holysheep_async.limits.Limiter` (rpm with burst,
tpm estimated then reconciled, a concurrency cap, the 429 cooldown), held in
Redis so that they count for the whole fleet. Each operation is one Lua script
under ``_lua/``, atomic and timed by Redis's own clock (``TIME``), so machines
with skewed clocks still share one pace:

- the request and token buckets are GCRA, the leaky bucket kept as one number,
  the moment the bucket will be empty (``acquire.lua``, ``adjust.lua``);
- a concurrency slot is a lease in a sorted set, scored by its expiry. A live
  process renews its leases every third of ``lease_ttl``; a process that dies
  stops renewing and its slots come back within ``lease_ttl`` (``leases.lua``);
- a 429 (or a rate-limit error inside a stream) stores the pause's end, which
  every client's next acquire honours (``cooldown.lua``);
- with ``learn_quota``, what the server's ``x-ratelimit-remaining-*`` headers
  say is left caps what the fleet may take until their ``reset`` (``observe.lua``).

Every key has a TTL (a lost key is a full bucket, the safe default after a
Redis restart or flush) and all keys of a namespace share a ``{hash tag}``, so
they live in one Redis Cluster slot. Waiters of one process queue locally
(first come, first served): only the head one calls Redis, and it sleeps for
the wait the script computed; there is no polling storm.

``Permit.release``, ``Permit.reconcile`` and ``cooldown`` are plain calls (the
request path cannot wait on Redis there): they take effect locally at once and
are sent to Redis by one background task per process and event loop, which
also renews the leases. The Redis connection and that task are created lazily
in the running event loop (asyncio or trio, through coredis on anyio).

When Redis fails (down, slow, restarted): every call has a short timeout; a
failure logs one warning and the limiter switches to ``on_error``: ``"local"``
(default: an in-process :class:`Limiter` at ``local_share`` of each limit),
``"open"`` (no limits) or ``"closed"`` (acquire raises
:class:`~holysheep_async.errors.SharedLimitsError`). Every ``retry_after``
seconds one request tries Redis again; when it answers, the shared limits are
back (logged once).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import math
import sys
import uuid
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from importlib import resources
from typing import Any

import anyio
import httpx

from .._compat import running_library
from ..errors import ConfigurationError, SharedLimitsError
from ._local import Limiter, _current_task_id
from ._permit import Clock, LimiterStats, Permit, Sleep
from ._shared_config import SharedLimits, _header_int, _safe_url, parse_reset

__all__ = ["SharedLimiter", "SharedPermit"]

log = logging.getLogger("holysheep_async")

_US = 1_000_000
# Waiting requests one script call may grant at once.
_BATCH = 64


def _script(name: str) -> str:
    return resources.files(__package__).joinpath("_lua").joinpath(name).read_text(encoding="utf-8")


_SCRIPTS = ("acquire", "adjust", "leases", "cooldown", "observe")


class SharedPermit(Permit):
    """A permit from Redis: its lease and where its tokens went in the bucket."""

    __slots__ = ("_lease", "_poured_r", "_poured_tat", "_seq", "granted_at")

    def __init__(
        self,
        limiter: SharedLimiter,
        tokens: int,
        waited: float,
        lease: str,
        poured_tat: int,
        poured_r: float,
        seq: int,
        granted_at: int = 0,
    ) -> None:
        super().__init__(limiter, tokens, waited)
        #: When Redis granted it (Redis time, microseconds).
        self.granted_at = granted_at
        self._lease = lease
        self._poured_tat = poured_tat
        self._poured_r = poured_r
        self._seq = seq


class _Waiter:
    """One acquire waiting in its process's queue, and its answer once there is one."""

    __slots__ = ("event", "lease", "outcome", "skip", "slept", "tokens")

    def __init__(self, tokens: int, lease: str, skip: int) -> None:
        self.tokens = tokens
        self.lease = lease
        self.skip = skip
        self.slept = False
        self.event = anyio.Event()
        #: (tokens TAT after the pour, refunded so far, grant seq, granted at) or the error.
        self.outcome: tuple[int, float, int, int] | BaseException | None = None


class _Runtime:
    """What belongs to one event loop: the Redis client, the background task, local queue."""

    def __init__(self, token: object) -> None:
        self.token = token
        self.redis: Any = None
        self.scripts: dict[str, Any] = {}
        self.ready = anyio.Event()
        self.wake = anyio.Event()
        self.waiters: deque[_Waiter] = deque()  # first come, first served
        self.serving = False  # a head waiter is talking to Redis for the queue
        self.next_try = 0.0  # when the next head should call Redis (local clock)
        self.flushing = anyio.Lock()
        self.head: anyio.CancelScope | None = None  # the sleeping head waiter
        self.task: object = None  # keeps an asyncio task referenced
        self.alive = False
        self.closing = False
        self.done = anyio.Event()


class SharedLimiter:
    """Limits held in Redis for every client on the same namespace (see the module docstring).

    >>> limiter = SharedLimiter(SharedLimits("redis://localhost:6379/0"), "my-app", rpm=600)
    >>> permit = await limiter.acquire(tokens=300)  # doctest: +SKIP
    """

    learns_quota: bool

    def __init__(
        self,
        config: SharedLimits,
        namespace: str,
        *,
        rpm: float | None = None,
        tpm: float | None = None,
        max_concurrency: int | None = None,
        burst: int | None = None,
        clock: Clock | None = None,
        sleep: Sleep | None = None,
        redis_time: Callable[[], int] | None = None,
    ) -> None:
        # The in-process limiter checks the arguments and holds the local 429 pause.
        local = Limiter(
            rpm=rpm, tpm=tpm, max_concurrency=max_concurrency, burst=burst, clock=clock, sleep=sleep
        )
        try:
            import coredis  # noqa: F401
        except ImportError:
            raise ConfigurationError(
                "shared_limits needs the Redis client: pip install 'holysheep-async[redis]'"
            ) from None
        if not isinstance(namespace, str) or not namespace:
            raise ConfigurationError(f"limits_namespace must be a non-empty string: {namespace!r}")
        self.config = config
        self.namespace = namespace
        self.rpm = rpm
        self.tpm = tpm
        self.max_concurrency = max_concurrency
        self.burst = local.burst
        self.learns_quota = config.learn_quota
        self.clock: Clock = clock or anyio.current_time
        self.sleep: Sleep = sleep or anyio.sleep
        #: Test hook: Redis time (us) handed to the scripts instead of ``TIME``.
        self._redis_time = redis_time
        # The local 429 pause (a limiter with no limits, so only its cooldown acts).
        self._pause = Limiter(clock=clock, sleep=sleep)
        tag = namespace.replace("{", "(").replace("}", ")")
        prefix = f"holysheep:{{{tag}}}"
        self._keys = [f"{prefix}:{k}" for k in ("rq", "tk", "lease", "cd", "srv")]
        share = self.burst / rpm * 60.0 if rpm and self.burst else 1.0
        self._rq_args = (
            (_US * 60.0 / rpm, float(self.burst or 1)) if rpm else (0.0, 0.0)
        )
        self._tk_args = (_US * 60.0 / tpm, max(1.0, tpm * share / 60.0)) if tpm else (0.0, 0.0)
        self._lease_ttl = int(config.lease_ttl * _US)
        self._rt: _Runtime | None = None
        # Permits of every event loop count: the runtime is rebuilt per loop, and a
        # lease left on a loop that ended expires in Redis after its TTL.
        self._gen = 0
        # Sent by the background task: leases to give back, token corrections, cooldowns.
        self._releases: list[str] = []
        self._adjusts: list[tuple[SharedPermit, float]] = []
        self._cooldowns: list[tuple[float, int | None]] = []
        self._observations: list[tuple[int, int, float, int, float]] = []
        self._held: set[str] = set()
        self._self_waiting: dict[int, int] = {}  # task -> Redis-time end of its own cooldown
        self._fallback: Limiter | None = None
        self._down_until = -math.inf
        self._down = False
        self.requests = self.waited = self.in_flight = self.cooldowns = 0
        self.total_wait = self.max_wait = 0.0
        self._charged = 0.0
        self._refunded = 0.0
        #: Requests served by the fallback while Redis was unreachable.
        self.fallback_requests = 0

    def __repr__(self) -> str:
        return (
            f"<SharedLimiter {_safe_url(self.config.url)} rpm={self.rpm} tpm={self.tpm}"
            f" max_concurrency={self.max_concurrency} in_flight={self.in_flight}"
            f"{' (Redis unreachable)' if self._down else ''}>"
        )

    @property
    def degraded(self) -> bool:
        """Whether Redis was unreachable at the last attempt (``on_error`` applies)."""
        return self._down

    # -- the runtime of the running event loop ------------------------------------

    def _runtime(self) -> _Runtime:
        token = anyio.lowlevel.current_token()
        rt = self._rt
        if rt is None or rt.token != token or (rt.closing and not rt.alive):
            rt = self._rt = _Runtime(token)
            # Leases of an earlier loop are still held by their permits: renew them here.
        if not rt.alive and not rt.closing:
            rt.alive = True
            rt.ready = anyio.Event()
            rt.done = anyio.Event()
            _spawn(self._serve, rt)
        return rt

    async def _serve(self, rt: _Runtime) -> None:
        """The background task: holds the Redis client, sends the queued calls, renews leases."""
        import coredis
        from coredis.retry import NoRetryPolicy

        timeout = self.config.timeout
        try:
            client: Any = coredis.Redis.from_url(
                self.config.url,
                stream_timeout=timeout,
                connect_timeout=timeout,
                pool_timeout=timeout,
                retry_policy=NoRetryPolicy(),
                verify_version=False,
                decode_responses=True,
            )
            async with client:
                rt.redis = client
                rt.scripts = {n: client.register_script(_script(f"{n}.lua")) for n in _SCRIPTS}
                rt.ready.set()
                renew = max(0.05, self.config.lease_ttl / 3)
                while not rt.closing:
                    with anyio.move_on_after(renew if self._held else math.inf):
                        await rt.wake.wait()
                    rt.wake = anyio.Event()
                    if rt.closing and self._down:
                        break  # no last attempt at an unreachable Redis: leases expire (TTL)
                    await self._flush(rt)
                    if self._down and not rt.closing:  # not every wake-up while Redis is away
                        await self._sleep_quietly(self.config.retry_after)
        except BaseException as exc:  # a system task must never raise
            if not isinstance(exc, (Exception, anyio.get_cancelled_exc_class())):
                raise
            if isinstance(exc, Exception):
                self._failed(exc)
        finally:
            rt.redis = None
            rt.alive = False
            rt.ready.set()
            rt.done.set()

    async def _call(self, rt: _Runtime, name: str, keys: list[str], args: list[Any]) -> Any:
        """One script call, within ``timeout``; raises on any failure."""
        if rt.redis is None:
            with anyio.fail_after(self.config.timeout):
                await rt.ready.wait()
            if rt.redis is None:
                raise ConnectionError("the Redis client did not start")
        with anyio.fail_after(self.config.timeout):
            return await rt.scripts[name](keys=keys, args=args)

    def _now_arg(self) -> str:
        return "" if self._redis_time is None else str(self._redis_time())

    async def _flush(self, rt: _Runtime) -> None:
        async with rt.flushing:  # one at a time: a flush returns once what it saw is sent
            await self._flush_now(rt)

    async def _flush_now(self, rt: _Runtime) -> None:
        releases, self._releases = self._releases, []
        adjusts, self._adjusts = self._adjusts, []
        cooldowns, self._cooldowns = self._cooldowns, []
        observations, self._observations = self._observations, []
        k = self._keys
        if not (releases or adjusts or cooldowns or observations or self._held):
            return  # nothing to send (and no news of Redis either way)
        try:
            for seconds, task in cooldowns:
                until = int(
                    await self._call(rt, "cooldown", [k[3]], [self._now_arg(), int(seconds * _US)])
                )
                if task is not None:
                    self._self_waiting[task] = until
            for permit, delta in adjusts:
                given = float(
                    await self._call(
                        rt,
                        "adjust",
                        [k[1]],
                        [
                            self._now_arg(),
                            self._tk_args[0],
                            delta,
                            permit._poured_tat,
                            permit._poured_r,
                        ],
                    )
                )
                if delta < 0:
                    permit._withheld += -delta - given
                    self._refunded += given
            for seq, rq_left, rq_reset, tk_left, tk_reset in observations:
                await self._call(
                    rt,
                    "observe",
                    [k[4]],
                    [
                        self._now_arg(),
                        seq,
                        rq_left,
                        int(rq_reset * _US),
                        tk_left,
                        int(tk_reset * _US),
                    ],
                )
            if releases or self._held:
                await self._call(
                    rt,
                    "leases",
                    [k[2]],
                    [self._now_arg(), self._lease_ttl, len(releases), *releases, *self._held],
                )
        except Exception as exc:
            # Give-backs wait for Redis (their leases also expire); the rest is dropped.
            self._releases[:0] = releases
            self._failed(exc)
        else:
            self._recovered()

    async def _sleep_quietly(self, seconds: float) -> None:
        rt = self._rt
        with anyio.move_on_after(seconds):
            if rt is not None:  # closing wakes it
                await rt.wake.wait()

    async def flush(self) -> None:
        """Send the queued give-backs, corrections and cooldowns now (tests, shutdown)."""
        await self._flush(self._runtime())

    def _wake(self) -> None:
        rt = self._rt
        if rt is not None:
            try:
                same = rt.token == anyio.lowlevel.current_token()
            except RuntimeError:
                same = False
            if same:
                rt.wake.set()
                if rt.head is not None:
                    rt.head.cancel()

    # -- failure policy -----------------------------------------------------------

    def _failed(self, exc: BaseException) -> None:
        try:
            self._down_until = self.clock() + self.config.retry_after
        except RuntimeError:
            self._down_until = -math.inf
        if not self._down:
            self._down = True
            what = {
                "local": f"each process limits itself to {self.config.local_share:g} of the limits",
                "open": "requests go out without limits",
                "closed": "requests fail with SharedLimitsError",
            }[self.config.on_error]
            log.warning(
                "shared limits: Redis at %s is unreachable (%s); until it is back, %s",
                _safe_url(self.config.url),
                type(exc).__name__ if not str(exc) else f"{type(exc).__name__}: {exc}",
                what,
            )

    def _recovered(self) -> None:
        if self._down:
            self._down = False
            self._down_until = -math.inf
            log.warning("shared limits: Redis at %s is back", _safe_url(self.config.url))

    async def _fallback_acquire(self, tokens: int) -> Permit:
        on_error = self.config.on_error
        if on_error == "closed":
            raise SharedLimitsError(
                f"Redis at {_safe_url(self.config.url)} is unreachable and"
                " shared_limits on_error='closed': no request is sent"
            )
        if self._fallback is None:
            share = self.config.local_share if on_error == "local" else None

            def part(value: float | None) -> float | None:
                return None if value is None or share is None else value * share

            conc = self.max_concurrency
            self._fallback = Limiter(
                rpm=part(self.rpm),
                tpm=part(self.tpm),
                max_concurrency=None
                if conc is None or share is None
                else max(1, math.floor(conc * share)),
                burst=None
                if share is None or self.burst is None
                else max(1, math.floor(self.burst * share)),
                clock=self.clock if self.clock is not anyio.current_time else None,
                sleep=self.sleep if self.sleep is not anyio.sleep else None,
            )
        self.fallback_requests += 1
        return await self._fallback.acquire(tokens)

    # -- taking permits -----------------------------------------------------------

    async def acquire(self, tokens: int = 0) -> Permit:
        """Wait for every limit, fleet-wide, then return the request's permit.

        Cancelled while waiting, it takes nothing (a grant that was under way is
        given back).
        """
        pause = await self._pause.acquire()
        pause.release()
        if self.clock() < self._down_until:
            return await self._fallback_acquire(tokens)
        rt = self._runtime()
        start = self.clock()
        task = _current_task_id()
        waiter = _Waiter(
            tokens if self.tpm else 0,
            uuid.uuid4().hex if self.max_concurrency else "",
            self._self_waiting.get(task, 0) if task is not None else 0,
        )
        rt.waiters.append(waiter)
        try:
            while waiter.outcome is None:
                if not rt.serving:
                    rt.serving = True
                    try:
                        await self._serve_queue(rt, waiter)
                    finally:
                        rt.serving = False
                        # The next in line takes over talking to Redis.
                        for other in rt.waiters:
                            if other is not waiter:
                                other.event.set()
                                break
                else:
                    waiter.event = anyio.Event()
                    await waiter.event.wait()
        except BaseException:
            with contextlib.suppress(ValueError):
                rt.waiters.remove(waiter)
            if not rt.serving and rt.waiters:  # it may have been woken to take over: pass it on
                rt.waiters[0].event.set()
            if waiter.lease:  # granted, or perhaps granted by a call cut short: give it back
                self._releases.append(waiter.lease)
                self._wake()
            raise
        outcome = waiter.outcome
        if isinstance(outcome, BaseException):
            self._failed(outcome)
            return await self._fallback_acquire(tokens)
        self._recovered()
        waited = max(0.0, self.clock() - start)
        self.requests += 1
        self.in_flight += 1
        if waited:
            self.total_wait += waited
            self.max_wait = max(self.max_wait, waited)
            if waiter.slept:
                self.waited += 1
        if waiter.lease:
            self._held.add(waiter.lease)
            if len(self._held) == 1:
                rt.wake.set()  # the background task starts renewing
        if waiter.tokens:
            self._charged += waiter.tokens
        poured_tat, poured_r, seq, granted_at = outcome
        return SharedPermit(
            self,
            tokens,
            waited,
            waiter.lease,
            poured_tat=poured_tat,
            poured_r=poured_r,
            seq=seq,
            granted_at=granted_at,
        )

    async def _serve_queue(self, rt: _Runtime, me: _Waiter) -> None:
        """As the head waiter: grant the queue's front in batches until ``me`` has its answer.

        One script call grants as many waiting requests (first come, first served)
        as fit now; then the head sleeps the wait Redis computed for the next one.
        """
        poll = 0.01
        while me.outcome is None and rt.waiters:
            ahead = rt.next_try - self.clock()
            if ahead > 0:  # the wait an earlier head learned with its own grant
                rt.next_try = 0.0
                for w in rt.waiters:
                    w.slept = True
                with anyio.CancelScope() as rt.head:
                    await self.sleep(ahead)
                rt.head = None
            batch = list(itertools.islice(rt.waiters, _BATCH))
            if batch[0].skip:  # it alone may pass a cooldown it reported itself
                batch = batch[:1]
            args: list[Any] = [
                self._now_arg(),
                self._rq_args[0],
                self._rq_args[1],
                0,
                self._tk_args[0],
                self._tk_args[1],
                self.max_concurrency or 0,
                "",
                self._lease_ttl,
                batch[0].skip,
                1 if self.learns_quota else 0,
            ]
            for w in batch:
                args += (w.tokens, w.lease or "-")
            if self._observations or self._cooldowns:
                await self._flush(rt)  # what the server said, before Redis decides
            try:
                reply = await self._call(rt, "acquire", self._keys, args)
            except Exception as exc:
                # Redis failed: everyone queued turns to the fallback.
                for w in rt.waiters:
                    w.outcome = exc
                    w.event.set()
                rt.waiters.clear()
                return
            code, wait_us, now = int(reply[0]), int(reply[1]), int(reply[2])
            for i in range(3, len(reply), 3):
                w = rt.waiters.popleft()
                w.outcome = (int(reply[i]), float(reply[i + 1]), int(reply[i + 2]), now)
                w.event.set()
            if code == 0:
                poll = 0.01
                continue
            wait = wait_us / _US
            if code == 3:
                # Slots free up when a holder releases: here we are woken; elsewhere
                # in the fleet we cannot hear it, so look again soon (backing off).
                wait = min(wait, poll)
                poll = min(poll * 2, 0.2)
            if me.outcome is not None:
                rt.next_try = self.clock() + max(wait, 0.0005)  # for the next head
                return
            for w in rt.waiters:
                w.slept = True
            with anyio.CancelScope() as rt.head:
                await self.sleep(max(wait, 0.0005))
            rt.head = None

    # -- the shared 429 cooldown --------------------------------------------------

    def cooldown(self, seconds: float, *, caller_waits: bool = True) -> None:
        """Pause every client of the namespace for ``seconds`` (a 429's ``Retry-After``)."""
        if not (isinstance(seconds, (int, float)) and math.isfinite(seconds)) or seconds <= 0:
            return
        self.cooldowns += 1
        self._pause.cooldown(seconds, caller_waits=caller_waits)
        if self._fallback is not None:
            self._fallback.cooldown(seconds, caller_waits=caller_waits)
        self._cooldowns.append((seconds, _current_task_id() if caller_waits else None))
        self._wake()

    @property
    def cooling_down(self) -> bool:
        """Whether this process knows of a 429 cooldown now."""
        return self._pause.cooling_down

    # -- the server's word ----------------------------------------------------------

    def observe(self, permit: Permit, headers: Mapping[str, str] | httpx.Headers) -> None:
        """Note what the server says is left (``x-ratelimit-remaining-*`` / ``-reset-*``)."""
        if not isinstance(permit, SharedPermit):
            return
        rq_left = _header_int(headers, "x-ratelimit-remaining-requests")
        tk_left = _header_int(headers, "x-ratelimit-remaining-tokens")
        rq_reset = parse_reset(headers.get("x-ratelimit-reset-requests"))
        tk_reset = parse_reset(headers.get("x-ratelimit-reset-tokens"))
        if rq_reset is None:
            rq_left = -1
        if tk_reset is None:
            tk_left = -1
        if rq_left < 0 and tk_left < 0:
            return
        observed = (permit._seq, rq_left, rq_reset or 0.0, tk_left, tk_reset or 0.0)
        self._observations.append(observed)
        self._wake()

    # -- giving back --------------------------------------------------------------

    def _reconcile(self, permit: Permit, tokens_used: int) -> None:
        assert isinstance(permit, SharedPermit)
        delta = tokens_used - permit.tokens
        permit.tokens = tokens_used
        if not self.tpm or not delta:
            return
        if delta > 0:
            absorbed = min(float(delta), permit._withheld)
            permit._withheld -= absorbed
            delta -= absorbed  # type: ignore[assignment]
            if delta <= 0:
                return
            self._charged += delta
        self._adjusts.append((permit, float(delta)))
        self._wake()

    def _release(self, permit: Permit | None = None) -> None:
        self.in_flight -= 1
        if isinstance(permit, SharedPermit) and permit._lease:
            self._held.discard(permit._lease)
            self._releases.append(permit._lease)
            self._wake()

    def stats(self) -> LimiterStats:
        """This process's counters, the fallback's included (the limits are fleet-wide)."""
        fb = self._fallback.stats() if self._fallback is not None else None
        return LimiterStats(
            requests=self.requests + (fb.requests if fb else 0),
            waited=self.waited + (fb.waited if fb else 0),
            total_wait=self.total_wait + (fb.total_wait if fb else 0.0),
            max_wait=max(self.max_wait, fb.max_wait if fb else 0.0),
            in_flight=self.in_flight + (fb.in_flight if fb else 0),
            cooldowns=self.cooldowns,
            cooling_down=self.cooling_down,
            tokens_charged=round(self._charged) + (fb.tokens_charged if fb else 0),
            tokens_refunded=round(self._refunded) + (fb.tokens_refunded if fb else 0),
        )

    async def aclose(self) -> None:
        """Send what is queued (leases given back), then close the Redis connection.

        With Redis unreachable at the last attempt, nothing is sent (and nothing
        waited for): the leases this process holds expire after ``lease_ttl``.
        """
        rt = self._rt
        if rt is None or not rt.alive:
            return
        try:
            same = rt.token == anyio.lowlevel.current_token()
        except RuntimeError:
            return
        if not same:
            return
        rt.closing = True
        rt.wake.set()
        with anyio.move_on_after(self.config.timeout * 4):
            await rt.done.wait()


def _spawn(fn: Callable[[_Runtime], Awaitable[None]], rt: _Runtime) -> None:
    """Run ``fn(rt)`` as a background task of the running loop (no task group owns it).

    The limiter's background task lives as long as the event loop or the client:
    on trio a system task (cancelled when the run ends), on asyncio a task the
    runtime keeps a reference to (cancelled by ``asyncio.run`` at its end).
    """
    if running_library() == "trio":
        trio = sys.modules["trio"]
        trio.lowlevel.spawn_system_task(fn, rt)
    else:
        rt.task = asyncio.get_running_loop().create_task(fn(rt))  # type: ignore[arg-type]
