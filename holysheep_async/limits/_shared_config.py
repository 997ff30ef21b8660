"""The settings of shared limits (``SharedLimits``) and the server headers they read.

Kept apart from :mod:`._shared` so that importing the package never
needs the Redis client (``holysheep-async[redis]``).
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from ..errors import ConfigurationError

__all__ = ["OnError", "SharedLimits", "default_namespace", "parse_reset"]

OnError = Literal["local", "open", "closed"]


@dataclass(frozen=True)
class SharedLimits:
    """Where and how limits are shared: ``AsyncClient(shared_limits=SharedLimits(url, ...))``.

    ``url``: ``redis://host:6379/0`` or ``rediss://`` (a plain string for
    ``shared_limits=`` means ``SharedLimits(url)``). ``on_error``: what to do
    while Redis is unreachable: ``"local"`` limits each process to
    ``local_share`` of every limit (``0.25``: four processes stay within the
    whole), ``"open"`` sends without limits, ``"closed"`` raises
    ``SharedLimitsError``. ``timeout``: the longest any Redis call may take;
    ``retry_after``: seconds between attempts to get back to Redis;
    ``lease_ttl``: how soon a dead process's concurrency slots come back;
    ``learn_quota``: never take more than the server's ``x-ratelimit-*``
    headers say is left.
    """

    url: str
    on_error: OnError = "local"
    local_share: float = 0.25
    timeout: float = 0.5
    retry_after: float = 2.0
    lease_ttl: float = 30.0
    learn_quota: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.url, str) or not self.url.startswith(
            ("redis://", "rediss://", "unix://")
        ):
            raise ConfigurationError(
                f"shared_limits must be a redis:// or rediss:// URL, got {_safe_url(self.url)!r}"
            )
        if self.on_error not in ("local", "open", "closed"):
            raise ConfigurationError(
                f"on_error must be 'local', 'open' or 'closed', got {self.on_error!r}"
            )
        for name in ("local_share", "timeout", "retry_after", "lease_ttl"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise ConfigurationError(f"{name} must be a number > 0, got {value!r}")
        if self.local_share > 1:
            raise ConfigurationError(f"local_share must be at most 1, got {self.local_share!r}")


def _safe_url(url: object) -> str:
    """A Redis URL without its password (for messages and logs)."""
    if not isinstance(url, str):
        return type(url).__name__
    return re.sub(r"//[^@/]*@", "//***@", url)


def default_namespace(base_url: str, api_key: str | None) -> str:
    """The quota a client shares by default: its server and a hash of its key (never the key)."""
    digest = hashlib.sha256((api_key or "").encode()).hexdigest()[:16]
    return f"{base_url.rstrip('/')}|{digest}"


_DURATION = re.compile(r"(\d+(?:\.\d*)?)(ms|us|µs|ns|h|m|s)")
_UNITS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9}


def parse_reset(value: str | None) -> float | None:
    """``x-ratelimit-reset-*``: ``"6m0s"``, ``"1.5s"``, ``"20ms"`` or plain seconds; None if bad."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        parts = _DURATION.findall(value)
        if not parts or "".join(n + u for n, u in parts) != value:
            return None
        seconds = sum(float(n) * _UNITS[u] for n, u in parts)
    return seconds if math.isfinite(seconds) and seconds >= 0 else None


def _header_int(headers: Mapping[str, str], name: str) -> int:
    try:
        return max(0, int(headers.get(name, "")))
    except ValueError:
        return -1
