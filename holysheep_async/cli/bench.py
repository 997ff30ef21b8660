"""``holysheep bench``: the benchmark suite (this client against its peers).

The suite lives in the ``benchmarks/`` directory of a source checkout (it
starts its own server process and needs the optional peers from the
``bench`` extra); this command runs it from there with the same options as
``python -m benchmarks``.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

from ._common import CLIError


def _suite() -> ModuleType | None:
    try:
        return importlib.import_module("benchmarks.suite")
    except ImportError:
        pass
    # A checkout: the package sits next to benchmarks/.
    root = Path(__file__).resolve().parents[2]
    if (root / "benchmarks" / "suite.py").is_file():
        sys.path.insert(0, str(root))
        return importlib.import_module("benchmarks.suite")
    return None


def add_parser(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "bench",
        help="benchmark this client against the openai SDK and httpx + httpx-sse",
        description="Runs benchmarks/ from a source checkout (pip install -e '.[bench]').",
    )
    suite = _suite()
    if suite is not None:
        suite.build_parser(p)
    else:
        # An installed package has no suite: take any options, so that the answer is
        # what it needs rather than "unrecognized arguments".
        p.set_defaults(accepts_extra=True)
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    suite = _suite()
    if suite is None:
        raise CLIError(
            "holysheep bench runs the benchmarks/ folder of a source checkout: git clone the"
            " project, then pip install -e '.[bench]' (or nox -s bench) there"
        )
    results = suite.run(args)
    return 1 if any("/holysheep:" in e for e in results.errors) else 0
