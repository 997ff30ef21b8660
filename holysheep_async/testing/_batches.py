"""``/v1/batches`` in the emulator: the OpenAI Batch API with a visible lifecycle.

A batch moves one step each time it is retrieved (or when a test calls
``server.advance_batches()``), so tests never wait on a wall clock; with
``batch_duration`` set it moves with time instead (``holysheep serve`` does
this by default), so it finishes in that many seconds however rarely the
client polls::

    validating -> in_progress (request_counts move by ``batch_speed`` per step)
               -> finalizing -> completed
    validating -> failed            (bad input lines, or over ``batch_token_limit``)
    in_progress -> expired          (after ``batch_expire_after`` steps; partial results)
    cancel: -> cancelling -> cancelled (partial results)

Settings, read from ``server.options`` at each step (change them any time):

======================  ==========================================================
``batch_speed``         requests answered per step (default 25); 0 = only
                        ``server.advance_batches()`` moves batches (a whole batch
                        per step), polling does not
``batch_duration``      seconds from the first retrieve to the last answer, moved
                        by the clock at each retrieve (0: everything at once);
                        ``None`` (default): the per-retrieve steps above.
                        ``advance_batches()`` still steps
``batch_api``           ``False``: ``/v1/files`` and ``/v1/batches`` answer 404 (a relay
                        without a Batch API); an int: answer that status (405, 501)
``batch_fail``          regex: requests whose ``custom_id`` matches fail with
                        ``batch_fail_status`` (default 500) in the error file
``batch_fail_rate``     share of requests that fail (deterministic per ``custom_id``)
``batch_fail_once``     a failing ``custom_id`` fails only the first time it is seen
``batch_expire_after``  steps in ``in_progress`` before the batch expires (seconds
                        with ``batch_duration``)
``batch_token_limit``   enqueued-token limit: a bigger batch moves to ``failed``
======================  ==========================================================

Output and error files use the OpenAI line format, in shuffled order.

Files (``/v1/files`` in ``_files``; the store both share in ``_store``) live
on disk, so a run of a million requests costs the emulator disk, not memory;
a batch reads its input file one step at a time and appends its answers to a
file while it runs.
"""

from __future__ import annotations

import json
import random
import re
import time
import zlib
from typing import Any

from ._answers import answer_length, answer_text, completion_usage
from ._embeddings import embeddings_answer
from ._http import Request, Responder
from ._responses_store import batch_answer
from ._state import Emulator, route
from ._store import Batch, BatchAnswers, Store, batch_api_available, batch_store, unix_now

# batch_store: re-exported (tests import it from here).
__all__ = ["ROUTES", "advance_batches", "batch_store"]

ENDPOINTS = ("/v1/chat/completions", "/v1/embeddings", "/v1/completions", "/v1/responses")


def _public(obj: dict[str, Any]) -> dict[str, Any]:
    """A copy of a batch for the wire: unset timestamps and files left out, as the spec has them."""
    return {k: json.loads(json.dumps(v)) for k, v in obj.items() if v is not None}


def advance_batches(server: Emulator, steps: int = 1) -> None:
    """Move every unfinished batch ``steps`` steps along its lifecycle."""
    store = batch_store(server)
    with store.lock:
        for batch in store.batches.values():
            for _ in range(steps):
                _step(server, store, batch, force=True)


# ---------------------------------------------------------------------------
# the lifecycle


#: The clock of ``batch_duration`` (a test may put a fake one here).
_clock = time.monotonic


def _step(server: Emulator, store: Store, batch: Batch, *, force: bool = False) -> None:
    opts = server.options
    duration = opts.get("batch_duration")
    if duration is not None and not force:
        _move_with_time(server, store, batch, float(duration))
        return
    speed = int(opts.get("batch_speed", 25))
    if speed <= 0:
        if not force:
            return
        speed = max(1, len(batch.lines))
    obj = batch.obj
    status = batch.status
    if status == "validating":
        errors = _validate(server, batch)
        if errors:
            obj.update(
                status="failed", failed_at=unix_now(), errors={"object": "list", "data": errors}
            )
            return
        obj.update(status="in_progress", in_progress_at=unix_now())
        obj["request_counts"]["total"] = len(batch.lines)
        batch.started = _clock()
    elif status == "in_progress":
        batch.steps_in_progress += 1
        expire_after = opts.get("batch_expire_after")
        if expire_after is not None and batch.steps_in_progress > int(expire_after):
            _expire(server, store, batch)
            return
        _answer_more(server, store, batch, speed)
    elif status == "finalizing":
        _finish(server, store, batch, "completed", "", "")
    elif status == "cancelling":
        _finish(
            server,
            store,
            batch,
            "cancelled",
            "batch_cancelled",
            "This request could not be executed before the batch was cancelled.",
        )


