"""``client.batches``: the OpenAI Batch API (``/files`` + ``/batches``) and the whole pipeline.

>>> report = await client.batches.run(tasks, journal="run.journal")  # doctest: +SKIP
>>> len(report.succeeded), len(report.failed), len(report.missing), report.cost_usd

``run`` validates, splits at the API's limits, uploads, creates, polls,
downloads and accounts; with a journal it resumes after a crash instead of
submitting again; it retries expired and failed requests; and where the
server has no Batch API it answers every request with direct calls instead.
"""

from __future__ import annotations

import builtins
import contextlib
import hashlib
import inspect
import json
import logging
import os
import re
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import anyio
import httpx
from pydantic import BaseModel, ValidationError

from ._batch_cost import usage_cost
from .errors import (
    APIConnectionError,
    APIStatusError,
    AuthenticationError,
    BatchTimeoutError,
    BatchValidationError,
    HolySheepError,
    InvalidResponseError,
    PermissionDeniedError,
    QuotaExceededError,
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
    read_results,
    to_request,
    validate_requests,
    write_requests,
    write_results,
)
from .models import (
    Batch,
    ChatCompletion,
    EmbeddingsResponse,
    FileObject,
    _FromResponse,
    attach_response,
)
from .resources import Embeddings

if TYPE_CHECKING:
    from ._requester import Requester
    from .chat import Chat

__all__ = ["BatchReport", "Batches", "RunProgress", "adaptive_poll_interval", "split_requests"]

log = logging.getLogger("holysheep_async")

Requests = Iterable[BatchRequest | Mapping[str, Any]] | str | os.PathLike[str]
RetryMode = Literal["direct", "batch", "none"]
#: Statuses of /files or /batches that mean "this server has no Batch API".
NO_BATCH_API = frozenset({404, 405, 501})
#: Error codes worth another try (besides no answer at all, 408, 409, 429 and 5xx).
_RETRY_CODES = frozenset({"batch_expired", "batch_cancelled", "batch_failed", "server_error"})
_JOURNAL_VERSION = 1
#: Seconds the server's clock may be behind ours when looking for a batch a lost create made.
_CLOCK_LEEWAY = 60
#: The metadata key ``create`` tags each batch with, to find it again after a lost answer.
CREATE_ID_KEY = "holysheep_create_id"
_MAX_METADATA_KEYS = 16
M = TypeVar("M", bound=BaseModel)


@dataclass
class BatchReport:
    """What ``run`` got: every input ``custom_id`` is in exactly one of
    ``succeeded``, ``failed`` and ``missing`` (each in input order).

    ``cost_usd`` is ``None`` when a price is unknown (see ``holysheep_async.pricing``).
    """

    results: dict[str, BatchResult]
    succeeded: list[str]
    failed: list[str]
    missing: list[str]
    total_tokens: int = 0
    cost_usd: float | None = None
    #: Batches the run used (resumed ones included), in order.
    batch_ids: list[str] = field(default_factory=list)
    #: "batch", or "direct" when the server had no Batch API.
    mode: str = "batch"

    def __str__(self) -> str:
        cost = "unknown" if self.cost_usd is None else f"${self.cost_usd:.4f}"
        return (
            f"succeeded {len(self.succeeded)}, failed {len(self.failed)},"
            f" missing {len(self.missing)}, total tokens {self.total_tokens:,}, cost {cost}"
        )


@dataclass
class RunProgress:
    """Where ``run`` is: ``phase`` ("submitting", "submitted", "waiting", "direct", "done"),
    requests answered so far (``done``) out of ``total``, and the batch being polled."""

    phase: str
    done: int
    total: int
    batch: Batch | None = None

    @property
    def percent(self) -> float:
        return 100.0 * self.done / self.total if self.total else 100.0


ProgressCallback = Callable[[Any], Any]


async def _notify(callback: ProgressCallback | None, value: object) -> None:
    if callback is not None:
        result = callback(value)
        if inspect.isawaitable(result):
            await result


def adaptive_poll_interval(batch: Batch, polls: int) -> float:
    """Seconds to wait before the next poll of ``batch`` after ``polls`` polls.

    Small batches start at 1 s, big ones (>= 1,000 requests) at 2 s; each poll
    waits 25% longer, up to 30 s (60 s for big batches). A batch that is
    already old when we start (a resumed run) is polled less often from the
    start: at least a 30th of its age.
    """
    total = batch.request_counts.total if batch.request_counts else 0
    big = total >= 1_000
    interval = (2.0 if big else 1.0) * 1.25**polls
    if batch.created_at:
        interval = max(interval, (time.time() - batch.created_at) / 30)
    return min(interval, 60.0 if big else 30.0)


