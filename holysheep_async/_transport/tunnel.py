"""A ``CONNECT`` tunnel through an ``http://`` proxy, with TLS to the target inside it.

For an ``https://`` target behind a forward proxy: a TCP connection to the
proxy, ``CONNECT host:port`` (with the proxy's ``Proxy-Authorization``), a
``2xx`` answer, then the TLS handshake with the target through the tunnel,
verified against the trust store as a direct connection is (``_tls``). The
result is a connection like any other: the pool keeps it per (proxy,
target), the exchange reads and writes it with the same timers, idle
checks and early-answer handling.

The whole setup (connecting to the proxy, its answer, the handshake) runs
under the request's connect timeout; cancelled or failed at any point, the
socket is closed. Errors name the proxy by its URL without credentials.
"""

from __future__ import annotations

import ssl

import anyio
import anyio.abc
import httpx
from anyio.streams.tls import TLSStream

from .connection import Key, _Connection, open_stream
from .http11 import MAX_HEAD, _parse_head, find_head_end
from .proxy import Proxy, auth_error, auth_refused

__all__ = ["open_tunnel"]


async def open_tunnel(
    key: Key, proxy: Proxy, timeout: float | None, tls: ssl.SSLContext
) -> _Connection:
    """A connection to ``key``'s https target through ``proxy`` (CONNECT, then TLS)."""
    _, host_bytes, port = key
    host = host_bytes.decode("ascii")
    authority = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    try:
        with anyio.fail_after(timeout):
            try:
                stream = await open_stream(b"http", proxy.host, proxy.port, None, None)
            except (OSError, anyio.BrokenResourceError) as exc:
                raise httpx.ConnectError(f"cannot connect to proxy {proxy}: {exc}") from exc
            try:
                await _connect(stream, proxy, authority)
                tunnel: anyio.abc.ByteStream = await TLSStream.wrap(
                    stream, hostname=host, ssl_context=tls, standard_compatible=False
                )
            except BaseException:
                await anyio.aclose_forcefully(stream)
                raise
    except TimeoutError:
        raise httpx.ConnectTimeout(
            f"timed out connecting to {authority} through proxy {proxy}"
        ) from None
    except (OSError, ssl.SSLError, anyio.BrokenResourceError, anyio.EndOfStream) as exc:
        raise httpx.ConnectError(
            f"cannot connect to {authority} through proxy {proxy}: {exc!r}"
        ) from exc
    return _Connection(key, tunnel)


async def _connect(stream: anyio.abc.ByteStream, proxy: Proxy, authority: str) -> None:
    """Ask for the tunnel; return once the proxy said yes (a ``2xx``), or raise ``ProxyError``."""
    head = f"CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n".encode("ascii")
    await stream.send(head + proxy.header_lines + b"\r\n")
    buf = b""
    while True:
        try:
            end, start = find_head_end(buf)
        except httpx.RemoteProtocolError as exc:
            raise httpx.ProxyError(f"proxy {proxy} answered CONNECT with {exc}") from None
        if end >= 0:
            break
        if len(buf) > MAX_HEAD:
            raise httpx.ProxyError(f"proxy {proxy}: its answer to CONNECT is over 64 KiB")
        try:
            data = await stream.receive()
        except anyio.EndOfStream:
            raise httpx.ProxyError(
                f"proxy {proxy} closed the connection without answering CONNECT {authority}"
            ) from None
        buf += data
    _, status, reason, headers = _parse_head(buf[:end])
    challenge = b", ".join(v for k, v in headers if k.lower() == b"www-authenticate")
    if auth_refused(proxy, status, challenge.decode("latin-1")):
        raise auth_error(proxy, status, f"CONNECT {authority}")
    if not 200 <= status < 300:
        raise httpx.ProxyError(
            f"proxy {proxy} refused CONNECT {authority}: {status} {reason.decode('latin-1')}"
        )
    if buf[start:]:
        # Nothing may come before our TLS handshake: the proxy is out of step with us.
        raise httpx.ProxyError(f"proxy {proxy} sent bytes after accepting CONNECT {authority}")
