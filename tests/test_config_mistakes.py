"""Configuration mistakes fail at once, typed, saying what to fix, never retried (issue 24).

- ``https://`` typed for a plain-HTTP server (the emulator, a local model server):
  :class:`TLSMismatchError` naming the ``http://`` URL to use, instead of a connect
  timeout retried for 40 s;
- a base URL without its ``/v1`` that meets a bare 404: the error says where the API
  may be.

Nothing here waits on a clock: the timeouts are set far above the tests' deadlines,
so a failure that waited on one would miss the deadline.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator

import anyio
import httpx
import pytest

from holysheep_async import (
    APIConnectionError,
    AsyncClient,
    ConfigurationError,
    NotFoundError,
    TLSMismatchError,
)
from holysheep_async.testing import MockServer

from .conftest import FakeSleep
from .rawserver import Conn, RawServer

pytestmark = pytest.mark.anyio

MSGS = [{"role": "user", "content": "Hi"}]
SLOW = httpx.Timeout(600, connect=600)  # a failure that waited on these would hang the test


@pytest.fixture(params=["ours", "httpx"])
def transport(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Both transports under the client: its own, and httpx's (``HOLYSHEEP_TRANSPORT``)."""
    if request.param == "httpx":
        monkeypatch.setenv("HOLYSHEEP_TRANSPORT", "httpx")
    else:
        monkeypatch.delenv("HOLYSHEEP_TRANSPORT", raising=False)
    return str(request.param)


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


# -- https:// for a plain-HTTP server -----------------------------------------------------


async def test_https_against_the_emulator_fails_at_once_saying_to_use_http(
    server: MockServer, transport: str, fake_sleep: FakeSleep
) -> None:
    https = server.base_url.replace("http://", "https://")
    logged = len(server.requests)
    async with AsyncClient(api_key="test-key", base_url=https, timeout=SLOW) as client:
        client._requester.sleep = fake_sleep
        with anyio.fail_after(30), pytest.raises(TLSMismatchError) as info:
            await client.chat.create(model="gpt-4o", messages=MSGS)
        with anyio.fail_after(30), pytest.raises(TLSMismatchError):
            async with client.chat.stream(model="gpt-4o", messages=MSGS) as stream:
                async for _ in stream:
                    pass
    assert fake_sleep.calls == []  # not retried
    error = info.value
    assert isinstance(error, APIConnectionError) and isinstance(error, ConfigurationError)
    host = server.base_url.split("//")[1].split("/")[0]
    assert str(error) == (
        f"POST /chat/completions: the server at {host} did not answer TLS (it answered in"
        " plain text): it is a plain-HTTP server, but base_url says https://."
        f" Use base_url='{server.base_url}'"
    )
    assert len(server.requests) == logged  # no request ever reached it


async def test_https_against_a_plain_http_server_that_answers_400(
    raw: Callable[[Callable[[Conn], None]], RawServer], transport: str, fake_sleep: FakeSleep
) -> None:
    def handler(conn: Conn) -> None:
        conn.sock.recv(4096)  # the ClientHello, read as a (bad) request, as nginx does
        conn.send(b"HTTP/1.1 400 Bad Request\r\nconnection: close\r\ncontent-length: 0\r\n\r\n")

    srv = raw(handler)
    https = srv.url.replace("http://", "https://") + "/v1"
    async with AsyncClient(api_key="test-key", base_url=https, timeout=SLOW) as client:
        client._requester.sleep = fake_sleep
        with anyio.fail_after(30), pytest.raises(TLSMismatchError, match="did not answer TLS"):
            await client.models.list()
    assert srv.accepted == 1 and fake_sleep.calls == []


async def test_a_tls_server_that_closes_during_the_handshake_is_still_a_retried_connection_error(
    raw: Callable[[Callable[[Conn], None]], RawServer], transport: str, fake_sleep: FakeSleep
) -> None:
    # No answer at all is not proof of a plain-HTTP server (an overloaded TLS server
    # does this too): it stays an ordinary connection error, retried.
    srv = raw(lambda conn: conn.sock.recv(4096) and None)
    https = srv.url.replace("http://", "https://") + "/v1"
    async with AsyncClient(
        api_key="test-key", base_url=https, timeout=SLOW, max_retries=2
    ) as client:
        client._requester.sleep = fake_sleep
        with anyio.fail_after(30), pytest.raises(APIConnectionError) as info:
            await client.models.list()
    assert not isinstance(info.value, TLSMismatchError)
    assert len(fake_sleep.calls) == 2 and srv.accepted == 3


# -- a base URL without its version prefix -------------------------------------------------


async def test_a_base_url_without_v1_gets_a_hint_with_the_404(
    server: MockServer, transport: str
) -> None:
    bare = server.base_url.removesuffix("/v1")
    async with AsyncClient(api_key="test-key", base_url=bare) as client:
        with pytest.raises(NotFoundError) as info:
            await client.chat.create(model="gpt-4o", messages=MSGS)
        with pytest.raises(NotFoundError) as streamed:
            async with client.chat.stream(model="gpt-4o", messages=MSGS) as stream:
                async for _ in stream:
                    pass
    hint = f"did you mean base_url='{bare}/v1'?"
    assert str(info.value).endswith(hint), info.value
    assert str(streamed.value).endswith(hint)
    assert info.value.status_code == 404 and info.value.code == "not_found"


def answer_404(body: object) -> Callable[[Conn], None]:
    raw = json.dumps(body).encode() if body is not None else b""

    def handler(conn: Conn) -> None:
        while conn.read_request() is not None:
            conn.send(
                b"HTTP/1.1 404 Not Found\r\ncontent-type: application/json\r\n"
                b"content-length: %d\r\n\r\n%b" % (len(raw), raw)
            )

    return handler


@pytest.mark.parametrize(
    "body",
    [
        None,  # an empty 404
        {"detail": "Not Found"},  # FastAPI (vLLM, many relays)
        {"error": {"message": "Invalid URL (POST /chat/completions)", "code": None}},  # OpenAI
    ],
)
async def test_bare_404s_under_a_base_url_without_a_version_get_the_hint(
    raw: Callable[[Callable[[Conn], None]], RawServer], body: object
) -> None:
    srv = raw(answer_404(body))
    async with AsyncClient(api_key="test-key", base_url=f"{srv.url}/api") as client:
        with pytest.raises(NotFoundError, match=r"did you mean base_url='http://.*/api/v1'\?$"):
            await client.chat.create(model="gpt-4o", messages=MSGS)


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1", None),  # the version is there: the 404 is about something else
        ("/v1beta/openai", None),
        ("/openai/v2", {"detail": "Not Found"}),
        # A 404 about a thing (Azure's deployment, a model), not about the path.
        ("", {"error": {"code": "DeploymentNotFound", "message": "The deployment does not exist"}}),
        ("", {"error": {"code": "model_not_found", "message": "The model does not exist"}}),
    ],
)
async def test_no_hint_where_the_404_is_not_about_a_missing_version(
    raw: Callable[[Callable[[Conn], None]], RawServer], path: str, body: object
) -> None:
    srv = raw(answer_404(body))
    async with AsyncClient(api_key="test-key", base_url=f"{srv.url}{path}") as client:
        with pytest.raises(NotFoundError) as info:
            await client.chat.create(model="gpt-4o", messages=MSGS)
    assert "did you mean" not in str(info.value)
