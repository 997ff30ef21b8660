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
