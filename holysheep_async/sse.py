"""Server-Sent Events: bytes in, events out. Knows nothing about HTTP or JSON.

Follows the WHATWG event-stream rules, plus what real servers send:

- line ends CR, LF or CRLF, also when a CRLF is split across two reads;
- ``data:`` with or without the space after the colon;
- ``:`` comment lines (keep-alive pings) are counted in ``comments`` but are
  not events, so a caller can tell a ping from data;
- several ``data:`` lines in one event are joined with ``\\n``;
- ``event:``, ``id:`` and ``retry:`` fields (a ``retry`` of more than 18 digits
  is ignored); a UTF-8 byte order mark at the start;
- multi-byte UTF-8 characters split across reads: a line is decoded only once
  it is complete (bytes that are not UTF-8 become U+FFFD rather than an
  exception); the whole lines of a read are decoded at once (a line end is
  never inside a UTF-8 sequence, so that is what decoding each line gives);
- a last event not followed by a blank line is still delivered by ``flush()``
  (servers that close right after ``data: [DONE]``).

Example::

    decoder = SSEDecoder()
    for event in decoder.feed(b"data: hello\\n\\n"):
        print(event.data)          # hello
    decoder.flush()                # at the end of the stream
"""

from __future__ import annotations

from httpx_sse import ServerSentEvent

__all__ = ["RawEvent", "SSEDecoder", "SSEError", "ServerSentEvent"]

#: An event as the decoder builds it: (event name, data, id, retry). ``feed`` and
#: ``flush`` wrap each in a :class:`ServerSentEvent`; the chat stream reads the
#: tuples (``feed_raw``) and saves that object per event on its hot path.
RawEvent = tuple[str, str, str, "int | None"]

_BOM = b"\xef\xbb\xbf"
# A longer ``retry:`` is ignored (int() refuses more than 4,300 digits; 18 are ~3e10 years in ms).
_MAX_RETRY_DIGITS = 18


class SSEError(ValueError):
    """The byte stream cannot be an event stream (a line longer than ``max_line``)."""


