"""Key hygiene: where the key may go, and where it must never show up."""

from __future__ import annotations

import httpx
import pytest
import respx

from holysheep_async import APIConnectionError, AsyncClient, ConfigurationError

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


@pytest.mark.parametrize(
    ("location", "keeps_key"),
    [
        ("https://elsewhere.example/v1/chat/completions", False),  # another host
        ("https://api.example:8443/v1/chat/completions", False),  # another port
        ("http://api.example/v1/chat/completions", False),  # a downgrade to plain http
        ("https://api.example/v2/chat/completions", True),  # same origin
    ],
)
async def test_redirects_through_the_clients_own_http_stack(location: str, keeps_key: bool) -> None:
    # The client's default httpx client (follow_redirects=True), not one handed in.
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if len(seen) == 1:
            return httpx.Response(307, headers={"location": location})
        return httpx.Response(200, json=COMPLETION)

    with respx.mock(using="httpx") as router:
        router.route().mock(side_effect=handler)
        async with AsyncClient(api_key=CANARY, base_url="https://api.example/v1") as client:
            await client.chat.create(model="m", messages=MESSAGES)
    assert [str(r.url) for r in seen] == ["https://api.example/v1/chat/completions", location]
    assert seen[0].headers["authorization"] == f"Bearer {CANARY}"
    assert seen[1].headers.get("authorization") == (f"Bearer {CANARY}" if keeps_key else None)


async def test_a_redirect_loop_is_a_typed_error() -> None:
    with respx.mock(using="httpx") as router:
        router.route().mock(
            return_value=httpx.Response(302, headers={"location": "/v1/chat/completions"})
        )
        async with AsyncClient(api_key=CANARY, base_url="https://api.example/v1") as client:
            with pytest.raises(APIConnectionError, match="redirect") as info:
                await client.chat.create(model="m", messages=MESSAGES)
        assert router.calls.call_count == 21  # httpx's limit of 20 redirects; not retried
    assert CANARY not in str(info.value)


async def test_allow_insecure_http_must_be_a_bool() -> None:
    with pytest.raises(ConfigurationError, match="allow_insecure_http"):
        AsyncClient(api_key=CANARY, allow_insecure_http="no")  # type: ignore[arg-type]
