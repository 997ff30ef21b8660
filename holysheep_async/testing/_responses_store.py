"""The emulator's Responses API state: stored responses, background progress, conversations.

Below the HTTP routes (``_responses``) and the batch lines (``_batches``), which
both use it: a :class:`Record` per response the emulator holds (its planned
events, how many are out, cancelled or failed), the per-server :class:`Store`,
the conversation a request continues (``previous_response_id``,
``item_reference``, tool calls paired), and :func:`batch_answer`.

A background response moves on :data:`_clock` (``time.monotonic``; a test may put
a fake clock here) at the server's ``ttft``/``itl`` pace, or by steps with the
``background_speed`` option (see ``_responses``).
"""

from __future__ import annotations

import bisect
import copy
import itertools
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from ._responses_input import BadRequest, Spec, read_request
from ._responses_plan import Plan, plan
from ._state import Emulator

__all__ = [
    "Record",
    "Store",
    "advance_responses",
    "batch_answer",
    "clock",
    "conversation",
    "plan_for",
    "remember",
    "response_store",
]


#: The clock background responses move on (a test may put a fake one here).
_clock = time.monotonic


@dataclass
class Record:
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

    def move(self, server: Emulator) -> None:
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
class Store:
    lock: threading.Lock = field(default_factory=threading.Lock)
    records: dict[str, Record] = field(default_factory=dict)
    #: Every input and output item by id (``item_reference`` inputs).
    items: dict[str, dict[str, Any]] = field(default_factory=dict)


def clock() -> float:
    """The time background responses move on (``_clock`` read at each call)."""
    return _clock()


def response_store(server: Emulator) -> Store:
    store = server.state.get("responses")
    if store is None:
        store = server.state.setdefault("responses", Store())
    assert isinstance(store, Store)
    return store


def advance_responses(server: Emulator, events: int = 1) -> None:
    """Move every unfinished background response ``events`` events on."""
    store = response_store(server)
    with store.lock:
        for record in store.records.values():
            if record.background:
                record.move(server)
                record.step(events)


_ID_PREFIX = {"message": "msg_", "function_call": "fc_", "reasoning": "rs_"}


def with_ids(server: Emulator, store: Store, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
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


def check_calls(context: list[dict[str, Any]]) -> None:
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


def conversation(server: Emulator, store: Store, spec: Spec) -> tuple[list[dict[str, Any]], int]:
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
    context = earlier + with_ids(server, store, spec.items)
    check_calls(context)
    return context, len(earlier)


def remember(store: Store, record: Record) -> None:
    if record.stored:
        store.records[record.id] = record
        for item in record.context:
            store.items[item["id"]] = item
        for item in record.plan.final["output"]:
            store.items[item["id"]] = item


def plan_for(
    server: Emulator,
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


def batch_answer(server: Emulator, body: Any) -> tuple[int, dict[str, Any]]:
    """A batch line's answer for ``url: /v1/responses``: ``(status, body)``, never stored."""
    store = response_store(server)
    try:
        spec = read_request(body)
        if spec.stream or spec.background:
            raise BadRequest("'stream' and 'background' are not supported in a batch.")
        spec.store = False
        with store.lock:
            context, carried = conversation(server, store, spec)
    except BadRequest as exc:
        error = {"message": exc.message, "type": "invalid_request_error", "param": exc.param}
        return exc.status, {"error": {**error, "code": exc.code}}
    answer = plan_for(server, spec, server.next_id("resp_"), context, carried, paced=False)
    return 200, answer.final
