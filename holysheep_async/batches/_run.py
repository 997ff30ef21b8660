"""The ``run`` pipeline of ``client.batches``: validate, split, submit, wait, download, account.

It keeps a journal of every step (atomically rewritten), so a run killed at
any point and started again with the same journal picks up the same batches
instead of submitting again; where the server has no Batch API it answers
every request with direct calls instead.

Memory stays flat at any size: requests stream into work files
(:mod:`._input`), results stay in the files they came in, and an
on-disk index (:mod:`._index`) says where each ``custom_id`` stands.
The batches of a run are polled together by one loop, and each one's
results are downloaded and merged as soon as it is final.

It takes what it works with, never the ``client.batches`` surface above it: a
:class:`~._api.BatchAPI` (the REST calls, through :mod:`._create` and
:mod:`._download`), a :data:`DirectCall` for the direct calls, and where the
usage of batch answers goes (a :class:`~._report.UsageSink`).
"""

from __future__ import annotations

import builtins
import json
import logging
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Literal

import anyio

from .._options import CallOptions, without_body
from ..errors import (
    APIConnectionError,
    APIStatusError,
    AuthenticationError,
    BatchTimeoutError,
    HolySheepError,
    InvalidResponseError,
    PermissionDeniedError,
)
from ..jsonl import (
    DEFAULT_ENDPOINT,
    MAX_FILE_BYTES,
    MAX_REQUESTS,
    BatchRequest,
    BatchResult,
    _dumps,
    parse_result_line,
    to_request,
    write_results,
)
from ..models import Batch, _FromResponse
from ._api import BatchAPI
from ._create import create_once, find_batch, upload_valid
from ._download import download
from ._index import RunIndex, result_state
from ._input import Requests, part_ids, prepare, request_lines, write_parts
from ._journal import Journal, open_journal, workdir
from ._progress import PollClock, ProgressCallback, RunProgress, adaptive_poll_interval, notify
from ._report import BatchReport, UsageSink, build_report

__all__ = ["NO_BATCH_API", "DirectCall", "RetryMode", "run"]

log = logging.getLogger("holysheep_async")

RetryMode = Literal["direct", "batch", "none"]
#: Sends one request of the run as a direct call (``chat.create``, ``responses.create``,
#: ``embeddings.create``) with the run's headers, query and timeout (not its ``extra_body``:
#: that is for batch creates) and returns the answer; an error it raises becomes that
#: request's result.
DirectCall = Callable[[BatchRequest, CallOptions], Awaitable["_FromResponse"]]
#: Statuses of /files or /batches that mean "this server has no Batch API".
NO_BATCH_API = frozenset({404, 405, 501})
#: Tries of one results download (a GET: safe to send again) before the run gives up.
_DOWNLOAD_TRIES = 3


class _NoBatchAPI(Exception):
    def __init__(self, error: HolySheepError, reason: str) -> None:
        super().__init__(reason)
        self.error = error
        self.reason = reason


async def run(
    api: BatchAPI,
    requests: Requests,
    *,
    direct: DirectCall,
    usage: UsageSink,
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
    options: CallOptions,
) -> BatchReport:
    """``client.batches.run`` (its docstring says what it does)."""
    if retry not in ("direct", "batch", "none"):
        raise ValueError(f"retry must be 'direct', 'batch' or 'none', got {retry!r}")
    if max_requests_per_batch < 1 or max_bytes_per_batch < 1:
        raise ValueError("max_requests_per_batch and max_bytes_per_batch must be >= 1")
    index: RunIndex | None = None
    try:
        with workdir(journal) as work:
            index = RunIndex(work if journal is not None else None)
            fingerprint = await prepare(requests, work, endpoint, index)
            state = open_journal(journal, fingerprint, endpoint)
            r = _Run(
                api,
                direct,
                usage,
                state,
                work,
                index,
                on_progress,
                endpoint=endpoint,
                window=completion_window,
                metadata=metadata,
                poll_interval=poll_interval,
                timeout=timeout,
                concurrency=concurrency,
                max_requests=max_requests_per_batch,
                max_bytes=max_bytes_per_batch,
                options=options,
            )
            r.rebuild()
            await r.go(retry, max_retry_rounds)
            report = r.report(output)
        await notify(on_progress, RunProgress("done", len(report.results), r.total))
    except BaseException:
        if index is not None:
            index.close()
        raise
    if output is None:
        index.close()
    return report


