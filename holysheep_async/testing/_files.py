"""``/v1/files`` in the emulator: upload, list, retrieve, delete, content.

The files live in the store the Batch API shares (``_store``), on disk.
"""

from __future__ import annotations

import re

from ._http import Request, Responder
from ._state import Emulator, route
from ._store import StoredFile, batch_api_available, batch_store

# batch_store: re-exported (tests import it from here and from _batches).
__all__ = ["ROUTES", "batch_store"]


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


async def upload_file(
    server: Emulator, request: Request, responder: Responder, match: re.Match[str]
) -> None:
    if not await batch_api_available(server, responder):
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


async def _file(server: Emulator, responder: Responder, file_id: str) -> StoredFile | None:
    if not await batch_api_available(server, responder):
        return None
    file = batch_store(server).files.get(file_id)
    if file is None:
        await responder.error(404, f"No such File object: {file_id}", param="id")
    return file


async def retrieve_file(
    server: Emulator, request: Request, responder: Responder, match: re.Match[str]
) -> None:
    file = await _file(server, responder, match.group(1))
    if file is not None:
        await responder.send_json(200, file.obj())


async def delete_file(
    server: Emulator, request: Request, responder: Responder, match: re.Match[str]
) -> None:
    file = await _file(server, responder, match.group(1))
    if file is not None:
        batch_store(server).files.pop(file.id, None)
        file.path.unlink(missing_ok=True)
        await responder.send_json(200, {"id": file.id, "object": "file", "deleted": True})


async def file_content(
    server: Emulator, request: Request, responder: Responder, match: re.Match[str]
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


async def list_files(
    server: Emulator, request: Request, responder: Responder, match: re.Match[str]
) -> None:
    store = batch_store(server)
    purpose = request.query.get("purpose")
    with store.lock:
        files = [f.obj() for f in store.files.values() if purpose in (None, f.purpose)]
    files.sort(key=lambda f: (f["created_at"], f["id"]), reverse=True)
    try:
        limit = int(request.query.get("limit", "10000"))
    except ValueError:
        await responder.error(400, "'limit' must be an integer", param="limit")
        return
    after = request.query.get("after")
    if after:
        ids = [f["id"] for f in files]
        files = files[ids.index(after) + 1 :] if after in ids else []
    page = files[:limit]
    await responder.send_json(
        200,
        {
            "object": "list",
            "data": page,
            "first_id": page[0]["id"] if page else None,
            "last_id": page[-1]["id"] if page else None,
            "has_more": len(files) > limit,
        },
    )


ROUTES = (
    route("POST", "/v1/files", upload_file),
    route("GET", "/v1/files", list_files),
    route("GET", r"/v1/files/([^/]+)", retrieve_file),
    route("DELETE", r"/v1/files/([^/]+)", delete_file),
    route("GET", r"/v1/files/([^/]+)/content", file_content),
)
