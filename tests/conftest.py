"""Every async test runs twice: on asyncio and on trio (anyio's pytest plugin)."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from hypothesis import settings

from holysheep_async import AsyncClient
from holysheep_async.testing import MockServer

from .redis_server import RedisServer

# Property tests: "suite" keeps all of them together to a few seconds of the suite;
# HYPOTHESIS_PROFILE=soak (``nox -s soak``) runs twenty times the examples.
# Tests that are costlier per example scale their count from the profile's
# (``settings().max_examples``), so both profiles apply to every property test.
# The suite's profile is derandomized (the same examples every run, so CI cannot turn
# red by luck, and no example database is written); soak draws fresh examples each run.
settings.register_profile(
    "suite", max_examples=100, deadline=None, print_blob=True, derandomize=True, database=None
)
settings.register_profile("soak", max_examples=2000, deadline=None, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "suite"))


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(autouse=True)
def _no_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests never see the developer's real key or base URL."""
    monkeypatch.delenv("HOLYSHEEP_API_KEY", raising=False)
    monkeypatch.delenv("HOLYSHEEP_BASE_URL", raising=False)


@pytest.fixture(scope="session")
def server() -> Iterator[MockServer]:
    """One emulator for the session (it runs in its own thread, so any backend can use it)."""
    srv = MockServer(api_keys=["test-key"])
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture(autouse=True)
def _clean_server(request: pytest.FixtureRequest) -> Iterator[None]:
    """A fault queued by one test never reaches the next."""
    yield
    if "server" in request.fixturenames:
        srv: MockServer = request.getfixturevalue("server")
        srv.clear_faults()


class FakeSleep:
    """Records the waits the client asked for instead of waiting."""

    def __init__(self) -> None:
        self.calls: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)


@pytest.fixture
def fake_sleep() -> FakeSleep:
    return FakeSleep()


@pytest.fixture
async def client(server: MockServer, fake_sleep: FakeSleep) -> AsyncIterator[AsyncClient]:
    async with AsyncClient(api_key="test-key", base_url=server.base_url) as c:
        c._requester.sleep = fake_sleep
        yield c


class Telemetry:
    """OpenTelemetry SDK providers with in-memory exporters, which the client records to."""

    def __init__(self) -> None:
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import InMemoryMetricReader
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

        self.exporter = InMemorySpanExporter()
        self.tracer_provider = TracerProvider()
        self.tracer_provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.reader = InMemoryMetricReader()
        self.meter_provider = MeterProvider(metric_readers=[self.reader])

    def spans(self) -> list[Any]:
        return list(self.exporter.get_finished_spans())

    def points(self, name: str) -> list[Any]:
        """The data points of the metric ``name`` (histograms: one per attribute set)."""
        data = self.reader.get_metrics_data()
        return [
            point
            for rm in (data.resource_metrics if data else ())
            for sm in rm.scope_metrics
            for metric in sm.metrics
            if metric.name == name
            for point in metric.data.data_points
        ]


@pytest.fixture
def telemetry() -> Iterator[Telemetry]:
    """Spans and metrics of the client go to in-memory exporters for this test."""
    from holysheep_async import _otel

    t = Telemetry()
    _otel.use_providers(t.tracer_provider, t.meter_provider)
    try:
        yield t
    finally:
        _otel.use_providers()
        t.tracer_provider.shutdown()
        t.meter_provider.shutdown()


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """A real redis-server for the session (missing: an error, see tests/redis_server.py)."""
    server = RedisServer()
    server.start()
    yield server
    server.stop()
