"""The hot path's ready-made httpx objects (``_lean``) and what users see of them.

The default client builds its requests, and its transport the responses that came
whole with their head, without httpx's constructors (issue 25). These tests hold
them to httpx's own builds attribute for attribute and behaviour for behaviour,
then check through the client that a malformed answer is still the typed error
with its status and request id, that headers, the request, ``elapsed`` and the
rate limits stay visible, and that the response cap still applies.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from holysheep_async import AsyncClient, InvalidResponseError, ResponseTooLargeError, _lean
from holysheep_async._lean import _vars

from .rawserver import Conn, RawServer, ok

pytestmark = pytest.mark.anyio

COMPLETION = (
    b'{"id":"c1","object":"chat.completion","created":1,"model":"m","choices":[{"index":0,'
    b'"message":{"role":"assistant","content":"hi"},"finish_reason":"stop"}],'
    b'"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}}'
)
MESSAGES = [{"role": "user", "content": "hi"}]


def triples(pairs: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes, bytes]]:
    return [(k, k.lower(), v) for k, v in pairs]


def test_the_lean_builds_are_on_for_this_httpx() -> None:
    # Off, everything still works (httpx's constructors), only slower: this says so in CI.
    assert _lean.LEAN, f"httpx {httpx.__version__}: its objects are not laid out as expected"


HEADS = [
    [(b"Content-Type", b"application/json"), (b"Content-Length", b"2")],
    [(b"content-length", b"0")],
    [(b"Set-Cookie", b"a=1"), (b"set-cookie", b"b=2"), (b"Content-Length", b"2")],
    [(b"X-Name", "caf\u00e9".encode("latin-1")), (b"Content-Length", b"2")],
    [(b"X-Name", "caf\u00e9".encode()), (b"Content-Length", b"2")],
]


@pytest.mark.parametrize("pairs", HEADS)
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_a_read_response_is_httpx_own(pairs: list[tuple[bytes, bytes]]) -> None:
    content = b"" if pairs == [(b"content-length", b"0")] else b"{}"
    ext = {"http_version": b"HTTP/1.1", "reason_phrase": b"OK"}
    theirs = httpx.Response(200, headers=pairs, content=content, extensions=dict(ext))
    ours = _lean.read_response(200, _lean.headers_from_pairs(pairs), content, dict(ext))
    expected = _vars(theirs)
    del expected["_decoder"]  # made by read(); ours makes it when first asked, as httpx can
    assert _vars(ours) == expected
    for response in (ours, theirs):
        response.request = httpx.Request("POST", "http://h/v1/chat/completions")
    assert repr(ours) == repr(theirs)
    assert ours.headers.multi_items() == theirs.headers.multi_items()
    assert ours.headers.encoding == theirs.headers.encoding
    assert (ours.content, ours.text, ours.encoding) == (theirs.content, theirs.text, "utf-8")
    if content:
        assert ours.json() == theirs.json() == {}
    assert (ours.is_closed, ours.is_stream_consumed) == (True, True)
    assert ours.num_bytes_downloaded == theirs.num_bytes_downloaded
    assert (ours.http_version, ours.reason_phrase) == ("HTTP/1.1", "OK")
    assert list(ours.iter_bytes()) == list(theirs.iter_bytes())
    assert [b async for b in ours.aiter_bytes()] == [b async for b in theirs.aiter_bytes()]
    assert await ours.aread() == content
    await ours.aclose()
    again = pickle.loads(pickle.dumps(ours))
    assert (again.status_code, again.content, again.headers) == (200, content, ours.headers)
    assert dict(ours.cookies) == dict(theirs.cookies)


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_a_request_is_httpx_own() -> None:
    pairs = [(b"Host", b"h:8"), (b"Authorization", b"Bearer k"), (b"Content-Length", b"7")]
    url = httpx.URL("http://h:8/v1/chat/completions?x=1")
    theirs = httpx.Request(
        "POST", url, headers=pairs, stream=httpx.ByteStream(b'{"a":1}'), extensions={"t": 1}
    )
    theirs.read()
    ours = _lean.request(
        "POST", url, _lean.headers_from_triples(triples(pairs)), b'{"a":1}', {"t": 1}
    )
    assert _vars(ours) == _vars(theirs)
    assert repr(ours) == repr(theirs)
    assert ours.content == b'{"a":1}'
    assert list(ours.stream) == [b'{"a":1}']  # type: ignore[arg-type]
    assert [b async for b in ours.stream] == [b'{"a":1}']  # type: ignore[union-attr]
    assert ours.headers["authorization"] == "Bearer k"


_names = st.sampled_from([b"X-A", b"x-a", b"X-B", b"Set-Cookie", b"connection", b"Connection"])
_values = st.binary(min_size=0, max_size=6).filter(lambda v: b"\r" not in v and b"\n" not in v)


@given(pairs=st.lists(st.tuples(_names, _values), max_size=6), name=_names)
def test_header_value_is_what_get_says(pairs: list[tuple[bytes, bytes]], name: bytes) -> None:
    headers = _lean.headers_from_pairs(pairs)
    assert headers.raw == httpx.Headers(pairs).raw
    got = _lean.header_value(headers, name.lower())
    expected = httpx.Headers(pairs).get(name.decode())
    assert got == (None if expected is None else expected.encode(headers.encoding))
    assert _lean.header_list(headers) == triples(pairs)


def test_without_the_lean_builds_the_constructors_give_the_same(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pairs = [(b"X-Request-Id", b"r1"), (b"Content-Length", b"2")]
    ext: dict[str, Any] = {"http_version": b"HTTP/1.1"}
    lean = _lean.read_response(200, _lean.headers_from_pairs(pairs), b"{}", dict(ext))
    monkeypatch.setattr(_lean, "LEAN", False)
    plain = _lean.read_response(200, _lean.headers_from_pairs(pairs), b"{}", dict(ext))
    assert (plain.content, plain.headers.raw, plain.is_closed) == (b"{}", pairs, True)
    assert _lean.header_value(plain.headers, b"x-request-id") == b"r1"
    assert _lean.header_list(plain.headers) == _lean.header_list(lean.headers)
    url = httpx.URL("http://h/p")
    request = _lean.request("GET", url, _lean.headers_from_triples(triples(pairs)), b"", {})
    assert (request.content, request.headers.raw) == (b"", pairs)


# -- through the client, on the default transport -------------------------------------


@pytest.fixture
def raw() -> Iterator[Callable[[Callable[[Conn], None]], RawServer]]:
    servers: list[RawServer] = []

    def start(handler: Callable[[Conn], None]) -> RawServer:
        srv = RawServer(handler)
        servers.append(srv)
        return srv

    yield start
    for srv in servers:
        srv.close()


def answering(*answers: bytes) -> Callable[[Conn], None]:
    left = list(answers)

    def handler(conn: Conn) -> None:
        while left and conn.read_request() is not None:
            conn.send(left.pop(0))

    return handler


async def test_a_completion_keeps_its_response_headers_and_request(raw: Any) -> None:
    extra = (
        b"content-type: application/json\r\nx-request-id: req-42\r\n"
        b"x-ratelimit-remaining-requests: 59\r\nx-ratelimit-limit-tokens: 1000\r\n"
    )
    srv = raw(answering(ok(COMPLETION, extra), ok(COMPLETION, extra)))
    async with AsyncClient(api_key="test-key", base_url=f"{srv.url}/v1") as client:
        completion = await client.chat.create(model="m", messages=MESSAGES)
        reply = await client._requester.request("POST", "/chat/completions", json={"model": "m"})
    assert completion.text == "hi" and completion.usage is not None
    assert completion.request_id == "req-42"
    assert completion.rate_limits == {"remaining-requests": "59", "limit-tokens": "1000"}
    assert completion.response_headers["content-type"] == "application/json"
    response = reply.response
    assert response.status_code == 200 and response.json()["id"] == "c1"
    assert response.headers["x-request-id"] == "req-42"
    assert response.request.url == f"{srv.url}/v1/chat/completions"
    assert response.request.headers["content-type"] == "application/json"
    assert response.elapsed.total_seconds() > 0
    assert (response.http_version, response.reason_phrase) == ("HTTP/1.1", "OK")


@pytest.mark.parametrize(
    "body",
    [b"{not json", b'{"choices": "none"}', b"[1, 2]", b'{"choices": [{"message": 5}]}'],
)
async def test_a_malformed_completion_is_the_typed_error_with_status_and_request_id(
    raw: Any, body: bytes
) -> None:
    srv = raw(answering(ok(body, b"content-type: application/json\r\nx-request-id: req-bad\r\n")))
    async with AsyncClient(api_key="test-key", base_url=f"{srv.url}/v1") as client:
        with pytest.raises(InvalidResponseError) as info:
            await client.chat.create(model="m", messages=MESSAGES)
    assert info.value.status_code == 200
    assert info.value.request_id == "req-bad"
    assert "chat.completion" in str(info.value)


async def test_an_answer_read_with_its_head_is_still_capped(raw: Any) -> None:
    # 600 bytes come in the read that brings the head: read whole by the transport.
    body = b'{"object":"list","data":[]}' + b" " * 573
    srv = raw(answering(ok(body, b"x-request-id: req-big\r\n"), ok(body)))
    async with AsyncClient(
        api_key="test-key", base_url=f"{srv.url}/v1", max_response_bytes=599
    ) as small:
        with pytest.raises(ResponseTooLargeError) as info:
            await small.models.list()
    assert info.value.request_id == "req-big"
    async with AsyncClient(
        api_key="test-key", base_url=f"{srv.url}/v1", max_response_bytes=600
    ) as fits:
        assert await fits.models.list() == []
