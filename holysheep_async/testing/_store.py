"""The store ``/v1/files`` and ``/v1/batches`` share: files on disk, batches, their answers.

Files live on disk, in a temporary folder of the server's (removed when the
server is collected or the process exits): uploads, batch outputs, and a
running batch's answers, so a run of a million requests costs the emulator
disk, not memory. ``server.options["batch_api"]`` switches both APIs off
(``False``: 404; an int: that status), as on a relay without them
(:func:`batch_api_available`).
"""

from __future__ import annotations

import json
import shutil
import tempfile
import threading
import time
import weakref
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from ._http import Responder
from ._state import Emulator

__all__ = [
    "Batch",
    "BatchAnswers",
    "BatchLines",
    "Store",
    "StoredFile",
    "batch_api_available",
    "batch_store",
    "unix_now",
]

_STATE_KEY = "batches"


def unix_now() -> int:
    return int(time.time())


class StoredFile:
    """A file of the Files API, its bytes on disk (``data`` reads and writes them whole)."""

    def __init__(self, id: str, filename: str, purpose: str, path: Path, created_at: int) -> None:
        self.id = id
        self.filename = filename
        self.purpose = purpose
        self.path = path
        self.created_at = created_at

    @property
    def data(self) -> bytes:
        return self.path.read_bytes()

    @data.setter
    def data(self, value: bytes) -> None:
        self.path.write_bytes(value)

    @property
    def size(self) -> int:
        return self.path.stat().st_size

    def lines(self) -> Iterator[bytes]:
        with self.path.open("rb") as fh:
            yield from fh

    def obj(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "file",
            "bytes": self.size,
            "created_at": self.created_at,
            "filename": self.filename,
            "purpose": self.purpose,
            "status": "processed",
        }


class BatchLines:
    """A batch's valid input lines, read from its input file as the batch moves on
    (``lines[a:b]`` with ``a`` where the last read stopped costs one read of ``b - a`` lines)."""

    def __init__(self) -> None:
        self.path: Path | None = None
        self.count = 0
        self._next = 0
        self._offset = 0

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, cut: slice) -> Iterator[dict[str, Any]]:
        """The lines of ``cut``, read lazily (a step of 50,000 answers holds one at a time)."""
        start, stop, _ = cut.indices(self.count)
        if self.path is None or start >= stop:
            return iter(())
        return self._read(start, stop)

    def _read(self, start: int, stop: int) -> Iterator[dict[str, Any]]:
        assert self.path is not None
        if start != self._next:
            self._next, self._offset = 0, 0
        with self.path.open("rb") as fh:
            fh.seek(self._offset)
            while self._next < stop:
                raw = fh.readline()
                if not raw:
                    break
                self._next += 1
                self._offset += len(raw)
                if self._next > start:
                    yield json.loads(raw)


class BatchAnswers:
    """A running batch's answers, appended to a file as they come (``len`` counts them)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.count = 0
        self._fh: IO[bytes] | None = None

    def __len__(self) -> int:
        return self.count

    def append(self, answer: dict[str, Any]) -> None:
        if self._fh is None:
            self._fh = self.path.open("ab")
        self._fh.write(json.dumps(answer, separators=(",", ":")).encode() + b"\n")
        self.count += 1

    def __iter__(self) -> Iterator[dict[str, Any]]:
        if self._fh is not None:
            self._fh.flush()
        if not self.path.exists():
            return
        with self.path.open("rb") as fh:
            for raw in fh:
                yield json.loads(raw)

    def close(self) -> None:
        """Done writing (the file stays: tests read what a batch answered)."""
        if self._fh is not None:
            self._fh.close()
            self._fh = None


class Store:
    """A server's files and batches (``batch_store(server)``; ``lock`` guards both)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.files: dict[str, StoredFile] = {}
        self.batches: dict[str, Batch] = {}
        self.order: list[str] = []
        self.seen_failures: set[str] = set()
        self.folder = Path(tempfile.mkdtemp(prefix="holysheep-emulator-"))
        weakref.finalize(self, shutil.rmtree, self.folder, True)

    def new_file(self, file_id: str, filename: str, purpose: str) -> StoredFile:
        """A file of the store (empty on disk until written)."""
        file = StoredFile(file_id, filename, purpose, self.folder / file_id, unix_now())
        file.path.touch()
        return file


def batch_store(server: Emulator) -> Store:
    store = server.state.get(_STATE_KEY)
    if store is None:
        store = server.state.setdefault(_STATE_KEY, Store())
    assert isinstance(store, Store)
    return store


@dataclass
class Batch:
    """A batch: its wire object, its input lines, the answers it has so far."""

    obj: dict[str, Any]
    done: BatchAnswers
    lines: BatchLines = field(default_factory=BatchLines)
    steps_in_progress: int = 0
    started: float = 0.0  # _batches._clock() when it went in_progress (batch_duration)

    @property
    def status(self) -> str:
        return str(self.obj["status"])


async def batch_api_available(server: Emulator, responder: Responder) -> bool:
    """False (after answering) when the Batch API is switched off."""
    switch = server.options.get("batch_api", True)
    if switch is True:
        return True
    status = 404 if switch is False else int(switch)
    await responder.error(
        status,
        f"Invalid URL ({responder.request.method} {responder.request.path})",
        code="not_found" if status == 404 else None,
    )
    return False