def split_requests(
    requests: builtins.list[BatchRequest],
    *,
    max_requests: int = MAX_REQUESTS,
    max_bytes: int = MAX_FILE_BYTES,
) -> builtins.list[builtins.list[BatchRequest]]:
    """Group by model (one batch takes one model), then cut at ``max_requests`` / ``max_bytes``."""
    if max_requests < 1 or max_bytes < 1:
        raise ValueError("max_requests and max_bytes must be >= 1")
    by_model: dict[str | None, builtins.list[BatchRequest]] = {}
    for request in requests:
        by_model.setdefault(request.model, []).append(request)
    chunks: builtins.list[builtins.list[BatchRequest]] = []
    for group in by_model.values():
        chunk: builtins.list[BatchRequest] = []
        size = 0
        for request in group:
            line = len(json.dumps(request.to_line(), ensure_ascii=False).encode()) + 1
            if chunk and (len(chunk) >= max_requests or size + line > max_bytes):
                chunks.append(chunk)
                chunk, size = [], 0
            chunk.append(request)
            size += line
        if chunk:
            chunks.append(chunk)
    return chunks


def _retryable(result: BatchResult) -> bool:
    if result.ok:
        return False
    code = result.error.get("code") if result.error else None
    status = result.status_code
    return status is None or status in (408, 409, 429) or status >= 500 or code in _RETRY_CODES


class _NoBatchAPI(Exception):
    def __init__(self, error: HolySheepError) -> None:
        super().__init__(str(error))
        self.error = error


class _Journal:
    """The run's state on disk, rewritten atomically after every step (no-op without a path)."""

    def __init__(self, path: Path | None, data: dict[str, Any]) -> None:
        self.path = path
        self.data = data

    def save(self) -> None:
        if self.path is not None:
            with atomic_write(self.path) as fh:
                json.dump(self.data, fh, indent=1)

    @property
    def parts(self) -> builtins.list[dict[str, Any]]:
        parts: builtins.list[dict[str, Any]] = self.data["parts"]
        return parts


