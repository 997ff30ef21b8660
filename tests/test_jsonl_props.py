"""Property tests for batch JSONL: hostile bytes never crash, every problem names its line.

The example-based tests are in test_jsonl.py. Here hypothesis writes files
made of arbitrary bytes, of JSONL-ish fragments (NUL, CR, CRLF, BOM, invalid
UTF-8, huge numbers, deep nesting, NaN, non-object lines) and of valid
request files with some lines corrupted, and checks that

- :func:`validate_requests` never raises and :func:`read_results` raises
  nothing but ``OSError`` (they report problems instead);
- every problem has a line number inside the file, and it points at the bad
  line: a line that is bad on its own is reported on that line, a line that
  is fine on its own is reported only for a reason that needs the other lines
  (a duplicate ``custom_id``, a second model);
- :func:`read_results` accounts for every line: a result or a problem, never
  dropped silently;
- valid request and result lists round-trip through the files.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from holysheep_async import BatchRequest, BatchResult
from holysheep_async.jsonl import (
    parse_result_line,
    read_results,
    validate_requests,
    write_requests,
    write_results,
)

# Costly per example (files, several validations): a fifth of the profile's count.
FEW = settings(max_examples=max(10, settings().max_examples // 5))


@pytest.fixture(scope="module")
def folder() -> Iterator[Path]:
    # Module-scoped: hypothesis runs many examples per test call.
    with tempfile.TemporaryDirectory() as tmp:
        yield Path(tmp)


def _write(folder: Path, data: bytes, name: str = "f.jsonl") -> Path:
    path = folder / name
    path.write_bytes(data)
    return path


def _lf_lines(data: bytes) -> list[bytes]:
    """The file's lines as the reader sees them: split after each LF only, last maybe unended."""
    parts = data.split(b"\n")
    lines = [p + b"\n" for p in parts[:-1]]
    if parts[-1]:
        lines.append(parts[-1])
    return lines


def _context_only(message: str) -> bool:
    """A problem that exists only because of other lines."""
    return message.startswith("duplicate custom_id") or "one batch file takes one model" in message


def _check_validation(folder: Path, data: bytes) -> None:
    lines = _lf_lines(data)
    report = validate_requests(_write(folder, data), max_requests=None, max_bytes=None)
    assert report.size == len(data)
    bom = b"\xef\xbb\xbf"
    if lines and lines[0].startswith(bom):  # reported, then line 1 is read without it
        lines = [lines[0][3:], *lines[1:]]
    assert report.count == sum(1 for raw in lines if raw.strip())
    by_line: dict[int, list[str]] = {}
    for n, message in report.problems:
        assert isinstance(message, str) and message
        assert 0 <= n <= len(lines), (n, len(lines))
        by_line.setdefault(n, []).append(message)
    if 0 in by_line:  # the file as a whole: only when no line had a problem
        assert by_line[0] == ["the file has no requests"] and report.count == 0
    for n, raw in enumerate(_lf_lines(data), 1):
        alone = validate_requests(_write(folder, raw, "alone.jsonl"), max_requests=None)
        bad_alone = [m for k, m in alone.problems if k == 1]
        here = by_line.get(n, [])
        if bad_alone:
            assert here, f"line {n} {raw!r} is bad ({bad_alone}) but not reported"
        else:
            assert all(_context_only(m) for m in here), (n, raw, here)
    assert report.ok == (not report.problems)


def _check_results(folder: Path, data: bytes) -> None:
    lines = _lf_lines(data)
    problems: list[tuple[int, str]] = []
    results = list(read_results(_write(folder, data), problems=problems))
    # Every line is a result or a problem: nothing silently dropped.
    assert len(results) + len(problems) == len(lines)
    numbers = [n for n, _ in problems]
    assert numbers == sorted(set(numbers))
    assert all(1 <= n <= len(lines) for n in numbers)
    for result in results:
        assert isinstance(result.custom_id, str) and result.custom_id
        assert result.status_code is None or type(result.status_code) is int
        # The convenience properties never raise on a result the reader accepted.
        result.ok, result.content, result.model  # noqa: B018


# -- arbitrary bytes ---------------------------------------------------------------------------

_FRAGMENTS = [
    b"\n", b"\r", b"\r\n", b"\x00", b"\xef\xbb\xbf", b"\xff", b"\xc3", b"\xed\xa0\x80", b" ",
    b"{", b"}", b"[", b"]", b",", b":", b'"', b"null", b"true", b"0", b"-1", b"1e999",
    b"9" * 5000, b"NaN", b"-Infinity", b'"\\ud800"', b"[" * 3000, b'{"a":' * 2000,
    b'"custom_id"', b'"body"', b'"method"', b'"url"', b'"POST"', b'"/v1/chat/completions"',
    b'"model"', b'"messages"', b'"m"', b'"a"', b'"response"', b'"status_code"', b"200",
    b'{"custom_id":"a","method":"POST","url":"/v1/chat/completions",'
    b'"body":{"model":"m","messages":[]}}',
    b'{"custom_id":"a","response":{"status_code":200,"body":{}},"error":null}',
]  # fmt: skip