class _Run:
    """One ``run``: the steps between journal saves."""

    def __init__(
        self,
        api: BatchAPI,
        send: DirectCall,
        usage: UsageSink,
        state: Journal,
        workdir: Path,
        index: RunIndex,
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
        options: CallOptions,
    ) -> None:
        self.api = api
        self.send = send
        self.usage = usage
        self.state = state
        self.workdir = workdir
        self.index = index
        self.total = index.count()
        self.on_progress = on_progress
        self.endpoint = endpoint
        self.window = window
        self.metadata = metadata
        self.poll_interval = poll_interval
        self.timeout = timeout
        self.concurrency = max(1, concurrency)
        self.max_requests = max_requests
        self.max_bytes = max_bytes
        #: The per-call options of ``run``, for every request it makes (extra_body: creates).
        self.options = options
        self.bodiless = without_body(options)
        self.answered = 0

    # -- the journal's files into the index ---------------------------------------

    def rebuild(self) -> None:
        """What earlier runs on this journal did: each id's part, then every result so far
        (in the order they came: a round's batches, then its direct calls)."""
        index = self.index
        for part in self.state.parts:
            path = self.workdir / part["file"]
            if not path.exists():
                continue
            updates = [(part["index"], cid) for cid in part_ids(path)]
            index.set_many("UPDATE ids SET part = ? WHERE cid = ?", updates)
        index.commit()
        for round_ in range(int(self.state.data["round"]) + 1):
            for part in self.state.parts:
                if part["round"] == round_ and part["results"]:
                    self.merge_file(self.workdir / part["results"])
            name = f"direct-{round_}.jsonl"
            if name in self.state.data.get("direct", []) and (self.workdir / name).exists():
                self.merge_file(self.workdir / name)

    def merge_file(
        self, path: Path, *, part: int | None = None, batch: Batch | None = None
    ) -> None:
        """Merge a results file into the index; an answer that succeeded is never replaced.

        With ``part`` (a fresh download), every result must belong to that part,
        and a file of which no line is a result is refused: nothing is merged then.
        """
        index = self.index
        src = index.file_id(path)
        problems: builtins.list[tuple[int, str]] = []
        foreign: builtins.list[str] = []
        n_foreign = 0
        good = 0
        with path.open("rb") as fh:
            offset = 0
            for lineno, raw in enumerate(fh, 1):
                here = offset
                offset += len(raw)
                if lineno == 1 and raw.startswith(b"\xef\xbb\xbf"):
                    raw = raw[3:]
                if not raw.strip():
                    message = "blank line"
                else:
                    try:
                        result = parse_result_line(raw)
                    except ValueError as exc:
                        message = f"not a batch result: {exc}"
                    else:
                        good += 1
                        state = result_state(result)
                        if index.merge(result, state, src, here, part=part) == "foreign":
                            if part is None:
                                log.warning(
                                    "result for unknown custom_id %r in %s ignored",
                                    result.custom_id,
                                    path,
                                )
                            else:
                                n_foreign += 1
                                if len(foreign) < 3:
                                    foreign.append(result.custom_id)
                        continue
                log.warning("%s line %d: %s", os.fspath(path), lineno, message)
                if len(problems) < 1_000:
                    problems.append((lineno, message))
        if batch is not None and (n_foreign or (problems and not good)):
            index.db.rollback()
            files = " and ".join(f for f in (batch.output_file_id, batch.error_file_id) if f)
            if n_foreign:
                raise InvalidResponseError(
                    f"batch {batch.id}: its results (file {files}) hold {n_foreign} result(s)"
                    f" whose custom_id is not in this batch (e.g. {foreign}): a results file"
                    f" from another batch? Nothing was merged; the file is kept in {path}",
                    status_code=200,
                    request_id=None,
                    body=foreign[0],
                )
            line, message = problems[0]
            raise InvalidResponseError(
                f"batch {batch.id}: its results (file {files}) are not JSONL batch results:"
                f" line {line}: {message} ({len(problems)} bad line(s), no result);"
                f" the file is kept in {path}",
                status_code=200,
                request_id=None,
                body=message,
            )
        index.commit()

    # -- rounds --------------------------------------------------------------------

    async def go(self, retry: RetryMode, max_rounds: int) -> None:
        state = self.state
        index = self.index
        for round_ in range(int(state.data["round"]), max_rounds + 1):
            if state.data["round"] != round_:
                state.data["round"] = round_
                state.save()
            todo = "state IS NULL" if round_ == 0 else "state IS NULL OR state = 2"
            index.db.execute(f"UPDATE ids SET todo = ? WHERE {todo}", (round_,))
            index.commit()
            self.answered = index.count("state IS NOT NULL")
            if not index.count("todo = ?", round_) or (round_ > 0 and retry == "none"):
                return
            if state.data["mode"] == "batch" and (round_ == 0 or retry == "batch"):
                parts = [p for p in state.parts if p["round"] == round_]
                if not parts:
                    write_parts(
                        self.workdir,
                        index,
                        state.parts,
                        round_,
                        self.max_requests,
                        self.max_bytes,
                    )
                    state.save()
                    parts = [p for p in state.parts if p["round"] == round_]
                await self.batch_round(parts)
                if state.data["mode"] == "batch":
                    continue
                self.answered = index.count("state IS NOT NULL")
            await self.direct(round_)

    # -- batch steps ------------------------------------------------------------

    async def batch_round(self, parts: builtins.list[dict[str, Any]]) -> None:
        state = self.state
        try:
            for part in parts:
                if part["batch_id"] is None:
                    await notify(
                        self.on_progress, RunProgress("submitting", self.answered, self.total)
                    )
                    await self.submit(part)
        except _NoBatchAPI as exc:
            log.warning("%s: answering with direct calls", exc.reason)
            state.data["mode"] = "direct"
            state.data["fallback_reason"] = exc.reason
            state.save()
        pending = [p for p in parts if p["batch_id"] is not None and p["results"] is None]
        await self.poll(pending)

    async def poll(self, pending: builtins.list[dict[str, Any]]) -> None:
        """Poll every pending batch in one loop, each at its own adaptive interval;
        download and merge each one's results as soon as it is final."""
        clock = PollClock(self.api.sleep)
        base = self.answered
        counts: dict[int, int] = {}
        latest: dict[int, Batch] = {}
        due = {p["index"]: 0.0 for p in pending}
        polls = dict.fromkeys(due, 0)
        parts = {p["index"]: p for p in pending}
        while due:
            now = clock.now()
            for key in [k for k, t in due.items() if t <= now]:
                part = parts[key]
                batch = await self.api.retrieve(part["batch_id"], **self.bodiless)
                latest[key] = batch
                c = batch.request_counts
                counts[key] = (c.completed + c.failed) if c else 0
                await notify(
                    self.on_progress,
                    RunProgress(
                        "waiting",
                        base + sum(counts.values()),
                        self.total,
                        batch,
                        tuple(latest.values()),
                    ),
                )
                if batch.is_final:
                    del due[key], latest[key]
                    await self.collect(part, batch)
                    counts[key] = part["count"]
                    continue
                waited = clock.now()
                if self.timeout is not None and waited >= self.timeout:
                    raise BatchTimeoutError(
                        f"batch {batch.id} is still {batch.status} ({batch.progress:.0f}% done)"
                        f" after {waited:.1f} s (timeout={self.timeout} s); it keeps running"
                        " on the server: run again with the same journal to pick it up",
                        batch=batch,
                    )
                interval = (
                    self.poll_interval
                    if self.poll_interval is not None
                    else adaptive_poll_interval(batch, polls[key])
                )
                if self.timeout is not None:
                    interval = min(interval, self.timeout - waited)
                polls[key] += 1
                due[key] = waited + interval
            if due:
                delay = min(due.values()) - clock.now()
                if delay > 0:
                    await clock.sleep(delay)

    async def collect(self, part: dict[str, Any], batch: Batch) -> None:
        """Download a final batch's results and merge them (or say why there are none)."""
        part["status"] = batch.status
        name = f"part-{part['index']:03d}.results.jsonl"
        path = self.workdir / name
        if batch.output_file_id or batch.error_file_id:
            for attempt in range(1, _DOWNLOAD_TRIES + 1):
                try:
                    await download(self.api, batch, path, self.bodiless)
                    break
                except APIConnectionError as exc:
                    if attempt == _DOWNLOAD_TRIES:
                        raise
                    log.warning("results of batch %s: %s; downloading again", batch.id, exc)
            self.merge_file(path, part=part["index"], batch=batch)
        else:
            # Nothing came back (e.g. failed at validation): say why for each request.
            message = _batch_error_text(batch)
            write_results(
                path,
                (
                    BatchResult(
                        cid,
                        error={"code": f"batch_{batch.status}", "message": message},
                        id=batch.id,
                    )
                    for cid in part_ids(self.workdir / part["file"])
                ),
            )
            self.merge_file(path)
        part["results"] = name
        self.state.save()

    async def submit(self, part: dict[str, Any]) -> None:
        state = self.state
        try:
            if part["input_file_id"] is None:
                try:
                    file = await upload_valid(
                        self.api,
                        self.workdir / part["file"],
                        self.endpoint,
                        self.options,
                        self.max_requests,
                        self.max_bytes,
                    )
                except APIStatusError as exc:
                    # Only while no upload of this run ever got through: a part with a
                    # file may have a batch whose create answer was lost.
                    unused = not any(p["input_file_id"] or p["batch_id"] for p in state.parts)
                    if exc.status_code >= 500 and unused:
                        raise _NoBatchAPI(
                            exc,
                            f"the file upload (/files) kept failing with {exc.status_code}"
                            f" ({exc.message}) after every retry, before any batch of this run"
                            " existed (so no request can be sent twice)",
                        ) from exc
                    raise
                part["input_file_id"] = file.id
                state.save()
            else:
                # A crash may have come between creating the batch and saving its id.
                found = await find_batch(self.api, part["input_file_id"], self.options)
                if found is not None:
                    part["batch_id"] = found.id
                    state.save()
                    return
            batch = await create_once(
                self.api,
                part["input_file_id"],
                self.endpoint,
                self.window,
                self.metadata,
                self.options,
            )
        except APIStatusError as exc:
            if exc.status_code in NO_BATCH_API:
                raise _NoBatchAPI(
                    exc, f"no Batch API on this server ({exc.status_code}: {exc.message})"
                ) from exc
            raise
        except InvalidResponseError as exc:
            # Relays that lack the route may answer 200 with their web page instead of 404.
            if exc.status_code == 200 and exc.body.lstrip()[:1] == "<":
                raise _NoBatchAPI(
                    exc, "no Batch API on this server (it answered a web page)"
                ) from exc
            raise
        part["batch_id"] = batch.id
        state.save()
        log.info("submitted batch %s (%d requests)", batch.id, part["count"])
        await notify(self.on_progress, RunProgress("submitted", self.answered, self.total, batch))

    # -- direct calls -------------------------------------------------------------

    async def direct(self, round_: int) -> None:
        """Answer the round's requests still to do with ``chat.create``, ``concurrency``
        at a time, appending each result to a log (and the index) as it comes."""
        name = f"direct-{round_}.jsonl"
        path = self.workdir / name
        if name not in self.state.data.setdefault("direct", []):
            self.state.data["direct"].append(name)
            self.state.save()
        index = self.index
        src = index.file_id(path)
        todo = (
            (line, raw)
            for line, _, raw in request_lines(
                self.workdir,
                index,
                "todo = ? AND (state IS NULL OR (state <> 1 AND src <> ?))",
                round_,
                src,
            )
        )
        count = 0
        cut = _ends_without_newline(path)
        with path.open("ab") as log_file:
            if cut:
                log_file.write(b"\n")  # a kill cut the last line: end it, the reader skips it
            failure: Exception | None = None

            async def worker() -> None:
                nonlocal count, failure
                try:
                    for line, raw in todo:
                        result = await self.call(to_request(json.loads(raw), line))
                        here = log_file.tell()
                        log_file.write(_result_line(result))
                        log_file.flush()
                        index.merge(result, result_state(result), src, here)
                        count += 1
                        if count % 500 == 0:
                            index.commit()
                        await notify(
                            self.on_progress,
                            RunProgress("direct", self.answered + count, self.total),
                        )
                except Exception as exc:
                    # Stop the others and raise this one as it is, not in an exception group.
                    failure = failure or exc
                    tg.cancel_scope.cancel()

            try:
                async with anyio.create_task_group() as tg:
                    for _ in range(self.concurrency):
                        tg.start_soon(worker)
            finally:
                index.commit()
            if failure is not None:
                raise failure

    async def call(self, request: BatchRequest) -> BatchResult:
        cid = request.custom_id
        try:
            answer = await self.send(request, self.options)
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

    def report(self, output: str | os.PathLike[str] | None) -> BatchReport:
        return build_report(
            self.index,
            self.usage,
            output,
            batch_ids=[p["batch_id"] for p in self.state.parts if p["batch_id"]],
            mode=str(self.state.data["mode"]),
            fallback_reason=self.state.data.get("fallback_reason"),
        )


def _result_line(result: BatchResult) -> bytes:
    try:
        return (_dumps(result.to_line()) + "\n").encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate in an answer: escape it
        return (json.dumps(result.to_line()) + "\n").encode("ascii")


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
