"""JSON on the hot paths (issue 25): request bodies and streamed chunks through orjson,
with the standard library's and pydantic-core's answers wherever orjson's would differ.

Request bodies: the JSON the stdlib encoder (what httpx's ``json=`` uses) writes, or
its error. Chunks: the objects pydantic-core's parser read before, NaN and the
lenient cases included.
"""

from __future__ import annotations

import dataclasses
import datetime
import enum
import json
import math
import uuid
from collections import OrderedDict
from typing import Any, cast

import pytest
from hypothesis import given
from hypothesis import strategies as st

from holysheep_async._requester import _ENCODE, _json_bytes
from holysheep_async.sse import SSEDecoder
from holysheep_async.streaming._chat import ChatState
from holysheep_async.streaming._metrics import StreamMetrics
from holysheep_async.streaming._wire import Requesting, Wire


def stdlib(value: Any) -> bytes:
    return _ENCODE(value).encode()


def outcome(encode: Any, value: Any) -> Any:
    try:
        return encode(value)
    except Exception as exc:
        return type(exc)


# -- request bodies -----------------------------------------------------------------

_json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(), children, max_size=4)
    ),
    max_leaves=12,
)


def _has_float(value: Any) -> bool:
    if isinstance(value, float):
        return True
    if isinstance(value, dict):
        return any(_has_float(v) for v in value.values())
    if isinstance(value, list):
        return any(_has_float(v) for v in value)
    return False


@given(value=_json_values)
def test_a_body_is_the_json_the_stdlib_writes(value: Any) -> None:
    ours = _json_bytes(value)
    assert json.loads(ours) == json.loads(stdlib(value))
    if not _has_float(value):  # a float may spell its exponent otherwise: 1e-7 for 1e-07
        assert ours == stdlib(value)


def test_a_typical_body_is_byte_for_byte_the_stdlib_one() -> None:
    body = {
        "model": "gpt-4o",
        "messages": [{"role": "user", "content": "h\u00e9llo \U0001f411\n\t\x01\u2028"}],
        "temperature": 0.2,
        "max_tokens": 16,
        "stream": True,
        "stop": None,
        "logit_bias": {"50256": -100},
    }
    assert _json_bytes(body) == stdlib(body)
    assert _json_bytes({**body, "stop": ["\n"]}) == stdlib({**body, "stop": ["\n"]})


class _Str(str):
    pass


class _Int(int):
    pass


class _Dict(dict[str, Any]):
    pass


class _Color(enum.IntEnum):
    RED = 1


@dataclasses.dataclass
class _Point:
    x: int


@pytest.mark.parametrize(
    "value",
    [
        {"t": math.nan},
        {"t": math.inf},
        {"t": [1.0, -math.inf]},
        {1: "int key", None: "none key", 2.5: "float key", False: "bool key"},
        {"s": _Str("x"), "i": _Int(3), "d": _Dict(a=1), "e": _Color.RED},
        OrderedDict(a=1),
        {"big": 2**80, "neg": -(2**70)},
        {"when": datetime.datetime(2026, 1, 1)},
        {"day": datetime.date(2026, 1, 1)},
        {"p": _Point(1)},
        {"set": {1}},
        {"bytes": b"x"},
        {"surrogate": "\ud800"},
        {"deep": json.loads("[" * 300 + "1" + "]" * 300)},  # deeper than orjson goes
    ],
)
def test_what_orjson_writes_differently_is_left_to_the_stdlib(value: Any) -> None:
    assert outcome(_json_bytes, value) == outcome(stdlib, value)


def test_nan_is_refused_as_httpx_refuses_it() -> None:
    with pytest.raises(ValueError, match="Out of range float values are not JSON compliant"):
        _json_bytes({"temperature": math.nan})


def test_a_uuid_and_an_enum_member_are_written_as_their_values() -> None:
    # The one difference kept (documented in _json_bytes): the stdlib refuses these.
    class Mode(enum.Enum):
        FAST = "fast"

    value = {"id": uuid.UUID(int=1), "mode": Mode.FAST}
    assert json.loads(_json_bytes(value)) == {
        "id": "00000000-0000-0000-0000-000000000001",
        "mode": "fast",
    }


# -- streamed chunks ----------------------------------------------------------------


def parse(raw: bytes) -> list[Any]:
    state = ChatState()
    wire = Wire(cast(Requesting, None), state, state.errors, StreamMetrics(), None, None)
    return [obj for obj, *_ in wire._parse(SSEDecoder().feed_raw(raw))]


def test_chunks_orjson_refuses_are_read_as_before() -> None:
    raw = (
        b'data: {"choices": [], "x": NaN}\n\n'  # pydantic-core takes NaN
        b'data: {"choices": [], "x": -Infinity}\n\n'
        b'data: {"choices": [], "x": 1E400}\n\n'  # past a double's range: inf
        b'data: {"choices": [], "x": "tab\there"}\n\n'  # a raw control character: lenient
        b'data: {"choices": [], "x": "\\ud800"}\n\n'  # an escaped lone surrogate: lenient
        b'data: {"choices": [], "x": 12345678901234567890}\n\n'  # fits 64 bits: an int
    )
    got = [obj["x"] for obj in parse(raw)]
    assert math.isnan(got[0])
    assert got[1:] == [-math.inf, math.inf, "tab\there", "\ud800", 12345678901234567890]


def test_a_chunk_that_is_not_utf8_is_read_with_replacement_characters() -> None:
    got = parse(b'data: {"choices": [], "x": "a\xffb"}\n\n')
    assert got[0]["x"] == "a\ufffdb"