_jsonlish = st.lists(st.sampled_from(_FRAGMENTS), max_size=30).map(b"".join)
_hostile = st.one_of(st.binary(max_size=300), _jsonlish)


@given(data=_hostile)
@example(data=b"[" * 100_000 + b"\n")  # RecursionError escaped the validator
@example(data=b'\x00{\x00"\x00a\x00"\x00:\x001\x00}\x00\n')  # UTF-16 taken for JSON
@example(data=b"{}\r\n[]\r\x00\n\xef\xbb\xbf{}\n\xff")
@example(data=b'{"custom_id":"a","body":{"temperature":NaN}}\n')
def test_validator_survives_any_bytes_and_names_each_bad_line(folder: Path, data: bytes) -> None:
    _check_validation(folder, data)


@given(data=_hostile)
@example(data=b"[" * 100_000 + b"\n")
@example(data=b'{"custom_id":"a","response":{"status_code":true}}\n')
@example(data=b'\xef\xbb\xbf{"custom_id":"a","response":null}\n\xef\xbb\xbf\n')
def test_result_reader_survives_any_bytes_and_accounts_for_every_line(
    folder: Path, data: bytes
) -> None:
    _check_results(folder, data)


# -- valid files round-trip --------------------------------------------------------------------

_text = st.text(max_size=20)
_scalar = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=False, allow_infinity=False),
    _text,
)
_json = st.recursive(
    _scalar,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(_text, inner, max_size=4)),
    max_leaves=12,
)
_message = st.fixed_dictionaries(
    {"role": st.sampled_from(["system", "user", "assistant"]), "content": _text}
)


@st.composite
def _requests(draw: st.DrawFn) -> list[BatchRequest]:
    model = draw(st.text(min_size=1, max_size=12))
    ids = draw(st.lists(st.text(min_size=1, max_size=12), unique=True, max_size=8))
    out = []
    for cid in ids:
        extra = draw(st.dictionaries(st.sampled_from(["max_tokens", "temperature", "x"]), _json))
        body = {**extra, "model": model, "messages": draw(st.lists(_message, max_size=3))}
        out.append(BatchRequest(cid, body))
    return out


@FEW
@given(requests=_requests())
@example(requests=[BatchRequest("\u2028", {"model": "\r", "messages": [], "x": "\x00\x85"})])
def test_valid_requests_round_trip(folder: Path, requests: list[BatchRequest]) -> None:
    path = folder / "in.jsonl"
    assert write_requests(path, requests) == len(requests)
    report = validate_requests(path)
    if requests:
        assert report.ok, str(report)
        assert report.count == len(requests)
        assert report.model == requests[0].model
    else:
        assert report.problems == [(0, "the file has no requests")]
    data = path.read_bytes()
    assert report.size == len(data)
    back = [json.loads(raw) for raw in _lf_lines(data)]
    assert back == [r.to_line() for r in requests]


_results = st.lists(
    st.builds(
        BatchResult,
        custom_id=st.text(min_size=1, max_size=12),
        status_code=st.one_of(st.none(), st.integers(100, 599)),
        body=_json,
        error=st.one_of(st.none(), st.fixed_dictionaries({"code": _text, "message": _text})),
        id=st.one_of(st.none(), _text),
        request_id=st.one_of(st.none(), _text),
        direct=st.booleans(),
    ).map(
        # No response: no body and no request id either (they live in the response).
        lambda r: r if r.status_code is not None else replace(r, body=None, request_id=None)
    ),
    max_size=8,
)


def _normalized(result: BatchResult) -> BatchResult:
    """What reading a result back must give: a failed answer without an error gets one."""
    return parse_result_line(json.dumps(result.to_line()))


@FEW
@given(results=_results)
def test_results_round_trip(folder: Path, results: list[BatchResult]) -> None:
    path = folder / "out.jsonl"
    assert write_results(path, results) == len(results)
    problems: list[tuple[int, str]] = []
    back = list(read_results(path, problems=problems))
    assert problems == []
    assert back == [_normalized(r) for r in results]
    for got, sent in zip(back, results, strict=True):
        fields = ("custom_id", "status_code", "body", "id", "request_id", "direct")
        assert [getattr(got, f) for f in fields] == [getattr(sent, f) for f in fields]
        if sent.error is not None or sent.ok:
            assert got.error == sent.error


# -- valid files with corrupted lines: exactly those lines are reported ------------------------

_LINE = {
    "custom_id": "c",
    "method": "POST",
    "url": "/v1/chat/completions",
    "body": {"model": "m", "messages": [{"role": "user", "content": "hi"}]},
}


def _line(**over: Any) -> dict[str, Any]:
    obj = json.loads(json.dumps(_LINE))
    for key, value in over.items():
        if key.startswith("body_"):
            obj["body"][key[5:]] = value
        elif value is _DROP:
            del obj[key]
        else:
            obj[key] = value
    return obj


_DROP = object()


def _enc(obj: Any) -> bytes:
    return json.dumps(obj, ensure_ascii=False).encode()


