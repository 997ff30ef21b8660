"""``/v1/models`` and ``/v1/embeddings`` in the emulator.

The embeddings themselves are made in :mod:`._embeddings` (batches use them too).
"""

from __future__ import annotations

import re
from typing import Any

from ._embeddings import embedding_vector, embeddings_answer
from ._http import Request, Responder
from ._state import Emulator, route

__all__ = ["MODELS", "ROUTES", "embedding_vector"]  # embedding_vector: re-exported for tests

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


async def list_models(
    server: Emulator, request: Request, responder: Responder, match: re.Match[str]
) -> None:
    await responder.send_json(200, {"object": "list", "data": [_model(m) for m in MODELS]})


async def retrieve_model(
    server: Emulator, request: Request, responder: Responder, match: re.Match[str]
) -> None:
    name = match.group(1)
    if name not in MODELS:
        await responder.error(
            404, f"The model '{name}' does not exist", param="model", code="model_not_found"
        )
        return
    await responder.send_json(200, _model(name))


async def embeddings(
    server: Emulator, request: Request, responder: Responder, match: re.Match[str]
) -> None:
    try:
        body = request.json()
    except ValueError:
        await responder.error(400, "We could not parse the JSON body of your request.")
        return
    status, payload = embeddings_answer(body)
    await responder.send_json(status, payload, {"x-request-id": request.request_id or ""})


ROUTES = (
    route("GET", "/v1/models", list_models),
    route("GET", r"/v1/models/(.+)", retrieve_model),
    route("POST", "/v1/embeddings", embeddings),
)
