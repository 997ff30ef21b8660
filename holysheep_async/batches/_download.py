"""Reading a batch's result files: into a file, or result by result.

:func:`download` streams the output (and error) file into a path, atomically;
:func:`results` yields them one by one (as :class:`~holysheep_async.jsonl.BatchResult`),
line by line. Below them: the chunks, the lines, and the errors of a file that
is not results (an HTML page, lines of which none is a result). Both go through
a :class:`~._api.BatchAPI` (the REST calls).

A download is a GET: whoever catches these errors may simply ask again.
"""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncGenerator, AsyncIterator
from pathlib import Path

import httpx

from .. import _otel
from .._body import read_error_body
from .._options import CallOptions
from ..errors import APIConnectionError, APITimeoutError, InvalidResponseError, invalid_response
from ..jsonl import BatchResult, atomic_write, parse_result_line
from ..models import Batch
from ..resources import base_url
from ._api import BatchAPI

__all__ = ["download", "jsonl_lines", "not_jsonl", "read_body", "refuse_html", "results"]

log = logging.getLogger("holysheep_async")


async def results(
    api: BatchAPI,
    batch: Batch | str,
    options: CallOptions,
    problems: list[tuple[int, str]] | None = None,
) -> AsyncGenerator[BatchResult, None]:
    """``client.batches.results`` (its docstring says what it does)."""
    batch = await api.as_batch(batch, options)
    for file_id in (batch.output_file_id, batch.error_file_id):
        if not file_id:
            continue
        reply = await api.content(file_id, options)
        try:
            await refuse_html(reply.response, file_id)
            lineno = 0
            good = 0
            first_bad: tuple[int, str] | None = None
            async for line in jsonl_lines(read_body(reply.response, file_id)):
                lineno += 1
                if lineno == 1 and line.startswith(b"\xef\xbb\xbf"):
                    line = line[3:]
                if not line.strip():
                    continue
                try:
                    result = parse_result_line(line)
                except ValueError as exc:
                    message = f"file {file_id} line {lineno}: not a batch result: {exc}"
                    log.warning("%s", message)
                    if problems is not None:
                        problems.append((lineno, message))
                    first_bad = first_bad or (lineno, message)
                    continue
                good += 1
                yield result
            if first_bad is not None and not good:
                raise not_jsonl(reply.response, file_id, first_bad)
        finally:
            await reply.aclose()


@_otel.batch_op("download", base_url=base_url, first="holysheep.batch.id")
async def download(
    api: BatchAPI,
    batch: Batch | str,
    path: str | os.PathLike[str],
    options: CallOptions,
    *,
    include_errors: bool = True,
) -> Path:
    """``client.batches.download`` (its docstring says what it does)."""
    batch = await api.as_batch(batch, options)
    target = Path(path)
    ids = [batch.output_file_id, batch.error_file_id if include_errors else None]
    with atomic_write(target, "wb") as fh:
        for file_id in ids:
            if not file_id:
                continue
            reply = await api.content(file_id, options)
            last = b"\n"
            try:
                await refuse_html(reply.response, file_id)
                async for chunk in read_body(reply.response, file_id):
                    if chunk:
                        fh.write(chunk)
                        last = chunk[-1:]
            finally:
                await reply.aclose()
            if last != b"\n":
                fh.write(b"\n")
    return target


async def read_body(response: httpx.Response, file_id: str) -> AsyncIterator[bytes]:
    """A file's content, chunk by chunk; a body that breaks is a typed error naming the file.

    (A download is a GET: whoever catches this may simply ask again.)
    """
    received = 0
    try:
        async for chunk in response.aiter_bytes():
            received += len(chunk)
            yield chunk
    except httpx.TimeoutException as exc:
        raise APITimeoutError(
            f"file {file_id}: the download stalled after {received:,} bytes ({exc})"
        ) from exc
    except httpx.HTTPError as exc:
        raise APIConnectionError(
            f"file {file_id}: the connection broke after {received:,} bytes of the download"
            f" ({type(exc).__name__}: {exc})"
        ) from exc


async def refuse_html(response: httpx.Response, file_id: str) -> None:
    """A file's content that is an HTML page (a login or error page): say so, by file id."""
    if "html" not in response.headers.get("content-type", "").lower():
        return
    try:
        await read_error_body(response)  # the page's title is what the message needs
    except httpx.HTTPError as exc:
        raise APIConnectionError(
            f"file {file_id}: the connection broke reading an HTML answer ({type(exc).__name__})"
        ) from exc
    raise not_jsonl(response, file_id)


def not_jsonl(
    response: httpx.Response, file_id: str, first_bad: tuple[int, str] | None = None
) -> InvalidResponseError:
    """The error for a file whose content is not JSONL batch results at all.

    ``first_bad``: the first bad line of a file read line by line; None for an
    HTML page (read whole), which the message describes instead.
    """
    if first_bad is None:
        base = invalid_response(response, "JSONL batch results")
        return InvalidResponseError(
            f"file {file_id} line 1: not JSONL: {base.message}",
            status_code=base.status_code,
            request_id=base.request_id,
            body=base.body,
        )
    _, message = first_bad  # its text names the file and the line
    rid = response.headers.get("x-request-id")
    return InvalidResponseError(
        f"file {file_id} is not JSONL batch results: no line is a result; the first bad one:"
        f" {message}" + (f" [request id {rid}]" if rid else ""),
        status_code=response.status_code,
        request_id=rid,
        body=message,
    )


async def jsonl_lines(chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """The lines of a JSONL download, split at LF only.

    Not ``aiter_lines``: like ``str.splitlines`` it also splits at U+2028, U+0085
    and other characters a JSON string may hold unescaped, cutting a result in two.
    """
    pending: list[bytes] = []
    async for chunk in chunks:
        if b"\n" not in chunk:
            pending.append(chunk)
            continue
        if pending:
            pending.append(chunk)
            chunk = b"".join(pending)
            pending = []
        *lines, rest = chunk.split(b"\n")
        for line in lines:
            yield line
        if rest:
            pending.append(rest)
    if pending:
        yield b"".join(pending)