def _move_with_time(server: Emulator, store: Store, batch: Batch, duration: float) -> None:
    """``batch_duration``: the whole way a batch has come by now, in one retrieve.

    ``finalizing`` (and ``cancelling``) still shows for one retrieve, as a real
    service shows it.
    """
    was = batch.status
    if was == "validating":
        _step(server, store, batch, force=True)
    if batch.status == "in_progress":
        elapsed = _clock() - batch.started
        expire_after = server.options.get("batch_expire_after")
        if expire_after is not None and elapsed > float(expire_after):
            _expire(server, store, batch)
            return
        total = len(batch.lines)
        due = total if duration <= 0 else int(total * min(1.0, elapsed / duration))
        _answer_more(server, store, batch, due - len(batch.done))
    if was in ("finalizing", "cancelling"):
        _step(server, store, batch, force=True)


def _answer_more(server: Emulator, store: Store, batch: Batch, n: int) -> None:
    """Answer the next ``n`` requests; a batch with all answered moves to finalizing."""
    start = len(batch.done)
    counts = batch.obj["request_counts"]
    for line in batch.lines[start : start + max(0, n)]:
        answer = _answer(server, store, line)
        batch.done.append(answer)
        counts["completed" if answer["response"]["status_code"] == 200 else "failed"] += 1
    if len(batch.done) >= len(batch.lines):
        batch.obj.update(status="finalizing", finalizing_at=unix_now())


def _expire(server: Emulator, store: Store, batch: Batch) -> None:
    _finish(
        server,
        store,
        batch,
        "expired",
        "batch_expired",
        "This request could not be executed before the completion window expired.",
    )


def _validate(server: Emulator, batch: Batch) -> list[dict[str, Any]]:
    store = batch_store(server)
    file = store.files.get(str(batch.obj["input_file_id"]))
    if file is None:
        return [
            {"code": "invalid_file", "message": "input file not found", "param": None, "line": None}
        ]
    errors: list[dict[str, Any]] = []
    seen: set[str] = set()
    models: set[str] = set()
    tokens = 0
    endpoint = batch.obj["endpoint"]
    batch.lines.path = file.path
    for n, raw in enumerate(file.lines(), 1):
        try:
            line = json.loads(raw)
            if not isinstance(line, dict):
                raise ValueError("not an object")
        except ValueError:
            errors.append(
                {
                    "code": "invalid_json_line",
                    "message": "This line is not parseable as valid JSON.",
                    "param": None,
                    "line": n,
                }
            )
            continue
        cid = line.get("custom_id")
        body = line.get("body")
        if not isinstance(cid, str) or cid in seen:
            errors.append(
                {
                    "code": "duplicate_custom_id" if cid in seen else "missing_required_parameter",
                    "message": f"custom_id {cid!r} is missing or not unique",
                    "param": "custom_id",
                    "line": n,
                }
            )
        elif line.get("url") != endpoint or line.get("method") != "POST":
            errors.append(
                {
                    "code": "invalid_url",
                    "message": f"url must be {endpoint} and method POST",
                    "param": "url",
                    "line": n,
                }
            )
        elif not isinstance(body, dict):
            errors.append(
                {
                    "code": "invalid_request",
                    "message": "body must be an object",
                    "param": "body",
                    "line": n,
                }
            )
        else:
            seen.add(cid)
            models.add(str(body.get("model")))
            said = body.get("messages") or body.get("input")  # chat or embeddings
            tokens += answer_length(server, body) + len(json.dumps(said)) // 4
            batch.lines.count += 1
    if len(models) > 1:
        errors.append(
            {
                "code": "mismatched_model",
                "message": "All requests in a batch must use the same model.",
                "param": "body.model",
                "line": None,
            }
        )
    limit = server.options.get("batch_token_limit")
    if limit is not None and tokens > int(limit):
        errors.append(
            {
                "code": "token_limit_exceeded",
                "message": f"Enqueued token limit reached ({tokens} > {limit}).",
                "param": None,
                "line": None,
            }
        )
    if not batch.lines and not errors:
        errors.append(
            {
                "code": "empty_file",
                "message": "The input file is empty.",
                "param": None,
                "line": None,
            }
        )
    return errors


