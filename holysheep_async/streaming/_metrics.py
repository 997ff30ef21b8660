"""StreamMetrics: the timings of one stream (TTFT, gaps, tokens/s, attempts).

The stream fills it as it goes: the surface counts each text delta it yields
(``deltas``, ``gaps``, ``ttft``), the core counts chunks, attempts, resumes
and the time queued behind the client's limits, and sets ``total`` and
``tokens`` at the end.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["StreamMetrics"]


@dataclass
class StreamMetrics:
    """Timings of one stream.

    ``ttft``: seconds from sending the request to the first text delta
    (retries before the first token included; time spent queued behind the
    client's own rpm / tpm / concurrency limits is not, it is ``queued``).
    ``total``: from sending the request to the end of the stream.
    ``chunks``: data events received. ``deltas``: text deltas yielded.
    ``tokens``: completion tokens (from ``usage`` when the server sent it, else
    the number of text deltas). ``tokens_per_s``: tokens over the time after the
    first token. ``gaps``: seconds between consecutive text deltas.
    ``attempts``: requests sent; ``resumes``: follow-up requests that continued
    a broken answer.
    """

    ttft: float | None = None
    total: float | None = None
    chunks: int = 0
    deltas: int = 0
    tokens: int = 0
    attempts: int = 0
    resumes: int = 0
    queued: float = 0.0
    gaps: list[float] = field(default_factory=list)

    @property
    def tokens_per_s(self) -> float | None:
        if self.ttft is None or self.total is None or self.tokens == 0:
            return None
        span = self.total - self.ttft
        return self.tokens / span if span > 0 else None

    @property
    def max_gap(self) -> float:
        """The longest wait between two text deltas (0.0 with fewer than two)."""
        return max(self.gaps, default=0.0)
