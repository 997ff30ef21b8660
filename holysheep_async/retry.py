"""When to retry a request and how long to wait first.

The policy follows the official SDKs: connection errors and timeouts, 408,
409, 429 and every status >= 500 are retried, other 4xx never. A server that
says how long to wait is obeyed (``retry-after-ms``, then ``retry-after`` in
seconds or as an HTTP date; LiteLLM-based relays' ``llm_provider-`` copies of
both when the standard ones are absent); ``x-should-retry: true|false`` overrides the
status rule. Otherwise the wait is an exponential backoff with jitter, capped.

A server asking for more than ``max_server_wait`` seconds (an exhausted daily
quota, a misconfigured relay) is not waited on in silence: the request fails
with the status error, whose message says what the server asked for.
"""

from __future__ import annotations

import email.utils
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass

__all__ = ["RetryPolicy", "parse_retry_after"]

RETRY_STATUSES = frozenset({408, 409, 429})


# Relays built on LiteLLM pass the provider's headers on renamed with this prefix.
_RELAY_PREFIX = "llm_provider-"


def parse_retry_after(headers: Mapping[str, str], *, now: float | None = None) -> float | None:
    """Seconds the server asked us to wait, or None when it did not say (or said nonsense).

    ``retry-after-ms`` wins over ``retry-after`` (seconds or an HTTP date). A
    relay built on LiteLLM renames them ``llm_provider-retry-after-ms`` and
    ``llm_provider-retry-after``: those are read with the same rules when the
    standard headers say nothing usable (the standard ones win when both do).
    """
    asked = _asked(headers, "", now)
    if asked is None:
        asked = _asked(headers, _RELAY_PREFIX, now)
    return asked


def _asked(headers: Mapping[str, str], prefix: str, now: float | None) -> float | None:
    ms = headers.get(prefix + "retry-after-ms")
    if ms is not None:
        try:
            value = float(ms) / 1000.0
        except ValueError:
            value = -1.0
        if value >= 0 and value == value:  # not NaN
            return value
    ra = headers.get(prefix + "retry-after")
    if ra is None:
        return None
    ra = ra.strip()
    try:
        value = float(ra)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(ra)
        except (TypeError, ValueError, IndexError):
            return None
        if when is None:
            return None
        current = time.time() if now is None else now
        return max(0.0, when.timestamp() - current)
    return value if value >= 0 and value == value and value != float("inf") else None


@dataclass(frozen=True)
class RetryPolicy:
    """How the client retries. ``AsyncClient(max_retries=N)`` sets ``max_retries``.

    >>> RetryPolicy(max_retries=5, initial_delay=0.25, max_delay=4.0)  # doctest: +SKIP
    """

    max_retries: int = 3
    initial_delay: float = 0.5
    max_delay: float = 8.0
    #: A longer wait asked for by the server fails the request instead of sleeping.
    max_server_wait: float = 60.0
    #: Backoff is multiplied by a random factor in [1 - jitter, 1].
    jitter: float = 0.25

    def __post_init__(self) -> None:
        if not isinstance(self.max_retries, int) or self.max_retries < 0:
            raise ValueError(f"max_retries must be an int >= 0, got {self.max_retries!r}")
        if self.initial_delay < 0 or self.max_delay < 0 or self.max_server_wait < 0:
            raise ValueError("retry delays must be >= 0")
        if not 0.0 <= self.jitter <= 1.0:
            raise ValueError(f"jitter must be in [0, 1], got {self.jitter!r}")

    def should_retry_status(self, status: int, headers: Mapping[str, str]) -> bool:
        """Whether a response with this status may be retried (``x-should-retry`` wins)."""
        override = headers.get("x-should-retry")
        if override == "true":
            return True
        if override == "false":
            return False
        return status in RETRY_STATUSES or status >= 500

    def backoff(self, retry: int) -> float:
        """Our own wait before retry number ``retry`` (1-based): exponential, capped, jittered."""
        base = min(self.max_delay, self.initial_delay * (2.0 ** (retry - 1)))
        return base * (1.0 - self.jitter * random.random())

    def delay(self, retry: int, headers: Mapping[str, str] | None = None) -> float:
        """The wait before retry ``retry``: what the server asked for, else our backoff."""
        if headers is not None:
            asked = parse_retry_after(headers)
            if asked is not None:
                return asked
        return self.backoff(retry)
