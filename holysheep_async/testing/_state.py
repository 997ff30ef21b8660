"""What a route handler sees of the emulator: the :class:`Emulator` protocol, and routes.

Handlers are typed against this narrow protocol, not against ``MockServer``
(which is one): the latency profile, the answer length, the options a test
set, the per-server state of the route families, and fresh ids. A route
family is a module with a ``ROUTES`` tuple of :func:`route` entries; the
server's route table (``_server.ROUTES``) lists every family explicitly.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Any, NamedTuple, Protocol

from ._http import Request, Responder

__all__ = ["Emulator", "Handler", "Route", "route"]


class Emulator(Protocol):
    """The emulator as its handlers use it (``MockServer`` implements it)."""

    @property
    def ttft(self) -> float:
        """Seconds before the first token."""

    @property
    def itl(self) -> float:
        """Seconds between tokens."""

    @property
    def tokens(self) -> int:
        """Answer length (tokens) when a request sets no ``max_tokens``."""

    @property
    def options(self) -> dict[str, Any]:
        """The extra settings a test gave the server (``batch_speed``, quotas, ...)."""

    @property
    def state(self) -> dict[str, Any]:
        """Per-server state of the route families (the file store, quota buckets)."""

    def next_id(self, prefix: str) -> str:
        """A fresh id: ``prefix`` and a counter (``batch_000001``)."""


#: A route handler: the emulator, the request, its responder, the path's match.
Handler = Callable[[Emulator, Request, Responder, "re.Match[str]"], Awaitable[None]]


class Route(NamedTuple):
    """One entry of the route table: a method, a full-match path pattern, a handler."""

    method: str
    pattern: re.Pattern[str]
    handler: Handler


def route(method: str, pattern: str, handler: Handler) -> Route:
    """A route table entry: ``route("GET", r"/v1/files/([^/]+)", retrieve_file)``."""
    return Route(method, re.compile(pattern), handler)
