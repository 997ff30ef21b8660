"""holysheep_async.Client: the async client's surface, blocking, from plain threads."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import BaseModel

from holysheep_async import APIConnectionError, AsyncClient, Client, RefusalError
from holysheep_async.testing import MockServer
from holysheep_async.testing._chat import answer_text
from holysheep_async.types import ChatCompletionMessageParam

from .conftest import FakeSleep

ASK: list[ChatCompletionMessageParam] = [{"role": "user", "content": "Say hi"}]


class Pet(BaseModel):
    name: str
    legs: int


@pytest.fixture
def sync_client(server: MockServer) -> Iterator[Client]:
    with Client(api_key="test-key", base_url=server.base_url) as client:
        client.async_client._requester.sleep = FakeSleep()
        yield client


def test_create_and_stream(sync_client: Client, server: MockServer) -> None:
    completion = sync_client.chat.create(model="gpt-4o", messages=ASK, max_tokens=5)
    assert completion.text == answer_text(ASK, 5)
    assert completion.request_id == server.requests[-1].request_id
    with sync_client.chat.stream(model="gpt-4o", messages=ASK, max_tokens=6) as stream:
        pieces = list(stream)
    assert "".join(pieces) == stream.text == answer_text(ASK, 6)
    assert stream.finish_reason == "stop" and stream.usage is not None
    assert stream.metrics.ttft is not None
    # Iterated bare (no `with`) too, and typed chunks.
    assert "".join(sync_client.chat.stream(model="gpt-4o", messages=ASK, max_tokens=3)) == (
        answer_text(ASK, 3)
    )
    with sync_client.chat.stream(model="gpt-4o", messages=ASK, max_tokens=2) as s:
        chunks = list(s.chunks())
    assert any(c.choices and c.choices[0].delta.content for c in chunks)
    assert sync_client.usage.requests == 4


def test_structured_outputs(sync_client: Client) -> None:
    assert sync_client.chat.create(model="m", messages=ASK, response_format=Pet).parsed == Pet(
        name="sheep", legs=1
    )
    with sync_client.chat.stream(model="m", messages=ASK, response_format=Pet) as stream:
        for _ in stream:
            pass
    assert stream.parsed.legs == 1
    with pytest.raises(RefusalError):
        sync_client.chat.create(
            model="m", messages=[{"role": "user", "content": "[refuse]"}], response_format=Pet
        )


def test_errors_and_options_behave_as_async(sync_client: Client, server: MockServer) -> None:
    with pytest.raises(TypeError, match="temprature"):
        sync_client.chat.create(model="m", messages=ASK, temprature=1)  # type: ignore[call-overload]
    sync_client.chat.create(
        model="m", messages=ASK, extra_headers={"X-A": "1"}, extra_body={"top_k": 3}
    )
    assert server.requests[-1].headers["x-a"] == "1"
    assert server.requests[-1].json()["top_k"] == 3


def test_batch_run_models_embeddings_files(
    sync_client: Client, server: MockServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(server.options, "batch_speed", 100)
    tasks = [
        {"custom_id": f"t{i}", "model": "gpt-4o", "messages": [{"role": "user", "content": str(i)}]}
        for i in range(3)
    ]
    report = sync_client.batches.run(tasks)
    assert report.succeeded == ["t0", "t1", "t2"] and report.mode == "batch"
    assert any(b.id == report.batch_ids[0] for b in sync_client.batches.list())
    assert {m.id for m in sync_client.models.list()} >= {"gpt-4o"}
    vectors = sync_client.embeddings.create(model="text-embedding-3-small", input=["a", "b"])
    assert len(vectors.vectors) == 2
    file = sync_client.files.create(b"hello\n", purpose="user_data")
    out = sync_client.files.content(file.id, tmp_path / "out.bin")
    assert out.read_bytes() == b"hello\n"
    assert sync_client.files.delete(file.id).deleted


def test_usable_from_many_threads_at_once(server: MockServer) -> None:
    results: dict[int, str] = {}
    errors: list[BaseException] = []
    start = threading.Barrier(6)

    def work(i: int, client: Client) -> None:
        try:
            start.wait()
            messages: list[ChatCompletionMessageParam] = [{"role": "user", "content": f"q{i}"}]
            results[i] = client.chat.create(model="m", messages=messages, max_tokens=4).text
            with client.chat.stream(model="m", messages=messages, max_tokens=4) as s:
                assert "".join(s) == results[i]
        except BaseException as exc:
            errors.append(exc)

    # Made in one plain thread, used from six others.
    made: list[Client] = []
    maker = threading.Thread(
        target=lambda: made.append(Client(api_key="test-key", base_url=server.base_url))
    )
    maker.start()
    maker.join()
    with made[0] as client:
        threads = [threading.Thread(target=work, args=(i, client)) for i in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert not errors, errors
    assert results == {i: answer_text([{"role": "user", "content": f"q{i}"}], 4) for i in range(6)}


def test_closed_client_says_so(server: MockServer) -> None:
    client = Client(api_key="test-key", base_url=server.base_url)
    client.close()
    client.close()  # idempotent
    with pytest.raises(RuntimeError, match="closed"):
        client.models.list()


def test_bad_settings_raise_before_a_thread_starts() -> None:
    before = threading.active_count()
    with pytest.raises(ValueError, match="base_url"):
        Client(api_key="k", base_url="ftp://x")
    assert threading.active_count() == before


@pytest.mark.anyio
async def test_made_and_used_inside_a_running_event_loop(
    server: MockServer, anyio_backend: str
) -> None:
    """As in a notebook cell (a Jupyter kernel runs cells inside its asyncio loop): the call
    blocks this thread's loop, as the official SDK's sync client does, and works."""
    with Client(api_key="test-key", base_url=server.base_url) as client:
        assert client.chat.create(model="m", messages=ASK, max_tokens=3).text == answer_text(
            ASK, 3
        )
        with client.chat.stream(model="m", messages=ASK, max_tokens=4) as stream:
            assert "".join(stream) == answer_text(ASK, 4)
        assert {m.id for m in client.models.list()} >= {"gpt-4o"}


@pytest.fixture
def outside_client(server: MockServer) -> Iterator[Client]:
    with Client(api_key="test-key", base_url=server.base_url) as client:
        yield client


@pytest.mark.anyio
async def test_calls_from_a_running_event_loop_work(
    outside_client: Client, server: MockServer, anyio_backend: str
) -> None:
    before = len(server.requests)
    assert outside_client.chat.create(model="m", messages=ASK, max_tokens=2).text == (
        answer_text(ASK, 2)
    )
    assert "".join(outside_client.chat.stream(model="m", messages=ASK, max_tokens=2)) == (
        answer_text(ASK, 2)
    )
    assert len(server.requests) == before + 2


def _loop_threads() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t.name == "holysheep-sync-client"}


def test_the_loop_thread_starts_at_the_first_call(server: MockServer) -> None:
    before = _loop_threads()
    client = Client(api_key="test-key", base_url=server.base_url)
    assert _loop_threads() == before  # made at import time, it costs no thread
    client.models.list()
    assert len(_loop_threads() - before) == 1
    client.close()
    assert _loop_threads() == before
    unused = Client(api_key="test-key", base_url=server.base_url)
    unused.close()  # never used: nothing to stop
    assert _loop_threads() == before
    with pytest.raises(RuntimeError, match="closed"):
        unused.models.list()


def test_file_content_bytes_and_path(sync_client: Client, tmp_path: Path) -> None:
    file = sync_client.files.create(b"line\n" * 1000, purpose="user_data")
    assert sync_client.files.content(file.id) == b"line\n" * 1000
    assert sync_client.files.content(file.id, tmp_path / "o").read_bytes() == b"line\n" * 1000


def test_a_callback_calling_the_client_from_its_own_loop_is_refused(
    sync_client: Client, server: MockServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(server.options, "batch_speed", 100)
    seen: list[str] = []

    def progress(_: object) -> None:
        if not seen:
            try:
                sync_client.models.list()
            except RuntimeError as exc:
                seen.append(str(exc))

    sync_client.batches.run(
        [{"custom_id": "a", "model": "m", "messages": [{"role": "user", "content": "x"}]}],
        on_progress=progress,
    )
    assert seen and "wait for itself" in seen[0]


CTRL_C_SCRIPT = """
import sys
from holysheep_async import Client