def _fails(server: Emulator, store: Store, cid: str) -> bool:
    opts = server.options
    pattern = opts.get("batch_fail")
    rate = float(opts.get("batch_fail_rate") or 0.0)
    failing = bool(pattern and re.search(pattern, cid)) or (
        rate > 0 and (zlib.crc32(cid.encode()) % 10_000) < rate * 10_000
    )
    if failing and opts.get("batch_fail_once"):
        if cid in store.seen_failures:
            return False
        store.seen_failures.add(cid)
    return failing


_SERVER_ERROR = "The server had an error while processing your request."


def _answer(server: Emulator, store: Store, line: dict[str, Any]) -> dict[str, Any]:
    cid = line["custom_id"]
    body = line["body"]
    request_id = server.next_id("req_")
    out: dict[str, Any] = {"id": server.next_id("batch_req_"), "custom_id": cid, "error": None}
    messages = body.get("messages")
    if line.get("url") == "/v1/embeddings":
        if _fails(server, store, cid):
            status = int(server.options.get("batch_fail_status", 500))
            payload = _error(_SERVER_ERROR, "server_error")
        else:
            status, payload = embeddings_answer(body)
    elif line.get("url") == "/v1/responses":
        if _fails(server, store, cid):
            status = int(server.options.get("batch_fail_status", 500))
            payload = _error(_SERVER_ERROR, "server_error")
        else:
            status, payload = batch_answer(server, body)
    elif not isinstance(messages, list) or not messages:
        status, payload = 400, _error("'messages' must be a non-empty array", "invalid_type")
    elif _fails(server, store, cid):
        status = int(server.options.get("batch_fail_status", 500))
        payload = _error("The server had an error while processing your request.", "server_error")
    else:
        n = answer_length(server, body)
        status = 200
        payload = {
            "id": f"chatcmpl-{request_id}",
            "object": "chat.completion",
            "created": unix_now(),
            "model": body.get("model"),
            "choices": [
                {
                    "index": 0,
                    "message": {
                        "role": "assistant",
                        "content": answer_text(messages, n),
                        "refusal": None,
                    },
                    "logprobs": None,
                    "finish_reason": "stop",
                }
            ],
            "usage": completion_usage(body, n),
            "system_fingerprint": "fp_holysheep_mock",
        }
    out["response"] = {"status_code": status, "request_id": request_id, "body": payload}
    return out


def _error(message: str, code: str) -> dict[str, Any]:
    return {
        "error": {
            "message": message,
            "type": "server_error" if code == "server_error" else "invalid_request_error",
            "param": None,
            "code": code,
        }
    }


def _finish(
    server: Emulator, store: Store, batch: Batch, status: str, code: str, message: str
) -> None:
    obj = batch.obj
    outputs: list[bytes] = []
    errors: list[bytes] = []
    for d in batch.done:
        raw = json.dumps(d, separators=(",", ":")).encode() + b"\n"
        (outputs if d["response"]["status_code"] == 200 else errors).append(raw)
    for line in batch.lines[len(batch.done) :]:
        error = {
            "id": server.next_id("batch_req_"),
            "custom_id": line["custom_id"],
            "response": None,
            "error": {"code": code, "message": message},
        }
        errors.append(json.dumps(error, separators=(",", ":")).encode() + b"\n")
    batch.done.close()
    rng = random.Random(obj["id"])
    for name, lines in (("output_file_id", outputs), ("error_file_id", errors)):
        if lines:
            rng.shuffle(lines)
            file = store.new_file(
                server.next_id("file-"), f"{obj['id']}_{name[:-8]}.jsonl", "batch_output"
            )
            with file.path.open("wb") as fh:
                fh.writelines(lines)
            store.files[file.id] = file
            obj[name] = file.id
    counts = obj["request_counts"]
    counts["failed"] = len(errors)
    counts["completed"] = len(outputs)
    obj["status"] = status
    obj[f"{status}_at"] = unix_now()


# ---------------------------------------------------------------------------
# HTTP


