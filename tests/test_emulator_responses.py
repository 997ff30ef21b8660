"""The emulator's ``/v1/responses``: OpenAI's Responses API, checked against the official SDK.

Every object and event the emulator sends is validated with the SDK's own
pydantic types (``openai.types.responses``), and the SDK's ``AsyncOpenAI``
(``create``, ``stream``, ``parse``) runs against it unmodified. Background mode,
resume, cancel, delete and input items: ``test_emulator_responses_background``.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import anyio
import httpx
import jsonschema
import openai
import pytest
from openai import AsyncOpenAI
from openai.types.responses import Response, ResponseItem, ResponseStreamEvent
from pydantic import BaseModel, TypeAdapter

from holysheep_async.sse import SSEDecoder
from holysheep_async.testing import (
    Fault,
    MockServer,
    answer_text,
    prompt_tokens,
    reasoning_model,
    response_answer_text,
)
from holysheep_async.testing._responses_input import read_request
from holysheep_async.testing._responses_plan import DELTAS, plan

pytestmark = pytest.mark.anyio

AUTH = {"authorization": "Bearer test-key"}
EVENT = TypeAdapter(ResponseStreamEvent)
ITEM = TypeAdapter(ResponseItem)
WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "The weather in a city.",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string"}, "unit": {"enum": ["c", "f"]}},
        "required": ["city", "unit"],
        "additionalProperties": False,
    },
    "strict": True,
}
TIME = {
    "type": "function",
    "name": "get_time",
    "parameters": {
        "type": "object",
        "properties": {"zone": {"type": "string"}},
        "required": ["zone"],
        "additionalProperties": False,
    },
}
SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "legs": {"type": "integer"},
        "colors": {"type": "array", "items": {"type": "string"}},
    },
    "required": ["name", "legs", "colors"],
    "additionalProperties": False,
}


@pytest.fixture
async def http(server: MockServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=server.base_url, headers=AUTH) as client:
        yield client


@pytest.fixture
async def sdk(server: MockServer) -> AsyncIterator[AsyncOpenAI]:
    async with AsyncOpenAI(base_url=server.base_url, api_key="test-key", max_retries=0) as c:
        yield c


@pytest.fixture
def options(server: MockServer, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """Set emulator options for one test; they are restored afterwards."""

    class Opts(dict[str, Any]):
        def __setitem__(self, key: str, value: Any) -> None:
            monkeypatch.setitem(server.options, key, value)

    return Opts()


class Got:
    """One streamed answer as read with plain httpx."""

    def __init__(self) -> None:
        self.raw = b""
        self.status = 0
        self.headers = httpx.Headers()
        self.error: Exception | None = None

    @property
    def sse(self) -> list[Any]:
        decoder = SSEDecoder()
        return decoder.feed(self.raw) + decoder.flush()

    @property
    def events(self) -> list[dict[str, Any]]:
        return [json.loads(e.data) for e in self.sse]

    @property
    def seqs(self) -> list[int]:
        return [e["sequence_number"] for e in self.events]

    def deltas(self, kind: str = "response.output_text.delta") -> list[str]:
        return [e["delta"] for e in self.events if e["type"] == kind]


async def stream(
    http: httpx.AsyncClient,
    method: str = "POST",
    url: str = "/responses",
    fault: str | None = None,
    **body: Any,
) -> Got:
    headers = {"x-mock-fault": fault} if fault else {}
    got = Got()
    payload = {"model": "gpt-4o", "input": "Count the sheep.", "stream": True, **body}
    kwargs: dict[str, Any] = {"json": payload} if method == "POST" else {}
    with anyio.fail_after(20):
        async with http.stream(method, url, headers=headers, **kwargs) as r:
            got.status = r.status_code
            got.headers = r.headers
            try:
                async for part in r.aiter_raw():
                    got.raw += part
            except httpx.HTTPError as exc:
                got.error = exc
    return got


async def create(http: httpx.AsyncClient, **body: Any) -> dict[str, Any]:
    r = await http.post("/responses", json={"model": "gpt-4o", "input": "Hi", **body})
    assert r.status_code == 200, r.text
    obj = r.json()
    Response.model_validate(obj)
    return dict(obj)


def text_of(response: dict[str, Any]) -> str:
    return "".join(
        part["text"]
        for item in response["output"]
        if item["type"] == "message"
        for part in item["content"]
        if part["type"] == "output_text"
    )


def check_stream(got: Got) -> None:
    """The protocol's invariants: event name = type, sequence 0, 1, 2..., SDK-valid events."""
    assert got.status == 200 and got.headers["content-type"].startswith("text/event-stream")
    for sse in got.sse:
        data = json.loads(sse.data)
        assert sse.event == data["type"]
        EVENT.validate_python(data)
    assert got.seqs == list(range(got.seqs[0], got.seqs[0] + len(got.seqs)))