with Client(api_key="k", base_url=sys.argv[1]) as client:
    try:
        with client.chat.stream(model="m", messages=[{"role": "user", "content": "go"}]) as s:
            for text in s:
                print("TEXT", flush=True)
    except KeyboardInterrupt:
        print("INTERRUPTED", len(s.text) > 0, flush=True)
        sys.stdin.readline()  # stay alive (client open) until the test has looked
        sys.exit(130)
print("ENDED", flush=True)
"""


@pytest.mark.skipif(sys.platform == "win32", reason="SIGINT to a child process")
def test_ctrl_c_stops_a_sync_stream_and_closes_its_connection(tmp_path: Path) -> None:
    script = tmp_path / "ctrl_c.py"
    script.write_text(CTRL_C_SCRIPT)
    # A long, slow answer: it would take minutes to end by itself.
    with MockServer(itl=0.01, tokens=50_000) as server:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        proc = subprocess.Popen(
            [sys.executable, str(script), server.base_url],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        try:
            assert proc.stdout is not None and proc.stdin is not None
            assert proc.stdout.readline().strip() == "TEXT"  # streaming now
            assert server.open_connections == 1
            proc.send_signal(signal.SIGINT)
            line = proc.stdout.readline().strip()
            while line == "TEXT":  # deltas already on their way when the signal landed
                line = proc.stdout.readline().strip()
            assert line == "INTERRUPTED True"
            # The child is still alive with its client open: the stream's connection is
            # closed (not parked in the pool), as the emulator sees it.
            assert server.wait_connections(0, timeout=10) == 0
            assert proc.poll() is None
            proc.stdin.write("\n")
            proc.stdin.flush()
            assert proc.wait(timeout=30) == 130
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        assert "Traceback" not in (proc.stderr.read() if proc.stderr else "")


def test_async_client_is_underneath(sync_client: Client) -> None:
    assert isinstance(sync_client.async_client, AsyncClient)
    assert "test-key" not in repr(sync_client) and repr(sync_client).startswith("<Client ")


CTRL_C_CREATE = """
import sys
from holysheep_async import Client