# Each corruption turns a good line (with custom_id ``cid``) into one the Batch API rejects.
_CORRUPTIONS: dict[str, Any] = {
    "blank": lambda cid, good: b"",
    "spaces": lambda cid, good: b" \t\r",
    "truncated": lambda cid, good: good[: len(good) // 2],
    "invalid utf-8": lambda cid, good: good.replace(b'"hi"', b'"h\xffi"'),
    "utf-16": lambda cid, good: good.decode().encode("utf-16-le"),
    "nul": lambda cid, good: b"\x00" + good,
    "bom": lambda cid, good: b"\xef\xbb\xbf" + good,
    "nan": lambda cid, good: good.replace(b'"hi"', b"NaN"),
    "infinity": lambda cid, good: good.replace(b'"messages"', b'"x":Infinity,"messages"'),
    "huge number": lambda cid, good: good.replace(b'"hi"', b"9" * 5000),
    "deep": lambda cid, good: good.replace(b'"hi"', b"[" * 50_000 + b"]" * 50_000),
    "array": lambda cid, good: b"[" + good + b"]",
    "string": lambda cid, good: _enc(good.decode()),
    "null": lambda cid, good: b"null",
    "no custom_id": lambda cid, good: _enc(_line(custom_id=_DROP)),
    "null custom_id": lambda cid, good: _enc(_line(custom_id=None)),
    "int custom_id": lambda cid, good: _enc(_line(custom_id=7)),
    "empty custom_id": lambda cid, good: _enc(_line(custom_id="")),
    "duplicate custom_id": lambda cid, good: _enc(_line(custom_id="r0")),
    "GET": lambda cid, good: _enc(_line(custom_id=cid, method="GET")),
    "no method": lambda cid, good: _enc(_line(custom_id=cid, method=_DROP)),
    "url type": lambda cid, good: _enc(_line(custom_id=cid, url=["/v1/chat/completions"])),
    "other url": lambda cid, good: _enc(_line(custom_id=cid, url="/v1/embeddings")),
    "body list": lambda cid, good: _enc(_line(custom_id=cid, body=[])),
    "no body": lambda cid, good: _enc(_line(custom_id=cid, body=_DROP)),
    "messages str": lambda cid, good: _enc(_line(custom_id=cid, body_messages="hi")),
    "model int": lambda cid, good: _enc(_line(custom_id=cid, body_model=4)),
    "other model": lambda cid, good: _enc(_line(custom_id=cid, body_model="m2")),
    "stream": lambda cid, good: _enc(_line(custom_id=cid, body_stream=True)),
}


@FEW
@given(
    size=st.integers(1, 8),
    corrupt=st.dictionaries(st.integers(1, 7), st.sampled_from(sorted(_CORRUPTIONS)), max_size=4),
    eol=st.sampled_from([b"\n", b"\r\n"]),
    final_eol=st.booleans(),
)
@example(size=2, corrupt={1: "deep"}, eol=b"\n", final_eol=True)
@example(size=2, corrupt={1: "utf-16"}, eol=b"\n", final_eol=True)
@example(size=2, corrupt={1: "nan"}, eol=b"\r\n", final_eol=False)
@example(size=2, corrupt={1: "bom"}, eol=b"\n", final_eol=True)
def test_exactly_the_corrupted_lines_are_reported(
    folder: Path, size: int, corrupt: dict[int, str], eol: bytes, final_eol: bool
) -> None:
    rows = []
    for i in range(size):
        good = _enc(_line(custom_id=f"r{i}"))
        kind = corrupt.get(i) if i else None  # line 1 (r0) stays good: duplicates point at it
        rows.append(_CORRUPTIONS[kind](f"r{i}", good) if kind else good)
    bad = {i + 1 for i in range(1, size) if i in corrupt}
    if not final_eol and rows[-1] == b"":
        bad.discard(size)  # an empty last row without a line end is no line at all
    data = eol.join(rows) + (eol if final_eol else b"")
    report = validate_requests(_write(folder, data))
    assert {n for n, _ in report.problems} == bad, (report.problems, corrupt)
    assert report.count == sum(1 for row in rows if row.strip())
    _check_validation(folder, data)


_any_text = st.text(
    st.one_of(st.characters(), st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF)),
    max_size=6,
)  # lone surrogates too: a Python str, not Unicode text


@FEW
@given(contents=st.lists(_any_text, min_size=1, max_size=5))
@example(contents=["ok", "\ud800"])
def test_writing_any_str_gives_a_valid_file_or_names_the_request(
    folder: Path, contents: list[str]
) -> None:
    path = folder / "any.jsonl"
    path.unlink(missing_ok=True)
    tasks = [{"model": "m", "messages": [{"role": "user", "content": c}]} for c in contents]
    try:
        write_requests(path, tasks)
    except ValueError as exc:
        first_bad = next(
            i for i, c in enumerate(contents, 1) if any(0xD800 <= ord(x) < 0xE000 for x in c)
        )
        assert str(exc).startswith(f"request {first_bad}: ")
        assert not path.exists()
        return
    assert validate_requests(path).ok
    assert [
        json.loads(raw)["body"]["messages"][0]["content"] for raw in _lf_lines(path.read_bytes())
    ] == contents
