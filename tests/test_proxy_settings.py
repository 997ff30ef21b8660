"""Which proxy a target goes through (holysheep_async._transport.proxy): pure, no network.

NO_PROXY as curl matches it, the environment as httpx reads it (urllib's getproxies),
loopback never proxied from the environment, credentials never shown.
"""

from __future__ import annotations

import base64

import httpx
import pytest

from holysheep_async import AsyncClient, ConfigurationError
from holysheep_async._transport import Transport
from holysheep_async._transport.http11 import encode_head
from holysheep_async._transport.proxy import (
    NoProxy,
    Proxy,
    ProxyRoutes,
    UnsupportedProxy,
    auth_refused,
    is_loopback,
)

PROXY_VARS = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY")


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in (*PROXY_VARS, "HOLYSHEEP_TRANSPORT", "REQUEST_METHOD"):
        monkeypatch.delenv(var, raising=False)
        monkeypatch.delenv(var.lower(), raising=False)


@pytest.mark.parametrize(
    ("no_proxy", "host", "port", "direct"),
    [
        ("example.com", "example.com", 443, True),
        ("example.com", "api.example.com", 443, True),
        ("example.com", "badexample.com", 443, False),
        (".example.com", "example.com", 443, True),  # curl: a leading dot is dropped
        (".example.com", "a.b.example.com", 443, True),
        ("example.com.", "API.Example.COM.", 443, True),  # case, trailing dots
        ("example.com", "example.org", 443, False),
        ("*", "anything.at.all", 80, True),
        ("a.org, *", "anything.at.all", 80, True),
        ("a.org b.org\tc.org", "x.b.org", 80, True),  # spaces and tabs separate too
        ("10.1.2.3", "10.1.2.3", 80, True),
        ("10.1.2.3", "10.1.2.4", 80, False),
        ("10.0.0.0/8", "10.200.3.4", 80, True),
        ("10.0.0.0/8", "11.0.0.1", 80, False),
        ("192.168.1.7/24", "192.168.1.200", 80, True),  # host bits ignored
        ("fd00::/8", "[fd12::1]", 443, True),
        ("[::1]", "::1", 443, True),
        ("10.0.0.0/8", "ten.example", 80, False),  # a name is never matched by address
        ("example.com", "93.184.216.34", 80, False),  # nor an address by name
        ("example.com:8443", "api.example.com", 8443, True),
        ("example.com:8443", "api.example.com", 443, False),
        ("10.0.0.1:80", "10.0.0.1", 80, True),
        ("10.0.0.1:80", "10.0.0.1", 81, False),
        ("", "example.com", 443, False),
        (" , ,", "example.com", 443, False),
    ],
)
def test_no_proxy_matches_as_curl_does(no_proxy: str, host: str, port: int, direct: bool) -> None:
    assert NoProxy(no_proxy).matches(host, port) is direct


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("localhost", True),
        ("LOCALHOST.", True),
        ("api.localhost", True),
        ("127.0.0.1", True),
        ("127.8.9.10", True),
        ("::1", True),
        ("[::1]", True),
        ("10.0.0.1", False),
        ("localhost.example.com", False),
        ("example.com", False),
    ],
)
def test_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_routes_from_the_environment_as_httpx_reads_them() -> None:
    routes = ProxyRoutes.from_environment(
        {"http": "proxy.corp:3128", "https": "http://tls.corp:8080", "no": "internal.corp"}
    )
    assert routes is not None
    http = routes.select(b"http", "api.example.com", 80)
    https = routes.select(b"https", "api.example.com", 443)
    assert http is not None and https is not None
    assert (http.url, https.url) == ("http://proxy.corp:3128", "http://tls.corp:8080")
    assert routes.select(b"https", "db.internal.corp", 443) is None
    for loopback in ("localhost", "127.0.0.1", "::1"):  # never proxied from the environment
        assert routes.select(b"http", loopback, 80) is None
    every = ProxyRoutes.from_environment({"all": "http://all.corp:3128"})
    assert every is not None
    assert str(every.select(b"https", "x.org", 443)) == str(every.select(b"http", "x.org", 80))
    assert ProxyRoutes.from_environment({"no": "*"}) is None  # NO_PROXY alone: no proxy
    assert ProxyRoutes.from_environment({}) is None


def test_specific_scheme_wins_over_all_proxy() -> None:
    routes = ProxyRoutes.from_environment({"all": "http://all:1", "https": "http://tls:2"})
    assert routes is not None
    assert str(routes.select(b"https", "x.org", 443)) == "http://tls:2"
    assert str(routes.select(b"http", "x.org", 80)) == "http://all:1"


