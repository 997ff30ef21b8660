"""The report of ``batches.run``: accounting, the output file, and where results are read.

With ``output=`` the results are written there in input order and the
report answers from that file through the run's index (nothing held in
memory); without it they come back as a plain dict and lists.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from ..jsonl import BatchResult, atomic_write
from ..models import Usage
from ._cost import usage_cost
from ._index import OK, IdList, ResultsFile, RunIndex

__all__ = ["BatchReport", "UsageSink", "build_report"]


class UsageSink(Protocol):
    """Where the usage of each batch answer goes (the client's requester: its usage hooks)."""

    def record_usage(self, model: str, usage: Usage | None, *, batch: bool = False) -> None: ...


@dataclass
class BatchReport:
    """What ``run`` got: every input ``custom_id`` is in exactly one of
    ``succeeded``, ``failed`` and ``missing`` (each in input order).

    With ``output=``, nothing is held in memory: ``results`` reads each
    result from the output file when asked, and the three id lists are read
    from the run's index (an :class:`~holysheep_async.batches._index.IdList`:
    a sequence that compares equal to a list; ``list(report.failed)`` makes
    one). Without ``output=`` they are a plain dict and lists.

    ``cost_usd`` is ``None`` when a price is unknown (see ``holysheep_async.pricing``).
    """

    results: Mapping[str, BatchResult]
    succeeded: Sequence[str]
    failed: Sequence[str]
    missing: Sequence[str]
    total_tokens: int = 0
    cost_usd: float | None = None
    #: Batches the run used (resumed ones included), in order.
    batch_ids: list[str] = field(default_factory=list)
    #: "batch", or "direct" when the server had no (working) Batch API.
    mode: str = "batch"
    #: Why the run answered with direct calls instead of batches (``None`` in batch mode).
    fallback_reason: str | None = None

    def __str__(self) -> str:
        cost = "unknown" if self.cost_usd is None else f"${self.cost_usd:.4f}"
        return (
            f"succeeded {len(self.succeeded)}, failed {len(self.failed)},"
            f" missing {len(self.missing)}, total tokens {self.total_tokens:,}, cost {cost}"
        )



def build_report(
    index: RunIndex,
    usage_sink: UsageSink,
    output: str | os.PathLike[str] | None,
    *,
    batch_ids: list[str],
    mode: str,
    fallback_reason: str | None,
) -> BatchReport:
    """Account for every result (tokens, cost, usage hooks) and make the report; with
    ``output``, write the results there and answer from that file."""
    tokens = 0
    cost: float | None = 0.0
    for _, model, usage_json, direct in index.rows(
        "coalesce(amodel, model), usage, direct", "state IS NOT NULL AND usage IS NOT NULL"
    ):
        usage = Usage.model_validate_json(usage_json)
        tokens += usage.total_tokens
        if not direct:
            # direct answers were recorded by chat.create already
            usage_sink.record_usage(model or "", usage, batch=True)
        if cost is not None:
            one = usage_cost(model or "", usage, batch=not direct)
            cost = None if one is None else cost + one
    common: dict[str, Any] = {
        "total_tokens": tokens,
        "cost_usd": cost,
        "batch_ids": batch_ids,
        "mode": mode,
        "fallback_reason": fallback_reason,
    }
    if output is not None:
        out = _write_output(index, Path(output))
        return BatchReport(
            results=ResultsFile(index, out),
            succeeded=IdList(index, "succeeded"),
            failed=IdList(index, "failed"),
            missing=IdList(index, "missing"),
            **common,
        )
    results: dict[str, BatchResult] = {}
    succeeded: list[str] = []
    failed: list[str] = []
    missing: list[str] = []
    for _, cid, state, src, off in index.rows("cid, state, src, off"):
        if state is None:
            missing.append(cid)
            continue
        results[cid] = index.result(src, off)
        (succeeded if state == OK else failed).append(cid)
    return BatchReport(
        results=results, succeeded=succeeded, failed=failed, missing=missing, **common
    )

def _write_output(index: RunIndex, path: Path) -> int:
    """Every result, in input order, into ``path`` (atomically); the index then points
    there (so the report reads from it once the work folder is gone)."""
    out = index.file_id(path.resolve())
    updates: list[tuple[int, int, int]] = []
    with atomic_write(path, "wb") as fh:
        for line, src, off in index.rows("src, off", "state IS NOT NULL"):
            updates.append((out, fh.tell(), line))
            fh.write(index.read_line(src, off) + b"\n")
            if len(updates) >= 5_000:
                index.set_many("UPDATE ids SET src = ?, off = ? WHERE line = ?", updates)
                updates.clear()
    index.set_many("UPDATE ids SET src = ?, off = ? WHERE line = ?", updates)
    index.commit()
    index.close_readers()
    return out
