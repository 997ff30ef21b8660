"""The pytest plugin users get: fixtures that run under anyio's plugin and under pytest-asyncio.

Users' test files are written to a temporary directory and run by a separate
pytest process, the way a user's project would run them (the plugin is found
through its ``pytest11`` entry point, not imported by hand).
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from holysheep_async import AsyncClient
from holysheep_async.testing import MockServer, answer_text

USER_TESTS = """
import pytest

from holysheep_async import AsyncClient, BadRequestError
from holysheep_async.testing import answer_text

MSGS = [{"role": "user", "content": "Hello sheep"}]


{mark}
async def test_client_fixture(holysheep_client, holysheep_server):
    completion = await holysheep_client.chat.create(model="gpt-4o", messages=MSGS, max_tokens=4)
    assert completion.choices[0].message.content == answer_text(MSGS, 4)
    assert [r.path for r in holysheep_server.requests] == ["/v1/chat/completions"]
    async with holysheep_client.chat.stream(model="gpt-4o", messages=MSGS, max_tokens=3) as s:
        assert "".join([t async for t in s]) == answer_text(MSGS, 3)
    assert holysheep_client.usage.requests == 2


{mark}
async def test_faults_are_per_test(holysheep_client, holysheep_server):
    holysheep_server.inject("status", status=400)
    with pytest.raises(BadRequestError):
        await holysheep_client.chat.create(model="gpt-4o", messages=MSGS, max_tokens=1)
    # left queued on purpose: the next test must not get it
    holysheep_server.inject("status", status=400, times=5)


{mark}
async def test_next_test_sees_no_fault_and_an_empty_log(holysheep_client, holysheep_server):
    assert holysheep_server.requests == []
    await holysheep_client.chat.create(model="gpt-4o", messages=MSGS, max_tokens=1)


{mark}
async def test_env_fixture(holysheep_env):
    async with AsyncClient() as client:  # the code under test builds its own client
        completion = await client.chat.create(model="gpt-4o", messages=MSGS, max_tokens=2)
    assert completion.choices[0].message.content == answer_text(MSGS, 2)
    assert holysheep_env.requests[-1].api_key == "holysheep-test-key"
"""

ANYIO_HEADER = """
import pytest

@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request):
    return request.param
"""


def run_pytest(
    tmp_path: Path, files: dict[str, str], *args: str
) -> subprocess.CompletedProcess[str]:
    for name, text in files.items():
        (tmp_path / name).write_text(textwrap.dedent(text), encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HOLYSHEEP_", "PYTEST_"))}
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args, str(tmp_path)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


def test_fixtures_work_with_anyio_on_asyncio_and_trio(tmp_path: Path) -> None:
    result = run_pytest(
        tmp_path,
        {
            "pytest.ini": "[pytest]\n",
            "conftest.py": ANYIO_HEADER,
            "test_user.py": USER_TESTS.replace("{mark}", "@pytest.mark.anyio"),
        },
        "-p",
        "no:asyncio",
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "8 passed" in result.stdout


@pytest.mark.parametrize("mode", ["strict", "auto"])
def test_fixtures_work_with_pytest_asyncio(tmp_path: Path, mode: str) -> None:
    mark = "@pytest.mark.asyncio" if mode == "strict" else ""
    result = run_pytest(
        tmp_path,
        {
            "pytest.ini": f"[pytest]\nasyncio_mode = {mode}\n"
            "asyncio_default_fixture_loop_scope = function\n",
            "test_user.py": USER_TESTS.replace("{mark}", mark),
        },
        "-p",
        "no:anyio",
        "-W",
        "error::ResourceWarning",
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "4 passed" in result.stdout


def test_server_options_can_be_overridden(tmp_path: Path) -> None:
    result = run_pytest(
        tmp_path,
        {
            "pytest.ini": "[pytest]\n",
            "conftest.py": ANYIO_HEADER
            + """
@pytest.fixture(scope="session")
def holysheep_server_options():
    return {"tokens": 3}
""",
            "test_user.py": """
import pytest

@pytest.mark.anyio
async def test_short_answers(holysheep_client, holysheep_server):
    assert holysheep_server.tokens == 3
    c = await holysheep_client.chat.create(model="m", messages=[{"role": "user", "content": "x"}])
    assert c.usage.completion_tokens == 3
""",
        },
        "-p",
        "no:asyncio",
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 passed" in result.stdout


# The plugin is loaded in this suite too: its fixtures sit beside conftest's without clashing.


@pytest.mark.anyio
async def test_plugin_fixtures_in_our_own_suite(
    holysheep_client: AsyncClient, holysheep_server: MockServer, server: MockServer
) -> None:
    assert holysheep_server is not server
    msgs = [{"role": "user", "content": "x"}]
    completion = await holysheep_client.chat.create(model="gpt-4o", messages=msgs, max_tokens=2)
    assert completion.choices[0].message.content == answer_text(msgs, 2)
    assert len(holysheep_server.requests) == 1
