"""Key hygiene: where the key may go, and where it must never show up."""

from __future__ import annotations

import httpx
import pytest

from holysheep_async import AsyncClient, ConfigurationError

pytestmark = pytest.mark.anyio

CANARY = "sk-canary-security-7f3a9c"
MESSAGES = [{"role": "user", "content": "hi"}]
COMPLETION = {"id": "c1", "object": "chat.completion", "model": "m", "choices": []}


async def test_authorization_is_not_forwarded_across_a_redirect_to_another_host() -> None:
    seen: list[tuple[str, str | None]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append((request.url.host, request.headers.get("authorization")))
        if request.url.host == "api.example":
            return httpx.Response(
                307, headers={"location": "https://elsewhere.example/v1/chat/completions"}
            )
        return httpx.Response(200, json=COMPLETION)

    async with httpx.AsyncClient(
        transport=httpx.MockTransport(handler), follow_redirects=True
    ) as http:
        client = AsyncClient(api_key=CANARY, base_url="https://api.example/v1", http_client=http)
        await client.chat.create(model="m", messages=MESSAGES)
    assert seen[0] == ("api.example", f"Bearer {CANARY}")
    assert seen[1] == ("elsewhere.example", None)


async def test_same_host_redirect_keeps_the_key() -> None:
    seen: list[str | None] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get("authorization"))
        if request.url.path == "/v1/chat/completions":
            return httpx.Response(307, headers={"location": "/v2/chat/completions"})
        return httpx.Response(200, json=COMPLETION)

    async with httpx.AsyncClient(
        transport=httpx.MockTransport(handler), follow_redirects=True
    ) as http:
        client = AsyncClient(api_key=CANARY, base_url="https://api.example/v1", http_client=http)
        await client.chat.create(model="m", messages=MESSAGES)
    assert seen == [f"Bearer {CANARY}", f"Bearer {CANARY}"]


@pytest.mark.parametrize(
    "base_url",
    [
        "http://localhost:8000/v1",
        "http://127.0.0.1:8000/v1",
        "http://127.9.9.9/v1",
        "http://[::1]:8000/v1",
    ],
)
async def test_plain_http_to_loopback_is_fine(base_url: str) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json=COMPLETION)

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
        client = AsyncClient(api_key=CANARY, base_url=base_url, http_client=http)
        await client.chat.create(model="m", messages=MESSAGES)


@pytest.mark.parametrize("base_url", ["http://10.0.0.5/v1", "http://relay.internal:3000/v1"])
async def test_plain_http_elsewhere_is_refused_and_the_error_names_the_host(base_url: str) -> None:
    client = AsyncClient(api_key=CANARY, base_url=base_url)
    with pytest.raises(ConfigurationError, match=httpx.URL(base_url).host) as info:
        await client.chat.create(model="m", messages=MESSAGES)
    assert CANARY not in str(info.value)
    await client.aclose()
