"""What the subcommands share: where to send requests, and running a coroutine."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import anyio

from ..client import AsyncClient
from ..errors import HolySheepError

T = TypeVar("T")

DEMO_KEY = "holysheep-demo"


def add_target_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--base-url", help="API base URL (default: HOLYSHEEP_BASE_URL, else the real service)"
    )
    parser.add_argument(
        "--emulator",
        action="store_true",
        help="use the embedded emulator even when HOLYSHEEP_API_KEY is set",
    )
    parser.add_argument("--backend", choices=["asyncio", "trio"], default="asyncio")


def use_emulator(args: argparse.Namespace) -> bool:
    """The emulator is used when asked for, or when there is neither a key nor a base URL."""
    if getattr(args, "emulator", False):
        return True
    return not os.environ.get("HOLYSHEEP_API_KEY") and not getattr(args, "base_url", None)


@contextlib.asynccontextmanager
async def open_client(
    args: argparse.Namespace, *, emulator: dict[str, Any] | None = None, **client_kwargs: Any
) -> AsyncIterator[tuple[AsyncClient, bool]]:
    """A client for the command: the emulator's (started here) or the real service's."""
    if use_emulator(args):
        from ..testing import MockServer

        async with (
            MockServer(**(emulator or {})) as server,
            AsyncClient(api_key=DEMO_KEY, base_url=server.base_url, **client_kwargs) as client,
        ):
            yield client, True
    else:
        async with AsyncClient(base_url=getattr(args, "base_url", None), **client_kwargs) as client:
            yield client, False


def run(args: argparse.Namespace, fn: Callable[[], Awaitable[int]]) -> int:
    """Run ``fn`` on the chosen backend; a library error becomes a message and exit code 1."""

    async def wrapper() -> int:
        return await fn()

    try:
        return anyio.run(wrapper, backend=getattr(args, "backend", "asyncio"))
    except HolySheepError as exc:
        print(f"error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
