"""``client.batches``: the OpenAI Batch API (``/files`` + ``/batches``) and the whole pipeline.

>>> report = await client.batches.run(tasks, journal="run.journal")  # doctest: +SKIP
>>> len(report.succeeded), len(report.failed), len(report.missing), report.cost_usd

``run`` validates, splits at the API's limits, uploads, creates, polls,
downloads and accounts; with a journal it resumes after a crash instead of
submitting again; it retries expired and failed requests; and where the
server has no Batch API it answers every request with direct calls instead.

Every method takes the per-call options (``extra_headers``, ``extra_query``,
``extra_body``, and ``timeout`` -- ``request_timeout`` on ``wait`` and ``run``,
whose ``timeout`` is how long to wait for the batch). A method that makes
several requests applies ``extra_headers``, ``extra_query`` and the timeout to
every one of them, and ``extra_body`` to the JSON body it sends: the batch
create body. A method that sends no body raises ``TypeError`` for ``extra_body``.
"""

from __future__ import annotations

import builtins
import logging
import os
import re
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import anyio
import httpx
from pydantic import BaseModel, ValidationError

from . import _batch_run, _otel
from ._batch_create import CLOCK_LEEWAY, CREATE_ID_KEY, MAX_METADATA_KEYS, create_once
from ._batch_download import jsonl_lines, not_jsonl, read_body, refuse_html
from ._batch_run import (
    BatchReport,
    ProgressCallback,
    Requests,
    RetryMode,
    RunProgress,
    _notify,
    adaptive_poll_interval,
    split_requests,
)
from ._options import CallOptions, call_options, without_body
from .errors import (
    BatchTimeoutError,
    BatchValidationError,
    invalid_response,
)
from .jsonl import (
    DEFAULT_ENDPOINT,
    MAX_FILE_BYTES,
    MAX_REQUESTS,
    BatchRequest,
    BatchResult,
    atomic_write,
    parse_result_line,
    validate_requests,
    write_requests,
)
from .models import (
    Batch,
    FileObject,
    _FromResponse,
    attach_response,
)
from .resources import _Resource
from .types import Headers, Query, Timeout

if TYPE_CHECKING:
    from ._requester import Requester
    from .chat import Chat

__all__ = ["BatchReport", "Batches", "RunProgress", "adaptive_poll_interval", "split_requests"]

log = logging.getLogger("holysheep_async")

M = TypeVar("M", bound=BaseModel)


def _base_url(batches: Batches) -> str:
    return batches._requester.base_url  # where the spans say the requests go


