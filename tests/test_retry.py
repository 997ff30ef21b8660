"""The retry policy: what is retried, how long the client waits, and when it gives up."""

from __future__ import annotations

import email.utils
import socket
import time

import httpx
import pytest

from holysheep_async import (
    APIConnectionError,
    AsyncClient,
    BadRequestError,
    InternalServerError,
    RateLimitError,
    RetryPolicy,
)
from holysheep_async.retry import parse_retry_after
from holysheep_async.testing import MockServer

from .conftest import FakeSleep

pytestmark = pytest.mark.anyio

MESSAGES = [{"role": "user", "content": "retry me"}]


def sent_since(server: MockServer, before: int) -> int:
    return sum(1 for r in server.requests[before:] if r.path == "/v1/chat/completions")


async def test_429_waits_what_retry_after_asks(
    client: AsyncClient, server: MockServer, fake_sleep: FakeSleep
) -> None:
    before = len(server.requests)
    server.inject("status", status=429, headers={"retry-after": "2"})
    completion = await client.chat.create(model="m", messages=MESSAGES)
    assert completion.text
    assert fake_sleep.calls == [2.0]
    assert sent_since(server, before) == 2


async def test_retry_after_ms_wins_over_retry_after(
    client: AsyncClient, server: MockServer, fake_sleep: FakeSleep
) -> None:
    server.inject("status", status=429, headers={"retry-after-ms": "1500", "retry-after": "9"})
    await client.chat.create(model="m", messages=MESSAGES)
    assert fake_sleep.calls == [1.5]


async def test_retry_after_as_http_date(
    client: AsyncClient, server: MockServer, fake_sleep: FakeSleep
) -> None:
    when = email.utils.formatdate(time.time() + 30, usegmt=True)
    server.inject("status", status=503, headers={"retry-after": when})
    await client.chat.create(model="m", messages=MESSAGES)
    assert len(fake_sleep.calls) == 1
    assert 27 <= fake_sleep.calls[0] <= 30


@pytest.mark.parametrize("status", [408, 409, 429, 500, 502, 503, 504])
async def test_retryable_statuses(
    client: AsyncClient, server: MockServer, fake_sleep: FakeSleep, status: int
) -> None:
    before = len(server.requests)
    server.inject("status", status=status, times=2)
    await client.chat.create(model="m", messages=MESSAGES)
    assert sent_since(server, before) == 3
    assert len(fake_sleep.calls) == 2


@pytest.mark.parametrize("status", [400, 401, 403, 404, 422])
async def test_other_4xx_are_never_retried(
    client: AsyncClient, server: MockServer, fake_sleep: FakeSleep, status: int
) -> None:
    before = len(server.requests)
    server.inject("status", status=status, times=5)
    with pytest.raises(Exception) as info:
        await client.chat.create(model="m", messages=MESSAGES)
    assert getattr(info.value, "status_code", None) == status
    assert sent_since(server, before) == 1
    assert fake_sleep.calls == []


async def test_max_retries_is_respected(server: MockServer, fake_sleep: FakeSleep) -> None:
    async with AsyncClient(api_key="test-key", base_url=server.base_url, max_retries=2) as client:
        client._requester.sleep = fake_sleep
        before = len(server.requests)
        server.inject("status", status=500, times=10)
        with pytest.raises(InternalServerError):
            await client.chat.create(model="m", messages=MESSAGES)
        assert sent_since(server, before) == 3  # 1 + 2 retries
        assert len(fake_sleep.calls) == 2


async def test_max_retries_zero_sends_once(server: MockServer, fake_sleep: FakeSleep) -> None:
    async with AsyncClient(api_key="test-key", base_url=server.base_url, max_retries=0) as client:
        client._requester.sleep = fake_sleep
        before = len(server.requests)
        server.inject("status", status=503, times=10)
        with pytest.raises(InternalServerError):
            await client.chat.create(model="m", messages=MESSAGES)
        assert sent_since(server, before) == 1
        assert fake_sleep.calls == []


async def test_x_should_retry_overrides_the_status_rule(
    client: AsyncClient, server: MockServer, fake_sleep: FakeSleep
) -> None:
    before = len(server.requests)
    server.inject("status", status=400, headers={"x-should-retry": "true"})
    await client.chat.create(model="m", messages=MESSAGES)
    assert sent_since(server, before) == 2

    before = len(server.requests)
    server.inject("status", status=503, headers={"x-should-retry": "false"}, times=5)
    with pytest.raises(InternalServerError):
        await client.chat.create(model="m", messages=MESSAGES)
    assert sent_since(server, before) == 1


async def test_absurd_wait_fails_fast_with_a_clear_error(
    client: AsyncClient, server: MockServer, fake_sleep: FakeSleep
) -> None:
    before = len(server.requests)
    server.inject("status", status=429, headers={"retry-after": "3600"})
    with pytest.raises(RateLimitError, match="asked to wait 3600 s") as info:
        await client.chat.create(model="m", messages=MESSAGES)
    assert info.value.status_code == 429
    assert fake_sleep.calls == []
    assert sent_since(server, before) == 1


