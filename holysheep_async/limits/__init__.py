"""Client-side limits: the local limiter, the shared (Redis) limiter, their Lua scripts."""

from __future__ import annotations

from ._local import Clock as Clock
from ._local import (
    LeakyBucket,
    Limiter,
    LimiterStats,
    Limits,
    Permit,
    estimate_tokens,
)
from ._local import Sleep as Sleep

__all__ = ["LeakyBucket", "Limiter", "LimiterStats", "Limits", "Permit", "estimate_tokens"]
