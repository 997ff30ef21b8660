"""The ``run`` pipeline of ``client.batches``: validate, split, submit, wait, download, account.

It keeps a journal of every step (atomically rewritten), so a run killed at
any point and started again with the same journal picks up the same batches
instead of submitting again; where the server has no Batch API it answers
every request with direct calls instead.
"""

from __future__ import annotations

import builtins
import contextlib
import hashlib
import inspect
import json
import logging
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import anyio

from ._batch_cost import usage_cost
from .errors import (
    APIStatusError,
    AuthenticationError,
    BatchValidationError,
    HolySheepError,
    InvalidResponseError,
    PermissionDeniedError,
)
from .jsonl import (
    DEFAULT_ENDPOINT,
    MAX_FILE_BYTES,
    MAX_REQUESTS,
    BatchRequest,
    BatchResult,
    atomic_write,
    read_results,
    to_request,
    validate_requests,
    write_requests,
    write_results,
)
from .models import Batch

if TYPE_CHECKING:
    from .batches import Batches

__all__ = ["BatchReport", "RunProgress", "run", "split_requests"]

log = logging.getLogger("holysheep_async")

Requests = Iterable[BatchRequest | Mapping[str, Any]] | str | os.PathLike[str]
RetryMode = Literal["direct", "batch", "none"]
#: Statuses of /files or /batches that mean "this server has no Batch API".
NO_BATCH_API = frozenset({404, 405, 501})
#: Error codes worth another try (besides no answer at all, 408, 409, 429 and 5xx).
_RETRY_CODES = frozenset({"batch_expired", "batch_cancelled", "batch_failed", "server_error"})
_JOURNAL_VERSION = 1


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



async def run(
    batches: Batches,
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
        reqs, fingerprint = _prepare(requests, workdir, endpoint)
        state = _open_journal(
            journal,
            fingerprint,
            reqs,
            workdir,
            endpoint,
            max_requests_per_batch,
            max_bytes_per_batch,
        )
        run = _Run(
            batches,
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
    requests: Requests, workdir: Path, endpoint: str
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
        messages = body.pop("messages", None)
        cid = request.custom_id
        try:
            completion = await self.b._chat.create(model=model, messages=messages, **body)
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
            completion.model_dump(mode="json"),
            None,
            id=f"direct-{completion.id}",
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

