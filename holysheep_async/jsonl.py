"""Batch files: write request JSONL, validate it line by line, read result JSONL.

>>> from holysheep_async.jsonl import write_requests, validate_requests, read_results
>>> write_requests("in.jsonl", [
...     {"model": "gpt-4o", "messages": [{"role": "user", "content": "Hi"}]}])
1
>>> validate_requests("in.jsonl").ok
True

Everything here streams: files are read one line at a time, so memory stays
flat for a 200 MB file. Files are written to a temporary file next to the
target and renamed into place, so a crash never leaves a half-written file.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from pydantic import ValidationError

from .models import EmbeddingsResponse, Usage

__all__ = [
    "DEFAULT_ENDPOINT",
    "LineChecker",
    "MAX_FILE_BYTES",
    "MAX_REQUESTS",
    "BatchRequest",
    "BatchResult",
    "ValidationReport",
    "atomic_write",
    "parse_result_line",
    "read_results",
    "to_request",
    "validate_requests",
    "write_requests",
    "write_results",
]

log = logging.getLogger("holysheep_async")

#: The Batch API's limits for one input file.
MAX_REQUESTS = 50_000
MAX_FILE_BYTES = 200 * 1024 * 1024
DEFAULT_ENDPOINT = "/v1/chat/completions"
#: Problems kept in a report; the rest are counted in one last problem.
MAX_PROBLEMS = 1_000

_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
_BOM = b"\xef\xbb\xbf"


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON value")


# Strict JSON: NaN and Infinity, which the json module accepts by default, are refused.
_decode = json.JSONDecoder(parse_constant=_no_constant).decode


def _loads(raw: str | bytes) -> Any:
    """One JSONL line -> a value; ``ValueError`` naming the problem when it is not JSON.

    Bytes must be UTF-8 (``json.loads`` would also take UTF-16 and UTF-32, which
    the Batch API does not); nesting too deep for the parser is a ``ValueError``,
    not a ``RecursionError``.
    """
    if isinstance(raw, bytes):
        try:
            raw = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ValueError(
                f"not UTF-8 (bad byte 0x{raw[exc.start]:02x} at column {exc.start + 1})"
            ) from None
    try:
        return _decode(raw)
    except RecursionError:
        raise ValueError("nested too deeply") from None


# Keys of a seed-style task that are not part of the request body.
_LINE_KEYS = ("custom_id", "method", "url")


@dataclass(slots=True)
class BatchRequest:
    """One line of a batch input file.

    >>> BatchRequest("q1", {"model": "gpt-4o", "messages": [{"role": "user", "content": "Hi"}]})
    """

    custom_id: str
    body: dict[str, Any]
    method: str = "POST"
    url: str = DEFAULT_ENDPOINT

    def to_line(self) -> dict[str, Any]:
        return {
            "custom_id": self.custom_id,
            "method": self.method,
            "url": self.url,
            "body": self.body,
        }

    @property
    def model(self) -> str | None:
        model = self.body.get("model")
        return model if isinstance(model, str) else None


@dataclass(slots=True)
class BatchResult:
    """The answer to one request of a batch (a line of its output or error file).

    ``status_code`` and ``body`` come from the line's ``response`` (``None``
    when the request never got one); ``error`` is the line's ``error``
    (``{"code", "message"}``), or the body's ``error`` for a non-2xx answer.
    ``direct`` marks an answer obtained by a direct call instead of a batch
    (the no-Batch-API fallback and direct retries), which is priced at full rate.
    """

    custom_id: str
    status_code: int | None = None
    body: Any = None
    error: dict[str, Any] | None = None
    id: str | None = None
    request_id: str | None = None
    direct: bool = False

    @property
    def ok(self) -> bool:
        """True for a 2xx answer without an error."""
        code = self.status_code
        return self.error is None and code is not None and 200 <= code < 300

    @property
    def content(self) -> str | None:
        """The first choice's message text; for a ``/v1/responses`` answer its output text
        (``None`` when there is none)."""
        body = self.body
        if isinstance(body, dict) and body.get("object") == "response":
            return _output_text(body.get("output"))
        try:
            content = body["choices"][0]["message"]["content"]
        except (KeyError, IndexError, TypeError):
            return None
        return content if isinstance(content, str) else None

    @property
    def embeddings(self) -> list[list[float]] | None:
        """The vectors of an ``/v1/embeddings`` answer, in input order (``None`` otherwise)."""
        if not isinstance(self.body, dict) or self.body.get("object") != "list":
            return None
        try:
            return EmbeddingsResponse.model_validate(self.body).vectors
        except ValidationError:
            return None

    @property
    def usage(self) -> Usage | None:
        raw = self.body.get("usage") if isinstance(self.body, dict) else None
        return Usage.model_validate(raw) if isinstance(raw, dict) else None

    @property
    def model(self) -> str | None:
        model = self.body.get("model") if isinstance(self.body, dict) else None
        return model if isinstance(model, str) else None

    def to_line(self) -> dict[str, Any]:
        """The line in the Batch API's output format (what :func:`read_results` reads back)."""
        response = (
            None
            if self.status_code is None
            else {"status_code": self.status_code, "request_id": self.request_id, "body": self.body}
        )
        line: dict[str, Any] = {
            "id": self.id,
            "custom_id": self.custom_id,
            "response": response,
            "error": self.error,
        }
        if self.direct:
            line["x_holysheep_direct"] = True
        return line


