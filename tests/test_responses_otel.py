"""OpenTelemetry for the Responses API: the same GenAI client span and metrics as chat."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
import respx

from holysheep_async import AsyncClient, BadRequestError

from .conftest import FakeSleep, Telemetry
from .responses_samples import completed, message, usage

pytestmark = pytest.mark.anyio

BASE = "https://relay.test/v1"


@pytest.fixture
def relay() -> Iterator[respx.MockRouter]:
    with respx.mock(base_url=BASE, using="httpx", assert_all_called=False) as router:
        yield router


@pytest.fixture
async def client(relay: respx.MockRouter, fake_sleep: FakeSleep) -> AsyncIterator[AsyncClient]:
    async with AsyncClient(api_key="sk-test-key", base_url=BASE) as c:
        c._requester.sleep = fake_sleep
        yield c


def only(spans: list[Any], name: str) -> Any:
    found = [s for s in spans if s.name == name]
    assert len(found) == 1, [s.name for s in spans]
    return found[0]


async def test_create_is_a_chat_span_with_usage_and_metrics(
    client: AsyncClient, relay: respx.MockRouter, telemetry: Telemetry
) -> None:
    relay.post("/responses").mock(
        return_value=httpx.Response(
            200, json=completed([message("Hi")], usage=usage(30, 12, reasoning=4))
        )
    )
    tracer = telemetry.tracer_provider.get_tracer("app")
    with tracer.start_as_current_span("handler") as parent:
        await client.responses.create(
            model="gpt-4o", input="a secret question", temperature=0.5, max_output_tokens=40
        )
    span = only(telemetry.spans(), "chat gpt-4o")
    assert span.kind.name == "CLIENT"
    assert span.parent is not None and span.parent.span_id == parent.get_span_context().span_id
    attrs = dict(span.attributes)
    assert attrs["gen_ai.operation.name"] == "chat"
    assert attrs["holysheep.api"] == "responses"
    assert attrs["gen_ai.request.temperature"] == 0.5
    assert attrs["gen_ai.request.max_tokens"] == 40
    assert attrs["gen_ai.response.id"] == "resp_1"
    assert attrs["gen_ai.response.model"] == "gpt-4o-2024-08-06"
    assert attrs["gen_ai.response.finish_reasons"] == ("stop",)
    assert (attrs["gen_ai.usage.input_tokens"], attrs["gen_ai.usage.output_tokens"]) == (30, 12)
    assert attrs["gen_ai.usage.reasoning.output_tokens"] == 4
    assert "a secret question" not in span.to_json()  # no content without the opt-in
    tokens = {
        p.attributes["gen_ai.token.type"]: p.sum
        for p in telemetry.points("gen_ai.client.token.usage")
    }
    assert tokens == {"input": 30, "output": 12}
    assert len(telemetry.points("gen_ai.client.operation.duration")) == 1


async def test_a_failed_create_is_an_error_span(
    client: AsyncClient, relay: respx.MockRouter, telemetry: Telemetry
) -> None:
    relay.post("/responses").mock(
        return_value=httpx.Response(400, json={"error": {"message": "no", "code": "bad"}})
    )
    with pytest.raises(BadRequestError):
        await client.responses.create(model="gpt-4o", input="x")
    span = only(telemetry.spans(), "chat gpt-4o")
    assert span.status.status_code.name == "ERROR"
    assert span.attributes["error.type"] == "BadRequestError"


async def test_content_only_with_the_opt_in(
    client: AsyncClient,
    relay: respx.MockRouter,
    telemetry: Telemetry,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "true")
    relay.post("/responses").mock(return_value=httpx.Response(200, json=completed([message("42")])))
    await client.responses.create(model="gpt-4o", input="the question", instructions="be brief")
    text = only(telemetry.spans(), "chat gpt-4o").to_json()
    assert "the question" in text and "be brief" in text and "42" in text
