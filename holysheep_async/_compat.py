"""Which async library is running, without sniffio (neither anyio nor httpx require it now)."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable

import anyio

__all__ = ["loop_clock", "running_library"]


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
