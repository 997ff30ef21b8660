"""Progress and pacing of ``client.batches``: what ``on_progress`` gets, and when to poll next.

:class:`RunProgress` is what ``run`` reports after each step and poll
(``wait`` reports the polled ``Batch`` itself); :func:`notify` calls a
callback, sync or async. :func:`adaptive_poll_interval` paces the polls, and
:class:`PollClock` measures the waiting in a way a test's fake sleep moves too.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import anyio

from ..models import Batch

__all__ = ["PollClock", "ProgressCallback", "RunProgress", "adaptive_poll_interval", "notify"]


@dataclass
class RunProgress:
    """Where ``run`` is: ``phase`` ("submitting", "submitted", "waiting", "direct", "done"),
    requests answered so far (``done``) out of ``total`` (the whole run), the batch
    just polled, and the last state of every batch being polled (``in_flight``)."""

    phase: str
    done: int
    total: int
    batch: Batch | None = None
    in_flight: tuple[Batch, ...] = ()

    @property
    def percent(self) -> float:
        return 100.0 * self.done / self.total if self.total else 100.0


ProgressCallback = Callable[[Any], Any]


async def notify(callback: ProgressCallback | None, value: object) -> None:
    """Call ``callback(value)``, and await what it returns if it is awaitable."""
    if callback is not None:
        result = callback(value)
        if inspect.isawaitable(result):
            await result


def adaptive_poll_interval(batch: Batch, polls: int) -> float:
    """Seconds to wait before the next poll of ``batch`` after ``polls`` polls.

    Small batches start at 1 s, big ones (>= 1,000 requests) at 2 s; each poll
    waits 25% longer, up to 30 s (60 s for big batches). A batch that is
    already old when we start (a resumed run) is polled less often from the
    start: at least a 30th of its age.
    """
    total = batch.request_counts.total if batch.request_counts else 0
    big = total >= 1_000
    interval = (2.0 if big else 1.0) * 1.25**polls
    if batch.created_at:
        interval = max(interval, (time.time() - batch.created_at) / 30)
    return min(interval, 60.0 if big else 30.0)


class PollClock:
    """Seconds since the loop began: the clock, or the sleeps asked for where they are
    faster (a test's fake sleep), so intervals work either way."""

    def __init__(self, sleep: Callable[[float], Any]) -> None:
        self._sleep = sleep
        self._start = anyio.current_time()
        self._slept = 0.0

    def now(self) -> float:
        return max(self._slept, anyio.current_time() - self._start)

    async def sleep(self, seconds: float) -> None:
        self._slept = self.now() + seconds
        await self._sleep(seconds)
