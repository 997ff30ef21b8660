"""Sessions: tests, lint, typecheck, docs, demo (and bench, soak as they come).

``nox -s tests lint typecheck docs`` is what CI runs (see README).
"""

from __future__ import annotations

import nox

nox.options.sessions = ["tests", "lint", "typecheck", "docs"]
nox.options.default_venv_backend = "venv"


@nox.session
def tests(session: nox.Session) -> None:
    """pytest on asyncio and trio (every async test runs on both).

    The shared-limits tests need ``redis-server``, the proxy tests ``squid`` and
    ``tinyproxy`` (they start their own): installed here when missing
    (.ci/install-redis, .ci/install-proxies; apt-get).
    """
    session.run(".ci/install-redis", external=True)
    session.run(".ci/install-proxies", external=True)
    session.install("-e", ".[test]")
    session.run("pytest", *session.posargs)


@nox.session
def interop(session: nox.Session) -> None:
    """client.responses against a server that is not ours: a real LiteLLM proxy on
    127.0.0.1, offline, in front of the emulator (tests/test_responses_interop.py), on
    asyncio and trio. Not in CI's default sessions: LiteLLM's install is heavy (the
    ``interop`` extra); tests/test_responses_relay_quirks.py keeps what it found there."""
    session.install("-e", ".[interop]")
    session.run(
        "pytest", "-p", "no:cacheprovider", "-m", "interop", "tests/test_responses_interop.py",
        *session.posargs,
    )


MAX_MODULE_LINES = 700  # the house's rule (LAYOUT.md): a module fits in a reader's head


@nox.session
def lint(session: nox.Session) -> None:
    """ruff; the house's structure (import-linter contracts in pyproject.toml: layers for the
    wings, nothing importing upward, no import circles, type-checking imports included); no
    module of the package over MAX_MODULE_LINES lines."""
    session.install("ruff>=0.6", "import-linter>=2.1")
    session.run("ruff", "check", ".")
    session.run("lint-imports", "--no-cache")
    from pathlib import Path

    too_long = [
        f"{path}: {n} lines"
        for path in sorted(Path("holysheep_async").rglob("*.py"))
        if (n := len(path.read_text(encoding="utf-8").splitlines())) > MAX_MODULE_LINES
    ]
    if too_long:
        session.error(f"modules over {MAX_MODULE_LINES} lines: " + "; ".join(too_long))


@nox.session
def typecheck(session: nox.Session) -> None:
    """mypy --strict on the package."""
    session.install("-e", ".[test]", "mypy>=1.11")
    session.run("mypy")


@nox.session
def docs(session: nox.Session) -> None:
    """The documentation cannot drift: every code block of README.md and docs/*.md runs
    and prints what the page shows (Sybil, rules in conftest.py), then the site is built
    with ``mkdocs build --strict`` (a broken link or API reference fails it) into site/.
    ``nox -s docs -- serve`` serves the site while you edit."""
    session.install("-e", ".[test,docs]")
    env = {"NO_MKDOCS_2_WARNING": "1"}
    if session.posargs[:1] == ["serve"]:
        session.run("mkdocs", "serve", *session.posargs[1:], env=env)
        return
    session.run("pytest", "-p", "no:cacheprovider", "README.md", "docs", *session.posargs)
    session.run("mkdocs", "build", "--strict", env=env)


@nox.session
def demo(session: nox.Session) -> None:
    """The README's first command, from a plain install (no extras)."""
    session.install(".")
    session.run("holysheep", "demo", *session.posargs)


@nox.session
def bench(session: nox.Session) -> None:
    """Benchmarks against the peers (openai SDK, httpx + httpx-sse); ``-- --quick`` for a smoke run.

    Writes benchmarks/results.json and results.png; see benchmarks/RESULTS.md.
    ``-- --shared-limits``: only the shared-limits benchmarks (a local redis-server).
    The whole suite runs its proxy scenarios through a real squid (benchmarks/proxy.py).
    """
    if "--shared-limits" in session.posargs:
        session.run(".ci/install-redis", external=True)
    else:
        session.run(".ci/install-proxies", external=True)
    session.install("-e", ".[bench]")
    session.run("python", "-m", "benchmarks", *session.posargs)


@nox.session(name="bench-agents")
def bench_agents(session: nox.Session) -> None:
    """Agent streams (issue 23): chunk throughput with reasoning and tool-call accumulation on,
    next to text only and the official SDK's ``chat.completions.stream`` helper, same run
    (benchmarks/agent_streams.py; ``-- --quick`` for a smoke run)."""
    session.install("-e", ".[bench]")
    session.run("python", "-m", "benchmarks.agent_streams", *session.posargs)


@nox.session(name="bench-responses")
def bench_responses(session: nox.Session) -> None:
    """Responses streams (issue 22): chunks/s and TTFT overhead of ``responses.stream`` next to
    ``chat.stream`` and the official SDK's ``responses.stream`` helper, same run
    (benchmarks/responses_streams.py; ``-- --quick`` for a smoke run)."""
    session.install("-e", ".[bench]")
    session.run("python", "-m", "benchmarks.responses_streams", *session.posargs)


@nox.session(name="bench-otel")
def bench_otel(session: nox.Session) -> None:
    """What OpenTelemetry costs: absent, API without a provider, SDK recording (RESULTS.md)."""
    session.install("-e", ".[otel]", "opentelemetry-sdk>=1.26")
    session.run("python", "-m", "benchmarks.otel", *session.posargs)


@nox.session
def bench_batch(session: nox.Session) -> None:
    """``batches.run`` at 10k / 100k / 1M requests: wall time, req/s, client peak RSS.

    ``-- --sizes 10000,200000`` for other sizes. Writes benchmarks/batch_scale.json.
    """
    session.install("-e", ".")
    session.run("python", "-m", "benchmarks.batch_scale", *session.posargs)


# The property tests, run by soak with twenty times CI's examples (HYPOTHESIS_PROFILE=soak).
PROPERTY_TESTS = [
    "tests/test_jsonl_props.py",
    "tests/test_sse.py",
    "tests/test_limits.py",
    "tests/test_transport.py::test_chunked_decoder_property",
    "tests/test_shared_limits.py::test_property_the_fleet_never_exceeds_capacity_plus_rate_times_t",
]


@nox.session
def soak(session: nox.Session) -> None:
    """Chaos and crash tests at full size: 1,000 concurrent faulty streams per runtime
    (CHAOS_STREAMS), a 10,000-request batch run killed and restarted (CRASH_REQUESTS);
    the property tests with the ``soak`` hypothesis profile (HYPOTHESIS_PROFILE)."""
    session.run(".ci/install-redis", external=True)
    session.install("-e", ".[test]")
    session.env["CHAOS_STREAMS"] = session.env.get("CHAOS_STREAMS", "1000")
    session.env["CRASH_REQUESTS"] = session.env.get("CRASH_REQUESTS", "10000")
    session.env["HYPOTHESIS_PROFILE"] = session.env.get("HYPOTHESIS_PROFILE", "soak")
    session.run(
        "pytest",
        "-q",
        "tests/test_chaos.py",
        "tests/test_crash.py",
        *PROPERTY_TESTS,
        *session.posargs,
    )
