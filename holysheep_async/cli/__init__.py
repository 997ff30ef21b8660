"""The ``holysheep`` command line.

Each subcommand lives in a module of its own with ``add_parser(subparsers)``;
its handler returns the process exit code.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import warnings
from collections.abc import Sequence

from .._version import __version__
from ..errors import HolySheepError
from . import advise, batch, bench, chat, cost, demo, serve
from ._common import CLIError

if sys.version_info < (3, 11):
    from exceptiongroup import BaseExceptionGroup  # type: ignore[import-not-found,unused-ignore]

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
    """Run one command; every way it ends is an exit code and at most one line on stderr.

    0 done, 1 an error (``error: ...``), 2 a bad command line, 130 Ctrl-C
    (``interrupted``); a pipe closed before the command's output was all read
    (``holysheep batch results ID | head -1``) is 1, quietly. ``-vv`` shows the
    traceback of an unexpected error.
    """
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and not getattr(args, "accepts_extra", False):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if args.verbose:
        logging.basicConfig(
            level=logging.DEBUG if args.verbose > 1 else logging.INFO,
            format="%(asctime)s %(name)s %(levelname)s %(message)s",
        )
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        try:
            code: int = args.func(args)
            sys.stdout.flush()  # a closed pipe shows here, not at interpreter exit
        except BaseException as exc:
            return _ended_by(_leaf(exc), args.verbose)
    except KeyboardInterrupt:  # a second Ctrl-C while the first was being reported
        return 130
    return code


def _leaf(exc: BaseException) -> BaseException:
    """The exception that matters inside task groups' exception groups."""
    while isinstance(exc, BaseExceptionGroup):
        interrupts = [e for e in exc.exceptions if isinstance(e, KeyboardInterrupt)]
        if interrupts:
            return interrupts[0]
        exc = exc.exceptions[0]
    return exc


def _ended_by(exc: BaseException, verbose: int) -> int:
    if isinstance(exc, KeyboardInterrupt):
        _quiet_stdout_flush()
        # Ctrl-C may land between creating a task's coroutine and starting it; that
        # coroutine's "never awaited" warning at exit would be a second line.
        warnings.filterwarnings("ignore", r"coroutine .* was never awaited", RuntimeWarning)
        print("\ninterrupted", file=sys.stderr)
        return 130
    if isinstance(exc, BrokenPipeError):
        # The reader went away: nothing left to say to it. Point stdout at /dev/null so
        # that the interpreter's last flush does not complain either.
        _silence_stdout()
        return 1
    if isinstance(exc, SystemExit):
        raise exc
    if isinstance(exc, CLIError):
        print(f"error: {exc}", file=sys.stderr)
        return exc.code
    if isinstance(exc, HolySheepError):
        print(f"error: {type(exc).__name__}: {exc}", file=sys.stderr)
    elif isinstance(exc, (ValueError, OSError)):
        print(f"error: {exc}", file=sys.stderr)
    elif verbose > 1:
        raise exc
    elif isinstance(exc, Exception):
        print(
            f"error: unexpected {type(exc).__name__}: {exc}"
            " (holysheep -vv ... shows the traceback)",
            file=sys.stderr,
        )
    else:
        raise exc
    return 1


def _quiet_stdout_flush() -> None:
    try:
        sys.stdout.flush()
    except (BrokenPipeError, ValueError):
        _silence_stdout()


def _silence_stdout() -> None:
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        pass


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
