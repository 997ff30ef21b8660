"""Tool calls and reasoning in chat streams, and the tool loop, against the emulator.

Every test runs on asyncio and trio. The emulator answers with tool calls when
tools are offered, reasons for models whose name says so, and streams tool
calls with the three server quirks as faults (``repeat_index``, ``no_index``,
``index_zero``) and one-character argument fragments (``char_args``).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from typing import Any, Literal

import anyio
import anyio.from_thread
import anyio.lowlevel
import pytest

from holysheep_async import (
    APIConnectionError,
    AsyncClient,
    ChatCompletion,
    Client,
    ReasoningDelta,
    StreamDone,
    TextDelta,
    ToolCallArgumentsDelta,
    ToolCallDone,
    ToolLoopError,
    ToolResult,
)
from holysheep_async.testing import Fault, MockServer

from .conftest import FakeSleep, Telemetry

pytestmark = pytest.mark.anyio

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
                "days": {"type": "integer"},
            },
            "required": ["city", "unit", "days"],
        },
    },
}
TIME_TOOL = {
    "type": "function",
    "function": {
        "name": "get_time",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}
ASK = [{"role": "user", "content": "What is the weather in Paris?"}]
PARIS = {"city": "Paris", "unit": "celsius", "days": 1}


def same_answer(a: ChatCompletion, b: ChatCompletion) -> None:
    """What chat.create and a stream's final_completion must agree on (ids and times differ)."""
    assert a.model_dump(exclude={"id", "created"}) == b.model_dump(exclude={"id", "created"})
    assert a.choices == b.choices and a.usage == b.usage


@pytest.fixture(scope="module")
def vllm_server() -> Iterator[MockServer]:
    """An emulator that names reasoning ``reasoning`` (vLLM) instead of ``reasoning_content``."""
    srv = MockServer(api_keys=["test-key"], reasoning_field="reasoning")
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture
async def vllm_client(vllm_server: MockServer) -> AsyncIterator[AsyncClient]:
    async with AsyncClient(api_key="test-key", base_url=vllm_server.base_url) as c:
        yield c


# -- tool calls in streams --------------------------------------------------------------


@pytest.mark.parametrize("quirk", [None, "repeat_index", "no_index", "index_zero", "char_args"])
async def test_tool_calls_come_out_whole_whatever_the_server_does(
    client: AsyncClient, server: MockServer, quirk: str | None
) -> None:
    tools = [WEATHER_TOOL, TIME_TOOL]
    created = await client.chat.create(model="m", messages=ASK, tools=tools)
    if quirk is not None:
        server.inject(Fault(quirk))
    async with client.chat.stream(model="m", messages=ASK, tools=tools) as stream:
        texts = [t async for t in stream]
    assert texts == []  # the answer is the calls
    calls = [(c.name, c.parsed_arguments()) for c in stream.tool_calls]
    assert calls == [("get_weather", PARIS), ("get_time", {"city": "Paris"})]
    assert stream.finish_reason == "tool_calls"
    same_answer(stream.final_completion(), created)


async def test_one_character_fragments_arrive_as_many_argument_events(
    client: AsyncClient, server: MockServer
) -> None:
    server.inject(Fault("char_args"))
    async with client.chat.stream(model="m", messages=ASK, tools=[WEATHER_TOOL]) as stream:
        events = [e async for e in stream.events()]
    deltas = [e for e in events if isinstance(e, ToolCallArgumentsDelta)]
    arguments = json.dumps(PARIS)
    assert [d.delta for d in deltas] == ["", *arguments]  # the head, then one char each
    assert {(d.index, d.name) for d in deltas} == {(0, "get_weather")}
    done = [e for e in events if isinstance(e, ToolCallDone)]
    assert [d.call.arguments for d in done] == [arguments]
    assert isinstance(events[-1], StreamDone)
    assert events[-1].completion == stream.final_completion()


# -- reasoning ----------------------------------------------------------------------------


@pytest.mark.parametrize("which", ["reasoning_content", "reasoning"])
async def test_reasoning_under_either_field_name_is_one_reasoning(
    client: AsyncClient, vllm_client: AsyncClient, vllm_server: MockServer, which: str
) -> None:
    used = client if which == "reasoning_content" else vllm_client
    if which == "reasoning":
        vllm_server.requests.clear()
    created = await used.chat.create(model="deepseek-reasoner", messages=ASK)
    async with used.chat.stream(model="deepseek-reasoner", messages=ASK) as stream:
        events = [e async for e in stream.events()]
    assert stream.reasoning.startswith("Let me think")
    assert "".join(e.delta for e in events if isinstance(e, ReasoningDelta)) == stream.reasoning
    assert "".join(e.delta for e in events if isinstance(e, TextDelta)) == stream.text != ""
    # The reasoning comes first, then the answer.
    kinds = [type(e) for e in events if isinstance(e, (ReasoningDelta, TextDelta))]
    assert kinds == sorted(kinds, key=lambda k: k is TextDelta)
    assert created.choices[0].message.reasoning_content == stream.reasoning
    same_answer(stream.final_completion(), created)
    usage = stream.usage
    assert usage is not None and usage.completion_tokens_details is not None
    assert usage.completion_tokens_details.reasoning_tokens == 8


