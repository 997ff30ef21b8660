"""Real forward proxies for the proxy tests: squid and tinyproxy, on free ports of 127.0.0.1.

Each runs as a child process with a config file of its own in a temporary
folder (logs there too, so a test can see what went through). A missing
binary is an error, never a skip: ``.ci/install-proxies`` provisions both
(``nox -s tests`` and ``.ci/run`` call it on a fresh machine).

Also here: :class:`TLSFront`, a TLS terminator in front of a plain server (the
emulator), for ``https://`` targets with a throwaway CA's certificate.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import threading
import time
from pathlib import Path

from .redis_server import free_port

#: A name squid resolves to 127.0.0.1 (its own hosts file): a target that is not
#: loopback by name, so proxies from the environment apply to it.
TEST_HOST = "api.proxy-test.invalid"

_NCSA_HELPERS = (
    "/usr/lib/squid/basic_ncsa_auth",  # Debian, Ubuntu
    "/usr/lib64/squid/basic_ncsa_auth",  # Fedora, RHEL
    "/usr/libexec/squid/basic_ncsa_auth",  # macOS (Homebrew), some BSDs
)


def _binary(name: str) -> str:
    found = shutil.which(name) or next(
        (p for p in (f"/usr/sbin/{name}", f"/usr/bin/{name}") if os.access(p, os.X_OK)), None
    )
    if found is None:
        raise RuntimeError(
            f"{name} is not installed: run .ci/install-proxies (apt-get install squid tinyproxy);"
            " the proxy tests need real proxies"
        )
    return found


class _ProxyProcess:
    """A proxy in a child process: ``start()``, ``stop()``, ``url``, ``log()``."""

    name = "proxy"

    def __init__(self, auth: tuple[str, str] | None = None) -> None:
        self.auth = auth
        self.port = free_port()
        # World-readable: squid started as root reads its files as its own user.
        self.dir = Path(tempfile.mkdtemp(prefix=f"holysheep-{self.name}-"))
        os.chmod(self.dir, 0o777)
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        """The proxy's URL, with its credentials when it has some."""
        if self.auth is None:
            return self.address
        return f"http://{self.auth[0]}:{self.auth[1]}@127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        raise NotImplementedError

    def log(self) -> str:
        raise NotImplementedError

    def start(self) -> None:
        self.proc = subprocess.Popen(
            self.command(),
            stdout=subprocess.DEVNULL,
            stderr=open(self.dir / "stderr.txt", "wb"),  # noqa: SIM115 (the child owns it)
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"{self.name} exited at once (code {self.proc.returncode}):"
                    f" {(self.dir / 'stderr.txt').read_text(errors='replace')[-2000:]}"
                )
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5),
            ):
                return
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"{self.name} did not listen on port {self.port} within 30 s")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> _ProxyProcess:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class Squid(_ProxyProcess):
    """squid, caching nothing; ``auth``: Basic credentials it requires (basic_ncsa_auth);
    ``deny_connect``: refuse every CONNECT (403); ``idle``: seconds a client connection
    may sit idle before squid closes it."""

    name = "squid"

    def __init__(
        self,
        auth: tuple[str, str] | None = None,
        *,
        deny_connect: bool = False,
        idle: float | None = None,
    ) -> None:
        super().__init__(auth)
        self.binary = _binary("squid")
        d = self.dir
        (d / "hosts").write_text(f"127.0.0.1 {TEST_HOST}\n")
        lines = [
            f"http_port 127.0.0.1:{self.port}",
            f"pid_filename {d / 'squid.pid'}",
            f"cache_log {d / 'cache.log'}",
            f"access_log stdio:{d / 'access.log'}",
            f"coredump_dir {d}",
            f"hosts_file {d / 'hosts'}",
            "visible_hostname holysheep-test-squid",
            "cache deny all",
            "cache_mem 8 MB",
            "netdb_filename none",
            "pinger_enable off",
            "shutdown_lifetime 0 seconds",
            "via off",
            "forwarded_for delete",
            "max_filedescriptors 4096",
        ]
        if idle is not None:
            lines.append(f"client_idle_pconn_timeout {idle} seconds")
        if deny_connect:
            lines.append("http_access deny CONNECT")
        if auth is not None:
            helper = next((h for h in _NCSA_HELPERS if os.access(h, os.X_OK)), None)
            if helper is None:
                raise RuntimeError(
                    "squid's basic_ncsa_auth helper is missing: run .ci/install-proxies"
                )
            salt = secrets.token_hex(4)
            (d / "passwd").write_text(f"{auth[0]}:{md5_crypt(auth[1], salt)}\n")
            lines += [
                f"auth_param basic program {helper} {d / 'passwd'}",
                "auth_param basic realm holysheep-test",
                "auth_param basic children 2",
                "acl authed proxy_auth REQUIRED",
                "http_access deny !authed",
            ]
        lines += ["http_access allow localhost", "http_access deny all"]
        (d / "squid.conf").write_text("\n".join(lines) + "\n")

    def command(self) -> list[str]:
        return [self.binary, "-N", "-f", str(self.dir / "squid.conf")]

    def log(self) -> str:
        """squid's access log so far: one line per request (``CONNECT host:port``, ``POST url``)."""
        try:
            return (self.dir / "access.log").read_text(errors="replace")
        except OSError:
            return ""


