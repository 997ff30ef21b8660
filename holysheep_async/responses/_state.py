"""The Responses stream protocol: what each data event of the stream means. Pure, no I/O.

:class:`ResponsesState` is what the stream core hands each decoded event to
(``take``): it drops an event it has seen already (by ``sequence_number``:
a resumed background stream never gives text twice), turns an ``error``
event or a ``response.failed`` into a :class:`StreamError`, feeds the rest to
the :class:`~._accumulate.Accumulator`, and returns ``(event, text delta)``
pairs for the stream surface to yield from.

On the chat fallback the events are chat chunks: a
:class:`~._fallback_stream.ChunkConverter` turns each into the Responses
events it stands for first, so that the surface sees one protocol.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

from ..errors import ResponseFailedError, StreamError, describe_error_body
from ._accumulate import Accumulator
from ._fallback import as_map, response_from_chat
from ._fallback_stream import ChunkConverter

__all__ = ["Item", "ResponsesState"]

#: What ``take`` returns for each event: the event object and its output text delta.
Item = tuple[dict[str, Any], "str | None"]

MALFORMED = "malformed_event"


def _output_text(obj: Mapping[str, Any]) -> str:
    """The ``output_text`` parts of a response object's messages, joined."""
    return "".join(
        part.get("text") or ""
        for item in obj.get("output") or ()
        if isinstance(item, dict) and item.get("type") == "message"
        for part in item.get("content") or ()
        if isinstance(part, dict) and part.get("type") == "output_text"
    )


def _same(text: str) -> str:
    return text


def _nowhere() -> str:
    return ""


