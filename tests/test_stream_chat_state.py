"""Chat chunk parsing and accumulation, without a network: dicts and SSE bytes in, state out.

``ChatState`` is the chat protocol of the stream core; ``Wire._parse`` is the
core's per-read event loop (pings, ``event: error``, ``[DONE]``, lenient JSON),
which needs no connection to run.
"""

from __future__ import annotations

import json
from typing import Any, cast

import pytest

from holysheep_async.errors import StreamError
from holysheep_async.sse import SSEDecoder
from holysheep_async.streaming import MALFORMED, ChatState, StreamMetrics
from holysheep_async.streaming._protocol import Errors, StreamProtocol, lenient
from holysheep_async.streaming._wire import Requesting, Wire


def chunk(
    content: str | None = None,
    *,
    index: int = 0,
    finish: str | None = None,
    usage: dict[str, int] | None = None,
    **delta: Any,
) -> dict[str, Any]:
    d = dict(delta)
    if content is not None:
        d["content"] = content
    obj: dict[str, Any] = {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "model": "m-1",
        "choices": [{"index": index, "delta": d, "finish_reason": finish}],
    }
    if usage is not None:
        obj["usage"] = usage
    return obj


USAGE = {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}


def test_a_chat_state_is_a_stream_protocol() -> None:
    state: StreamProtocol = ChatState()  # mypy checks the structure; this checks the words
    assert state.done_marker is True
    assert state.ending == "finish reason"


def test_text_finish_reason_usage_id_and_model_accumulate() -> None:
    state = ChatState()
    assert state.feed(chunk(role="assistant")) is None
    assert state.feed(chunk("Hel")) == "Hel"
    assert state.feed(chunk("lo")) == "lo"
    assert not state.complete()
    state.feed(chunk(finish="stop"))
    assert state.complete()
    state.feed({"id": "chatcmpl-1", "choices": [], "usage": USAGE})
    assert (state.text, state.finish_reason, state.id, state.model) == (
        "Hello",
        "stop",
        "chatcmpl-1",
        "m-1",
    )
    assert state.usage is not None and state.usage.total_tokens == 5


def test_take_does_not_add_the_text_the_stream_adds_what_it_yields() -> None:
    state = ChatState()
    obj = chunk("Hi")
    assert state.take(obj, "") == (obj, "Hi", None)
    assert state.text == ""  # the stream adds a delta once it yields it


def test_empty_content_is_no_text() -> None:
    state = ChatState()
    assert state.feed(chunk("")) is None
    assert state.text == ""


def test_with_two_choices_the_answer_is_complete_once_both_have_a_finish_reason() -> None:
    state = ChatState(n=2)
    state.feed(chunk("a", index=0))
    assert state.feed(chunk("b", index=1)) is None  # the text is the first choice's
    state.feed(chunk(index=0, finish="stop"))
    assert not state.complete()
    state.feed(chunk(index=1, finish="length"))
    assert state.complete()
    assert state.finish == {0: "stop", 1: "length"}
    assert state.text == "a"


def test_a_missing_index_counts_as_the_first_choice() -> None:
    state = ChatState()
    state.feed({"choices": [{"delta": {"content": "x"}, "finish_reason": "stop"}]})
    assert (state.text, state.finish_reason) == ("x", "stop")


def test_refusal_is_collected() -> None:
    state = ChatState()
    state.feed(chunk(refusal="I can't "))
    state.feed(chunk(refusal="help with that."))
    assert state.refusal == "I can't help with that."
    assert ChatState().refusal is None


def test_tool_calls_make_a_broken_answer_not_resumable() -> None:
    state = ChatState()
    assert state.resumable()
    state.feed(chunk(tool_calls=[{"index": 0, "id": "c1", "function": {"name": "f"}}]))
    assert not state.resumable()
    assert not ChatState(n=2).resumable()


def test_restart_forgets_the_response_and_keeps_the_text() -> None:
    state = ChatState()
    state.feed(chunk("kept", usage=USAGE))
    state.feed(chunk(finish="stop"))
    state.restart(resume=True)
    assert state.text == state.partial_text() == "kept"
    assert (state.finish_reason, state.usage, state.id, state.model) == (None, None, None, None)
    assert not state.complete()


def test_a_malformed_usage_is_ignored_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    state = ChatState()
    state.feed(chunk("x", usage={"prompt_tokens": "many"}))  # type: ignore[dict-item]
    assert state.usage is None
    assert "malformed usage" in caplog.text


@pytest.mark.parametrize(
    ("obj", "why"),
    [
        ([1, 2], "not a JSON object"),
        ({"choices": ["a"]}, "choices are not objects"),
        ({"choices": [{"index": 0, "delta": {"content": 5}}]}, "delta.content is not a string"),
    ],
)
def test_what_is_not_a_chunk_raises_a_malformed_event(obj: Any, why: str) -> None:
    with pytest.raises(StreamError, match=why) as info:
        ChatState().feed(obj, json.dumps(obj))
    assert info.value.code == MALFORMED


