"""Embeddings in the emulator: deterministic vectors, for ``/v1/embeddings`` and batches.

Each input's vector comes from a hash of its text (same text, same vector),
normalised to length 1, ``dimensions`` long (default 8, small on purpose), as
floats or as base64 of little-endian float32s, as OpenAI sends them. Token
counts: about four characters a token.
"""

from __future__ import annotations

import base64
import hashlib
import math
import struct
from typing import Any

__all__ = ["DEFAULT_DIMENSIONS", "embedding_vector", "embeddings_answer"]

DEFAULT_DIMENSIONS = 8


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


def embeddings_answer(body: Any) -> tuple[int, dict[str, Any]]:
    """``(status, JSON body)`` of the emulator's answer to an embeddings request body."""

    def error(message: str, param: str) -> tuple[int, dict[str, Any]]:
        return 400, {
            "error": {
                "message": message,
                "type": "invalid_request_error",
                "param": param,
                "code": None,
            }
        }

    if not isinstance(body, dict) or not isinstance(body.get("model"), str) or not body["model"]:
        return error("you must provide a model parameter", "model")
    given = body.get("input")
    inputs = [given] if isinstance(given, str) else given
    if (
        not isinstance(inputs, list)
        or not inputs
        or not all(
            (isinstance(i, str) and i) or (isinstance(i, list) and i) or isinstance(i, int)
            for i in inputs
        )
    ):
        return error("'input' must be a non-empty string or array", "input")
    if all(isinstance(i, int) for i in inputs):
        inputs = [inputs]  # one text given as token ids
    texts = [i if isinstance(i, str) else " ".join(map(str, i)) for i in inputs]
    dimensions = body.get("dimensions", DEFAULT_DIMENSIONS)
    if (
        not isinstance(dimensions, int)
        or isinstance(dimensions, bool)
        or not 1 <= dimensions <= 4096
    ):
        return error("'dimensions' must be an integer from 1 to 4096", "dimensions")
    encoding = body.get("encoding_format", "float")
    if encoding not in ("float", "base64"):
        return error("'encoding_format' must be 'float' or 'base64'", "encoding_format")
    data = []
    for index, text in enumerate(texts):
        vector = embedding_vector(text, dimensions)
        value: Any = vector
        if encoding == "base64":
            value = base64.b64encode(struct.pack(f"<{dimensions}f", *vector)).decode()
        data.append({"object": "embedding", "index": index, "embedding": value})
    tokens = sum(len(t) // 4 + 1 for t in texts)
    return 200, {
        "object": "list",
        "data": data,
        "model": body["model"],
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }
