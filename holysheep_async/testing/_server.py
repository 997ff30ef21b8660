"""``MockServer``: the embedded OpenAI-compatible emulator.

A real HTTP server on 127.0.0.1. It runs its own asyncio event loop in a
background thread, so the same server serves asyncio and trio tests (and
synchronous code), and a test's fake clock never slows it down. The CLI's
``holysheep serve`` runs the same server in the foreground, and benchmarks run
it in a process of its own.

>>> async with MockServer(ttft=0.05, itl=0.01) as server:  # doctest: +SKIP
...     client = AsyncClient(base_url=server.base_url, api_key="test")
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import threading
from collections import deque
from collections.abc import Iterable
from types import TracebackType
from typing import Any

import anyio

from . import _batches, _chat, _files, _models, _responses
from ._faults import Fault, parse_fault_header
from ._http import MAX_HEADER, BadHTTP, Request, Responder, read_request
from ._quota import install_quota
from ._state import Route

__all__ = ["ROUTES", "MockServer"]

#: The route table: every route family the emulator answers, in the order they
#: are tried. Adding a family (``/v1/realtime``, say) is one module with a
#: ``ROUTES`` tuple (see ``_state.route``) and one line here.
ROUTES: tuple[Route, ...] = (
    *_chat.ROUTES,
    *_responses.ROUTES,
    *_models.ROUTES,
    *_files.ROUTES,
    *_batches.ROUTES,
)

log = logging.getLogger("holysheep_async.testing")


class MockServer:
    """OpenAI-compatible emulator with a latency profile and fault injection.

    ``ttft``: seconds before the first token; ``itl``: seconds between tokens;
    ``tokens``: answer length when a request sets no ``max_tokens``.
    ``api_keys``: the bearer keys accepted (``None``: any non-empty key).
    ``record``: keep every request in ``requests`` (turn off for long benchmarks).
    """

    def __init__(
        self,
        *,
        ttft: float = 0.0,
        itl: float = 0.0,
        tokens: int = 16,
        api_keys: Iterable[str] | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        record: bool = True,
        **options: Any,
    ) -> None:
        if ttft < 0 or itl < 0:
            raise ValueError("ttft and itl must be >= 0")
        if tokens < 1:
            raise ValueError("tokens must be >= 1")
        self.ttft = ttft
        self.itl = itl
        self.tokens = tokens
        self.api_keys = frozenset(api_keys) if api_keys is not None else None
        self.host = host
        self.port = port
        self.record = record
        #: Extra settings read by the handlers (batch speed, quotas, ...).
        self.options: dict[str, Any] = options
        #: Every request received, in order (when ``record``).
        self.requests: list[Request] = []
        #: Per-server state of the handler modules (files, batches, quota buckets).
        self.state: dict[str, Any] = {}
        # rpm_quota / tpm_quota options: per-key quotas answered with 429 (_quota.py).
        install_quota(self)
        self._faults: deque[Fault] = deque()
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._conns: set[asyncio.StreamWriter] = set()
        self._conns_changed = threading.Condition()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    # -- addresses ----------------------------------------------------------------

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT`` once started."""
        return f"http://{self.host}:{self.port}"

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT/v1``: what to hand to ``AsyncClient(base_url=...)``."""
        return f"{self.url}/v1"

    @property
    def open_connections(self) -> int:
        """Client connections open right now."""
        return len(self._conns)

    def wait_connections(self, at_most: int, timeout: float = 10.0) -> int:
        """Block until at most ``at_most`` client connections are open (or ``timeout``).

        Returns the count then. From async tests:
        ``await anyio.to_thread.run_sync(server.wait_connections, 0)``.
        """
        with self._conns_changed:
            self._conns_changed.wait_for(lambda: len(self._conns) <= at_most, timeout)
            return len(self._conns)

    def wait_requests(self, at_least: int, timeout: float = 10.0) -> int:
        """Block until at least ``at_least`` requests were received (or ``timeout``).

        Returns the count then (of ``requests``; needs ``record=True``). For a
        test that must act once a request is in, not merely once it connected.
        """
        with self._conns_changed:
            self._conns_changed.wait_for(lambda: len(self.requests) >= at_least, timeout)
            return len(self.requests)

    def next_id(self, prefix: str) -> str:
        return f"{prefix}{next(self._ids):06d}"

    # -- faults -------------------------------------------------------------------

    def inject(self, fault: Fault | str, **kwargs: Any) -> Fault:
        """Queue a fault for the next matching request(s): ``inject("drop", after=3)``."""
        if isinstance(fault, str):
            fault = Fault(fault, **kwargs)
        with self._lock:
            self._faults.append(fault)
        return fault

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def _take_fault(self, request: Request) -> Fault | None:
        header = request.headers.get("x-mock-fault")
        if header:
            return parse_fault_header(header)
        if not self._faults:
            return None
        with self._lock:
            for fault in self._faults:
                if fault.matches(request.path):
                    fault.times -= 1
                    if fault.times <= 0:
                        self._faults.remove(fault)
                    return fault
        return None

    # -- batches ------------------------------------------------------------------

    def advance_batches(self, steps: int = 1) -> None:
        """Move every unfinished batch ``steps`` steps along its lifecycle (see ``_batches``)."""
        _batches.advance_batches(self, steps)

    def advance_responses(self, events: int = 1) -> None:
        """Move every unfinished background response ``events`` events on (see ``_responses``)."""
        from ._responses_store import advance_responses

        advance_responses(self, events)

    # -- lifecycle ----------------------------------------------------------------

    def start(self) -> MockServer:
        """Start serving in a background thread; returns once the port is bound."""
        if self._thread is not None:
            raise RuntimeError("MockServer already started")
        self._ready.clear()
        self._thread = threading.Thread(
            target=self._thread_main, name="holysheep-mock", daemon=True
        )
        self._thread.start()
        self._ready.wait()
        if self._error is not None:
            self._thread = None
            raise self._error
        return self

    def stop(self) -> None:
        """Stop serving and close every connection (idempotent)."""
        thread, self._thread = self._thread, None
        if thread is None:
            return
        loop, stop = self._loop, self._stop
        if loop is not None and stop is not None:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(stop.set)
        thread.join(timeout=10)

    async def __aenter__(self) -> MockServer:
        await anyio.to_thread.run_sync(self.start)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await anyio.to_thread.run_sync(self.stop)

    def __enter__(self) -> MockServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _thread_main(self) -> None:
        try:
            asyncio.run(self.serve())
        except BaseException as exc:  # reported to start()
            self._error = exc
            self._ready.set()

    async def serve(self, *, ready: Any = None) -> None:
        """Serve in the running asyncio loop until :meth:`stop` (used by ``holysheep serve``)."""
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        server = await asyncio.start_server(
            # A deep accept queue: asyncio's default (100) drops the SYNs of a burst of
            # new connections (1,000 requests at once), which then wait 1 s to retry.
            self._connection,
            self.host,
            self.port,
            limit=MAX_HEADER,
            backlog=4096,
        )
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        if ready is not None:
            ready(self)
        try:
            await self._stop.wait()
        finally:
            server.close()
            for writer in list(self._conns):
                writer.transport.abort()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), 2)

    def request_stop(self) -> None:
        """Ask a foreground ``serve()`` to stop (thread-safe)."""
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)

    # -- serving ------------------------------------------------------------------

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await self._serve_connection(reader, writer)
        except asyncio.CancelledError:
            # The server is shutting down (stop(), Ctrl-C on ``holysheep serve``) with this
            # connection mid-answer. Nothing awaits this task, and asyncio (3.11) would log
            # the cancellation as an error with a traceback: end it quietly instead.
            return

    async def _serve_connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self._conns.add(writer)
        with self._conns_changed:
            self._conns_changed.notify_all()
        try:
            while True:
                try:
                    parsed = await read_request(reader)
                except BadHTTP as exc:
                    writer.write(
                        b"HTTP/1.1 400 Bad Request\r\nconnection: close\r\n"
                        b"content-length: %d\r\n\r\n%b" % (len(str(exc)), str(exc).encode())
                    )
                    break
                except (ConnectionError, asyncio.IncompleteReadError, ValueError):
                    break
                if parsed is None:
                    break
                request, keep_alive = parsed
                responder = Responder(writer, request, keep_alive)
                try:
                    await self._dispatch(request, responder)
                except (ConnectionError, asyncio.IncompleteReadError):
                    break
                except Exception:
                    log.exception("emulator handler failed for %s %s", request.method, request.path)
                    if not responder.started:
                        with contextlib.suppress(ConnectionError):
                            await responder.error(
                                500, "emulator handler failed", type="server_error"
                            )
                    else:
                        responder.abort()
                    break
                if not responder._keep_alive or writer.is_closing():
                    break
        finally:
            self._conns.discard(writer)
            writer.close()
            with self._conns_changed:
                self._conns_changed.notify_all()

    async def _dispatch(self, request: Request, responder: Responder) -> None:
        if self.record:
            self.requests.append(request)
            with self._conns_changed:
                self._conns_changed.notify_all()
        request.request_id = self.next_id("req_")
        try:
            fault = self._take_fault(request)
        except ValueError as exc:
            await responder.error(400, f"bad x-mock-fault header: {exc}")
            return
        if fault is not None and fault.kind == "status":
            await self._send_fault(fault, responder)
            return
        handler = None
        allowed = False
        match = None
        for method, pattern, candidate in ROUTES:
            match = pattern.fullmatch(request.path)
            if match is not None:
                allowed = True
                if method == request.method:
                    handler = candidate
                    break
        if handler is None or match is None:
            if allowed:
                await responder.error(
                    405,
                    f"Method {request.method} not allowed on {request.path}",
                )
            else:
                await responder.error(404, f"Unknown path {request.path}", code="not_found")
            return
        if not request.api_key or (
            self.api_keys is not None and request.api_key not in self.api_keys
        ):
            await responder.error(
                401,
                "Incorrect API key provided. You can find your API key in your account settings."
                if request.api_key
                else "You didn't provide an API key.",
                code="invalid_api_key",
            )
            return
        request.fault = fault
        await handler(self, request, responder, match)

    async def _send_fault(self, fault: Fault, responder: Responder) -> None:
        hdrs = dict(fault.headers)
        body = fault.body
        if isinstance(body, (bytes, str)):
            raw = body.encode() if isinstance(body, str) else body
            if raw.lstrip()[:1] == b"<":
                hdrs.setdefault("content-type", "text/html; charset=utf-8")
            await responder.send(fault.status, raw, hdrs)
        elif body is not None:
            await responder.send_json(fault.status, body, hdrs)
        else:
            await responder.error(
                fault.status,
                fault.message or f"Injected fault: status {fault.status}",
                type="rate_limit_error" if fault.status == 429 else "server_error",
                code=fault.code,
                headers=hdrs,
            )