class SSEDecoder:
    """Incremental SSE decoder. ``feed(bytes)`` returns the events completed by those bytes.

    ``max_line``: the longest line accepted, in bytes (a server that never sends
    a line end would otherwise grow the buffer without bound).
    """

    __slots__ = (
        "_data",
        "_event",
        "_id",
        "_max_line",
        "_pending",
        "_pending_size",
        "_retry",
        "_skip_lf",
        "_started",
        "comments",
    )

    def __init__(self, *, max_line: int = 16 * 1024 * 1024) -> None:
        # Pieces of a line not finished yet (kept as a list: a long line arriving in
        # many small reads is joined once, not copied at every read).
        self._pending: list[bytes] = []
        self._pending_size = 0
        self._skip_lf = False  # the last read ended in CR: an LF starting the next is its pair
        self._started = False  # a BOM is only skipped at the very start
        self._data: list[str] = []
        self._event = ""
        self._id = ""
        self._retry: int | None = None
        self._max_line = max_line
        #: Comment lines seen so far (pings).
        self.comments = 0

    def feed(self, chunk: bytes) -> list[ServerSentEvent]:
        return [ServerSentEvent(*e) for e in self.feed_raw(chunk)]

    def flush(self) -> list[ServerSentEvent]:
        """End of stream: deliver a last event that was not followed by a blank line."""
        return [ServerSentEvent(*e) for e in self.flush_raw()]

    def feed_raw(self, chunk: bytes) -> list[RawEvent]:
        """Like ``feed``, as (event, data, id, retry) tuples; the event name is never empty.

        The hot path of a stream. The whole lines of the read are decoded at
        once; at an event boundary, the events they hold are split on their
        blank lines, and one that is a single ``data:`` line (what servers
        send) is taken whole; anything else goes line by line, by the same rules.
        """
        if not chunk:
            return []
        if not self._started:
            chunk = self._start(chunk)
            if not chunk:
                return []
        if self._skip_lf:
            self._skip_lf = False
            if chunk[0] == 10:  # b"\n"
                chunk = chunk[1:]
                if not chunk:
                    return []
        if b"\r" in chunk:
            self._skip_lf = chunk[-1] == 13  # b"\r"
            chunk = chunk.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        elif b"\n" not in chunk:
            self._hold(chunk)
            return []
        if self._pending:
            self._pending.append(chunk)
            chunk = b"".join(self._pending)
            self._pending = []
            self._pending_size = 0
        end = chunk.rfind(b"\n") + 1
        if end < len(chunk):
            self._hold(chunk[end:])  # a line not finished yet
        text = chunk[:end].decode("utf-8", "replace")  # whole lines, each ending in "\n"
        if self._data or self._event or self._retry is not None:
            # Inside an event that began in an earlier read: line by line.
            lines = text.split("\n")
            lines.pop()  # "" after the last line end
            return self._lines(lines)
        # At an event boundary: each block before a blank line is a whole event.
        blocks = text.split("\n\n")
        tail = blocks.pop()  # after the last blank line: an event not finished yet
        events: list[RawEvent] = []
        for block in blocks:
            if block[:6] == "data: " and "\n" not in block:
                events.append(("message", block[6:], self._id, None))
            else:  # its lines, and the blank line that ends it
                events += self._lines([*block.split("\n"), ""])
        if tail:
            lines = tail.split("\n")
            lines.pop()  # "" after the last line end
            events += self._lines(lines)
        return events

    def _start(self, chunk: bytes) -> bytes:
        # The BOM may itself arrive split across reads.
        head = b"".join(self._pending) + chunk if self._pending else chunk
        if len(head) < 3 and _BOM.startswith(head):
            self._pending = [head]
            self._pending_size = len(head)
            return b""
        self._pending = []
        self._pending_size = 0
        self._started = True
        return head[3:] if head.startswith(_BOM) else head

    def _hold(self, piece: bytes) -> None:
        self._pending_size += len(piece)
        if self._pending_size > self._max_line:
            self._pending = []
            self._pending_size = 0
            raise SSEError(
                f"an event-stream line longer than {self._max_line} bytes without a line end"
            )
        self._pending.append(piece)

    def _lines(self, lines: list[str]) -> list[RawEvent]:
        events: list[RawEvent] = []
        data = self._data
        for line in lines:
            # The hot path: "data: {...}" then a blank line.
            if line[:5] == "data:":
                data.append(line[6:] if line[5:6] == " " else line[5:])
                continue
            if not line:
                if data:
                    events.append(self._dispatch())
                    data = self._data
                else:
                    # An event without data is not dispatched; its fields reset.
                    self._event = ""
                    self._retry = None
                continue
            if line[0] == ":":  # a comment / ping
                self.comments += 1
                continue
            field, sep, value = line.partition(":")
            if sep and value[:1] == " ":
                value = value[1:]
            if field == "data":  # "data" alone on its line: an empty data field
                data.append(value)
            elif field == "event":
                self._event = value
            elif field == "id":
                if "\0" not in value:
                    self._id = value
            elif (
                field == "retry"
                and value.isascii()
                and value.isdigit()
                and len(value) <= _MAX_RETRY_DIGITS
            ):
                self._retry = int(value)
            # Unknown fields are ignored, as the standard says.
        return events

    def _dispatch(self) -> RawEvent:
        raw = self._data[0] if len(self._data) == 1 else "\n".join(self._data)
        event = (self._event or "message", raw, self._id, self._retry)
        self._data = []
        self._event = ""
        self._retry = None
        return event

    def flush_raw(self) -> list[RawEvent]:
        """Like ``flush``, as tuples (see ``feed_raw``)."""
        pending = b"".join(self._pending)
        lines = [pending.decode("utf-8", "replace")] if pending else []
        if not self._started and pending and _BOM.startswith(pending):
            lines = []
        self._pending = []
        self._pending_size = 0
        self._skip_lf = False
        events = self._lines(lines) if lines else []
        if self._data:
            events.append(self._dispatch())
        return events