async def test_backoff_without_server_advice_grows_and_is_capped(
    server: MockServer, fake_sleep: FakeSleep
) -> None:
    policy = RetryPolicy(max_retries=5, initial_delay=0.5, max_delay=2.0, jitter=0.0)
    async with AsyncClient(api_key="test-key", base_url=server.base_url, retry=policy) as client:
        client._requester.sleep = fake_sleep
        server.inject("status", status=500, times=5)
        await client.chat.create(model="m", messages=MESSAGES)
    assert fake_sleep.calls == [0.5, 1.0, 2.0, 2.0, 2.0]


async def test_connection_errors_are_retried(fake_sleep: FakeSleep) -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there now
    async with AsyncClient(
        api_key="k", base_url=f"http://127.0.0.1:{port}/v1", max_retries=2
    ) as client:
        client._requester.sleep = fake_sleep
        with pytest.raises(APIConnectionError, match="connection failed"):
            await client.chat.create(model="m", messages=MESSAGES)
    assert len(fake_sleep.calls) == 2


def test_jitter_stays_within_bounds() -> None:
    policy = RetryPolicy(initial_delay=1.0, max_delay=8.0, jitter=0.25)
    for retry in range(1, 8):
        base = min(8.0, 2.0 ** (retry - 1))
        for _ in range(50):
            assert base * 0.75 <= policy.backoff(retry) <= base


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({}, None),
        ({"retry-after": "3"}, 3.0),
        ({"retry-after": "0.25"}, 0.25),
        ({"retry-after-ms": "250"}, 0.25),
        ({"retry-after-ms": "nonsense", "retry-after": "4"}, 4.0),
        ({"retry-after": "-5"}, None),
        ({"retry-after": "soon"}, None),
        ({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}, 0.0),  # in the past
    ],
)
def test_parse_retry_after(headers: dict[str, str], expected: float | None) -> None:
    assert parse_retry_after(headers) == expected


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        # LiteLLM-based relays rename the provider's headers (llm_provider-...).
        ({"llm_provider-retry-after": "3"}, 3.0),
        ({"llm_provider-retry-after-ms": "250"}, 0.25),
        ({"llm_provider-retry-after-ms": "250", "llm_provider-retry-after": "9"}, 0.25),
        ({"llm_provider-retry-after-ms": "soon", "llm_provider-retry-after": "9"}, 9.0),
        ({"llm_provider-retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}, 0.0),
        ({"llm_provider-retry-after": "-1"}, None),
        # The standard headers win when both are there and usable.
        ({"retry-after": "2", "llm_provider-retry-after": "9"}, 2.0),
        ({"retry-after": "2", "llm_provider-retry-after-ms": "9000"}, 2.0),
        ({"retry-after-ms": "100", "llm_provider-retry-after-ms": "9000"}, 0.1),
        # A standard header that says nothing usable does not hide the relay's.
        ({"retry-after": "soon", "llm_provider-retry-after": "5"}, 5.0),
    ],
)
def test_parse_relay_retry_after(headers: dict[str, str], expected: float | None) -> None:
    assert parse_retry_after(headers) == expected
    # HTTP header names are case-insensitive.
    assert parse_retry_after(httpx.Headers({k.upper(): v for k, v in headers.items()})) == expected


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"llm_provider-retry-after": "2"}, 2.0),
        ({"llm_provider-retry-after-ms": "1500"}, 1.5),
        ({"retry-after": "1", "llm_provider-retry-after": "7"}, 1.0),
    ],
)
async def test_429_from_a_litellm_relay_waits_what_it_asks(
    client: AsyncClient,
    server: MockServer,
    fake_sleep: FakeSleep,
    headers: dict[str, str],
    expected: float,
) -> None:
    before = len(server.requests)
    server.inject("status", status=429, headers=headers)
    completion = await client.chat.create(model="m", messages=MESSAGES)
    assert completion.text
    assert fake_sleep.calls == [expected]
    assert sent_since(server, before) == 2


async def test_relay_asking_too_long_a_wait_fails_fast(
    client: AsyncClient, server: MockServer, fake_sleep: FakeSleep
) -> None:
    server.inject("status", status=429, headers={"llm_provider-retry-after": "3600"})
    with pytest.raises(RateLimitError, match="3600"):
        await client.chat.create(model="m", messages=MESSAGES)
    assert fake_sleep.calls == []


def test_policy_rejects_nonsense() -> None:
    with pytest.raises(ValueError, match="max_retries"):
        RetryPolicy(max_retries=-1)
    with pytest.raises(ValueError, match="jitter"):
        RetryPolicy(jitter=2)


async def test_bad_request_is_raised_not_retried_on_stream(
    client: AsyncClient, server: MockServer, fake_sleep: FakeSleep
) -> None:
    before = len(server.requests)
    server.inject("status", status=400, message="bad param")
    with pytest.raises(BadRequestError, match="bad param"):
        async with client.chat.stream(model="m", messages=MESSAGES) as stream:
            async for _ in stream:
                pass
    assert sent_since(server, before) == 1
