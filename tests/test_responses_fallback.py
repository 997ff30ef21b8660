"""The chat fallback's conversions: a Responses request as a chat completion, the answer
(whole or streamed) back as a response. Pure, no network."""

from __future__ import annotations

import json
from typing import Any

import pytest

from holysheep_async import ResponsesNotSupportedError
from holysheep_async.responses import Response
from holysheep_async.responses._accumulate import Accumulator
from holysheep_async.responses._fallback import (
    check_stateless,
    response_from_chat,
    to_chat_body,
)
from holysheep_async.responses._fallback_stream import ChunkConverter

from .responses_samples import chat_chunks, chat_completion, function_call, message, reasoning
from .spec import validate

WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "Weather of a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    "strict": True,
}


def test_a_whole_conversation_becomes_chat_messages() -> None:
    body = {
        "model": "gpt-4o",
        "instructions": "Be brief.",
        "input": [
            {
                "role": "user",
                "content": [
                    {"type": "input_text", "text": "Weather in Paris and Rome?"},
                    {"type": "input_image", "image_url": "https://x/y.png", "detail": "low"},
                ],
            },
            reasoning("Two cities: two calls."),
            message("Let me look.", "msg_a"),
            function_call("get_weather", '{"city":"Paris"}', "call_p", "fc_p"),
            function_call("get_weather", '{"city":"Rome"}', "call_r", "fc_r"),
            {"type": "function_call_output", "call_id": "call_p", "output": "18C"},
            {
                "type": "function_call_output",
                "call_id": "call_r",
                "output": [{"type": "input_text", "text": "22C"}],
            },
            {"type": "message", "role": "user", "content": "Thanks"},
        ],
        "tools": [WEATHER],
        "tool_choice": {"type": "function", "name": "get_weather"},
        "text": {
            "format": {
                "type": "json_schema",
                "name": "W",
                "schema": {"type": "object"},
                "strict": True,
            },
            "verbosity": "low",
        },
        "max_output_tokens": 50,
        "reasoning": {"effort": "low", "summary": "auto"},
        "temperature": 0.2,
        "store": False,
        "include": ["reasoning.encrypted_content"],
        "top_k": 5,  # a server-specific field from extra_body
    }
    check_stateless(body, "test")
    chat = to_chat_body(body)
    assert chat == {
        "model": "gpt-4o",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Weather in Paris and Rome?"},
                    {"type": "image_url", "image_url": {"url": "https://x/y.png", "detail": "low"}},
                ],
            },
            {
                "role": "assistant",
                "content": "Let me look.",
                "reasoning_content": "Two cities: two calls.",
                "tool_calls": [
                    {
                        "id": "call_p",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
                    },
                    {
                        "id": "call_r",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city":"Rome"}'},
                    },
                ],
            },
            {"role": "tool", "tool_call_id": "call_p", "content": "18C"},
            {"role": "tool", "tool_call_id": "call_r", "content": "22C"},
            {"role": "user", "content": "Thanks"},
        ],
        "tools": [
            {
                "type": "function",
                "function": {
                    "name": "get_weather",
                    "description": "Weather of a city",
                    "parameters": WEATHER["parameters"],
                    "strict": True,
                },
            }
        ],
        "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
        "response_format": {
            "type": "json_schema",
            "json_schema": {"name": "W", "schema": {"type": "object"}, "strict": True},
        },
        "verbosity": "low",
        "max_tokens": 50,
        "reasoning_effort": "low",
        "temperature": 0.2,
        "top_k": 5,
    }
    spec_body = {k: v for k, v in chat.items() if k != "top_k"}
    spec_body["messages"] = [
        {k: v for k, v in m.items() if k != "reasoning_content"} for m in chat["messages"]
    ]
    validate("CreateChatCompletionRequest", spec_body)


def test_a_string_input_is_one_user_message() -> None:
    assert to_chat_body({"model": "m", "input": "Hi"}) == {
        "model": "m",
        "messages": [{"role": "user", "content": "Hi"}],
    }


def test_function_calls_without_a_message_make_their_own_assistant_turn() -> None:
    chat = to_chat_body(
        {
            "model": "m",
            "input": [
                {"role": "user", "content": "q"},
                function_call("f", "{}", "c1"),
                {"type": "function_call_output", "call_id": "c1", "output": {"ok": True}},
            ],
        }
    )
    assert chat["messages"][1] == {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
        ],
    }
    assert chat["messages"][2] == {"role": "tool", "tool_call_id": "c1", "content": '{"ok": true}'}


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("previous_response_id", "resp_0"),
        ("background", True),
        ("store", True),
        ("conversation", "conv_1"),
        ("prompt", {"id": "pmpt_1"}),
    ],
)
def test_what_needs_server_state_is_refused_by_name(field: str, value: Any) -> None:
    with pytest.raises(ResponsesNotSupportedError, match=field) as caught:
        check_stateless({"model": "m", "input": "x", field: value}, "POST /responses answered 404")
    assert caught.value.field == field
    assert "404" in str(caught.value)


def test_store_false_and_background_false_are_fine() -> None:
    check_stateless({"model": "m", "store": False, "background": False}, "r")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"tools": [{"type": "web_search"}]}, "tools"),
        ({"input": [{"type": "item_reference", "id": "msg_1"}]}, "input"),
        ({"input": [{"type": "computer_call", "id": "c"}]}, "input"),
        ({"tool_choice": {"type": "file_search"}}, "tool_choice"),
        (
            {"input": [{"role": "user", "content": [{"type": "input_image", "file_id": "f"}]}]},
            "input",
        ),
    ],
)
def test_what_chat_cannot_say_is_refused_by_name(body: dict[str, Any], field: str) -> None:
    with pytest.raises(ResponsesNotSupportedError) as caught:
        to_chat_body({"model": "m", **body})
    assert caught.value.field == field


