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
there); stored responses and their progress live in ``_responses_store``.
Responses are kept in memory (``store`` defaults to true, as on OpenAI), so
``previous_response_id`` continues a conversation; its earlier turns count as
cached input tokens.

A background response (``background: true``) answers ``queued`` at once, then
moves on a clock, event by event: with the server's ``ttft``/``itl`` pace, after
``background_queue`` seconds queued, on ``_responses_store._clock`` (``time.monotonic``;
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
import copy
import itertools
import re
from typing import Any

from ._http import Request, Responder
from ._responses_input import BadRequest, chat_messages, read_request
from ._responses_plan import DELTAS, TERMINAL
from ._responses_store import (
    Record,
    clock,
    conversation,
    plan_for,
    remember,
    response_store,
)
from ._responses_stream import Emitter, client_gone
from ._state import Emulator, route

__all__ = ["ROUTES"]

# ---------------------------------------------------------------------------
# creating


async def _available(server: Emulator, responder: Responder) -> bool:
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


async def create_response(
    server: Emulator, request: Request, responder: Responder, match: re.Match[str]
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
            context, carried = conversation(server, store, spec)
    except BadRequest as exc:
        await responder.error(exc.status, exc.message, param=exc.param, code=exc.code)
        return
    answer = plan_for(server, spec, response_id, context, carried, paced=True)
    quota = server.state.get("quota_check")
    if quota is not None:
        charged = {
            "model": spec.model,
            "messages": chat_messages(spec.instructions, context),
            "max_tokens": answer.usage["output_tokens"],
        }
        if not await quota(server, request, responder, charged):
            return
    record = Record(response_id, answer, spec.background, spec.store, context)
    headers = {"x-request-id": request.request_id or "", **request.answer_headers}
    if spec.background:
        with store.lock:
            record.started = clock()
            record.offsets = list(itertools.accumulate(answer.delays))
            # response.created and response.queued are out at once: the create answers
            # "queued", as OpenAI's does, however soon the response will be done.
            record.floor = record.released = 2
            remember(store, record)
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
            remember(store, record)
        await responder.send_json(200, answer.final, headers)


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
        if client_gone(responder):
            responder.abort()
            return False
        await asyncio.sleep(min(0.02, max(0.0, deadline - loop.time())))
    return True


def _emitter(server: Emulator, responder: Responder, record: Record) -> Emitter:
    store = response_store(server)

    def fail(error: dict[str, Any]) -> dict[str, Any]:
        with store.lock:
            record.move(server)
            failed = record.fail(error)
            remember(store, record)
        return failed

    return Emitter(responder, responder.request.fault, fail)


async def _stream(server: Emulator, responder: Responder, record: Record) -> None:
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
                remember(store, record)
        if not await emitter.emit(event):
            return
    await emitter.finish()


async def _follow(server: Emulator, responder: Responder, record: Record, after: int) -> None:
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
                next_due = record.offsets[released] - (clock() - record.started)
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


async def _record(server: Emulator, responder: Responder, response_id: str) -> Record | None:
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


async def retrieve_response(
    server: Emulator, request: Request, responder: Responder, match: re.Match[str]
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


async def cancel_response(
    server: Emulator, request: Request, responder: Responder, match: re.Match[str]
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


async def delete_response(
    server: Emulator, request: Request, responder: Responder, match: re.Match[str]
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


async def list_input_items(
    server: Emulator, request: Request, responder: Responder, match: re.Match[str]
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


ROUTES = (
    route("POST", "/v1/responses", create_response),
    route("GET", r"/v1/responses/([^/]+)", retrieve_response),
    route("POST", r"/v1/responses/([^/]+)/cancel", cancel_response),
    route("DELETE", r"/v1/responses/([^/]+)", delete_response),
    route("GET", r"/v1/responses/([^/]+)/input_items", list_input_items),
)
