"""``max_response_bytes``: what a non-streamed answer may read into memory (issue 24).

A server or relay that answers a non-streamed request with hundreds of megabytes
fails while the body is read, at the cap, with an error naming the cap, the request
and its request id; streams and downloads are not capped that way.
"""

from __future__ import annotations

import gzip
import json
import threading
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path

import anyio
import pytest

from holysheep_async import (
    AsyncClient,
    Client,
    ConfigurationError,
    InternalServerError,
    ResponseTooLargeError,
)
from holysheep_async._body import DEFAULT_MAX_RESPONSE_BYTES
from holysheep_async.testing import MockServer

from .rawserver import Conn, RawServer, ok

pytestmark = pytest.mark.anyio

MIB = 2**20


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


def head(*lines: str) -> bytes:
    return ("HTTP/1.1 200 OK\r\n" + "".join(f"{x}\r\n" for x in lines) + "\r\n").encode()


async def test_a_huge_body_fails_at_the_cap_with_bounded_memory(
    raw: Callable[[Callable[[Conn], None]], RawServer],
) -> None:
    body_size = 64 * MIB
    cap = 4 * MIB
    sent = [0]

    def handler(conn: Conn) -> None:
        conn.read_request()
        # Chunked: no length to refuse it by, so the cap must be checked while reading.
        conn.send(
            head(
                "content-type: application/json",
                "x-request-id: req_huge",
                "transfer-encoding: chunked",
            )
        )
        chunk = b"%x\r\n%b\r\n" % (MIB, b" " * MIB)
        while sent[0] < body_size:
            conn.send(chunk)
            sent[0] += MIB
        conn.send(b"0\r\n\r\n")

    srv = raw(handler)
    base = f"{srv.url}/v1"
    async with AsyncClient(api_key="test-key", base_url=base, max_response_bytes=cap) as client:
        tracemalloc.start()
        try:
            with anyio.fail_after(60), pytest.raises(ResponseTooLargeError) as info:
                await client.models.list()
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert peak < 3 * cap, f"peak {peak:,} bytes for a cap of {cap:,}"
    assert sent[0] < body_size  # the client stopped reading; the server could not finish
    error = info.value
    assert error.limit == cap and error.request_id == "req_huge" and error.status_code == 200
    assert f"GET {base}/models" in str(error)
    assert "max_response_bytes=4,194,304 (4 MiB)" in str(error)
    assert "req_huge" in str(error)
    assert srv.accepted == 1  # not retried


async def test_a_declared_length_over_the_cap_fails_before_the_body_is_read(
    raw: Callable[[Callable[[Conn], None]], RawServer],
) -> None:
    release = threading.Event()

    def handler(conn: Conn) -> None:
        conn.read_request()
        conn.send(head("content-type: application/json", "content-length: 300000000"))
        release.wait(30)  # the body would come only after the client gave up on it

    srv = raw(handler)
    try:
        async with AsyncClient(
            api_key="test-key", base_url=f"{srv.url}/v1", max_response_bytes=MIB
        ) as client:
            with anyio.fail_after(20), pytest.raises(ResponseTooLargeError) as info:
                await client.chat.create(model="m", messages=[{"role": "user", "content": "x"}])
    finally:
        release.set()
    assert "(Content-Length 300,000,000)" in str(info.value)
    assert f"POST {srv.url}/v1/chat/completions" in str(info.value)
    assert srv.accepted == 1


async def test_the_cap_is_inclusive(raw: Callable[[Callable[[Conn], None]], RawServer]) -> None:
    cap = 10_000
    payload = json.dumps({"object": "list", "data": []}).encode()

    def sized(n: int) -> bytes:
        return payload + b" " * (n - len(payload))  # JSON allows trailing whitespace

    answers = [sized(cap), sized(cap + 1)]

    def handler(conn: Conn) -> None:
        while conn.read_request() is not None:
            conn.send(ok(answers.pop(0), b"content-type: application/json\r\n"))

    srv = raw(handler)
    async with AsyncClient(
        api_key="test-key", base_url=f"{srv.url}/v1", max_response_bytes=cap
    ) as client:
        assert await client.models.list() == []
        with pytest.raises(ResponseTooLargeError):
            await client.models.list()


async def test_a_compressed_body_is_capped_on_what_it_decodes_to(
    raw: Callable[[Callable[[Conn], None]], RawServer],
) -> None:
    packed = gzip.compress(b" " * (16 * MIB))  # a few KB on the wire

    def handler(conn: Conn) -> None:
        conn.read_request()
        conn.send(
            ok(packed, b"content-type: application/json\r\ncontent-encoding: gzip\r\n")
        )

    srv = raw(handler)
    assert len(packed) < MIB
    async with AsyncClient(
        api_key="test-key", base_url=f"{srv.url}/v1", max_response_bytes=MIB
    ) as client:
        with pytest.raises(ResponseTooLargeError, match="max_response_bytes=1,048,576"):
            await client.models.list()


async def test_an_error_answer_keeps_the_first_part_of_its_body(
    raw: Callable[[Callable[[Conn], None]], RawServer],
) -> None:
    page = b"<html><title>Bad gateway</title>" + b"x" * (4 * MIB) + b"</html>"

    def handler(conn: Conn) -> None:
        conn.read_request()
        conn.send(
            b"HTTP/1.1 502 Bad Gateway\r\ncontent-type: text/html\r\ncontent-length: %d\r\n\r\n%b"
            % (len(page), page)
        )

    srv = raw(handler)
    async with AsyncClient(
        api_key="test-key", base_url=f"{srv.url}/v1", max_response_bytes=MIB, max_retries=0
    ) as client:
        with pytest.raises(InternalServerError) as info:
            await client.models.list()
    message = str(info.value)
    assert message.startswith("502 Bad Gateway: HTML page: Bad gateway")
    assert "longer than 1,048,576 bytes: only that much was read" in message
    assert isinstance(info.value.body, str) and len(info.value.body) <= MIB


async def test_streams_and_downloads_are_not_capped(tmp_path: Path) -> None:
    cap = 2_048
    content = b"".join(b'{"line": %d, "pad": "%s"}\n' % (i, b"x" * 100) for i in range(2_000))
    async with (
        MockServer(api_keys=["test-key"]) as server,
        AsyncClient(api_key="test-key", base_url=server.base_url, max_response_bytes=cap) as client,
    ):
        file = await client.files.create(content, purpose="user_data")
        target = tmp_path / "copy.jsonl"
        await client.files.content(file.id, target)
        assert target.read_bytes() == content
        assert len(content) > 50 * cap

        async with client.chat.stream(
            model="m", messages=[{"role": "user", "content": "x"}], max_tokens=600
        ) as stream:
            text = "".join([t async for t in stream])
        assert len(text) > cap
        assert stream.finish_reason == "stop" and stream.usage is not None


def test_the_setting_is_checked_and_shown() -> None:
    assert DEFAULT_MAX_RESPONSE_BYTES == 256 * MIB
    assert AsyncClient(api_key="k").max_response_bytes == 256 * MIB
    assert AsyncClient(api_key="k", max_response_bytes=None).max_response_bytes is None
    for bad in (0, -1, True, 1.5, "1"):
        with pytest.raises(ConfigurationError, match="max_response_bytes"):
            AsyncClient(api_key="k", max_response_bytes=bad)  # type: ignore[arg-type]
    with Client(api_key="k", max_response_bytes=1_000) as client:
        assert client.async_client.max_response_bytes == 1_000