def test_a_completion_comes_back_as_a_response() -> None:
    completion = chat_completion(
        "Checking.",
        reasoning_content="Need the weather.",
        tool_calls=[
            {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": '{"a":1}'}}
        ],
        finish="tool_calls",
    )
    raw = response_from_chat(completion, {"model": "gpt-4o", "input": "q", "temperature": 0.5})
    response = Response.model_validate(raw)
    assert [i.type for i in response.output] == ["reasoning", "message", "function_call"]
    assert response.reasoning_text == "Need the weather."
    assert response.output_text == "Checking."
    call = response.function_calls[0]
    assert (call.call_id, call.name, call.parsed_arguments()) == ("call_1", "f", {"a": 1})
    assert response.status == "completed" and response.temperature == 0.5
    assert response.usage is not None
    assert (response.usage.input_tokens, response.usage.output_tokens) == (9, 4)
    cut = Response.model_validate(
        response_from_chat(chat_completion("par", finish="length"), {"model": "m"})
    )
    assert cut.status == "incomplete" and cut.finish_reason == "length"
    refused = Response.model_validate(
        response_from_chat(chat_completion(None, refusal="No."), {"model": "m"})
    )
    assert refused.refusal == "No."


def converted(
    chunks: list[dict[str, Any]], request: dict[str, Any] | None = None
) -> tuple[list[dict[str, Any]], Accumulator]:
    converter = ChunkConverter(request or {"model": "gpt-4o"})
    events = [e for chunk in chunks for e in converter.feed(chunk)]
    events += converter.finish()
    acc = Accumulator()
    for event in events:
        assert acc.is_new(event)
        acc.feed(event)
    return events, acc


def test_streamed_text_comes_back_as_response_events() -> None:
    events, acc = converted(chat_chunks(["Hel", "lo"]))
    kinds = [e["type"] for e in events]
    assert kinds[:2] == ["response.created", "response.in_progress"]
    assert kinds[-1] == "response.completed"
    assert [e["delta"] for e in events if e["type"] == "response.output_text.delta"] == [
        "Hel",
        "lo",
    ]
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    streamed = Response.model_validate(acc.build())
    whole = Response.model_validate(
        response_from_chat(chat_completion("Hello"), {"model": "gpt-4o"})
    )
    assert streamed.output_text == "Hello" == whole.output_text
    assert streamed.output == whole.output
    assert streamed.usage == whole.usage


def test_streamed_tool_calls_are_assembled_as_chat_streams_assemble_them() -> None:
    base = {"id": "c9", "model": "m", "created": 1}

    def chunk(*calls: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        delta = {"tool_calls": list(calls)} if calls else {}
        return {**base, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}

    chunks = [
        {**base, "choices": [{"index": 0, "delta": {"reasoning_content": "plan"}}]},
        # every call index 0, distinct ids (Ollama through LiteLLM)
        chunk({"index": 0, "id": "a", "function": {"name": "f", "arguments": '{"x"'}}),
        # the same index twice in one chunk (vLLM speculative decoding)
        chunk(
            {"index": 0, "function": {"arguments": ":"}},
            {"index": 0, "function": {"arguments": "1}"}},
        ),
        chunk({"index": 0, "id": "b", "function": {"name": "g", "arguments": ""}}),
        # no index at all: continues the last call
        chunk({"function": {"arguments": "{}"}}),
        chunk(finish="tool_calls"),
    ]
    events, acc = converted(chunks)
    response = Response.model_validate(acc.build())
    assert [(c.call_id, c.name, c.arguments) for c in response.function_calls] == [
        ("a", "f", '{"x":1}'),
        ("b", "g", "{}"),
    ]
    assert response.reasoning_text == "plan"
    assert response.finish_reason == "tool_calls"
    done = [e for e in events if e["type"] == "response.function_call_arguments.done"]
    assert [d["arguments"] for d in done] == ['{"x":1}', "{}"]


def test_a_stream_cut_by_max_tokens_is_incomplete() -> None:
    events, acc = converted(chat_chunks(["a"], finish="length"))
    assert events[-1]["type"] == "response.incomplete"
    response = Response.model_validate(acc.build())
    assert response.status == "incomplete" and response.finish_reason == "length"


def test_an_error_chunk_is_an_error_event() -> None:
    converter = ChunkConverter({"model": "m"})
    (event,) = converter.feed({"error": {"message": "overloaded", "code": 503}})
    assert event["type"] == "error" and event["code"] == "503" and event["message"] == "overloaded"


def test_converted_events_fit_the_official_sdk() -> None:
    pytest.importorskip("openai")
    from typing import get_args

    from openai.types.responses import Response as SDKResponse
    from openai.types.responses import ResponseStreamEvent

    union = get_args(get_args(ResponseStreamEvent)[0])
    classes = {get_args(c.model_fields["type"].annotation)[0]: c for c in union}
    chunks = chat_chunks(["Hi"])
    chunks.insert(1, {**chunks[1], "choices": [{"index": 0, "delta": {"reasoning": "hm"}}]})
    chunks.insert(
        3,
        {
            **chunks[1],
            "choices": [
                {
                    "index": 0,
                    "delta": {
                        "tool_calls": [
                            {"index": 0, "id": "c", "function": {"name": "f", "arguments": "{}"}}
                        ]
                    },
                }
            ],
        },
    )
    events, acc = converted(chunks)
    for event in events:
        classes[event["type"]].model_validate(json.loads(json.dumps(event)))
    SDKResponse.model_validate(acc.build())
    SDKResponse.model_validate(response_from_chat(chat_completion("x"), {"model": "m"}))
