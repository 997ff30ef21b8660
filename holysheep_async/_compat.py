"""Which async library is running, without sniffio (neither anyio nor httpx require it now)."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable

import anyio

__all__ = ["cross_loop_error", "current_loop", "loop_alive", "loop_clock", "running_library"]


def running_library() -> str:
    """``"asyncio"``, ``"trio"`` or ``""`` when called outside an event loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass
    else:
        return "asyncio"
    trio = sys.modules.get("trio")
    if trio is not None:
        try:
            trio.lowlevel.current_task()
        except RuntimeError:
            return ""
        return "trio"
    return ""


def loop_clock() -> Callable[[], float]:
    """The running event loop's clock as a plain function.

    The clock ``anyio.current_time()`` reads (deadlines and cancel scopes use
    it), without its backend lookup on every call: that lookup cost about as
    much as parsing a streamed chunk's JSON.
    """
    try:
        return asyncio.get_running_loop().time
    except RuntimeError:
        pass
    trio = sys.modules.get("trio")
    if trio is not None:
        try:
            trio.lowlevel.current_task()
        except RuntimeError:
            pass
        else:
            clock: Callable[[], float] = trio.current_time
            return clock
    return anyio.current_time


def current_loop() -> object | None:
    """The running event loop: asyncio's loop, or trio's run (its token); None outside one.

    Cheap enough for every request (~0.1 us on asyncio): things bound to an event
    loop (connections, limiter primitives) compare it to the loop they were made on.
    """
    loop = asyncio._get_running_loop()
    if loop is not None:
        return loop
    trio = sys.modules.get("trio")
    if trio is not None:
        try:
            token: object = trio.lowlevel.current_trio_token()
        except RuntimeError:
            return None
        return token
    return None


def loop_alive(loop: object) -> bool:
    """Whether ``loop`` (from :func:`current_loop`) is still running, in any thread."""
    if isinstance(loop, asyncio.AbstractEventLoop):
        return loop.is_running()
    trio = sys.modules.get("trio")
    if trio is None:
        return False
    try:
        loop.run_sync_soon(_nothing)  # type: ignore[attr-defined]
    except trio.RunFinishedError:
        return False
    return True


def _nothing() -> None:
    pass


def cross_loop_error(what: str) -> RuntimeError:
    return RuntimeError(
        f"this AsyncClient's {what} belong to an event loop that is still running (in"
        " another thread): one client serves one event loop at a time. Make a client per"
        " event loop (per thread), or use it from one loop after another"
    )
