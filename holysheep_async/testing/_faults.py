"""Faults the emulator can inject, one request at a time or at random.

Queue one with ``server.inject(Fault(...))`` (the next matching request gets
it), or ask for one per request with the ``x-mock-fault`` header
(``x-mock-fault: drop; after=3``), which is what concurrent tests use since
it does not depend on arrival order.

Kinds:

=============  ==================================================================
``status``     answer ``status`` (default 500) with ``body`` and ``headers``
               before anything else (429 + ``retry-after``, 503, an HTML page...)
``drop``       stream: close the connection after ``after`` content chunks
``stall``      stream: go silent after ``after`` chunks for ``delay`` seconds,
               then go on (default: until the client gives up), sending a
               ``: ping`` every ``ping`` seconds meanwhile if set
``malformed``  stream: send a broken event after ``after`` chunks
``error``      stream: send ``{"error": {...}}`` after ``after`` chunks
               (``message`` and ``code`` set it; "overloaded" by default)
``truncate``   stream: end the response cleanly after ``after`` chunks, with
               neither a finish reason nor ``[DONE]``
``no_done``    stream: finish normally but leave out ``data: [DONE]``
``slow_first`` stream: wait ``delay`` extra seconds before the first token
``relay``      stream: relay style: ``data:`` without the space, CRLF line
               ends, ``: ping`` comments between events
``ping``       stream: a ``: ping`` comment before every event (and an
               ``event: ping`` keep-alive at the start)
``no_usage``   stream: ignore ``stream_options.include_usage`` (no usage chunk)
``repeat_index``  stream: tool calls as vLLM's speculative decoding sends them: two
               fragments of a call in one chunk, with the same index
``no_index``   stream: tool-call fragments without ``index``
``index_zero`` stream: every tool call at index 0, each whole in one chunk, distinct
               ids (Ollama through LiteLLM)
``char_args``  stream: tool-call arguments one character a chunk
=============  ==================================================================

Stream faults count ``after`` in content chunks (all choices together; reasoning
and tool-call fragments count as content chunks too); an
``after`` equal to the answer's length hits after the last content chunk,
before the finish reason.

A request whose last message is from the assistant gets the rest of the
answer that message begins (a prefill, as vLLM's ``continue_final_message``,
DeepSeek's ``prefix`` and Anthropic do), which is what ``resume=`` relies on;
``MockServer(prefill=False)`` answers from scratch instead, as OpenAI does.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["FAULT_KINDS", "Fault", "parse_fault_header"]

FAULT_KINDS = frozenset(
    {
        "status",
        "drop",
        "stall",
        "malformed",
        "error",
        "truncate",
        "no_done",
        "slow_first",
        "relay",
        "ping",
        "no_usage",
        "repeat_index",
        "no_index",
        "index_zero",
        "char_args",
    }
)


@dataclass
class Fault:
    kind: str
    status: int = 500
    after: int = 0
    delay: float | None = None
    ping: float | None = None
    message: str | None = None
    code: str | None = None
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    #: Only requests whose path starts with this get the fault ("" = any).
    path: str = ""
    #: How many matching requests get it.
    times: int = 1

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r}; one of {sorted(FAULT_KINDS)}")

    def matches(self, path: str) -> bool:
        return path.startswith(self.path)


def parse_fault_header(value: str) -> Fault:
    """``"drop; after=3"`` -> ``Fault("drop", after=3)``; ``"status=429; retry-after=2"``."""
    parts = [p.strip() for p in value.split(";") if p.strip()]
    if not parts:
        raise ValueError("empty x-mock-fault header")
    first, *rest = parts
    kw: dict[str, Any] = {}
    headers: dict[str, str] = {}
    if "=" in first:
        rest = [first, *rest]
        kind = "status"
    else:
        kind = first
    for part in rest:
        key, _, val = part.partition("=")
        key = key.strip().lower()
        val = val.strip()
        if key in ("status", "after", "times"):
            kw[key] = int(val)
        elif key in ("delay", "ping"):
            kw[key] = float(val)
        elif key in ("message", "code", "body"):
            kw[key] = val
        else:
            headers[key] = val
    return Fault(kind, headers=headers, **kw)
