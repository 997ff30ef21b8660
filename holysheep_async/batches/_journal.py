"""The journal of ``batches.run``: its state on disk, and the work folder it locks.

The journal is a small JSON file rewritten atomically after every step (the
parts, their uploaded files and batches, the round, the mode); the work
files (``input.jsonl``, the parts, the results) live in ``<journal>.d/``,
locked while a run uses them. Running again with the same journal resumes.
"""

from __future__ import annotations

import builtins
import contextlib
import json
import logging
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..errors import HolySheepError
from ..jsonl import atomic_write

__all__ = ["JOURNAL_VERSION", "Journal", "open_journal", "workdir"]

log = logging.getLogger("holysheep_async")

JOURNAL_VERSION = 1


class Journal:
    """The run's state on disk, rewritten atomically after every step (no-op without a path)."""

    def __init__(self, path: Path | None, data: dict[str, Any]) -> None:
        self.path = path
        self.data = data

    def save(self) -> None:
        if self.path is not None:
            with atomic_write(self.path) as fh:
                json.dump(self.data, fh, indent=1)

    @property
    def parts(self) -> builtins.list[dict[str, Any]]:
        parts: builtins.list[dict[str, Any]] = self.data["parts"]
        return parts


def open_journal(
    journal: str | os.PathLike[str] | None, fingerprint: str, endpoint: str
) -> Journal:
    path = Path(journal) if journal is not None else None
    if path is not None and path.exists():
        try:
            data = json.loads(path.read_text("utf-8"))
        except (OSError, ValueError) as exc:
            raise HolySheepError(f"cannot read the batch journal {path}: {exc}") from exc
        if data.get("version") != JOURNAL_VERSION or data.get("fingerprint") != fingerprint:
            raise HolySheepError(
                f"the batch journal {path} belongs to a different input: use another"
                " journal path, or delete it (and its .d folder) to start over"
            )
        log.info("resuming batch run from %s", path)
        return Journal(path, data)
    state = Journal(
        path,
        {
            "version": JOURNAL_VERSION,
            "fingerprint": fingerprint,
            "endpoint": endpoint,
            "mode": "batch",
            "round": 0,
            "parts": [],
        },
    )
    state.save()
    return state


@contextlib.contextmanager
def workdir(journal: str | os.PathLike[str] | None) -> Iterator[Path]:
    """The run's work folder: ``<journal>.d`` (kept for resuming), or a temporary one."""
    if journal is not None:
        path = Path(f"{os.fspath(journal)}.d")
        path.mkdir(parents=True, exist_ok=True)
        with _locked(path / "lock", journal):
            # Temporary files of writes a killed run left half done (atomic_write's names).
            name = Path(journal).name
            for left in [*path.glob(".*.tmp"), *Path(journal).parent.glob(f".{name}.*.tmp")]:
                with contextlib.suppress(OSError):
                    left.unlink()
            yield path
        return
    with tempfile.TemporaryDirectory(prefix="holysheep-run-") as tmp:
        yield Path(tmp)


@contextlib.contextmanager
def _locked(path: Path, journal: str | os.PathLike[str]) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (released by the OS if the process dies).

    Two runs on one journal would submit the same parts twice. Where there
    is no ``fcntl`` (Windows) nothing is locked.
    """
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    with path.open("a") as fh:
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            raise HolySheepError(
                f"the batch journal {os.fspath(journal)} is in use by another run"
                " (two runs on one journal would submit the same requests twice)"
            ) from exc
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