async def create_batch(
    server: Emulator, request: Request, responder: Responder, match: re.Match[str]
) -> None:
    if not await batch_api_available(server, responder):
        return
    try:
        body = request.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        await responder.error(400, "The request body must be a JSON object.")
        return
    store = batch_store(server)
    file_id = body.get("input_file_id")
    endpoint = body.get("endpoint")
    if not isinstance(file_id, str) or file_id not in store.files:
        await responder.error(
            400, f"Invalid input_file_id {file_id!r}: no such file", param="input_file_id"
        )
        return
    if store.files[file_id].purpose != "batch":
        await responder.error(
            400, "The input file must be uploaded with purpose 'batch'.", param="input_file_id"
        )
        return
    if endpoint not in ENDPOINTS:
        await responder.error(400, f"Invalid endpoint {endpoint!r}", param="endpoint")
        return
    if body.get("completion_window") != "24h":
        await responder.error(400, "completion_window must be '24h'", param="completion_window")
        return
    metadata = body.get("metadata")
    if metadata is not None and not isinstance(metadata, dict):
        await responder.error(400, "metadata must be an object", param="metadata")
        return
    now = unix_now()
    obj: dict[str, Any] = {
        "id": server.next_id("batch_"),
        "object": "batch",
        "endpoint": endpoint,
        "errors": None,
        "input_file_id": file_id,
        "completion_window": "24h",
        "status": "validating",
        "output_file_id": None,
        "error_file_id": None,
        "created_at": now,
        "in_progress_at": None,
        "expires_at": now + 86_400,
        "finalizing_at": None,
        "completed_at": None,
        "failed_at": None,
        "expired_at": None,
        "cancelling_at": None,
        "cancelled_at": None,
        "request_counts": {"total": 0, "completed": 0, "failed": 0},
        "metadata": metadata,
    }
    with store.lock:
        store.batches[obj["id"]] = Batch(obj, BatchAnswers(store.folder / f"{obj['id']}.done"))
        store.order.append(obj["id"])
    await responder.send_json(200, _public(obj))


async def _batch(server: Emulator, responder: Responder, batch_id: str) -> Batch | None:
    if not await batch_api_available(server, responder):
        return None
    batch = batch_store(server).batches.get(batch_id)
    if batch is None:
        await responder.error(404, f"No batch found with id '{batch_id}'.", param="batch_id")
    return batch


async def retrieve_batch(
    server: Emulator, request: Request, responder: Responder, match: re.Match[str]
) -> None:
    batch = await _batch(server, responder, match.group(1))
    if batch is None:
        return
    store = batch_store(server)
    with store.lock:
        _step(server, store, batch)
        obj = _public(batch.obj)
    await responder.send_json(200, obj)


async def cancel_batch(
    server: Emulator, request: Request, responder: Responder, match: re.Match[str]
) -> None:
    batch = await _batch(server, responder, match.group(1))
    if batch is None:
        return
    store = batch_store(server)
    with store.lock:
        if batch.status in ("completed", "failed", "expired", "cancelled"):
            await responder.error(409, f"Cannot cancel a batch with status '{batch.status}'.")
            return
        if batch.status != "cancelling":
            batch.obj.update(status="cancelling", cancelling_at=unix_now())
        obj = _public(batch.obj)
    await responder.send_json(200, obj)


async def list_batches(
    server: Emulator, request: Request, responder: Responder, match: re.Match[str]
) -> None:
    if not await batch_api_available(server, responder):
        return
    store = batch_store(server)
    try:
        limit = int(request.query.get("limit", "20"))
    except ValueError:
        limit = 0
    if not 1 <= limit <= 100:
        await responder.error(400, "limit must be an integer between 1 and 100", param="limit")
        return
    with store.lock:
        ids = list(reversed(store.order))  # newest first, as the API lists them
        after = request.query.get("after")
        if after:
            if after not in store.batches:
                await responder.error(400, f"No batch found with id '{after}'.", param="after")
                return
            ids = ids[ids.index(after) + 1 :]
        page = [_public(store.batches[i].obj) for i in ids[:limit]]
    await responder.send_json(
        200,
        {
            "object": "list",
            "data": page,
            "first_id": page[0]["id"] if page else None,
            "last_id": page[-1]["id"] if page else None,
            "has_more": len(ids) > limit,
        },
    )


ROUTES = (
    route("POST", "/v1/batches", create_batch),
    route("GET", "/v1/batches", list_batches),
    route("GET", r"/v1/batches/([^/]+)", retrieve_batch),
    route("POST", r"/v1/batches/([^/]+)/cancel", cancel_batch),
)
