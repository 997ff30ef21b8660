"""Per-key RPM / TPM quotas in the emulator, answering 429 like a real server.

>>> MockServer(rpm_quota=600, tpm_quota=60_000)  # doctest: +SKIP

Options (``MockServer(**options)``):

``rpm_quota``     requests per window for each API key
``tpm_quota``     tokens per window for each API key; a request is charged its
                  prompt (about four characters per token) plus ``max_tokens``
                  (or the server's default answer length) times ``n``, when it
                  arrives, which is exactly the ``usage.total_tokens`` the
                  emulator will answer with
``quota_window``  the window's length in seconds (default 60: a minute; a test
                  may shrink it to run a "minute" faster)
``quota_burst``   seconds' worth of the quota that may arrive at once (default
                  1.0). Real services enforce per-minute quotas over shorter
                  periods (OpenAI: "60,000 requests/minute may be enforced as
                  1,000 requests/second"), so a client that sends a minute's
                  quota in its first second gets 429s here too.

Each quota is a token bucket per key that refills continuously. A request
that does not fit is answered 429 in OpenAI's shape (``type: "requests"`` or
``"tokens"``, ``code: "rate_limit_exceeded"``) with ``retry-after-ms`` and
``retry-after`` (whole seconds, rounded up) saying when it would fit, and the
``x-ratelimit-*`` headers. A rejected request is not charged.
"""

from __future__ import annotations

import math
import time
from typing import Any

from ._answers import prompt_tokens
from ._http import Request, Responder
from ._state import Emulator

__all__ = ["Quota", "install_quota", "quota_check"]

OPTIONS = ("rpm_quota", "tpm_quota", "quota_window", "quota_burst")


class Quota:
    """One key's allowance of one kind (requests or tokens), refilled continuously."""

    __slots__ = ("_available", "_last", "capacity", "limit", "rate")

    def __init__(self, limit: float, window: float, burst: float) -> None:
        self.limit = limit
        self.rate = limit / window
        self.capacity = max(1.0, self.rate * burst)
        self._available = self.capacity
        self._last = time.monotonic()

    def _refill(self, now: float) -> None:
        self._available = min(self.capacity, self._available + (now - self._last) * self.rate)
        self._last = now

    def wait_for(self, amount: float, now: float) -> float:
        """Seconds until ``amount`` fits (0: it fits now). More than the bucket needs it full."""
        self._refill(now)
        need = min(amount, self.capacity) - self._available
        return 0.0 if need <= 1e-9 else need / self.rate

    def take(self, amount: float) -> None:
        self._available -= amount

    def remaining(self) -> int:
        return max(0, math.floor(self._available))


def _charge(server: Emulator, body: dict[str, Any]) -> int:
    limit = body.get("max_completion_tokens") or body.get("max_tokens")
    answer = limit if isinstance(limit, int) and limit > 0 else server.tokens
    n = body.get("n")
    choices = n if isinstance(n, int) and n > 0 else 1
    return prompt_tokens(body.get("messages")) + answer * choices


def _number(server: Emulator, name: str, default: float | None) -> float | None:
    value = server.options.get(name, default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ValueError(f"MockServer option {name} must be a number > 0, got {value!r}")
    if not math.isfinite(value):
        raise ValueError(f"MockServer option {name} must be finite, got {value!r}")
    return float(value)


def install_quota(server: Emulator) -> None:
    """Check the quota options and, when a quota is set, hook :func:`quota_check` in."""
    rpm = _number(server, "rpm_quota", None)
    tpm = _number(server, "tpm_quota", None)
    window = _number(server, "quota_window", 60.0)
    burst = _number(server, "quota_burst", 1.0)
    if rpm is None and tpm is None:
        return
    assert window is not None and burst is not None
    server.state["quota"] = {"rpm": rpm, "tpm": tpm, "window": window, "burst": burst}
    server.state["quota_keys"] = {}
    server.state["quota_rejected"] = 0
    server.state["quota_check"] = quota_check


def _fmt_reset(seconds: float) -> str:
    return f"{seconds * 1000:.0f}ms" if seconds < 1 else f"{seconds:.3f}s"


async def quota_check(
    server: Emulator, request: Request, responder: Responder, body: dict[str, Any]
) -> bool:
    """The chat handler's hook: True to serve the request, False once a 429 was sent."""
    config = server.state["quota"]
    keys: dict[str, dict[str, Quota]] = server.state["quota_keys"]
    key = request.api_key or ""
    quotas = keys.get(key)
    if quotas is None:
        quotas = keys[key] = {
            kind: Quota(config[kind], config["window"], config["burst"])
            for kind in ("rpm", "tpm")
            if config[kind] is not None
        }
    now = time.monotonic()
    tokens = _charge(server, body)
    amounts = {"rpm": 1, "tpm": tokens}
    waits = {kind: quota.wait_for(amounts[kind], now) for kind, quota in quotas.items()}
    headers = {"x-request-id": request.request_id or ""}
    for kind, name in (("rpm", "requests"), ("tpm", "tokens")):
        quota_ = quotas.get(kind)
        if quota_ is not None:
            headers[f"x-ratelimit-limit-{name}"] = str(int(quota_.limit))
            headers[f"x-ratelimit-remaining-{name}"] = str(quota_.remaining())
            left = quota_.capacity - quota_.remaining()
            headers[f"x-ratelimit-reset-{name}"] = _fmt_reset(left / quota_.rate)
    blocked = max(waits, key=lambda kind: waits[kind])
    wait = waits[blocked]
    if wait <= 0:
        for kind, quota in quotas.items():
            quota.take(amounts[kind])
        # As OpenAI does, the limits go with every answer (remaining counts this one).
        for kind, name in (("rpm", "requests"), ("tpm", "tokens")):
            quota_ = quotas.get(kind)
            if quota_ is not None:
                headers[f"x-ratelimit-remaining-{name}"] = str(quota_.remaining())
        del headers["x-request-id"]
        request.answer_headers.update(headers)
        return True
    server.state["quota_rejected"] += 1
    limit = int(quotas[blocked].limit)
    unit, what = ("requests", "RPM") if blocked == "rpm" else ("tokens", "TPM")
    headers["retry-after-ms"] = str(max(1, math.ceil(wait * 1000)))
    headers["retry-after"] = str(max(1, math.ceil(wait)))
    await responder.error(
        429,
        f"Rate limit reached for {body.get('model')} on {unit} per min ({what}): Limit {limit},"
        f" Requested {amounts[blocked]}. Please try again in {_fmt_reset(wait)}.",
        type=unit,
        code="rate_limit_exceeded",
        headers=headers,
    )
    return False
