"""The SSE decoder: bytes in, events out, whatever the line ends and the read boundaries."""

from __future__ import annotations

import re

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from holysheep_async.sse import ServerSentEvent, SSEDecoder, SSEError


def decode(*reads: bytes) -> list[tuple[str, str, str, int | None]]:
    decoder = SSEDecoder()
    events: list[ServerSentEvent] = []
    for read in reads:
        events += decoder.feed(read)
    events += decoder.flush()
    return [(e.event, e.data, e.id, e.retry) for e in events]


def datas(*reads: bytes) -> list[str]:
    return [data for _, data, _, _ in decode(*reads)]


def test_data_with_and_without_the_space() -> None:
    assert datas(b"data: a\n\ndata:b\n\ndata:  c\n\n") == ["a", "b", " c"]


def test_comments_are_counted_not_delivered() -> None:
    decoder = SSEDecoder()
    events = decoder.feed(b": ping\n\n:\n\ndata: x\n\n: keep-alive\n\n")
    assert [e.data for e in events] == ["x"]
    assert decoder.comments == 3


@pytest.mark.parametrize("eol", [b"\n", b"\r", b"\r\n"])
def test_every_line_end(eol: bytes) -> None:
    raw = b"data: one" + eol + eol + b"data: two" + eol + b"data: 2b" + eol + eol
    assert datas(raw) == ["one", "two\n2b"]


def test_crlf_split_across_reads_is_one_line_end() -> None:
    # "\r" ends one read, "\n" starts the next: one line end, not a blank line between.
    assert datas(b"data: a\r", b"\ndata: b\r\n\r\n") == ["a\nb"]
    # An empty read in between does not lose the pairing.
    assert datas(b"data: a\r", b"", b"\ndata: b\r\n\r\n") == ["a\nb"]


def test_bare_cr_then_lf_later_is_a_blank_line() -> None:
    assert datas(b"data: a\r", b"\r", b"\ndata: b\n\n") == ["a", "b"]


def test_multibyte_utf8_split_across_reads() -> None:
    raw = 'data: {"t": "héllo 羊 🐑"}\n\n'.encode()
    for cut in range(1, len(raw)):
        assert datas(raw[:cut], raw[cut:]) == ['{"t": "héllo 羊 🐑"}']


def test_invalid_utf8_becomes_replacement_character() -> None:
    assert datas(b"data: a\xffb\n\n") == ["a\ufffdb"]


def test_event_id_retry_fields() -> None:
    assert decode(b"event: error\nid: 7\nretry: 1500\ndata: {}\n\ndata: x\n\n") == [
        ("error", "{}", "7", 1500),
        ("message", "x", "7", None),  # the last event id persists, as the standard says
    ]


def test_event_without_data_is_not_dispatched_and_resets_the_name() -> None:
    assert decode(b"event: ping\n\ndata: x\n\n") == [("message", "x", "", None)]


def test_empty_data_field_is_an_event_with_empty_data() -> None:
    assert datas(b"data:\n\ndata\n\n") == ["", ""]


def test_unknown_fields_are_ignored() -> None:
    assert datas(b"foo: bar\ndata: x\nbaz\n\n") == ["x"]


def test_last_event_without_blank_line_is_flushed() -> None:
    assert datas(b"data: a\n\ndata: [DONE]") == ["a", "[DONE]"]
    assert datas(b"data: a\n\ndata: [DONE]\n") == ["a", "[DONE]"]


def test_byte_order_mark_at_start_is_skipped_even_split() -> None:
    assert datas(b"\xef\xbb\xbfdata: a\n\n") == ["a"]
    assert datas(b"\xef", b"\xbb", b"\xbfdata: a\n\n") == ["a"]
    # Only at the very start.
    assert datas(b"data: a\n\n\xef\xbb\xbfdata: b\n\n") == ["a"]


def test_a_line_without_end_beyond_the_limit_is_an_error() -> None:
    decoder = SSEDecoder(max_line=100)
    decoder.feed(b"data: " + b"x" * 50)
    with pytest.raises(SSEError, match="longer than 100 bytes"):
        decoder.feed(b"x" * 60)


def test_long_line_in_many_small_reads() -> None:
    body = b"data: " + b"y" * 5000 + b"\n\n"
    assert datas(*[body[i : i + 7] for i in range(0, len(body), 7)]) == ["y" * 5000]


# -- property: any split, any line end, same events -----------------------------

_text = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n"),
    max_size=12,
)
_event = st.tuples(
    st.sampled_from(["", "message", "error", "ping"]),
    st.lists(_text, min_size=1, max_size=3),  # data lines
    st.booleans(),  # a comment line inside the event
)


def _serialize(
    events: list[tuple[str, list[str], bool]], eol: bytes, space: bool, pings: bool
) -> bytes:
    out = bytearray()
    for name, lines, comment in events:
        if pings:
            out += b": ping" + eol + eol
        if name:
            out += b"event: " + name.encode() + eol
        for line in lines:
            # Without the space a value that starts with a space would lose nothing,
            # with it exactly one space is removed: send the space when it matters.
            sep = b": " if space or line.startswith(" ") else b":"
            out += b"data" + sep + line.encode() + eol
            if comment:
                out += b": comment" + eol
        out += eol
    return bytes(out)


