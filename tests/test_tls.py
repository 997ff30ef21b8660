"""HTTPS verification: the system's trust store, SSL_CERT_FILE/_DIR, verify= (issue 13, item 8).

A throwaway CA (trustme) signs the certificate of an HTTPS server on
127.0.0.1. "Installed in the system store" is done two ways, neither touching
the machine's real store: the paths OpenSSL reports for its store are pointed at
a bundle of the test's (in this process), and, for the real thing, a child
process in a private mount namespace gets a bundle bind-mounted over the
system's own bundle file (skipped where namespaces are not allowed).
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import ssl
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from holysheep_async import APIConnectionError, AsyncClient, ConfigurationError
from holysheep_async._transport import Transport

trustme = pytest.importorskip("trustme")

pytestmark = pytest.mark.anyio

MESSAGES = [{"role": "user", "content": "hi"}]
COMPLETION = json.dumps(
    {
        "id": "c1",
        "object": "chat.completion",
        "created": 0,
        "model": "m",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "secure"},
                "finish_reason": "stop",
            }
        ],
    }
).encode()
# What the error says, whichever transport and event loop (httpx's on trio says nothing itself).
VERIFY_FAILED = "TLS certificate verification failed: unable to get local issuer certificate"
PROXY_VARS = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy")


class TLSServer:
    """Answers every request on 127.0.0.1 with a chat completion, over TLS."""

    def __init__(self, ctx: ssl.SSLContext) -> None:
        self.ctx = ctx
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"https://127.0.0.1:{self.listener.getsockname()[1]}/v1"
        self.requests = 0
        self.handshake_errors: list[str] = []
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while True:
            try:
                sock, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._run, args=(sock,), daemon=True).start()

    def _run(self, sock: socket.socket) -> None:
        with contextlib.suppress(OSError):
            try:
                sock = self.ctx.wrap_socket(sock, server_side=True)
            except (ssl.SSLError, OSError) as exc:
                self.handshake_errors.append(str(exc))
                sock.close()
                return
            with sock:
                f = sock.makefile("rb")
                while True:
                    length = 0
                    line = f.readline()
                    if not line:
                        return
                    while (line := f.readline()) not in (b"\r\n", b""):
                        name, _, value = line.partition(b":")
                        if name.strip().lower() == b"content-length":
                            length = int(value)
                    f.read(length)
                    self.requests += 1
                    sock.sendall(
                        b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                        b"content-length: %d\r\n\r\n%b" % (len(COMPLETION), COMPLETION)
                    )

    def close(self) -> None:
        self.listener.close()
        self._thread.join(5)


class PKI:
    def __init__(self, root: Path) -> None:
        self.ca = trustme.CA(organization_name="holysheep test CA")
        self.stranger = trustme.CA(organization_name="a CA nobody trusts")
        self.bundle = root / "system-bundle.pem"
        self.ca.cert_pem.write_to_path(str(self.bundle))
        self.stranger_bundle = root / "stranger.pem"
        self.stranger.cert_pem.write_to_path(str(self.stranger_bundle))
        self.empty_dir = root / "empty"
        self.empty_dir.mkdir()
        # SSL_CERT_DIR's form: each certificate named by its subject's hash.
        self.hashed_dir: Path | None = root / "hashed"
        self.hashed_dir.mkdir()
        try:
            digest = subprocess.run(
                ["openssl", "x509", "-hash", "-noout", "-in", str(self.bundle)],
                check=True,
                capture_output=True,
                text=True,
            ).stdout.strip()
        except (OSError, subprocess.CalledProcessError):
            self.hashed_dir = None
        else:
            (self.hashed_dir / f"{digest}.0").write_bytes(self.bundle.read_bytes())

    def server_context(self, ca: trustme.CA) -> ssl.SSLContext:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ca.issue_cert("127.0.0.1", "localhost").configure_cert(ctx)
        return ctx


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PKI:
    return PKI(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def tls_server(pki: PKI) -> Iterator[TLSServer]:
    srv = TLSServer(pki.server_context(pki.ca))
    yield srv
    srv.close()


@pytest.fixture(scope="module")
def impostor(pki: PKI) -> Iterator[TLSServer]:
    """A server whose certificate comes from a CA that nothing trusts."""
    srv = TLSServer(pki.server_context(pki.stranger))
    yield srv
    srv.close()


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("SSL_CERT_FILE", "SSL_CERT_DIR", "HOLYSHEEP_TRANSPORT", *PROXY_VARS):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(urllib.request, "getproxies", dict)


def system_store(monkeypatch: pytest.MonkeyPatch, bundle: Path, empty_dir: Path) -> None:
    """Make OpenSSL's own store (the paths it was built with) hold ``bundle`` only."""
    real = ssl.get_default_verify_paths()
    fake = ssl.DefaultVerifyPaths(
        None, None, real.openssl_cafile_env, str(bundle), real.openssl_capath_env, str(empty_dir)
    )
    monkeypatch.setattr(ssl, "get_default_verify_paths", lambda: fake)


