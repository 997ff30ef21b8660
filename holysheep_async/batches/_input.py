"""The input side of ``batches.run``: requests in, work files out, one line at a time.

:func:`prepare` streams whatever ``run`` was given (a list, a JSONL path, an
iterable or an async iterable) into the run's ``input.jsonl``, normalising
and validating each request as it goes (problems carry line numbers), and
records every ``custom_id`` in the run's on-disk index. :func:`write_parts`
cuts the requests still to do into batch input files, by model and at the
API's limits, reading ``input.jsonl`` again rather than keeping anything.
Memory stays flat whatever the number of requests.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import AsyncIterable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import IO, Any

import anyio

from ..errors import BatchValidationError
from ..jsonl import (
    MAX_FILE_BYTES,
    MAX_REQUESTS,
    BatchRequest,
    LineChecker,
    ValidationReport,
    _dumps,
    _sync_dir,
    atomic_write,
    to_request,
)
from ._index import RunIndex

__all__ = [
    "Requests",
    "part_ids",
    "prepare",
    "request_lines",
    "split_requests",
    "write_parts",
]

Requests = (
    Iterable[BatchRequest | Mapping[str, Any]]
    | AsyncIterable[BatchRequest | Mapping[str, Any]]
    | str
    | os.PathLike[str]
)
_FLUSH = 2_000
_BOM = b"\xef\xbb\xbf"


async def prepare(requests: Requests, workdir: Path, endpoint: str, index: RunIndex) -> str:
    """Write the normalised requests to ``workdir/input.jsonl`` and index their ids.

    Returns the fingerprint of the input (the SHA-256 of ``input.jsonl``, as
    journals have always recorded it). Bad input raises
    :class:`BatchValidationError` with every problem (up to a thousand) and its line.
    """
    report = ValidationReport()
    checker = LineChecker(
        report, endpoint=endpoint, max_requests=None, max_bytes=None, single_model=False
    )
    checker.seen = _never_seen  # duplicates are found by the index, a page at a time
    pending: list[tuple[int, str, str | None]] = []
    #: Lines of a task file that are not JSON objects: reported alone, as the file's problem.
    unreadable: list[tuple[int, str]] = []
    digest = hashlib.sha256()
    source = "requests"
    if isinstance(requests, (str, os.PathLike)):
        source = os.fspath(requests)

    def flush() -> None:
        _index_ids(index, pending, checker)
        pending.clear()

    def take(lineno: int, item: object) -> None:
        try:
            line = _dumps(to_request(item, lineno, url=endpoint).to_line())  # type: ignore[arg-type]
            data = line.encode("utf-8") + b"\n"
        except UnicodeEncodeError as exc:
            raise ValueError(
                f"request {lineno}: {exc.object[exc.start]!r} at column {exc.start + 1} is a"
                " lone surrogate, not text (it cannot be written as UTF-8)"
            ) from None
        digest.update(data)
        out.write(data)
        obj = checker.check(lineno, data)
        if obj is not None:
            cid = obj.get("custom_id")
            body = obj["body"]
            if type(cid) is str and cid:
                model = body.get("model")
                pending.append((lineno, cid, model if type(model) is str else None))
                if len(pending) >= _FLUSH:
                    flush()

    with atomic_write(workdir / "input.jsonl", "wb") as out:
        if isinstance(requests, (str, os.PathLike)):
            for lineno, task in _task_lines(requests, unreadable):
                take(lineno, task)
                if lineno % 10_000 == 0:
                    await anyio.lowlevel.checkpoint()
        elif isinstance(requests, AsyncIterable):
            lineno = 0
            async for item in requests:
                lineno += 1
                take(lineno, item)
        else:
            for lineno, item in enumerate(requests, 1):
                take(lineno, item)
                if lineno % 10_000 == 0:
                    await anyio.lowlevel.checkpoint()
        flush()
        index.commit()
        if unreadable:
            raise BatchValidationError(unreadable, source=source)
        checker.finish()
        if report.problems:
            report.problems.sort(key=lambda p: p[0])
            raise BatchValidationError(report.problems, source=source)
    return digest.hexdigest()


def split_requests(
    requests: list[BatchRequest],
    *,
    max_requests: int = MAX_REQUESTS,
    max_bytes: int = MAX_FILE_BYTES,
) -> list[list[BatchRequest]]:
    """Group by model (one batch takes one model), then cut at ``max_requests`` / ``max_bytes``."""
    if max_requests < 1 or max_bytes < 1:
        raise ValueError("max_requests and max_bytes must be >= 1")
    by_model: dict[str | None, list[BatchRequest]] = {}
    for request in requests:
        by_model.setdefault(request.model, []).append(request)
    chunks: list[list[BatchRequest]] = []
    for group in by_model.values():
        chunk: list[BatchRequest] = []
        size = 0
        for request in group:
            line = len(json.dumps(request.to_line(), ensure_ascii=False).encode()) + 1
            if chunk and (len(chunk) >= max_requests or size + line > max_bytes):
                chunks.append(chunk)
                chunk, size = [], 0
            chunk.append(request)
            size += line
        if chunk:
            chunks.append(chunk)
    return chunks


def _never_seen(cid: str, line: int) -> int | None:
    return None


def _index_ids(
    index: RunIndex, pending: list[tuple[int, str, str | None]], checker: LineChecker
) -> None:
    """Add a page of ids; a duplicate is a problem naming the first line of its id."""
    if not pending:
        return
    cur = index.db.executemany(
        "INSERT OR IGNORE INTO ids (line, cid, model) VALUES (?, ?, ?)", pending
    )
    if cur.rowcount == len(pending):
        return
    for line, cid, _ in pending:
        row = index.db.execute("SELECT line FROM ids WHERE cid = ?", (cid,)).fetchone()
        if row is not None and row[0] != line:
            checker.problem(line, f"duplicate custom_id {cid!r} (first on line {row[0]})")


def _task_lines(
    path: str | os.PathLike[str], unreadable: list[tuple[int, str]]
) -> Iterator[tuple[int, dict[str, Any]]]:
    """The lines of a file of batch lines or seed-style tasks, as dicts, with their numbers.

    A line that is not a JSON object goes to ``unreadable`` (reading goes on,
    so every such line is reported at once).
    """
    try:
        fh = open(path, "rb")  # noqa: SIM115
    except OSError as exc:
        unreadable.append((0, f"cannot read {os.fspath(path)}: {exc.strerror or exc}"))
        return
    with fh:
        for lineno, raw in enumerate(fh, 1):
            try:
                item = json.loads(raw) if raw.strip() else None
            except ValueError as exc:
                unreadable.append((lineno, f"invalid JSON: {exc}"))
                continue
            if not isinstance(item, dict):
                what = "blank line" if item is None else "expected a JSON object"
                unreadable.append((lineno, what))
                continue
            if not unreadable:
                yield lineno, item


def request_lines(
    workdir: Path, index: RunIndex, where: str, *args: Any
) -> Iterator[tuple[int, str | None, bytes]]:
    """``(line, model, raw line)`` of ``input.jsonl`` for the rows matching ``where``, in order."""
    with (workdir / "input.jsonl").open("rb") as fh:
        at = 0
        raw = b""
        for line, model in index.rows("model", where, *args):
            while at < line:
                raw = fh.readline()
                at += 1
            yield line, model, raw


class _Part:
    __slots__ = ("count", "fh", "meta", "path", "size")

    def __init__(self, path: Path, meta: dict[str, Any]) -> None:
        self.path = path
        self.meta = meta
        self.fh: IO[bytes] = path.open("wb")
        self.count = 0
        self.size = 0

    def close(self) -> None:
        self.fh.flush()
        os.fsync(self.fh.fileno())
        self.fh.close()
        self.meta["count"] = self.count


def write_parts(
    workdir: Path,
    index: RunIndex,
    parts: list[dict[str, Any]],
    round_: int,
    max_requests: int,
    max_bytes: int,
) -> None:
    """Cut the requests of round ``round_`` (``todo = round_``) into part files, one
    model per part, at most ``max_requests`` lines and ``max_bytes`` bytes each;
    append their descriptions to ``parts`` (the caller saves the journal after).
    """
    if max_requests < 1 or max_bytes < 1:
        raise ValueError("max_requests_per_batch and max_bytes_per_batch must be >= 1")
    open_parts: dict[str | None, _Part] = {}
    updates: list[tuple[int, int]] = []
    try:
        for line, model, raw in request_lines(workdir, index, "todo = ?", round_):
            part = open_parts.get(model)
            if part is None or part.count >= max_requests or part.size + len(raw) > max_bytes:
                if part is not None:
                    part.close()
                part = open_parts[model] = _new_part(workdir, parts, round_, model)
            part.fh.write(raw)
            part.count += 1
            part.size += len(raw)
            updates.append((part.meta["index"], line))
            if len(updates) >= _FLUSH:
                index.set_many("UPDATE ids SET part = ? WHERE line = ?", updates)
                updates.clear()
    finally:
        for part in open_parts.values():
            if not part.fh.closed:
                part.close()
    index.set_many("UPDATE ids SET part = ? WHERE line = ?", updates)
    index.commit()
    _sync_dir(workdir)


def _new_part(
    workdir: Path, parts: list[dict[str, Any]], round_: int, model: str | None
) -> _Part:
    index = len(parts)
    name = f"part-{index:03d}.jsonl"
    meta: dict[str, Any] = {
        "index": index,
        "round": round_,
        "file": name,
        "count": 0,
        "model": model,
        "input_file_id": None,
        "batch_id": None,
        "status": None,
        "results": None,
    }
    parts.append(meta)
    return _Part(workdir / name, meta)


def part_ids(path: Path) -> Iterator[str]:
    """The ``custom_id``s of a part file, in order (our own files: custom_id comes first)."""
    decode = json.JSONDecoder().raw_decode
    prefix = b'{"custom_id":'
    with path.open("rb") as fh:
        for raw in fh:
            if not raw.strip():
                continue
            text = raw.decode("utf-8")
            if raw.startswith(prefix):
                cid, _ = decode(text, len(prefix))
            else:
                cid = json.loads(text)["custom_id"]
            yield cid
