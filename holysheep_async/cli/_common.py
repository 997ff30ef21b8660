"""What the subcommands share: where to send requests, and running a coroutine."""

from __future__ import annotations

import argparse
import array
import contextlib
import errno
import io
import os
import stat
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, TextIO, TypeVar

import anyio
import httpx

from .._requester import is_loopback
from ..client import AsyncClient
from ..pricing import PriceTable, PricingError, default_prices, load_prices

T = TypeVar("T")

DEMO_KEY = "holysheep-demo"


#: The embedded emulator's settings: batches move with the clock (done 1 s after their
#: first poll), however the command polls.
EMULATOR: dict[str, Any] = {"batch_duration": 1.0}


class CLIError(Exception):
    """A problem the command reports in one line (``error: ...``) with an exit code."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


def add_target_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--base-url", help="API base URL (default: HOLYSHEEP_BASE_URL, else the real service)"
    )
    parser.add_argument(
        "--api-key-file",
        type=Path,
        metavar="PATH",
        help="read the API key from this file (default: HOLYSHEEP_API_KEY);"
        " a key is never taken on the command line",
    )
    parser.add_argument(
        "--insecure-http",
        action="store_true",
        help="allow sending the key over plain http:// to a host that is not loopback",
    )
    parser.add_argument(
        "--emulator",
        action="store_true",
        help="use the embedded emulator even when HOLYSHEEP_API_KEY is set",
    )
    parser.add_argument(
        "--backend",
        choices=["asyncio", "trio"],
        default="asyncio",
        help="async runtime (trio: pip install 'holysheep-async[trio]')",
    )


def use_emulator(args: argparse.Namespace) -> bool:
    """The emulator is used when asked for, or when there is neither a key nor a base URL."""
    if getattr(args, "emulator", False):
        return True
    return (
        not os.environ.get("HOLYSHEEP_API_KEY")
        and not getattr(args, "base_url", None)
        and not getattr(args, "api_key_file", None)
    )


def api_key(args: argparse.Namespace) -> str:
    """The key for the real service: ``--api-key-file``, else ``HOLYSHEEP_API_KEY``."""
    path: Path | None = getattr(args, "api_key_file", None)
    if path is not None:
        try:
            key = path.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise CLIError(f"cannot read the API key file {str(path)!r}: {_reason(exc)}") from None
        if not key:
            raise CLIError(f"the API key file {str(path)!r} is empty")
        if len(key.split()) != 1:
            raise CLIError(f"the API key file {str(path)!r} must hold the key alone, one line")
        return key
    key = os.environ.get("HOLYSHEEP_API_KEY", "").strip()
    if not key:
        raise CLIError("no API key: set HOLYSHEEP_API_KEY or pass --api-key-file PATH")
    return key


def _reason(exc: BaseException) -> str:
    return exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)


def check_base_url(base_url: str, insecure: bool) -> None:
    """The CLI's words for the client's plain-http refusal (no Python arguments)."""
    url = httpx.URL(base_url)
    if url.scheme == "http" and not is_loopback(url.host) and not insecure:
        raise CLIError(
            f"refusing to send the API key over plain http:// to {url.host}: use https://,"
            " or pass --insecure-http if this network is trusted"
        )


@contextlib.asynccontextmanager
async def open_client(
    args: argparse.Namespace, *, emulator: dict[str, Any] | None = None, **client_kwargs: Any
) -> AsyncIterator[tuple[AsyncClient, bool]]:
    """A client for the command: the emulator's (started here) or the real service's."""
    if use_emulator(args):
        from ..testing import MockServer

        async with (
            MockServer(**{**EMULATOR, **(emulator or {})}) as server,
            AsyncClient(api_key=DEMO_KEY, base_url=server.base_url, **client_kwargs) as client,
        ):
            yield client, True
    else:
        key = api_key(args)
        insecure = bool(getattr(args, "insecure_http", False))
        async with AsyncClient(
            api_key=key,
            base_url=getattr(args, "base_url", None),
            allow_insecure_http=insecure,
            **client_kwargs,
        ) as client:
            check_base_url(client.base_url, insecure)
            yield client, False


# -- output into a pipe (`holysheep batch results ID | head -1`) ----------------------------


class BlockWriter:
    """Text to ``stream`` in blocks of at most ``size`` bytes (UTF-8), each written at once.

    Whatever the buffering (``PYTHONUNBUFFERED=1`` writes every ``print`` on its own),
    an output that fits in one block, and so in an empty pipe (64 KiB on Linux), reaches
    the pipe in one write, before its reader can have read any of it.
    """

    def __init__(self, stream: TextIO, size: int = 64 * 1024) -> None:
        self._stream = stream
        self._size = size
        self._parts: list[str] = []
        self._pending = 0

    def write(self, text: str) -> None:
        n = len(text.encode())
        if self._pending and self._pending + n > self._size:
            self.flush()
        self._parts.append(text)
        self._pending += n

    def flush(self) -> None:
        if self._parts:
            block = "".join(self._parts)
            self._parts.clear()
            self._pending = 0
            self._stream.write(block)
        self._stream.flush()


def wait_for_reader(stream: TextIO) -> None:
    """When ``stream`` is a pipe: return once its reader has taken all that was written to
    it, or raise ``BrokenPipeError`` when the reader closed it with some of it unread.

    What ``| head -1`` does to a command then no longer depends on timing: the exit
    code says whether the reader took the whole output (0) or left before (1, quietly,
    as when a write meets the closed pipe: see ``cli.main``). Not a pipe, or a system
    that cannot tell (no ``FIONREAD`` on a pipe's write end): returns at once.
    """
    try:
        import fcntl
        import select
        import termios

        fd = stream.fileno()
        if not stat.S_ISFIFO(os.fstat(fd).st_mode):
            return
        unread = array.array("i", [0])
        poller = select.poll()
        poller.register(fd, 0)  # only POLLERR / POLLHUP: the reader has closed its end
        wait_ms = 1
        while True:
            fcntl.ioctl(fd, termios.FIONREAD, unread)
            if unread[0] == 0:
                return
            if poller.poll(wait_ms):  # it has gone: with all of it, or not
                fcntl.ioctl(fd, termios.FIONREAD, unread)
                if unread[0] == 0:
                    return
                raise BrokenPipeError(errno.EPIPE, "the reader left with output unread")
            wait_ms = min(wait_ms * 2, 100)
    except (ImportError, AttributeError, ValueError, io.UnsupportedOperation):
        return
    except BrokenPipeError:
        raise
    except OSError:
        return


def check_backend(backend: str) -> None:
    if backend == "trio":
        try:
            import trio  # noqa: F401
        except ImportError:
            raise CLIError("--backend trio needs trio: pip install 'holysheep-async[trio]'")


def run(args: argparse.Namespace, fn: Callable[[], Awaitable[int]]) -> int:
    """Run ``fn`` on the chosen backend. Errors are reported by ``cli.main`` in one line."""

    async def wrapper() -> int:
        return await fn()

    backend = getattr(args, "backend", "asyncio")
    check_backend(backend)
    return anyio.run(wrapper, backend=backend)


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