# ---------------------------------------------------------------------------
# create and stream


async def test_create_is_a_response_the_sdk_reads(http: httpx.AsyncClient) -> None:
    obj = await create(http, instructions="Be brief.", metadata={"k": "v"})
    assert obj["object"] == "response" and obj["id"].startswith("resp_")
    assert obj["status"] == "completed" and obj["error"] is None
    assert obj["instructions"] == "Be brief." and obj["metadata"] == {"k": "v"}
    assert obj["store"] is True and obj["background"] is False
    (message,) = obj["output"]
    assert message["type"] == "message" and message["role"] == "assistant"
    assert message["status"] == "completed" and message["id"].startswith("msg_")
    assert (
        text_of(obj)
        == response_answer_text("Hi")
        == answer_text([{"role": "user", "content": "Hi"}])
    )
    usage = obj["usage"]
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]
    assert usage["input_tokens"] == prompt_tokens(messages)
    assert usage["output_tokens"] == 16
    assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"]
    assert usage["output_tokens_details"] == {"reasoning_tokens": 0}
    assert usage["input_tokens_details"]["cached_tokens"] == 0


async def test_input_as_a_string_or_items_gets_the_same_answer(http: httpx.AsyncClient) -> None:
    said = "Name three sheep."
    forms: list[Any] = [
        said,
        [{"role": "user", "content": said}],
        [{"type": "message", "role": "user", "content": [{"type": "input_text", "text": said}]}],
        [
            {"role": "developer", "content": "You count sheep."},
            {"role": "user", "content": "Earlier question"},
            {"role": "assistant", "content": [{"type": "output_text", "text": "Earlier answer"}]},
            {"role": "user", "content": said},
        ],
    ]
    texts = {text_of(await create(http, input=form)) for form in forms}
    assert texts == {response_answer_text(said)}


async def test_stream_events_follow_the_protocol(http: httpx.AsyncClient) -> None:
    got = await stream(http)
    check_stream(got)
    assert got.seqs[0] == 0 and got.raw.endswith(b"\n\n") and b"[DONE]" not in got.raw
    types = [e["type"] for e in got.events]
    assert types[:5] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
    ]
    assert types[-5:] == [
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    created, final = got.events[0]["response"], got.events[-1]["response"]
    assert created["status"] == "in_progress" and created["output"] == []
    text = response_answer_text("Count the sheep.")
    assert "".join(got.deltas()) == text == text_of(final)
    assert got.events[-4]["text"] == text
    # The streamed answer is the one a plain create gives.
    plain = await create(http, input="Count the sheep.")
    assert text_of(plain) == text and plain["usage"] == final["usage"]


def test_waits_follow_the_latency_profile() -> None:
    spec = read_request({"model": "o3", "input": "x", "reasoning": {"summary": "auto"}})
    answer = plan(
        spec,
        response_id="resp_1",
        context=spec.items,
        carried=0,
        new_id=lambda p: p + "1",
        created_at=0,
        tokens=16,
        ttft=0.5,
        itl=0.01,
    )
    waits = [(e["type"], d) for e, d in zip(answer.events, answer.delays, strict=True)]
    deltas = [d for kind, d in waits if kind in DELTAS]
    assert deltas[0] == 0.5 and set(deltas[1:]) == {0.01}
    assert all(d == 0 for kind, d in waits if kind not in DELTAS)
    assert answer.total_delay == pytest.approx(0.5 + 0.01 * (len(deltas) - 1))


async def test_the_sdk_creates_and_streams(sdk: AsyncOpenAI) -> None:
    response = await sdk.responses.create(model="gpt-4o", input="Hello there")
    assert response.output_text == response_answer_text("Hello there")
    assert response.usage is not None and response.usage.output_tokens == 16
    async with sdk.responses.stream(model="gpt-4o", input="Hello there") as events:
        texts = [e.delta async for e in events if e.type == "response.output_text.delta"]
        final = await events.get_final_response()
    assert "".join(texts) == final.output_text == response.output_text
    assert final.id != response.id and final.status == "completed"


# ---------------------------------------------------------------------------
# tools


async def test_offered_tools_are_called_with_arguments_matching_their_schema(
    http: httpx.AsyncClient,
) -> None:
    obj = await create(http, input="What is the weather in Paris?", tools=[WEATHER, TIME])
    (call,) = obj["output"]
    assert call["type"] == "function_call" and call["name"] == "get_weather"
    assert call["call_id"].startswith("call_") and call["id"].startswith("fc_")
    assert call["status"] == "completed"
    jsonschema.validate(json.loads(call["arguments"]), WEATHER["parameters"])
    assert obj["usage"]["output_tokens"] > 0


async def test_tool_call_stream(http: httpx.AsyncClient) -> None:
    got = await stream(http, input="get_time please", tools=[WEATHER, TIME])
    check_stream(got)
    added = next(e for e in got.events if e["type"] == "response.output_item.added")
    assert added["item"]["type"] == "function_call" and added["item"]["arguments"] == ""
    assert added["item"]["name"] == "get_time"
    args = "".join(got.deltas("response.function_call_arguments.delta"))
    done = next(e for e in got.events if e["type"] == "response.function_call_arguments.done")
    assert done["arguments"] == args and json.loads(args) == {"zone": "sheep"}
    assert got.events[-1]["response"]["output"][0]["arguments"] == args


async def test_tool_round_trip_without_server_state(http: httpx.AsyncClient) -> None:
    """The client keeps the conversation: it sends the calls back with their outputs."""
    question = {"role": "user", "content": "What is the weather in Paris?"}
    first = await create(http, input=[question], tools=[WEATHER], store=False)
    (call,) = first["output"]
    output = {"type": "function_call_output", "call_id": call["call_id"], "output": '{"c": 21}'}
    second = await create(http, input=[question, call, output], tools=[WEATHER], store=False)
    (message,) = second["output"]
    assert message["type"] == "message"
    assert text_of(second) == response_answer_text([question])


async def test_tool_round_trip_with_previous_response_id(sdk: AsyncOpenAI) -> None:
    first = await sdk.responses.create(
        model="gpt-4o",
        input="Weather in Paris?",
        tools=[WEATHER],  # type: ignore[list-item]
    )
    call = first.output[0]
    assert call.type == "function_call"
    second = await sdk.responses.create(
        model="gpt-4o",
        previous_response_id=first.id,
        input=[{"type": "function_call_output", "call_id": call.call_id, "output": "sunny"}],
        tools=[WEATHER],  # type: ignore[list-item]
    )
    assert second.output_text == response_answer_text("Weather in Paris?")
    assert second.previous_response_id == first.id
    # The earlier turn is cached input.
    assert second.usage is not None and first.usage is not None
    cached = second.usage.input_tokens_details.cached_tokens
    assert 0 < cached < second.usage.input_tokens


@pytest.mark.parametrize(
    ("say", "extra", "called"),
    [
        ("get_weather and get_time", {}, ["get_weather", "get_time"]),
        ("get_weather and get_time", {"parallel_tool_calls": False}, ["get_weather"]),
        ("anything", {}, ["get_weather"]),
        ("get_weather", {"tool_choice": {"type": "function", "name": "get_time"}}, ["get_time"]),
        ("get_weather", {"tool_choice": "none"}, []),
        (
            "anything",
            {
                "tool_choice": {
                    "type": "allowed_tools",
                    "mode": "required",
                    "tools": [{"type": "function", "name": "get_time"}],
                }
            },
            ["get_time"],
        ),
    ],
)
async def test_which_tools_are_called(
    http: httpx.AsyncClient, say: str, extra: dict[str, Any], called: list[str]
) -> None:
    obj = await create(http, input=say, tools=[WEATHER, TIME], **extra)
    names = [i["name"] for i in obj["output"] if i["type"] == "function_call"]
    assert names == called
    assert (text_of(obj) != "") == (called == [])


async def test_required_calls_again_after_the_output(http: httpx.AsyncClient) -> None:
    first = await create(http, input="x", tools=[TIME], tool_choice="required")
    call = first["output"][0]
    output = {"type": "function_call_output", "call_id": call["call_id"], "output": "noon"}
    for choice, kind in (("required", "function_call"), ("auto", "message")):
        said = {"role": "user", "content": "x"}
        obj = await create(http, input=[said, call, output], tools=[TIME], tool_choice=choice)
        assert obj["output"][0]["type"] == kind


@pytest.mark.parametrize(
    ("items", "message"),
    [
        (
            [{"type": "function_call_output", "call_id": "call_x", "output": "1"}],
            "No tool call found for function call output with call_id call_x.",
        ),
        (
            [{"type": "function_call", "call_id": "call_y", "name": "get_time", "arguments": "{}"}],
            "No tool output found for function call call_y.",
        ),
    ],
)
async def test_unpaired_tool_items_are_refused(
    http: httpx.AsyncClient, items: list[dict[str, Any]], message: str
) -> None:
    r = await http.post("/responses", json={"model": "m", "input": items})
    assert r.status_code == 400
    assert r.json()["error"]["message"] == message


# ---------------------------------------------------------------------------
# structured outputs, refusals, reasoning, max_output_tokens


async def test_json_schema_answer_validates(http: httpx.AsyncClient) -> None:
    fmt = {"type": "json_schema", "name": "sheep", "schema": SCHEMA, "strict": True}
    obj = await create(http, input="Describe a sheep.", text={"format": fmt})
    jsonschema.validate(json.loads(text_of(obj)), SCHEMA)
    assert obj["text"]["format"]["name"] == "sheep"
    got = await stream(http, input="Describe a sheep.", text={"format": fmt})
    check_stream(got)
    jsonschema.validate(json.loads("".join(got.deltas())), SCHEMA)
    plain = await create(http, input="Describe a sheep.", text={"format": {"type": "json_object"}})
    assert json.loads(text_of(plain)) == {"answer": response_answer_text("Describe a sheep.")}


class Sheep(BaseModel):
    name: str
    legs: int
    colors: list[str]


async def test_sdk_parse_with_a_pydantic_model(sdk: AsyncOpenAI) -> None:
    parsed = await sdk.responses.parse(model="gpt-4o", input="A sheep.", text_format=Sheep)
    assert parsed.output_parsed == Sheep(name="sheep", legs=1, colors=["sheep"])


async def test_refusal(http: httpx.AsyncClient) -> None:
    fmt = {"type": "json_schema", "name": "sheep", "schema": SCHEMA}
    obj = await create(http, input="[refuse] this", text={"format": fmt})
    part = obj["output"][0]["content"][0]
    assert part["type"] == "refusal" and part["refusal"].startswith("I'm sorry")
    got = await stream(http, input="[refuse] this", text={"format": fmt})
    check_stream(got)
    assert "".join(got.deltas("response.refusal.delta")) == part["refusal"]
    assert got.deltas() == []


@pytest.mark.parametrize(
    ("model", "yes"),
    [
        ("o3-mini", True),
        ("o1", True),
        ("openai/o4-mini", True),
        ("gpt-5", True),
        ("gpt-5.2-pro", True),
        ("gpt-oss-120b", True),
        ("deepseek-reasoner", True),
        ("deepseek-r1", True),
        ("DeepSeek-R1-Distill-Qwen-7B", True),
        ("qwen3-235b-a22b-thinking-2507", True),
        ("gpt-4o", False),
        ("gpt-4o-mini", False),
        ("gpt-4.1", False),
        ("omni-moderation-latest", False),
    ],
)
def test_reasoning_model_rule(model: str, yes: bool) -> None:
    assert reasoning_model(model) is yes


@pytest.mark.parametrize(("summary", "parts"), [(None, 0), ("auto", 1), ("detailed", 2)])
async def test_reasoning_item_and_summaries(
    http: httpx.AsyncClient, summary: str | None, parts: int
) -> None:
    reasoning = {"effort": "high", "summary": summary}
    obj = await create(http, model="o4-mini", input="Think.", reasoning=reasoning)
    thought, message = obj["output"]
    assert thought["type"] == "reasoning" and thought["id"].startswith("rs_")
    assert message["type"] == "message"
    assert len(thought["summary"]) == parts
    assert all(s["type"] == "summary_text" and s["text"] for s in thought["summary"])
    assert text_of(obj) == response_answer_text("Think.")
    usage = obj["usage"]
    assert usage["output_tokens_details"]["reasoning_tokens"] == 32  # high: twice `tokens`
    assert usage["output_tokens"] == 32 + 16
    assert obj["reasoning"] == reasoning
    got = await stream(http, model="o4-mini", input="Think.", reasoning=reasoning)
    check_stream(got)
    for index in range(parts):
        text = "".join(
            e["delta"]
            for e in got.events
            if e["type"] == "response.reasoning_summary_text.delta" and e["summary_index"] == index
        )
        assert text == thought["summary"][index]["text"]
    kinds = [e["type"] for e in got.events]
    assert kinds.count("response.reasoning_summary_part.added") == parts
    assert kinds.count("response.reasoning_summary_part.done") == parts


async def test_reasoning_on_other_models_is_refused(http: httpx.AsyncClient) -> None:
    r = await http.post(
        "/responses", json={"model": "gpt-4o", "input": "x", "reasoning": {"effort": "low"}}
    )
    assert r.status_code == 400 and r.json()["error"]["param"] == "reasoning.effort"


async def test_sdk_streams_reasoning_summaries(sdk: AsyncOpenAI) -> None:
    async with sdk.responses.stream(
        model="gpt-5", input="Think.", reasoning={"effort": "low", "summary": "auto"}
    ) as events:
        summary = [
            e.delta async for e in events if e.type == "response.reasoning_summary_text.delta"
        ]
        final = await events.get_final_response()
    thought = final.output[0]
    assert thought.type == "reasoning" and thought.summary[0].text == "".join(summary)
    assert final.usage is not None
    assert final.usage.output_tokens_details.reasoning_tokens == 8  # low: half of 16


async def test_max_output_tokens_cuts_the_answer(
    http: httpx.AsyncClient, server: MockServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(server, "tokens", 40)
    full = await create(http, input="Long one.")
    assert full["status"] == "completed" and full["usage"]["output_tokens"] == 40
    cut = await create(http, input="Long one.", max_output_tokens=25)
    assert cut["status"] == "incomplete"
    assert cut["incomplete_details"] == {"reason": "max_output_tokens"}
    assert cut["usage"]["output_tokens"] == 25 and cut["output"][0]["status"] == "incomplete"
    assert text_of(full).startswith(text_of(cut)) and text_of(cut) != text_of(full)
    got = await stream(http, input="Long one.", max_output_tokens=25)
    check_stream(got)
    assert got.events[-1]["type"] == "response.incomplete"
    assert len(got.deltas()) == 25
    # Reasoning spends the budget first (40 tokens of medium effort, 20 allowed): no message.
    thought = await create(http, model="o3", input="Long one.", max_output_tokens=20)
    assert [i["type"] for i in thought["output"]] == ["reasoning"]
    assert thought["usage"]["output_tokens_details"]["reasoning_tokens"] == 20
    assert thought["status"] == "incomplete"


# ---------------------------------------------------------------------------
# state


async def test_previous_response_id_continues_the_conversation(http: httpx.AsyncClient) -> None:
    first = await create(http, input="My name is Dolly.", instructions="Be kind.")
    second = await create(http, input="What is my name?", previous_response_id=first["id"])
    assert second["instructions"] is None  # not carried over
    assert text_of(second) == response_answer_text("What is my name?")
    carried = [
        {"role": "user", "content": "My name is Dolly."},
        {"role": "assistant", "content": text_of(first)},
    ]
    assert second["usage"]["input_tokens"] == prompt_tokens(
        [*carried, {"role": "user", "content": "What is my name?"}]
    )
    assert second["usage"]["input_tokens_details"]["cached_tokens"] == prompt_tokens(carried) - 1


async def test_store_false_keeps_nothing(http: httpx.AsyncClient) -> None:
    obj = await create(http, store=False)
    assert obj["store"] is False
    assert (await http.get(f"/responses/{obj['id']}")).status_code == 404
    r = await http.post(
        "/responses", json={"model": "m", "input": "x", "previous_response_id": obj["id"]}
    )
    assert r.status_code == 400
    assert r.json()["error"]["code"] == "previous_response_not_found"


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"input": "x"}, "model"),
        ({"model": "m"}, "input"),
        ({"model": "m", "messages": [{"role": "user", "content": "x"}]}, "messages"),
        ({"model": "m", "input": [{"role": "robot", "content": "x"}]}, "input[0].role"),
        ({"model": "m", "input": [{"role": "user", "content": [{"type": "x"}]}]}, None),
        ({"model": "m", "input": 3}, "input"),
        (
            {"model": "m", "input": "x", "tools": [{"type": "function", "function": {}}]},
            "tools[0].name",
        ),
        ({"model": "m", "input": "x", "tool_choice": "required"}, "tool_choice"),
        ({"model": "m", "input": "x", "max_output_tokens": 8}, "max_output_tokens"),
        ({"model": "m", "input": "x", "background": True, "store": False}, "background"),
        ({"model": "m", "input": "x", "metadata": {str(i): "v" for i in range(17)}}, "metadata"),
        ({"model": "m", "input": "x", "text": {"format": {"type": "json_schema"}}}, None),
        ({"model": "m", "input": "x", "response_format": {}, "text": {}}, "response_format"),
        ({"model": "m", "input": [{"type": "item_reference", "id": "nope"}]}, "input[0].id"),
    ],
)
async def test_bad_requests_are_refused_like_openai(
    http: httpx.AsyncClient, body: dict[str, Any], param: str | None
) -> None:
    r = await http.post("/responses", json=body)
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["type"] == "invalid_request_error" and error["message"]
    if param is not None:
        assert error["param"] == param


