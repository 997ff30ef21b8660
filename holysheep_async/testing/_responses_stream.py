"""Writing a Responses API event stream, with the emulator's stream faults.

Each event goes out as ``event: <type>`` and ``data: <json>`` (the JSON's
``type`` is the event name, its ``sequence_number`` rises by one each event);
no ``data: [DONE]`` at the end, as OpenAI sends none on this API.

Stream faults (``Fault`` kinds, ``after`` counted in events sent on this
connection: ``after=3`` sends three events, then the fault):

=============  ==================================================================
``drop``       close the connection (a background response goes on: resume it)
``stall``      go silent for ``delay`` seconds (default: until the client gives
               up), a ``: ping`` every ``ping`` seconds if set, then go on
``error``      an ``error`` event, then the end of the stream. ``body`` picks its
               shape: ``None`` (OpenAI's documented one: ``code``, ``message``,
               ``param`` at the top), ``"nested"`` (``{"error": {...}}``, as
               OpenAI has been seen to send), ``"failed"`` (a ``response.failed``
               event instead: the response fails with ``error.code``), or a dict
               sent as the event's data as it is. ``code`` default
               ``server_error``
``malformed``  half an event, then the end
``truncate``   end the stream cleanly, without a terminal event
``slow_first`` wait ``delay`` more seconds before the first delta
``relay``      ``event:``/``data:`` without the space, CRLF line ends, ``: ping``
               comments between events
``ping``       a ``: ping`` comment before every event
=============  ==================================================================
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

from ._faults import Fault
from ._http import Responder

__all__ = ["STREAM_FAULTS", "Emitter", "client_gone"]

STREAM_FAULTS = frozenset({"drop", "stall", "malformed", "error", "truncate"})
_MESSAGE = "The server had an error while processing your request. Sorry about that!"


def client_gone(responder: Responder) -> bool:
    """Whether the client closed its side (a long wait notices it, as a real server would)."""
    writer = responder._writer
    if writer.transport.is_closing():
        return True
    reader = getattr(writer, "_reader", None)
    return reader is not None and (reader.at_eof() or reader.exception() is not None)


class Emitter:
    """Writes one connection's events; applies its fault when ``after`` events are out.

    ``fail``: called for an ``error`` fault with ``body="failed"`` with the error;
    returns the failed ``Response`` object for the ``response.failed`` event.
    """

    def __init__(
        self,
        responder: Responder,
        fault: Fault | None,
        fail: Callable[[dict[str, Any]], dict[str, Any]],
    ) -> None:
        self.responder = responder
        self.fault = fault
        kind = fault.kind if fault is not None else None
        self.kind = kind
        self.after = fault.after if fault is not None and kind in STREAM_FAULTS else -1
        self.sent = 0
        self.last_seq = -1
        self._fail = fail
        relay = kind == "relay"
        self._colon = b":" if relay else b": "
        self._nl = b"\r\n" if relay else b"\n"
        self._ping = b": ping" + self._nl * 2
        self._lead = self._ping if kind == "ping" else b""
        self._pending: list[bytes] = []

    @property
    def extra_first_delay(self) -> float:
        if self.kind == "slow_first" and self.fault is not None:
            return self.fault.delay or 0.0
        return 0.0

    def frame(self, event: dict[str, Any]) -> bytes:
        data = json.dumps(event, separators=(",", ":")).encode()
        nl = self._nl
        return (
            self._lead
            + b"event"
            + self._colon
            + str(event["type"]).encode()
            + nl
            + b"data"
            + self._colon
            + data
            + nl
            + nl
        )

    async def start(self) -> None:
        request = self.responder.request
        await self.responder.start(
            200,
            {
                "content-type": "text/event-stream; charset=utf-8",
                "cache-control": "no-cache",
                "x-request-id": request.request_id or "",
                **request.answer_headers,
            },
        )
        if self.kind == "ping":
            self._pending.append(b"event: ping\ndata: {}\n\n")
        await self.flush()

    async def flush(self) -> None:
        if self._pending:
            data = b"".join(self._pending)
            self._pending = []
            await self.responder.write(data)

    async def pause(self, seconds: float) -> None:
        """Flush, then wait ``seconds`` (a relay pings meanwhile)."""
        await self.flush()
        if self.kind == "relay":
            await self.responder.write(self._ping)
        if seconds > 0:
            await asyncio.sleep(seconds)

    async def emit(self, event: dict[str, Any]) -> bool:
        """Send ``event``; False when a fault ended the connection instead."""
        if self.sent == self.after and not await self._inject():
            return False
        self._pending.append(self.frame(event))
        self.sent += 1
        self.last_seq = int(event["sequence_number"])
        if len(self._pending) >= 256:
            await self.flush()
        return True

    async def finish(self) -> None:
        """End the stream (a fault due after the last event still hits)."""
        if self.sent == self.after and not await self._inject():
            return
        await self.flush()
        await self.responder.end()

    def gone(self) -> bool:
        return client_gone(self.responder)

    async def _inject(self) -> bool:
        """Apply the fault; True when the stream goes on afterwards (a stall that ends)."""
        fault = self.fault
        assert fault is not None
        self.after = -1
        await self.flush()
        responder = self.responder
        kind = fault.kind
        if kind == "drop":
            responder.abort()
        elif kind == "truncate":
            await responder.end()
        elif kind == "malformed":
            await responder.write(
                b'event: response.output_text.delta\ndata: {"type": "response.output_te\n\n'
            )
            await responder.end()
        elif kind == "error":
            await responder.write(self.frame(self._error_event(fault)))
            await responder.end()
        elif kind == "stall":
            return await self._stall(fault)
        return False

    def _error_event(self, fault: Fault) -> dict[str, Any]:
        seq = self.last_seq + 1
        code = fault.code or "server_error"
        message = fault.message or _MESSAGE
        etype = (
            "server_error"
            if code in ("server_error", "overloaded")
            else ("rate_limit_error" if "rate" in code else "invalid_request_error")
        )
        body = fault.body
        if isinstance(body, dict):
            return {"type": "error", "sequence_number": seq, **body}
        if body == "nested":
            error = {"type": etype, "code": code, "message": message, "param": None}
            return {"type": "error", "sequence_number": seq, "error": error}
        if body == "failed":
            response = self._fail({"code": code, "message": message})
            return {"type": "response.failed", "sequence_number": seq, "response": response}
        return {
            "type": "error",
            "sequence_number": seq,
            "code": code,
            "message": message,
            "param": None,
        }

    async def _stall(self, fault: Fault) -> bool:
        loop = asyncio.get_running_loop()
        deadline = None if fault.delay is None else loop.time() + fault.delay
        next_ping = loop.time() + fault.ping if fault.ping else None
        while deadline is None or loop.time() < deadline:
            if self.gone():
                self.responder.abort()
                return False
            wake = loop.time() + 0.02
            if deadline is not None:
                wake = min(wake, deadline)
            if next_ping is not None:
                wake = min(wake, next_ping)
            await asyncio.sleep(max(0.0, wake - loop.time()))
            if next_ping is not None and loop.time() >= next_ping:
                await self.responder.write(self._ping)
                next_ping += fault.ping or 0.0
        return True
