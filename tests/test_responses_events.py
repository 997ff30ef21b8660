"""Responses models, typed events and the accumulation of a stream: pure, no network.

The samples are shaped as OpenAI publishes them (tests/responses_samples.py);
when the official SDK is installed they are checked against its models too.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

from holysheep_async.responses import (
    ParsedResponse,
    Response,
    ResponseCompletedEvent,
    ResponseErrorEvent,
    ResponseFunctionCallArgumentsDeltaEvent,
    ResponseFunctionToolCall,
    ResponseOutputItemAddedEvent,
    ResponseOutputMessage,
    ResponseReasoningItem,
    ResponseReasoningSummaryTextDeltaEvent,
    ResponseTextDeltaEvent,
    UnknownContent,
    UnknownEvent,
    UnknownItem,
)
from holysheep_async.responses._accumulate import Accumulator
from holysheep_async.responses._events import parse_event
from holysheep_async.responses._models import item_to_input

from .responses_samples import Events, completed, function_call, message, reasoning, usage

WEB_SEARCH = {"id": "ws_1", "type": "web_search_call", "status": "completed", "action": {"q": "x"}}


def test_samples_fit_the_official_sdk() -> None:
    """The samples are the published protocol: the official SDK's models read them."""
    pytest.importorskip("openai")
    from typing import get_args

    from openai.types.responses import Response as SDKResponse
    from openai.types.responses import ResponseStreamEvent

    union = get_args(get_args(ResponseStreamEvent)[0])
    classes = {get_args(c.model_fields["type"].annotation)[0]: c for c in union}
    stream = Events().start().think(["Hm", "m."]).text(["Hel", "lo"]).call("f", ['{"a"', ":1}"])
    stream.complete()
    for event in stream.events:
        classes[event["type"]].model_validate(event)
    SDKResponse.model_validate(stream.final())


def test_response_reads_typed_items_and_keeps_unknown_ones() -> None:
    raw = completed(
        [reasoning("I think."), message("Hi there."), function_call("f", '{"x": 1}'), WEB_SEARCH],
        usage=usage(10, 20, reasoning=5),
        relay_field="kept",
    )
    response = Response.model_validate(raw)
    kinds = [type(item) for item in response.output]
    assert kinds == [
        ResponseReasoningItem,
        ResponseOutputMessage,
        ResponseFunctionToolCall,
        UnknownItem,
    ]
    assert response.output_text == "Hi there."
    assert response.reasoning_text == "I think."
    assert response.function_calls[0].parsed_arguments() == {"x": 1}
    assert response.usage is not None and response.usage.reasoning_tokens == 5
    assert response.finish_reason == "tool_calls"
    assert response.model_dump()["relay_field"] == "kept"
    unknown = response.output[3]
    assert isinstance(unknown, UnknownItem) and unknown.raw == WEB_SEARCH
    # Passed back as input, every item is what came (nothing added but the defaults' types).
    back = [item_to_input(item) for item in response.output]
    assert back[3] == WEB_SEARCH
    assert back[1]["type"] == "message" and back[1]["content"][0]["text"] == "Hi there."
    assert back[2] == function_call("f", '{"x": 1}')


def test_response_tolerates_nulls_and_missing_fields() -> None:
    response = Response.model_validate(
        {"id": "r", "output": None, "usage": {"input_tokens": None, "output_tokens": 3}}
    )
    assert response.output == [] and response.output_text == ""
    assert response.usage is not None and response.usage.input_tokens == 0
    assert response.usage.to_usage().total_tokens == 3
    part = Response.model_validate(
        completed([{**message("x"), "content": [{"type": "input_image", "image_url": "u"}]}])
    ).output[0]
    assert isinstance(part, ResponseOutputMessage)
    assert isinstance(part.content[0], UnknownContent)
    assert part.content[0].raw == {"type": "input_image", "image_url": "u"}


def test_usage_in_chat_terms_counts_reasoning_and_cache() -> None:
    u = Response.model_validate(completed([], usage=usage(100, 40, reasoning=30))).usage
    assert u is not None
    chat = u.to_usage()
    assert (chat.prompt_tokens, chat.completion_tokens, chat.total_tokens) == (100, 40, 140)
    assert chat.completion_tokens_details is not None
    assert chat.completion_tokens_details.reasoning_tokens == 30


def test_refusal_and_incomplete() -> None:
    refused = Response.model_validate(
        completed([{**message(""), "content": [{"type": "refusal", "refusal": "I can't help."}]}])
    )
    assert refused.refusal == "I can't help." and refused.output_text == ""
    cut = Response.model_validate(
        {
            **completed([message("{")]),
            "status": "incomplete",
            "incomplete_details": {"reason": "max_output_tokens"},
        }
    )
    assert cut.finish_reason == "length" and cut.is_final


