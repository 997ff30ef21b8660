"""pytest fixtures for testing your own code against the embedded emulator, offline.

Installed with the package and loaded by pytest automatically (entry point
``pytest11``); nothing to configure::

    import pytest
    from holysheep_async.testing import answer_text

    @pytest.mark.anyio                      # or @pytest.mark.asyncio (pytest-asyncio)
    async def test_summary(holysheep_client, holysheep_server):
        completion = await holysheep_client.chat.create(
            model="gpt-4o", messages=[{"role": "user", "content": "Hi"}], max_tokens=5)
        assert completion.text == answer_text([{"role": "user", "content": "Hi"}], 5)
        assert holysheep_server.requests[-1].json()["max_tokens"] == 5

Fixtures:

``holysheep_server``
    The emulator (a :class:`~holysheep_async.testing.MockServer` on
    127.0.0.1, started once per session in its own thread). Each test starts
    with an empty request log (``holysheep_server.requests``); faults it
    queues with ``holysheep_server.inject(...)`` are dropped after it.
``holysheep_client``
    An :class:`~holysheep_async.AsyncClient` pointed at it. Plain fixture
    (not async), so it works with anyio's plugin, pytest-asyncio (strict or
    auto) and trio alike: it keeps no idle connection between requests,
    hence needs no event loop to be torn down.
``holysheep_env``
    Sets ``HOLYSHEEP_BASE_URL`` and ``HOLYSHEEP_API_KEY`` to the emulator's,
    for code under test that builds its own ``AsyncClient()``.
``holysheep_api_key``
    The key the emulator accepts (``"holysheep-test-key"``).
``holysheep_server_options``
    Keyword arguments for the session's ``MockServer``; override it in your
    ``conftest.py`` to change the latency profile::

        @pytest.fixture(scope="session")
        def holysheep_server_options():
            return {"ttft": 0.05, "itl": 0.01, "tokens": 32}

``pytest -p no:holysheep_async`` turns the plugin off.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from ..client import DEFAULT_TIMEOUT, AsyncClient
from ._server import MockServer

__all__ = [
    "holysheep_api_key",
    "holysheep_client",
    "holysheep_env",
    "holysheep_server",
    "holysheep_server_options",
    "holysheep_session_server",
]

TEST_KEY = "holysheep-test-key"


@pytest.fixture(scope="session")
def holysheep_api_key() -> str:
    """The API key the emulator accepts."""
    return TEST_KEY


@pytest.fixture(scope="session")
def holysheep_server_options() -> dict[str, Any]:
    """``MockServer`` keyword arguments (override in conftest.py)."""
    return {}


@pytest.fixture(scope="session")
def holysheep_session_server(
    holysheep_server_options: dict[str, Any], holysheep_api_key: str
) -> Iterator[MockServer]:
    """The emulator, shared by the session; prefer ``holysheep_server``."""
    options = {"api_keys": [holysheep_api_key], **holysheep_server_options}
    server = MockServer(**options)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def holysheep_server(holysheep_session_server: MockServer) -> Iterator[MockServer]:
    """The emulator, with a fresh request log; faults a test queued are dropped after it."""
    holysheep_session_server.requests.clear()
    yield holysheep_session_server
    holysheep_session_server.clear_faults()


@pytest.fixture
def holysheep_client(holysheep_server: MockServer, holysheep_api_key: str) -> AsyncClient:
    """An ``AsyncClient`` pointed at ``holysheep_server`` (usable on any event loop)."""
    # No keep-alive: a connection never outlives its response, so nothing is left bound to
    # the test's event loop when this synchronous fixture is torn down.
    http = httpx.AsyncClient(
        timeout=DEFAULT_TIMEOUT, limits=httpx.Limits(max_keepalive_connections=0)
    )
    return AsyncClient(
        api_key=holysheep_api_key, base_url=holysheep_server.base_url, http_client=http
    )


@pytest.fixture
def holysheep_env(
    holysheep_server: MockServer, holysheep_api_key: str, monkeypatch: pytest.MonkeyPatch
) -> MockServer:
    """Point ``AsyncClient()`` (no arguments) at the emulator through the environment."""
    monkeypatch.setenv("HOLYSHEEP_BASE_URL", holysheep_server.base_url)
    monkeypatch.setenv("HOLYSHEEP_API_KEY", holysheep_api_key)
    return holysheep_server