async def test_item_reference_resolves_a_stored_item(http: httpx.AsyncClient) -> None:
    first = await create(http, input="Remember this.")
    items = (await http.get(f"/responses/{first['id']}/input_items")).json()["data"]
    ref = {"type": "item_reference", "id": items[0]["id"]}
    second = await create(http, input=[ref])
    assert text_of(second) == response_answer_text("Remember this.")


# ---------------------------------------------------------------------------
# faults and the switch


@pytest.mark.parametrize("after", [0, 3, 10])
async def test_drop_after_n_events(http: httpx.AsyncClient, after: int) -> None:
    got = await stream(http, fault=f"drop; after={after}")
    assert isinstance(got.error, httpx.RemoteProtocolError)
    assert got.seqs == list(range(after))


async def test_truncate_ends_without_a_terminal_event(http: httpx.AsyncClient) -> None:
    got = await stream(http, fault="truncate; after=6")
    assert got.error is None and got.seqs == list(range(6))


async def test_malformed_event(http: httpx.AsyncClient) -> None:
    got = await stream(http, fault="malformed; after=2")
    assert [e.event for e in got.sse][-1] == "response.output_text.delta"
    with pytest.raises(ValueError):
        json.loads(got.sse[-1].data)


async def test_error_event_shapes(http: httpx.AsyncClient) -> None:
    got = await stream(http, fault="error; after=5; code=rate_limit_exceeded; message=Slow down")
    check_stream(got)
    assert got.events[-1] == {
        "type": "error",
        "sequence_number": 5,
        "code": "rate_limit_exceeded",
        "message": "Slow down",
        "param": None,
    }
    nested = (await stream(http, fault="error; after=5; body=nested")).events[-1]
    assert nested["type"] == "error" and nested["sequence_number"] == 5
    assert nested["error"]["code"] == "server_error" and nested["error"]["message"]
    got = await stream(http, fault="error; after=5; body=failed")
    check_stream(got)
    failed = got.events[-1]["response"]
    assert got.events[-1]["type"] == "response.failed" and failed["status"] == "failed"
    assert failed["error"]["code"] == "server_error" and failed["output"] == []
    # After the message is done, the failed response keeps it.
    late = (await stream(http, fault="error; after=23; body=failed")).events[-1]["response"]
    assert text_of(late) == response_answer_text("Count the sheep.")
    # A stored response that failed is retrieved as failed.
    stored = (await http.get(f"/responses/{failed['id']}")).json()
    assert stored["status"] == "failed" and stored["error"] == failed["error"]


