"""mypy --strict on a user's program: every public method typed, wrong types flagged."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from mypy import api  # the test extra has it: a missing mypy is an error, not a skip

HERE = Path(__file__).parent / "typing_check"
ROOT = Path(__file__).parent.parent
GOOD = HERE / "user_code.py"
WRONG = HERE / "wrong_code.py"


@pytest.fixture(scope="module")
def mypy_output(tmp_path_factory: pytest.TempPathFactory) -> str:
    """One mypy run over both files (the slow part is loading the package and pydantic)."""
    cache = tmp_path_factory.mktemp("mypy-cache")
    out, err, _ = api.run(
        [
            "--strict",
            "--config-file",
            str(ROOT / "pyproject.toml"),
            "--cache-dir",
            str(cache),
            "--no-error-summary",
            "--hide-error-context",
            str(GOOD),
            str(WRONG),
        ]
    )
    return str(out + err)


def _flagged(output: str, path: Path) -> set[int]:
    return {int(n) for n in re.findall(rf"{path.name}:(\d+): error", output)}


def test_a_typed_user_program_passes_mypy_strict(mypy_output: str) -> None:
    assert not _flagged(mypy_output, GOOD), mypy_output


def test_wrong_types_are_flagged_on_every_marked_line(mypy_output: str) -> None:
    lines = WRONG.read_text().splitlines()
    marked = {n for n, line in enumerate(lines, 1) if re.search(r"#\s*error$", line)}
    assert marked and _flagged(mypy_output, WRONG) == marked, mypy_output
