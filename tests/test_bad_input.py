"""Bad input everywhere gets a clear, typed error that names the problem.

Client settings (beyond tests/test_config.py), a batch id that does not exist,
results that belong to another batch, an output file that is not JSONL, and
a server that answers HTML, garbage or nothing where JSON or an event stream
was due. No raw JSONDecodeError, pydantic ValidationError or httpx error
reaches the caller.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx

from holysheep_async import (
    APIConnectionError,
    AsyncClient,
    Batch,
    ConfigurationError,
    HolySheepError,
    IncompleteStreamError,
    InvalidResponseError,
    NotFoundError,
    RetryPolicy,
)
from holysheep_async.testing import MockServer

pytestmark = pytest.mark.anyio

BASE = "https://relay.test/v1"
MSGS = [{"role": "user", "content": "hi"}]


# -- client settings ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "names"),
    [
        ({"timeout": "x"}, "timeout must be a finite number, got 'x'"),
        ({"timeout": float("nan")}, "timeout"),
        ({"rpm": "10"}, "rpm .*'10'"),
        ({"burst": 0}, "burst"),
        ({"base_url": "api.example.com/v1"}, "base_url must be an http:// or https:// URL"),
        ({"base_url": "//api.example.com/v1"}, "base_url"),
        ({"max_concurrency": 1.5}, "max_concurrency"),
        ({"stream_idle_timeout": "3"}, "stream_idle_timeout"),
        ({"retry": 3}, "retry must be a RetryPolicy .* max_retries="),
        ({"retry": RetryPolicy(max_retries=1), "max_retries": 5}, "not both"),
        ({"default_headers": ["x-a"]}, "default_headers must be a dict of str to str"),
        ({"default_headers": {"x-a": 1}}, "default_headers"),
        ({"allow_insecure_http": "yes"}, "allow_insecure_http must be True or False"),
    ],
)
def test_wrong_client_settings_name_the_setting(kwargs: dict[str, Any], names: str) -> None:
    with pytest.raises(ConfigurationError, match=names):
        AsyncClient(api_key="k", **kwargs)


# -- batch ids that do not exist -------------------------------------------------------


@pytest.fixture
async def emu_client(server: MockServer) -> Any:
    async with AsyncClient(api_key="test-key", base_url=server.base_url, max_retries=0) as c:
        yield c


@pytest.mark.parametrize("call", ["retrieve", "wait", "cancel", "results"])
async def test_an_unknown_batch_id_is_a_not_found_error_naming_it(
    emu_client: AsyncClient, call: str
) -> None:
    with pytest.raises(NotFoundError) as info:
        if call == "results":
            [r async for r in emu_client.batches.results("batch_nope")]
        else:
            await getattr(emu_client.batches, call)("batch_nope")
    err = info.value
    assert err.status_code == 404
    assert "batch_nope" in str(err)
    assert err.request_id and f"[request id {err.request_id}]" in str(err)


async def test_a_malformed_batch_id_is_refused_before_sending(emu_client: AsyncClient) -> None:
    with pytest.raises(ValueError, match=re.escape("not a batch id: '../files'")):
        await emu_client.batches.retrieve("../files")


# -- a server answering what it should not ------------------------------------------------


@pytest.fixture
def relay() -> Iterator[respx.MockRouter]:
    # using="httpx": mocked above whichever transport the client uses.
    with respx.mock(base_url=BASE, using="httpx", assert_all_called=False) as router:
        yield router


@pytest.fixture
async def relay_client(relay: respx.MockRouter) -> Any:
    async with AsyncClient(api_key="k", base_url=BASE, max_retries=0) as c:
        yield c


async def consume(client: AsyncClient) -> str:
    async with client.chat.stream(model="m", messages=MSGS) as stream:
        return "".join([t async for t in stream])


def html() -> httpx.Response:
    return httpx.Response(
        200,
        headers={"content-type": "text/html; charset=utf-8", "x-request-id": "req_h"},
        content=b"<html><head><title>Sign in to the portal</title></head><body>...</body></html>",
    )


def json_garbage() -> httpx.Response:
    return httpx.Response(200, headers={"content-type": "application/json"}, content=b"oops{")


def empty(ctype: str | None) -> httpx.Response:
    return httpx.Response(200, headers={"content-type": ctype} if ctype else {}, content=b"")


@pytest.mark.parametrize(
    ("answer", "says"),
    [
        (html, r"200 from .*HTML page \(Sign in to the portal; content-type text/html"),
        (json_garbage, r"200 from .*got b'oops\{' \(content-type application/json\)"),
        (
            lambda: empty("application/json"),
            "200 from .*empty body .*content-type application/json",
        ),
        (lambda: empty(None), r"200 from .*empty body \(no content-type\)"),
    ],
)
@pytest.mark.parametrize("call", ["chat.create", "batches.retrieve"])
async def test_html_garbage_or_empty_answers_are_invalid_response_errors(
    relay: respx.MockRouter, relay_client: AsyncClient, answer: Any, says: str, call: str
) -> None:
    relay.post("/chat/completions").mock(return_value=answer())
    relay.get("/batches/batch_1").mock(return_value=answer())
    with pytest.raises(InvalidResponseError, match=says) as info:
        if call == "chat.create":
            await relay_client.chat.create(model="m", messages=MSGS)
        else:
            await relay_client.batches.retrieve("batch_1")
    assert info.value.status_code == 200


@pytest.mark.parametrize(
    ("answer", "error", "says"),
    [
        (html, InvalidResponseError, r"HTML page \(Sign in .*content-type text/html"),
        (json_garbage, InvalidResponseError, r"got b'oops\{' \(content-type application/json\)"),
        (
            lambda: empty("application/json"),
            InvalidResponseError,
            "empty body .*content-type application/json",
        ),
        # No JSON content type: read as an event stream that held no event at all.
        (lambda: empty(None), IncompleteStreamError, r"200 from .*\(no content-type\) held no"),
        (
            lambda: httpx.Response(
                200, headers={"content-type": "text/plain"}, content=b"Service Unavailable"
            ),
            IncompleteStreamError,
            r"content-type text/plain\) held no event stream: got 'Service Unavailable'",
        ),
    ],
)
async def test_a_stream_answered_with_html_garbage_or_nothing(
    relay: respx.MockRouter,
    relay_client: AsyncClient,
    answer: Any,
    error: type[HolySheepError],
    says: str,
) -> None:
    relay.post("/chat/completions").mock(return_value=answer())
    with pytest.raises(error, match=says):
        await consume(relay_client)


@pytest.mark.parametrize("call", ["chat.create", "chat.stream", "batches.retrieve"])
async def test_a_connection_closed_without_an_answer(
    relay: respx.MockRouter, relay_client: AsyncClient, call: str
) -> None:
    closed = httpx.RemoteProtocolError("server disconnected without sending a response")
    relay.post("/chat/completions").mock(side_effect=closed)
    relay.get("/batches/batch_1").mock(side_effect=closed)
    with pytest.raises(APIConnectionError, match="disconnected without sending a response") as i:
        if call == "chat.create":
            await relay_client.chat.create(model="m", messages=MSGS)
        elif call == "chat.stream":
            await consume(relay_client)
        else:
            await relay_client.batches.retrieve("batch_1")
    assert isinstance(i.value.__cause__, httpx.RemoteProtocolError)


async def test_a_connection_closed_without_an_answer_by_a_real_server(
    emu_client: AsyncClient,
) -> None:
    # The emulator closes the connection on the first content chunk: nothing came.
    with pytest.raises(APIConnectionError):
        async with emu_client.chat.stream(
            model="m", messages=MSGS, extra_headers={"x-mock-fault": "drop; after=0"}
        ) as stream:
            async for _ in stream:
                pass


# -- output files that are not JSONL, results of another batch -------------------------------

DONE = {
    "id": "batch_1",
    "object": "batch",
    "endpoint": "/v1/chat/completions",
    "input_file_id": "file_in",
    "completion_window": "24h",
    "status": "completed",
    "created_at": 1,
    "output_file_id": "file_out",
}


def result_line(cid: str) -> bytes:
    body = {"id": "c", "object": "chat.completion", "model": "m", "choices": []}
    line = {"id": "r", "custom_id": cid, "response": {"status_code": 200, "body": body}}
    return json.dumps(line).encode() + b"\n"


@pytest.mark.parametrize(
    ("content", "says"),
    [
        (html().content, "file file_out line 1: not JSONL: .*HTML page"),
        (
            b"\x00\x01garbage\nmore garbage\n",
            "file file_out is not JSONL .*file_out line 1: not a batch",
        ),
    ],
)
async def test_an_output_file_that_is_not_jsonl_names_the_file_and_line(
    relay: respx.MockRouter, relay_client: AsyncClient, content: bytes, says: str
) -> None:
    ctype = "text/html" if content.startswith(b"<") else "application/octet-stream"
    relay.get("/files/file_out/content").mock(
        return_value=httpx.Response(200, headers={"content-type": ctype}, content=content)
    )
    batch = Batch.model_validate(DONE)
    problems: list[tuple[int, str]] = []
    with pytest.raises(InvalidResponseError, match=says):
        [r async for r in relay_client.batches.results(batch, problems=problems)]
    if ctype != "text/html":
        assert [line for line, _ in problems] == [1, 2]


async def test_downloading_an_html_output_file_fails_and_writes_nothing(
    relay: respx.MockRouter, relay_client: AsyncClient, tmp_path: Path
) -> None:
    relay.get("/files/file_out/content").mock(return_value=html())
    target = tmp_path / "out.jsonl"
    with pytest.raises(InvalidResponseError, match="file file_out line 1: not JSONL"):
        await relay_client.batches.download(Batch.model_validate(DONE), target)
    assert not target.exists()


async def test_one_bad_line_among_results_is_reported_not_fatal(
    relay: respx.MockRouter, relay_client: AsyncClient
) -> None:
    relay.get("/files/file_out/content").mock(
        return_value=httpx.Response(200, content=result_line("a") + b"{broken\n" + result_line("b"))
    )
    problems: list[tuple[int, str]] = []
    got = [
        r.custom_id
        async for r in relay_client.batches.results(Batch.model_validate(DONE), problems=problems)
    ]
    assert got == ["a", "b"]
    assert problems and problems[0][0] == 2 and "file_out line 2" in problems[0][1]


def run_relay(relay: respx.MockRouter, output: bytes) -> None:
    """A relay whose batch API works, but whose output file is ``output``."""
    relay.post("/files").mock(
        return_value=httpx.Response(
            200,
            json={
                "id": "file_in",
                "object": "file",
                "bytes": 1,
                "created_at": 1,
                "filename": "in.jsonl",
                "purpose": "batch",
            },
        )
    )
    relay.get("/batches").mock(
        return_value=httpx.Response(200, json={"data": [], "has_more": False})
    )
    relay.post("/batches").mock(
        return_value=httpx.Response(200, json={**DONE, "status": "validating"})
    )
    relay.get("/batches/batch_1").mock(return_value=httpx.Response(200, json=DONE))
    relay.get("/files/file_out/content").mock(return_value=httpx.Response(200, content=output))


def run_tasks(*ids: str) -> list[dict[str, Any]]:
    return [{"custom_id": i, "model": "m", "messages": MSGS, "max_tokens": 2} for i in ids]


async def test_results_of_another_batch_are_never_merged(
    relay: respx.MockRouter, relay_client: AsyncClient, tmp_path: Path
) -> None:
    run_relay(relay, result_line("a") + result_line("someone-elses"))
    journal = tmp_path / "run.json"
    with pytest.raises(
        InvalidResponseError,
        match=r"batch batch_1: its results \(file file_out\) hold 1 result\(s\) whose custom_id"
        r" is not in this batch \(e\.g\. \['someone-elses'\]\)",
    ):
        await relay_client.batches.run(run_tasks("a", "b"), journal=journal, poll_interval=0.01)
    part = json.loads(journal.read_text())["parts"][0]
    assert part["results"] is None  # nothing was taken into the run


async def test_results_file_that_is_not_jsonl_stops_the_run_naming_the_line(
    relay: respx.MockRouter, relay_client: AsyncClient, tmp_path: Path
) -> None:
    run_relay(relay, b"garbage\n")
    with pytest.raises(InvalidResponseError, match=r"file file_out\) are not JSONL .* line 1"):
        await relay_client.batches.run(run_tasks("a"), journal=tmp_path / "j", poll_interval=0.01)
