"""Forward-proxy settings: which proxy a target goes through, if any. No I/O.

Read as httpx reads them (``urllib.request.getproxies()``: ``HTTP_PROXY``,
``HTTPS_PROXY``, ``ALL_PROXY``, ``NO_PROXY``, lower case first, and the
system's settings on macOS and Windows), or given (``proxy=``):

- an ``https://`` target goes through ``HTTPS_PROXY``, else ``ALL_PROXY``; an
  ``http://`` target through ``HTTP_PROXY``, else ``ALL_PROXY``. A proxy URL
  without a scheme is ``http://``.
- ``NO_PROXY`` is matched as curl matches it: ``*`` for every host; a name
  matches itself and its subdomains (``example.com`` and ``.example.com``
  both match ``example.com`` and ``api.example.com``, not ``badexample.com``);
  an IP address or a CIDR block (``10.0.0.0/8``, ``fd00::/8``) matches
  targets given by address; case and a trailing dot do not count. An entry
  ``host:port`` (as httpx and urllib take it) matches that port only.
- A loopback target (``localhost``, ``127.0.0.0/8``, ``::1``) never goes
  through a proxy from the environment: a local model server or the emulator
  is not behind the corporate proxy. A proxy given in code (``proxy=``)
  applies to every target, loopback included, and ``NO_PROXY`` does not
  apply to it (as httpx does).

Credentials in a proxy URL (``http://user:secret@proxy:3128``) become a
``Proxy-Authorization: Basic`` header; they never appear in a repr, a log
line or an error (:attr:`Proxy.url` is the URL without them).

Only ``http://`` proxies are spoken here; a SOCKS or ``https://`` proxy
raises :class:`UnsupportedProxy` (the client then uses httpx's transport).
"""

from __future__ import annotations

import base64
import ipaddress
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TypeAlias

import httpx

__all__ = [
    "NoProxy",
    "Proxy",
    "ProxyRoutes",
    "UnsupportedProxy",
    "auth_error",
    "auth_refused",
    "is_loopback",
]

#: What ``proxy=`` takes.
ProxySetting: TypeAlias = "str | httpx.URL | httpx.Proxy"


class UnsupportedProxy(ValueError):
    """A proxy this transport does not speak (SOCKS, TLS to the proxy)."""


@dataclass(frozen=True)
class Proxy:
    """An ``http://`` forward proxy: where it is, and the header lines it is sent."""

    #: The proxy's URL without credentials (``http://proxy.corp:3128``): what messages name.
    url: str
    host: str
    port: int
    #: ``Proxy-Authorization: Basic ...\r\n`` (and ``httpx.Proxy(headers=...)``), or b"".
    #: Sent to the proxy only; never shown.
    header_lines: bytes = field(default=b"", repr=False)
    #: Whether credentials go with it (the proxy's 407 then means they were refused).
    has_credentials: bool = False

    def __str__(self) -> str:
        return self.url

    @classmethod
    def parse(cls, setting: ProxySetting) -> Proxy:
        """A proxy from a URL (``str``, ``httpx.URL``) or an ``httpx.Proxy``."""
        if isinstance(setting, httpx.Proxy):
            url, auth, extra = setting.url, setting.raw_auth, setting.headers.raw
        else:
            text = str(setting)
            url = httpx.URL(text if "://" in text else f"http://{text}")
            auth = None
            if url.username or url.password:
                auth = (url.username.encode(), url.password.encode())
            extra = []
        if url.scheme != "http":
            # Name the scheme only: the URL may carry credentials.
            raise UnsupportedProxy(f"{url.scheme}:// proxies are not spoken by this transport")
        host = url.host
        if not host:
            raise ValueError("a proxy URL needs a host")
        port = url.port or 80
        lines = []
        if auth is not None:
            lines.append(b"Proxy-Authorization: Basic " + base64.b64encode(b":".join(auth)))
        lines += [name + b": " + value for name, value in extra]
        header_lines = b"".join(line + b"\r\n" for line in lines)
        if header_lines.count(b"\n") != len(lines) or header_lines.count(b"\r") != len(lines):
            raise ValueError("CR or LF inside a proxy header or credentials")
        shown = f"[{host}]" if ":" in host else host
        return cls(f"http://{shown}:{port}", host, port, header_lines, auth is not None)


def auth_refused(proxy: Proxy, status: int, www_authenticate: str = "") -> bool:
    """Whether a proxy's ``status`` answer means it wants (other) credentials.

    ``407``, or a ``401`` asking for Basic credentials when we sent the proxy
    some: tinyproxy answers wrong credentials with ``401`` and
    ``WWW-Authenticate`` instead of ``407``. (An API answers 401 to a bad key
    with a Bearer challenge or none.)
    """
    if status == 407:
        return True
    return (
        status == 401
        and proxy.has_credentials
        and www_authenticate.lstrip().lower().startswith("basic")
    )