@dataclass
class ValidationReport:
    """What :func:`validate_requests` found. ``problems``: ``(line, message)``, 1-based;
    line 0 is the file as a whole (missing, empty)."""

    problems: list[tuple[int, str]] = field(default_factory=list)
    #: Request lines read (valid or not; blank lines not counted).
    count: int = 0
    #: The model every line uses (``None`` when lines disagree or none says).
    model: str | None = None
    #: Bytes read.
    size: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems

    def __str__(self) -> str:
        if self.ok:
            return f"{self.count} requests, no problems"
        lines = [f"{len(self.problems)} problem(s) in {self.count} requests:"]
        lines += [f"  line {n}: {msg}" for n, msg in self.problems]
        return "\n".join(lines)


# ---------------------------------------------------------------------------
# Writing


@contextmanager
def atomic_write(path: str | os.PathLike[str], mode: str = "w") -> Iterator[IO[Any]]:
    """Write ``path`` through a temporary file in the same folder, renamed when done.

    A crash leaves either the old file or the new one, never half of it.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        encoding = None if "b" in mode else "utf-8"
        with open(fd, mode, encoding=encoding) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
        _sync_dir(target.parent)
    except BaseException:
        with suppress(OSError):
            os.unlink(tmp)
        raise


def _sync_dir(folder: Path) -> None:
    """Make a rename in ``folder`` durable (POSIX; a no-op where folders cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        with suppress(OSError):
            os.fsync(fd)
    finally:
        os.close(fd)


def to_request(
    item: BatchRequest | Mapping[str, Any], index: int, *, url: str = DEFAULT_ENDPOINT
) -> BatchRequest:
    """A :class:`BatchRequest` from itself, a batch line or a seed-style task dict.

    A dict with a ``body`` is a batch line; any other dict is the body itself
    plus an optional ``custom_id`` (``request-{index}`` when missing, 1-based).
    ``url``: the endpoint of a dict that names none.
    """
    if isinstance(item, BatchRequest):
        return item
    if not isinstance(item, Mapping):
        raise TypeError(
            f"request {index}: expected a BatchRequest or a dict, got {type(item).__name__}"
        )
    custom_id = item.get("custom_id")
    if custom_id is None:
        custom_id = f"request-{index}"
    if "body" in item:
        body = item["body"]
    else:
        body = {k: v for k, v in item.items() if k not in _LINE_KEYS}
    return BatchRequest(custom_id, body, item.get("method", "POST"), item.get("url", url))


def write_requests(
    path: str | os.PathLike[str],
    requests: Iterable[BatchRequest | Mapping[str, Any]],
    *,
    endpoint: str = DEFAULT_ENDPOINT,
) -> int:
    """Write ``requests`` as batch input JSONL (atomically); return the lines written.

    Dicts that name no ``url`` get ``endpoint``.

    >>> write_requests("in.jsonl", [
    ...     {"custom_id": "a", "model": "gpt-4o", "messages": [{"role": "user", "content": "Hi"}]},
    ...     {"model": "gpt-4o", "messages": [{"role": "user", "content": "Yo"}], "max_tokens": 5},
    ... ])   # the second one gets custom_id "request-2"
    2
    """
    count = 0
    with atomic_write(path) as fh:
        buf: list[str] = []
        for count, item in enumerate(requests, 1):
            buf.append(_dumps(to_request(item, count, url=endpoint).to_line()))
            if len(buf) >= 4096:
                _write_lines(fh, buf, count - len(buf) + 1, "request")
                buf = []
        if buf:
            _write_lines(fh, buf, count - len(buf) + 1, "request")
    return count


def _write_lines(fh: IO[str], lines: list[str], first: int, what: str) -> None:
    try:
        fh.write("\n".join(lines) + "\n")
    except UnicodeEncodeError:
        # Only a lone surrogate (a str that is not Unicode text) cannot be UTF-8.
        for n, line in enumerate(lines, first):
            try:
                line.encode("utf-8")
            except UnicodeEncodeError as exc:
                char = line[exc.start]
                raise ValueError(
                    f"{what} {n}: {char!r} at column {exc.start + 1} is a lone surrogate,"
                    " not text (it cannot be written as UTF-8)"
                ) from None
        raise


def write_results(path: str | os.PathLike[str], results: Iterable[BatchResult]) -> int:
    """Write results in the Batch API's output format (atomically); return the lines written."""
    count = 0
    with atomic_write(path) as fh:
        for result in results:
            count += 1
            _write_lines(fh, [_dumps(result.to_line())], count, "result")
    return count


# ---------------------------------------------------------------------------
# Validating


def validate_requests(
    path: str | os.PathLike[str],
    *,
    endpoint: str | None = DEFAULT_ENDPOINT,
    max_requests: int | None = MAX_REQUESTS,
    max_bytes: int | None = MAX_FILE_BYTES,
    single_model: bool = True,
    tasks: bool = False,
) -> ValidationReport:
    """Check a batch input file line by line; every problem comes with its line number.

    ``tasks=True`` also takes what ``batches.run`` takes: seed-style task lines
    (``custom_id``, ``model``, ``messages``, ...) and batch lines without
    ``method`` / ``url``, each checked as :func:`to_request` turns it into a
    batch line (a missing ``custom_id`` becomes ``request-N``). Without it the
    file must already be in the Batch API's form (what ``submit`` uploads).

    Checks: JSON, an object per line, ``custom_id`` present and unique,
    ``method`` POST, ``url`` equal to ``endpoint``, ``body`` an object with a
    ``model`` and a ``messages`` list (chat endpoint) or an ``input``
    (``/v1/embeddings``; ``/v1/responses``, where ``background`` may not be
    true), no ``stream``, one model for the whole
    file (``single_model``), at most ``max_requests`` lines and ``max_bytes``
    bytes (``None``: no limit). Blank lines are problems too: the Batch API
    rejects them. So are lines that are not UTF-8 (UTF-16 included), a byte
    order mark, ``NaN``/``Infinity`` and nesting too deep to parse. Lines end
    at LF only (CRLF is fine; a lone CR inside a line is JSON whitespace).

    >>> report = validate_requests("in.jsonl")
    >>> report.ok, report.count, report.problems[:1]   # doctest: +SKIP
    (False, 3, [(2, "duplicate custom_id 'a' (first on line 1)")])
    """
    report = ValidationReport()
    try:
        fh = open(path, "rb")  # noqa: SIM115
    except OSError as exc:
        report.problems.append((0, f"cannot read {os.fspath(path)}: {exc.strerror or exc}"))
        return report
    checker = LineChecker(
        report,
        endpoint=endpoint,
        max_requests=max_requests,
        max_bytes=max_bytes,
        single_model=single_model,
        tasks=tasks,
    )
    with fh:
        for lineno, raw in enumerate(fh, 1):
            checker.check(lineno, raw)
    checker.finish()
    return report


class LineChecker:
    """The checks of :func:`validate_requests`, one line at a time, into ``report``.

    ``seen(custom_id, line)`` returns the line of an earlier request with that
    ``custom_id`` (``None`` when it is new, and remembers it): a dict by
    default; ``batches.run`` passes its on-disk index instead, so a million
    ids cost no memory.
    """

    def __init__(
        self,
        report: ValidationReport,
        *,
        endpoint: str | None = DEFAULT_ENDPOINT,
        max_requests: int | None = MAX_REQUESTS,
        max_bytes: int | None = MAX_FILE_BYTES,
        single_model: bool = True,
        seen: Callable[[str, int], int | None] | None = None,
        tasks: bool = False,
    ) -> None:
        self.report = report
        self.tasks = tasks
        self.endpoint = endpoint
        self.max_requests = max_requests
        self.max_bytes = max_bytes
        self.single_model = single_model
        self.chat = endpoint is None or endpoint.endswith("/chat/completions")
        self.embeddings = endpoint is not None and endpoint.endswith("/embeddings")
        self.responses = endpoint is not None and endpoint.endswith("/responses")
        self.dropped = 0
        self.model_line = 0
        if seen is None:
            first: dict[str, int] = {}

            def seen(cid: str, line: int) -> int | None:
                old = first.get(cid)
                if old is None:
                    first[cid] = line
                return old

        self.seen = seen

    def problem(self, line: int, message: str) -> None:
        if len(self.report.problems) < MAX_PROBLEMS:
            self.report.problems.append((line, message))
        else:
            self.dropped += 1

    def check(self, lineno: int, raw: bytes) -> dict[str, Any] | None:
        """Check one line (with its line end); the line's object when it has a body."""
        report = self.report
        problem = self.problem
        max_bytes = self.max_bytes
        report.size += len(raw)
        size = report.size
        if max_bytes is not None and size > max_bytes and size - len(raw) <= max_bytes:
            problem(lineno, f"the file grows past the {max_bytes:,}-byte limit at this line")
        if lineno == 1 and raw.startswith(_BOM):
            problem(lineno, "the file starts with a UTF-8 byte order mark: save it without one")
            raw = raw[3:]
        if not raw.strip():
            problem(lineno, "blank line")
            return None
        report.count += 1
        if self.max_requests is not None and report.count == self.max_requests + 1:
            problem(lineno, f"more than {self.max_requests:,} requests in one file")
        try:
            obj = _loads(raw)
        except ValueError as exc:
            problem(lineno, f"invalid JSON: {exc}")
            return None
        if type(obj) is not dict:
            problem(lineno, f"expected a JSON object, got {_json_type(obj)}")
            return None
        if self.tasks:  # what batches.run takes: a seed-style task or a batch line
            obj = to_request(obj, report.count, url=self.endpoint or DEFAULT_ENDPOINT).to_line()
        cid = obj.get("custom_id")
        if cid is None:
            problem(lineno, "missing custom_id")
        elif type(cid) is not str or not cid:
            problem(lineno, f"custom_id must be a non-empty string, got {cid!r:.60}")
        else:
            first = self.seen(cid, lineno)
            if first is not None:
                problem(lineno, f"duplicate custom_id {cid!r} (first on line {first})")
        method = obj.get("method")
        if method != "POST":
            problem(lineno, f"method must be 'POST', got {method!r:.40}")
        url = obj.get("url")
        if type(url) is not str:
            problem(lineno, f"url must be a string, got {url!r:.60}")
        elif self.endpoint is not None and url != self.endpoint:
            problem(lineno, f"url {url!r} does not match the batch endpoint {self.endpoint!r}")
        body = obj.get("body")
        if type(body) is not dict:
            problem(lineno, f"body must be a JSON object, got {_json_type(body)}")
            return None
        if self.chat and type(body.get("messages")) is not list:
            problem(lineno, f"body.messages must be a list, got {_json_type(body.get('messages'))}")
        elif self.embeddings and not _embedding_input(body.get("input")):
            problem(
                lineno,
                "body.input must be a non-empty string or list (of strings or token ids),"
                f" got {_json_type(body.get('input'))}",
            )
        elif self.responses and not _responses_input(body.get("input")):
            problem(
                lineno,
                "body.input must be a non-empty string or list of items,"
                f" got {_json_type(body.get('input'))}",
            )
        if body.get("stream"):
            problem(lineno, "body.stream must not be true in a batch")
        if self.responses and body.get("background"):
            problem(lineno, "body.background must not be true in a batch")
        m = body.get("model")
        if type(m) is not str or not m:
            problem(lineno, f"body.model must be a non-empty string, got {m!r:.60}")
        elif report.model is None:
            report.model, self.model_line = m, lineno
        elif m != report.model and self.single_model:
            problem(
                lineno,
                f"model {m!r} differs from {report.model!r} (line {self.model_line}):"
                " one batch file takes one model",
            )
        checked: dict[str, Any] = obj
        return checked

    def finish(self) -> None:
        """The whole-file problems: no request at all, problems beyond the listed ones."""
        problems = self.report.problems
        if self.report.count == 0 and not problems:
            problems.append((0, "the file has no requests"))
        if self.dropped:
            problems.append((0, f"{self.dropped} more problem(s) not listed"))


def _output_text(output: object) -> str | None:
    """The ``output_text`` parts of a response's output items, joined (None without any)."""
    texts: list[str] = []
    for item in output if isinstance(output, list) else ():
        content = item.get("content") if isinstance(item, dict) else None
        if item.get("type") != "message" or not isinstance(content, list):
            continue
        for part in content:
            if isinstance(part, dict) and part.get("type") == "output_text":
                text = part.get("text")
                if isinstance(text, str):
                    texts.append(text)
    return "".join(texts) if texts else None


def _responses_input(value: object) -> bool:
    """A Responses ``input``: a text, or a non-empty list of items."""
    if isinstance(value, str):
        return bool(value)
    return isinstance(value, list) and bool(value)


def _embedding_input(value: object) -> bool:
    """An embeddings ``input``: a text, or a non-empty list of texts or of token ids."""
    if isinstance(value, str):
        return bool(value)
    return isinstance(value, list) and bool(value)


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return type(value).__name__


# ---------------------------------------------------------------------------
# Reading results


def parse_result_line(raw: str | bytes) -> BatchResult:
    """One output / error file line -> :class:`BatchResult`; ``ValueError`` when it is not one."""
    obj = _loads(raw)
    if type(obj) is not dict:
        raise ValueError(f"expected a JSON object, got {_json_type(obj)}")
    cid = obj.get("custom_id")
    if type(cid) is not str or not cid:
        raise ValueError(f"no custom_id (got {cid!r:.60})")
    response = obj.get("response")
    error = obj.get("error")
    status: int | None = None
    body: Any = None
    request_id: str | None = None
    if isinstance(response, dict):
        raw_status = response.get("status_code")
        status = raw_status if type(raw_status) is int else None
        body = response.get("body")
        rid = response.get("request_id")
        request_id = rid if isinstance(rid, str) else None
    elif response is not None:
        raise ValueError(f"response must be an object or null, got {_json_type(response)}")
    if error is not None and not isinstance(error, dict):
        error = {"code": None, "message": str(error)}
    if error is None and (status is None or not 200 <= status < 300):
        inner = body.get("error") if isinstance(body, dict) else None
        if isinstance(inner, dict):
            error = {"code": inner.get("code"), "message": inner.get("message")}
        else:
            what = f"status {status}" if status is not None else "no response"
            error = {"code": None, "message": f"request failed ({what})"}
    line_id = obj.get("id")
    return BatchResult(
        custom_id=cid,
        status_code=status,
        body=body,
        error=error,
        id=line_id if isinstance(line_id, str) else None,
        request_id=request_id,
        direct=obj.get("x_holysheep_direct") is True,
    )


def read_results(
    path: str | os.PathLike[str], *, problems: list[tuple[int, str]] | None = None
) -> Iterator[BatchResult]:
    """Yield the results of an output or error file, one line at a time, in file order.

    Tolerant: a byte order mark at the start is skipped; a blank or broken
    line is logged and appended to ``problems`` (``(line, message)``,
    1-based) when a list is given, and reading goes on.
    Results come in any order: key them by ``custom_id``.

    >>> problems = []
    >>> results = {r.custom_id: r for r in read_results("out.jsonl", problems=problems)}
    """
    with open(path, "rb") as fh:
        for lineno, raw in enumerate(fh, 1):
            if lineno == 1 and raw.startswith(_BOM):
                raw = raw[3:]  # tolerated here: the line is still read
            if not raw.strip():
                message = "blank line"
            else:
                try:
                    yield parse_result_line(raw)
                    continue
                except ValueError as exc:
                    message = f"not a batch result: {exc}"
            log.warning("%s line %d: %s", os.fspath(path), lineno, message)
            if problems is not None:
                problems.append((lineno, message))
