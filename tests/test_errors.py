"""Status codes and error bodies (OpenAI's and relays') become typed, readable errors."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from holysheep_async import (
    APIStatusError,
    AsyncClient,
    AuthenticationError,
    BadRequestError,
    ConflictError,
    HolySheepError,
    InternalServerError,
    InvalidResponseError,
    NotFoundError,
    PermissionDeniedError,
    QuotaExceededError,
    RateLimitError,
)
from holysheep_async.errors import make_status_error
from holysheep_async.testing import MockServer

pytestmark = pytest.mark.anyio

MESSAGES = [{"role": "user", "content": "hi"}]


def _response(
    status: int, body: Any = None, *, text: str | None = None, **headers: str
) -> httpx.Response:
    request = httpx.Request("POST", "https://api.example/v1/chat/completions")
    if text is not None:
        return httpx.Response(status, text=text, headers=headers, request=request)
    return httpx.Response(status, json=body, headers=headers, request=request)


@pytest.mark.parametrize(
    ("status", "cls"),
    [
        (400, BadRequestError),
        (401, AuthenticationError),
        (403, PermissionDeniedError),
        (404, NotFoundError),
        (409, ConflictError),
        (422, BadRequestError),
        (429, RateLimitError),
        (500, InternalServerError),
        (502, InternalServerError),
        (503, InternalServerError),
        (418, APIStatusError),
    ],
)
async def test_each_status_maps_to_its_class(
    client: AsyncClient, server: MockServer, status: int, cls: type[APIStatusError]
) -> None:
    # Retries exhaust on retryable statuses; the last error is what surfaces.
    server.inject("status", status=status, message=f"boom {status}", times=10)
    with pytest.raises(cls) as info:
        await client.chat.create(model="m", messages=MESSAGES)
    err = info.value
    assert type(err) is cls
    assert err.status_code == status
    assert err.request_id is not None and err.request_id.startswith("req_")
    assert err.request_id in str(err)
    assert f"boom {status}" in str(err)
    assert isinstance(err.body, dict) and err.body["error"]["message"] == f"boom {status}"
    assert isinstance(err, HolySheepError)


def test_openai_body_parts_are_kept() -> None:
    err = make_status_error(
        _response(
            400,
            {
                "error": {
                    "message": "bad temperature",
                    "type": "invalid_request_error",
                    "param": "temperature",
                    "code": "invalid_value",
                }
            },
            **{"x-request-id": "req_abc"},
        )
    )
    assert isinstance(err, BadRequestError)
    assert err.code == "invalid_value"
    assert err.error_type == "invalid_request_error"
    assert str(err) == "400 Bad Request: bad temperature (code invalid_value) [request id req_abc]"


def test_html_error_page_gives_its_title() -> None:
    page = "<html><head><title>502 Bad Gateway</title></head><body><h1>nginx</h1></body></html>"
    err = make_status_error(_response(502, text=page, **{"content-type": "text/html"}))
    assert isinstance(err, InternalServerError)
    assert "HTML page: 502 Bad Gateway" in str(err)
    assert err.body == page


def test_numeric_code_and_foreign_message() -> None:
    err = make_status_error(_response(401, {"error": {"message": "无效的令牌", "code": 401}}))
    assert isinstance(err, AuthenticationError)
    assert err.code == "401"
    assert "无效的令牌" in str(err)


def test_relay_body_without_error_wrapper() -> None:
    err = make_status_error(_response(429, {"success": False, "message": "当前分组上游负载已饱和"}))
    assert type(err) is RateLimitError
    assert "当前分组上游负载已饱和" in str(err)


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (
            403,
            {
                "error": {
                    "message": "用户额度不足, 剩余额度: $0.00",
                    "type": "new_api_error",
                    "code": "",
                }
            },
        ),
        (403, {"error": {"message": "token quota is not enough", "code": "insufficient_quota"}}),
        (
            429,
            {
                "error": {
                    "message": "You exceeded your current quota, please check your plan",
                    "type": "insufficient_quota",
                    "code": "insufficient_quota",
                }
            },
        ),
    ],
)
def test_exhausted_quota_is_its_own_error(status: int, body: Any) -> None:
    err = make_status_error(_response(status, body))
    assert isinstance(err, QuotaExceededError)
    # Caught by either family a user might write.
    assert isinstance(err, PermissionDeniedError)
    assert isinstance(err, RateLimitError)


async def test_quota_exhausted_is_not_retried(client: AsyncClient, server: MockServer) -> None:
    before = len(server.requests)
    server.inject(
        "status",
        status=429,
        code="insufficient_quota",
        message="You exceeded your current quota",
        times=5,
    )
    with pytest.raises(QuotaExceededError):
        await client.chat.create(model="m", messages=MESSAGES)
    assert len(server.requests) - before == 1


def test_empty_body() -> None:
    err = make_status_error(_response(503, text=""))
    assert isinstance(err, InternalServerError)
    assert str(err) == "503 Service Unavailable"


async def test_html_with_200_is_an_invalid_response(server: MockServer) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            200,
            text="<html><title>Login</title></html>",
            headers={"content-type": "text/html", "x-request-id": "r1"},
        )

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
        client = AsyncClient(api_key="k", base_url="https://relay.example/v1", http_client=http)
        with pytest.raises(InvalidResponseError, match="HTML page") as info:
            await client.chat.create(model="m", messages=MESSAGES)
        assert info.value.request_id == "r1"
        assert info.value.status_code == 200
