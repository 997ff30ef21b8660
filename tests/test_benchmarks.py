"""The benchmark suite in quick mode: every scenario runs and checks its answers (no timing)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from benchmarks import suite
from holysheep_async.cli import build_parser


def test_quick_mode_runs_every_scenario_for_every_client(tmp_path: Path) -> None:
    lines: list[str] = []
    args = suite.build_parser().parse_args(["--quick", "--out", str(tmp_path)])
    results = suite.run(args, log=lines.append)

    # Our client never fails; a scenario checks the chunk counts it got back.
    assert not [e for e in results.errors if "/holysheep:" in e], results.errors
    medians = results.medians()
    assert set(medians) == {"asyncio", "trio"}
    for backend in medians.values():
        assert set(backend) == set(suite.SCENARIOS)
        for scenario, clients in backend.items():
            assert "holysheep" in clients, scenario
            assert all(v > 0 for v in clients["holysheep"].values()), (scenario, clients)

    data = json.loads((tmp_path / "results.json").read_text())
    assert data["quick"] is True and data["machine"]["cores"]
    assert data["medians"]["asyncio"]["long_stream"]["holysheep"]["chunks_per_s"] > 0
    assert "| holysheep |" in suite.table(results)
    if importlib.util.find_spec("matplotlib"):
        assert (tmp_path / "results.png").stat().st_size > 0

    # The batch side runs when holysheep_async.jsonl exists, else says why it did not.
    if importlib.util.find_spec("holysheep_async.jsonl") is None:
        assert any("holysheep_async.jsonl absent" in n for n in results.notes)
    else:
        assert results.extra["jsonl_write_validate"]["requests"] == suite.QUICK["jsonl_requests"]
    compare = results.extra["stream_vs_batch"]
    assert "error" not in compare, compare
    assert compare["direct"]["req_per_s"] > 0


def test_quick_mode_rejects_unknown_client() -> None:
    args = suite.build_parser().parse_args(["--quick", "--client", "nope"])
    with pytest.raises(SystemExit, match="nope"):
        suite.run(args, log=lambda _: None)


def test_cli_has_bench_command() -> None:
    args = build_parser().parse_args(["bench", "--quick", "--backend", "trio"])
    assert args.quick and args.backend == ["trio"] and callable(args.func)


def test_the_opentelemetry_benchmark_runs_every_mode(tmp_path: Path) -> None:
    from benchmarks import otel

    out = tmp_path / "otel.json"
    assert otel.main(["--quick", "--out", str(out)]) == 0
    data = json.loads(out.read_text())
    assert set(data["table"]) == {"absent", "noop", "sdk"}
    assert data["micro"]["absent"][0]["otel_modules"] == []  # really absent
    assert data["micro"]["noop"][0]["otel_modules"]
    assert data["runs"]["sdk"][0]["durations_recorded"] > 0  # really recording
    assert all(row["req_per_s"] > 0 for row in data["table"].values())


def test_the_proxy_scenarios_run_through_a_real_squid() -> None:
    from benchmarks import peers, proxy

    clients = {k: v for k, v in peers.available().items() if k in proxy.CLIENTS}
    lines: list[str] = []
    results = suite.Results(suite.machine_info(), "test", True, dict(suite.QUICK))
    with suite.bench_server() as server:
        proxy.run(server, ["asyncio", "trio"], clients, suite.QUICK, 1, results, lines.append, 60)
    assert not results.errors, results.errors
    medians = results.extra["proxy_squid"]["medians"]
    for backend in ("asyncio", "trio"):
        for scenario in proxy.SCENARIOS:
            got = medians[backend][scenario]
            assert set(got) == set(clients), (backend, scenario)  # the SDK too, when installed
            assert all(v > 0 for metrics in got.values() for v in metrics.values())
    assert any("| holysheep |" in line for line in lines)


def test_the_agent_stream_benchmark_checks_what_every_client_assembled(tmp_path: Path) -> None:
    from benchmarks import agent_streams

    lines: list[str] = []
    args = agent_streams.build_parser().parse_args(
        ["--quick", "--backend", "asyncio", "--out", str(tmp_path / "agent.json")]
    )
    results = agent_streams.run(args, log=lines.append)
    runs = results["runs"]
    for shape in ("text", "agent"):
        assert runs[f"asyncio/holysheep text/{shape}"]["chunks_per_s"] > 0
        assert runs[f"asyncio/holysheep events/{shape}"]["chunks_per_s"] > 0
    assert json.loads((tmp_path / "agent.json").read_text())["quick"] is True
    # A client that assembles the wrong thing fails the run rather than being timed.
    with pytest.raises(AssertionError, match="calls differ"):
        wrong = {**agent_streams.expected("agent", 400), "calls": []}
        agent_streams._check("x", "agent", 400, wrong)


def test_the_responses_stream_benchmark_checks_every_client_on_both_runtimes(
    tmp_path: Path,
) -> None:
    from benchmarks import responses_streams as rs

    lines: list[str] = []
    out = tmp_path / "responses.json"
    args = rs.build_parser().parse_args(
        ["--quick", "--backend", "asyncio", "--backend", "trio", "--out", str(out)]
    )
    results = rs.run(args, log=lines.append)
    runs = results["runs"]
    ours = ["holysheep responses.stream", "holysheep responses events()", "holysheep chat.stream"]
    for backend in ("asyncio", "trio"):
        for name in ours:
            assert runs[f"{backend}/{name}/long"]["chunks_per_s"] > 0
            assert runs[f"{backend}/{name}/long"]["cpu_ms_per_1000"] > 0
            assert runs[f"{backend}/{name}/ttft"]["overhead_p99_ms"] >= 0
    # The official SDK's helpers run in the same run, on asyncio, when installed.
    assert {k.split("/")[1] for k in runs if k.startswith("asyncio/")} == set(rs.clients())
    assert not any(k.startswith("trio/openai") for k in runs)  # only with --sdk-on-trio
    assert json.loads(out.read_text())["quick"] is True
    assert "| trio | holysheep responses.stream |" in "\n".join(lines)
    # A client that assembles the wrong thing fails the run rather than being timed.
    good = {"text": rs.expected_text(40), "final_text": rs.expected_text(40), "output_tokens": 40}
    rs.check("x", 40, {**good, "events": 40 + rs.RESPONSES_FRAME})
    with pytest.raises(AssertionError, match="events differ"):
        rs.check("x", 40, {**good, "events": 40})
    with pytest.raises(AssertionError, match="final_text differs"):
        rs.check("x", 40, {**good, "final_text": rs.expected_text(39)})


def test_the_responses_benchmark_bodies_are_what_openai_sends() -> None:
    from benchmarks import responses_streams as rs

    def frames(body: bytes) -> list[tuple[str | None, str]]:
        out = []
        for block in body.decode().split("\n\n")[:-1]:
            fields = dict(line.split(": ", 1) for line in block.split("\n"))
            out.append((fields.get("event"), fields["data"]))
        return out

    n = 5
    events = frames(b"".join(rs.responses_body(n)))
    parsed = [json.loads(data) for _, data in events]
    assert [name for name, _ in events] == [e["type"] for e in parsed]  # event: == type
    assert [e["sequence_number"] for e in parsed] == list(range(n + rs.RESPONSES_FRAME))
    assert parsed[-1]["type"] == "response.completed"
    head, _ = rs.responses_body(n)
    assert b"output_text.delta" not in head  # the ttft server's wait comes before the first
    chunks = [json.loads(data) for _, data in frames(b"".join(rs.chat_body(n)))[:-1]]
    assert "".join(
        c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"]
    ) == (rs.expected_text(n))
    if importlib.util.find_spec("openai") is None:
        return
    from openai.types.chat import ChatCompletionChunk
    from openai.types.responses import ResponseStreamEvent
    from pydantic import TypeAdapter

    typed = [TypeAdapter(ResponseStreamEvent).validate_python(e) for e in parsed]
    final = typed[-1]
    assert final.type == "response.completed"
    assert final.response.output_text == rs.expected_text(n)
    assert final.response.usage is not None and final.response.usage.output_tokens == n
    for chunk in chunks:
        ChatCompletionChunk.model_validate(chunk)
