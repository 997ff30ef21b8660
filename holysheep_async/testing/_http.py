"""A small HTTP/1.1 server on asyncio streams, for the emulator.

Only what an OpenAI-compatible API needs: keep-alive, ``Content-Length`` and
chunked request bodies, fixed-length and chunked (streamed) responses, and a
way to drop a connection mid-answer. Handlers get a :class:`Request` and a
:class:`Responder` (and the emulator, see ``_state``); this module knows
nothing of handlers or routes.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

__all__ = ["BadHTTP", "Request", "Responder", "read_request"]

MAX_HEADER = 64 * 1024
MAX_BODY = 512 * 1024 * 1024

REASONS = {
    200: "OK",
    201: "Created",
    204: "No Content",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    409: "Conflict",
    413: "Payload Too Large",
    422: "Unprocessable Entity",
    429: "Too Many Requests",
    500: "Internal Server Error",
    501: "Not Implemented",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}


@dataclass
class Request:
    """One request as the emulator received it (also what ``MockServer.requests`` records)."""

    method: str
    target: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes
    received_at: float = field(default_factory=time.monotonic)
    #: The bearer key the request carried (None when it had none).
    api_key: str | None = None
    #: Status the emulator answered with (filled in once known).
    status: int | None = None
    #: The ``x-request-id`` the emulator gave it.
    request_id: str | None = None
    #: The fault injected into its answer, if any (a ``Fault``).
    fault: Any = None
    #: Headers a hook wants on the answer (the quota's ``x-ratelimit-*``).
    answer_headers: dict[str, str] = field(default_factory=dict)

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None

    def __repr__(self) -> str:
        return f"<Request {self.method} {self.target} status={self.status} bytes={len(self.body)}>"


class Responder:
    """Writes one response: whole (``send``), or streamed (``start``, ``write``, ``end``)."""

    __slots__ = ("_chunked", "_keep_alive", "_started", "_writer", "request", "status")

    def __init__(self, writer: asyncio.StreamWriter, request: Request, keep_alive: bool) -> None:
        self._writer = writer
        self.request = request
        self._keep_alive = keep_alive
        self._started = False
        self._chunked = False
        self.status = 0

    @property
    def started(self) -> bool:
        return self._started

    def _head(self, status: int, headers: dict[str, str]) -> bytes:
        self.status = status
        self.request.status = status
        lines = [f"HTTP/1.1 {status} {REASONS.get(status, 'Status')}"]
        if self.request.request_id and "x-request-id" not in headers:
            lines.append(f"x-request-id: {self.request.request_id}")
        for name, value in headers.items():
            lines.append(f"{name}: {value}")
        if not self._keep_alive:
            lines.append("connection: close")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    async def send(
        self, status: int, body: bytes = b"", headers: dict[str, str] | None = None
    ) -> None:
        hdrs = {"content-type": "application/json", **(headers or {})}
        hdrs["content-length"] = str(len(body))
        self._started = True
        self._writer.write(self._head(status, hdrs) + body)
        await self._writer.drain()

    async def send_json(self, status: int, obj: Any, headers: dict[str, str] | None = None) -> None:
        await self.send(status, json.dumps(obj, separators=(",", ":")).encode(), headers)

    async def error(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        code: str | None = None,
        param: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        """An error in OpenAI's shape: ``{"error": {"message", "type", "param", "code"}}``."""
        await self.send_json(
            status,
            {"error": {"message": message, "type": type, "param": param, "code": code}},
            headers,
        )

    async def start(self, status: int = 200, headers: dict[str, str] | None = None) -> None:
        """Start a chunked (streamed) response."""
        hdrs = dict(headers or {})
        hdrs["transfer-encoding"] = "chunked"
        self._started = True
        self._chunked = True
        self._writer.write(self._head(status, hdrs))

    async def write(self, data: bytes, *, flush: bool = True) -> None:
        if data:
            self._writer.write(b"%x\r\n%b\r\n" % (len(data), data))
        if flush:
            await self._writer.drain()

    async def end(self) -> None:
        self._writer.write(b"0\r\n\r\n")
        await self._writer.drain()

    def abort(self) -> None:
        """Drop the connection now, mid-response (a network failure as the client sees it)."""
        self._keep_alive = False
        transport = self._writer.transport
        transport.abort()


class BadHTTP(Exception):
    pass


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    parts: list[bytes] = []
    size_total = 0
    while True:
        line = await reader.readuntil(b"\r\n")
        size = int(line.split(b";", 1)[0].strip(), 16)
        if size == 0:
            while (await reader.readuntil(b"\r\n")) != b"\r\n":
                pass
            return b"".join(parts)
        size_total += size
        if size_total > MAX_BODY:
            raise BadHTTP("body too large")
        parts.append(await reader.readexactly(size))
        await reader.readexactly(2)


async def read_request(reader: asyncio.StreamReader) -> tuple[Request, bool] | None:
    """Read one request; None when the client closed the connection between requests."""
    first = b""
    try:
        first = await reader.readexactly(1)
        if first == b"\x16":
            # A TLS handshake record: a client told https:// for this plain-HTTP server.
            # Answer in plain text at once, as HTTP servers do, instead of waiting for a
            # request head that never comes (the client then fails at once too).
            raise BadHTTP("this is a plain-HTTP server: use http://, not https://")
        head = first + await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as exc:
        if (first + exc.partial).strip():
            raise BadHTTP("incomplete request head") from None
        return None
    except asyncio.LimitOverrunError:
        raise BadHTTP("request head too large") from None
    lines = head.decode("latin-1").split("\r\n")
    try:
        method, target, version = lines[0].split(" ", 2)
    except ValueError:
        raise BadHTTP(f"bad request line {lines[0]!r}") from None
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep:
            raise BadHTTP(f"bad header line {line!r}")
        key = name.strip().lower()
        value = value.strip()
        headers[key] = f"{headers[key]}, {value}" if key in headers else value
    if headers.get("transfer-encoding", "").lower().endswith("chunked"):
        body = await _read_chunked(reader)
    else:
        length = int(headers.get("content-length", "0") or 0)
        if length > MAX_BODY:
            raise BadHTTP("body too large")
        body = await reader.readexactly(length) if length else b""
    conn = headers.get("connection", "").lower()
    keep_alive = "close" not in conn if version == "HTTP/1.1" else "keep-alive" in conn
    parts = urlsplit(target)
    query = dict(parse_qsl(parts.query, keep_blank_values=True))
    auth = headers.get("authorization", "")
    api_key = auth[7:].strip() if auth[:7].lower() == "bearer " else None
    request = Request(
        method=method.upper(),
        target=target,
        path=unquote(parts.path),
        query=query,
        headers=headers,
        body=body,
        api_key=api_key,
    )
    return request, keep_alive
