"""Which async library is running, without sniffio (neither anyio nor httpx require it now)."""

from __future__ import annotations

import asyncio
import sys

__all__ = ["running_library"]


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
