"""Reading a whole answer into memory: never more than a cap, checked while reading.

Every non-streamed answer is read whole (it is parsed as one JSON document), so a
broken server or relay sending hundreds of megabytes would take the client's memory
with it. :func:`read_capped` stops at ``limit`` bytes (at once when the
``Content-Length`` already says more) with :class:`ResponseTooLargeError`;
:func:`read_error_body` keeps the first part of an error answer (an HTML page, an
error object), which is all its message needs. Streams (capped per event line) and
downloads (streamed to disk) do not come through here.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from contextlib import aclosing
from typing import cast

import httpx

from .errors import response_too_large

__all__ = ["DEFAULT_MAX_RESPONSE_BYTES", "ERROR_BODY_LIMIT", "read_capped", "read_error_body"]

#: The default cap on a non-streamed answer. The largest real ones are embeddings at
#: the API's limits in float JSON: 2,048 inputs x 3,072 dimensions, about 195 MB as
#: OpenAI prints them (~31 bytes a float); base64 is a sixth of that. A chat
#: completion is a few MB at most, even with logprobs. 256 MiB leaves room above the
#: largest while stopping a runaway body long before it costs gigabytes.
DEFAULT_MAX_RESPONSE_BYTES = 256 * 2**20
#: What is kept of an error answer (status >= 400, an HTML page where JSON was due):
#: its message needs the first few hundred bytes.
ERROR_BODY_LIMIT = 2**20


def _declared_length(response: httpx.Response) -> int | None:
    if response.headers.get("content-encoding", "identity").lower() not in ("", "identity"):
        return None  # the length on the wire, not what it decodes to
    length = response.headers.get("content-length", "")
    return int(length) if length.isdigit() else None


async def read_capped(response: httpx.Response, limit: int | None) -> bytes:
    """The body of ``response``, read whole into ``response.content``; at most ``limit`` bytes.

    Counts decoded bytes (a compressed body is capped on what it decodes to).
    Over the cap: :class:`~holysheep_async.errors.ResponseTooLargeError`, with the
    response closed (its connection is not reused). ``None``: no cap.
    """
    content: bytes | None = getattr(response, "_content", None)
    if content is not None:
        # Read whole already (this package's transport hands over an answer that came
        # with its head read): only its size to check, no stream to go through.
        if limit is not None and len(content) > limit:
            await response.aclose()
            raise response_too_large(response, limit)
        return content
    if limit is None:
        return await response.aread()
    declared = _declared_length(response)
    if declared is not None and declared > limit:
        await response.aclose()
        raise response_too_large(response, limit)
    parts: list[bytes] = []
    size = 0
    async with aclosing(_chunks(response)) as chunks:
        async for chunk in chunks:
            size += len(chunk)
            if size > limit:
                await response.aclose()
                raise response_too_large(response, limit)
            parts.append(chunk)
    return _keep(response, parts)


async def read_error_body(response: httpx.Response, limit: int | None = None) -> bool:
    """Read the first ``min(limit, ERROR_BODY_LIMIT)`` bytes into ``response.content``.

    Returns whether the body was longer (then the response is closed, the rest unread).
    """
    cap = ERROR_BODY_LIMIT if limit is None else min(limit, ERROR_BODY_LIMIT)
    parts: list[bytes] = []
    size = 0
    cut = False
    async with aclosing(_chunks(response)) as chunks:
        async for chunk in chunks:
            if size + len(chunk) > cap:
                parts.append(chunk[: cap - size])
                cut = True
                break
            size += len(chunk)
            parts.append(chunk)
    if cut:
        await response.aclose()
    _keep(response, parts)
    return cut


def _chunks(response: httpx.Response) -> AsyncGenerator[bytes, None]:
    # httpx's aiter_bytes() is an async generator (typed as an iterator): closed at once
    # when reading stops early, not whenever the garbage collector gets to it.
    return cast(AsyncGenerator[bytes, None], response.aiter_bytes())


def _keep(response: httpx.Response, parts: list[bytes]) -> bytes:
    content = b"".join(parts)
    # What httpx's own aread() leaves: .content, .text and .json() read from here.
    response._content = content
    return content