async def test_sdk_sees_the_error_event(sdk: AsyncOpenAI, server: MockServer) -> None:
    server.inject(Fault("error", after=4, code="server_error", message="boom"))
    async with sdk.responses.stream(model="gpt-4o", input="Hi") as events:
        seen = [e async for e in events]
    assert seen[-1].type == "error" and seen[-1].message == "boom"
    assert all(e.type != "response.completed" for e in seen)


async def test_stall_then_go_on_with_pings(http: httpx.AsyncClient) -> None:
    got = await stream(http, fault="stall; after=4; delay=0.2; ping=0.05")
    check_stream(got)
    assert got.raw.count(b": ping\n\n") >= 2 and got.events[-1]["type"] == "response.completed"


async def test_relay_framing(http: httpx.AsyncClient) -> None:
    got = await stream(http, fault="relay")
    assert b"event:response.created\r\ndata:{" in got.raw and b"\n\n" not in got.raw.replace(
        b"\r\n\r\n", b""
    )
    check_stream(got)
    assert "".join(got.deltas()) == response_answer_text("Count the sheep.")


async def test_status_faults(http: httpx.AsyncClient, sdk: AsyncOpenAI, server: MockServer) -> None:
    got = await stream(http, fault="status=429; retry-after=2")
    assert got.status == 429 and got.headers["retry-after"] == "2"
    assert json.loads(got.raw)["error"]["type"] == "rate_limit_error"
    server.inject(Fault("status", status=503, path="/v1/responses"))
    with pytest.raises(openai.InternalServerError):
        await sdk.responses.create(model="gpt-4o", input="Hi")
    server.inject("status", status=429, headers={"retry-after": "1"})
    with pytest.raises(openai.RateLimitError) as caught:
        await sdk.responses.create(model="gpt-4o", input="Hi")
    assert caught.value.response.headers["retry-after"] == "1"


