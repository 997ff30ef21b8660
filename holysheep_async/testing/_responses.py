"""``/v1/responses`` in the emulator: OpenAI's Responses API, streamed, stored, in the background.

Routes::

    POST   /v1/responses                      create (stream, background, store)
    GET    /v1/responses/{id}                 retrieve; ?stream=true&starting_after=N
                                              replays a background response's events
    POST   /v1/responses/{id}/cancel          cancel a background response
    DELETE /v1/responses/{id}                 delete
    GET    /v1/responses/{id}/input_items     the conversation's input items (paginated)

What an answer holds is decided in ``_responses_plan`` (reasoning items, tool
calls, JSON for a schema, ``max_output_tokens``); the request is checked in
``_responses_input``; events are written by ``_responses_stream`` (stream faults
there). Responses are kept in memory (``store`` defaults to true, as on OpenAI),
so ``previous_response_id`` continues a conversation; its earlier turns count as
cached input tokens.

A background response (``background: true``) answers ``queued`` at once, then
moves on a clock, event by event: with the server's ``ttft``/``itl`` pace, after
``background_queue`` seconds queued, on ``_responses._clock`` (``time.monotonic``;
a test may put a fake clock there). With ``background_speed=N`` it moves by steps
instead: N events each time it is retrieved (0: never), and
``server.advance_responses(n)`` moves every unfinished one ``n`` events on (in
either mode). Its stream, ``POST`` with ``stream: true`` or ``GET ...?stream=true``,
follows it as it moves; a dropped stream resumes with ``starting_after``, and the
response goes on meanwhile. A cancelled response's stream ends without a
terminal event; retrieve it to see ``cancelled``.

Options (``MockServer(**options)``, changeable at run time in ``server.options``):

======================  ==========================================================
``responses_api``       ``True`` (default); ``False``: every ``/v1/responses`` route
                        answers 404, as a relay without the Responses API does; or
                        the status to answer instead (405, 501, ...)
``background_speed``    ``None`` (default): background responses move on the clock;
                        an int: events per retrieve (see above)
``background_queue``    seconds a background response stays ``queued`` (default 0)
======================  ==========================================================

Faults: a ``status`` fault (429 with ``retry-after``, 5xx) answers any of these
routes; the stream faults are listed in ``_responses_stream``. The per-key
quotas (``rpm_quota``, ``tpm_quota``) charge a create its usage's
``total_tokens``.
"""

from __future__ import annotations

import asyncio
import bisect
import copy
import itertools
import re
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ._chat import _client_gone
from ._http import Request, Responder, route
from ._responses_input import BadRequest, Spec, chat_messages, read_request
from ._responses_plan import DELTAS, TERMINAL, Plan, plan
from ._responses_stream import Emitter

if TYPE_CHECKING:
    from ._server import MockServer

__all__ = ["advance_responses", "batch_answer", "response_store"]

#: The clock background responses move on (a test may put a fake one here).
_clock = time.monotonic


@dataclass
class _Record:
    """One response the emulator holds (stored, or running in the background)."""

    id: str
    plan: Plan
    background: bool
    stored: bool
    #: Input items of the whole conversation (earlier turns first), with ids.
    context: list[dict[str, Any]]
    started: float = 0.0
    offsets: list[float] = field(default_factory=list)
    #: Events released by steps (``advance_responses``, ``background_speed``).
    floor: int = 0
    released: int = 0
    cancelled: bool = False
    failed: dict[str, Any] | None = None

    @property
    def events(self) -> list[dict[str, Any]]:
        return self.plan.events

    @property
    def finished(self) -> bool:
        return self.cancelled or self.failed is not None or self.released >= len(self.events)

    def move(self, server: MockServer) -> None:
        """Release what is due (call with the store's lock held)."""
        if self.finished:
            return
        due = self.floor
        if server.options.get("background_speed") is None:
            due = max(due, bisect.bisect_right(self.offsets, _clock() - self.started))
        self.released = min(len(self.events), max(self.released, due))

    def step(self, events: int) -> None:
        if not self.finished:
            self.floor = max(self.floor, self.released) + events
            self.released = min(len(self.events), self.floor)

    def output(self) -> list[dict[str, Any]]:
        """The output items finished so far."""
        return [
            copy.deepcopy(e["item"])
            for e in self.events[: self.released]
            if e["type"] == "response.output_item.done"
        ]

    def snapshot(self) -> dict[str, Any]:
        """The ``Response`` object as it stands."""
        if self.failed is not None:
            return copy.deepcopy(self.failed)
        if self.released >= len(self.events) and not self.cancelled:
            return copy.deepcopy(self.plan.final)
        status = "cancelled" if self.cancelled else self.plan.statuses[max(0, self.released - 1)]
        return {
            **copy.deepcopy(self.plan.final),
            "status": status,
            "output": self.output(),
            "usage": None,
            "completed_at": None,
            "incomplete_details": None,
        }

    def fail(self, error: dict[str, Any]) -> dict[str, Any]:
        self.failed = {**self.snapshot(), "status": "failed", "error": error}
        return copy.deepcopy(self.failed)