def test_parse_event_types_each_event() -> None:
    stream = Events().start().think(["a"]).text(["b"]).call("f", ["{}"]).complete()
    parsed = [parse_event(e) for e in stream.events]
    by_type = {type(p) for p in parsed}
    assert {
        ResponseOutputItemAddedEvent,
        ResponseTextDeltaEvent,
        ResponseReasoningSummaryTextDeltaEvent,
        ResponseFunctionCallArgumentsDeltaEvent,
        ResponseCompletedEvent,
    } <= by_type
    assert all(p.sequence_number == i for i, p in enumerate(parsed))
    done = parsed[-1]
    assert isinstance(done, ResponseCompletedEvent) and done.response.output_text == "b"
    error = parse_event(
        {"type": "error", "code": "server_error", "message": "boom", "sequence_number": 3}
    )
    assert isinstance(error, ResponseErrorEvent) and error.message == "boom"
    other = parse_event(
        {"type": "response.web_search_call.searching", "item_id": "ws", "sequence_number": 1}
    )
    assert isinstance(other, UnknownEvent) and other.raw["item_id"] == "ws"
    with pytest.raises(ValueError, match="delta"):
        parse_event({"type": "response.output_text.delta", "delta": {"not": "text"}})


def feed_all(events: list[dict[str, Any]]) -> tuple[Accumulator, list[str]]:
    acc = Accumulator()
    texts = []
    for event in events:
        if acc.is_new(event):
            text = acc.feed(event)
            if text is not None:
                texts.append(text)
    return acc, texts


def test_accumulated_response_is_the_final_one() -> None:
    stream = (
        Events()
        .start()
        .think(["Let me ", "think."])
        .text(["Hel", "lo", "!"])
        .call("get_weather", ['{"city"', ': "Paris"}'])
        .complete()
    )
    acc, texts = feed_all(stream.events)
    assert texts == ["Hel", "lo", "!"] and acc.text == "Hello!"
    assert acc.reasoning == "Let me think."
    assert acc.ended == "response.completed" and acc.status == "completed"
    assert acc.id == "resp_1" and acc.sequence_number == len(stream.events) - 1
    assert acc.build() == stream.final()
    # A final event without its output (some servers): the output comes from the events.
    bare = copy.deepcopy(stream.events)
    bare[-1]["response"]["output"] = []
    rebuilt = Response.model_validate(feed_all(bare)[0].build())
    assert rebuilt.output_text == "Hello!"
    assert rebuilt.reasoning_text == "Let me think."
    assert rebuilt.function_calls[0].arguments == '{"city": "Paris"}'
    assert [i.type for i in rebuilt.output] == ["reasoning", "message", "function_call"]


def test_output_grows_from_deltas_alone() -> None:
    """Relays that send only deltas (no item or part announced, no done events)."""
    events = [
        {
            "type": "response.created",
            "response": {"id": "r9", "model": "m", "status": "in_progress"},
        },
        {"type": "response.output_text.delta", "item_id": "m1", "output_index": 0, "delta": "Hi"},
        {"type": "response.output_text.delta", "item_id": "m1", "delta": " you"},
        {"type": "response.function_call_arguments.delta", "output_index": 1, "delta": '{"a":'},
        {"type": "response.function_call_arguments.delta", "output_index": 1, "delta": "2}"},
        {"type": "response.completed", "response": {"id": "r9", "status": "completed"}},
    ]
    acc, texts = feed_all(events)
    assert texts == ["Hi", " you"]
    response = Response.model_validate(acc.build())
    assert response.output_text == "Hi you"
    assert response.function_calls[0].arguments == '{"a":2}'
    assert response.model == "m"


def test_a_repeated_event_is_taken_once() -> None:
    stream = Events().start().text(["a", "b", "c"]).complete()
    replay = stream.events[:6] + stream.events[3:]  # a resume that starts too early
    acc, texts = feed_all(replay)
    assert texts == ["a", "b", "c"]
    assert acc.build() == stream.final()


def test_snapshot_before_the_end() -> None:
    stream = Events().start().text(["par", "tial"])
    acc, _ = feed_all(stream.events[:6])  # created, in_progress, added, part, 2 deltas
    snapshot = Response.model_validate(acc.build())
    assert snapshot.status == "in_progress" and snapshot.output_text == "partial"
    assert acc.ended is None


def test_parsed_response_reads_as_its_model() -> None:
    from pydantic import BaseModel

    class Point(BaseModel):
        x: int

    response = ParsedResponse[Point].model_validate(completed([message('{"x": 1}')]))
    response.__dict__["_parsed"] = Point(x=1)
    assert response.parsed == response.output_parsed == Point(x=1)
