"""Running the async client from blocking code: one event loop thread, a typed bridge.

:class:`Portal` owns one background event loop thread (anyio's blocking
portal) and runs coroutines there for callers on any other thread. A caller
interrupted while it waits (Ctrl-C is a ``KeyboardInterrupt`` in the main
thread) cancels the task it was waiting for, so the request or stream under
it is closed at once rather than left running in the background.

:func:`blocking` and :func:`blocking_iter` turn the async resources' methods
into blocking ones *with their exact signatures*: ``retrieve =
blocking(Batches.retrieve)`` in a class body gives ``client.batches.retrieve``
the parameters and return type of ``AsyncClient.batches.retrieve`` (a
``ParamSpec`` carries them), so mypy checks sync calls as strictly as async
ones and nothing is written twice. Only overloaded methods (``chat.create``,
``chat.stream``, whose result type follows ``response_format``) are written
out by hand, since a ``ParamSpec`` cannot carry overloads.
"""

from __future__ import annotations

import functools
import signal
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from concurrent.futures import Future
from contextlib import AbstractContextManager, contextmanager
from types import TracebackType
from typing import Any, Concatenate, Generic, Protocol, TypeVar, overload

import anyio
from anyio.from_thread import BlockingPortal, start_blocking_portal
from typing_extensions import ParamSpec, Self

from ._fork import forget_after_fork

__all__ = ["Portal", "SyncResource", "blocking", "blocking_iter"]

P = ParamSpec("P")
R = TypeVar("R")
T = TypeVar("T")

_OWN_LOOP = (
    "a holysheep_async.Client method was called from its own event loop"
    " (a callback such as on_progress): it would wait for itself forever"
)


class Portal:
    """One event loop in a background thread, and a thread-safe way to run coroutines in it.

    The thread starts at the first call, not before: a ``Client`` made at import
    time starts nothing until it is used. Any thread may call, a thread running
    an event loop of its own included (a Jupyter kernel runs every cell inside
    its asyncio loop; the call blocks that thread, as the official SDK's sync
    client does). Only the loop thread itself is refused: it would wait for itself.

    After ``os.fork()`` the child forgets the parent's loop thread (it was not
    copied) and starts its own at its first call (see ``holysheep_async._fork``).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._cm: AbstractContextManager[BlockingPortal] | None = None
        self._portal: BlockingPortal | None = None
        self._thread: int | None = None
        self._closed = False
        forget_after_fork(self)

    def _running(self) -> BlockingPortal:
        """The loop thread's portal, started now if it is not running yet."""
        portal = self._portal
        if portal is not None and not self._closed:
            return portal
        with self._lock:
            if self._closed:
                raise RuntimeError("this holysheep_async.Client is closed")
            if self._portal is None:
                cm = start_blocking_portal("asyncio", name="holysheep-sync-client")
                portal = cm.__enter__()
                self._thread = portal.call(threading.get_ident)
                self._cm, self._portal = cm, portal
            return self._portal

    def run(self, fn: Callable[[], Awaitable[T]]) -> T:
        """``await fn()`` in the loop thread and return its result, blocking this thread."""
        future = None
        self._running()  # started before Ctrl-C is held back (see start)
        try:
            with _sigint_deferred():
                future = self.start(fn)
            return future.result()
        except BaseException:
            # KeyboardInterrupt (or any error of our own thread) while waiting: cancel the
            # task in the loop so that its request or stream is closed, not left running.
            if future is not None:
                future.cancel()
            raise

    def start(self, fn: Callable[[], Awaitable[T]]) -> Future[T]:
        """Start ``fn()`` in the loop thread; its result (or error) comes in the future."""
        if self._thread is not None and threading.get_ident() == self._thread:
            raise RuntimeError(_OWN_LOOP)
        return self._running().start_task_soon(fn)

    def close(self) -> None:
        """Stop the loop thread (idempotent)."""
        with self._lock:
            self._closed = True
            cm, self._cm, self._portal = self._cm, None, None
        if cm is not None:
            cm.__exit__(None, None, None)

    def _after_fork(self) -> object:
        """In a forked child: forget the parent's loop thread; the first call starts ours.

        Returns the parent's portal, for ``_fork`` to keep: closing its context
        manager (as the garbage collector would) waits for a thread that is not here.
        """
        forgotten = (self._cm, self._portal)
        self._lock = threading.Lock()  # another thread of the parent's may have held it
        self._cm = self._portal = None
        self._thread = None
        return forgotten

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def started(self) -> bool:
        """Whether the loop thread runs (in this process)."""
        return self._portal is not None


@contextmanager
def _sigint_deferred() -> Iterator[None]:
    """Hold back Ctrl-C while a task is handed to the loop, until its future is ours.

    A ``KeyboardInterrupt`` raised inside ``start_task_soon`` after the task was
    scheduled would leave it running with nobody to cancel it. Blocked here, the
    signal is delivered when the block ends, where the caller can cancel the task.
    Main thread on POSIX only (where signals land); elsewhere a no-op.
    """
    if _CAN_MASK and threading.current_thread() is threading.main_thread():
        old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
        try:
            yield
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, old)
    else:
        yield


_CAN_MASK = hasattr(signal, "pthread_sigmask")