@dataclass
class _Store:
    lock: threading.Lock = field(default_factory=threading.Lock)
    records: dict[str, _Record] = field(default_factory=dict)
    #: Every input and output item by id (``item_reference`` inputs).
    items: dict[str, dict[str, Any]] = field(default_factory=dict)


def response_store(server: MockServer) -> _Store:
    store = server.state.get("responses")
    if store is None:
        store = server.state.setdefault("responses", _Store())
    assert isinstance(store, _Store)
    return store


def advance_responses(server: MockServer, events: int = 1) -> None:
    """Move every unfinished background response ``events`` events on."""
    store = response_store(server)
    with store.lock:
        for record in store.records.values():
            if record.background:
                record.move(server)
                record.step(events)


# ---------------------------------------------------------------------------
# creating


async def _available(server: MockServer, responder: Responder) -> bool:
    """False (after answering) when the Responses API is switched off."""
    switch = server.options.get("responses_api", True)
    if switch is True:
        return True
    status = 404 if switch is False else int(switch)
    request = responder.request
    await responder.error(
        status,
        f"Invalid URL ({request.method} {request.path})",
        code="not_found" if status == 404 else None,
    )
    return False


_ID_PREFIX = {"message": "msg_", "function_call": "fc_", "reasoning": "rs_"}


