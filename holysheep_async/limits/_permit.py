"""What a limiter hands out and reports: :class:`Permit`, :class:`LimiterStats`, and the
:class:`Limits` protocol every limiter has (the in-process :class:`~._local.Limiter`,
the Redis-backed ``SharedLimiter``), which the requester takes.

The bottom of the ``limits`` package: it imports nothing of it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

__all__ = ["Clock", "LimiterStats", "Limits", "Permit", "Sleep"]

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]


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