async def test_a_model_whose_name_says_nothing_does_not_reason(client: AsyncClient) -> None:
    async with client.chat.stream(model="gpt-4o", messages=ASK) as stream:
        events = [e async for e in stream.events()]
    assert stream.reasoning == ""
    assert not [e for e in events if isinstance(e, ReasoningDelta)]


# -- final_completion() equals chat.create -----------------------------------------------------


@pytest.mark.parametrize(
    "params",
    [
        {},
        {"n": 2},
        {"logprobs": True},
        {"tools": [WEATHER_TOOL], "model": "qwen-thinking"},
        {"tools": [WEATHER_TOOL, TIME_TOOL], "n": 2},
    ],
    ids=["text", "two-choices", "logprobs", "reasoning-and-tools", "tools-two-choices"],
)
async def test_final_completion_equals_what_chat_create_returns(
    client: AsyncClient, params: dict[str, Any]
) -> None:
    body: dict[str, Any] = {"model": "m", "messages": ASK, **params}
    created = await client.chat.create(**body)
    async with client.chat.stream(**body) as stream:
        async for _ in stream:
            pass
    final = stream.final_completion()
    same_answer(final, created)
    assert final.request_id == stream.request_id is not None


async def test_final_completion_before_the_end_is_an_error(client: AsyncClient) -> None:
    async with client.chat.stream(model="m", messages=ASK) as stream:
        with pytest.raises(RuntimeError, match="once the stream has ended"):
            stream.final_completion()
        async for _ in stream:
            break


# -- a stream broken inside its tool calls ----------------------------------------------------


async def test_broken_inside_tool_calls_before_anything_was_yielded_is_retried(
    client: AsyncClient, server: MockServer, fake_sleep: FakeSleep
) -> None:
    server.inject(Fault("drop", after=5))  # inside the first call's arguments
    async with client.chat.stream(model="m", messages=ASK, tools=[WEATHER_TOOL]) as stream:
        async for _ in stream:
            pass
    assert [c.parsed_arguments() for c in stream.tool_calls] == [PARIS]  # not twice, not cut
    assert stream.metrics.attempts == 2 and len(fake_sleep.calls) == 1


async def test_broken_inside_tool_calls_after_events_were_yielded_raises_the_partial_state(
    client: AsyncClient, server: MockServer
) -> None:
    server.inject(Fault("drop", after=12))  # 8 reasoning deltas, the call's head, 3 fragments
    got: list[Any] = []
    with pytest.raises(APIConnectionError) as info:
        async with client.chat.stream(
            model="m-reasoner", messages=ASK, tools=[WEATHER_TOOL], resume=True
        ) as stream:
            async for event in stream.events():
                got.append(event)
    error = info.value
    assert error.partial_reasoning == stream.reasoning != ""
    assert error.partial_tool_calls is not None
    [call] = error.partial_tool_calls
    assert (call.name, call.done) == ("get_weather", False)
    assert json.dumps(PARIS).startswith(call.arguments) and call.arguments
    assert stream.metrics.attempts == 1  # a tool call is never resumed from a text prefix
    assert "".join(e.delta for e in got if isinstance(e, ToolCallArgumentsDelta)) == call.arguments


# -- the tool loop ----------------------------------------------------------------------------

seen: list[str] = []


def get_weather(city: str, unit: Literal["celsius", "fahrenheit"], days: int = 1) -> str:
    """The weather in a city.

    Args:
        city: The city's name.
        unit: Degrees.
        days: How many days ahead.
    """
    seen.append(f"weather {city}")
    return f"sunny in {city}, 21 {unit}"


async def get_time(city: str) -> dict[str, str]:
    """The local time in a city."""
    await anyio.lowlevel.checkpoint()
    seen.append(f"time {city}")
    return {"city": city, "time": "12:00"}


def broken_tool(city: str) -> str:
    """A tool that fails."""
    raise RuntimeError(f"no data for {city}")


