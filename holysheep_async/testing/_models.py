"""``/v1/models``, ``/v1/embeddings`` and the file list in the emulator.

The embeddings themselves are made in :mod:`._embeddings` (batches use them too).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from ._batches import batch_store
from ._embeddings import embedding_vector, embeddings_answer
from ._http import Request, Responder, route

if TYPE_CHECKING:
    from ._server import MockServer

__all__ = ["MODELS", "embedding_vector"]  # embedding_vector: re-exported for tests

#: The models the emulator lists (it answers any model name all the same).
MODELS = (
    "gpt-4o",
    "gpt-4o-mini",
    "gpt-4.1",
    "gpt-5",
    "text-embedding-3-small",
    "text-embedding-3-large",
)
_CREATED = 1_700_000_000


def _model(name: str) -> dict[str, Any]:
    return {"id": name, "object": "model", "created": _CREATED, "owned_by": "holysheep-mock"}


@route("GET", "/v1/models")
async def list_models(
    server: MockServer, request: Request, responder: Responder, match: re.Match[str]
) -> None:
    await responder.send_json(200, {"object": "list", "data": [_model(m) for m in MODELS]})


@route("GET", r"/v1/models/(.+)")
async def retrieve_model(
    server: MockServer, request: Request, responder: Responder, match: re.Match[str]
) -> None:
    name = match.group(1)
    if name not in MODELS:
        await responder.error(
            404, f"The model '{name}' does not exist", param="model", code="model_not_found"
        )
        return
    await responder.send_json(200, _model(name))


@route("POST", "/v1/embeddings")
async def embeddings(
    server: MockServer, request: Request, responder: Responder, match: re.Match[str]
) -> None:
    try:
        body = request.json()
    except ValueError:
        await responder.error(400, "We could not parse the JSON body of your request.")
        return
    status, payload = embeddings_answer(body)
    await responder.send_json(status, payload, {"x-request-id": request.request_id or ""})


@route("GET", "/v1/files")
async def list_files(
    server: MockServer, request: Request, responder: Responder, match: re.Match[str]
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
