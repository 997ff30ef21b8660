"""Client configuration: precedence, validation, lifecycle, and the key never shown."""

from __future__ import annotations

import logging

import httpx
import pytest

from holysheep_async import (
    DEFAULT_BASE_URL,
    AsyncClient,
    AuthenticationError,
    ConfigurationError,
    __version__,
)
from holysheep_async.testing import MockServer

pytestmark = pytest.mark.anyio

CANARY = "sk-canary-0123456789abcdef"


def test_defaults_without_env() -> None:
    client = AsyncClient()
    assert client.base_url == DEFAULT_BASE_URL == "https://api.holysheep.ai/v1"
    assert client.has_api_key is False
    assert client.timeout == httpx.Timeout(600, connect=10)
    assert client.max_retries == 3
    assert client.stream_idle_timeout == 30.0


def test_env_is_used_when_arguments_are_not(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOLYSHEEP_API_KEY", "env-key")
    monkeypatch.setenv("HOLYSHEEP_BASE_URL", "https://relay.example/v1/")
    client = AsyncClient()
    assert client.has_api_key
    assert client._requester._api_key == "env-key"
    assert client.base_url == "https://relay.example/v1"


def test_arguments_beat_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOLYSHEEP_API_KEY", "env-key")
    monkeypatch.setenv("HOLYSHEEP_BASE_URL", "https://relay.example/v1")
    client = AsyncClient(api_key="arg-key", base_url="http://127.0.0.1:9/v1")
    assert client._requester._api_key == "arg-key"
    assert client.base_url == "http://127.0.0.1:9/v1"


def test_timeout_forms() -> None:
    assert AsyncClient(timeout=5).timeout == httpx.Timeout(5.0)
    custom = httpx.Timeout(3, connect=1)
    assert AsyncClient(timeout=custom).timeout is custom


@pytest.mark.parametrize(
    ("kwargs", "names"),
    [
        ({"api_key": 123}, "api_key"),
        ({"base_url": "ftp://x"}, "base_url"),
        ({"base_url": 5}, "base_url"),
        ({"timeout": -1}, "timeout"),
        ({"timeout": "10"}, "timeout"),
        ({"max_retries": -1}, "max_retries"),
        ({"max_retries": 1.5}, "max_retries"),
        ({"rpm": 0}, "rpm"),
        ({"tpm": "many"}, "tpm"),
        ({"max_concurrency": 0}, "max_concurrency"),
        ({"stream_idle_timeout": 0}, "stream_idle_timeout"),
        ({"http_client": object()}, "http_client"),
    ],
)
def test_bad_settings_name_the_setting(kwargs: dict[str, object], names: str) -> None:
    with pytest.raises(ConfigurationError, match=names):
        AsyncClient(**{"api_key": "k", **kwargs})  # type: ignore[arg-type]


async def test_missing_key_fails_at_first_call_not_at_construction(server: MockServer) -> None:
    client = AsyncClient(base_url=server.base_url)  # no error here
    before = len(server.requests)
    with pytest.raises(ConfigurationError, match="HOLYSHEEP_API_KEY"):
        await client.chat.create(model="m", messages=[{"role": "user", "content": "hi"}])
    assert len(server.requests) == before  # nothing was sent
    await client.aclose()


async def test_key_never_in_repr_str_or_errors(
    server: MockServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    client = AsyncClient(api_key=CANARY, base_url=server.base_url, max_retries=0)
    assert CANARY not in repr(client)
    assert CANARY not in str(client)
    assert "api_key=<set>" in repr(client)
    # The emulator does not know this key: 401, and the error must not echo it.
    with pytest.raises(AuthenticationError) as info:
        await client.chat.create(model="m", messages=[{"role": "user", "content": "hi"}])
    err = info.value
    assert err.status_code == 401
    for text in (str(err), repr(err), repr(err.body), repr(err.headers)):
        assert CANARY not in text
    assert CANARY not in caplog.text
    await client.aclose()


async def test_key_echoed_by_a_server_is_blanked_out(server: MockServer) -> None:
    client = AsyncClient(api_key=CANARY, base_url=server.base_url, max_retries=0)
    server.inject("status", status=401, body={"error": {"message": f"bad key {CANARY}"}})
    with pytest.raises(AuthenticationError) as info:
        await client.chat.create(model="m", messages=[{"role": "user", "content": "hi"}])
    assert CANARY not in str(info.value)
    assert CANARY not in repr(info.value.body)
    assert "***" in str(info.value)
    await client.aclose()


async def test_headers_sent(client: AsyncClient, server: MockServer) -> None:
    await client.chat.create(model="m", messages=[{"role": "user", "content": "hi"}])
    headers = server.requests[-1].headers
    assert headers["authorization"] == "Bearer test-key"
    assert headers["user-agent"].startswith(f"holysheep-async/{__version__}")
    assert headers["content-type"] == "application/json"


async def test_plain_http_to_a_remote_host_is_refused_unless_allowed() -> None:
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return httpx.Response(200, json={"id": "x", "choices": []})

    transport = httpx.MockTransport(handler)
    async with httpx.AsyncClient(transport=transport) as http:
        client = AsyncClient(api_key="k", base_url="http://relay.example/v1", http_client=http)
        with pytest.raises(ConfigurationError, match="plain http"):
            await client.chat.create(model="m", messages=[{"role": "user", "content": "x"}])
        assert calls == []
        allowed = AsyncClient(
            api_key="k",
            base_url="http://relay.example/v1",
            http_client=http,
            allow_insecure_http=True,
        )
        await allowed.chat.create(model="m", messages=[{"role": "user", "content": "x"}])
        assert len(calls) == 1


async def test_own_http_client_is_used_and_not_closed(server: MockServer) -> None:
    async with httpx.AsyncClient() as http:
        async with AsyncClient(api_key="test-key", base_url=server.base_url, http_client=http) as c:
            assert c.http_client is http
            await c.chat.create(model="m", messages=[{"role": "user", "content": "hi"}])
        assert not http.is_closed
        # Still usable after the AsyncClient closed.
        r = await http.get(server.url + "/v1/nothing")
        assert r.status_code in (401, 404)


async def test_aclose_closes_own_pool_and_is_idempotent() -> None:
    client = AsyncClient(api_key="k")
    await client.aclose()
    assert client.http_client.is_closed
    await client.aclose()


def test_client_cannot_be_pickled() -> None:
    import pickle

    with pytest.raises(TypeError):
        pickle.dumps(AsyncClient(api_key=CANARY))