@pytest.mark.parametrize("switch", [False, 404, 405, 501])
async def test_responses_api_switched_off(
    http: httpx.AsyncClient, options: dict[str, Any], switch: bool | int
) -> None:
    obj = await create(http)
    options["responses_api"] = switch
    status = 404 if switch is False else switch
    for method, url in (
        ("POST", "/responses"),
        ("GET", f"/responses/{obj['id']}"),
        ("POST", f"/responses/{obj['id']}/cancel"),
        ("DELETE", f"/responses/{obj['id']}"),
        ("GET", f"/responses/{obj['id']}/input_items"),
    ):
        r = await http.request(method, url, json={"model": "m", "input": "x"})
        assert r.status_code == status
        assert "Invalid URL" in r.json()["error"]["message"]
    # Chat completions are still served.
    chat = {"model": "m", "messages": [{"role": "user", "content": "x"}]}
    r = await http.post("/chat/completions", json=chat)
    assert r.status_code == 200


async def test_output_items_are_valid_input_items(http: httpx.AsyncClient) -> None:
    """What a response outputs can be listed (and sent back) as items the SDK reads."""
    obj = await create(http, model="o3", input="x", reasoning={"summary": "auto"})
    for item in obj["output"]:
        ITEM.validate_python(item)


@pytest.mark.parametrize(
    ("argv", "switch"),
    [([], None), (["--no-responses-api"], 404), (["--no-responses-api", "501"], 501)],
)
def test_holysheep_serve_switches_the_responses_api_off(
    argv: list[str], switch: int | None
) -> None:
    from holysheep_async.cli import build_parser
    from holysheep_async.cli.serve import emulator_options

    options = emulator_options(build_parser().parse_args(["serve", *argv]))
    assert options.get("responses_api") == switch
