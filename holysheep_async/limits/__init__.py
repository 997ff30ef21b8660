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

Inside, from the top down (a module imports only modules below it): ``_shared``
(``SharedLimiter``: the same limits for every process on one Redis, one Lua
script per operation, package data under ``_lua/``) over ``_local``
(``Limiter``) and ``_shared_config`` (``SharedLimits``, the settings, importable
without the Redis client); ``_local`` over ``_bucket`` (``LeakyBucket``) and
``_permit`` (``Permit``, ``LimiterStats``, the ``Limits`` protocol);
``_estimate`` (``estimate_tokens``) apart. Nothing here imports the client,
the resources or the requester, which take a limiter as a ``Limits``.
"""

from __future__ import annotations

from ._bucket import LeakyBucket
from ._estimate import estimate_tokens
from ._local import Limiter
from ._permit import Clock as Clock
from ._permit import LimiterStats, Limits, Permit
from ._permit import Sleep as Sleep

# In the order the API reference shows them.
__all__ = ["Limits", "Permit", "LeakyBucket", "LimiterStats", "Limiter", "estimate_tokens"]
