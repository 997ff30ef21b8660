"""The per-call options every request method takes, checked the same way everywhere.

``extra_headers`` go with this request only, ``extra_query`` into its URL,
``extra_body`` is merged into the JSON body (server-specific fields such as
``top_k``), ``timeout`` replaces the client's timeout for this call. None of
them is ever sent in the body under its own name.

A method that makes several requests (``client.batches``' ``submit``, ``wait``,
``run``...) checks the four once, before its first request, with
:func:`call_options`, and hands the result on to each request it makes
(:func:`without_body` for the requests that send no body).
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Iterable, Mapping

import httpx
from typing_extensions import TypedDict

from .types import Headers, Query

__all__ = [
    "CallOptions",
    "call_options",
    "call_timeout",
    "check_extras",
    "unknown_keywords",
    "without_body",
]


class CallOptions(TypedDict):
    """The per-call options of one call, checked; ``**options`` passes them on."""

    extra_headers: Headers | None
    extra_query: Query | None
    extra_body: Mapping[str, object] | None
    timeout: httpx.Timeout | None


def call_options(
    extra_headers: Headers | None,
    extra_query: Query | None,
    extra_body: Mapping[str, object] | None,
    timeout: object,
    *,
    timeout_name: str = "timeout",
) -> CallOptions:
    """The options of a call that makes several requests, checked before the first one."""
    check_extras(extra_headers, extra_query, extra_body)
    return CallOptions(
        extra_headers=extra_headers,
        extra_query=extra_query,
        extra_body=extra_body,
        timeout=call_timeout(timeout, timeout_name),
    )


def without_body(options: CallOptions) -> CallOptions:
    """``options`` for a request of the call that sends no body of its own (a GET, an upload)."""
    return CallOptions(
        extra_headers=options["extra_headers"],
        extra_query=options["extra_query"],
        extra_body=None,
        timeout=options["timeout"],
    )


def call_timeout(timeout: object, name: str = "timeout") -> httpx.Timeout | None:
    """``timeout=`` of one call as an ``httpx.Timeout`` (None: the client's)."""
    if timeout is None or isinstance(timeout, httpx.Timeout):
        return timeout
    if (
        isinstance(timeout, (int, float))
        and not isinstance(timeout, bool)
        and math.isfinite(timeout)
        and timeout > 0
    ):
        return httpx.Timeout(float(timeout))
    raise TypeError(f"{name} must be a number > 0, an httpx.Timeout or None, got {timeout!r}")


def check_extras(extra_headers: object, extra_query: object, extra_body: object) -> None:
    """Raise TypeError for an ``extra_*`` that is not a mapping (called only when one is set)."""
    for name, value in (
        ("extra_headers", extra_headers),
        ("extra_query", extra_query),
        ("extra_body", extra_body),
    ):
        if value is not None and not isinstance(value, Mapping):
            raise TypeError(f"{name} must be a dict, got {type(value).__name__}")
    if extra_headers is not None:
        assert isinstance(extra_headers, Mapping)
        for k, v in extra_headers.items():
            if not isinstance(k, str) or not isinstance(v, str):
                raise TypeError(f"extra_headers must map str to str, got {k!r}: {v!r:.40}")


def unknown_keywords(method: str, given: Iterable[str], known: Iterable[str]) -> TypeError:
    """The TypeError for keywords ``method`` does not take, pointing at ``extra_body``."""
    known = list(known)
    bad = sorted(set(given) - set(known))
    hints = []
    for name in bad:
        close = difflib.get_close_matches(name, known, n=1)
        if close:
            hints.append(f"did you mean {close[0]!r} instead of {name!r}?")
    names = ", ".join(repr(b) for b in bad)
    plural = "s" if len(bad) > 1 else ""
    message = f"{method}() got unexpected keyword argument{plural} {names}"
    if hints:
        message += "; " + " ".join(hints)
    message += (
        "; server-specific fields go in extra_body={...}"
        " (extra_headers=, extra_query= and timeout= are options of the call)"
    )
    return TypeError(message)