class Tinyproxy(_ProxyProcess):
    """tinyproxy; ``auth``: its BasicAuth; ``connect_ports``: the only ports CONNECT may reach
    (``[443]``: it refuses a tunnel to a test server's port)."""

    name = "tinyproxy"

    def __init__(
        self, auth: tuple[str, str] | None = None, *, connect_ports: list[int] | None = None
    ) -> None:
        super().__init__(auth)
        self.binary = _binary("tinyproxy")
        lines = [
            f"Port {self.port}",
            "Listen 127.0.0.1",
            "Timeout 600",
            "MaxClients 2000",
            "LogLevel Connect",
            f'LogFile "{self.dir / "tinyproxy.log"}"',
            "Allow 127.0.0.1",
            "DisableViaHeader Yes",
        ]
        if auth is not None:
            lines.append(f"BasicAuth {auth[0]} {auth[1]}")
        lines += [f"ConnectPort {p}" for p in connect_ports or []]
        (self.dir / "tinyproxy.conf").write_text("\n".join(lines) + "\n")

    def command(self) -> list[str]:
        return [self.binary, "-d", "-c", str(self.dir / "tinyproxy.conf")]

    def log(self) -> str:
        try:
            return (self.dir / "tinyproxy.log").read_text(errors="replace")
        except OSError:
            return ""


_ITOA64 = "./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def md5_crypt(password: str, salt: str) -> str:
    """``$1$`` MD5-crypt (what ``openssl passwd -1`` writes), for squid's htpasswd file."""
    pw, sl = password.encode(), salt.encode()[:8]
    final = hashlib.md5(pw + sl + pw).digest()
    ctx = pw + b"$1$" + sl
    for i in range(len(pw), 0, -16):
        ctx += final[: min(16, i)]
    i = len(pw)
    while i:
        ctx += b"\0" if i & 1 else pw[:1]
        i >>= 1
    final = hashlib.md5(ctx).digest()
    for i in range(1000):
        step = (pw if i & 1 else final) + (sl if i % 3 else b"") + (pw if i % 7 else b"")
        final = hashlib.md5(step + (final if i & 1 else pw)).digest()
    out = ""
    for a, b, c in ((0, 6, 12), (1, 7, 13), (2, 8, 14), (3, 9, 15), (4, 10, 5)):
        v = (final[a] << 16) | (final[b] << 8) | final[c]
        for _ in range(4):
            out += _ITOA64[v & 63]
            v >>= 6
    v = final[11]
    for _ in range(2):
        out += _ITOA64[v & 63]
        v >>= 6
    return f"$1${salt[:8]}${out}"


class TLSFront:
    """TLS on 127.0.0.1 in front of a plain TCP server: bytes relayed both ways, per connection.

    Its own asyncio loop in a thread (asyncio does TLS on one thread per
    connection, which OpenSSL needs). ``accepted``: connections relayed so
    far; :meth:`drop_all` closes every open one (a server closing its idle
    connections); :meth:`wait_open` waits until at most so many are open.
    """

    def __init__(self, ctx: ssl.SSLContext, backend_port: int) -> None:
        self.ctx = ctx
        self.backend_port = backend_port
        self.port = 0
        self.accepted = 0
        self.open: set[asyncio.StreamWriter] = set()
        self.changed = threading.Condition()
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        self._ready.wait(10)

    def url(self, host: str = "127.0.0.1") -> str:
        return f"https://{host}:{self.port}/v1"

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        server = self._loop.run_until_complete(
            asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=self.ctx)
        )
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        self._loop.run_forever()
        server.close()
        self._loop.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            back_reader, back_writer = await asyncio.open_connection("127.0.0.1", self.backend_port)
        except OSError:
            writer.transport.abort()
            return
        with self.changed:
            self.accepted += 1
            self.open.add(writer)
            self.changed.notify_all()
        try:
            await asyncio.gather(_pipe(reader, back_writer), _pipe(back_reader, writer))
        finally:
            with self.changed:
                self.open.discard(writer)
                self.changed.notify_all()

    def drop_all(self) -> None:
        """Close every relayed connection now."""

        def drop() -> None:
            for writer in list(self.open):
                writer.transport.abort()

        self._loop.call_soon_threadsafe(drop)

    def wait_open(self, at_most: int, timeout: float = 10.0) -> int:
        with self.changed:
            self.changed.wait_for(lambda: len(self.open) <= at_most, timeout)
            return len(self.open)

    def close(self) -> None:
        self.drop_all()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (OSError, ssl.SSLError):
        pass
    finally:
        writer.transport.abort()
