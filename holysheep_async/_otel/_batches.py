"""Batch spans: ``batches.run`` with progress events; upload, create, wait, download."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Coroutine
from typing import Any, ParamSpec, TypeVar

from ._providers import Live, current, error_type, is_failure, mark_coroutine, server_attributes

__all__ = ["batch_op"]

P = ParamSpec("P")
R = TypeVar("R")


def batch_op(
    name: str,
    *,
    base_url: Callable[[Any], str],
    first: str | None = None,
    progress: bool = False,
    kind: str = "CLIENT",
) -> Callable[[Callable[P, Coroutine[Any, Any, R]]], Callable[P, Coroutine[Any, Any, R]]]:
    """Decorates a ``Batches`` method: a span ``batches.<name>`` around it.

    ``base_url``: the method's first argument -> the base URL its requests go to
    (given by the caller, which knows its class; this module does not).

    ``first``: the attribute the first argument goes into (a batch or a batch id:
    ``"holysheep.batch.id"``; a file id: ``"holysheep.batch.input_file_id"``).
    ``progress``: the method's ``on_progress`` callback also adds a span event.
    Only ``async def`` methods are wrapped; anything else (an async generator) is
    returned as it is, untraced, rather than broken.
    """

    def decorate(fn: Callable[P, Coroutine[Any, Any, R]]) -> Callable[P, Coroutine[Any, Any, R]]:
        if not inspect.iscoroutinefunction(fn):
            return fn

        @functools.wraps(fn)
        def call(*args: P.args, **kwargs: P.kwargs) -> Coroutine[Any, Any, R]:
            live = current()
            if live is None or live.tracer is None:
                return fn(*args, **kwargs)
            where = base_url(args[0])
            return _traced_batch(live, name, kind, first, progress, where, fn, args, kwargs)

        mark_coroutine(call)
        return call

    return decorate


async def _traced_batch(
    live: Live,
    name: str,
    kind: str,
    first: str | None,
    progress: bool,
    base_url: str,
    fn: Callable[..., Coroutine[Any, Any, Any]],
    args: Any,
    kwargs: Any,
) -> Any:
    otel = live.otel_trace
    provider, server = server_attributes(base_url)
    attrs: dict[str, Any] = {"gen_ai.provider.name": provider, **server}
    if first is not None and len(args) > 1:
        value = args[1]
        value = getattr(value, "id", value)  # a Batch
        if isinstance(value, str):
            attrs[first] = value
    with live.tracer.start_as_current_span(
        f"batches.{name}",
        kind=getattr(otel.SpanKind, kind),
        attributes=attrs,
        record_exception=False,
        set_status_on_exception=False,
    ) as span:
        if progress:
            kwargs = {**kwargs, "on_progress": _progress_events(span, kwargs.get("on_progress"))}
        try:
            result = await fn(*args, **kwargs)
        except BaseException as exc:
            if is_failure(exc):
                error = error_type(exc)
                span.set_attribute("error.type", error)
                span.set_status(otel.StatusCode.ERROR, error)
            raise
        span.set_attributes(_batch_attributes(result))
        return result


def _batch_attributes(value: Any) -> dict[str, Any]:
    """What a batch method took or gave, as span attributes (ids, status, counts; no content)."""
    attrs: dict[str, Any] = {}
    kind = getattr(value, "object", None)
    if kind == "batch":
        attrs["holysheep.batch.id"] = value.id
        attrs["holysheep.batch.status"] = value.status
        counts = value.request_counts
        if counts is not None:
            attrs["holysheep.batch.request_counts.total"] = counts.total
            attrs["holysheep.batch.request_counts.completed"] = counts.completed
            attrs["holysheep.batch.request_counts.failed"] = counts.failed
    elif kind == "file":
        attrs["holysheep.file.id"] = value.id
        if value.bytes is not None:
            attrs["holysheep.file.bytes"] = value.bytes
    elif hasattr(value, "succeeded") and hasattr(value, "missing"):  # a BatchReport
        attrs["holysheep.batch.mode"] = value.mode
        attrs["holysheep.batch.succeeded"] = len(value.succeeded)
        attrs["holysheep.batch.failed"] = len(value.failed)
        attrs["holysheep.batch.missing"] = len(value.missing)
        attrs["holysheep.batch.total_tokens"] = value.total_tokens
        if value.batch_ids:
            attrs["holysheep.batch.ids"] = list(value.batch_ids)
        if value.cost_usd is not None:
            attrs["holysheep.batch.cost_usd"] = value.cost_usd
    return attrs


def _progress_events(span: Any, callback: Callable[[Any], Any] | None) -> Callable[[Any], Any]:
    def on_progress(value: Any) -> Any:
        if getattr(value, "object", None) == "batch":  # wait(): a poll
            span.add_event("holysheep.batch.poll", _batch_attributes(value))
        else:  # run(): a RunProgress
            attrs: dict[str, Any] = {
                "holysheep.batch.phase": value.phase,
                "holysheep.batch.done": value.done,
                "holysheep.batch.total": value.total,
            }
            if value.batch is not None:
                attrs["holysheep.batch.id"] = value.batch.id
            span.add_event("holysheep.batch.progress", attrs)
        return callback(value) if callback is not None else None

    return on_progress
