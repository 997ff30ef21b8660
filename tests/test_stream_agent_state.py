"""Reasoning, tool calls, refusal, logprobs and events in the chat state, without a network.

The three tool-call quirks of real servers (DESIGN.md, "agent streams"): an
index repeated inside one chunk, no index at all, every call index 0 with
distinct ids; and arguments in one-character fragments.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from holysheep_async import ChatCompletion
from holysheep_async.errors import StreamError
from holysheep_async.streaming import (
    ChatState,
    ReasoningDelta,
    RefusalDelta,
    StreamedToolCall,
    TextDelta,
    ToolCallArgumentsDelta,
    ToolCallDone,
)


def delta(index: int = 0, finish: str | None = None, **fields: Any) -> dict[str, Any]:
    return {
        "id": "chatcmpl-7",
        "object": "chat.completion.chunk",
        "created": 1700000000,
        "model": "m",
        "system_fingerprint": "fp_1",
        "choices": [{"index": index, "delta": fields, "finish_reason": finish}],
    }


def calls_chunk(*calls: dict[str, Any], index: int = 0) -> dict[str, Any]:
    return delta(index, tool_calls=list(calls))


def fragments(text: str, size: int = 1) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)]


def feed_all(state: ChatState, chunks: list[dict[str, Any]]) -> list[Any]:
    """Every chunk through ``take`` as the stream does: its events, the text committed."""
    events: list[Any] = []
    for obj in chunks:
        _, text, extra = state.take(obj, json.dumps(obj))
        if text is not None:
            state.parts.append(text)
            events.append(TextDelta(text))
        events.extend(extra or ())
    events.extend(state.end())
    return events


def summary(calls: list[StreamedToolCall]) -> list[tuple[str, str, Any]]:
    return [(c.id, c.name, c.parsed_arguments()) for c in calls]


# -- reasoning -----------------------------------------------------------------------


@pytest.mark.parametrize("field", ["reasoning_content", "reasoning"])
def test_reasoning_is_read_under_either_name(field: str) -> None:
    state = ChatState()
    feed_all(
        state,
        [delta(**{field: "Think"}), delta(**{field: "ing."}), delta(content="Hi", finish="stop")],
    )
    assert state.reasoning == "Thinking."
    assert state.text == "Hi"
    message = state.final_completion().choices[0].message
    assert message.reasoning_content == "Thinking."


def test_a_server_sending_both_names_is_read_once() -> None:
    state = ChatState()
    feed_all(state, [delta(reasoning_content="Hmm", reasoning="Hmm"), delta(finish="stop")])
    assert state.reasoning == "Hmm"


def test_reasoning_beside_text_in_one_delta_is_kept() -> None:
    state = ChatState()
    state.want_events = True
    events = feed_all(state, [delta(content="A", reasoning="why"), delta(finish="stop")])
    assert (state.text, state.reasoning) == ("A", "why")
    assert events == [TextDelta("A"), ReasoningDelta("why")]


# -- tool calls ----------------------------------------------------------------------

ARGS_A = '{"city": "Paris", "unit": "c"}'
ARGS_B = '{"city": "Oslo"}'


def openai_style(args_size: int) -> list[dict[str, Any]]:
    """Two calls as OpenAI streams them: id and name first, then argument fragments."""
    chunks = [
        calls_chunk(
            {
                "index": 0,
                "id": "call_a",
                "type": "function",
                "function": {"name": "get_weather", "arguments": ""},
            }
        )
    ]
    chunks += [
        calls_chunk({"index": 0, "function": {"arguments": p}})
        for p in fragments(ARGS_A, args_size)
    ]
    chunks += [
        calls_chunk(
            {
                "index": 1,
                "id": "call_b",
                "type": "function",
                "function": {"name": "get_weather", "arguments": ""},
            }
        )
    ]
    chunks += [
        calls_chunk({"index": 1, "function": {"arguments": p}})
        for p in fragments(ARGS_B, args_size)
    ]
    chunks.append(delta(finish="tool_calls"))
    return chunks


EXPECTED = [
    ("call_a", "get_weather", {"city": "Paris", "unit": "c"}),
    ("call_b", "get_weather", {"city": "Oslo"}),
]


@pytest.mark.parametrize("size", [1, 4, 1000])
def test_calls_are_assembled_from_fragments(size: int) -> None:
    state = ChatState()
    feed_all(state, openai_style(size))
    assert summary(state.tool_calls) == EXPECTED
    assert [c.index for c in state.tool_calls] == [0, 1]
    assert not state.resumable()


def test_an_index_repeated_inside_one_chunk_is_two_fragments_of_that_call() -> None:
    # vLLM with speculative decoding: two entries with the same index in one chunk.
    state = ChatState()
    chunks = [
        calls_chunk(
            {
                "index": 0,
                "id": "call_a",
                "type": "function",
                "function": {"name": "get_weather", "arguments": ""},
            },
            {"index": 0, "function": {"arguments": '{"city": '}},
        ),
        calls_chunk(
            {"index": 0, "function": {"arguments": '"Paris", '}},
            {"index": 0, "function": {"arguments": '"unit": "c"}'}},
        ),
        calls_chunk(
            {"index": 1, "id": "call_b", "function": {"name": "get_weather"}},
            {"index": 1, "function": {"arguments": ARGS_B}},
        ),
        delta(finish="tool_calls"),
    ]
    feed_all(state, chunks)
    assert summary(state.tool_calls) == EXPECTED


def test_fragments_without_an_index_continue_the_latest_call() -> None:
    state = ChatState()
    chunks = [calls_chunk({"id": "call_a", "function": {"name": "get_weather"}})]
    chunks += [calls_chunk({"function": {"arguments": p}}) for p in fragments(ARGS_A, 3)]
    chunks += [calls_chunk({"id": "call_b", "function": {"name": "get_weather"}})]
    chunks += [calls_chunk({"function": {"arguments": p}}) for p in fragments(ARGS_B, 3)]
    chunks.append(delta(finish="tool_calls"))
    feed_all(state, chunks)
    assert summary(state.tool_calls) == EXPECTED


def test_every_call_at_index_0_with_distinct_ids_is_a_call_each() -> None:
    # Ollama through LiteLLM: each call whole, all of them index 0.
    state = ChatState()
    chunks = [
        calls_chunk(
            {"index": 0, "id": "call_a", "function": {"name": "get_weather", "arguments": ARGS_A}}
        ),
        calls_chunk(
            {"index": 0, "id": "call_b", "function": {"name": "get_weather", "arguments": ARGS_B}}
        ),
        delta(finish="tool_calls"),
    ]
    feed_all(state, chunks)
    assert summary(state.tool_calls) == EXPECTED


def test_index_0_with_distinct_ids_and_fragments_after_each() -> None:
    state = ChatState()
    chunks = [calls_chunk({"index": 0, "id": "call_a", "function": {"name": "get_weather"}})]
    chunks += [calls_chunk({"index": 0, "function": {"arguments": p}}) for p in fragments(ARGS_A)]
    chunks += [calls_chunk({"index": 0, "id": "call_b", "function": {"name": "get_weather"}})]
    chunks += [calls_chunk({"index": 0, "function": {"arguments": p}}) for p in fragments(ARGS_B)]
    chunks.append(delta(finish="tool_calls"))
    feed_all(state, chunks)
    assert summary(state.tool_calls) == EXPECTED


def test_a_fragment_repeating_its_calls_id_and_name_continues_it() -> None:
    state = ChatState()
    chunks = [
        calls_chunk(
            {
                "index": 0,
                "id": "call_a",
                "function": {"name": "get_weather", "arguments": '{"city": '},
            }
        ),
        calls_chunk(
            {
                "index": 0,
                "id": "call_a",
                "function": {"name": "get_weather", "arguments": '"Oslo"}'},
            }
        ),
        delta(finish="tool_calls"),
    ]
    feed_all(state, chunks)
    assert summary(state.tool_calls) == [("call_a", "get_weather", {"city": "Oslo"})]


def test_calls_are_finished_only_when_their_choice_is() -> None:
    state = ChatState()
    chunks = openai_style(5)
    for obj in chunks[:-1]:
        state.feed(obj)
    assert state.tool_calls == []  # not finished yet: more fragments could come
    assert [c.name for c in state.calls()] == ["get_weather", "get_weather"]
    state.feed(chunks[-1])
    assert len(state.tool_calls) == 2


def test_arguments_that_are_not_json_raise_a_clear_error() -> None:
    call = StreamedToolCall(0, "call_x", "f")
    call._parts.append('{"a": ')
    with pytest.raises(ValueError, match=r"call_x \('f'\) are not valid JSON"):
        call.parsed_arguments()
    assert StreamedToolCall(1, "call_y", "g").parsed_arguments() == {}


def test_tool_calls_that_are_not_a_list_are_malformed() -> None:
    with pytest.raises(StreamError, match="tool_calls is not a list"):
        ChatState().feed(delta(tool_calls={"index": 0}))


# -- events --------------------------------------------------------------------------


def test_events_say_what_happened_in_order() -> None:
    state = ChatState()
    state.want_events = True
    chunks = [
        delta(role="assistant", content=""),
        delta(reasoning_content="Look it up."),
        delta(content="Checking."),
        calls_chunk({"index": 0, "id": "call_a", "function": {"name": "get_weather"}}),
        calls_chunk({"index": 0, "function": {"arguments": '{"city": "Oslo"}'}}),
        delta(finish="tool_calls"),
    ]
    events = feed_all(state, chunks)
    call = state.tool_calls[0]
    assert events == [
        ReasoningDelta("Look it up."),
        TextDelta("Checking."),
        ToolCallArgumentsDelta(0, "call_a", "get_weather", ""),
        ToolCallArgumentsDelta(0, "call_a", "get_weather", '{"city": "Oslo"}'),
        ToolCallDone(call),
    ]
    assert [e.type for e in events] == [
        "reasoning.delta",
        "content.delta",
        "tool_calls.function.arguments.delta",
        "tool_calls.function.arguments.delta",
        "tool_calls.function.arguments.done",
    ]


def test_without_want_events_no_event_is_made() -> None:
    state = ChatState()
    for obj in openai_style(2):
        _, _, extra = state.take(obj, "")
        assert extra is None


def test_calls_still_open_at_the_end_are_done_then() -> None:
    state = ChatState()
    state.want_events = True
    state.feed(calls_chunk({"index": 0, "id": "c", "function": {"name": "f", "arguments": "{}"}}))
    state.feed(delta(finish="stop"))  # some servers say "stop" and finish no call
    assert [e.type for e in state.end()] == []  # the finish reason closed it already
    other = ChatState()
    other.want_events = True
    other.feed(calls_chunk({"index": 0, "id": "c", "function": {"name": "f", "arguments": "{}"}}))
    assert [type(e) for e in other.end()] == [ToolCallDone]
    assert other.tool_calls[0].done


def test_refusal_events_and_text() -> None:
    state = ChatState()
    state.want_events = True
    events = feed_all(state, [delta(refusal="No."), delta(finish="stop")])
    assert events == [RefusalDelta("No.")]
    assert state.final_completion().choices[0].message.refusal == "No."


# -- several choices, logprobs ---------------------------------------------------------


def test_each_choice_keeps_its_own_text_reasoning_and_calls() -> None:
    state = ChatState(n=2)
    state.want_events = True
    events = feed_all(
        state,
        [
            delta(0, content="first"),
            delta(1, content="second"),
            delta(1, reasoning="r1"),
            calls_chunk(
                {"index": 0, "id": "c1", "function": {"name": "f", "arguments": "{}"}}, index=1
            ),
            delta(0, finish="stop"),
            delta(1, finish="tool_calls"),
        ],
    )
    assert TextDelta("second", 1) in events
    assert ReasoningDelta("r1", 1) in events
    final = state.final_completion()
    assert [c.message.content for c in final.choices] == ["first", "second"]
    assert [c.message.reasoning_content for c in final.choices] == [None, "r1"]
    assert final.choices[0].message.tool_calls is None
    tool_calls = final.choices[1].message.tool_calls
    assert tool_calls is not None and tool_calls[0].id == "c1"
    assert [c.finish_reason for c in final.choices] == ["stop", "tool_calls"]
    assert state.tool_calls == []  # the first choice's


def test_logprobs_are_joined_when_asked_for() -> None:
    token = {"token": "a", "logprob": -0.1, "bytes": None, "top_logprobs": []}
    chunks = [
        {
            **delta(content="a"),
            "choices": [{"index": 0, "delta": {"content": "a"}, "logprobs": {"content": [token]}}],
        },
        {
            **delta(content="b"),
            "choices": [
                {
                    "index": 0,
                    "delta": {"content": "b"},
                    "logprobs": {"content": [{**token, "token": "b"}]},
                }
            ],
        },
        delta(finish="stop"),
    ]
    state = ChatState(want_logprobs=True)
    feed_all(state, chunks)
    logprobs = state.final_completion().choices[0].logprobs
    assert [t["token"] for t in logprobs["content"]] == ["a", "b"]
    plain = ChatState()
    feed_all(plain, chunks)
    assert plain.final_completion().choices[0].logprobs is None


# -- the final completion ------------------------------------------------------------------


def test_the_final_completion_is_what_chat_create_returns_for_the_same_answer() -> None:
    state = ChatState()
    usage = {
        "prompt_tokens": 9,
        "completion_tokens": 7,
        "total_tokens": 16,
        "completion_tokens_details": {"reasoning_tokens": 3},
    }
    feed_all(
        state,
        [
            delta(role="assistant", content=""),
            delta(reasoning="Paris is in France."),
            delta(content="Let me check."),
            *openai_style(3)[:-1],
            delta(finish="tool_calls"),
            {**delta(), "choices": [], "usage": usage},
        ],
    )
    create_answer = {
        "id": "chatcmpl-7",
        "object": "chat.completion",
        "created": 1700000000,
        "model": "m",
        "system_fingerprint": "fp_1",
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": "Let me check.",
                    "reasoning": "Paris is in France.",  # the vLLM name: read as reasoning_content
                    "tool_calls": [
                        {
                            "id": "call_a",
                            "type": "function",
                            "function": {"name": "get_weather", "arguments": ARGS_A},
                        },
                        {
                            "id": "call_b",
                            "type": "function",
                            "function": {"name": "get_weather", "arguments": ARGS_B},
                        },
                    ],
                },
                "finish_reason": "tool_calls",
                "logprobs": None,
            }
        ],
        "usage": usage,
    }
    assert state.final_completion() == ChatCompletion.model_validate(create_answer)


def test_a_retry_from_scratch_forgets_the_failed_attempt_a_resume_does_not() -> None:
    state = ChatState()
    feed_all(state, [delta(reasoning="r"), *openai_style(4)[:3]])
    assert state.calls() and state.reasoning == "r" and not state.resumable()
    state.restart(resume=False)
    assert (state.calls(), state.reasoning, state.tool_calls_seen) == ([], "", False)
    assert state.resumable()
    # Reasoning shown but no text yet: a resume would reason (and show) it again.
    state.feed(delta(reasoning="r"))
    assert not state.resumable()
    state.feed(delta(content="some text"))
    assert state.resumable()
    state.restart(resume=True)
    assert (state.text, state.reasoning) == ("some text", "r")
