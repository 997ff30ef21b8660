"""The proxy scenarios: the same server, reached through a real squid started here.

Corporate networks put a forward proxy in front of everything (issue 25). These
run two of the suite's scenarios through one squid on 127.0.0.1, for this
client (``proxy=``, its own transport: requests in absolute form to the proxy,
pooled) and the official SDK (``http_client=DefaultAsyncHttpxClient(proxy=...)``,
httpx's proxy transport), in the same run as the direct scenarios:

- ``nonstream_squid``: non-streamed requests, as ``nonstream``;
- ``slow_streams_squid``: 1,000 slow streams at once, as ``slow_streams``.

The ratios to read: through squid against the SDK through the same squid, and
through squid against the same client direct (``slow_streams``). They go to
``results.json`` under ``extra.proxy_squid`` (medians per backend, scenario,
client, as ``medians``), with the server's CPU share; a failure of this
client there is an error of the run, as in any scenario.

squid runs with the logs off and nothing cached, enough file descriptors for
a thousand streams each way, and persistent connections on both sides. A
missing squid is an error of the run (``.ci/install-proxies`` installs it).
"""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from . import suite

SCENARIOS = {
    "nonstream_squid": suite.scn_nonstream,
    "slow_streams_squid": suite.scn_slow_streams,
}
DESCRIPTIONS = {
    "nonstream_squid": "non-streaming requests through squid",
    "slow_streams_squid": "concurrent slow streams through squid (ideal 1.2 s)",
}
#: The clients measured through squid (those of them that are installed).
CLIENTS = ("holysheep", "openai")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def squid() -> Iterator[str]:
    """A squid on a free port of 127.0.0.1; yields its URL. Stopped on exit."""
    binary = shutil.which("squid") or shutil.which("squid", path="/usr/sbin")
    if binary is None:
        raise RuntimeError("squid is not installed: run .ci/install-proxies (apt-get squid)")
    port = _free_port()
    folder = Path(tempfile.mkdtemp(prefix="holysheep-bench-squid-"))
    os.chmod(folder, 0o777)  # squid started as root works as its own user
    (folder / "squid.conf").write_text(
        "\n".join(
            [
                f"http_port 127.0.0.1:{port}",
                f"pid_filename {folder / 'squid.pid'}",
                f"cache_log {folder / 'cache.log'}",
                "access_log none",
                f"coredump_dir {folder}",
                "visible_hostname holysheep-bench-squid",
                "cache deny all",
                "cache_mem 8 MB",
                "netdb_filename none",
                "pinger_enable off",
                "shutdown_lifetime 0 seconds",
                "via off",
                "forwarded_for delete",
                "max_filedescriptors 16384",
                "client_persistent_connections on",
                "server_persistent_connections on",
                "http_access allow localhost",
                "http_access deny all",
                "",
            ]
        )
    )
    proc = subprocess.Popen(
        [binary, "-N", "-f", str(folder / "squid.conf")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            if proc.poll() is not None:
                log = (folder / "cache.log").read_text(errors="replace")[-1500:]
                raise RuntimeError(f"squid exited at once (code {proc.returncode}): {log}")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"squid did not listen on port {port} within 30 s")
            time.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        shutil.rmtree(folder, ignore_errors=True)


def run(
    server: suite.Server,
    backends: list[str],
    clients: dict[str, suite.Factory],
    size: dict[str, int],
    repeats: int,
    results: suite.Results,
    log: Callable[[str], None],
    timeout: float,
) -> None:
    """The proxy scenarios for ``clients`` (of :data:`CLIENTS`), into ``results.extra``."""
    wanted = {name: clients[name] for name in CLIENTS if name in clients}
    if not wanted:
        return
    mine = suite.Results(results.machine, results.command, results.quick, dict(size))
    try:
        with squid() as url:
            log(f"proxy scenarios through squid at {url}")
            proxied: dict[str, Any] = {
                name: functools.partial(make, proxy=url) for name, make in wanted.items()
            }
            suite.run_scenarios(
                server, backends, proxied, list(SCENARIOS), size, repeats, mine, log, timeout,
                table=SCENARIOS,
            )  # fmt: skip
    except RuntimeError as exc:
        # This client's scenario could not run: an error of the run, named like one.
        mine.errors.append(f"{backends[0]}/nonstream_squid/holysheep: {exc}")
        log(f"  ! {exc}")
    data = mine.to_json()
    results.extra["proxy_squid"] = {
        "scenarios": DESCRIPTIONS,
        "medians": data["medians"],
        "server_cpu_share_max": data["server_cpu_share_max"],
    }
    results.errors += [e for e in mine.errors if e not in results.errors]
    log(table(data["medians"]))


def table(medians: dict[str, Any]) -> str:
    """The medians through squid, a row per client and backend."""
    lines = ["\n### through squid\n", "| backend | client | non-stream req/s | slow streams s |"]
    lines.append("|---|---|---:|---:|")
    for backend, scenarios in medians.items():
        names = {c for cs in scenarios.values() for c in cs}
        for name in sorted(names):
            rps = scenarios.get("nonstream_squid", {}).get(name, {}).get("req_per_s")
            slow = scenarios.get("slow_streams_squid", {}).get(name, {}).get("wall_s")
            cells = [f"{rps:,.0f}" if rps else "n/a", f"{slow:.2f}" if slow else "n/a"]
            lines.append(f"| {backend} | {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
