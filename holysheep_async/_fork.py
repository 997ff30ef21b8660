"""Fork safety: what a forked child forgets of its parent's clients.

A client made before ``os.fork()`` (a task module imported by Celery's prefork
pool, an app preloaded by ``gunicorn --preload``, ``multiprocessing`` with the
fork start method) is copied into every child with what it held then: the
parent's sockets (idle connections, a Redis connection), the state of the
sync ``Client``'s event loop thread (the thread itself is not copied: only
the thread that forked exists in the child), limiter counters and leases.

None of it may be used in the child: a request on a shared socket interleaves
with the parent's, a call handed to a loop thread that does not exist waits
forever. Nor may the child close it: a TLS close alert, a ``shutdown()``, or
unregistering a socket from the parent's epoll instance (which the child
shares) would break the parent's connections. So the child *forgets*: each
object registered here drops its references to what belongs to the parent
and starts afresh on its first use in the child, as a new object would.

What is forgotten is kept referenced here for the child's lifetime, never
garbage collected: finalizers would act on the parent's things (closing the
generator of anyio's blocking portal asks the parent's loop thread, which is
not there, to stop, and waits forever; a pending task's or a connection's
finalizer may close or log). The child's copies of those descriptors close
when it exits. The cost is a few descriptors and objects per fork.

``os.register_at_fork(after_in_child=...)`` is registered once, here; objects
join with :func:`forget_after_fork` and are held weakly. Forks made outside
Python (a C library calling ``fork()`` directly) do not run the hook.
"""

from __future__ import annotations

import logging
import os
import weakref
from typing import Any, Protocol

__all__ = ["forget_after_fork", "forget_httpx_connections"]

log = logging.getLogger("holysheep_async")


class _ForgetsAfterFork(Protocol):
    def _after_fork(self) -> object:
        """Start afresh; return what was forgotten (kept referenced, see above)."""


_live: weakref.WeakSet[Any] = weakref.WeakSet()
#: What the children forgot, kept from the garbage collector (see the module docstring).
_forgotten: list[object] = []


def forget_after_fork(obj: _ForgetsAfterFork) -> None:
    """Call ``obj._after_fork()`` in every child forked while ``obj`` is alive."""
    _live.add(obj)


def _in_child() -> None:
    for obj in list(_live):
        try:
            _forgotten.append(obj._after_fork())
        except Exception:  # one object's trouble must not leave the others stale
            log.exception("after fork: %s could not reset itself", type(obj).__name__)


def forget_httpx_connections(http: Any) -> list[object]:
    """Make an ``httpx.AsyncClient``'s connection pools forget their connections.

    Our :class:`~._transport.Transport` resets itself (``_after_fork``); httpx's
    own transports (the proxy case, ``HOLYSHEEP_TRANSPORT=httpx``, an
    ``http_client`` handed in) keep an httpcore pool, whose lists of
    connections and queued requests are emptied. Returns what was forgotten.
    """
    forgotten: list[object] = []
    transports = [getattr(http, "_transport", None)]
    transports += list(getattr(http, "_mounts", {}).values())
    for transport in transports:
        if transport is None:
            continue
        reset = getattr(transport, "_after_fork", None)
        if callable(reset):
            forgotten.append(reset())
            continue
        pool = getattr(transport, "_pool", None)  # httpx.AsyncHTTPTransport -> httpcore
        for name in ("_connections", "_requests"):
            if isinstance(getattr(pool, name, None), list):
                forgotten.append(getattr(pool, name))
                setattr(pool, name, [])
    return forgotten


if hasattr(os, "register_at_fork"):  # POSIX
    os.register_at_fork(after_in_child=_in_child)
