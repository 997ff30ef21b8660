"""How every ``holysheep`` command ends: one line, the right exit code, never a traceback.

0 done, 1 an error, 2 a bad command line, 130 Ctrl-C. The Ctrl-C cases run the
installed entry point in a subprocess and signal it once its output shows it is
at work (never on a timer alone).
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from holysheep_async.cli import main
from holysheep_async.jsonl import write_requests
from holysheep_async.testing import MockServer

from .test_cli import holysheep

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")

ROOT = Path(__file__).resolve().parents[1]
MESSAGES = [{"role": "user", "content": "?"}]


def _default_sigint() -> None:
    # A shell starts background jobs with SIGINT ignored, and children inherit that:
    # give the command the disposition a terminal user's process has.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HOLYSHEEP_")}
    env.update(extra)
    return env


def start(argv: list[str], env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    """The command with stdout and stderr on one pipe (the order a user sees)."""
    return subprocess.Popen(
        argv,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=env if env is not None else clean_env(),
        preexec_fn=_default_sigint,
        cwd=ROOT,
    )


def interrupt(proc: subprocess.Popen[bytes], after: bytes, delay: float = 0.0) -> tuple[int, str]:
    """Wait until ``after`` is in the output, (optionally a moment more), then Ctrl-C."""
    assert proc.stdout is not None
    seen = b""
    try:
        while after not in seen:
            chunk = proc.stdout.read1(4096)
            if not chunk:
                break
            seen += chunk
        assert after in seen, seen.decode(errors="replace")
        if delay:
            # The random moment: an Event that nobody sets, waited on with a timeout.
            threading.Event().wait(delay)
        proc.send_signal(signal.SIGINT)
        rest, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return proc.returncode, (seen + rest).decode(errors="replace")


def assert_clean(output: str) -> None:
    assert "Traceback" not in output, output
    assert "Exception ignored" not in output, output
    assert "Error" not in output.replace("error:", ""), output


# -- Ctrl-C ------------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_chat_ctrl_c_on_the_embedded_emulator(backend: str) -> None:
    proc = start([holysheep(), "chat", "Count sheep", "--max-tokens", "3000", "--backend", backend])
    code, output = interrupt(proc, after=b" ")
    assert code == 130, output
    assert_clean(output)
    assert output.rstrip().endswith("interrupted")


COMMANDS = {
    # (argv, output that shows it is at work)
    "chat": (["chat", "Count sheep", "--max-tokens", "300"], b" "),
    "demo": (["demo", "--batch-size", "400"], b"demo against"),
    "batch run": (["batch", "run", "{input}", "-o", "{output}", "--max-per-batch", "150"], b"%"),
}


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_ctrl_c_at_a_random_moment(command: str, backend: str, tmp_path: Path) -> None:
    argv, ready = COMMANDS[command]
    source = tmp_path / "in.jsonl"
    write_requests(
        source,
        [
            {"custom_id": f"q{i}", "model": "gpt-4o", "messages": MESSAGES}
            for i in range(400)
        ],
    )
    argv = [a.format(input=source, output=tmp_path / "out.jsonl") for a in argv]
    seed = random.randrange(1_000_000)
    delay = random.Random(seed).uniform(0.0, 1.5)
    proc = start([holysheep(), *argv, "--backend", backend])
    code, output = interrupt(proc, after=ready, delay=delay)
    note = f"seed {seed}, Ctrl-C {delay:.2f} s after {ready!r}:\n{output}"
    assert_clean(output)
    # Either it was interrupted, or it had finished just before the signal came; a
    # signal during the interpreter's own exit (Python has given SIGINT back to the
    # default action by then) ends the process by SIGINT, which a shell shows as 130 too.
    assert code in (0, 130, -signal.SIGINT), note
    if code == 130:
        assert output.rstrip().endswith("interrupted"), note


def test_serve_says_what_it_accepts_and_stops_on_ctrl_c() -> None:
    proc = start([holysheep(), "serve", "--port", "0", "--api-key", "key-one"])
    code, output = interrupt(proc, after=b"Ctrl-C stops")
    assert code == 130, output
    assert_clean(output)
    assert re.search(r"listening on http://127\.0\.0\.1:\d+/v1", output)
    assert "accepts the keys: key-one" in output
    assert "batches: done 2 s after the first poll" in output


def test_trio_service_ctrl_c(server: MockServer) -> None:
    server.inject("stall", after=3, ping=0.05, path="/v1/chat/completions")
    env = clean_env(HOLYSHEEP_API_KEY="test-key", HOLYSHEEP_BASE_URL=server.base_url)
    proc = start([sys.executable, "examples/trio_service.py", "Count sheep"], env)
    code, output = interrupt(proc, after=b"Ctrl-C stops")
    assert code == 130, output
    assert_clean(output)
    assert output.rstrip().endswith("interrupted")


def test_aiohttp_example_ctrl_c_with_a_stream_in_flight() -> None:
    import httpx

    proc = start([sys.executable, "examples/aiohttp_sse.py"], clean_env(PORT="0"))
    assert proc.stdout is not None
    banner = proc.stdout.readline().decode()
    match = re.search(r"127\.0\.0\.1:(\d+)", banner)
    assert match, banner
    url = f"http://127.0.0.1:{match.group(1)}/chat"
    with httpx.stream("GET", url, params={"prompt": "hi", "max_tokens": 3000}, timeout=30) as r:
        chunks = r.iter_raw()
        assert next(chunks).startswith(b"data:")  # the stream is flowing
        proc.send_signal(signal.SIGINT)
        try:
            for _ in chunks:
                pass
        except httpx.HTTPError:
            pass  # the server went away mid-stream: expected
    rest, _ = proc.communicate(timeout=30)
    output = banner + rest.decode()
    assert proc.returncode == 0, output
    assert_clean(output)


# -- errors and usage ---------------------------------------------------------------


def run(argv: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [holysheep(), *argv],
        capture_output=True,
        text=True,
        env=env if env is not None else clean_env(),
        timeout=60,
        cwd=ROOT,
    )


def one_line(text: str) -> str:
    lines = text.strip().splitlines()
    assert len(lines) == 1, text
    return lines[0]


def test_bad_batch_id_is_one_line() -> None:
    result = run(["batch", "status", "bad id/../x"])
    assert result.returncode == 1
    assert one_line(result.stderr) == "error: not a batch id: 'bad id/../x'"


def test_port_out_of_range_is_a_usage_error() -> None:
    result = run(["serve", "--port", "99999"])
    assert result.returncode == 2
    assert "argument --port: a port is 0-65535, got 99999" in result.stderr
    assert_clean(result.stderr)


def test_trio_backend_without_trio() -> None:
    # trio made unimportable in the child, as on a plain install without the [trio] extra.
    code = (
        "import sys; sys.modules['trio'] = None\n"
        "from holysheep_async.cli import main\n"
        "sys.exit(main(['chat', 'hi', '--backend', 'trio']))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=clean_env(), timeout=60
    )
    assert result.returncode == 1
    assert one_line(result.stderr) == (
        "error: --backend trio needs trio: pip install 'holysheep-async[trio]'"
    )


@pytest.fixture(scope="module")
def finished_batch(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[MockServer, str, dict[str, str]]]:
    key = "test-key-0123"
    with MockServer(api_keys=[key], batch_duration=0) as server:
        source = tmp_path_factory.mktemp("batch") / "in.jsonl"
        write_requests(
            source,
            [
                {"custom_id": f"q{i}", "model": "gpt-4o", "messages": MESSAGES}
                for i in range(600)
            ],
        )
        env = clean_env(HOLYSHEEP_API_KEY=key)
        submitted = run(["batch", "submit", str(source), "--base-url", server.base_url], env)
        assert submitted.returncode == 0, submitted.stderr
        batch_id = submitted.stdout.split()[0]
        waited = run(["batch", "status", batch_id, "--wait", "--base-url", server.base_url], env)
        assert waited.returncode == 0, waited.stderr
        yield server, batch_id, env


def test_batch_results_into_a_closed_pipe(
    finished_batch: tuple[MockServer, str, dict[str, str]],
) -> None:
    server, batch_id, env = finished_batch
    # `holysheep batch results ID | head -1`
    proc = subprocess.Popen(
        [holysheep(), "batch", "results", batch_id, "--base-url", server.base_url],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    assert proc.stdout is not None and proc.stderr is not None
    first = proc.stdout.readline()
    proc.stdout.close()
    err = proc.stderr.read().decode()
    proc.wait(timeout=60)
    assert json.loads(first)["custom_id"].startswith("q")
    assert err == "", err
    assert proc.returncode == 1


def test_api_key_file(
    finished_batch: tuple[MockServer, str, dict[str, str]], tmp_path: Path
) -> None:
    server, batch_id, env = finished_batch
    key = env["HOLYSHEEP_API_KEY"]
    key_file = tmp_path / "key"
    key_file.write_text(key + "\n")
    argv = ["batch", "status", batch_id, "--base-url", server.base_url]
    result = run([*argv, "--api-key-file", str(key_file)])  # no HOLYSHEEP_API_KEY
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"{batch_id} completed")
    assert server.requests[-1].headers["authorization"] == f"Bearer {key}"
    assert key not in result.stdout + result.stderr

    missing = run([*argv, "--api-key-file", str(tmp_path / "nope")])
    assert missing.returncode == 1
    assert one_line(missing.stderr).startswith("error: cannot read the API key file")
    key_file.write_text("\n")
    empty = run([*argv, "--api-key-file", str(key_file)])
    assert empty.returncode == 1 and "is empty" in one_line(empty.stderr)
    no_key = run(argv)
    assert no_key.returncode == 1
    assert one_line(no_key.stderr) == (
        "error: no API key: set HOLYSHEEP_API_KEY or pass --api-key-file PATH"
    )


def test_plain_http_is_refused_in_cli_words(capsys: pytest.CaptureFixture[str]) -> None:
    os.environ["HOLYSHEEP_API_KEY"] = "test-key-0123"
    try:
        code = main(["chat", "hi", "--base-url", "http://api.example.com/v1"])
    finally:
        del os.environ["HOLYSHEEP_API_KEY"]
    err = capsys.readouterr().err
    assert code == 1
    assert "--insecure-http" in err and "AsyncClient" not in err and "allow_" not in err


def test_insecure_http_reaches_the_client(monkeypatch: pytest.MonkeyPatch) -> None:
    import argparse

    import anyio

    from holysheep_async.cli._common import open_client

    monkeypatch.setenv("HOLYSHEEP_API_KEY", "test-key-0123")
    seen: list[Any] = []

    async def go() -> None:
        args = argparse.Namespace(base_url="http://api.example.com/v1", insecure_http=True)
        async with open_client(args) as (client, emulated):
            seen.append((client._requester.allow_insecure_http, emulated))

    anyio.run(go)
    assert seen == [(True, False)]


def test_bench_from_an_installed_package(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from holysheep_async.cli import bench

    monkeypatch.setattr(bench, "_suite", lambda: None)  # no benchmarks/ beside the package
    code = main(["bench", "--quick", "--backend", "trio"])
    err = capsys.readouterr().err
    assert code == 1
    assert one_line(err).startswith("error: holysheep bench runs the benchmarks/ folder")
    with pytest.raises(SystemExit) as info:
        main(["cost", "--quick"])  # other commands still refuse unknown options
    assert info.value.code == 2


def test_unexpected_errors_are_one_line(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from holysheep_async.cli import chat

    def boom(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("something broke")

    monkeypatch.setattr(chat, "open_client", boom)
    code = main(["chat", "hi"])
    assert code == 1
    assert one_line(capsys.readouterr().err) == (
        "error: unexpected RuntimeError: something broke (holysheep -vv ... shows the traceback)"
    )