async def test_run_tools_with_a_sync_tool(client: AsyncClient, server: MockServer) -> None:
    seen.clear()
    run = await client.chat.run_tools(model="m", messages=ASK, tools=[get_weather])
    assert seen == ["weather Paris"]
    assert run.turns == 2
    assert run.text == "According to get_weather: sunny in Paris, 21 celsius."
    roles = [m["role"] for m in run.messages]
    assert roles == ["user", "assistant", "tool", "assistant"]
    assert run.messages[2]["tool_call_id"] == run.messages[1]["tool_calls"][0]["id"]
    # The tool's schema came from its signature and docstring.
    sent = server.requests[-2].json()["tools"][0]["function"]
    assert sent["description"] == "The weather in a city."
    assert sent["parameters"]["properties"]["unit"]["enum"] == ["celsius", "fahrenheit"]
    assert sent["parameters"]["properties"]["days"]["description"] == "How many days ahead."
    assert sent["parameters"]["required"] == ["city", "unit"]


async def test_run_tools_runs_parallel_calls_sync_and_async(client: AsyncClient) -> None:
    seen.clear()
    both = anyio.Event()
    started: list[str] = []

    async def get_time(city: str) -> str:
        """The local time in a city."""
        started.append("time")
        if len(started) == 2:
            both.set()
        with anyio.fail_after(5):
            await both.wait()  # returns only if the other call runs at the same time
        return "12:00"

    def get_weather(city: str, unit: str, days: int) -> str:
        """The weather in a city."""
        started.append("weather")
        if len(started) == 2:
            anyio.from_thread.run_sync(both.set)
        return "sunny"

    run = await client.chat.run_tools(model="m", messages=ASK, tools=[get_weather, get_time])
    assert sorted(started) == ["time", "weather"]
    assert [(r.name, r.output) for r in run.results] == [
        ("get_weather", "sunny"),
        ("get_time", "12:00"),
    ]
    assert run.text == "According to get_weather: sunny. According to get_time: 12:00."


async def test_a_failing_tool_answers_the_model_with_its_error(client: AsyncClient) -> None:
    run = await client.chat.run_tools(model="m", messages=ASK, tools=[broken_tool])
    [result] = run.results
    assert isinstance(result.error, RuntimeError)
    assert result.output == "Error: RuntimeError: no data for Paris"
    assert run.messages[2] == {
        "role": "tool",
        "tool_call_id": run.messages[1]["tool_calls"][0]["id"],
        "content": "Error: RuntimeError: no data for Paris",
    }
    assert run.text == "According to broken_tool: Error: RuntimeError: no data for Paris."


async def test_max_turns_reached_raises_with_the_transcript(client: AsyncClient) -> None:
    with pytest.raises(ToolLoopError, match=r"get_weather\) after max_turns=3") as info:
        await client.chat.run_tools(
            model="m", messages=ASK, tools=[get_weather], max_turns=3, tool_choice="required"
        )
    error = info.value
    assert len(error.completions) == 3
    roles = [m["role"] for m in error.messages]
    assert roles == ["user", "assistant", "tool", "assistant", "tool", "assistant"]
    assert error.messages[-1]["tool_calls"]  # the last turn's calls, not run


async def test_every_turn_counts_usage_and_keeps_reasoning(
    client: AsyncClient, server: MockServer
) -> None:
    client.usage.reset()
    run = await client.chat.run_tools(model="m-reasoner", messages=ASK, tools=[get_weather])
    assert client.usage.requests == run.turns == 2
    assert run.usage is not None
    assert client.usage.lines[0].output_tokens == run.usage.completion_tokens
    assert run.usage.completion_tokens == sum(
        c.usage.completion_tokens for c in run.completions if c.usage
    )
    # The assistant turn went back with its reasoning (DeepSeek requires it).
    second = server.requests[-1].json()["messages"]
    assert second[1]["role"] == "assistant"
    assert second[1]["reasoning_content"] == run.completions[0].choices[0].message.reasoning_content
    assert second[1]["reasoning_content"].startswith("Let me think")


async def test_a_pydantic_model_tool_gets_validated_arguments(client: AsyncClient) -> None:
    from pydantic import BaseModel

    class Booking(BaseModel):
        """Book a table."""

        city: str
        people: int

        async def __call__(self) -> str:
            return f"booked for {self.people} in {self.city}"

    run = await client.chat.run_tools(model="m", messages=ASK, tools=[Booking])
    assert run.results[0].output == "booked for 1 in Paris"
    assert isinstance(run.results[0].value, str)


async def test_stream_tools_streams_every_turn(client: AsyncClient) -> None:
    async with client.chat.stream_tools(
        model="m-reasoner", messages=ASK, tools=[get_weather]
    ) as run:
        events = [e async for e in run]
    types = [e.type for e in events]
    assert types.count("done") == 2  # one StreamDone per turn
    assert types.count("tool.result") == 1
    assert types.index("tool_calls.function.arguments.done") < types.index("tool.result")
    result = next(e for e in events if isinstance(e, ToolResult))
    assert result.output == "sunny in Paris, 21 celsius"
    text = "".join(e.delta for e in events if isinstance(e, TextDelta))
    assert text == run.result.text == "According to get_weather: sunny in Paris, 21 celsius."
    assert run.result.messages[1]["reasoning_content"].startswith("Let me think")


