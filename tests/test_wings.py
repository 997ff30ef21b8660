"""The batches and limits wings: their seams, their public names, their package data.

The ``run`` pipeline takes what it works with (a ``BatchAPI``, a direct-call
callback, a usage sink), not ``client.batches``: here it is driven with those
alone. ``client.batches`` hands its generators' closing down at once, and the
Lua scripts of the shared limiter are package data of ``holysheep_async.limits``.
"""

from __future__ import annotations

import contextlib
from importlib import resources
from typing import Any

import pytest

import holysheep_async.batches as batches_pkg
import holysheep_async.limits as limits_pkg
from holysheep_async import AsyncClient
from holysheep_async._options import CallOptions, call_options
from holysheep_async.batches import _run
from holysheep_async.batches._api import BatchAPI
from holysheep_async.jsonl import BatchRequest
from holysheep_async.models import ChatCompletion, EmbeddingsResponse, Usage
from holysheep_async.testing import MockServer

pytestmark = pytest.mark.anyio

MSGS = [{"role": "user", "content": "hello"}]


def tasks(n: int, prefix: str = "w") -> list[dict[str, Any]]:
    return [
        {"custom_id": f"{prefix}{i}", "model": "gpt-4o-mini", "messages": MSGS, "max_tokens": 3}
        for i in range(n)
    ]


class Sink:
    """A UsageSink that keeps what it is given."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, Usage | None, bool]] = []

    def record_usage(self, model: str, usage: Usage | None, *, batch: bool = False) -> None:
        self.seen.append((model, usage, batch))


async def test_the_run_pipeline_runs_on_its_seams_alone_direct_mode(
    client: AsyncClient, server: MockServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No Batch API: every request goes to the DirectCall given, with the run's options."""
    monkeypatch.setitem(server.options, "batch_api", False)
    sent: list[tuple[BatchRequest, CallOptions]] = []

    async def direct(request: BatchRequest, options: CallOptions) -> ChatCompletion:
        sent.append((request, options))
        return ChatCompletion.model_validate(
            {"id": f"c-{request.custom_id}", "model": request.body["model"], "choices": []}
        )

    options = call_options({"x-trace": "t1"}, None, {"only": "for creates"}, 5.0)
    sink = Sink()
    report = await _run.run(
        BatchAPI(client._requester), tasks(3), direct=direct, usage=sink, options=options
    )
    assert report.mode == "direct" and report.fallback_reason
    assert sorted(report.succeeded) == ["w0", "w1", "w2"]
    assert sorted(r.custom_id for r, _ in sent) == ["w0", "w1", "w2"]
    assert all(o is options for _, o in sent)  # extra_body too: the callback decides
    expected = ChatCompletion(id="c-w1", model="gpt-4o-mini").model_dump(mode="json")
    assert report.results["w1"].body == expected
    assert sink.seen == []  # direct answers record their own usage (chat.create does)


async def test_the_run_pipeline_runs_on_its_seams_alone_batch_mode(
    client: AsyncClient, server: MockServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With a Batch API: nothing goes direct, and each batch answer's usage reaches the sink."""
    monkeypatch.setitem(server.options, "batch_speed", 100)

    async def direct(request: BatchRequest, options: CallOptions) -> EmbeddingsResponse:
        raise AssertionError(f"{request.custom_id} went direct")

    sink = Sink()
    report = await _run.run(
        BatchAPI(client._requester),
        tasks(4, "b"),
        direct=direct,
        usage=sink,
        options=call_options(None, None, None, None),
    )
    assert report.mode == "batch" and sorted(report.succeeded) == ["b0", "b1", "b2", "b3"]
    assert len(sink.seen) == 4
    assert all(batch and usage is not None and usage.total_tokens for _, usage, batch in sink.seen)
    assert report.total_tokens == sum(u.total_tokens for _, u, _ in sink.seen if u)


async def test_results_closed_early_close_the_download_at_once(
    client: AsyncClient, server: MockServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``client.batches.results`` hands its closing to the reader below it: the streamed
    download (and the permit it holds) is closed when the caller closes, not when collected."""
    monkeypatch.setitem(server.options, "batch_speed", 100)
    batch = await client.batches.wait(await client.batches.submit(tasks(5, "r")))
    assert client.limiter.stats().in_flight == 0
    results = client.batches.results(batch)
    async with contextlib.aclosing(results):
        async for _ in results:
            assert client.limiter.stats().in_flight == 1  # the download is open
            break
    assert client.limiter.stats().in_flight == 0


def test_the_lua_scripts_are_package_data_of_limits() -> None:
    from holysheep_async.limits import _shared

    lua = resources.files("holysheep_async.limits").joinpath("_lua")
    for name in _shared._SCRIPTS:
        text = lua.joinpath(f"{name}.lua").read_text(encoding="utf-8")
        assert "redis.call" in text, name
        assert _shared._script(f"{name}.lua") == text


def test_the_wings_export_what_they_always_did() -> None:
    assert set(batches_pkg.__all__) == {
        "BatchReport",
        "Batches",
        "RunProgress",
        "adaptive_poll_interval",
        "split_requests",
    }
    for name in (
        *batches_pkg.__all__,
        "CLOCK_LEEWAY",
        "CREATE_ID_KEY",
        "MAX_METADATA_KEYS",
        "ProgressCallback",
        "Requests",
        "RetryMode",
    ):
        assert getattr(batches_pkg, name) is not None, name
    assert batches_pkg.CREATE_ID_KEY == "holysheep_create_id"
    assert set(limits_pkg.__all__) == {
        "LeakyBucket",
        "Limiter",
        "LimiterStats",
        "Limits",
        "Permit",
        "estimate_tokens",
    }
    for name in (*limits_pkg.__all__, "Clock", "Sleep"):
        assert getattr(limits_pkg, name) is not None, name