#: Items handed over per round trip between the threads, at most (and read ahead, at most).
_BATCH = 64


def iterate(
    portal: Portal, it: AsyncIterator[T], close: Callable[[], Awaitable[None]]
) -> Iterator[T]:
    """``it`` as a blocking iterator; leaving it early (break, Ctrl-C, an error) runs ``close``.

    One task in the loop reads ``it`` into a small buffer (at most ``_BATCH``
    items ahead: memory stays flat, a slow reader slows the reading); each
    round trip from this thread takes everything buffered. A thread handoff
    costs tens of microseconds on a quiet machine (far more on a busy one),
    so a burst of deltas costs one handoff, not one each. The async iterator
    also stays in one task from start to end, as async generators expect.
    """
    send, receive = anyio.create_memory_object_stream[T](_BATCH)

    async def pump() -> None:
        async with send:
            async for item in it:
                await send.send(item)

    async def take() -> list[T]:
        try:
            items = [await receive.receive()]
        except anyio.EndOfStream:
            return []
        while len(items) < _BATCH:
            try:
                items.append(receive.receive_nowait())
            except (anyio.WouldBlock, anyio.EndOfStream):
                break
        return items

    pumping = None
    try:
        portal._running()  # started before Ctrl-C is held back
        with _sigint_deferred():
            pumping = portal.start(pump)
        while True:
            items = portal.run(take)
            if not items:
                break
            yield from items
        pumping.result()  # the error the iterator ended with, after all it yielded before it
    finally:
        if pumping is not None and not pumping.done():
            pumping.cancel()

        async def finish() -> None:
            receive.close()  # in the loop: a memory stream is not thread-safe
            await close()

        if not portal.closed:
            portal.run(finish)


class _AsyncTextStream(Protocol):
    """What :class:`SyncStream` needs of a stream (ChatStream, ResponseStream)."""

    async def __aenter__(self) -> Any: ...

    async def __aexit__(self, *exc: Any) -> Any: ...

    def __aiter__(self) -> AsyncIterator[str]: ...

    async def aclose(self) -> None: ...


_AS = TypeVar("_AS", bound=_AsyncTextStream)


class SyncStream(Generic[_AS]):
    """An async text stream, blocking: ``with`` opens and closes it, iteration gives the text.

    Leaving ``with``, breaking out of the loop or Ctrl-C closes the connection. The
    chat and Responses surfaces add their own views (chunks, events, properties).
    """

    def __init__(self, stream: _AS, portal: Portal) -> None:
        self._stream = stream
        self._portal = portal

    def __enter__(self) -> Self:
        self._portal.run(self._stream.__aenter__)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if not self._portal.closed:
            self._portal.run(lambda: self._stream.__aexit__(exc_type, exc, tb))

    def __iter__(self) -> Iterator[str]:
        return iterate(self._portal, self._stream.__aiter__(), self._stream.aclose)

    def close(self) -> None:
        """Close the HTTP response now (idempotent)."""
        if not self._portal.closed:
            self._portal.run(self._stream.aclose)

    def __repr__(self) -> str:
        return f"<Sync{self._stream!r}"[:-1] + ">"


class SyncResource:
    """A blocking view of one async resource (``client.batches`` and so on)."""

    def __init__(self, resource: Any, portal: Portal) -> None:
        self._async = resource
        self._portal = portal


class blocking(Generic[P, R]):
    """``name = blocking(AsyncResource.name)``: the same method, blocking."""

    def __init__(self, method: Callable[Concatenate[Any, P], Awaitable[R]]) -> None:
        self._name = method.__name__
        self.__doc__ = method.__doc__

    @overload
    def __get__(self, obj: None, owner: type[Any]) -> Self: ...

    @overload
    def __get__(self, obj: SyncResource, owner: type[Any]) -> Callable[P, R]: ...

    def __get__(self, obj: SyncResource | None, owner: type[Any]) -> Self | Callable[P, R]:
        if obj is None:
            return self
        method = getattr(obj._async, self._name)
        portal = obj._portal

        @functools.wraps(method)
        def call(*args: P.args, **kwargs: P.kwargs) -> R:
            result: R = portal.run(functools.partial(method, *args, **kwargs))
            return result

        return call


class blocking_iter(Generic[P, T]):
    """``name = blocking_iter(AsyncResource.name)`` for a method that returns an async iterator."""

    def __init__(self, method: Callable[Concatenate[Any, P], AsyncIterator[T]]) -> None:
        self._name = method.__name__
        self.__doc__ = method.__doc__

    @overload
    def __get__(self, obj: None, owner: type[Any]) -> Self: ...

    @overload
    def __get__(self, obj: SyncResource, owner: type[Any]) -> Callable[P, Iterator[T]]: ...

    def __get__(
        self, obj: SyncResource | None, owner: type[Any]
    ) -> Self | Callable[P, Iterator[T]]:
        if obj is None:
            return self
        method = getattr(obj._async, self._name)
        portal = obj._portal

        @functools.wraps(method)
        def call(*args: P.args, **kwargs: P.kwargs) -> Iterator[T]:
            it = method(*args, **kwargs)
            closer = getattr(it, "aclose", None)

            async def close() -> None:
                if closer is not None:
                    await closer()

            return iterate(portal, it, close)

        return call