class Batches(_Resource):
    """The Batch API: ``submit``, ``retrieve``, ``wait``, ``results``, ``download``, ``cancel``,
    ``list``, and ``run`` (all of it, resumable)."""

    def __init__(self, requester: Requester, chat: Chat) -> None:
        super().__init__(requester)
        self._chat = chat

    # -- files ----------------------------------------------------------------

    @_otel.batch_op("upload", base_url=_base_url)
    async def upload(
        self,
        path: str | os.PathLike[str],
        *,
        extra_headers: Headers | None = None,
        extra_query: Query | None = None,
        extra_body: Mapping[str, object] | None = None,
        timeout: Timeout = None,
    ) -> FileObject:
        """Upload a JSONL file to ``/files`` with ``purpose=batch`` (multipart).

        ``extra_body``: more form fields, as in ``client.files.create``.
        """
        path = Path(path)
        # httpx streams a multipart body from a sync file object (and rewinds it to retry).
        with path.open("rb") as fh:  # noqa: ASYNC230
            reply = await self._request(
                "POST",
                "/files",
                files={"file": (path.name, fh, "application/jsonl")},
                data={"purpose": "batch"},
                extra_headers=extra_headers,
                extra_query=extra_query,
                extra_body=extra_body,
                timeout=timeout,
            )
        return self._parse(reply.response, FileObject, "a file object")

    # -- batches --------------------------------------------------------------

    async def submit(
        self,
        requests: Iterable[BatchRequest | Mapping[str, Any]] | str | os.PathLike[str],
        *,
        endpoint: str = DEFAULT_ENDPOINT,
        completion_window: str = "24h",
        metadata: dict[str, str] | None = None,
        extra_headers: Headers | None = None,
        extra_query: Query | None = None,
        extra_body: Mapping[str, object] | None = None,
        timeout: Timeout = None,
    ) -> Batch:
        """Validate, upload and create one batch. Invalid input raises
        :class:`BatchValidationError` (every problem with its line) before any upload.

        ``requests``: a JSONL file path, or ``BatchRequest``s / seed-style task dicts.
        ``extra_headers``, ``extra_query`` and ``timeout`` go with the upload and
        every request of the create (see :meth:`create`); ``extra_body`` is merged
        into the create body only.
        """
        options = call_options(extra_headers, extra_query, extra_body, timeout)
        if isinstance(requests, (str, os.PathLike)):
            return await self._submit_file(
                Path(requests), endpoint, completion_window, metadata, options
            )
        with tempfile.TemporaryDirectory(prefix="holysheep-") as tmp:
            path = Path(tmp) / "batch-input.jsonl"
            write_requests(path, requests, endpoint=endpoint)
            return await self._submit_file(path, endpoint, completion_window, metadata, options)

    async def _submit_file(
        self,
        path: Path,
        endpoint: str,
        window: str,
        metadata: dict[str, str] | None,
        options: CallOptions,
    ) -> Batch:
        file = await self._upload_valid(path, endpoint, options)
        # A fresh file: a batch made from it is ours, so a lost answer is looked up.
        return await create_once(self, file.id, endpoint, window, metadata, options)

    async def _upload_valid(
        self,
        path: Path,
        endpoint: str,
        options: CallOptions,
        max_requests: int = MAX_REQUESTS,
        max_bytes: int = MAX_FILE_BYTES,
    ) -> FileObject:
        """Upload ``path`` once it is known to be valid; else ``BatchValidationError``."""
        report = validate_requests(
            path, endpoint=endpoint, max_requests=max_requests, max_bytes=max_bytes
        )
        if not report.ok:
            raise BatchValidationError(report.problems, source=str(path))
        return await self.upload(path, **without_body(options))

    async def create(
        self,
        input_file_id: str,
        *,
        endpoint: str = DEFAULT_ENDPOINT,
        completion_window: str = "24h",
        metadata: dict[str, str] | None = None,
        extra_headers: Headers | None = None,
        extra_query: Query | None = None,
        extra_body: Mapping[str, object] | None = None,
        timeout: Timeout = None,
    ) -> Batch:
        """Create a batch from an uploaded file (``submit`` does upload + create).

        ``extra_body`` is merged into the create body; ``extra_headers``,
        ``extra_query`` and ``timeout`` go with the create and with the look-ups
        (``GET /batches``) a lost answer leads to.

        A create that got no answer, or a 5xx, may still have made the batch,
        so it is not blindly sent again: the batch carries a one-off
        ``metadata["holysheep_create_id"]``, and before trying again the client
        looks for the batch of this file with that id (on a server that drops
        metadata: one created since the call began, with a minute's leeway for
        the server's clock) and returns it instead of making a second one. With
        16 metadata keys already (the API's limit) no id is added.
        """
        options = call_options(extra_headers, extra_query, extra_body, timeout)
        token: str | None = None
        if len(metadata or {}) < MAX_METADATA_KEYS:
            token = uuid.uuid4().hex
            metadata = {**(metadata or {}), CREATE_ID_KEY: token}
        since = int(time.time()) - CLOCK_LEEWAY
        return await create_once(
            self,
            input_file_id,
            endpoint,
            completion_window,
            metadata,
            options,
            since=since,
            token=token,
        )

    @_otel.batch_op("retrieve", base_url=_base_url, first="holysheep.batch.id")
    async def retrieve(
        self,
        batch_id: str,
        *,
        extra_headers: Headers | None = None,
        extra_query: Query | None = None,
        extra_body: Mapping[str, object] | None = None,
        timeout: Timeout = None,
    ) -> Batch:
        """The batch as it stands (``GET /batches/{batch_id}``; it sends no body)."""
        reply = await self._request(
            "GET",
            f"/batches/{_check_id(batch_id)}",
            extra_headers=extra_headers,
            extra_query=extra_query,
            extra_body=extra_body,
            timeout=timeout,
        )
        return self._parse(reply.response, Batch, "a batch object")

    async def cancel(
        self,
        batch_id: str,
        *,
        extra_headers: Headers | None = None,
        extra_query: Query | None = None,
        extra_body: Mapping[str, object] | None = None,
        timeout: Timeout = None,
    ) -> Batch:
        """Ask the server to cancel; the batch goes through ``cancelling`` to ``cancelled``.

        The cancel request has no body, so ``extra_body`` raises ``TypeError``.
        """
        reply = await self._request(
            "POST",
            f"/batches/{_check_id(batch_id)}/cancel",
            extra_headers=extra_headers,
            extra_query=extra_query,
            extra_body=extra_body,
            timeout=timeout,
        )
        return self._parse(reply.response, Batch, "a batch object")

    @_otel.batch_op("wait", base_url=_base_url, first="holysheep.batch.id", progress=True)
    async def wait(
        self,
        batch: str | Batch,
        *,
        poll_interval: float | None = None,
        timeout: float | None = None,
        on_progress: ProgressCallback | None = None,
        extra_headers: Headers | None = None,
        extra_query: Query | None = None,
        extra_body: Mapping[str, object] | None = None,
        request_timeout: Timeout = None,
    ) -> Batch:
        """Poll until the batch is final (completed, failed, expired, cancelled) and return it.

        Polls adapt to the batch (see :func:`adaptive_poll_interval`) unless
        ``poll_interval`` is given. ``on_progress(batch)`` (sync or async) is
        called after every poll. After ``timeout`` seconds of waiting,
        :class:`BatchTimeoutError`; cancel it like any task (its cancel scope).
        ``extra_headers``, ``extra_query`` and ``request_timeout`` (the timeout of
        each poll, where other methods say ``timeout``) go with every poll; the
        polls send no body, so ``extra_body`` raises ``TypeError``.
        """
        options = call_options(
            extra_headers, extra_query, extra_body, request_timeout, timeout_name="request_timeout"
        )
        batch_id = batch.id if isinstance(batch, Batch) else batch
        started = anyio.current_time()
        slept = 0.0  # counted apart from the clock: the sleep may be a test's fake
        polls = 0
        while True:
            current = await self.retrieve(batch_id, **options)
            await _notify(on_progress, current)
            if current.is_final:
                return current
            waited = max(slept, anyio.current_time() - started)
            if timeout is not None and waited >= timeout:
                raise BatchTimeoutError(
                    f"batch {batch_id} is still {current.status} ({current.progress:.0f}% done)"
                    f" after {waited:.1f} s (timeout={timeout} s); it keeps running on the server",
                    batch=current,
                )
            interval = (
                poll_interval
                if poll_interval is not None
                else adaptive_poll_interval(current, polls)
            )
            if timeout is not None:
                interval = min(interval, timeout - waited)
            polls += 1
            slept += interval
            await self._requester.sleep(interval)

    async def _as_batch(self, batch: Batch | str, options: CallOptions) -> Batch:
        """A Batch as given, or retrieved by its id; anything else is a clear TypeError."""
        if isinstance(batch, Batch):
            return batch
        if isinstance(batch, str) and batch:
            return await self.retrieve(batch, **options)
        raise TypeError(f"expected a Batch or a batch id, got {type(batch).__name__}")

    async def results(
        self,
        batch: Batch | str,
        *,
        problems: builtins.list[tuple[int, str]] | None = None,
        extra_headers: Headers | None = None,
        extra_query: Query | None = None,
        extra_body: Mapping[str, object] | None = None,
        timeout: Timeout = None,
    ) -> AsyncIterator[BatchResult]:
        """The batch's results, from its output and error files, streamed line by line.

        Lines come in the server's order (any order): key them by ``custom_id``.
        A line that is not a result is logged (and added to ``problems``), not fatal;
        but a file that is not JSONL at all (an HTML page, or lines of which none is
        a result) raises :class:`InvalidResponseError` naming the file and the line.
        To stop early, close it (``contextlib.aclosing``) so the download is closed at once.
        ``extra_headers``, ``extra_query`` and ``timeout`` go with every request
        (the retrieve of a batch id, each download); they send no body, so
        ``extra_body`` raises ``TypeError``.

        >>> by_id = {r.custom_id: r async for r in client.batches.results(batch)}  # doctest: +SKIP
        """
        options = call_options(extra_headers, extra_query, extra_body, timeout)
        batch = await self._as_batch(batch, options)
        for file_id in (batch.output_file_id, batch.error_file_id):
            if not file_id:
                continue
            reply = await self._request("GET", f"/files/{file_id}/content", stream=True, **options)
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

    @_otel.batch_op("download", base_url=_base_url, first="holysheep.batch.id")
    async def download(
        self,
        batch: Batch | str,
        path: str | os.PathLike[str],
        *,
        include_errors: bool = True,
        extra_headers: Headers | None = None,
        extra_query: Query | None = None,
        extra_body: Mapping[str, object] | None = None,
        timeout: Timeout = None,
    ) -> Path:
        """Stream the output file (and the error file) into ``path`` (atomically); return it.

        ``batch``: a ``Batch`` or a batch id (retrieved first). ``extra_headers``,
        ``extra_query`` and ``timeout`` go with every request (that retrieve, each
        download); they send no body, so ``extra_body`` raises ``TypeError``.
        """
        options = call_options(extra_headers, extra_query, extra_body, timeout)
        batch = await self._as_batch(batch, options)
        target = Path(path)
        ids = [batch.output_file_id, batch.error_file_id if include_errors else None]
        with atomic_write(target, "wb") as fh:
            for file_id in ids:
                if not file_id:
                    continue
                reply = await self._request(
                    "GET", f"/files/{file_id}/content", stream=True, **options
                )
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

    # -- the pipeline ---------------------------------------------------------

    @_otel.batch_op("run", base_url=_base_url, progress=True, kind="INTERNAL")
    async def run(
        self,
        requests: Requests,
        *,
        journal: str | os.PathLike[str] | None = None,
        on_progress: ProgressCallback | None = None,
        output: str | os.PathLike[str] | None = None,
        endpoint: str = DEFAULT_ENDPOINT,
        completion_window: str = "24h",
        metadata: dict[str, str] | None = None,
        retry: RetryMode = "direct",
        max_retry_rounds: int = 1,
        max_requests_per_batch: int = MAX_REQUESTS,
        max_bytes_per_batch: int = MAX_FILE_BYTES,
        poll_interval: float | None = None,
        timeout: float | None = None,
        concurrency: int = 16,
        extra_headers: Headers | None = None,
        extra_query: Query | None = None,
        extra_body: Mapping[str, object] | None = None,
        request_timeout: Timeout = None,
    ) -> BatchReport:
        """Everything: validate, split, submit, wait, download, retry, account.

        - ``requests``: a list, a JSONL path, or any iterable or async iterable,
          streamed to a work file and validated as it is read (problems with
          their line or item numbers); memory stays flat at any size.
        - Input over ``max_requests_per_batch`` / ``max_bytes_per_batch`` (the
          API's limits by default), or with several models, goes into several
          batches, polled together in one loop (each at its adaptive interval;
          ``timeout`` counts from the first poll); each batch's results are
          downloaded and merged as soon as it is final.
        - ``journal``: a file recording each step (atomically), with the work
          files in ``<journal>.d/``. Running again with the same journal and
          input resumes the same batches (nothing is submitted twice), and a
          finished journal just gives the report again.
        - Requests that expired, were cancelled, failed with 408/409/429/5xx or
          got no answer are retried up to ``max_retry_rounds`` times:
          ``retry="direct"`` through ``chat.create``, ``"batch"`` in a new batch,
          ``"none"`` not at all.
        - When ``/files`` or ``/batches`` answers 404, 405 or 501, or a 200 web
          page (no Batch API), or the upload keeps answering 5xx after every
          retry before any upload of the run got through (nothing can be sent
          twice then), every request goes through ``chat.create`` instead,
          ``concurrency`` at a time and under the client's limits; the report
          has the same form, and ``report.fallback_reason`` says why.
        - Killed at any point (even SIGKILL) and run again with the same
          journal, it goes on where it was: every ``custom_id`` ends with
          exactly one result, and in batch mode no request goes into two
          batches (a create whose answer never came is looked up on the server
          by its input file, not sent again; an upload whose answer never came
          leaves an unused file on the server, nothing more). In direct mode,
          the calls in flight at the moment of the kill (at most
          ``concurrency``) have no answer on disk yet and are sent again.
          A second run on a journal in use fails with ``HolySheepError``.
        - ``output``: write all results there (Batch API line format, input
          order); the report then reads ``results`` from that file and its id
          lists from an on-disk index, holding nothing in memory.
        - ``on_progress(RunProgress)`` after each step and poll.
        - ``extra_headers``, ``extra_query`` and ``request_timeout`` (the timeout
          of each request, where other methods say ``timeout``) go with every
          request of the run: uploads, creates, polls, downloads, and the direct
          calls. ``extra_body`` is merged into each batch create body only, never
          into the direct calls (their bodies are the request lines as given).

        >>> report = await client.batches.run(  # doctest: +SKIP
        ...     [{"custom_id": "q1", "model": "gpt-4o-mini",
        ...       "messages": [{"role": "user", "content": "Hi"}]}], journal="q.journal")
        >>> report.succeeded
        ['q1']
        """
        return await _batch_run.run(
            self,
            requests,
            journal=journal,
            on_progress=on_progress,
            output=output,
            endpoint=endpoint,
            completion_window=completion_window,
            metadata=metadata,
            retry=retry,
            max_retry_rounds=max_retry_rounds,
            max_requests_per_batch=max_requests_per_batch,
            max_bytes_per_batch=max_bytes_per_batch,
            poll_interval=poll_interval,
            timeout=timeout,
            concurrency=concurrency,
            options=call_options(
                extra_headers,
                extra_query,
                extra_body,
                request_timeout,
                timeout_name="request_timeout",
            ),
        )

    # -- listing (last: its name shadows the builtin inside the class) ---------

    async def list(
        self,
        *,
        limit: int = 20,
        after: str | None = None,
        extra_headers: Headers | None = None,
        extra_query: Query | None = None,
        extra_body: Mapping[str, object] | None = None,
        timeout: Timeout = None,
    ) -> AsyncIterator[Batch]:
        """All batches, newest first, fetched ``limit`` per page (``after``: start past this id).

        ``extra_headers``, ``extra_query`` and ``timeout`` go with every page's
        request; they send no body, so ``extra_body`` raises ``TypeError``.

        >>> async for batch in client.batches.list():  # doctest: +SKIP
        ...     print(batch.id, batch.status)
        """
        options = call_options(extra_headers, extra_query, extra_body, timeout)
        while True:
            params: dict[str, Any] = {"limit": limit}
            if after:
                params["after"] = after
            reply = await self._request("GET", "/batches", params=params, **options)
            try:
                page = reply.response.json()
                data = page["data"]
                batches = [Batch.model_validate(item) for item in data]
            except (ValueError, KeyError, TypeError, ValidationError):
                raise invalid_response(reply.response, "a list of batch objects") from None
            for batch in batches:
                yield batch
            if not batches or not page.get("has_more"):
                return
            after = page.get("last_id") or batches[-1].id

    @staticmethod
    def _parse(response: httpx.Response, model: type[M], expected: str) -> M:
        try:
            obj = model.model_validate_json(response.content)
        except ValidationError:
            raise invalid_response(response, expected) from None
        if isinstance(obj, _FromResponse):
            attach_response(obj, response)  # .request_id, .rate_limits
        return obj


_ID = re.compile(r"^[A-Za-z0-9_\-.:]+$")


def _check_id(batch_id: str) -> str:
    if not isinstance(batch_id, str) or not _ID.match(batch_id):
        raise ValueError(f"not a batch id: {batch_id!r}")
    return batch_id
