"""The rules by which the docs' sample outputs are compared (conftest.py at the root)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _checker() -> ModuleType:
    spec = importlib.util.spec_from_file_location("_docs_checker", ROOT / "conftest.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


matches = _checker().matches


@pytest.mark.parametrize(
    ("expected", "actual"),
    [
        ("TTFT 41 ms, 12 tokens at 80 tokens/s", "TTFT 133 ms, 9 tokens at 67 tokens/s"),
        ("cost $0.0003, total tokens 1,300", "cost $0.0012, total tokens 12,345"),
        ("waited=0.5 x", "waited=12 x"),
        ("['batch_000004', 'batch_000008'] batch", "['batch_000044', 'batch_abc123'] batch"),
        ("request_id=req_000017 attempt=1", "request_id=req_9 attempt=2"),
        ('"gen_ai.response.id": "chatcmpl-req_000001",', '"gen_ai.response.id": "chatcmpl-x7",'),
        ("   TTFT             41.2 ms", "   TTFT            141.2 ms"),
        ("gpt-4o-mini    batch    100", "gpt-4o-mini    batch   1000"),
        ("first ... last", "first anything at all last"),
        ("a\n...\nz", "a\nb\nc\nz"),
        ("<number>/100 answered in <number> s", "97/100 answered in 3.2 s"),
    ],
)
def test_what_varies_between_runs_matches(expected: str, actual: str) -> None:
    assert matches(actual, expected)


@pytest.mark.parametrize(
    ("expected", "actual"),
    [
        ("12 tokens", "12 words"),  # words are exact
        ("model gpt-4o", "model gpt-5o"),  # a number inside a name is part of the name
        ("claude-sonnet-4.5", "claude-sonnet-3.7"),
        ("doc-1234 True", "doc-1235 True"),  # custom ids are data, not generated ids
        ("q7 True", "q8 True"),
        ("batch_000004", "file-000004"),  # an id matches only an id of its own kind
        ("127.0.0.1:8765", "10.0.0.1:8765"),
        ("a\nb", "a\nb\nc"),  # no line more, none less
        ("TTFT 41 ms", "TTFT - ms"),  # a number stands for a number, not for anything
    ],
)
def test_what_is_part_of_the_text_must_be_as_printed(expected: str, actual: str) -> None:
    assert not matches(actual, expected)
