"""Print the client's OpenTelemetry spans and metrics to the console.

    pip install 'holysheep-async[otel]' opentelemetry-sdk
    python examples/otel_console.py                  # against the embedded emulator
    python examples/otel_console.py --backend trio
    OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=true python examples/otel_console.py

The application owns the providers (here: the SDK's, with console exporters);
the client only records to whatever is set. One ``chat.create``, one stream and
a small batch run inside a span of the application: every span printed has the
application's trace id, and the chat spans carry the GenAI attributes
(``gen_ai.request.model``, ``gen_ai.usage.input_tokens``...). See docs/observability.md.
"""

from __future__ import annotations

import argparse

import anyio
from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import ConsoleMetricExporter, PeriodicExportingMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import ConsoleSpanExporter, SimpleSpanProcessor

from holysheep_async import AsyncClient
from holysheep_async.testing import MockServer

MESSAGES = [{"role": "user", "content": "Say something about sheep."}]


def setup() -> tuple[TracerProvider, MeterProvider]:
    """What an application does once at start-up (or ``opentelemetry-instrument`` does for it)."""
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(ConsoleSpanExporter()))
    trace.set_tracer_provider(tracer_provider)
    reader = PeriodicExportingMetricReader(ConsoleMetricExporter(), export_interval_millis=60_000)
    meter_provider = MeterProvider(metric_readers=[reader])
    metrics.set_meter_provider(meter_provider)
    return tracer_provider, meter_provider


async def main(base_url: str | None, api_key: str | None, model: str) -> None:
    if base_url is None:
        async with MockServer(ttft=0.05, itl=0.005, batch_speed=100) as server:
            client = AsyncClient(api_key="test", base_url=server.base_url)
            async with client:
                await calls(client, model, batch=True)
    else:
        async with AsyncClient(api_key=api_key, base_url=base_url) as client:
            await calls(client, model, batch=False)


async def calls(client: AsyncClient, model: str, batch: bool) -> None:
    tracer = trace.get_tracer("example")
    with tracer.start_as_current_span("handle request"):
        completion = await client.chat.create(
            model=model, messages=MESSAGES, temperature=0.2, max_tokens=40
        )
        print("create:", completion.text[:60], "...")
        async with client.chat.stream(model=model, messages=MESSAGES) as stream:
            async for _ in stream:
                pass
        print("stream:", stream.text[:60], "... ttft", stream.metrics.ttft)
        if batch:
            tasks = [{"custom_id": f"q{i}", "model": model, "messages": MESSAGES} for i in range(3)]
            print("batch:", await client.batches.run(tasks, poll_interval=0.05))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backend", choices=["asyncio", "trio"], default="asyncio")
    parser.add_argument("--base-url", help="a real server (default: the embedded emulator)")
    parser.add_argument("--api-key", help="its key (default: HOLYSHEEP_API_KEY)")
    parser.add_argument("--model", default="gpt-4o-mini")
    args = parser.parse_args()
    tracer_provider, meter_provider = setup()
    try:
        anyio.run(main, args.base_url, args.api_key, args.model, backend=args.backend)
    finally:
        tracer_provider.shutdown()
        meter_provider.shutdown()  # exports the metrics once more: printed last
