"""``/v1/files`` in the emulator, and the store it shares with ``/v1/batches``.

Files live on disk, in a temporary folder of the server's (removed when the
server is collected or the process exits): uploads, batch outputs, and a
running batch's answers, so a run of a million requests costs the emulator
disk, not memory. ``server.options["batch_api"]`` switches both APIs off
(``False``: 404; an int: that status), as on a relay without them.
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
import threading
import time
import weakref
from collections.abc import Iterator
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from ._http import Request, Responder, route

if TYPE_CHECKING:
    from ._batches import _Batch
    from ._server import MockServer

__all__ = ["batch_store"]

_STATE_KEY = "batches"


def _now() -> int:
    return int(time.time())


class _File:
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


class _Lines:
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


class _Done:
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


class _Store:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.files: dict[str, _File] = {}
        self.batches: dict[str, _Batch] = {}
        self.order: list[str] = []
        self.seen_failures: set[str] = set()
        self.folder = Path(tempfile.mkdtemp(prefix="holysheep-emulator-"))
        weakref.finalize(self, shutil.rmtree, self.folder, True)

    def new_file(self, file_id: str, filename: str, purpose: str) -> _File:
        """A file of the store (empty on disk until written)."""
        file = _File(file_id, filename, purpose, self.folder / file_id, _now())
        file.path.touch()
        return file


def batch_store(server: MockServer) -> _Store:
    store = server.state.get(_STATE_KEY)
    if store is None:
        store = server.state.setdefault(_STATE_KEY, _Store())
    assert isinstance(store, _Store)
    return store



# ---------------------------------------------------------------------------
# HTTP


async def _available(server: MockServer, responder: Responder) -> bool:
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


def _parse_multipart(request: Request) -> dict[str, tuple[str | None, bytes]]:
    ctype = request.headers.get("content-type", "")
    m = re.search(r'boundary="?([^";]+)"?', ctype)
    if not ctype.startswith("multipart/form-data") or m is None:
        raise ValueError("expected a multipart/form-data body")
    boundary = b"--" + m.group(1).encode()
    parts: dict[str, tuple[str | None, bytes]] = {}
    for chunk in request.body.split(boundary)[1:]:
        if chunk.startswith(b"--"):
            break
        head, _, data = chunk.partition(b"\r\n\r\n")
        if data.endswith(b"\r\n"):
            data = data[:-2]
        disp = re.search(rb"content-disposition:[^\r\n]*", head, re.IGNORECASE)
        if disp is None:
            continue
        name = re.search(rb'\bname="([^"]*)"', disp.group(0))
        filename = re.search(rb'filename="([^"]*)"', disp.group(0))
        if name is not None:
            parts[name.group(1).decode()] = (filename.group(1).decode() if filename else None, data)
    return parts


@route("POST", "/v1/files")
async def upload_file(
    server: MockServer, request: Request, responder: Responder, match: re.Match[str]
) -> None:
    if not await _available(server, responder):
        return
    try:
        parts = _parse_multipart(request)
    except ValueError as exc:
        await responder.error(400, str(exc))
        return
    purpose = parts.get("purpose", (None, b""))[1].decode()
    if "file" not in parts:
        await responder.error(400, "'file' is a required property", param="file")
        return
    if purpose not in ("batch", "fine-tune", "assistants", "vision", "user_data", "evals"):
        await responder.error(400, f"'{purpose}' is not a valid purpose", param="purpose")
        return
    filename, data = parts["file"]
    store = batch_store(server)
    file = store.new_file(server.next_id("file-"), filename or "upload.jsonl", purpose)
    file.data = data
    with store.lock:
        store.files[file.id] = file
    await responder.send_json(200, file.obj())


async def _file(server: MockServer, responder: Responder, file_id: str) -> _File | None:
    if not await _available(server, responder):
        return None
    file = batch_store(server).files.get(file_id)
    if file is None:
        await responder.error(404, f"No such File object: {file_id}", param="id")
    return file


@route("GET", r"/v1/files/([^/]+)")
async def retrieve_file(
    server: MockServer, request: Request, responder: Responder, match: re.Match[str]
) -> None:
    file = await _file(server, responder, match.group(1))
    if file is not None:
        await responder.send_json(200, file.obj())


@route("DELETE", r"/v1/files/([^/]+)")
async def delete_file(
    server: MockServer, request: Request, responder: Responder, match: re.Match[str]
) -> None:
    file = await _file(server, responder, match.group(1))
    if file is not None:
        batch_store(server).files.pop(file.id, None)
        file.path.unlink(missing_ok=True)
        await responder.send_json(200, {"id": file.id, "object": "file", "deleted": True})


@route("GET", r"/v1/files/([^/]+)/content")
async def file_content(
    server: MockServer, request: Request, responder: Responder, match: re.Match[str]
) -> None:
    file = await _file(server, responder, match.group(1))
    if file is None:
        return
    # Streamed from disk, a megabyte at a time: output files of 50,000 answers are big.
    await responder.start(200, {"content-type": "application/octet-stream"})
    with file.path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            await responder.write(chunk)
    await responder.end()
