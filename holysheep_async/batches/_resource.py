"""``client.batches``: :class:`Batches`, the surface of the Batch API and its ``run`` pipeline.

Each method checks its per-call options (``extra_headers``, ``extra_query``,
``extra_body``, and ``timeout`` -- ``request_timeout`` on ``wait`` and ``run``,
whose ``timeout`` is how long to wait for the batch) and hands the work to the
modules below: the REST calls to :class:`~._api.BatchAPI`, the exactly-once
create to :mod:`._create`, result files to :mod:`._download`, ``run`` to
:mod:`._run`. A method that makes several requests applies ``extra_headers``,
``extra_query`` and the timeout to every one of them, and ``extra_body`` to the
JSON body it sends: the batch create body. A method that sends no body raises
``TypeError`` for ``extra_body``.

The direct calls of ``run`` go through ``client.chat`` (any :class:`ChatCreate`),
``client.responses`` (any :class:`ResponsesCreate`, for ``/v1/responses`` lines)
and ``client.embeddings``; nothing below this module knows any of them.
"""

from __future__ import annotations

import builtins
import contextlib
import os
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import anyio

from .. import _otel
from .._options import CallOptions, call_options
from ..errors import BatchTimeoutError
from ..jsonl import (
    DEFAULT_ENDPOINT,
    MAX_FILE_BYTES,
    MAX_REQUESTS,
    BatchRequest,
    BatchResult,
    write_requests,
)
from ..models import Batch, ChatCompletion, FileObject, _FromResponse
from ..resources import Embeddings, _Resource, base_url
from ..types import ChatCompletionMessageParam, Headers, Query, Timeout
from . import _download, _run
from ._api import BatchAPI
from ._create import CLOCK_LEEWAY, CREATE_ID_KEY, MAX_METADATA_KEYS, create_once, upload_valid
from ._input import Requests
from ._progress import ProgressCallback, adaptive_poll_interval, notify
from ._report import BatchReport
from ._run import RetryMode

if TYPE_CHECKING:
    from .._requester import Requester

__all__ = ["Batches", "ChatCreate", "ResponsesCreate"]


class ChatCreate(Protocol):
    """What the direct calls of ``run`` need of ``client.chat`` (a ``Chat`` has it)."""

    async def create(
        self,
        *,
        model: str,
        messages: Iterable[ChatCompletionMessageParam],
        extra_headers: Headers | None = None,
        extra_query: Query | None = None,
        extra_body: Mapping[str, object] | None = None,
        timeout: Timeout = None,
    ) -> ChatCompletion: ...


class ResponsesCreate(Protocol):
    """What the direct calls of ``run`` need of ``client.responses`` (a ``Responses`` has it)."""

    async def create(
        self,
        *,
        model: str,
        input: Any = None,
        extra_headers: Headers | None = None,
        extra_query: Query | None = None,
        extra_body: Mapping[str, object] | None = None,
        timeout: Timeout = None,
    ) -> _FromResponse: ...


class Batches(_Resource):
    """The Batch API: ``submit``, ``retrieve``, ``wait``, ``results``, ``download``, ``cancel``,
    ``list``, and ``run`` (all of it, resumable)."""

    def __init__(
        self, requester: Requester, chat: ChatCreate, responses: ResponsesCreate | None = None
    ) -> None:
        super().__init__(requester)
        self._api = BatchAPI(requester)
        self._chat = chat
        self._responses = responses

    # -- files ----------------------------------------------------------------

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
        return await self._api.upload(
            path,
            extra_headers=extra_headers,
            extra_query=extra_query,
            extra_body=extra_body,
            timeout=timeout,
        )

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
        file = await upload_valid(self._api, path, endpoint, options)
        # A fresh file: a batch made from it is ours, so a lost answer is looked up.
        return await create_once(self._api, file.id, endpoint, window, metadata, options)

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
            self._api,
            input_file_id,
            endpoint,
            completion_window,
            metadata,
            options,
            since=since,
            token=token,
        )

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
        return await self._api.retrieve(
            batch_id,
            extra_headers=extra_headers,
            extra_query=extra_query,
            extra_body=extra_body,
            timeout=timeout,
        )

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
        return await self._api.cancel(
            batch_id,
            extra_headers=extra_headers,
            extra_query=extra_query,
            extra_body=extra_body,
            timeout=timeout,
        )

    @_otel.batch_op("wait", base_url=base_url, first="holysheep.batch.id", progress=True)
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
            current = await self._api.retrieve(batch_id, **options)
            await notify(on_progress, current)
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
        # Closing this generator closes the download at once (not when collected).
        async with contextlib.aclosing(
            _download.results(self._api, batch, options, problems)
        ) as results:
            async for result in results:
                yield result

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
        return await _download.download(
            self._api, batch, path, options, include_errors=include_errors
        )

    # -- the pipeline ---------------------------------------------------------

    @_otel.batch_op("run", base_url=base_url, progress=True, kind="INTERNAL")
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
        return await _run.run(
            self._api,
            requests,
            direct=self._direct,
            usage=self._requester,
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

    async def _direct(self, request: BatchRequest, options: CallOptions) -> _FromResponse:
        """One request of a run answered by a direct call (the run's ``DirectCall``).

        The rest of the line's body goes as it stands (server-specific fields
        too); the run's headers, query and timeout go with it, never its
        ``extra_body`` (that is for batch creates).
        """
        body = dict(request.body)
        model = body.pop("model", None)
        headers = options["extra_headers"]
        query = options["extra_query"]
        timeout = options["timeout"]
        if request.url.endswith("/responses"):
            if self._responses is None:
                raise TypeError("no client.responses to answer a /v1/responses request")
            return await self._responses.create(
                model=model,
                input=body.pop("input", None),
                extra_body=body,
                extra_headers=headers,
                extra_query=query,
                timeout=timeout,
            )
        if request.url.endswith("/embeddings"):
            return await Embeddings(self._requester).create(
                model=model,
                input=body.pop("input", None),
                extra_body=body,
                extra_headers=headers,
                extra_query=query,
                timeout=timeout,
            )
        return await self._chat.create(
            model=model,
            messages=body.pop("messages", None),
            extra_body=body,
            extra_headers=headers,
            extra_query=query,
            timeout=timeout,
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
        # Closing this generator closes the listing at once (not when collected).
        pages = self._api.list(limit=limit, after=after, **options)
        async with contextlib.aclosing(pages):
            async for batch in pages:
                yield batch
