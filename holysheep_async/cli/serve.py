"""``holysheep serve``: run the emulator in the foreground."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from typing import Any


def add_parser(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "serve", help="run the OpenAI-compatible emulator on 127.0.0.1"
    )
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000, help="0 picks a free port (default 8000)")
    p.add_argument("--ttft", type=float, default=0.05, help="seconds to the first token")
    p.add_argument("--itl", type=float, default=0.01, help="seconds between tokens")
    p.add_argument("--tokens", type=int, default=16, help="answer length without max_tokens")
    p.add_argument("--api-key", action="append", dest="api_keys", help="accept only this key")
    p.add_argument("--no-record", action="store_true", help="do not keep a request log")
    p.set_defaults(func=main)


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
    )

    def ready(s: MockServer) -> None:
        print(f"holysheep emulator listening on {s.base_url}", flush=True)

    async def serve() -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, server.request_stop)
        await server.serve(ready=ready)

    try:
        asyncio.run(serve())
    except OSError as exc:
        print(f"error: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1
    return 0
