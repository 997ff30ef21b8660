"""The plug between the stream core and a stream protocol: what a protocol gives the core.

The core (``_wire``, ``_policy``, ``_core``) knows bytes, SSE events and
JSON; a protocol (chat chunks in ``_chat``; the Responses API's typed events
next) knows what the JSON objects mean. It plugs in as one object that
satisfies :class:`StreamProtocol`. Everything here is pure: no I/O.

How the core reads an event (``Wire._parse``, the hot path): a named event in
:data:`PING_EVENTS` is skipped, ``event: error`` raises the error object it
carries, an empty ``data`` is a keep-alive, ``data: [DONE]`` ends the body;
any other ``data`` is decoded as JSON (leniently, :func:`lenient`, when
strict JSON fails) and handed to :meth:`StreamProtocol.take`, whose return
value is the item the surface yields from.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, Protocol

from ..errors import StreamError, describe_error_body

__all__ = ["MALFORMED", "PING_EVENTS", "Errors", "StreamProtocol", "lenient"]

# Code of the StreamError for an event that is not a JSON object: never retried.
MALFORMED = "malformed_event"
# Named events that are keep-alives, not data (some relays send "event: ping").
PING_EVENTS = frozenset({"ping", "keepalive", "keep-alive", "heartbeat"})


class StreamProtocol(Protocol):
    """What a stream protocol gives the core (chat: :class:`~._chat.ChatState`).

    One object per stream; it lives across the stream's attempts. The core
    calls :meth:`take` once per data event (keep it lean: it is the per-chunk
    cost), the rest once per attempt or per failure.
    """

    #: What a whole answer is called in errors ("a chat.completion JSON object").
    whole_name: str
    #: What marks an answer finished, in messages ("finish reason").
    ending: str
    #: True when the body should end with ``data: [DONE]`` (a warning is logged when it
    #: does not); False for protocols whose last event says the answer is over.
    done_marker: bool

    def take(self, obj: Any, data: str) -> Any:
        """One data event, decoded (``obj``; ``data``: its text), recorded; the item to yield.

        Raises :class:`StreamError` for an error object or an event that is
        not what the protocol sends (code :data:`MALFORMED`: never retried);
        build those with the protocol's :class:`Errors`.
        """
        ...

    def whole(self, obj: Any, data: str) -> list[Any]:
        """The server ignored ``"stream": true`` and sent one JSON body: the items it makes."""
        ...

    def complete(self) -> bool:
        """Is the answer finished (every finish reason seen)? Decides what a body that ends or
        breaks without ``[DONE]`` was: complete (with a warning) or cut short (an error)."""
        ...

    def partial_text(self) -> str:
        """The text the caller was given so far: errors carry it, a resume continues it."""
        ...

    def restart(self, resume: bool) -> None:
        """Another attempt follows: forget what belongs to one response (ids, finish reasons,
        usage). ``resume``: it continues the answer, so keep what the caller was given (the
        text); else it starts over, and nothing of the failed attempt counts."""
        ...

    def resumable(self) -> bool:
        """May an answer that broke after something was yielded be continued by a
        follow-up request (chat: one choice, no tool call)? A retry from scratch is
        allowed only while nothing was yielded; the core tracks that itself."""
        ...


def _same(text: str) -> str:
    return text


def _nowhere() -> str:
    return ""


class Errors:
    """Builds the errors of events: the key a server echoed blanked out, the request id named.

    ``redact``: blanks the API key out of a text; ``where``: the suffix that
    names the request (`` [request id ...]``, or "").
    """

    __slots__ = ("redact", "where")

    def __init__(
        self, redact: Callable[[str], str] = _same, where: Callable[[], str] = _nowhere
    ) -> None:
        self.redact = redact
        self.where = where

    def malformed(self, data: str, why: str) -> StreamError:
        data = self.redact(data)  # a server may echo the key back
        return StreamError(
            f"Malformed event in the stream ({why}): {data[:200]!r}{self.where()}",
            body=data,
            code=MALFORMED,
        )

    def error_object(self, data: str) -> StreamError:
        data = self.redact(data)  # a server may echo the key back
        body, message, code, _ = describe_error_body(data.encode())
        return StreamError(
            f"Error inside the stream: {message or data[:200]}"
            + (f" (code {code})" if code else "")
            + self.where(),
            body=body,
            code=code,
        )


def lenient(data: str, errors: Errors) -> list[Any]:
    """An event's data that is not strict JSON, read as real servers mean it, or raise."""
    try:
        # Raw control characters inside strings (strict JSON forbids them).
        return [json.loads(data, strict=False)]
    except ValueError:
        pass
    if "\n" in data:
        # Several JSON objects on consecutive data: lines with no blank line between.
        try:
            return [json.loads(p, strict=False) for p in data.split("\n") if p.strip()]
        except ValueError:
            pass
    raise errors.malformed(data, "not JSON")
