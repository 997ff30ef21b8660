"""The ``holysheep`` command line.

Each subcommand lives in a module of its own with ``add_parser(subparsers)``;
its handler returns the process exit code.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from .._version import __version__
from . import advise, batch, bench, chat, cost, demo, serve

__all__ = ["main"]

COMMANDS = [demo, chat, serve, batch, cost, advise, bench]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="holysheep",
        description="Async client for HolySheep and OpenAI-compatible APIs: stream, batch, cost.",
    )
    parser.add_argument("--version", action="version", version=f"holysheep {__version__}")
    parser.add_argument(
        "-v", "--verbose", action="count", default=0, help="log requests (-vv: debug)"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in COMMANDS:
        module.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.verbose:
        logging.basicConfig(
            level=logging.DEBUG if args.verbose > 1 else logging.INFO,
            format="%(asctime)s %(name)s %(levelname)s %(message)s",
        )
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        code: int = args.func(args)
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
    return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
