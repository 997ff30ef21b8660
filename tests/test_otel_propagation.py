"""W3C ``traceparent`` / ``tracestate`` on outgoing requests when OpenTelemetry is on (issue 24).

The emulator records the headers each request arrived with; the spans come from the
OpenTelemetry SDK's in-memory exporter. The request's span is the parent the server
sees: the ``chat`` span of a ``create`` or a stream, the ``batches.*`` span of a step.
"""

from __future__ import annotations

from typing import Any

import pytest

from holysheep_async import AsyncClient
from holysheep_async.testing import MockServer

from .conftest import Telemetry

pytestmark = pytest.mark.anyio

MODEL = "gpt-4o-mini"
MSGS = [{"role": "user", "content": "Hi"}]


def traceparent_of(span: Any) -> str:
    ctx = span.get_span_context() if hasattr(span, "get_span_context") else span.context
    return f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-{int(ctx.trace_flags):02x}"


def only(spans: list[Any], name: str) -> Any:
    found = [s for s in spans if s.name == name]
    assert len(found) == 1, [s.name for s in spans]
    return found[0]


async def test_create_sends_the_context_of_its_chat_span(
    client: AsyncClient, server: MockServer, telemetry: Telemetry
) -> None:
    tracer = telemetry.tracer_provider.get_tracer("app")
    with tracer.start_as_current_span("handler") as handler:
        await client.chat.create(model=MODEL, messages=MSGS)
    span = only(telemetry.spans(), f"chat {MODEL}")
    received = server.requests[-1].headers
    assert received["traceparent"] == traceparent_of(span)
    assert span.context.trace_id == handler.get_span_context().trace_id
    assert int(received["traceparent"][-2:], 16) & 1  # sampled
    assert "tracestate" not in received  # nothing to carry


async def test_a_stream_sends_the_context_of_its_own_span(
    client: AsyncClient, server: MockServer, telemetry: Telemetry
) -> None:
    async with client.chat.stream(model=MODEL, messages=MSGS) as stream:
        async for _ in stream:
            pass
    span = only(telemetry.spans(), f"chat {MODEL}")
    assert server.requests[-1].headers["traceparent"] == traceparent_of(span)


async def test_tracestate_goes_along(
    client: AsyncClient, server: MockServer, telemetry: Telemetry
) -> None:
    from opentelemetry import context, trace
    from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags, TraceState

    # The caller's context came from upstream (a web request with its own tracestate).
    remote = SpanContext(
        trace_id=0x0AF7651916CD43DD8448EB211C80319C,
        span_id=0xB7AD6B7169203331,
        is_remote=True,
        trace_flags=TraceFlags(TraceFlags.SAMPLED),
        trace_state=TraceState([("congo", "t61rcWkgMzE"), ("rojo", "00f067aa0ba902b7")]),
    )
    token = context.attach(trace.set_span_in_context(NonRecordingSpan(remote)))
    try:
        await client.chat.create(model=MODEL, messages=MSGS)
    finally:
        context.detach(token)
    span = only(telemetry.spans(), f"chat {MODEL}")
    received = server.requests[-1].headers
    trace_id = "0af7651916cd43dd8448eb211c80319c"
    assert received["traceparent"] == f"00-{trace_id}-{span.context.span_id:016x}-01"
    assert span.parent.span_id == 0xB7AD6B7169203331
    assert received["tracestate"] == "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7"


async def test_batch_steps_send_the_context_of_their_spans(
    client: AsyncClient, server: MockServer, telemetry: Telemetry
) -> None:
    logged = len(server.requests)  # (the session's emulator: its log is shared)
    batch = await client.batches.submit([{"custom_id": "a", "model": MODEL, "messages": MSGS}])
    spans = telemetry.spans()
    upload = only(spans, "batches.upload")
    create = only(spans, "batches.create")
    by_path = {r.path: r.headers["traceparent"] for r in server.requests[logged:]}
    assert by_path["/v1/files"] == traceparent_of(upload)
    assert by_path["/v1/batches"] == traceparent_of(create)
    assert batch.id


async def test_a_traceparent_of_the_callers_own_is_kept(
    client: AsyncClient, server: MockServer, telemetry: Telemetry
) -> None:
    mine = "00-11111111111111111111111111111111-2222222222222222-01"
    await client.chat.create(model=MODEL, messages=MSGS, extra_headers={"TraceParent": mine})
    assert server.requests[-1].headers["traceparent"] == mine


async def test_without_opentelemetry_set_up_no_header_goes_out(
    client: AsyncClient, server: MockServer
) -> None:
    await client.chat.create(model=MODEL, messages=MSGS)
    async with client.chat.stream(model=MODEL, messages=MSGS) as stream:
        async for _ in stream:
            pass
    for request in server.requests[-2:]:
        assert "traceparent" not in request.headers
        assert "tracestate" not in request.headers