class ResponsesState:
    """One Responses stream's protocol state, across its attempts (see the module docstring).

    ``request``: the Responses request body; ``chat``: True when the events are
    chat chunks (the fallback); ``redact`` / ``where``: blank the key out of an
    error's text, and name the request (`` [request id ...]``).
    """

    whole_name = "a response object"

    def __init__(
        self,
        request: Mapping[str, Any] | None = None,
        *,
        chat: bool = False,
        redact: Callable[[str], str] = _same,
        where: Callable[[], str] = _nowhere,
    ) -> None:
        self.request: Mapping[str, Any] = request or {}
        self.chat = chat
        self.redact = redact
        self.where = where
        #: Words for errors; whether ``data: [DONE]`` ends the body (chat streams only).
        self.ending = "finish reason" if chat else "response.completed event"
        self.done_marker = chat
        self.acc = Accumulator()
        self.converter = ChunkConverter(self.request) if chat else None
        #: A background response: a broken stream is resumed from its last event.
        self.background = bool(self.request.get("background"))
        #: Events made at the end of a chat stream (the fallback's closing events).
        self.closing: list[Item] = []

    def to_chat(self) -> None:
        """From now on the events are chat chunks (the server has no Responses API)."""
        self.chat = True
        self.ending = "finish reason"
        self.done_marker = True
        self.background = False
        self.restart()

    # -- the protocol ---------------------------------------------------------------------

    def take(self, obj: Any, data: str) -> list[Item]:
        """One decoded data event; the (event, text) pairs to yield (none for a duplicate)."""
        if obj.__class__ is not dict:
            raise self.malformed(data, "not a JSON object")
        converter = self.converter
        if converter is None:
            if "type" not in obj:
                if obj.get("error"):
                    raise self.error_object(obj)
                raise self.malformed(data, "an event without a type")
            return self._feed([obj], data)
        return self._feed(converter.feed(obj), data)

    def _feed(self, events: list[dict[str, Any]], data: str) -> list[Item]:
        acc = self.acc
        out: list[Item] = []
        for event in events:
            if not acc.is_new(event):
                continue  # a resumed stream sent it again
            kind = event.get("type")
            if kind == "error":
                acc.feed(event)
                raise self.error_object(event)
            try:
                text = acc.feed(event)
            except ValueError as exc:
                raise self.malformed(data, str(exc)) from None
            if kind == "response.failed":
                raise self.failed(event)
            out.append((event, text))
        return out

    def whole(self, obj: Any, data: str) -> list[list[Item]]:
        """The server answered one JSON body instead of a stream: the events it stands for
        (one batch, as ``take`` would have made it)."""
        if not isinstance(obj, dict):
            raise self.malformed(data, "not a JSON object")
        if obj.get("error") and not obj.get("output") and not obj.get("choices"):
            raise self.error_object(obj)
        if self.converter is not None:
            if not isinstance(obj.get("choices"), list):
                raise self.malformed(data, "not a chat.completion object")
            obj = response_from_chat(obj, self.request)
        elif obj.get("object") not in (None, "response") or "output" not in obj:
            raise self.malformed(data, "not a response object")
        status = obj.get("status")
        if status in ("queued", "in_progress"):
            # LiteLLM answers GET /responses/{id}?stream=true so: the object as it is now.
            raise StreamError(
                f"The server answered with the response object (status {status}) instead of"
                " an event stream: it does not stream this response; wait for it with"
                f" client.responses.wait({obj.get('id')!r}){self.where()}",
                body=self.redact(data),
            )
        # Text given already (a resumed stream answered whole) is not given again.
        said = len(self.acc.text)
        if said and not _output_text(obj).startswith(self.acc.text):
            raise self.malformed(data, "the response does not go on from the text given")
        events: list[dict[str, Any]] = []
        for index, item in enumerate(obj.get("output") or ()):
            if not isinstance(item, dict):
                continue
            if item.get("type") == "message":
                for part_index, part in enumerate(item.get("content") or ()):
                    if isinstance(part, dict) and part.get("type") == "output_text":
                        text = part.get("text") or ""
                        skip, said = min(said, len(text)), max(0, said - len(text))
                        events.append(
                            {
                                "type": "response.output_text.delta",
                                "item_id": item.get("id"),
                                "output_index": index,
                                "content_index": part_index,
                                "delta": text[skip:],
                            }
                        )
            events.append(
                {"type": "response.output_item.done", "output_index": index, "item": item}
            )
        kind = {"incomplete": "response.incomplete", "failed": "response.failed"}.get(
            status or "", "response.completed"
        )
        events.append({"type": kind, "response": obj})
        return [self._feed(events, data)]

    def complete(self) -> bool:
        """Has the answer ended (``response.completed``, ``.incomplete``; chat: a finish reason)?"""
        if self.converter is not None:
            return self.converter.finish_reason is not None or self.acc.ended is not None
        return self.acc.ended is not None

    def partial_text(self) -> str:
        return self.acc.text

    def restart(self, resume: bool = False) -> None:
        """Another attempt follows. A background response resumes after its last event
        (everything kept; without event numbers it is read again from its start), whether
        or not something was yielded (``resume``); any other stream starts from scratch."""
        resume_id = self.resume_id()
        if resume_id is not None and self.acc.sequence_number is not None:
            return
        self.acc = Accumulator()
        self.acc.id = resume_id
        self.converter = ChunkConverter(self.request) if self.chat else None
        self.closing = []

    def resumable(self) -> bool:
        """Can a stream that yielded something go on after its last event (no text twice)?"""
        return self.resume_id() is not None and self.acc.sequence_number is not None

    def resume_id(self) -> str | None:
        """The background response to read the events of (``GET``), or None: POST."""
        acc = self.acc
        if self.background and self.converter is None and acc.id:
            return acc.id
        return None

    def finish(self) -> list[Item]:
        """The end of the body: the fallback's closing events (nothing for a native stream)."""
        converter = self.converter
        if converter is None or self.acc.ended is not None or converter.finish_reason is None:
            return []
        self.closing = self._feed(converter.finish(), "")
        return self.closing

    # -- errors -------------------------------------------------------------------------

    def malformed(self, data: str, why: str) -> StreamError:
        data = self.redact(data)  # a server may echo the key back
        return StreamError(
            f"Malformed event in the stream ({why}): {data[:200]!r}{self.where()}",
            body=data,
            code=MALFORMED,
        )

    def error_object(self, event: Mapping[str, Any]) -> StreamError:
        """An ``error`` event (or an error object) as the StreamError to raise."""
        raw = self.redact(json.dumps(event, ensure_ascii=False, default=str))
        body, message, code, _ = describe_error_body(raw.encode())
        if not message and isinstance(event.get("message"), str):
            message = self.redact(event["message"])
        if code is None and event.get("code") is not None:
            code = str(event["code"])
        return StreamError(
            f"Error inside the stream: {message or raw[:200]}"
            + (f" (code {code})" if code else "")
            + self.where(),
            body=body,
            code=code,
        )

    def failed(self, event: Mapping[str, Any]) -> ResponseFailedError:
        """``response.failed``: the server gave up on the response; its ``error`` says why."""
        response = as_map(event.get("response"))
        error = as_map(response.get("error"))
        message = self.redact(str(error.get("message") or "no reason given"))
        code = error.get("code")
        return ResponseFailedError(
            f"The response failed: {message}" + (f" (code {code})" if code else "") + self.where(),
            response=dict(response),
            code=None if code is None else str(code),
        )
