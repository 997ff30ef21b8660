"""Tiny scripted HTTP servers on 127.0.0.1 for transport tests.

Each connection runs ``handler(conn)`` in a thread, so both asyncio and trio
clients can use them.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
from collections.abc import Callable

import httpx

from holysheep_async._transport import Transport


class Conn:
    """One accepted connection, with a request reader."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.file = sock.makefile("rb")

    def read_request(self) -> tuple[str, dict[str, str], bytes] | None:
        """(request line, headers, body) or None when the client closed."""
        line = self.file.readline()
        if not line:
            return None
        headers: dict[str, str] = {}
        while True:
            h = self.file.readline()
            if h in (b"\r\n", b""):
                break
            name, _, value = h.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        body = b""
        if "chunked" in headers.get("transfer-encoding", ""):
            while True:
                size = int(self.file.readline().split(b";")[0], 16)
                if size == 0:
                    self.file.readline()
                    break
                body += self.file.read(size)
                self.file.readline()
        elif "content-length" in headers:
            body = self.file.read(int(headers["content-length"]))
        return line.decode("latin-1").strip(), headers, body

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)


class RawServer:
    """Accepts connections on 127.0.0.1 and runs ``handler(conn)`` for each in a thread."""

    def __init__(self, handler: Callable[[Conn], None], *, tls: ssl.SSLContext | None = None):
        self.handler = handler
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.url = f"{'https' if tls else 'http'}://127.0.0.1:{self.port}"
        self.tls = tls
        self.accepted = 0
        self.requests: list[tuple[str, dict[str, str], bytes]] = []
        self.closed = threading.Event()  # set each time a handler finished with its connection
        self._stop = False
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while True:
            sock, _ = self.listener.accept()
            if self._stop:
                sock.close()
                return
            self.accepted += 1
            threading.Thread(target=self._run, args=(sock,), daemon=True).start()

    def _run(self, sock: socket.socket) -> None:
        try:
            if self.tls is not None:
                sock = self.tls.wrap_socket(sock, server_side=True)
            self.handler(Conn(sock))
        except (OSError, ssl.SSLError):
            pass
        finally:
            with contextlib.suppress(OSError):
                sock.close()
            self.closed.set()

    def close(self) -> None:
        self._stop = True
        with contextlib.suppress(OSError):
            socket.create_connection(("127.0.0.1", self.port)).close()
        self._thread.join(5)
        self.listener.close()


def transport_of(client: httpx.AsyncClient) -> Transport:
    t = client._transport
    assert isinstance(t, Transport)
    return t


def serve_all(srv_requests: list[tuple[str, dict[str, str], bytes]], answer: bytes):
    """A handler answering ``answer`` to every request on a connection, keeping it alive."""

    def handler(conn: Conn) -> None:
        while (req := conn.read_request()) is not None:
            srv_requests.append(req)
            conn.send(answer)

    return handler


def ok(body: bytes, extra: bytes = b"") -> bytes:
    return b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n%b\r\n%b" % (len(body), extra, body)


def chunked(*parts: bytes) -> bytes:
    out = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"
    for p in parts:
        out += b"%x\r\n%b\r\n" % (len(p), p)
    return out + b"0\r\n\r\n"
