"""``/v1/models``, ``/v1/embeddings`` and the file list in the emulator.

Embeddings are deterministic: each input's vector comes from a hash of its
text (same text, same vector), normalised to length 1, ``dimensions`` long
(default 8, small on purpose), as floats or as base64 of little-endian
float32s, as OpenAI sends them. Token counts: about four characters a token.
"""

from __future__ import annotations

import base64
import hashlib
import math
import re
import struct
from typing import TYPE_CHECKING, Any

from ._batches import batch_store
from ._http import Request, Responder, route

if TYPE_CHECKING:
    from ._server import MockServer

__all__ = ["MODELS", "embedding_vector"]

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
DEFAULT_DIMENSIONS = 8


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


def embedding_vector(text: str, dimensions: int = DEFAULT_DIMENSIONS) -> list[float]:
    """The emulator's vector for ``text``: from its SHA-256, unit length."""
    raw = b""
    counter = 0
    while len(raw) < 4 * dimensions:
        raw += hashlib.sha256(f"{counter}:{text}".encode()).digest()
        counter += 1
    values = [(v / 2**31) - 1.0 for v in struct.unpack(f"<{dimensions}I", raw[: 4 * dimensions])]
    norm = math.sqrt(sum(v * v for v in values)) or 1.0
    # Rounded through float32, so the float and the base64 forms carry the same numbers.
    return list(
        struct.unpack(
            f"<{dimensions}f", struct.pack(f"<{dimensions}f", *(v / norm for v in values))
        )
    )


@route("POST", "/v1/embeddings")
async def embeddings(
    server: MockServer, request: Request, responder: Responder, match: re.Match[str]
) -> None:
    try:
        body = request.json()
    except ValueError:
        await responder.error(400, "We could not parse the JSON body of your request.")
        return
    if not isinstance(body, dict) or not isinstance(body.get("model"), str) or not body["model"]:
        await responder.error(400, "you must provide a model parameter", param="model")
        return
    given = body.get("input")
    inputs = [given] if isinstance(given, str) else given
    if (
        not isinstance(inputs, list)
        or not inputs
        or not all(isinstance(i, str) and i for i in inputs)
    ):
        await responder.error(
            400, "'input' must be a non-empty string or array of strings", param="input"
        )
        return
    dimensions = body.get("dimensions", DEFAULT_DIMENSIONS)
    if (
        not isinstance(dimensions, int)
        or isinstance(dimensions, bool)
        or not 1 <= dimensions <= 4096
    ):
        await responder.error(400, "'dimensions' must be an integer from 1", param="dimensions")
        return
    encoding = body.get("encoding_format", "float")
    if encoding not in ("float", "base64"):
        await responder.error(
            400, "'encoding_format' must be 'float' or 'base64'", param="encoding_format"
        )
        return
    data = []
    for index, text in enumerate(inputs):
        vector = embedding_vector(text, dimensions)
        value: Any = vector
        if encoding == "base64":
            value = base64.b64encode(struct.pack(f"<{dimensions}f", *vector)).decode()
        data.append({"object": "embedding", "index": index, "embedding": value})
    tokens = sum(len(t) // 4 + 1 for t in inputs)
    await responder.send_json(
        200,
        {
            "object": "list",
            "data": data,
            "model": body["model"],
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        },
        {"x-request-id": request.request_id or ""},
    )


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