def _with_ids(
    server: MockServer, store: _Store, items: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """Input items as the API lists them: each with an id, references resolved."""
    out: list[dict[str, Any]] = []
    for i, item in enumerate(items):
        kind = item["type"]
        if kind == "item_reference":
            found = store.items.get(item["id"])
            if found is None:
                raise BadRequest(f"Item with id '{item['id']}' not found.", param=f"input[{i}].id")
            out.append(copy.deepcopy(found))
            continue
        item = copy.deepcopy(item)
        if kind == "message":
            content = item.get("content")
            if isinstance(content, str):
                part = "output_text" if item["role"] == "assistant" else "input_text"
                text: dict[str, Any] = {"type": part, "text": content}
                if part == "output_text":
                    text["annotations"] = []
                item["content"] = [text]
            item.setdefault("status", "completed")
        elif kind in ("function_call", "function_call_output"):
            item.setdefault("status", "completed")
        if not isinstance(item.get("id"), str):
            item["id"] = server.next_id(_ID_PREFIX.get(kind, "fco_"))
        out.append(item)
    return out


def _check_calls(context: list[dict[str, Any]]) -> None:
    """Every function call answered, every output answering a call, as OpenAI checks."""
    calls = [i["call_id"] for i in context if i.get("type") == "function_call"]
    outputs = {i["call_id"] for i in context if i.get("type") == "function_call_output"}
    for call_id in outputs - set(calls):
        raise BadRequest(
            f"No tool call found for function call output with call_id {call_id}.", param="input"
        )
    for call_id in calls:
        if call_id not in outputs:
            raise BadRequest(f"No tool output found for function call {call_id}.", param="input")


def _conversation(
    server: MockServer, store: _Store, spec: Spec
) -> tuple[list[dict[str, Any]], int]:
    """The whole conversation's input items, and how many came from earlier turns."""
    earlier: list[dict[str, Any]] = []
    if spec.previous_response_id is not None:
        prev = store.records.get(spec.previous_response_id)
        if prev is None or not prev.stored:
            raise BadRequest(
                f"Previous response with id '{spec.previous_response_id}' not found.",
                param="previous_response_id",
                code="previous_response_not_found",
            )
        prev.move(server)
        earlier = copy.deepcopy(prev.context) + prev.output()
    context = earlier + _with_ids(server, store, spec.items)
    _check_calls(context)
    return context, len(earlier)


def _remember(store: _Store, record: _Record) -> None:
    if record.stored:
        store.records[record.id] = record
        for item in record.context:
            store.items[item["id"]] = item
        for item in record.plan.final["output"]:
            store.items[item["id"]] = item


def _plan(
    server: MockServer,
    spec: Spec,
    response_id: str,
    context: list[dict[str, Any]],
    carried: int,
    *,
    paced: bool,
) -> Plan:
    ids = itertools.count(1)
    return plan(
        spec,
        response_id=response_id,
        context=context,
        carried=carried,
        new_id=lambda prefix: f"{prefix}{response_id[5:]}_{next(ids)}",
        created_at=int(time.time()),
        tokens=server.tokens,
        ttft=server.ttft if paced else 0.0,
        itl=server.itl if paced else 0.0,
        queue_delay=float(server.options.get("background_queue") or 0.0),
    )


@route("POST", "/v1/responses")
async def create_response(
    server: MockServer, request: Request, responder: Responder, match: re.Match[str]
) -> None:
    if not await _available(server, responder):
        return
    try:
        body = request.json()
    except ValueError:
        await responder.error(400, "We could not parse the JSON body of your request.")
        return
    store = response_store(server)
    response_id = server.next_id("resp_")
    try:
        spec = read_request(body)
        with store.lock:
            context, carried = _conversation(server, store, spec)
    except BadRequest as exc:
        await responder.error(exc.status, exc.message, param=exc.param, code=exc.code)
        return
    answer = _plan(server, spec, response_id, context, carried, paced=True)
    quota = server.state.get("quota_check")
    if quota is not None:
        charged = {
            "model": spec.model,
            "messages": chat_messages(spec.instructions, context),
            "max_tokens": answer.usage["output_tokens"],
        }
        if not await quota(server, request, responder, charged):
            return
    record = _Record(response_id, answer, spec.background, spec.store, context)
    headers = {"x-request-id": request.request_id or "", **request.answer_headers}
    if spec.background:
        with store.lock:
            record.started = _clock()
            record.offsets = list(itertools.accumulate(answer.delays))
            # response.created and response.queued are out at once: the create answers
            # "queued", as OpenAI's does, however soon the response will be done.
            record.floor = record.released = 2
            _remember(store, record)
            first = record.snapshot()
        if spec.stream:
            await _follow(server, responder, record, -1)
        else:
            await responder.send_json(200, first, headers)
    elif spec.stream:
        await _stream(server, responder, record)
    else:
        if not await _wait(responder, answer.total_delay):
            return
        record.released = len(answer.events)
        with store.lock:
            _remember(store, record)
        await responder.send_json(200, answer.final, headers)


def batch_answer(server: MockServer, body: Any) -> tuple[int, dict[str, Any]]:
    """A batch line's answer for ``url: /v1/responses``: ``(status, body)``, never stored."""
    store = response_store(server)
    try:
        spec = read_request(body)
        if spec.stream or spec.background:
            raise BadRequest("'stream' and 'background' are not supported in a batch.")
        spec.store = False
        with store.lock:
            context, carried = _conversation(server, store, spec)
    except BadRequest as exc:
        error = {"message": exc.message, "type": "invalid_request_error", "param": exc.param}
        return exc.status, {"error": {**error, "code": exc.code}}
    answer = _plan(server, spec, server.next_id("resp_"), context, carried, paced=False)
    return 200, answer.final


async def _wait(responder: Responder, delay: float) -> bool:
    """Wait ``delay``; False (connection dropped) when the client gave up meanwhile."""
    if delay <= 0.1:
        if delay > 0:
            await asyncio.sleep(delay)
        return True
    # A long wait notices a client that gave up (and closes), as a real server would.
    loop = asyncio.get_running_loop()
    deadline = loop.time() + delay
    while loop.time() < deadline:
        if _client_gone(responder):
            responder.abort()
            return False
        await asyncio.sleep(min(0.02, max(0.0, deadline - loop.time())))
    return True


def _emitter(server: MockServer, responder: Responder, record: _Record) -> Emitter:
    store = response_store(server)

    def fail(error: dict[str, Any]) -> dict[str, Any]:
        with store.lock:
            record.move(server)
            failed = record.fail(error)
            _remember(store, record)
        return failed

    return Emitter(responder, responder.request.fault, fail)


async def _stream(server: MockServer, responder: Responder, record: _Record) -> None:
    """A foreground stream: the plan's events at the server's pace."""
    emitter = _emitter(server, responder, record)
    await emitter.start()
    answer = record.plan
    extra = emitter.extra_first_delay
    for event, delay in zip(answer.events, answer.delays, strict=True):
        if delay or extra:
            await emitter.pause(delay + extra)
            extra = 0.0
        # What is out so far (a response that fails now keeps its finished items).
        record.released = int(event["sequence_number"])
        if event["type"] in TERMINAL:
            record.released = len(answer.events)
            store = response_store(server)
            with store.lock:
                _remember(store, record)
        if not await emitter.emit(event):
            return
    await emitter.finish()


async def _follow(server: MockServer, responder: Responder, record: _Record, after: int) -> None:
    """A background response's events after sequence number ``after``, as they come."""
    store = response_store(server)
    emitter = _emitter(server, responder, record)
    await emitter.start()
    extra = emitter.extra_first_delay
    index = after + 1
    while True:
        with store.lock:
            record.move(server)
            released = record.released
            finished = record.finished
            events = record.events[index:released]
            wait = 0.02
            if not finished and server.options.get("background_speed") is None:
                next_due = record.offsets[released] - (_clock() - record.started)
                wait = min(wait, max(0.0, next_due))
        for event in events:
            if extra and event["type"] in DELTAS:
                await emitter.pause(extra)
                extra = 0.0
            if not await emitter.emit(event):
                return
        index += len(events)
        if finished and index >= released:
            break
        await emitter.flush()
        if emitter.gone():
            responder.abort()
            return
        await asyncio.sleep(wait)
    await emitter.finish()


# ---------------------------------------------------------------------------
# retrieve, cancel, delete, input items


async def _record(server: MockServer, responder: Responder, response_id: str) -> _Record | None:
    if not await _available(server, responder):
        return None
    store = response_store(server)
    with store.lock:
        record = store.records.get(response_id)
    if record is None:
        await responder.error(
            404, f"Response with id '{response_id}' not found.", param="response_id"
        )
    return record


@route("GET", r"/v1/responses/([^/]+)")
async def retrieve_response(
    server: MockServer, request: Request, responder: Responder, match: re.Match[str]
) -> None:
    record = await _record(server, responder, match.group(1))
    if record is None:
        return
    store = response_store(server)
    if request.query.get("stream", "").lower() == "true":
        if not record.background:
            await responder.error(
                400,
                "This response cannot be streamed: only a response created with"
                " background=true can be streamed again.",
                param="stream",
            )
            return
        raw = request.query.get("starting_after", "-1")
        try:
            after = int(raw)
        except ValueError:
            await responder.error(
                400,
                f"Invalid 'starting_after': expected an integer, got {raw!r}.",
                param="starting_after",
            )
            return
        await _follow(server, responder, record, after)
        return
    with store.lock:
        record.move(server)
        speed = server.options.get("background_speed")
        if record.background and speed:
            record.step(int(speed))
        obj = record.snapshot()
    await responder.send_json(200, obj)


@route("POST", r"/v1/responses/([^/]+)/cancel")
async def cancel_response(
    server: MockServer, request: Request, responder: Responder, match: re.Match[str]
) -> None:
    record = await _record(server, responder, match.group(1))
    if record is None:
        return
    if not record.background:
        await responder.error(
            400,
            "Only responses created with background=true can be cancelled.",
            param="response_id",
        )
        return
    store = response_store(server)
    with store.lock:
        record.move(server)
        if not record.finished:  # cancelling a finished one just returns it
            record.cancelled = True
        obj = record.snapshot()
    await responder.send_json(200, obj)


@route("DELETE", r"/v1/responses/([^/]+)")
async def delete_response(
    server: MockServer, request: Request, responder: Responder, match: re.Match[str]
) -> None:
    record = await _record(server, responder, match.group(1))
    if record is None:
        return
    store = response_store(server)
    with store.lock:
        record.move(server)
        if not record.finished:
            record.cancelled = True
        store.records.pop(record.id, None)
    await responder.send_json(200, {"id": record.id, "object": "response", "deleted": True})


@route("GET", r"/v1/responses/([^/]+)/input_items")
async def list_input_items(
    server: MockServer, request: Request, responder: Responder, match: re.Match[str]
) -> None:
    record = await _record(server, responder, match.group(1))
    if record is None:
        return
    try:
        limit = int(request.query.get("limit", "20"))
    except ValueError:
        limit = 0
    if not 1 <= limit <= 100:
        await responder.error(400, "limit must be an integer between 1 and 100", param="limit")
        return
    order = request.query.get("order", "desc")
    if order not in ("asc", "desc"):
        await responder.error(400, "order must be 'asc' or 'desc'", param="order")
        return
    items = record.context if order == "asc" else record.context[::-1]
    after = request.query.get("after")
    if after:
        ids = [item["id"] for item in items]
        if after not in ids:
            await responder.error(400, f"No input item found with id '{after}'.", param="after")
            return
        items = items[ids.index(after) + 1 :]
    page = copy.deepcopy(items[:limit])
    await responder.send_json(
        200,
        {
            "object": "list",
            "data": page,
            "first_id": page[0]["id"] if page else None,
            "last_id": page[-1]["id"] if page else None,
            "has_more": len(items) > limit,
        },
    )