async def test_tools_are_checked_before_anything_is_sent(
    client: AsyncClient, server: MockServer
) -> None:
    before = len(server.requests)
    with pytest.raises(TypeError, match="named function"):
        await client.chat.run_tools(model="m", messages=ASK, tools=[lambda city: city])
    with pytest.raises(ValueError, match="two tools are named"):
        await client.chat.run_tools(model="m", messages=ASK, tools=[get_weather, get_weather])
    with pytest.raises(TypeError, match="extra_body"):
        await client.chat.run_tools(model="m", messages=ASK, tools=[get_weather], bogus=1)  # type: ignore[call-arg]
    assert len(server.requests) == before


def test_the_sync_client_runs_tools_and_streams_events(server: MockServer) -> None:
    with Client(api_key="test-key", base_url=server.base_url) as client:
        run = client.chat.run_tools(model="m", messages=ASK, tools=[get_weather, get_time])
        assert run.turns == 2 and len(run.results) == 2
        with client.chat.stream(model="m-reasoner", messages=ASK, tools=[WEATHER_TOOL]) as s:
            kinds = {e.type for e in s.events()}
        assert {"reasoning.delta", "tool_calls.function.arguments.done", "done"} <= kinds
        assert s.reasoning and [c.name for c in s.tool_calls] == ["get_weather"]
        assert s.final_completion().choices[0].finish_reason == "tool_calls"
        with client.chat.stream_tools(model="m", messages=ASK, tools=[get_weather]) as loop:
            results = [e for e in loop if isinstance(e, ToolResult)]
        assert [r.name for r in results] == ["get_weather"]
        assert loop.result.turns == 2


# -- OpenTelemetry ----------------------------------------------------------------------------


async def test_tool_runs_are_execute_tool_spans_under_the_callers_span(
    client: AsyncClient, telemetry: Telemetry, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "true")
    await client.chat.run_tools(model="m-reasoner", messages=ASK, tools=[get_weather, broken_tool])
    spans = telemetry.spans()
    tools = {s.name: s for s in spans if s.name.startswith("execute_tool")}
    assert set(tools) == {"execute_tool get_weather", "execute_tool broken_tool"}
    weather = tools["execute_tool get_weather"].attributes
    assert weather["gen_ai.operation.name"] == "execute_tool"
    assert weather["gen_ai.tool.name"] == "get_weather"
    assert weather["gen_ai.tool.call.id"].startswith("call_")
    assert weather["gen_ai.tool.description"] == "The weather in a city."
    assert json.loads(weather["gen_ai.tool.call.arguments"])["city"] == "Paris"
    assert weather["gen_ai.tool.call.result"] == "sunny in Paris, 21 celsius"
    assert "error.type" not in weather
    broken = tools["execute_tool broken_tool"]
    assert broken.attributes["error.type"] == "RuntimeError"
    assert broken.status.status_code.name == "ERROR"
    chats = [s for s in spans if s.name == "chat m-reasoner"]
    assert len(chats) == 2
    first = chats[0].attributes
    assert first["gen_ai.usage.reasoning.output_tokens"] == 8
    assert first["gen_ai.response.finish_reasons"] == ("tool_calls",)
    [message] = json.loads(first["gen_ai.output.messages"])
    kinds = [p["type"] for p in message["parts"]]
    assert kinds == ["reasoning", "tool_call", "tool_call"]
    # The second turn's prompt carries the tool answers and the reasoning sent back.
    prompt = json.loads(chats[1].attributes["gen_ai.input.messages"])
    assert [m["role"] for m in prompt] == ["user", "assistant", "tool", "tool"]


async def test_a_streamed_answer_records_its_tool_calls_and_reasoning(
    client: AsyncClient, telemetry: Telemetry, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "true")
    async with client.chat.stream(model="m-reasoner", messages=ASK, tools=[WEATHER_TOOL]) as s:
        async for _ in s:
            pass
    [span] = [x for x in telemetry.spans() if x.name == "chat m-reasoner"]
    assert span.attributes["gen_ai.usage.reasoning.output_tokens"] == 8
    [message] = json.loads(span.attributes["gen_ai.output.messages"])
    assert message["parts"][0] == {"type": "reasoning", "content": s.reasoning}
    call = message["parts"][1]
    assert (call["type"], call["name"], json.loads(call["arguments"])) == (
        "tool_call",
        "get_weather",
        PARIS,
    )
    assert message["finish_reason"] == "tool_calls"
