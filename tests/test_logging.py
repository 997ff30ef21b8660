"""Logging through ``logging.getLogger("holysheep_async")``: one DEBUG line per request,
retries and cooldowns at INFO, and never the API key (a canary key is searched for)."""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator, Iterator

import pytest

from holysheep_async import AsyncClient, AuthenticationError, InternalServerError
from holysheep_async.testing import MockServer

pytestmark = pytest.mark.anyio

CANARY = "sk-canary-7f3a9c1e5b2d4f6a8c0e"
LINE = re.compile(
    r"^(?P<method>[A-Z]+) (?P<path>\S+) -> (?P<status>\d{3}) request_id=(?P<rid>\S+)"
    r" attempt=(?P<attempt>\d+) (?P<ms>\d+\.\d) ms$"
)
MSGS = [{"role": "user", "content": "log me"}]


@pytest.fixture(scope="module")
def canary_server() -> Iterator[MockServer]:
    srv = MockServer(api_keys=[CANARY])
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture
async def canary_client(
    canary_server: MockServer, fake_sleep: object
) -> AsyncIterator[AsyncClient]:
    canary_server.clear_faults()
    async with AsyncClient(api_key=CANARY, base_url=canary_server.base_url) as c:
        c._requester.sleep = fake_sleep  # type: ignore[assignment]
        yield c
    canary_server.clear_faults()


def request_lines(caplog: pytest.LogCaptureFixture) -> list[re.Match[str]]:
    out = []
    for record in caplog.records:
        if record.name == "holysheep_async" and record.levelno == logging.DEBUG:
            match = LINE.match(record.getMessage())
            if match:
                out.append(match)
    return out


def assert_no_key(caplog: pytest.LogCaptureFixture) -> None:
    """The key is in no record of any logger (httpx and httpcore included)."""
    handler_text = caplog.text
    assert CANARY not in handler_text
    for record in caplog.records:
        assert CANARY not in record.getMessage()
        assert CANARY not in repr(record.args)
        assert CANARY not in str(record.exc_info)


async def test_one_debug_line_per_request(
    canary_client: AsyncClient, canary_server: MockServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)  # every logger, so httpx/httpcore are checked for the key too
    await canary_client.chat.create(model="gpt-4o", messages=MSGS, max_tokens=2)
    async with canary_client.chat.stream(model="gpt-4o", messages=MSGS, max_tokens=2) as stream:
        async for _ in stream:
            pass
    lines = request_lines(caplog)
    assert len(lines) == 2
    sent = canary_server.requests[-2:]
    for match, request in zip(lines, sent, strict=True):
        assert match["method"] == "POST"
        assert match["path"] == "/chat/completions"
        assert match["status"] == "200"
        assert match["rid"] == request.request_id
        assert match["attempt"] == "1"
    assert_no_key(caplog)


async def test_retries_and_cooldowns_are_logged_at_info(
    canary_client: AsyncClient, canary_server: MockServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    canary_server.inject("status", status=429, headers={"retry-after": "2"})
    canary_server.inject("status", status=503)
    await canary_client.chat.create(model="gpt-4o", messages=MSGS, max_tokens=1)
    lines = request_lines(caplog)
    assert [(m["status"], m["attempt"]) for m in lines] == [
        ("429", "1"),
        ("503", "2"),
        ("200", "3"),
    ]
    info = [
        r.getMessage()
        for r in caplog.records
        if r.name == "holysheep_async" and r.levelno == logging.INFO
    ]
    assert any("429" in m and "pauses 2.000 s" in m and "cooldown" in m for m in info), info
    retries = [m for m in info if m.startswith("retrying POST /chat/completions")]
    assert len(retries) == 2
    assert "in 2.000 s (attempt 2 of 4)" in retries[0]
    assert "(attempt 3 of 4)" in retries[1]
    assert_no_key(caplog)


async def test_no_debug_lines_above_debug(
    canary_client: AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="holysheep_async")
    await canary_client.chat.create(model="gpt-4o", messages=MSGS, max_tokens=1)
    assert request_lines(caplog) == []
    assert [r for r in caplog.records if r.name == "holysheep_async"] == []


async def test_failures_never_log_the_key(
    canary_server: MockServer, fake_sleep: object, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    # A wrong key that contains the canary: the server's 401 must not leak it either.
    async with AsyncClient(api_key=CANARY + "-wrong", base_url=canary_server.base_url) as client:
        with pytest.raises(AuthenticationError) as info:
            await client.chat.create(model="gpt-4o", messages=MSGS)
        assert CANARY not in str(info.value)
    async with AsyncClient(api_key=CANARY, base_url=canary_server.base_url, max_retries=1) as c:
        c._requester.sleep = fake_sleep  # type: ignore[assignment]
        canary_server.inject("status", status=500, body=f"echo {CANARY}", times=2)
        with pytest.raises(InternalServerError) as err:
            await c.chat.create(model="gpt-4o", messages=MSGS)
        assert CANARY not in str(err.value)
    assert_no_key(caplog)