def auth_error(proxy: Proxy, status: int, what: str = "") -> httpx.ProxyError:
    """The error for a proxy that refused us for want of (right) credentials."""
    on = f" for {what}" if what else ""
    if proxy.has_credentials:
        return httpx.ProxyError(f"proxy {proxy} refused the credentials{on} ({status})")
    return httpx.ProxyError(
        f"proxy {proxy} requires authentication{on} ({status}): give it in the proxy URL,"
        " http://user:password@host:port"
    )


def is_loopback(host: str) -> bool:
    """``localhost`` (and ``*.localhost``), or a loopback address (``127.0.0.0/8``, ``::1``)."""
    host = host.lower().rstrip(".")
    if host in ("localhost", "localhost.localdomain") or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


_Network: TypeAlias = "ipaddress.IPv4Network | ipaddress.IPv6Network"


class NoProxy:
    """``NO_PROXY`` as curl reads it (see the module docstring).

    >>> NoProxy("example.com, 10.0.0.0/8").matches("api.example.com", 443)
    True
    >>> NoProxy("example.com").matches("badexample.com", 443)
    False
    """

    __slots__ = ("_all", "_names", "_networks")

    def __init__(self, value: str) -> None:
        self._all = False
        self._names: list[tuple[str, int | None]] = []
        self._networks: list[tuple[_Network, int | None]] = []
        for raw in value.replace(" ", ",").replace("\t", ",").split(","):
            entry = raw.strip().lower()
            if not entry:
                continue
            if entry == "*":
                self._all = True
                continue
            port: int | None = None
            entry, port = _split_port(entry)
            try:
                self._networks.append((ipaddress.ip_network(entry.strip("[]"), strict=False), port))
                continue
            except ValueError:
                pass
            name = entry.lstrip(".").rstrip(".")
            if name:
                self._names.append((name, port))

    def matches(self, host: str, port: int) -> bool:
        """Whether ``host`` (a name or an address) on ``port`` is reached without the proxy."""
        if self._all:
            return True
        host = host.lower().rstrip(".")
        try:
            address = ipaddress.ip_address(host.strip("[]"))
        except ValueError:
            for name, only in self._names:
                if only is not None and only != port:
                    continue
                if host == name or host.endswith("." + name):
                    return True
            return False
        for network, only in self._networks:
            if (only is None or only == port) and address in network:
                return True
        return False


def _split_port(entry: str) -> tuple[str, int | None]:
    """``host:port`` -> (host, port); an IPv6 address (more than one colon) keeps its colons."""
    if entry.startswith("["):
        close = entry.find("]")
        rest = entry[close + 1 :]
        if close > 0 and rest.startswith(":") and rest[1:].isdigit():
            return entry[: close + 1], int(rest[1:])
        return entry, None
    if entry.count(":") == 1:
        host, _, port = entry.partition(":")
        if port.isdigit():
            return host, int(port)
    return entry, None


class ProxyRoutes:
    """Which proxy each target goes through: ``select(scheme, host, port)`` -> Proxy or None."""

    __slots__ = ("_explicit", "_http", "_https", "_no_proxy")

    def __init__(
        self,
        http: Proxy | None,
        https: Proxy | None,
        no_proxy: NoProxy | None = None,
        *,
        explicit: bool = False,
    ) -> None:
        self._http = http
        self._https = https
        self._no_proxy = no_proxy
        self._explicit = explicit

    def __repr__(self) -> str:
        return f"<ProxyRoutes http={self._http} https={self._https}>"

    @classmethod
    def configure(cls, proxy: ProxySetting | None, *, trust_env: bool) -> ProxyRoutes | None:
        """The routes for ``proxy=`` (every target), else the environment's; None: no proxy.

        Raises :class:`UnsupportedProxy` for a proxy this transport does not speak.
        """
        if proxy is not None:
            one = Proxy.parse(proxy)
            return cls(one, one, explicit=True)
        if not trust_env:
            return None
        return cls.from_environment(urllib.request.getproxies())

    @classmethod
    def from_environment(cls, env: Mapping[str, str]) -> ProxyRoutes | None:
        """From ``urllib.request.getproxies()``'s mapping (``http``, ``https``, ``all``, ``no``)."""
        every = env.get("all") or None
        http = env.get("http") or every
        https = env.get("https") or every
        if not http and not https:
            return None
        no_proxy = NoProxy(env.get("no", ""))
        return cls(
            Proxy.parse(http) if http else None,
            Proxy.parse(https) if https else None,
            no_proxy,
        )

    def select(self, scheme: bytes, host: str, port: int) -> Proxy | None:
        """The proxy for a target, or None: straight to it."""
        proxy = self._https if scheme == b"https" else self._http
        if proxy is None or self._explicit:
            return proxy
        if is_loopback(host):
            return None
        if self._no_proxy is not None and self._no_proxy.matches(host, port):
            return None
        return proxy