def test_an_error_object_raises_with_its_message_and_code() -> None:
    data = json.dumps({"error": {"message": "Model overloaded", "code": "503"}})
    with pytest.raises(StreamError, match="Model overloaded") as info:
        ChatState().feed(json.loads(data), data)
    assert info.value.code == "503"


def test_errors_blank_out_the_key_and_name_the_request() -> None:
    errors = Errors(lambda t: t.replace("sk-secret", "***"), lambda: " [request id r-1]")
    data = '{"error": {"message": "bad key sk-secret"}}'
    state = ChatState(errors=errors)
    with pytest.raises(StreamError) as info:
        state.feed(json.loads(data), data)
    assert "sk-secret" not in str(info.value)
    assert str(info.value).endswith("[request id r-1]")


def test_a_whole_completion_becomes_one_chunk_with_numbered_tool_calls() -> None:
    completion = {
        "id": "chatcmpl-9",
        "object": "chat.completion",
        "model": "m",
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": "Done.",
                    "tool_calls": [
                        {"id": "a", "type": "function", "function": {"name": "f", "arguments": ""}},
                        {"id": "b", "type": "function", "function": {"name": "g", "arguments": ""}},
                    ],
                },
                "finish_reason": "stop",
            }
        ],
        "usage": USAGE,
    }
    state = ChatState()
    [(obj, text, _)] = state.whole(completion, json.dumps(completion))
    assert text == "Done."
    assert obj["object"] == "chat.completion.chunk"
    assert [c["index"] for c in obj["choices"][0]["delta"]["tool_calls"]] == [0, 1]
    assert state.complete() and state.usage is not None


def test_a_whole_completion_without_a_message_is_malformed() -> None:
    completion = {"choices": [{"index": 0, "finish_reason": "stop"}]}
    with pytest.raises(StreamError, match="a choice without a message"):
        ChatState().whole(completion, json.dumps(completion))


def test_lenient_json_reads_control_characters_and_stacked_objects() -> None:
    assert lenient('{"a": "tab\there"}', Errors()) == [{"a": "tab\there"}]
    assert lenient('{"a": 1}\n{"a": 2}', Errors()) == [{"a": 1}, {"a": 2}]
    with pytest.raises(StreamError, match="not JSON"):
        lenient("{nope", Errors())


# -- SSE bytes through the core's event loop (no connection) -----------------------------


def wire_for(state: ChatState) -> tuple[Wire, StreamMetrics]:
    metrics = StreamMetrics()
    # _parse touches neither the requester nor the connection.
    wire = Wire(cast(Requesting, None), state, state.errors, metrics, None, None)
    return wire, metrics


def sse(*objs: Any) -> bytes:
    return b"".join(
        (o if isinstance(o, bytes) else b"data: " + json.dumps(o).encode() + b"\n\n") for o in objs
    )


def read(wire: Wire, raw: bytes) -> list[Any]:
    return wire._parse(SSEDecoder().feed_raw(raw))


def test_events_of_one_read_become_items_and_pings_are_skipped() -> None:
    state = ChatState()
    wire, metrics = wire_for(state)
    raw = sse(
        chunk("a"),
        b": ping\n\n",
        b"event: ping\ndata: {}\n\n",
        b"data: \n\n",
        chunk("b", finish="stop"),
        b"data: [DONE]\n\n",
        chunk("after done"),
    )
    items = read(wire, raw)
    assert [text for _, text, _ in items] == ["a", "b"]
    assert metrics.chunks == 2
    assert wire._done_seen and wire._eof
    assert state.finish_reason == "stop"


def test_an_error_event_after_chunks_is_raised_on_the_next_read() -> None:
    state = ChatState()
    wire, _ = wire_for(state)
    raw = sse(chunk("a"), b'event: error\ndata: {"error": {"message": "overloaded"}}\n\n')
    items = read(wire, raw)
    assert [text for _, text, _ in items] == ["a"]  # what came before the error first
    assert isinstance(wire._pending_error, StreamError)
    assert "overloaded" in str(wire._pending_error)


def test_an_error_event_alone_raises_at_once() -> None:
    wire, _ = wire_for(ChatState())
    with pytest.raises(StreamError, match="overloaded"):
        read(wire, b'event: error\ndata: {"error": {"message": "overloaded"}}\n\n')


def test_two_objects_on_consecutive_data_lines_are_two_chunks() -> None:
    state = ChatState()
    wire, _ = wire_for(state)
    raw = b"data: " + json.dumps(chunk("a")).encode() + b"\n"
    raw += b"data: " + json.dumps(chunk("b")).encode() + b"\n\n"
    assert [text for _, text, _ in read(wire, raw)] == ["a", "b"]