client = Client(api_key="k", base_url=sys.argv[1], max_retries=0)
try:
    client.chat.create(model="m", messages=[{"role": "user", "content": "go"}])
except KeyboardInterrupt:
    print("INTERRUPTED", flush=True)
    sys.stdin.readline()  # stay alive (client open) until the test has looked
    client.close()
    sys.exit(130)
"""


@pytest.mark.skipif(sys.platform == "win32", reason="SIGINT to a child process")
def test_ctrl_c_during_a_blocking_call_cancels_the_request(tmp_path: Path) -> None:
    script = tmp_path / "ctrl_c_create.py"
    script.write_text(CTRL_C_CREATE)
    # The answer would take a minute: only a cancelled request closes its connection sooner.
    with MockServer(ttft=60) as server:
        proc = subprocess.Popen(
            [sys.executable, str(script), server.base_url],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert proc.stdout is not None and proc.stdin is not None
            # Once the request is in (not merely connected: a connection with no request
            # on it is rightly kept for reuse when the call is cancelled).
            assert server.wait_requests(1, timeout=30) == 1
            proc.send_signal(signal.SIGINT)
            assert proc.stdout.readline().strip() == "INTERRUPTED"
            assert server.wait_connections(0, timeout=10) == 0
            assert proc.poll() is None
            proc.stdin.write("\n")
            proc.stdin.flush()
            assert proc.wait(timeout=30) == 130
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def test_a_stream_error_comes_after_the_text_before_it(sync_client: Client) -> None:
    got: list[str] = []
    with (
        pytest.raises(APIConnectionError) as info,
        sync_client.chat.stream(
            model="m", messages=ASK, max_tokens=8, extra_headers={"x-mock-fault": "drop; after=3"}
        ) as stream,
    ):
        for text in stream:
            got.append(text)
    assert "".join(got) == answer_text(ASK, 8)[: len("".join(got))] and len(got) == 3
    assert info.value.partial_text == "".join(got) == stream.text


def test_leaving_a_sync_stream_early_closes_its_connection() -> None:
    with (
        MockServer(itl=0.01, tokens=50_000) as server,
        Client(api_key="k", base_url=server.base_url) as client,
    ):
        for _text in client.chat.stream(model="m", messages=ASK):  # bare, no `with`
            break
        # The client is open; the stream's connection is closed, not kept for reuse.
        assert server.wait_connections(0, timeout=10) == 0
        assert client.chat.create(model="m", messages=ASK, max_tokens=2).text