class Batches:
    """The Batch API: ``submit``, ``retrieve``, ``wait``, ``results``, ``download``, ``cancel``,
    ``list``, and ``run`` (all of it, resumable)."""

    def __init__(self, requester: Requester, chat: Chat) -> None:
        self._requester = requester
        self._chat = chat

    # -- files ----------------------------------------------------------------

    async def upload(self, path: str | os.PathLike[str]) -> FileObject:
        """Upload a JSONL file to ``/files`` with ``purpose=batch`` (multipart)."""
        path = Path(path)
        # httpx streams a multipart body from a sync file object (and rewinds it to retry).
        with path.open("rb") as fh:  # noqa: ASYNC230
            reply = await self._requester.request(
                "POST",
                "/files",
                files={"file": (path.name, fh, "application/jsonl")},
                data={"purpose": "batch"},
            )
        return self._parse(reply.response, FileObject, "a file object")

    # -- batches --------------------------------------------------------------

    async def submit(
        self,
        requests: Requests,
        *,
        endpoint: str = DEFAULT_ENDPOINT,
        completion_window: str = "24h",
        metadata: dict[str, str] | None = None,
    ) -> Batch:
        """Validate, upload and create one batch. Invalid input raises
        :class:`BatchValidationError` (every problem with its line) before any upload.

        ``requests``: a JSONL file path, or ``BatchRequest``s / seed-style task dicts.
        """
        if isinstance(requests, (str, os.PathLike)):
            return await self._submit_file(Path(requests), endpoint, completion_window, metadata)
        with tempfile.TemporaryDirectory(prefix="holysheep-") as tmp:
            path = Path(tmp) / "batch-input.jsonl"
            write_requests(path, requests, endpoint=endpoint)
            return await self._submit_file(path, endpoint, completion_window, metadata)

    async def _submit_file(
        self, path: Path, endpoint: str, window: str, metadata: dict[str, str] | None
    ) -> Batch:
        file = await self._upload_valid(path, endpoint)
        # A fresh file: a batch made from it is ours, so a lost answer is looked up.
        return await self._create_once(file.id, endpoint, window, metadata)

    async def _upload_valid(
        self,
        path: Path,
        endpoint: str,
        max_requests: int = MAX_REQUESTS,
        max_bytes: int = MAX_FILE_BYTES,
    ) -> FileObject:
        """Upload ``path`` once it is known to be valid; else ``BatchValidationError``."""
        report = validate_requests(
            path, endpoint=endpoint, max_requests=max_requests, max_bytes=max_bytes
        )
        if not report.ok:
            raise BatchValidationError(report.problems, source=str(path))
        return await self.upload(path)

    async def create(
        self,
        input_file_id: str,
        *,
        endpoint: str = DEFAULT_ENDPOINT,
        completion_window: str = "24h",
        metadata: dict[str, str] | None = None,
    ) -> Batch:
        """Create a batch from an uploaded file (``submit`` does upload + create).

        A create that got no answer, or a 5xx, may still have made the batch,
        so it is not blindly sent again: the batch carries a one-off
        ``metadata["holysheep_create_id"]``, and before trying again the client
        looks for the batch of this file with that id (on a server that drops
        metadata: one created since the call began, with a minute's leeway for
        the server's clock) and returns it instead of making a second one. With
        16 metadata keys already (the API's limit) no id is added.
        """
        token: str | None = None
        if len(metadata or {}) < _MAX_METADATA_KEYS:
            token = uuid.uuid4().hex
            metadata = {**(metadata or {}), CREATE_ID_KEY: token}
        since = int(time.time()) - _CLOCK_LEEWAY
        return await self._create_once(
            input_file_id, endpoint, completion_window, metadata, since=since, token=token
        )

    async def _create(
        self,
        input_file_id: str,
        endpoint: str,
        completion_window: str,
        metadata: dict[str, str] | None,
        max_retries: int | None = None,
    ) -> Batch:
        body: dict[str, Any] = {
            "input_file_id": input_file_id,
            "endpoint": endpoint,
            "completion_window": completion_window,
        }
        if metadata:
            body["metadata"] = metadata
        reply = await self._requester.request(
            "POST", "/batches", json=body, max_retries=max_retries, resend=max_retries != 0
        )
        return self._parse(reply.response, Batch, "a batch object")

    async def _create_once(
        self,
        input_file_id: str,
        endpoint: str,
        window: str,
        metadata: dict[str, str] | None,
        *,
        since: int | None = None,
        token: str | None = None,
    ) -> Batch:
        """Create the batch of ``input_file_id``, never two of them.

        A create that got no answer, or a 5xx, may still have made the batch,
        so it is not simply sent again: before each new try the batch is looked
        for among the server's batches (the file was uploaded for this one
        batch; for a file that may have been used before, ``token`` is the
        ``holysheep_create_id`` sent, and ``since`` the earliest creation time
        that counts where the server kept no metadata).
        """
        policy = self._requester.retry
        attempt = 0
        while True:
            attempt += 1
            try:
                return await self._create(input_file_id, endpoint, window, metadata, max_retries=0)
            except (APIConnectionError, APIStatusError) as exc:
                if isinstance(exc, APIStatusError) and (
                    isinstance(exc, QuotaExceededError)
                    or not policy.should_retry_status(exc.status_code, exc.headers)
                ):
                    raise
                if attempt > policy.max_retries:
                    raise
                wait = policy.delay(
                    attempt, exc.headers if isinstance(exc, APIStatusError) else None
                )
                if wait > policy.max_server_wait:
                    raise
                log.info(
                    "creating the batch of %s failed (%s): looking for it before trying again",
                    input_file_id,
                    exc,
                )
                await self._requester.sleep(wait)
                found = await self._find_batch(input_file_id, since=since, token=token)
                if found is not None:
                    return found

    async def _find_batch(
        self, input_file_id: str, *, since: int | None = None, token: str | None = None
    ) -> Batch | None:
        """The batch made from ``input_file_id``, among the 500 newest (``None``: not found).

        With ``token``, a batch whose ``holysheep_create_id`` differs is another
        create's; with ``since``, only one created at that Unix time or later counts.

        A server that cannot list batches (a 4xx other than 408/409/429) gets
        ``None`` and a warning: creating the batch again is then the only way
        on, at the risk of a second batch. Other failures raise: the caller
        stops rather than guess (a resumed run looks again).
        """
        seen = 0
        try:
            async for batch in self.list(limit=100):
                if since is not None and batch.created_at and batch.created_at < since:
                    break  # newest first: the rest are older still
                if batch.input_file_id == input_file_id:
                    sent = (batch.metadata or {}).get(CREATE_ID_KEY)
                    if token is None or sent is None or sent == token:
                        return batch
                seen += 1
                if seen >= 500:
                    break
        except APIStatusError as exc:
            if self._requester.retry.should_retry_status(exc.status_code, exc.headers):
                raise
            # Some servers cannot list batches: creating one is the only way on.
            log.warning(
                "cannot list batches to look for one made from %s (%s): creating it; if an"
                " earlier create did reach the server, there are two batches of this file",
                input_file_id,
                exc,
            )
        return None

    async def retrieve(self, batch_id: str) -> Batch:
        reply = await self._requester.request("GET", f"/batches/{_check_id(batch_id)}")
        return self._parse(reply.response, Batch, "a batch object")

    async def cancel(self, batch_id: str) -> Batch:
        """Ask the server to cancel; the batch goes through ``cancelling`` to ``cancelled``."""
        reply = await self._requester.request("POST", f"/batches/{_check_id(batch_id)}/cancel")
        return self._parse(reply.response, Batch, "a batch object")

    async def wait(
        self,
        batch: str | Batch,
        *,
        poll_interval: float | None = None,
        timeout: float | None = None,
        on_progress: ProgressCallback | None = None,
    ) -> Batch:
        """Poll until the batch is final (completed, failed, expired, cancelled) and return it.

        Polls adapt to the batch (see :func:`adaptive_poll_interval`) unless
        ``poll_interval`` is given. ``on_progress(batch)`` (sync or async) is
        called after every poll. After ``timeout`` seconds of waiting,
        :class:`BatchTimeoutError`; cancel it like any task (its cancel scope).
        """
        batch_id = batch.id if isinstance(batch, Batch) else batch
        started = anyio.current_time()
        slept = 0.0  # counted apart from the clock: the sleep may be a test's fake
        polls = 0
        while True:
            current = await self.retrieve(batch_id)
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

    async def _as_batch(self, batch: Batch | str) -> Batch:
        """A Batch as given, or retrieved by its id; anything else is a clear TypeError."""
        if isinstance(batch, Batch):
            return batch
        if isinstance(batch, str) and batch:
            return await self.retrieve(batch)
        raise TypeError(f"expected a Batch or a batch id, got {type(batch).__name__}")

    async def results(
        self, batch: Batch | str, *, problems: builtins.list[tuple[int, str]] | None = None
    ) -> AsyncIterator[BatchResult]:
        """The batch's results, from its output and error files, streamed line by line.

        Lines come in the server's order (any order): key them by ``custom_id``.
        A line that is not a result is logged (and added to ``problems``), not fatal;
        but a file that is not JSONL at all (an HTML page, or lines of which none is
        a result) raises :class:`InvalidResponseError` naming the file and the line.
        To stop early, close it (``contextlib.aclosing``) so the download is closed at once.

        >>> by_id = {r.custom_id: r async for r in client.batches.results(batch)}  # doctest: +SKIP
        """
        batch = await self._as_batch(batch)
        for file_id in (batch.output_file_id, batch.error_file_id):
            if not file_id:
                continue
            reply = await self._requester.request("GET", f"/files/{file_id}/content", stream=True)
            try:
                await _refuse_html(reply.response, file_id)
                lineno = 0
                good = 0
                first_bad: tuple[int, str] | None = None
                async for line in _jsonl_lines(reply.response.aiter_bytes()):
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
                    raise _not_jsonl(reply.response, file_id, first_bad)
            finally:
                await reply.aclose()

    async def download(
        self, batch: Batch | str, path: str | os.PathLike[str], *, include_errors: bool = True
    ) -> Path:
        """Stream the output file (and the error file) into ``path`` (atomically); return it.

        ``batch``: a ``Batch`` or a batch id (retrieved first).
        """
        batch = await self._as_batch(batch)
        target = Path(path)
        ids = [batch.output_file_id, batch.error_file_id if include_errors else None]
        with atomic_write(target, "wb") as fh:
            for file_id in ids:
                if not file_id:
                    continue
                reply = await self._requester.request(
                    "GET", f"/files/{file_id}/content", stream=True
                )
                last = b"\n"
                try:
                    await _refuse_html(reply.response, file_id)
                    async for chunk in reply.response.aiter_bytes():
                        if chunk:
                            fh.write(chunk)
                            last = chunk[-1:]
                finally:
                    await reply.aclose()
                if last != b"\n":
                    fh.write(b"\n")
        return target

    # -- the pipeline ---------------------------------------------------------

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
    ) -> BatchReport:
        """Everything: validate, split, submit, wait, download, retry, account.

        - Input over ``max_requests_per_batch`` / ``max_bytes_per_batch`` (the
          API's limits by default), or with several models, goes into several
          batches whose results are merged.
        - ``journal``: a file recording each step (atomically), with the work
          files in ``<journal>.d/``. Running again with the same journal and
          input resumes the same batches (nothing is submitted twice), and a
          finished journal just gives the report again.
        - Requests that expired, were cancelled, failed with 408/409/429/5xx or
          got no answer are retried up to ``max_retry_rounds`` times:
          ``retry="direct"`` through ``chat.create``, ``"batch"`` in a new batch,
          ``"none"`` not at all.
        - When ``/files`` or ``/batches`` answers 404, 405 or 501, or a 200 web
          page (no Batch API),
          every request goes through ``chat.create`` instead, ``concurrency`` at a
          time and under the client's limits; the report has the same form.
        - Killed at any point (even SIGKILL) and run again with the same
          journal, it goes on where it was: every ``custom_id`` ends with
          exactly one result, and in batch mode no request goes into two
          batches (a create whose answer never came is looked up on the server
          by its input file, not sent again; an upload whose answer never came
          leaves an unused file on the server, nothing more). In direct mode,
          the calls in flight at the moment of the kill (at most
          ``concurrency``) have no answer on disk yet and are sent again.
          A second run on a journal in use fails with ``HolySheepError``.
        - ``output``: write all results there (Batch API line format).
        - ``on_progress(RunProgress)`` after each step and poll.

        >>> report = await client.batches.run(  # doctest: +SKIP
        ...     [{"custom_id": "q1", "model": "gpt-4o-mini",
        ...       "messages": [{"role": "user", "content": "Hi"}]}], journal="q.journal")
        >>> report.succeeded
        ['q1']
        """
        if retry not in ("direct", "batch", "none"):
            raise ValueError(f"retry must be 'direct', 'batch' or 'none', got {retry!r}")
        with _workdir(journal) as workdir:
            reqs, fingerprint = self._prepare(requests, workdir, endpoint)
            state = self._open_journal(
                journal,
                fingerprint,
                reqs,
                workdir,
                endpoint,
                max_requests_per_batch,
                max_bytes_per_batch,
            )
            run = _Run(
                self,
                state,
                workdir,
                reqs,
                on_progress,
                endpoint=endpoint,
                window=completion_window,
                metadata=metadata,
                poll_interval=poll_interval,
                timeout=timeout,
                concurrency=concurrency,
                max_requests=max_requests_per_batch,
                max_bytes=max_bytes_per_batch,
            )
            await run.go(retry, max_retry_rounds)
            report = run.report()
            if output is not None:
                write_results(output, (report.results[i] for i in run.ids if i in report.results))
            await _notify(on_progress, RunProgress("done", len(report.results), len(run.ids)))
            return report

    def _prepare(
        self, requests: Requests, workdir: Path, endpoint: str
    ) -> tuple[builtins.list[BatchRequest], str]:
        """Normalise and validate the whole input (no size limits: run splits)."""
        path = workdir / "input.jsonl"
        source = "requests"
        if isinstance(requests, (str, os.PathLike)):
            source = os.fspath(requests)
            requests = _read_tasks(requests)
        write_requests(path, requests, endpoint=endpoint)
        report = validate_requests(
            path, endpoint=endpoint, max_requests=None, max_bytes=None, single_model=False
        )
        if not report.ok:
            raise BatchValidationError(report.problems, source=source)
        digest = hashlib.sha256()
        reqs: builtins.list[BatchRequest] = []
        with path.open("rb") as fh:
            for index, raw in enumerate(fh, 1):
                digest.update(raw)
                reqs.append(to_request(json.loads(raw), index))
        return reqs, digest.hexdigest()

    def _open_journal(
        self,
        journal: str | os.PathLike[str] | None,
        fingerprint: str,
        reqs: builtins.list[BatchRequest],
        workdir: Path,
        endpoint: str,
        max_requests: int,
        max_bytes: int,
    ) -> _Journal:
        path = Path(journal) if journal is not None else None
        if path is not None and path.exists():
            try:
                data = json.loads(path.read_text("utf-8"))
            except (OSError, ValueError) as exc:
                raise HolySheepError(f"cannot read the batch journal {path}: {exc}") from exc
            if data.get("version") != _JOURNAL_VERSION or data.get("fingerprint") != fingerprint:
                raise HolySheepError(
                    f"the batch journal {path} belongs to a different input: use another"
                    " journal path, or delete it (and its .d folder) to start over"
                )
            log.info("resuming batch run from %s", path)
            return _Journal(path, data)
        state = _Journal(
            path,
            {
                "version": _JOURNAL_VERSION,
                "fingerprint": fingerprint,
                "endpoint": endpoint,
                "mode": "batch",
                "round": 0,
                "parts": [],
            },
        )
        _add_parts(state, workdir, reqs, 0, max_requests, max_bytes)
        state.save()
        return state

    # -- listing (last: its name shadows the builtin inside the class) ---------

    async def list(self, *, limit: int = 20, after: str | None = None) -> AsyncIterator[Batch]:
        """All batches, newest first, fetched ``limit`` per page (``after``: start past this id).

        >>> async for batch in client.batches.list():  # doctest: +SKIP
        ...     print(batch.id, batch.status)
        """
        while True:
            params: dict[str, Any] = {"limit": limit}
            if after:
                params["after"] = after
            reply = await self._requester.request("GET", "/batches", params=params)
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


