"""Client-side limits: requests per minute, tokens per minute, requests in flight.

Every request the client sends first takes a :class:`Permit` from the
client's :class:`Limiter`; a stream keeps its permit until it ends. A limiter
with every limit off hands out permits without waiting.

(This module is filled in by the rate-limit work: rpm / tpm buckets and the
shared 429 cooldown. The interface below is what the rest of the client uses.)
"""

from __future__ import annotations

import math

import anyio

__all__ = ["Limiter", "Permit"]


class Permit:
    """What one request took from the limiter.

    ``waited``: seconds spent waiting for it. ``reconcile(tokens)`` corrects the
    token estimate with the real usage; ``release()`` frees the concurrency
    slot (idempotent).
    """

    __slots__ = ("_limiter", "_released", "tokens", "waited")

    def __init__(self, limiter: Limiter, tokens: int, waited: float) -> None:
        self._limiter = limiter
        self._released = False
        self.tokens = tokens
        self.waited = waited

    def reconcile(self, tokens_used: int) -> None:
        self._limiter._reconcile(self, tokens_used)

    def release(self) -> None:
        if not self._released:
            self._released = True
            self._limiter._release()


class Limiter:
    """Requests per minute (``rpm``), tokens per minute (``tpm``), in flight (``max_concurrency``).
    """

    def __init__(
        self,
        *,
        rpm: float | None = None,
        tpm: float | None = None,
        max_concurrency: int | None = None,
    ) -> None:
        for name, value in (("rpm", rpm), ("tpm", tpm)):
            if value is not None and (
                isinstance(value, bool)
                or not isinstance(value, (int, float))
                or not math.isfinite(value)
                or value <= 0
            ):
                raise ValueError(f"{name} must be a positive number or None, got {value!r}")
        if max_concurrency is not None and (
            isinstance(max_concurrency, bool)
            or not isinstance(max_concurrency, int)
            or max_concurrency < 1
        ):
            raise ValueError(
                f"max_concurrency must be an int >= 1 or None, got {max_concurrency!r}"
            )
        self.rpm = rpm
        self.tpm = tpm
        self.max_concurrency = max_concurrency
        self._slots = anyio.Semaphore(max_concurrency) if max_concurrency else None
        #: Total seconds requests spent waiting in this limiter.
        self.total_wait = 0.0

    async def acquire(self, tokens: int = 0) -> Permit:
        if self._slots is None:
            return Permit(self, tokens, 0.0)
        start = anyio.current_time()
        await self._slots.acquire()
        waited = anyio.current_time() - start
        self.total_wait += waited
        return Permit(self, tokens, waited)

    def cooldown(self, seconds: float) -> None:
        """A 429 asked every request to pause for ``seconds`` (not enforced yet)."""

    def _reconcile(self, permit: Permit, tokens_used: int) -> None:
        permit.tokens = tokens_used

    def _release(self) -> None:
        if self._slots is not None:
            self._slots.release()


def estimate_tokens(body: dict[str, object]) -> int:
    """A request's token cost estimated before sending: prompt estimate plus ``max_tokens``.

    The prompt is counted at about four characters per token (no tokenizer
    download); the answer at ``max_completion_tokens`` / ``max_tokens``, or 256
    when neither is set. The real usage corrects it afterwards (``Permit.reconcile``).
    """
    chars = 0
    messages = body.get("messages")
    if isinstance(messages, list):
        for message in messages:
            if isinstance(message, dict):
                content = message.get("content")
                if isinstance(content, str):
                    chars += len(content)
                elif isinstance(content, list):
                    for part in content:
                        if isinstance(part, dict) and isinstance(part.get("text"), str):
                            chars += len(part["text"])
                chars += 16  # role and framing
    answer = body.get("max_completion_tokens") or body.get("max_tokens")
    out = answer if isinstance(answer, int) and answer > 0 else 256
    return chars // 4 + 1 + out
