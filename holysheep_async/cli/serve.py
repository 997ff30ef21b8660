"""``holysheep serve``: run the emulator in the foreground.

Batches move with the clock by default (``--batch-seconds``, 2 s from the first
poll to the last answer), so a client that polls every 30 s still sees its batch
finish at its next poll; ``--batch-steps N`` gives the slow lifecycle of the
test suite instead (N requests answered per poll).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import re
import signal
import sys
from typing import Any

from ._common import CLIError

DEFAULT_PORT = 8765


def port(text: str) -> int:
    """An argparse type: a TCP port, 0 (a free one) to 65535."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"a port is 0-65535, got {value}")
    return value


def _non_negative(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def _share(text: str) -> float:
    value = _non_negative(text.rstrip("%")) / (100 if text.endswith("%") else 1)
    if value > 1:
        raise argparse.ArgumentTypeError(f"a share is 0-1 or 0%-100%, got {text}")
    return value


def _regex(text: str) -> str:
    try:
        re.compile(text)
    except re.error as exc:
        raise argparse.ArgumentTypeError(f"not a regular expression: {text!r} ({exc})") from None
    return text


def add_parser(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "serve",
        help="run the OpenAI-compatible emulator on 127.0.0.1",
        description="The embedded emulator as a server: chat (streamed or not), /v1/responses,"
        " /v1/files and /v1/batches. Any client pointed at http://HOST:PORT/v1 works against it.",
    )
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument(
        "--port", type=port, default=DEFAULT_PORT, help=f"0: a free port (default {DEFAULT_PORT})"
    )
    p.add_argument("--ttft", type=_non_negative, default=0.05, help="seconds to the first token")
    p.add_argument("--itl", type=_non_negative, default=0.01, help="seconds between tokens")
    p.add_argument("--tokens", type=int, default=16, help="answer length without max_tokens")
    p.add_argument(
        "--api-key",
        action="append",
        dest="api_keys",
        metavar="KEY",
        help="accept only this key (repeatable; default: any non-empty key). A test key, not a"
        " secret: it shows in the process list",
    )
    p.add_argument("--no-record", action="store_true", help="do not keep a request log")
    b = p.add_argument_group("batches")
    b.add_argument(
        "--batch-seconds",
        type=_non_negative,
        default=2.0,
        metavar="S",
        help="a batch answers all its requests S seconds after its first poll, however often"
        " the client polls (default 2; 0: at the first poll)",
    )
    b.add_argument(
        "--batch-steps",
        type=int,
        metavar="N",
        help="the slow lifecycle instead: N requests answered per poll (the test suite's 25)",
    )
    b.add_argument(
        "--batch-fail", type=_regex, metavar="REGEX", help="requests whose custom_id matches fail"
    )
    b.add_argument(
        "--batch-fail-rate", type=_share, metavar="SHARE", help="share of requests that fail (5%%)"
    )
    b.add_argument(
        "--batch-expire-after",
        type=_non_negative,
        metavar="S",
        help="a batch expires (partial results) after S seconds in progress (polls with"
        " --batch-steps)",
    )
    b.add_argument(
        "--no-batch-api", action="store_true", help="answer 404 on /v1/files and /v1/batches"
    )
    r = p.add_argument_group("responses")
    r.add_argument(
        "--no-responses-api",
        type=int,
        nargs="?",
        const=404,
        choices=(404, 405, 501),
        metavar="STATUS",
        help="answer /v1/responses with STATUS (404, 405 or 501; default 404), as relays"
        " without the Responses API do",
    )
    p.set_defaults(func=main)


def emulator_options(args: argparse.Namespace) -> dict[str, Any]:
    """``MockServer`` settings for the batch and responses options."""
    options: dict[str, Any] = {}
    if args.batch_steps is not None:
        if args.batch_steps < 1:
            raise CLIError(f"--batch-steps must be >= 1, got {args.batch_steps}", code=2)
        options["batch_speed"] = args.batch_steps
    else:
        options["batch_duration"] = args.batch_seconds
    if args.batch_fail is not None:
        options["batch_fail"] = args.batch_fail
    if args.batch_fail_rate:
        options["batch_fail_rate"] = args.batch_fail_rate
    if args.batch_expire_after is not None:
        options["batch_expire_after"] = args.batch_expire_after
    if args.no_batch_api:
        options["batch_api"] = False
    if args.no_responses_api is not None:
        options["responses_api"] = args.no_responses_api
    return options


def main(args: argparse.Namespace) -> int:
    from ..testing import MockServer

    server = MockServer(
        host=args.host,
        port=args.port,
        ttft=args.ttft,
        itl=args.itl,
        tokens=args.tokens,
        api_keys=args.api_keys,
        record=not args.no_record,
        **emulator_options(args),
    )

    def ready(s: MockServer) -> None:
        print(f"holysheep emulator listening on {s.base_url}", flush=True)
        if args.api_keys:
            print(f"accepts the keys: {', '.join(args.api_keys)}", flush=True)
        else:
            print("accepts any non-empty API key (--api-key KEY to accept only KEY)", flush=True)
        lifecycle = (
            f"{args.batch_steps} requests per poll"
            if args.batch_steps is not None
            else f"done {args.batch_seconds:g} s after the first poll"
        )
        print(f"batches: {lifecycle}; Ctrl-C stops", flush=True)

    stopped_by: list[int] = []

    def stop(sig: int) -> None:
        stopped_by.append(sig)
        server.request_stop()

    async def serve() -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, stop, sig)
        await server.serve(ready=ready)

    try:
        asyncio.run(serve())
    except OSError as exc:
        reason = exc.strerror or str(exc)
        print(f"error: cannot listen on {args.host}:{args.port}: {reason}", file=sys.stderr)
        return 1
    if stopped_by and stopped_by[0] == signal.SIGINT:
        print("interrupted", file=sys.stderr)
        return 130
    return 0