@settings(max_examples=3 * settings().max_examples)  # cheap examples: three times the profile's
@given(
    events=st.lists(_event, max_size=6),
    eol=st.sampled_from([b"\n", b"\r", b"\r\n"]),
    space=st.booleans(),
    pings=st.booleans(),
    cuts=st.lists(st.integers(min_value=0), max_size=12),
)
@example(events=[("", ["é"], False)], eol=b"\r\n", space=True, pings=False, cuts=[8, 9, 10])
def test_any_split_gives_the_same_events(
    events: list[tuple[str, list[str], bool]],
    eol: bytes,
    space: bool,
    pings: bool,
    cuts: list[int],
) -> None:
    raw = _serialize(events, eol, space, pings)
    expected = [(name or "message", "\n".join(lines)) for name, lines, _ in events]
    points = sorted({c % (len(raw) + 1) for c in cuts})
    reads = [raw[a:b] for a, b in zip([0, *points], [*points, len(raw)], strict=True)]
    got = [(name, data) for name, data, _, _ in decode(*reads)]
    assert got == expected
    assert [(n, d) for n, d, _, _ in decode(raw)] == expected


# -- property: any bytes, any split: the decoder agrees with a whole-input reference -------------
#
# The reference follows the WHATWG parsing rules literally on the whole input at
# once (plus this decoder's documented choices: a last event without its blank
# line is delivered, ``retry`` longer than 18 digits is ignored). The decoder
# sees the same bytes in arbitrary reads, so CRLF pairs, UTF-8 characters and the
# BOM get split at every possible point, and line ends are mixed at random.

Event = tuple[str, str, str, int | None]


def reference(raw: bytes) -> tuple[list[Event], int]:
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    *lines, last = re.split(rb"\r\n|\r|\n", raw)
    if last:  # no line end at the very end: still a line (flush)
        lines.append(last)
    events: list[Event] = []
    data: list[bytes] = []
    name, last_id, retry, comments = "", "", None, 0
    for line in lines:
        if not line:
            if data:
                text = b"\n".join(data).decode("utf-8", "replace")
                events.append((name or "message", text, last_id, retry))
            data, name, retry = [], "", None
            continue
        if line.startswith(b":"):
            comments += 1
            continue
        field, _, value = line.partition(b":")
        if value.startswith(b" "):
            value = value[1:]
        if field == b"data":
            data.append(value)
        elif field == b"event":
            name = value.decode("utf-8", "replace")
        elif field == b"id" and b"\0" not in value:
            last_id = value.decode("utf-8", "replace")
        elif field == b"retry" and value.isdigit() and len(value) <= 18:
            retry = int(value)
    if data:  # the end of the stream delivers the last event (the decoder's flush)
        events.append(
            (name or "message", b"\n".join(data).decode("utf-8", "replace"), last_id, retry)
        )
    return events, comments


_SSE_BITS = [
    b"data", b"data:", b"data: ", b"event: ", b"event:error", b"id: ", b"id:7", b"retry: ",
    b"retry:", b"1500", b"9" * 30, b"9" * 5000, b":", b": ping", b"\n", b"\n", b"\r", b"\r\n",
    b"\n\n", b"\r\n\r\n", b" ", b"x", b"\x00", b"\xef\xbb\xbf", b"\xef\xbb", b"\xc3", b"\xa9",
    "é羊🐑".encode(), b"\xf0\x9f", b"\xff", b"[DONE]", b'{"a": 1}',
]  # fmt: skip

_sse_bytes = st.one_of(
    st.lists(st.sampled_from(_SSE_BITS), max_size=40).map(b"".join), st.binary(max_size=200)
)


def _split(raw: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(raw) + 1) for c in cuts})
    return [raw[a:b] for a, b in zip([0, *points], [*points, len(raw)], strict=True)]


@given(raw=_sse_bytes, cuts=st.lists(st.integers(min_value=0), max_size=20))
@example(raw=b"retry: " + b"9" * 5000 + b"\n\n", cuts=[])  # int() raised a bare ValueError
@example(raw=b"\xef\xbb\xbfdata: a\r\ndata: \xc3\xa9\r\rdata: b", cuts=[1, 2, 10, 20, 21])
@example(raw=b"data: a\r\n\r\ndata: b\r", cuts=[8, 9])
def test_any_bytes_any_split_match_the_reference(raw: bytes, cuts: list[int]) -> None:
    decoder = SSEDecoder()
    events: list[ServerSentEvent] = []
    for read in _split(raw, cuts):
        events += decoder.feed(read)
    events += decoder.flush()
    expected, comments = reference(raw)
    assert [(e.event, e.data, e.id, e.retry) for e in events] == expected
    assert decoder.comments == comments


@given(raw=_sse_bytes, cuts=st.lists(st.integers(min_value=0), max_size=20))
def test_line_limit_fails_only_with_sse_error(raw: bytes, cuts: list[int]) -> None:
    limit = 16
    decoder = SSEDecoder(max_line=limit)
    got: list[Event] = []
    try:
        for read in _split(raw, cuts):
            got += [(e.event, e.data, e.id, e.retry) for e in decoder.feed(read)]
        got += [(e.event, e.data, e.id, e.retry) for e in decoder.flush()]
    except SSEError:
        # Only a line longer than the limit may cause it.
        body = raw[3:] if raw.startswith(b"\xef\xbb\xbf") else raw
        assert max(len(line) for line in re.split(rb"\r\n|\r|\n", body)) > limit
        return
    # Without the error, nothing was cut short.
    assert got == reference(raw)[0]
