"""A real LiteLLM proxy (a third-party OpenAI-compatible relay) on a free port of 127.0.0.1.

For ``tests/test_responses_interop.py`` (``nox -s interop``). LiteLLM is
installed by the ``interop`` extra; a missing ``litellm`` is an error, never a
skip. It runs offline: the model cost map is the one it ships
(``LITELLM_LOCAL_MODEL_COST_MAP``), tiktoken's encodings come with it, telemetry
is off, and every model group points at an emulator on 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

#: The proxy's own key (``general_settings.master_key``): a test key, not a secret.
MASTER_KEY = "sk-interop-0123456789abcdef0123456789abcdef"
#: How long the proxy may take to answer its health check (it imports a lot: ~15 s idle).
START_DEADLINE = 180.0


# On Linux the proxy gets SIGTERM when the test process dies, even by SIGKILL (prctl
# PR_SET_PDEATHSIG, kept across exec): no proxy is left running after a killed test run.
_DIE_WITH_PARENT = (
    [
        sys.executable,
        "-c",
        "import ctypes, os, signal, sys;"
        " ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM);"
        " os.execv(sys.argv[1], sys.argv[1:])",
    ]
    if sys.platform == "linux"
    else []
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def litellm_binary() -> str:
    """The ``litellm`` command: ``$HOLYSHEEP_LITELLM``, else this interpreter's environment's
    (``pip install -e '.[interop]'``), else the one on PATH."""
    chosen = os.environ.get("HOLYSHEEP_LITELLM")
    if chosen:
        return chosen
    beside = Path(sys.executable).parent / "litellm"
    if beside.exists():
        return str(beside)
    found = shutil.which("litellm")
    if found is None:
        raise RuntimeError(
            "litellm is not installed: the interop tests run a real LiteLLM proxy;"
            " run `nox -s interop`, or `pip install -e '.[interop]'`"
        )
    return found


def model_entry(name: str, model: str, api_base: str, api_key: str) -> dict[str, object]:
    """A model group: ``name``, served by LiteLLM's ``model`` ("provider/name") at ``api_base``."""
    return {
        "model_name": name,
        "litellm_params": {"model": model, "api_base": api_base, "api_key": api_key},
    }


class LiteLLMProxy:
    """``litellm --config`` in a child process (its own process group), stopped by ``stop()``."""

    def __init__(self, models: list[dict[str, object]]) -> None:
        self.binary = litellm_binary()
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="holysheep-litellm-"))
        self.log_path = self.dir / "proxy.log"
        config = {
            "model_list": models,
            "litellm_settings": {"telemetry": False, "num_retries": 0},
            # LiteLLM's default cools a deployment down for 5 s after a failure (a 404
            # included): the next request to it gets a 429 with retry-after: 5. Our client
            # waits that out (checked by hand), but the tests would wait 5 s per fallback.
            "router_settings": {"disable_cooldowns": True},
            "general_settings": {"master_key": MASTER_KEY},
        }
        # JSON is YAML: no yaml writer needed.
        (self.dir / "config.yaml").write_text(json.dumps(config, indent=1), encoding="utf-8")
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")[-chars:]
        except OSError:
            return ""

    def start(self) -> None:
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.upper().endswith("_PROXY") and not k.startswith(("OPENAI_", "LITELLM_"))
        }
        env.update(
            LITELLM_LOCAL_MODEL_COST_MAP="True",  # no download of the cost map at import
            NO_PROXY="127.0.0.1,localhost",
            PYTHONUNBUFFERED="1",
        )
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                [
                    *_DIE_WITH_PARENT,
                    self.binary,
                    "--config", str(self.dir / "config.yaml"),
                    "--host", "127.0.0.1",
                    "--port", str(self.port),
                    "--num_workers", "1",
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=self.dir,
                start_new_session=True,  # stop() ends its whole process group
            )
        deadline = time.monotonic() + START_DEADLINE
        url = f"http://127.0.0.1:{self.port}/health/liveliness"
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                code, tail = self.proc.returncode, self.log_tail()
                self.stop()
                raise RuntimeError(f"the LiteLLM proxy exited at start (code {code}):\n{tail}")
            try:
                with urllib.request.urlopen(url, timeout=2) as answer:
                    if answer.status == 200:
                        return
            except (OSError, urllib.error.URLError):
                pass
            time.sleep(0.25)
        tail = self.log_tail()
        self.stop()
        raise RuntimeError(
            f"the LiteLLM proxy did not answer {url} within {START_DEADLINE:.0f} s:\n{tail}"
        )

    def stop(self) -> None:
        """End the proxy (its whole process group) and remove its config and log."""
        try:
            self._end()
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)

    def _end(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=15)
        except ProcessLookupError:
            pass


class Cutter:
    """A TCP relay on 127.0.0.1 in front of ``port`` that can break one answer midway.

    ``arm(marker, count)``: the next answer in which ``marker`` occurs ``count`` times
    is passed on up to the end of the event holding the last of them (its blank line),
    then both connections close, as a network failure between client and proxy would.
    """

    def __init__(self, port: int) -> None:
        self.target = port
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._listener.getsockname()[1])
        self._lock = threading.Lock()
        self._armed: tuple[bytes, int] | None = None
        self.cuts = 0
        self._closed = False
        threading.Thread(target=self._accept, name="cutter", daemon=True).start()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def arm(self, marker: bytes, count: int) -> None:
        with self._lock:
            self._armed = (marker, count)

    def close(self) -> None:
        self._closed = True
        self._listener.close()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target))
            threading.Thread(target=self._pump, args=(client, upstream), daemon=True).start()
            threading.Thread(target=self._down, args=(upstream, client), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (src, dst):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    def _down(self, src: socket.socket, dst: socket.socket) -> None:
        seen = b""
        try:
            while data := src.recv(65536):
                with self._lock:
                    armed = self._armed
                if armed is None:
                    dst.sendall(data)
                    continue
                marker, count = armed
                seen += data
                found, at = 0, -1
                while found < count:
                    at = seen.find(marker, at + 1)
                    if at < 0:
                        break
                    found += 1
                end = seen.find(b"\n\n", at) if found == count else -1
                if end < 0:
                    dst.sendall(data)
                    continue
                with self._lock:
                    self._armed = None
                    self.cuts += 1
                keep = len(data) - (len(seen) - (end + 2))
                dst.sendall(data[:keep])
                return
        except OSError:
            pass
        finally:
            for sock in (src, dst):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                with contextlib.suppress(OSError):
                    sock.close()
