"""OpenTelemetry: GenAI client spans and metrics, checked with the SDK's in-memory exporters."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from typing import Any

import anyio
import pytest

from holysheep_async import (
    APIConnectionError,
    AsyncClient,
    BadRequestError,
    InternalServerError,
    Limiter,
    _otel,
)
from holysheep_async.testing import Fault, MockServer

from .conftest import FakeSleep, Telemetry

pytestmark = pytest.mark.anyio

MSGS = [{"role": "user", "content": "a secret question"}]
MODEL = "gpt-4o-mini"


def only(spans: list[Any], name: str) -> Any:
    found = [s for s in spans if s.name == name]
    assert len(found) == 1, [s.name for s in spans]
    return found[0]


def events(span: Any, name: str) -> list[dict[str, Any]]:
    return [dict(e.attributes) for e in span.events if e.name == name]


def flat(span: Any) -> str:
    """Everything a span holds, as text."""
    return span.to_json()  # type: ignore[no-any-return]


async def test_create_is_a_client_span_under_the_callers_span(
    client: AsyncClient, server: MockServer, telemetry: Telemetry
) -> None:
    tracer = telemetry.tracer_provider.get_tracer("app")
    with tracer.start_as_current_span("handler") as parent:
        completion = await client.chat.create(
            model=MODEL,
            messages=MSGS,
            temperature=0.25,
            top_p=0.5,
            max_tokens=12,
            seed=7,
            stop=["\n\n"],
            presence_penalty=0.1,
            frequency_penalty=0.2,
        )
    span = only(telemetry.spans(), f"chat {MODEL}")
    assert span.kind.name == "CLIENT"
    assert span.parent is not None and span.parent.span_id == parent.get_span_context().span_id
    assert span.context.trace_id == parent.get_span_context().trace_id
    assert completion.usage is not None
    port = int(server.base_url.split(":")[2].split("/")[0])
    assert dict(span.attributes) == {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "openai",
        "server.address": "127.0.0.1",
        "server.port": port,
        "gen_ai.request.model": MODEL,
        "gen_ai.request.temperature": 0.25,
        "gen_ai.request.top_p": 0.5,
        "gen_ai.request.max_tokens": 12,
        "gen_ai.request.seed": 7,
        "gen_ai.request.stop_sequences": ("\n\n",),
        "gen_ai.request.presence_penalty": 0.1,
        "gen_ai.request.frequency_penalty": 0.2,
        "gen_ai.response.id": completion.id,
        "gen_ai.response.model": completion.model,
        "gen_ai.response.finish_reasons": (completion.choices[0].finish_reason,),
        "gen_ai.usage.input_tokens": completion.usage.prompt_tokens,
        "gen_ai.usage.output_tokens": completion.usage.completion_tokens,
    }
    assert span.status.status_code.name == "UNSET"
    # No message content without the opt-in.
    assert "secret question" not in flat(span) and completion.text not in flat(span)

    (duration,) = telemetry.points("gen_ai.client.operation.duration")
    metric_attrs = {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "openai",
        "gen_ai.request.model": MODEL,
        "gen_ai.response.model": completion.model,
        "server.address": "127.0.0.1",
        "server.port": port,
    }
    assert dict(duration.attributes) == metric_attrs
    assert duration.count == 1 and duration.sum > 0
    assert list(duration.explicit_bounds) == list(_otel.DURATION_BUCKETS)
    points = telemetry.points("gen_ai.client.token.usage")
    tokens = {p.attributes["gen_ai.token.type"]: p for p in points}
    assert tokens["input"].sum == completion.usage.prompt_tokens
    assert tokens["output"].sum == completion.usage.completion_tokens
    assert dict(tokens["output"].attributes) == {**metric_attrs, "gen_ai.token.type": "output"}
    assert list(tokens["input"].explicit_bounds) == list(_otel.TOKEN_BUCKETS)
    # Time to first chunk is for streams only.
    assert telemetry.points("gen_ai.client.operation.time_to_first_chunk") == []


async def test_a_stream_span_lasts_until_the_end_and_records_the_first_token(
    client: AsyncClient, telemetry: Telemetry
) -> None:
    tracer = telemetry.tracer_provider.get_tracer("app")
    with tracer.start_as_current_span("handler") as parent:
        async with client.chat.stream(model=MODEL, messages=MSGS, max_tokens=8) as stream:
            async for _ in stream:
                # Open while the answer comes.
                assert not [s for s in telemetry.spans() if s.name.startswith("chat")]
    span = only(telemetry.spans(), f"chat {MODEL}")
    assert span.parent is not None and span.parent.span_id == parent.get_span_context().span_id
    attrs = dict(span.attributes)
    assert stream.usage is not None and stream.metrics.ttft is not None
    assert attrs["gen_ai.request.stream"] is True
    assert attrs["gen_ai.request.max_tokens"] == 8
    assert attrs["gen_ai.response.id"] == stream.id
    assert attrs["gen_ai.response.model"] == stream.model
    assert attrs["gen_ai.response.finish_reasons"] == (stream.finish_reason,)
    assert attrs["gen_ai.usage.input_tokens"] == stream.usage.prompt_tokens
    assert attrs["gen_ai.usage.output_tokens"] == stream.usage.completion_tokens
    # The first chunk (the role chunk here) comes no later than the first text.
    first_chunk = attrs["gen_ai.response.time_to_first_chunk"]
    assert 0 < first_chunk <= stream.metrics.ttft
    assert attrs["holysheep.time_to_first_token"] == stream.metrics.ttft
    assert attrs["holysheep.stream.attempts"] == 1
    assert events(span, "holysheep.first_token") == [
        {"holysheep.time_to_first_token": stream.metrics.ttft}
    ]
    assert stream.text not in flat(span)
    (ttfc,) = telemetry.points("gen_ai.client.operation.time_to_first_chunk")
    assert ttfc.count == 1 and ttfc.sum == first_chunk
    assert list(ttfc.explicit_bounds) == list(_otel.DURATION_BUCKETS)
    (duration,) = telemetry.points("gen_ai.client.operation.duration")
    assert duration.count == 1


async def test_a_stream_left_early_ends_its_span_without_an_error(
    client: AsyncClient, telemetry: Telemetry
) -> None:
    async with client.chat.stream(model=MODEL, messages=MSGS) as stream:
        async for _ in stream:
            break
    span = only(telemetry.spans(), f"chat {MODEL}")
    assert span.status.status_code.name == "UNSET"
    assert "error.type" not in span.attributes
    assert events(span, "holysheep.first_token")


async def test_a_failure_is_an_error_span_with_its_type_and_no_message(
    client: AsyncClient, server: MockServer, telemetry: Telemetry
) -> None:
    server.inject(
        Fault("status", status=400, body={"error": {"message": "your secret question is bad"}})
    )
    with pytest.raises(BadRequestError):
        await client.chat.create(model=MODEL, messages=MSGS)
    span = only(telemetry.spans(), f"chat {MODEL}")
    assert span.status.status_code.name == "ERROR"
    assert span.status.description == "BadRequestError"
    assert span.attributes["error.type"] == "BadRequestError"
    assert "secret question" not in flat(span)  # the server's message is not recorded
    (duration,) = telemetry.points("gen_ai.client.operation.duration")
    assert duration.attributes["error.type"] == "BadRequestError"
    assert telemetry.points("gen_ai.client.token.usage") == []


async def test_a_failed_stream_is_an_error_span(
    client: AsyncClient, server: MockServer, telemetry: Telemetry
) -> None:
    server.inject(Fault("malformed", after=1))
    with pytest.raises(Exception) as info:
        async with client.chat.stream(model=MODEL, messages=MSGS) as stream:
            async for _ in stream:
                pass
    span = only(telemetry.spans(), f"chat {MODEL}")
    assert span.status.status_code.name == "ERROR"
    assert span.attributes["error.type"] == type(info.value).__qualname__ == "StreamError"
    (duration,) = telemetry.points("gen_ai.client.operation.duration")
    assert duration.attributes["error.type"] == "StreamError"


async def test_a_stream_dropped_after_some_tokens_still_records_its_time_to_first_chunk(
    client: AsyncClient, server: MockServer, telemetry: Telemetry
) -> None:
    server.inject(Fault("drop", after=3))
    received = []
    with pytest.raises(APIConnectionError):
        async with client.chat.stream(model=MODEL, messages=MSGS) as stream:
            async for text in stream:
                received.append(text)
    assert len(received) == 3
    span = only(telemetry.spans(), f"chat {MODEL}")
    assert span.attributes["error.type"] == "APIConnectionError"
    first_chunk = span.attributes["gen_ai.response.time_to_first_chunk"]
    assert 0 < first_chunk <= stream.metrics.ttft  # type: ignore[operator]
    (ttfc,) = telemetry.points("gen_ai.client.operation.time_to_first_chunk")
    assert ttfc.count == 1 and ttfc.sum == first_chunk
    assert ttfc.attributes["error.type"] == "APIConnectionError"


async def test_retries_and_the_429_cooldown_are_span_events(
    client: AsyncClient, server: MockServer, telemetry: Telemetry, fake_sleep: FakeSleep
) -> None:
    server.inject(Fault("status", status=503))
    server.inject(Fault("status", status=429, headers={"retry-after": "0.5"}))
    await client.chat.create(model=MODEL, messages=MSGS)
    span = only(telemetry.spans(), f"chat {MODEL}")
    assert span.status.status_code.name == "UNSET"
    retries = events(span, "holysheep.retry")
    assert [(e["holysheep.retry.attempt"], e["error.type"]) for e in retries] == [
        (2, InternalServerError.__qualname__),
        (3, "RateLimitError"),
    ]
    assert [e["holysheep.retry.delay"] for e in retries] == fake_sleep.calls
    assert events(span, "holysheep.cooldown") == [{"holysheep.cooldown.delay": 0.5}]


async def test_a_stream_retried_before_its_first_token_has_the_events_on_its_own_span(
    client: AsyncClient, server: MockServer, telemetry: Telemetry, fake_sleep: FakeSleep
) -> None:
    server.inject(Fault("status", status=503))
    server.inject(Fault("drop", after=0))
    tracer = telemetry.tracer_provider.get_tracer("app")
    with tracer.start_as_current_span("handler"):
        async with client.chat.stream(model=MODEL, messages=MSGS) as stream:
            text = "".join([t async for t in stream])
    assert text
    span = only(telemetry.spans(), f"chat {MODEL}")
    retries = events(span, "holysheep.retry")
    assert [e["error.type"] for e in retries] == ["InternalServerError", "APIConnectionError"]
    assert [e["holysheep.retry.delay"] for e in retries] == fake_sleep.calls
    assert span.attributes["holysheep.stream.attempts"] == 3
    assert events(only(telemetry.spans(), "handler"), "holysheep.retry") == []


async def test_time_waited_behind_the_clients_limits_is_an_event(
    client: AsyncClient, telemetry: Telemetry
) -> None:
    now = [0.0]

    async def sleep(seconds: float) -> None:
        now[0] += seconds
        await anyio.lowlevel.checkpoint()

    client._requester.limiter = Limiter(rpm=60, burst=1, clock=lambda: now[0], sleep=sleep)
    await client.chat.create(model=MODEL, messages=MSGS)
    async with client.chat.stream(model=MODEL, messages=MSGS) as stream:
        async for _ in stream:
            pass
    first, second = sorted(telemetry.spans(), key=lambda s: s.start_time)
    assert events(first, "holysheep.limiter.wait") == []
    assert events(second, "holysheep.limiter.wait") == [{"holysheep.limiter.waited": 1.0}]
    assert second.attributes["holysheep.limiter.waited"] == 1.0


async def test_message_content_only_with_the_opt_in(
    client: AsyncClient, telemetry: Telemetry, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "true")
    completion = await client.chat.create(model=MODEL, messages=MSGS)
    async with client.chat.stream(model=MODEL, messages=MSGS) as stream:
        async for _ in stream:
            pass
    created, streamed = sorted(telemetry.spans(), key=lambda s: s.start_time)
    for span in (created, streamed):
        assert json.loads(span.attributes["gen_ai.input.messages"]) == [
            {"role": "user", "parts": [{"type": "text", "content": "a secret question"}]}
        ]
    assert json.loads(created.attributes["gen_ai.output.messages"]) == [
        {
            "role": "assistant",
            "parts": [{"type": "text", "content": completion.text}],
            "finish_reason": completion.choices[0].finish_reason,
        }
    ]
    assert json.loads(streamed.attributes["gen_ai.output.messages"])[0]["parts"] == [
        {"type": "text", "content": stream.text}
    ]


async def test_a_batch_run_has_a_span_with_progress_and_spans_for_each_step(
    client: AsyncClient, server: MockServer, telemetry: Telemetry, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(server.options, "batch_speed", 3)
    tasks = [
        {"custom_id": f"t{i}", "model": MODEL, "messages": MSGS, "max_tokens": 4} for i in range(4)
    ]
    seen: list[Any] = []
    report = await client.batches.run(tasks, on_progress=seen.append)
    assert len(report.succeeded) == 4 and seen  # the caller's callback still called
    spans = telemetry.spans()
    run = only(spans, "batches.run")
    assert run.kind.name == "INTERNAL"
    assert run.attributes["holysheep.batch.succeeded"] == 4
    assert run.attributes["holysheep.batch.missing"] == 0
    assert run.attributes["holysheep.batch.ids"] == tuple(report.batch_ids)
    progress = events(run, "holysheep.batch.progress")
    assert [p["holysheep.batch.phase"] for p in progress] == [p.phase for p in seen]
    assert progress[-1]["holysheep.batch.done"] == 4
    upload, create, download = (
        only(spans, f"batches.{n}") for n in ("upload", "create", "download")
    )
    # run polls its batches itself (one loop for all): a retrieve span per poll
    polls = [s for s in spans if s.name == "batches.retrieve"]
    assert len(polls) >= 2
    for step in (upload, create, *polls, download):
        assert step.kind.name == "CLIENT"
        assert step.parent is not None and step.parent.span_id == run.context.span_id
        assert step.attributes["gen_ai.provider.name"] == "openai"
    (batch_id,) = report.batch_ids
    file_id = upload.attributes["holysheep.file.id"]
    assert create.attributes["holysheep.batch.input_file_id"] == file_id
    assert create.attributes["holysheep.batch.id"] == batch_id
    assert all(p.attributes["holysheep.batch.id"] == batch_id for p in polls)
    last = max(polls, key=lambda p: p.end_time or 0)
    assert last.attributes["holysheep.batch.status"] == "completed"
    assert last.attributes["holysheep.batch.request_counts.completed"] == 4
    assert download.attributes["holysheep.batch.id"] == batch_id


async def test_a_batch_step_that_fails_is_an_error_span(
    client: AsyncClient, telemetry: Telemetry
) -> None:
    with pytest.raises(Exception) as info:
        await client.batches.wait("batch_nope")
    span = only(telemetry.spans(), "batches.wait")
    assert span.status.status_code.name == "ERROR"
    assert span.attributes["error.type"] == type(info.value).__qualname__


async def test_direct_calls_of_a_run_without_batch_api_are_chat_spans_under_it(
    client: AsyncClient, server: MockServer, telemetry: Telemetry
) -> None:
    server.inject(Fault("status", status=404, path="/v1/files"))
    tasks = [{"custom_id": f"d{i}", "model": MODEL, "messages": MSGS} for i in range(2)]
    report = await client.batches.run(tasks)
    assert report.mode == "direct"
    run = only(telemetry.spans(), "batches.run")
    chats = [s for s in telemetry.spans() if s.name == f"chat {MODEL}"]
    assert len(chats) == 2
    assert all(s.parent is not None and s.parent.span_id == run.context.span_id for s in chats)


def test_provider_and_server_from_the_base_url() -> None:
    assert _otel.server_attributes("https://api.openai.com/v1") == (
        "openai",
        {"server.address": "api.openai.com", "server.port": 443},
    )
    assert _otel.server_attributes("https://user:pw@x.openai.azure.com/openai")[0] == (
        "azure.ai.openai"
    )
    provider, server = _otel.server_attributes("https://api.deepseek.com/v1")
    assert provider == "deepseek" and server["server.address"] == "api.deepseek.com"
    assert _otel.server_attributes("http://localhost:8000/v1") == (
        "openai",
        {"server.address": "localhost", "server.port": 8000},
    )


def test_an_api_without_the_provider_globals_falls_back_to_the_public_getters(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from opentelemetry import trace

    from holysheep_async._otel import _providers

    # An API version that keeps its providers elsewhere.
    monkeypatch.setattr(_providers, "_TRACER_GLOBAL", "_elsewhere")
    monkeypatch.setattr(_providers, "_METER_GLOBAL", "_elsewhere")
    try:
        assert _otel.current() is None  # nothing set: the getters return the proxies
        t = Telemetry()
        monkeypatch.setattr(trace, "get_tracer_provider", lambda: t.tracer_provider)
        first = _otel.current()
        assert first is not None and first.tracer is not None and first.duration is None
        assert _otel.current() is first  # made once, not per call
    finally:
        _otel.use_providers()


# -- without OpenTelemetry ------------------------------------------------------------------


def _run(code: str) -> str:
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


CALLS = """
    import anyio
    from holysheep_async import AsyncClient
    from holysheep_async.testing import MockServer

    MSGS = [{"role": "user", "content": "hi"}]

    async def main():
        async with MockServer(api_keys=["k"]) as server:
            async with AsyncClient(api_key="k", base_url=server.base_url) as c:
                done = await c.chat.create(model="m", messages=MSGS)
                async with c.chat.stream(model="m", messages=MSGS) as s:
                    text = "".join([t async for t in s])
                tasks = [{"custom_id": "a", "model": "m", "messages": MSGS}]
                report = await c.batches.run(tasks, poll_interval=0.01)
        return done.text, text, report.succeeded