def test_lower_case_variables_win(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://upper:1")
    monkeypatch.setenv("https_proxy", "http://lower:2")
    routes = ProxyRoutes.configure(None, trust_env=True)
    assert routes is not None
    assert str(routes.select(b"https", "x.org", 443)) == "http://lower:2"
    assert ProxyRoutes.configure(None, trust_env=False) is None


def test_a_proxy_given_in_code_applies_everywhere(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NO_PROXY", "*")
    routes = ProxyRoutes.configure("http://given:3128", trust_env=True)
    assert routes is not None
    for host in ("x.org", "127.0.0.1", "localhost"):
        assert str(routes.select(b"https", host, 443)) == "http://given:3128"


def test_credentials_become_a_header_and_are_never_shown() -> None:
    proxy = Proxy.parse("http://al%3Aice:p%40ss%3Aw0rd@proxy.corp:3128")
    token = base64.b64encode(b"al:ice:p@ss:w0rd").decode()
    assert proxy.header_lines == f"Proxy-Authorization: Basic {token}\r\n".encode()
    assert proxy.has_credentials
    routes = ProxyRoutes(proxy, proxy)
    for shown in (str(proxy), repr(proxy), proxy.url, repr(routes)):
        assert "w0rd" not in shown and "ice" not in shown and token not in shown
    assert proxy.url == "http://proxy.corp:3128"
    given = Proxy.parse(httpx.Proxy("http://proxy.corp:3128", auth=("u", "pw")))
    assert given.header_lines == b"Proxy-Authorization: Basic dTpwdw==\r\n"
    extra = Proxy.parse(httpx.Proxy("http://p:1", headers={"X-Team": "ml"}))
    assert extra.header_lines == b"X-Team: ml\r\n" and not extra.has_credentials


def test_proxy_urls() -> None:
    assert Proxy.parse("proxy.corp:3128").url == "http://proxy.corp:3128"  # no scheme: http
    assert Proxy.parse("http://proxy.corp").port == 80
    assert Proxy.parse("http://[::1]:3128").url == "http://[::1]:3128"
    for other in ("socks5://p:1080", "socks5h://p:1080", "https://p:443"):
        with pytest.raises(UnsupportedProxy):
            Proxy.parse(other)
    with pytest.raises(ValueError, match="CR or LF"):
        Proxy.parse(httpx.Proxy("http://p:1", headers={"X": "a\r\nInjected: 1"}))


def test_a_proxy_refusing_credentials() -> None:
    without = Proxy.parse("http://p:1")
    with_auth = Proxy.parse("http://u:pw@p:1")
    assert auth_refused(without, 407) and auth_refused(with_auth, 407)
    # tinyproxy answers wrong credentials with 401 and a Basic challenge...
    assert auth_refused(with_auth, 401, 'Basic realm="Tinyproxy"')
    # ...an API answers a bad key with 401 and a Bearer challenge, or none: the server's.
    assert not auth_refused(with_auth, 401, "Bearer")
    assert not auth_refused(with_auth, 401)
    assert not auth_refused(without, 401, 'Basic realm="x"')


def test_the_forward_head_is_absolute_form_with_the_proxy_lines() -> None:
    request = httpx.Request("POST", "http://api.example.com:8080/v1/chat?x=1", content=b"{}")
    head = encode_head(request, b"http://api.example.com:8080/v1/chat?x=1", b"P-A: Basic x\r\n")
    assert head.startswith(b"POST http://api.example.com:8080/v1/chat?x=1 HTTP/1.1\r\n")
    assert head.endswith(b"P-A: Basic x\r\n\r\n")
    assert b"Host: api.example.com:8080\r\n" in head
    with pytest.raises(httpx.LocalProtocolError):
        encode_head(request, b"/", b"X: a\r\nY: b\n")


def test_transport_choice_and_client_checks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://u:secret@proxy.invalid:3128")
    client = AsyncClient(api_key="k")
    assert isinstance(client.http_client._transport, Transport)
    assert "secret" not in repr(client)
    with pytest.raises(ConfigurationError, match=r"give the proxy to your httpx\.AsyncClient"):
        AsyncClient(api_key="k", proxy="http://p:1", http_client=httpx.AsyncClient())
    with pytest.raises(ConfigurationError, match="ftp://"):
        AsyncClient(api_key="k", proxy="ftp://u:secret@p:1")
    with pytest.raises(ConfigurationError) as info:
        AsyncClient(api_key="k", proxy="http://u:secret@p:notaport")
    assert "secret" not in str(info.value)
    # SOCKS stays on httpx's transport (with httpx[socks]); without it, a clear error.
    try:
        import socksio  # noqa: F401
    except ImportError:
        with pytest.raises(ConfigurationError, match="socksio"):
            AsyncClient(api_key="k", proxy="socks5://127.0.0.1:1080")
    else:
        socks = AsyncClient(api_key="k", proxy="socks5://127.0.0.1:1080")
        assert not isinstance(socks.http_client._transport, Transport)
