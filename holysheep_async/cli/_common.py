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
from ..pricing import PriceTable, PricingError, default_prices, load_prices

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


# -- prices and money (cost, advise, chat) ---------------------------------------------


def count(text: str) -> int:
    """An argparse type: an int >= 0, ``_`` and ``,`` allowed as separators (``5_000``)."""
    try:
        value = int(text.replace("_", "").replace(",", ""))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def add_price_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--prices",
        metavar="FILE",
        help="JSON price file extending the built-in table (default: $HOLYSHEEP_PRICES)",
    )
    parser.add_argument(
        "--currency", default="USD", help="show amounts in this currency (needs --rate)"
    )
    parser.add_argument(
        "--rate",
        type=float,
        help="units of --currency per US dollar, e.g. --currency EUR --rate 0.92",
    )


def price_table(args: argparse.Namespace) -> PriceTable:
    """The table the command prices with: ``--prices FILE``, else the default (env)."""
    if getattr(args, "prices", None):
        return load_prices(args.prices, base=default_prices())
    return default_prices()


def money_formatter(args: argparse.Namespace) -> Callable[[float], str]:
    """Formats a USD amount in the currency asked for (``--currency EUR --rate 0.92``)."""
    currency = (getattr(args, "currency", None) or "USD").upper()
    rate = getattr(args, "rate", None)
    if currency == "USD":
        if rate not in (None, 1.0):
            raise PricingError("--rate needs --currency (the currency the rate converts to)")
        return lambda usd: f"${usd:,.2f}"
    if rate is None or not rate > 0:
        raise PricingError(f"--currency {currency} needs --rate (units of {currency} per USD) > 0")
    return lambda usd: f"{usd * rate:,.2f} {currency}"
