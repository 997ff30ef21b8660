"""Clients made before a fork work in the children; the parent carries on.

Each case runs tests/fork_worker.py in a process of its own (a session of its
own, killed whole at the deadline: nothing here can hang the suite), against
the emulator behind a relay that notes which process used which connection
(tests/relay.py). The worker makes a client, perhaps uses it, forks (``os.fork``,
``multiprocessing`` with the fork start method, a ``Pool``), and the children
use it (or not) and exit; then the parent uses it again.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from holysheep_async.testing import MockServer, answer_text

from .redis_server import RedisServer
from .relay import Relay

WORKER = Path(__file__).with_name("fork_worker.py")
ASK = [{"role": "user", "content": "Fork me"}]
CREATED = answer_text(ASK, 4)  # type: ignore[arg-type]
STREAMED = answer_text(ASK, 5)  # type: ignore[arg-type]
DEADLINE = 120.0

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="os.fork is POSIX only")

#: The clients: the sync ``Client`` (its own loop thread), ``AsyncClient`` on each runtime.
CLIENTS = [
    pytest.param({"client": "sync"}, id="Client"),
    pytest.param({"client": "async", "backend": "asyncio"}, id="AsyncClient-asyncio"),
    pytest.param({"client": "async", "backend": "trio"}, id="AsyncClient-trio"),
]
#: httpx's own transport (HOLYSHEEP_TRANSPORT=httpx, proxies, an http_client handed in).
HTTPX = pytest.param({"client": "sync", "transport": "httpx"}, id="Client-httpx-transport")


@pytest.fixture
def relay(server: MockServer) -> Iterator[Relay]:
    r = Relay(server.port)
    yield r
    r.close()


def run_worker(cfg: dict[str, Any]) -> list[dict[str, Any]]:
    """Run the worker to its end within ``DEADLINE``; its JSON lines."""
    proc = subprocess.Popen(
        [sys.executable, str(WORKER), json.dumps(cfg)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its children too are killed at the deadline
        env={k: v for k, v in os.environ.items() if not k.startswith("HOLYSHEEP_")},
    )
    try:
        out, err = proc.communicate(timeout=DEADLINE)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        pytest.fail(f"the worker hung (killed after {DEADLINE:.0f} s)\n{out}\n{err}")
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # any child left behind
    assert proc.returncode == 0, f"exit {proc.returncode}\n{out}\n{err}"
    assert "Traceback" not in err and "Exception ignored" not in err, err
    lines = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    assert not [line for line in lines if "child_error" in line], out
    return lines


def facts(lines: list[dict[str, Any]], key: str) -> list[Any]:
    return [line[key] for line in lines if key in line]


def check_work(result: dict[str, Any]) -> None:
    assert result["create"] == CREATED
    assert result["stream"] == STREAMED


def check_links(relay: Relay, *, parent_first: bool, reused: bool) -> None:
    """No connection carried two processes' requests; the parent's one connection
    before the fork still served it after (``reused``: nobody closed or took it)."""
    links = list(relay.links)
    assert links and all(len(link.who) == 1 for link in links), [link.who for link in links]
    children = [link for link in links if link.who != {"parent"}]
    assert children  # the children connected on their own
    if parent_first and reused:
        assert len([link for link in links if link.who == {"parent"}]) == 1


@pytest.mark.parametrize("parent_first", [True, False], ids=["used-before", "unused-before"])
@pytest.mark.parametrize("client", [*CLIENTS, HTTPX])
def test_os_fork(
    client: dict[str, Any], parent_first: bool, server: MockServer, relay: Relay
) -> None:
    lines = run_worker(
        {"scenario": "os_fork", "base_url": relay.base_url, "parent_first": parent_first}
        | client
    )
    (child,) = facts(lines, "child")
    check_work(child)
    if "transport" not in client:
        # The child started without the parent's connections and opened its own.
        assert child["idle_before"] == 0 and child["opened"] == 1
    # Its usage is its own (the parent's requests before the fork are not in it).
    assert child["usage_requests"] == 2
    assert facts(lines, "child_idle")  # the other child never touched the client...
    assert facts(lines, "child_exit") == [0, 0]  # ...and both exited, without hanging
    (after,) = facts(lines, "parent_after")
    check_work(after)
    if parent_first:
        check_work(facts(lines, "parent_before")[0])
    sync = client["client"] == "sync"
    if sync and parent_first:
        # Its loop thread kept running: the parent reused the connection it had.
        assert after["opened"] == 0 and after["usage_requests"] == 4
    # (the relay: with httpx's pool too, no connection carried both processes' requests)
    assert facts(lines, "done")
    check_links(relay, parent_first=parent_first, reused=sync)


@pytest.mark.parametrize("client", CLIENTS)
def test_multiprocessing_fork_children(
    client: dict[str, Any], server: MockServer, relay: Relay
) -> None:
    lines = run_worker(
        {"scenario": "mp_process", "base_url": relay.base_url, "parent_first": True} | client
    )
    used, unused = facts(lines, "mp")
    check_work(used)
    assert used["idle_before"] == 0 and used["opened"] == 1
    assert "idle" in unused
    assert facts(lines, "exitcode") == [0, 0]
    check_work(facts(lines, "parent_after")[0])
    check_links(relay, parent_first=True, reused=client["client"] == "sync")


@pytest.mark.parametrize("client", CLIENTS)
def test_multiprocessing_pool_map_async(
    client: dict[str, Any], server: MockServer, relay: Relay
) -> None:
    lines = run_worker(
        {"scenario": "pool", "base_url": relay.base_url, "parent_first": True} | client
    )
    (answers,) = facts(lines, "pool")
    assert [text for _, text in answers] == [
        answer_text([{"role": "user", "content": f"q{i}"}], 3) for i in range(8)
    ]
    (before,) = facts(lines, "parent_before")
    assert before["pid"] not in {pid for pid, _ in answers}  # answered in the workers
    check_work(facts(lines, "parent_after")[0])
    check_links(relay, parent_first=True, reused=client["client"] == "sync")


def test_shared_limits_after_fork(
    server: MockServer, relay: Relay, redis_server: RedisServer
) -> None:
    lines = run_worker(
        {
            "scenario": "shared",
            "client": "sync",
            "base_url": relay.base_url,
            "redis": redis_server.url,
            "parent_first": True,
        }
    )
    (child,) = facts(lines, "shared_child")
    (parent,) = facts(lines, "shared_parent")
    # The parent's stream may still hold its permit at the fork or may have read its whole
    # answer already (the emulator writes it at once): a race, so not asserted. Either way
    # the child starts with none of the parent's counts: it had made two requests before.
    assert parent["held"] in (0, 1)
    # The child's limiter started fresh (the parent's permit is the parent's)...
    assert child["in_flight_at_fork"] == 0 and child["requests_at_fork"] == 0
    # ...and took its permits from Redis, not from a fallback.
    assert child["requests"] == 2 and child["in_flight"] == 0
    assert not child["degraded"] and child["fallback_requests"] == 0
    assert child["create"] == CREATED
    assert parent["child_exit"] == 0
    assert parent["text"] == answer_text(ASK, 50)  # type: ignore[arg-type]
    assert parent["in_flight_after"] == 0 and not parent["degraded"]
    check_links(relay, parent_first=True, reused=True)
