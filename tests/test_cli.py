"""``holysheep cost``, ``advise`` and ``chat``, in process and through the entry point."""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from holysheep_async.cli import main
from holysheep_async.pricing import cost
from holysheep_async.testing import MockServer, answer_text, prompt_tokens

BACKENDS = ["asyncio", "trio"]


def holysheep() -> str:
    """The installed console script (what a user runs after ``pip install``)."""
    script = Path(sys.executable).parent / "holysheep"
    found = str(script) if script.exists() else shutil.which("holysheep")
    if not found:
        pytest.fail("the holysheep entry point is not installed (pip install -e .)")
    return found


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


# -- cost ----------------------------------------------------------------------------


def test_cost_for_one_model_reproduces_the_reference(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(capsys, "cost", "--model", "gpt-4o")
    assert code == 0
    row = next(line for line in out.splitlines() if line.startswith("gpt-4o "))
    assert row.split() == ["gpt-4o", "$1,125.00", "$562.50", "$562.50"]
    assert "5,000 requests a day for 30 days" in out
    assert "as of 2025-11-01" in out


def test_cost_lists_every_model_by_default(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(capsys, "cost", "--requests", "1_000", "--days", "1")
    assert code == 0
    for model in ("gpt-4o", "gpt-4.1", "claude-sonnet-4.5", "gemini-2.5-flash", "deepseek-v3.2"):
        assert re.search(rf"^{re.escape(model)}\s+\$", out, re.MULTILINE), model


def test_cost_json_and_currency(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(
        capsys, "cost", "-m", "gpt-4o", "-m", "deepseek-chat", "--json", "--currency", "eur",
        "--rate", "0.5",
    )  # fmt: skip
    assert code == 0
    data = json.loads(out)
    assert data["currency"] == "EUR" and data["rate"] == 0.5
    first, second = data["estimates"]
    assert first["model"] == "gpt-4o" and first["standard_usd"] == 1125.0
    assert first["batch_usd"] == 562.5 and first["savings_usd"] == 562.5
    assert second["model"] == "deepseek-v3.2"
    code, out, _ = run_cli(capsys, "cost", "-m", "gpt-4o", "--currency", "EUR", "--rate", "0.5")
    assert "562.50 EUR" in out and "281.25 EUR" in out


def test_cost_errors_are_explained(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, _, err = run_cli(capsys, "cost", "-m", "gpt-5o")
    assert code == 1
    assert "'gpt-5o'" in err and "did you mean" in err
    code, _, err = run_cli(capsys, "cost", "--currency", "EUR")
    assert code == 1 and "--rate" in err
    with pytest.raises(SystemExit) as info:
        main(["cost", "--requests", "-5"])
    assert info.value.code == 2
    assert "must be >= 0" in capsys.readouterr().err


def test_cost_uses_a_price_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    prices = tmp_path / "prices.json"
    prices.write_text(
        json.dumps({"as_of": "2026-03-01", "models": {"ours": {"input": 1, "output": 1}}})
    )
    code, out, _ = run_cli(
        capsys, "cost", "-m", "ours", "--prices", str(prices), "--requests", "1000", "--days", "1"
    )
    assert code == 0
    assert "as of 2026-03-01" in out
    # 1,000 requests x 1,500 tokens at $1 per million
    assert re.search(r"^ours\s+\$1\.50\s+\$0\.75\s+\$0\.75$", out, re.MULTILINE)


def test_cost_through_the_entry_point() -> None:
    result = subprocess.run(
        [holysheep(), "cost", "--model", "gpt-4o"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert "$1,125.00" in result.stdout and "$562.50" in result.stdout


# -- advise --------------------------------------------------------------------------


def test_advise_a_mix(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(capsys, "advise", "--requests", "5000", "--interactive", "20%")
    assert code == 0
    assert "1,000 with someone waiting, 4,000 that can wait" in out
    assert re.search(r"stream everything\s+\$1,125\.00 a month", out)
    assert re.search(r"batch everything\s+\$562\.50 a month\s+\(not an option", out)
    # 1,000 x $0.0075 x 30 + 4,000 x $0.00375 x 30
    assert re.search(r"stream 1,000/day live, batch 4,000/day\s+\$675\.00 a month\s+<- rec", out)
    assert "You save $450.00 a month" in out


@pytest.mark.parametrize(
    ("argv", "recommended"),
    [
        (["--requests", "5000", "--interactive", "0"], "batch"),
        (["--requests", "5000", "--interactive", "1.0"], "stream"),
        (["--requests", "5000", "--interactive", "35%"], "mix"),
        # $0.37 a month is not worth a second pipeline
        (["--requests", "50", "--interactive", "0", "-m", "deepseek-v3.2"], "stream"),
    ],
)
def test_advise_picks_the_cheapest_plan_that_serves_everyone(
    capsys: pytest.CaptureFixture[str], argv: list[str], recommended: str
) -> None:
    code, out, _ = run_cli(capsys, "advise", *argv, "--json")
    assert code == 0
    data = json.loads(out)
    assert data["recommended"] == recommended
    plans = {p["plan"]: p for p in data["plans"]}
    assert plans[recommended]["feasible"]


def test_advise_rejects_a_bad_share(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["advise", "--requests", "10", "--interactive", "120%"])
    assert "between 0% and 100%" in capsys.readouterr().err


# -- chat ----------------------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
def test_chat_streams_then_reports(capsys: pytest.CaptureFixture[str], backend: str) -> None:
    code, out, err = run_cli(
        capsys, "chat", "How are you?", "--max-tokens", "5", "--backend", backend
    )
    assert code == 0, err
    messages = [{"role": "user", "content": "How are you?"}]
    assert out == answer_text(messages, 5) + "\n"
    usd = cost("gpt-4o", prompt_tokens(messages), 5)
    line = err.strip().splitlines()[-1]
    assert re.fullmatch(rf"ttft \d+ ms · [\d.]+ tokens/s · 5 tokens · \${usd:.6f}", line), line


def test_chat_sends_the_options(
    capsys: pytest.CaptureFixture[str], server: MockServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOLYSHEEP_API_KEY", "test-key")
    monkeypatch.setattr(sys, "stdin", io.StringIO("from stdin\n"))
    before = len(server.requests)
    code, out, err = run_cli(
        capsys, "chat", "-", "--base-url", server.base_url, "--system", "Be brief.",
        "--max-tokens", "3", "--temperature", "0.2", "--model", "house-model",
    )  # fmt: skip
    assert code == 0, err
    body = server.requests[before].json()
    assert body["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "from stdin\n"},
    ]
    assert (body["model"], body["max_tokens"], body["temperature"]) == ("house-model", 3, 0.2)
    assert body["stream"] is True
    assert out == answer_text(body["messages"], 3) + "\n"
    assert "cost unknown (no price for house-model)" in err


def test_chat_errors_are_one_line_without_the_key(
    capsys: pytest.CaptureFixture[str], server: MockServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOLYSHEEP_API_KEY", "sk-canary-0123456789")
    code, _, err = run_cli(capsys, "chat", "hi", "--base-url", server.base_url)
    assert code == 1
    assert err.startswith("error: AuthenticationError")
    assert "sk-canary" not in err and "Traceback" not in err
    code, _, err = run_cli(capsys, "chat", "   ")
    assert code == 2 and "empty" in err


def test_chat_reads_stdin_through_the_entry_point() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HOLYSHEEP_")}
    result = subprocess.run(
        [holysheep(), "chat", "-", "--max-tokens", "4"],
        input="Tell me about sheep",
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    expected = answer_text([{"role": "user", "content": "Tell me about sheep"}], 4)
    assert result.stdout == expected + "\n"
    assert "4 tokens" in result.stderr


@pytest.mark.skipif(sys.platform == "win32", reason="SIGINT delivery")
@pytest.mark.parametrize("backend", BACKENDS)
def test_chat_ctrl_c_stops_cleanly(server: MockServer, backend: str) -> None:
    # The answer stalls after three tokens; Ctrl-C comes once text is on screen.
    server.inject("stall", after=3, ping=0.05, path="/v1/chat/completions")
    env = {k: v for k, v in os.environ.items() if not k.startswith("HOLYSHEEP_")}
    env["HOLYSHEEP_API_KEY"] = "test-key"
    proc = subprocess.Popen(
        [holysheep(), "chat", "Count sheep", "--base-url", server.base_url, "--backend", backend],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        # A shell starts background jobs (`cmd &`) with SIGINT ignored, and that is
        # inherited: give the CLI the disposition a terminal user's process has.
        preexec_fn=_default_sigint,
    )
    try:
        assert proc.stdout is not None
        first = proc.stdout.read1(64)  # returns once the first text arrives
        assert first
        proc.send_signal(signal.SIGINT)
        rest, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130
    assert b"Traceback" not in err, err.decode()
    assert b"interrupted" in err
    expected = answer_text([{"role": "user", "content": "Count sheep"}], 16)
    text = (first + rest).decode()
    assert text.endswith("\n")
    assert expected.startswith(text.rstrip("\n"))


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_chat_failure_midstream_keeps_the_text_and_says_why(
    capsys: pytest.CaptureFixture[str], server: MockServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOLYSHEEP_API_KEY", "test-key")
    server.inject("drop", after=3, path="/v1/chat/completions")
    code, out, err = run_cli(capsys, "chat", "Drop me", "--base-url", server.base_url)
    assert code == 1
    expected = answer_text([{"role": "user", "content": "Drop me"}], 16)
    assert out.endswith("\n") and expected.startswith(out[:-1]) and len(out) > 1
    assert err.startswith("error: APIConnectionError")
    assert "Traceback" not in err
