"""The run's index: one row per request, on disk (SQLite), so memory stays flat at any size.

``batches.run`` keeps no request and no result in memory: requests live in
the run's ``input.jsonl`` (row ``line`` is its line number), results in the
files the server and the direct calls produced. This index says, per
``custom_id``, which line it is, which part (batch input file) it went into,
and where its best result so far lies (file and byte offset), with that
result's state, model and usage for the accounting.

It is derived data: rebuilt from the journal's files at the start of every
run (no durability needed, so SQLite runs without its own journal). The
report of a run with ``output=`` keeps it to answer ``results`` and the id
lists by lookups in the output file (see :class:`ResultsFile`, :class:`IdList`).

SQLite (the standard library's ``sqlite3``) rather than code of our own: a
B-tree keyed by ``custom_id`` with a bounded page cache is exactly what a
million ids need, and it is on every Python.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sqlite3
import tempfile
import uuid
import weakref
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, overload

from ..jsonl import BatchResult, parse_result_line

__all__ = ["FAILED", "OK", "RETRYABLE", "IdList", "RunIndex", "ResultsFile", "result_state"]

#: ``state`` of a row: its best result so far succeeded / failed worth a retry / failed for good.
OK, RETRYABLE, FAILED = 1, 2, 3
#: Error codes worth another try (besides no answer at all, 408, 409, 429 and 5xx).
_RETRY_CODES = frozenset({"batch_expired", "batch_cancelled", "batch_failed", "server_error"})
_PAGE = 2_000
_BOM = b"\xef\xbb\xbf"

_SCHEMA = """
CREATE TABLE ids (
    line INTEGER PRIMARY KEY,  -- 1-based line of input.jsonl
    cid TEXT NOT NULL UNIQUE,
    model TEXT,                -- the request's
    amodel TEXT,               -- the answer's (priced by this one when there is one)
    part INTEGER,              -- the last part (batch input file) it went into
    todo INTEGER,              -- the last round that had it to do
    state INTEGER,             -- NULL (no result), OK, RETRYABLE, FAILED
    src INTEGER,               -- file of the best result (files.id) ...
    off INTEGER,               -- ... and its byte offset there
    usage TEXT,                -- the result's usage (JSON), for the accounting
    direct INTEGER
);
CREATE TABLE files (id INTEGER PRIMARY KEY, path TEXT NOT NULL UNIQUE);
"""


def result_state(result: BatchResult) -> int:
    """The ``state`` a result gives its row: OK, RETRYABLE (no answer at all, 408, 409,
    429, 5xx, an expired, cancelled or failed batch) or FAILED."""
    if result.ok:
        return OK
    code = result.error.get("code") if result.error else None
    status = result.status_code
    retry = status is None or status in (408, 409, 429) or status >= 500 or code in _RETRY_CODES
    return RETRYABLE if retry else FAILED


class RunIndex:
    """The index of one run, in a SQLite file: in ``folder`` (a journal's work folder,
    where a killed run's leftovers are swept by the next run), or else in a temporary
    folder of its own.

    Closed (and its file removed) by :meth:`close`, or when nothing refers to it any more.
    """

    def __init__(self, folder: Path | None = None) -> None:
        if folder is None:
            own = Path(tempfile.mkdtemp(prefix="holysheep-index-"))
            path = own / "index.sqlite"
        else:
            for stale in folder.glob("index-*.sqlite"):
                # A killed run's (or a report's still in use: its open file lives on).
                with contextlib.suppress(OSError):
                    stale.unlink()
            own = None
            path = folder / f"index-{uuid.uuid4().hex[:12]}.sqlite"
        self.db = sqlite3.connect(path, check_same_thread=False)
        self.db.executescript(
            "PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF; PRAGMA temp_store=FILE;" + _SCHEMA
        )
        self._files: dict[str, int] = {}
        self._readers: dict[int, Any] = {}
        self._finalizer = weakref.finalize(self, _cleanup, self.db, path, own, self._readers)

    def close(self) -> None:
        self._finalizer()

    # -- ids ---------------------------------------------------------------------

    def commit(self) -> None:
        self.db.commit()

    def count(self, where: str = "1", *args: Any) -> int:
        return int(self.db.execute(f"SELECT count(*) FROM ids WHERE {where}", args).fetchone()[0])

    def rows(self, columns: str, where: str = "1", *args: Any) -> Iterator[tuple[Any, ...]]:
        """Rows in input order, fetched a page at a time (the table may change in between)."""
        last = 0
        while True:
            page = self.db.execute(
                f"SELECT line, {columns} FROM ids WHERE line > ? AND ({where})"
                f" ORDER BY line LIMIT {_PAGE}",
                (last, *args),
            ).fetchall()
            yield from page
            if len(page) < _PAGE:
                return
            last = page[-1][0]

    def set_many(self, sql: str, params: Any) -> None:
        self.db.executemany(sql, params)

    # -- results -----------------------------------------------------------------

    def file_id(self, path: Path) -> int:
        key = os.fspath(path)
        found = self._files.get(key)
        if found is None:
            cur = self.db.execute("INSERT OR IGNORE INTO files (path) VALUES (?)", (key,))
            if cur.rowcount:
                found = int(cur.lastrowid or 0)
            else:
                row = self.db.execute("SELECT id FROM files WHERE path = ?", (key,)).fetchone()
                found = int(row[0])
            self._files[key] = found
        return found

    def merge(
        self, result: BatchResult, state: int, src: int, off: int, *, part: int | None = None
    ) -> str:
        """Take ``result`` unless the row already has a success; "foreign" when the
        ``custom_id`` is not ours (or, with ``part``, not in that part)."""
        usage = result.body.get("usage") if isinstance(result.body, dict) else None
        values: tuple[Any, ...] = (
            state,
            src,
            off,
            json.dumps(usage) if isinstance(usage, dict) else None,
            result.model,
            int(result.direct),
            result.custom_id,
        )
        sql = (
            "UPDATE ids SET state = ?, src = ?, off = ?, usage = ?, amodel = ?,"
            " direct = ? WHERE cid = ? AND (state IS NULL OR state <> 1)"
        )
        if part is not None:
            sql += " AND part = ?"
            values += (part,)
        if self.db.execute(sql, values).rowcount:
            return "taken"
        row = self.db.execute("SELECT part FROM ids WHERE cid = ?", (result.custom_id,)).fetchone()
        if row is None or (part is not None and row[0] != part):
            return "foreign"
        return "kept"

    def read_line(self, src: int, off: int) -> bytes:
        """The raw result line at ``off`` in file ``src``."""
        fh = self._readers.get(src)
        if fh is None:
            path = self.db.execute("SELECT path FROM files WHERE id = ?", (src,)).fetchone()[0]
            fh = self._readers[src] = open(path, "rb")  # noqa: SIM115 - closed in close()
        fh.seek(off)
        raw: bytes = fh.readline()
        if off == 0 and raw.startswith(_BOM):
            raw = raw[3:]
        return raw.rstrip(b"\r\n")

    def close_readers(self) -> None:
        for fh in self._readers.values():
            fh.close()
        self._readers.clear()

    def result(self, src: int, off: int) -> BatchResult:
        return parse_result_line(self.read_line(src, off))


def _cleanup(
    db: sqlite3.Connection, path: Path, own: Path | None, readers: dict[int, Any]
) -> None:
    for fh in readers.values():
        with contextlib.suppress(OSError):
            fh.close()
    readers.clear()
    with contextlib.suppress(sqlite3.Error):
        db.close()
    if own is not None:
        shutil.rmtree(own, ignore_errors=True)
    else:
        with contextlib.suppress(OSError):
            path.unlink()


_STATES = {"succeeded": "state = 1", "failed": "state IN (2, 3)", "missing": "state IS NULL"}


class IdList(Sequence[str]):
    """``custom_id``s of one kind (succeeded, failed, missing) in input order, read from
    the run's index on demand: a list's interface without a million strings in memory.

    Compares equal to a list with the same ids; ``list(ids)`` makes a real one.
    """

    def __init__(self, index: RunIndex, kind: str) -> None:
        self._index = index
        self._where = _STATES[kind]
        self._len: int | None = None

    def __len__(self) -> int:
        if self._len is None:
            self._len = self._index.count(self._where)
        return self._len

    def __iter__(self) -> Iterator[str]:
        for _, cid in self._index.rows("cid", self._where):
            yield cid

    @overload
    def __getitem__(self, i: int) -> str: ...
    @overload
    def __getitem__(self, i: slice) -> list[str]: ...
    def __getitem__(self, i: int | slice) -> str | list[str]:
        if isinstance(i, slice):
            start, stop, step = i.indices(len(self))
            if step != 1:
                return list(self)[i]
            rows = self._index.db.execute(
                f"SELECT cid FROM ids WHERE {self._where} ORDER BY line LIMIT ? OFFSET ?",
                (max(0, stop - start), start),
            ).fetchall()
            return [r[0] for r in rows]
        n = len(self)
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError("custom_id index out of range")
        return self[i : i + 1][0]

    def __contains__(self, cid: object) -> bool:
        row = self._index.db.execute(
            f"SELECT 1 FROM ids WHERE cid = ? AND {self._where}", (cid,)
        ).fetchone()
        return row is not None

    def __eq__(self, other: object) -> bool:
        if isinstance(other, (IdList, list, tuple)):
            return len(self) == len(other) and all(a == b for a, b in zip(self, other, strict=True))
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __add__(self, other: Sequence[str]) -> list[str]:
        return [*self, *other]

    def __radd__(self, other: Sequence[str]) -> list[str]:
        return [*other, *self]

    def __repr__(self) -> str:
        head = self[:5]
        more = f", ... ({len(self):,} in all)" if len(self) > 5 else ""
        return f"IdList({', '.join(map(repr, head))}{more})"


class ResultsFile(Mapping[str, BatchResult]):
    """``report.results`` of a run with ``output=``: each result is read from the output
    file when asked for (by its offset, kept in the run's index), never all at once."""

    def __init__(self, index: RunIndex, src: int) -> None:
        self._index = index
        self._src = src
        self._len: int | None = None

    def __getitem__(self, cid: str) -> BatchResult:
        row = self._index.db.execute(
            "SELECT src, off FROM ids WHERE cid = ? AND state IS NOT NULL", (cid,)
        ).fetchone()
        if row is None:
            raise KeyError(cid)
        return self._index.result(int(row[0]), int(row[1]))

    def __iter__(self) -> Iterator[str]:
        for _, cid in self._index.rows("cid", "state IS NOT NULL"):
            yield cid

    def __len__(self) -> int:
        if self._len is None:
            self._len = self._index.count("state IS NOT NULL")
        return self._len

    def __contains__(self, cid: object) -> bool:
        row = self._index.db.execute(
            "SELECT 1 FROM ids WHERE cid = ? AND state IS NOT NULL", (cid,)
        ).fetchone()
        return row is not None

    def __repr__(self) -> str:
        return f"<ResultsFile: {len(self):,} results>"