async def _refuse_html(response: httpx.Response, file_id: str) -> None:
    """A file's content that is an HTML page (a login or error page): say so, by file id."""
    if "html" not in response.headers.get("content-type", "").lower():
        return
    try:
        await response.aread()
    except httpx.HTTPError as exc:
        raise APIConnectionError(
            f"file {file_id}: the connection broke reading an HTML answer ({type(exc).__name__})"
        ) from exc
    raise _not_jsonl(response, file_id)


def _not_jsonl(
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


_ID = re.compile(r"^[A-Za-z0-9_\-.:]+$")


def _check_id(batch_id: str) -> str:
    if not isinstance(batch_id, str) or not _ID.match(batch_id):
        raise ValueError(f"not a batch id: {batch_id!r}")
    return batch_id


@contextlib.contextmanager
def _workdir(journal: str | os.PathLike[str] | None) -> Iterator[Path]:
    """The run's work folder: ``<journal>.d`` (kept for resuming), or a temporary one."""
    if journal is not None:
        path = Path(f"{os.fspath(journal)}.d")
        path.mkdir(parents=True, exist_ok=True)
        with _locked(path / "lock", journal):
            # Temporary files of writes a killed run left half done (atomic_write's names).
            name = Path(journal).name
            for left in [*path.glob(".*.tmp"), *Path(journal).parent.glob(f".{name}.*.tmp")]:
                with contextlib.suppress(OSError):
                    left.unlink()
            yield path
        return
    with tempfile.TemporaryDirectory(prefix="holysheep-run-") as tmp:
        yield Path(tmp)


@contextlib.contextmanager
def _locked(path: Path, journal: str | os.PathLike[str]) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (released by the OS if the process dies).

    Two runs on one journal would submit the same parts twice. Where there
    is no ``fcntl`` (Windows) nothing is locked.
    """
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    with path.open("a") as fh:
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            raise HolySheepError(
                f"the batch journal {os.fspath(journal)} is in use by another run"
                " (two runs on one journal would submit the same requests twice)"
            ) from exc
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def _add_parts(
    state: _Journal,
    workdir: Path,
    reqs: builtins.list[BatchRequest],
    round_: int,
    max_requests: int,
    max_bytes: int,
) -> None:
    for chunk in split_requests(reqs, max_requests=max_requests, max_bytes=max_bytes):
        index = len(state.parts)
        name = f"part-{index:03d}.jsonl"
        write_requests(workdir / name, chunk)
        state.parts.append(
            {
                "index": index,
                "round": round_,
                "file": name,
                "count": len(chunk),
                "model": chunk[0].model,
                "input_file_id": None,
                "batch_id": None,
                "status": None,
                "results": None,
            }
        )


class _Run:
    """One ``run``: the steps between journal saves."""

    def __init__(
        self,
        batches: Batches,
        state: _Journal,
        workdir: Path,
        reqs: builtins.list[BatchRequest],
        on_progress: ProgressCallback | None,
        *,
        endpoint: str,
        window: str,
        metadata: dict[str, str] | None,
        poll_interval: float | None,
        timeout: float | None,
        concurrency: int,
        max_requests: int,
        max_bytes: int,
    ) -> None:
        self.b = batches
        self.state = state
        self.workdir = workdir
        self.reqs = {r.custom_id: r for r in reqs}
        self.ids = [r.custom_id for r in reqs]
        self.on_progress = on_progress
        self.endpoint = endpoint
        self.window = window
        self.metadata = metadata
        self.poll_interval = poll_interval
        self.timeout = timeout
        self.concurrency = max(1, concurrency)
        self.max_requests = max_requests
        self.max_bytes = max_bytes
        self.answered = 0
        #: Parsed results files by name, with the size they had (part files never change,
        #: direct logs only grow).
        self._parsed: dict[str, tuple[int, builtins.list[BatchResult]]] = {}

    async def go(self, retry: RetryMode, max_rounds: int) -> None:
        state = self.state
        for round_ in range(int(state.data["round"]), max_rounds + 1):
            if state.data["round"] != round_:
                state.data["round"] = round_
                state.save()
            results = self.merged()
            self.answered = sum(1 for i in self.ids if i in results)
            if round_ == 0:
                todo = [i for i in self.ids if i not in results]
            else:
                todo = [i for i in self.ids if i not in results or _retryable(results[i])]
            if not todo or (round_ > 0 and retry == "none"):
                return
            if state.data["mode"] == "batch" and (round_ == 0 or retry == "batch"):
                parts = [p for p in state.parts if p["round"] == round_]
                if not parts:
                    _add_parts(
                        state,
                        self.workdir,
                        [self.reqs[i] for i in todo],
                        round_,
                        self.max_requests,
                        self.max_bytes,
                    )
                    state.save()
                    parts = [p for p in state.parts if p["round"] == round_]
                await self.batch_round(parts)
                if state.data["mode"] == "batch":
                    continue
                results = self.merged()
                todo = [i for i in todo if i not in results or not results[i].ok]
            await self.direct(todo, round_)

    # -- batch steps ------------------------------------------------------------

    async def batch_round(self, parts: builtins.list[dict[str, Any]]) -> None:
        state = self.state
        try:
            for part in parts:
                if part["batch_id"] is None:
                    await _notify(
                        self.on_progress, RunProgress("submitting", self.answered, len(self.ids))
                    )
                    await self.submit(part)
        except _NoBatchAPI as exc:
            log.warning("no Batch API on this server (%s): answering with direct calls", exc)
            state.data["mode"] = "direct"
            state.save()
        pending = [p for p in parts if p["batch_id"] is not None and p["results"] is None]
        base = self.answered
        counts: dict[int, int] = {}

        async def progress(batch: Batch) -> None:
            c = batch.request_counts
            counts[current] = (c.completed + c.failed) if c else 0
            await _notify(
                self.on_progress,
                RunProgress("waiting", base + sum(counts.values()), len(self.ids), batch),
            )

        for part in pending:
            current = part["index"]
            batch = await self.b.wait(
                part["batch_id"],
                poll_interval=self.poll_interval,
                timeout=self.timeout,
                on_progress=progress,
            )
            part["status"] = batch.status
            name = f"part-{part['index']:03d}.results.jsonl"
            if batch.output_file_id or batch.error_file_id:
                await self.b.download(batch, self.workdir / name)
                self._check_results(part, batch, name)
            else:
                # Nothing came back (e.g. failed at validation): say why for each request.
                message = _batch_error_text(batch)
                write_results(
                    self.workdir / name,
                    (
                        BatchResult(
                            cid,
                            error={"code": f"batch_{batch.status}", "message": message},
                            id=batch.id,
                        )
                        for cid in self.part_ids(part)
                    ),
                )
            part["results"] = name
            state.save()

    def _check_results(self, part: dict[str, Any], batch: Batch, name: str) -> None:
        """The downloaded results of ``part`` must be its own: never merge another batch's."""
        path = self.workdir / name
        ids = set(self.part_ids(part))
        problems: builtins.list[tuple[int, str]] = []
        results = list(read_results(path, problems=problems))
        files = " and ".join(f for f in (batch.output_file_id, batch.error_file_id) if f)
        foreign = [r.custom_id for r in results if r.custom_id not in ids]
        if foreign:
            raise InvalidResponseError(
                f"batch {batch.id}: its results (file {files}) hold {len(foreign)} result(s)"
                f" whose custom_id is not in this batch (e.g. {foreign[:3]}): a results file"
                f" from another batch? Nothing was merged; the file is kept in {path}",
                status_code=200,
                request_id=None,
                body=foreign[0],
            )
        if problems and not results:
            line, message = problems[0]
            raise InvalidResponseError(
                f"batch {batch.id}: its results (file {files}) are not JSONL batch results:"
                f" line {line}: {message} ({len(problems)} bad line(s), no result);"
                f" the file is kept in {path}",
                status_code=200,
                request_id=None,
                body=message,
            )
        self._parsed[name] = (path.stat().st_size, results)

    def part_ids(self, part: dict[str, Any]) -> builtins.list[str]:
        with (self.workdir / part["file"]).open("rb") as fh:
            return [json.loads(line)["custom_id"] for line in fh if line.strip()]

    async def submit(self, part: dict[str, Any]) -> None:
        state = self.state
        try:
            if part["input_file_id"] is None:
                file = await self.b._upload_valid(
                    self.workdir / part["file"], self.endpoint, self.max_requests, self.max_bytes
                )
                part["input_file_id"] = file.id
                state.save()
            else:
                # A crash may have come between creating the batch and saving its id.
                found = await self.find_batch(part["input_file_id"])
                if found is not None:
                    part["batch_id"] = found.id
                    state.save()
                    return
            batch = await self.create_once(part["input_file_id"])
        except APIStatusError as exc:
            if exc.status_code in NO_BATCH_API:
                raise _NoBatchAPI(exc) from exc
            raise
        except InvalidResponseError as exc:
            # Relays that lack the route may answer 200 with their web page instead of 404.
            if exc.status_code == 200 and exc.body.lstrip()[:1] == "<":
                raise _NoBatchAPI(exc) from exc
            raise
        part["batch_id"] = batch.id
        state.save()
        log.info("submitted batch %s (%d requests)", batch.id, part["count"])
        await _notify(
            self.on_progress, RunProgress("submitted", self.answered, len(self.ids), batch)
        )

    async def create_once(self, input_file_id: str) -> Batch:
        return await self.b._create_once(input_file_id, self.endpoint, self.window, self.metadata)

    async def find_batch(self, input_file_id: str) -> Batch | None:
        return await self.b._find_batch(input_file_id)

    # -- direct calls -------------------------------------------------------------

    async def direct(self, todo: builtins.list[str], round_: int) -> None:
        """Answer ``todo`` with ``chat.create``, appending each result to a log as it comes."""
        name = f"direct-{round_}.jsonl"
        path = self.workdir / name
        done = {r.custom_id for r in read_results(path)} if path.exists() else set()
        todo = [i for i in todo if i not in done]
        if name not in self.state.data.setdefault("direct", []):
            self.state.data["direct"].append(name)
            self.state.save()
        if not todo:
            return
        limiter = anyio.CapacityLimiter(self.concurrency)
        total = len(self.ids)
        count = 0
        cut = _ends_without_newline(path)
        with path.open("a", encoding="utf-8") as log_file:
            if cut:
                log_file.write("\n")  # a kill cut the last line: end it, read_results skips it

            failure: Exception | None = None

            async def one(cid: str) -> None:
                nonlocal count, failure
                try:
                    async with limiter:
                        result = await self.call(self.reqs[cid])
                    log_file.write(json.dumps(result.to_line(), ensure_ascii=False) + "\n")
                    log_file.flush()
                    count += 1
                    progress = RunProgress("direct", self.answered + count, total)
                    await _notify(self.on_progress, progress)
                except Exception as exc:
                    # Stop the others and raise this one as it is, not in an exception group.
                    failure = failure or exc
                    tg.cancel_scope.cancel()

            async with anyio.create_task_group() as tg:
                for cid in todo:
                    tg.start_soon(one, cid)
            if failure is not None:
                raise failure

    async def call(self, request: BatchRequest) -> BatchResult:
        body = dict(request.body)
        model = body.pop("model", None)
        cid = request.custom_id
        answer: ChatCompletion | EmbeddingsResponse
        try:
            # The rest of the line's body as it stands (server-specific fields too).
            if request.url.endswith("/embeddings"):
                answer = await Embeddings(self.b._requester).create(
                    model=model, input=body.pop("input", None), extra_body=body
                )
            else:
                messages = body.pop("messages", None)
                answer = await self.b._chat.create(model=model, messages=messages, extra_body=body)
        except (AuthenticationError, PermissionDeniedError):
            raise  # every other request would fail the same way: stop, resume later
        except APIStatusError as exc:
            error = {"code": exc.code, "message": exc.message}
            return BatchResult(
                cid, exc.status_code, exc.body, error, request_id=exc.request_id, direct=True
            )
        except HolySheepError as exc:
            return BatchResult(
                cid, None, None, {"code": type(exc).__name__, "message": str(exc)}, direct=True
            )
        except (TypeError, ValueError) as exc:
            return BatchResult(
                cid, None, None, {"code": "invalid_request", "message": str(exc)}, direct=True
            )
        return BatchResult(
            cid,
            200,
            answer.model_dump(mode="json"),
            None,
            id=f"direct-{getattr(answer, 'id', None) or answer.request_id or cid}",
            request_id=answer.request_id,
            direct=True,
        )

    # -- accounting -----------------------------------------------------------------

    def merged(self) -> dict[str, BatchResult]:
        """Every result on disk so far; an answer that succeeded is never replaced."""
        results: dict[str, BatchResult] = {}
        files = []
        for round_ in range(int(self.state.data["round"]) + 1):
            files += [
                p["results"] for p in self.state.parts if p["round"] == round_ and p["results"]
            ]
            name = f"direct-{round_}.jsonl"
            if name in self.state.data.get("direct", []):
                files.append(name)
        for name in files:
            for result in self._read(self.workdir / name):
                old = results.get(result.custom_id)
                if old is None or not old.ok:
                    results[result.custom_id] = result
        return results

    def _read(self, path: Path) -> builtins.list[BatchResult]:
        """A results file's results for our custom_ids, parsed once per file size."""
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            return []
        cached = self._parsed.get(path.name)
        if cached is not None and cached[0] == size:
            return cached[1]
        results = []
        for result in read_results(path):
            if result.custom_id in self.reqs:
                results.append(result)
            else:
                log.warning("result for unknown custom_id %r in %s ignored", result.custom_id, path)
        self._parsed[path.name] = (size, results)
        return results

    def report(self) -> BatchReport:
        results = self.merged()
        succeeded: builtins.list[str] = []
        failed: builtins.list[str] = []
        missing: builtins.list[str] = []
        tokens = 0
        cost: float | None = 0.0
        for cid in self.ids:
            result = results.get(cid)
            if result is None:
                missing.append(cid)
                continue
            (succeeded if result.ok else failed).append(cid)
            usage = result.usage
            if usage is None:
                continue
            tokens += usage.total_tokens
            model = result.model or self.reqs[cid].model or ""
            if not result.direct:
                # direct answers were recorded by chat.create already
                self.b._requester.record_usage(model, usage, batch=True)
            if cost is not None:
                one = usage_cost(model, usage, batch=not result.direct)
                cost = None if one is None else cost + one
        return BatchReport(
            results={cid: results[cid] for cid in self.ids if cid in results},
            succeeded=succeeded,
            failed=failed,
            missing=missing,
            total_tokens=tokens,
            cost_usd=cost,
            batch_ids=[p["batch_id"] for p in self.state.parts if p["batch_id"]],
            mode=str(self.state.data["mode"]),
        )


def _read_tasks(path: str | os.PathLike[str]) -> builtins.list[dict[str, Any]]:
    """The lines of a JSONL file of batch lines or seed-style tasks, as dicts.

    Lines that are not JSON objects are reported with their numbers here:
    the rest is checked once normalised (one line per line, so numbers match).
    """
    items: builtins.list[dict[str, Any]] = []
    problems: builtins.list[tuple[int, str]] = []
    try:
        with open(path, "rb") as fh:
            for lineno, raw in enumerate(fh, 1):
                try:
                    item = json.loads(raw) if raw.strip() else None
                except ValueError as exc:
                    problems.append((lineno, f"invalid JSON: {exc}"))
                    continue
                if not isinstance(item, dict):
                    what = "blank line" if item is None else "expected a JSON object"
                    problems.append((lineno, what))
                    continue
                items.append(item)
    except OSError as exc:
        problems.append((0, f"cannot read {os.fspath(path)}: {exc.strerror or exc}"))
    if problems:
        raise BatchValidationError(problems, source=os.fspath(path))
    return items


def _ends_without_newline(path: Path) -> bool:
    try:
        with path.open("rb") as fh:
            fh.seek(-1, os.SEEK_END)
            return fh.read(1) != b"\n"
    except OSError:  # missing or empty
        return False


def _batch_error_text(batch: Batch) -> str:
    errors = batch.errors.data if batch.errors else []
    detail = "; ".join(
        f"{e.code}: {e.message}" + (f" (line {e.line})" if e.line else "") for e in errors[:5]
    )
    return f"batch {batch.id} ended {batch.status}" + (f": {detail}" if detail else "")


async def _jsonl_lines(chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
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
