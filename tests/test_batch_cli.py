"""``holysheep batch ...`` and the batch part of ``holysheep demo``."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from holysheep_async.cli import main
from holysheep_async.jsonl import write_requests
from holysheep_async.testing import MockServer


def tasks(n: int, prefix: str = "t") -> list[dict[str, Any]]:
    return [
        {
            "custom_id": f"{prefix}{i}",
            "model": "gpt-4o-mini",
            "messages": [{"role": "user", "content": f"q {prefix}{i}"}],
            "max_tokens": 3,
        }
        for i in range(n)
    ]


@pytest.fixture
def input_file(tmp_path: Path) -> Path:
    path = tmp_path / "in.jsonl"
    write_requests(path, tasks(12))
    return path


def test_validate_ok_and_bad(
    input_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["batch", "validate", str(input_file)]) == 0
    assert "12 requests, model gpt-4o-mini, OK" in capsys.readouterr().out
    bad = tmp_path / "bad.jsonl"
    bad.write_text(input_file.read_text() + "{nope\n" + input_file.read_text().splitlines()[0])
    assert main(["batch", "validate", str(bad)]) == 1
    out = capsys.readouterr().out
    assert f"{bad}:13: invalid JSON" in out
    assert f"{bad}:14: duplicate custom_id 't0' (first on line 1)" in out


def test_run_against_the_embedded_emulator(
    input_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out.jsonl"
    code = main(["batch", "run", str(input_file), "-o", str(out), "--max-per-batch", "5"])
    assert code == 0
    captured = capsys.readouterr()
    assert "succeeded     12" in captured.out and "total tokens" in captured.out
    assert captured.err.count("submitted") == 3  # 5 + 5 + 2
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert [x["custom_id"] for x in lines] == [f"t{i}" for i in range(12)]


def test_run_with_invalid_input_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"custom_id": "a"}\n')
    assert main(["batch", "run", str(bad), "-o", str(tmp_path / "o.jsonl")]) == 1
    assert "BatchValidationError" in capsys.readouterr().err


@pytest.fixture
def target(server: MockServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    monkeypatch.setenv("HOLYSHEEP_API_KEY", "test-key")
    yield ["--base-url", server.base_url]


def test_submit_status_results(
    input_file: Path,
    tmp_path: Path,
    target: list[str],
    server: MockServer,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setitem(server.options, "batch_speed", 0)
    assert main(["batch", "submit", str(input_file), *target]) == 0
    batch_id, status = capsys.readouterr().out.split()
    assert status == "validating"
    assert main(["batch", "results", batch_id, *target]) == 1
    assert "still validating" in capsys.readouterr().err
    server.advance_batches(3)
    assert main(["batch", "status", batch_id, *target]) == 0
    assert f"{batch_id} completed 100.0% 12 completed, 0 failed of 12" in capsys.readouterr().out
    out = tmp_path / "r.jsonl"
    assert main(["batch", "results", batch_id, "-o", str(out), *target]) == 0
    assert len(out.read_text().splitlines()) == 12
    assert main(["batch", "results", batch_id, *target]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 12
    monkeypatch.setitem(server.options, "batch_speed", 5)
    assert main(["batch", "submit", str(input_file), *target]) == 0
    batch_id = capsys.readouterr().out.split()[0]
    assert main(["batch", "status", batch_id, "--wait", "--poll-interval", "0", *target]) == 0
    captured = capsys.readouterr()
    assert f"{batch_id} completed 100.0%" in captured.out
    assert f"{batch_id} in_progress  41.7%" in captured.err  # progress while waiting
    assert main(["batch", "status", "batch_nope", *target]) == 1
    assert "NotFoundError" in capsys.readouterr().err


def test_run_reports_failures_with_exit_3(
    input_file: Path,
    tmp_path: Path,
    target: list[str],
    server: MockServer,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setitem(server.options, "batch_fail", r"^t1$")
    out = tmp_path / "o.jsonl"
    args = ["batch", "run", str(input_file), "-o", str(out), "--retry", "none"]
    assert main([*args, "--poll-interval", "0", *target]) == 3
    assert "failed        1" in capsys.readouterr().out


def test_run_killed_after_submit_resumes_without_a_second_submit(
    tmp_path: Path, server: MockServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """kill -9 between submit and download, run the same command again: one POST /batches."""
    path = tmp_path / "in.jsonl"
    write_requests(path, tasks(8, prefix="kill"))
    out = tmp_path / "out.jsonl"
    journal = tmp_path / "run.journal"
    command = [
        sys.executable, "-c", "import sys; from holysheep_async.cli import main; sys.exit(main())",
        "batch", "run", str(path),
        "-o", str(out), "--journal", str(journal), "--poll-interval", "0.01",
        "--base-url", server.base_url,
    ]  # fmt: skip
    env = {**os.environ, "HOLYSHEEP_API_KEY": "test-key"}
    start = len(server.requests)
    monkeypatch.setitem(server.options, "batch_speed", 0)  # the batch will not move on its own
    proc = subprocess.Popen(command, env=env, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stderr is not None
        seen = []
        for line in proc.stderr:  # the run says so once the batch is created and journaled
            seen.append(line)
            if "submitted" in line:
                break
        proc.send_signal(signal.SIGKILL)
        assert "submitted" in seen[-1], "".join(seen)
    finally:
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    assert not out.exists()

    monkeypatch.setitem(server.options, "batch_speed", 100)
    again = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
    assert again.returncode == 0, again.stderr
    assert "succeeded     8" in again.stdout
    assert "resumed" in again.stderr and "submitted" not in again.stderr
    creates = [r for r in server.requests[start:] if r.method == "POST" and r.path == "/v1/batches"]
    assert len(creates) == 1
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert [x["custom_id"] for x in lines] == [f"kill{i}" for i in range(8)]


def test_demo_runs_a_batch(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--max-tokens", "5", "--batch-size", "6"]) == 0
    out = capsys.readouterr().out
    assert "2. Batch" in out and "succeeded     6" in out
    assert "validating -> in_progress -> finalizing -> completed" in out
    assert "100.0% done" in out  # the progress bar reached the end
    # Part 3: the seed's worked example, priced.
    assert "standard      $  1,125.00" in out
    assert "batch         $    562.50" in out


def test_progress_bar_on_a_terminal_and_in_a_log() -> None:
    import io

    from holysheep_async.cli.batch import ProgressBar

    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    tty = Tty()
    bar = ProgressBar(tty, width=10)
    bar.show(5, 10, "5/10 waiting")
    bar.close()
    assert tty.getvalue() == "\r[#####-----]  50.0% 5/10 waiting\x1b[K\n"
    log = io.StringIO()
    bar = ProgressBar(log)
    for done in range(101):
        bar.show(done, 100, f"{done}/100 waiting")
    bar.show(100, 100, "100/100 done")
    assert log.getvalue().count("\n") == 12  # one line per tenth and per phase, not per call


def test_validate_and_run_take_the_same_lines(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Seed-style task lines (custom_id, model, messages): run takes them, so validate does.
    seed = tmp_path / "seed.jsonl"
    seed.write_text("".join(json.dumps(t) + "\n" for t in tasks(4)))
    assert main(["batch", "validate", str(seed)]) == 0
    assert "4 requests, model gpt-4o-mini, OK" in capsys.readouterr().out
    out = tmp_path / "out.jsonl"
    assert main(["batch", "run", str(seed), "-o", str(out)]) == 0
    assert "succeeded     4" in capsys.readouterr().out
    # The same bad line is refused by both, with the same words and line number.
    bad = tmp_path / "bad.jsonl"
    broken = {"custom_id": "t9", "model": "gpt-4o-mini", "messages": "not a list"}
    bad.write_text(seed.read_text() + json.dumps(broken) + "\n")
    assert main(["batch", "validate", str(bad)]) == 1
    assert f"{bad}:5: body.messages must be a list, got a string" in capsys.readouterr().out
    assert main(["batch", "run", str(bad), "-o", str(out)]) == 1
    assert "line 5: body.messages must be a list, got a string" in capsys.readouterr().err


def test_submit_takes_seed_style_lines(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    seed = tmp_path / "seed.jsonl"
    seed.write_text("".join(json.dumps(t) + "\n" for t in tasks(3)))
    assert main(["batch", "submit", str(seed)]) == 0
    assert capsys.readouterr().out.split()[1] == "validating"
