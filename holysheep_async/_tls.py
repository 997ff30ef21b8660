"""The SSL context of the client's HTTPS connections: the system's trust store by default.

A company's CA installed in the operating system's store (and nowhere else)
verifies, as with the official SDK, which does the same through httpx's
successor. Where the CA certificates come from, first match wins:

1. ``SSL_CERT_FILE``, else ``SSL_CERT_DIR``, when the environment is trusted
   (``trust_env``, httpx's rule): a bundle or a hashed directory of your own.
2. macOS and Windows: the system's store through ``truststore`` (a dependency
   on those systems only), which asks the OS to verify each chain.
3. Linux and other Unixes: the system's bundle, where OpenSSL was built to
   look (``/usr/lib/ssl/cert.pem`` on Debian, ...) or at the usual distro
   paths, loaded once. Not ``truststore`` here: on Linux it re-adds the same
   paths at every handshake, which OpenSSL before 3.4 keeps accumulating
   (sethmlarson/truststore#212), and it brings nothing OpenSSL cannot read itself.
4. No system store at all (a distroless image): certifi's bundle, httpx's default.

``verify=False``, a path or an ``ssl.SSLContext`` of the user's are httpx's
business (:func:`httpx.create_ssl_context`), untouched.
"""

from __future__ import annotations

import os
import re
import ssl
import sys
from typing import Any

import httpx

from .errors import ConfigurationError

__all__ = ["create_ssl_context", "system_ca_locations"]

# Where Linux and BSD distributions keep their bundle (the list truststore and
# httpcore use), for an OpenSSL built to look elsewhere.
CA_FILE_CANDIDATES = (
    "/etc/ssl/cert.pem",  # Alpine, Arch, Fedora 34+, RHEL 9+, BSD
    "/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem",  # Fedora 44+, RHEL 11+
    "/etc/pki/tls/cert.pem",  # older Fedora, RHEL, CentOS
    "/etc/ssl/certs/ca-certificates.crt",  # Debian, Ubuntu
    "/etc/ssl/ca-bundle.pem",  # SUSE
)
_HASHED = re.compile(r"[0-9a-fA-F]{8}\.\d+")


def create_ssl_context(
    verify: bool | str | ssl.SSLContext = True, cert: Any = None, trust_env: bool = True
) -> ssl.SSLContext:
    """``httpx.create_ssl_context``, but ``verify=True`` means the system's trust store."""
    if verify is not True:
        return httpx.create_ssl_context(verify=verify, cert=cert, trust_env=trust_env)
    ctx = _default_context(trust_env)
    if cert:
        ctx = httpx.create_ssl_context(verify=ctx, cert=cert)
    return ctx


def system_ca_locations() -> tuple[str | None, str | None]:
    """(bundle file, hashed directory) of the system's store on this Unix; (None, None) if none.

    The paths OpenSSL was built with (not ``SSL_CERT_FILE``/``SSL_CERT_DIR``:
    those are the user's, handled before), else the usual distribution paths.
    """
    paths = ssl.get_default_verify_paths()
    cafile = paths.openssl_cafile if os.path.isfile(paths.openssl_cafile) else None
    capath = paths.openssl_capath if _has_hashed_certs(paths.openssl_capath) else None
    if cafile is None and capath is None:
        cafile = next((f for f in CA_FILE_CANDIDATES if os.path.isfile(f)), None)
    return cafile, capath


def _has_hashed_certs(capath: str) -> bool:
    try:
        return any(_HASHED.fullmatch(name) for name in os.listdir(capath))
    except OSError:
        return False


def _default_context(trust_env: bool) -> ssl.SSLContext:
    if trust_env:
        for var in ("SSL_CERT_FILE", "SSL_CERT_DIR"):
            value = os.environ.get(var)
            if value:
                try:
                    if var == "SSL_CERT_FILE":
                        return ssl.create_default_context(cafile=value)
                    return ssl.create_default_context(capath=value)
                except (OSError, ssl.SSLError) as exc:
                    raise ConfigurationError(
                        f"{var}={value!r} cannot be used as CA certificates: {exc}"
                    ) from None
    if sys.platform in ("darwin", "win32"):
        try:
            import truststore
        except ImportError:  # installed without its dependencies
            pass
        else:
            return truststore.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # type: ignore[return-value]
    else:
        cafile, capath = system_ca_locations()
        if cafile or capath:
            return ssl.create_default_context(cafile=cafile, capath=capath)
    return httpx.create_ssl_context(verify=True, trust_env=False)  # certifi
