"""Server-Sent Events: bytes in, events out. Knows nothing about HTTP or JSON.

Follows the WHATWG event-stream rules, plus what real servers send:

- line ends CR, LF or CRLF, also when a CRLF is split across two reads;
- ``data:`` with or without the space after the colon;
- ``:`` comment lines (keep-alive pings) are counted in ``comments`` but are
  not events, so a caller can tell a ping from data;
- several ``data:`` lines in one event are joined with ``\\n``;
- ``event:``, ``id:`` and ``retry:`` fields;
- multi-byte UTF-8 characters split across reads: the decoder works on bytes
  and decodes an event's data only once the event is complete;
- a last event not followed by a blank line is still delivered by ``flush()``
  (servers that close right after ``data: [DONE]``).

Example::

    decoder = SSEDecoder()
    for event in decoder.feed(b"data: hello\\n\\n"):
        print(event.data)          # hello
"""

from __future__ import annotations

from httpx_sse import ServerSentEvent

__all__ = ["SSEDecoder", "ServerSentEvent"]


class SSEDecoder:
    """Incremental SSE decoder. ``feed(bytes)`` returns the events completed by those bytes."""

    __slots__ = ("_data", "_event", "_id", "_line", "_retry", "_skip_lf", "comments")

    def __init__(self) -> None:
        self._line = b""  # an incomplete line carried over from the last read
        self._skip_lf = False  # the last read ended in CR: an LF starting the next is its pair
        self._data: list[bytes] = []
        self._event = ""
        self._id = ""
        self._retry: int | None = None
        #: Comment lines seen so far (pings).
        self.comments = 0

    def feed(self, chunk: bytes) -> list[ServerSentEvent]:
        if self._skip_lf:
            self._skip_lf = False
            if chunk[:1] == b"\n":
                chunk = chunk[1:]
        if self._line:
            chunk = self._line + chunk
        if b"\r" in chunk:
            self._skip_lf = chunk.endswith(b"\r")
            chunk = chunk.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        lines = chunk.split(b"\n")
        self._line = lines.pop()
        return self._lines(lines)

    def _lines(self, lines: list[bytes]) -> list[ServerSentEvent]:
        events: list[ServerSentEvent] = []
        for line in lines:
            if not line:
                if self._data:
                    events.append(self._dispatch())
                else:
                    # An event without data is not dispatched; its fields reset.
                    self._event = ""
                    self._retry = None
                continue
            if line[0] == 58:  # b":" comment / ping
                self.comments += 1
                continue
            field, sep, value = line.partition(b":")
            if sep and value[:1] == b" ":
                value = value[1:]
            if field == b"data":
                self._data.append(value)
            elif field == b"event":
                self._event = value.decode("utf-8", "replace")
            elif field == b"id":
                if b"\0" not in value:
                    self._id = value.decode("utf-8", "replace")
            elif field == b"retry" and value.isdigit():
                self._retry = int(value)
            # Unknown fields are ignored, as the standard says.
        return events

    def _dispatch(self) -> ServerSentEvent:
        raw = self._data[0] if len(self._data) == 1 else b"\n".join(self._data)
        event = ServerSentEvent(
            event=self._event or "message",
            data=raw.decode("utf-8", "replace"),
            id=self._id,
            retry=self._retry,
        )
        self._data = []
        self._event = ""
        self._retry = None
        return event

    def flush(self) -> list[ServerSentEvent]:
        """End of stream: deliver a last event that was not followed by a blank line."""
        lines = [self._line] if self._line else []
        self._line = b""
        self._skip_lf = False
        events = self._lines(lines)
        if self._data:
            events.append(self._dispatch())
        return events
