"""``holysheep batch results ID | head -1`` ends the same way run after run (issue 24).

Through real pipes: the command exits 0 when its reader took the whole output, 1
(quietly, no traceback, nothing on stderr) when the reader closed the pipe with some
of it unread, whatever the timing and with ``PYTHONUNBUFFERED=1`` (which writes every
``print`` on its own, the cause of the old coin toss).
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from holysheep_async import Client
from holysheep_async.cli._common import BlockWriter, wait_for_reader
from holysheep_async.testing import MockServer

from .test_cli import holysheep

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX pipes")

KEY = "test-key-pipe"
RUNS = 5


@pytest.fixture(scope="module")
def batches() -> Iterator[tuple[MockServer, dict[str, str]]]:
    """A small batch (3 results, ~2 KB of output) and a larger one (100, ~60 KB)."""
    with MockServer(api_keys=[KEY]) as server, Client(api_key=KEY, base_url=server.base_url) as c:
        server.options["batch_speed"] = 1_000
        ids = {}
        question = [{"role": "user", "content": "?"}]
        for name, n in (("small", 3), ("large", 100)):
            batch = c.batches.submit(
                [{"custom_id": f"q{i}", "model": "gpt-4o", "messages": question} for i in range(n)]
            )
            ids[name] = c.batches.wait(batch, poll_interval=0.01).id
        yield server, ids


def env() -> dict[str, str]:
    out = {k: v for k, v in os.environ.items() if not k.startswith("HOLYSHEEP_")}
    out.update(HOLYSHEEP_API_KEY=KEY, PYTHONUNBUFFERED="1")
    return out


def results_into_head_1(server: MockServer, batch_id: str) -> tuple[int, bytes, str]:
    """``holysheep batch results ID | head -1``: read one line, close the pipe."""
    proc = subprocess.Popen(
        [holysheep(), "batch", "results", batch_id, "--base-url", server.base_url],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env(),
    )
    assert proc.stdout is not None and proc.stderr is not None
    first = proc.stdout.readline()
    proc.stdout.close()
    err = proc.stderr.read().decode()
    return proc.wait(timeout=60), first, err


@pytest.mark.parametrize(("size", "code"), [("small", 0), ("large", 1)])
def test_head_1_gets_the_same_exit_code_every_run(
    batches: tuple[MockServer, dict[str, str]], size: str, code: int
) -> None:
    # Small: the whole output reaches the pipe in one write and the reader's first read
    # takes all of it (0). Large: the reader leaves with most of it unread (1).
    server, ids = batches
    for _ in range(RUNS):
        returncode, first, err = results_into_head_1(server, ids[size])
        assert json.loads(first)["custom_id"].startswith("q")
        assert err == ""
        assert returncode == code


@pytest.mark.parametrize("size", ["small", "large"])
def test_a_pipe_closed_before_any_output_is_exit_1_in_silence(
    batches: tuple[MockServer, dict[str, str]], size: str
) -> None:
    server, ids = batches
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before the command writes a byte
    try:
        done = subprocess.run(
            [holysheep(), "batch", "results", ids[size], "--base-url", server.base_url],
            stdout=write_end,
            stderr=subprocess.PIPE,
            env=env(),
            timeout=60,
        )
    finally:
        os.close(write_end)
    assert done.returncode == 1
    assert done.stderr == b""


def test_the_whole_output_read_is_exit_0(batches: tuple[MockServer, dict[str, str]]) -> None:
    server, ids = batches
    done = subprocess.run(
        [holysheep(), "batch", "results", ids["large"], "--base-url", server.base_url],
        capture_output=True,
        env=env(),
        timeout=60,
    )
    assert done.returncode == 0 and done.stderr == b""
    assert len(done.stdout.splitlines()) == 100


# -- the pieces ------------------------------------------------------------------------------


def test_wait_for_reader_returns_once_the_reader_took_everything() -> None:
    read_end, write_end = os.pipe()
    with open(write_end, "w") as out:
        out.write("x" * 1000)
        out.flush()
        assert os.read(read_end, 4096) == b"x" * 1000
        wait_for_reader(out)  # nothing unread: at once
        os.close(read_end)  # and gone, after taking it all: still fine
        wait_for_reader(out)


def test_wait_for_reader_says_broken_pipe_when_the_reader_left_output_unread() -> None:
    read_end, write_end = os.pipe()
    with open(write_end, "w") as out:
        out.write("line 1\nline 2\n")
        out.flush()
        assert os.read(read_end, 7) == b"line 1\n"
        os.close(read_end)
        with pytest.raises(BrokenPipeError):
            wait_for_reader(out)


def test_wait_for_reader_ignores_what_is_not_a_pipe(tmp_path: Path) -> None:
    with open(tmp_path / "out.txt", "w") as out:
        out.write("x")
        wait_for_reader(out)
    wait_for_reader(io.StringIO())


def test_block_writer_writes_whole_blocks_of_at_most_its_size() -> None:
    writes: list[str] = []

    class Sink(io.StringIO):
        def write(self, text: str) -> int:
            writes.append(text)
            return len(text)

    out = BlockWriter(Sink(), size=10)
    for line in ["abc\n", "def\n", "ghi\n", "é" * 6 + "\n", "x" * 30 + "\n"]:
        out.write(line)
    out.flush()
    assert writes == ["abc\ndef\n", "ghi\n", "é" * 6 + "\n", "x" * 30 + "\n"]
    assert [len(w.encode()) <= 10 for w in writes] == [True, True, False, False]