"""


def test_without_opentelemetry_installed_everything_works() -> None:
    block = """
        import sys

        class Block:
            def find_spec(self, name, path=None, target=None):
                if name == "opentelemetry" or name.startswith("opentelemetry."):
                    raise ImportError(f"blocked: {name}")
                return None

        sys.meta_path.insert(0, Block())
    """
    out = _run(
        textwrap.dedent(block)
        + textwrap.dedent(CALLS)
        + """
print(anyio.run(main)[2])
print(sorted(m for m in sys.modules if m.startswith("opentelemetry")))
"""
    )
    assert out.split("\n")[:2] == ["['a']", "[]"]


def test_with_the_api_but_no_provider_nothing_is_recorded() -> None:
    out = _run(
        textwrap.dedent(CALLS)
        + """
from opentelemetry import metrics, trace
from holysheep_async import _otel
print(anyio.run(main)[2])
print(_otel.current(), type(trace.get_tracer_provider()).__name__)
"""
    )
    assert out.split("\n")[:2] == ["['a']", "None ProxyTracerProvider"]


def test_a_global_provider_set_by_the_application_is_used() -> None:
    out = _run(
        textwrap.dedent(CALLS)
        + """
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

exporter = InMemorySpanExporter()
provider = TracerProvider()
provider.add_span_processor(SimpleSpanProcessor(exporter))
anyio.run(main)  # before the provider is set: nothing
trace.set_tracer_provider(provider)
anyio.run(main)
print(sorted({s.name for s in exporter.get_finished_spans()}))
"""
    )
    names = json.loads(out.strip().split("\n")[-1].replace("'", '"'))
    assert names == [
        "batches.create",
        "batches.download",
        "batches.retrieve",
        "batches.run",
        "batches.upload",
        "chat m",
    ]


def test_the_console_example_prints_the_spans_and_metrics() -> None:
    done = subprocess.run(
        [sys.executable, "examples/otel_console.py", "--backend", "trio"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    for name in (
        '"name": "chat gpt-4o-mini"',
        '"name": "batches.run"',
        '"name": "handle request"',
        '"gen_ai.usage.output_tokens"',
        '"name": "gen_ai.client.operation.time_to_first_chunk"',
    ):
        assert name in done.stdout
