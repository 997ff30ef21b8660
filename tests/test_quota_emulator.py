"""The emulator's per-key RPM / TPM quotas, and the client staying under them.

The emulator answers over quota like a real server: 429 in OpenAI's shape with
``retry-after-ms`` / ``retry-after``. A client whose ``rpm`` / ``tpm`` sit just
under the quota gets no 429 at all.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import anyio
import httpx
import pytest

from holysheep_async import AsyncClient
from holysheep_async.errors import RateLimitError
from holysheep_async.testing import MockServer, prompt_tokens

pytestmark = pytest.mark.anyio

MESSAGES = [{"role": "user", "content": "quota"}]


def _server(**options: object) -> Iterator[MockServer]:
    srv = MockServer(api_keys=["key-a", "key-b"], **options)
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture
def slow_quota() -> Iterator[MockServer]:
    # 6 a minute, one at a time: the second request within 10 s is over quota.
    yield from _server(rpm_quota=6)


async def _post(server: MockServer, key: str, body: dict[str, object]) -> httpx.Response:
    async with httpx.AsyncClient() as http:
        return await http.post(
            f"{server.base_url}/chat/completions",
            json=body,
            headers={"Authorization": f"Bearer {key}"},
        )


async def test_over_the_rpm_quota_answers_429_like_openai(slow_quota: MockServer) -> None:
    body = {"model": "m", "messages": MESSAGES, "max_tokens": 2}
    first = await _post(slow_quota, "key-a", body)
    second = await _post(slow_quota, "key-a", body)
    assert first.status_code == 200
    assert second.status_code == 429
    error = second.json()["error"]
    assert error["type"] == "requests"
    assert error["code"] == "rate_limit_exceeded"
    assert "Limit 6" in error["message"] and "(RPM)" in error["message"]
    wait_ms = int(second.headers["retry-after-ms"])
    assert 0 < wait_ms <= 10_000
    assert second.headers["retry-after"] == str(math.ceil(wait_ms / 1000))
    assert second.headers["x-ratelimit-limit-requests"] == "6"
    assert second.headers["x-ratelimit-remaining-requests"] == "0"
    assert second.headers["x-request-id"]
    assert slow_quota.state["quota_rejected"] == 1


async def test_quotas_are_per_key(slow_quota: MockServer) -> None:
    body = {"model": "m", "messages": MESSAGES, "max_tokens": 2}
    assert (await _post(slow_quota, "key-a", body)).status_code == 200
    assert (await _post(slow_quota, "key-b", body)).status_code == 200
    assert (await _post(slow_quota, "key-a", body)).status_code == 429


@pytest.fixture
def token_quota() -> Iterator[MockServer]:
    # 600 tokens per window, 10 at once; the window is 10 minutes so the bucket refills at
    # 1 token/s: the second request cannot have refilled by the time it arrives, however
    # slow a loaded machine is between the two (at 600 a minute it could: 10 tokens/s).
    yield from _server(tpm_quota=600, quota_window=600, quota_burst=10)


async def test_over_the_tpm_quota_answers_429_tokens(token_quota: MockServer) -> None:
    cost = prompt_tokens(MESSAGES) + 4  # exactly what the answer's usage will say
    assert cost <= 10 < 2 * cost
    body = {"model": "m", "messages": MESSAGES, "max_tokens": 4}
    first = await _post(token_quota, "key-a", body)
    assert first.json()["usage"]["total_tokens"] == cost
    second = await _post(token_quota, "key-a", body)
    assert second.status_code == 429
    error = second.json()["error"]
    assert error["type"] == "tokens"
    assert f"Requested {cost}" in error["message"] and "(TPM)" in error["message"]
    assert second.headers["x-ratelimit-limit-tokens"] == "600"
    assert int(second.headers["retry-after-ms"]) > 0


async def test_a_rejected_request_is_not_charged(slow_quota: MockServer) -> None:
    body = {"model": "m", "messages": MESSAGES, "max_tokens": 2}
    await _post(slow_quota, "key-a", body)
    for _ in range(3):
        assert (await _post(slow_quota, "key-a", body)).status_code == 429
    # Still a single request's wait, not four.
    last = await _post(slow_quota, "key-a", body)
    assert int(last.headers["retry-after-ms"]) <= 10_000


async def test_quota_window_scales_the_minute() -> None:
    # 60 requests per 600 s: one every 10 s, where the default window would say 1 s.
    for server in _server(rpm_quota=60, quota_window=600):
        body = {"model": "m", "messages": MESSAGES, "max_tokens": 2}
        assert (await _post(server, "key-a", body)).status_code == 200
        refused = await _post(server, "key-a", body)
        assert refused.status_code == 429
        assert 9_000 < int(refused.headers["retry-after-ms"]) <= 10_000


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"rpm_quota": 0}, "rpm_quota must be a number > 0"),
        ({"tpm_quota": "many"}, "tpm_quota must be a number > 0"),
        ({"rpm_quota": 10, "quota_window": -1}, "quota_window must be a number > 0"),
        ({"rpm_quota": 10, "quota_burst": float("inf")}, "quota_burst must be finite"),
    ],
)
def test_bad_quota_options_are_named(options: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        MockServer(**options)


def test_no_quota_no_hook() -> None:
    assert "quota_check" not in MockServer().state


# -- the client under the quota ------------------------------------------------------------------


@pytest.fixture
def busy_quota() -> Iterator[MockServer]:
    # 12,000 a minute, enforced per second (200 at once), like a real service.
    yield from _server(rpm_quota=12_000, record=False)


async def _hammer(
    client: AsyncClient, n: int, concurrency: int, max_tokens: int = 1
) -> tuple[int, int]:
    """Send ``n`` chat requests from ``concurrency`` workers: (succeeded, answered 429)."""
    done = refused = 0
    todo = iter(range(n))

    async def worker() -> None:
        nonlocal done, refused
        for i in todo:
            messages = [{"role": "user", "content": f"q{i}"}]
            try:
                await client.chat.create(model="m", messages=messages, max_tokens=max_tokens)
            except RateLimitError:
                refused += 1
            else:
                done += 1

    async with anyio.create_task_group() as tg:
        for _ in range(concurrency):
            tg.start_soon(worker)
    return done, refused


async def test_500_requests_just_under_the_rpm_quota_get_no_429(busy_quota: MockServer) -> None:
    async with AsyncClient(
        api_key="key-a",
        base_url=busy_quota.base_url,
        rpm=11_400,  # 95% of the quota
        burst=20,
        max_concurrency=50,
        max_retries=0,  # a single 429 would fail the run
    ) as client:
        assert await _hammer(client, 500, 50) == (500, 0)
        stats = client.limiter.stats()
    assert busy_quota.state["quota_rejected"] == 0
    assert stats.requests == 500
    assert stats.waited > 0  # the limiter, not luck, kept it under


@pytest.fixture
def small_quota() -> Iterator[MockServer]:
    yield from _server(rpm_quota=1200, record=False)  # 20 a second


async def test_without_client_limits_the_quota_refuses(small_quota: MockServer) -> None:
    # The control: the quota is real. 100 requests at once overflow a 20-request second.
    async with AsyncClient(
        api_key="key-b", base_url=small_quota.base_url, max_concurrency=100, max_retries=0
    ) as client:
        _, refused = await _hammer(client, 100, 100)
    assert refused > 0
    assert small_quota.state["quota_rejected"] == refused


@pytest.fixture
def busy_token_quota() -> Iterator[MockServer]:
    yield from _server(tpm_quota=120_000, record=False)  # 2,000 tokens a second


async def test_requests_just_under_the_tpm_quota_get_no_429(
    busy_token_quota: MockServer,
) -> None:
    async with AsyncClient(
        api_key="key-a",
        base_url=busy_token_quota.base_url,
        tpm=114_000,  # 95% of the quota
        rpm=60_000,  # not the limit here; its burst sets the token bucket to 0.2 s
        burst=200,
        max_concurrency=50,
        max_retries=0,
    ) as client:
        assert await _hammer(client, 200, 50, max_tokens=10) == (200, 0)
        stats = client.limiter.stats()
    assert busy_token_quota.state["quota_rejected"] == 0
    assert stats.waited > 0
    # Reconciled to the emulator's usage: the budget holds what was really spent.
    spent = sum(prompt_tokens([{"role": "user", "content": f"q{i}"}]) + 10 for i in range(200))
    assert stats.tokens_charged - stats.tokens_refunded == spent