@pytest.fixture(params=["holysheep", "httpx"])
def transport(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Our own transport, and httpx's (what proxies and HOLYSHEEP_TRANSPORT=httpx use)."""
    if request.param == "httpx":
        monkeypatch.setenv("HOLYSHEEP_TRANSPORT", "httpx")
    return str(request.param)


async def ask(url: str, **kw: object) -> str:
    async with AsyncClient(api_key="k", base_url=url, max_retries=0, **kw) as client:  # type: ignore[arg-type]
        completion = await client.chat.create(model="m", messages=MESSAGES)
        is_ours = isinstance(client.http_client._transport, Transport)
    if "http_client" not in kw:
        assert is_ours == (os.environ.get("HOLYSHEEP_TRANSPORT") != "httpx")
    return completion.text


async def test_a_ca_in_the_system_store_verifies(
    monkeypatch: pytest.MonkeyPatch, pki: PKI, tls_server: TLSServer, transport: str
) -> None:
    system_store(monkeypatch, pki.bundle, pki.empty_dir)
    assert await ask(tls_server.url) == "secure"


async def test_an_unknown_ca_fails_with_a_clear_typed_error(
    monkeypatch: pytest.MonkeyPatch,
    pki: PKI,
    tls_server: TLSServer,
    impostor: TLSServer,
    transport: str,
) -> None:
    system_store(monkeypatch, pki.bundle, pki.empty_dir)
    before = impostor.requests
    with pytest.raises(APIConnectionError, match=VERIFY_FAILED):
        await ask(impostor.url)
    assert impostor.requests == before, "nothing was sent to a server that failed verification"


async def test_ssl_cert_file_and_dir_still_win(
    monkeypatch: pytest.MonkeyPatch, pki: PKI, tls_server: TLSServer, transport: str
) -> None:
    # The system store does not know the CA; the environment's bundle does.
    system_store(monkeypatch, pki.stranger_bundle, pki.empty_dir)
    with pytest.raises(APIConnectionError, match=VERIFY_FAILED):
        await ask(tls_server.url)
    monkeypatch.setenv("SSL_CERT_FILE", str(pki.bundle))
    assert await ask(tls_server.url) == "secure"
    monkeypatch.delenv("SSL_CERT_FILE")
    if pki.hashed_dir is None:
        pytest.skip("openssl is needed to name a hashed certificate directory")
    monkeypatch.setenv("SSL_CERT_DIR", str(pki.hashed_dir))
    assert await ask(tls_server.url) == "secure"


async def test_the_users_verify_wins(
    monkeypatch: pytest.MonkeyPatch, pki: PKI, tls_server: TLSServer
) -> None:
    system_store(monkeypatch, pki.stranger_bundle, pki.empty_dir)
    mine = ssl.create_default_context(cafile=str(pki.bundle))
    async with httpx.AsyncClient(verify=mine) as http:
        assert await ask(tls_server.url, http_client=http) == "secure"
    async with httpx.AsyncClient(transport=Transport(verify=mine)) as http:
        assert await ask(tls_server.url, http_client=http) == "secure"
    # And the other way round: verify= narrower than the system store refuses.
    system_store(monkeypatch, pki.bundle, pki.empty_dir)
    strangers = ssl.create_default_context(cafile=str(pki.stranger_bundle))
    async with httpx.AsyncClient(transport=Transport(verify=strangers)) as http:
        with pytest.raises(APIConnectionError, match=VERIFY_FAILED):
            await ask(tls_server.url, http_client=http)


async def test_an_unreadable_ssl_cert_file_is_a_configuration_error(
    monkeypatch: pytest.MonkeyPatch, tls_server: TLSServer, transport: str, tmp_path: Path
) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "missing.pem"))
    with pytest.raises(ConfigurationError, match="SSL_CERT_FILE"):
        await ask(tls_server.url)


async def test_truststore_context_works_with_our_transport(
    monkeypatch: pytest.MonkeyPatch, pki: PKI, tls_server: TLSServer
) -> None:
    # What macOS and Windows get by default; on Linux truststore reads OpenSSL's
    # paths (SSL_CERT_FILE included) at each handshake.
    truststore = pytest.importorskip("truststore")
    monkeypatch.setenv("SSL_CERT_FILE", str(pki.bundle))
    ctx = truststore.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    async with httpx.AsyncClient(transport=Transport(verify=ctx)) as http:
        assert await ask(tls_server.url, http_client=http) == "secure"
        assert await ask(tls_server.url, http_client=http) == "secure"
    monkeypatch.setenv("SSL_CERT_FILE", str(pki.stranger_bundle))
    ctx = truststore.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    async with httpx.AsyncClient(transport=Transport(verify=ctx)) as http:
        with pytest.raises(APIConnectionError, match=VERIFY_FAILED):
            await ask(tls_server.url, http_client=http)


# -- the real system bundle, in a private mount namespace ------------------------------------

CHILD = """
import os, sys, anyio
from holysheep_async import AsyncClient

async def main():
    async with AsyncClient(api_key="k", base_url=sys.argv[1], max_retries=0) as client:
        completion = await client.chat.create(model="m", messages=[{"role": "user", "content": ""}])
    print(completion.text)

for backend in ("asyncio", "trio"):
    anyio.run(main, backend=backend)
"""


@pytest.mark.skipif(sys.platform != "linux", reason="mount namespaces are Linux's")
@pytest.mark.parametrize("holysheep_transport", ["", "httpx"])
def test_a_ca_in_the_real_system_bundle_verifies(
    pki: PKI, tls_server: TLSServer, tmp_path: Path, holysheep_transport: str
) -> None:
    """The system's bundle file itself holds the CA (bind-mounted in a child's own namespace)."""
    paths = ssl.get_default_verify_paths()
    target = os.path.realpath(paths.openssl_cafile)
    if not os.path.isfile(target):
        pytest.skip(f"no system bundle at {paths.openssl_cafile}")
    bundle = tmp_path / "bundle.pem"
    bundle.write_bytes(Path(target).read_bytes() + pki.bundle.read_bytes())
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("SSL_CERT_FILE", "SSL_CERT_DIR", "HOLYSHEEP_TRANSPORT", *PROXY_VARS)
    }
    env["HOLYSHEEP_TRANSPORT"] = holysheep_transport
    env["NO_PROXY"] = "*"
    shell = 'mount --bind "$1" "$2" && shift 2 && exec "$@"'
    try:
        probe = subprocess.run(
            ["unshare", "-m", "--propagation", "private", "true"], capture_output=True
        )
    except OSError:
        pytest.skip("unshare is not installed")
    if probe.returncode != 0:
        pytest.skip(f"no private mount namespace here: {probe.stderr.decode().strip()}")
    run = subprocess.run(
        ["unshare", "-m", "--propagation", "private", "sh", "-c", shell, "sh",
         str(bundle), target, sys.executable, str(script), tls_server.url],
        capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip
    if run.returncode != 0 and "mount" in run.stderr and "Traceback" not in run.stderr:
        pytest.skip(f"cannot bind-mount here: {run.stderr.strip()}")
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == ["secure", "secure"]
    # The same child without the CA in the bundle fails verification: the bundle is what counted.
    run = subprocess.run(
        ["unshare", "-m", "--propagation", "private", "sh", "-c", shell, "sh",
         target, target, sys.executable, str(script), tls_server.url],
        capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip
    assert run.returncode != 0
    assert "certificate verify failed" in run.stderr.lower()
