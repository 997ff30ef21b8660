"""httpx's ``Headers``, ``Request`` and read ``Response``, built ready-made for the hot path.

httpx's constructors do general work on every call: each header goes through
two normalizing calls; a request body given as a stream is joined again; a
response given its whole body runs it through decoders, a chunker and three
context managers (~120 Python calls, ~15 us of a request's ~100). What they
leave behind is plain attributes. For the objects this package builds many
times a second (the default client's requests, our transport's responses),
those attributes are set here directly, to what the constructors would set.

What users see is the same object: ``reply.response``, ``completion``'s
headers, ``stream.response`` are real ``httpx.Response`` objects, equal
attribute for attribute (``tests/test_lean.py`` compares them with httpx's
own builds); only a read response's content decoder is made when first asked
for, as httpx itself does for one it did not read.

The layout is httpx's, not its API: it is checked once at import, and if this
httpx's objects do not look as expected, the constructors are used
(:data:`LEAN` is then False), slower but the same.
"""

from __future__ import annotations

from typing import Any

import httpx

__all__ = [
    "LEAN",
    "header_list",
    "header_value",
    "headers_from_pairs",
    "headers_from_triples",
    "read_response",
    "request",
]

#: A header as httpx keeps it: (name as sent, name lowercased, value).
Triple = tuple[bytes, bytes, bytes]

_new = object.__new__
_Headers = httpx.Headers
_Request = httpx.Request
_Response = httpx.Response
_ByteStream = httpx.ByteStream


def _lean_headers(triples: list[Triple]) -> httpx.Headers:
    headers: httpx.Headers = _new(_Headers)
    headers._list = triples
    headers._encoding = None
    return headers


def _lean_request(
    method: str, url: httpx.URL, headers: httpx.Headers, body: bytes, extensions: dict[str, Any]
) -> httpx.Request:
    request: httpx.Request = _new(_Request)
    request.method = method
    request.url = url
    request.headers = headers
    request.extensions = extensions
    request.stream = _ByteStream(body)
    request._content = body
    return request


def _lean_response(
    status: int, headers: httpx.Headers, content: bytes, extensions: dict[str, Any]
) -> httpx.Response:
    response: httpx.Response = _new(_Response)
    response.status_code = status
    response.headers = headers
    response._request = None
    response.next_request = None
    response.extensions = extensions
    response.history = []
    response.is_closed = True
    response.is_stream_consumed = True
    response.default_encoding = "utf-8"
    response.stream = _ByteStream(content)
    response._num_bytes_downloaded = 0  # as httpx leaves it
    response._content = content
    return response


def _vars(obj: object) -> dict[str, Any]:
    """The attributes of ``obj``, its headers and stream by their attributes too."""
    out = dict(vars(obj))
    for name, value in out.items():
        if isinstance(value, httpx.Headers):
            # The encoding is worked out when first needed (httpx's response
            # constructor needs it at once): compare what it comes out as.
            out[name] = (type(value), value._list, value.encoding)
        elif isinstance(value, httpx.ByteStream):
            out[name] = (type(value), vars(value))
    return out


def _layout_matches() -> bool:
    """Do this httpx's constructors leave exactly the attributes the lean builds set?"""
    try:
        pairs = [(b"Host", b"h"), (b"X-Id", b"1"), (b"Content-Length", b"2")]
        triples = [(k, k.lower(), v) for k, v in pairs]
        if vars(_lean_headers(list(triples))) != vars(httpx.Headers(pairs)):
            return False
        url = httpx.URL("http://h/p")
        made = httpx.Request("POST", url, headers=pairs, stream=httpx.ByteStream(b"{}"))
        made.read()
        ours = _lean_request("POST", url, _lean_headers(list(triples)), b"{}", {})
        if _vars(ours) != _vars(made):
            return False
        ext = {"http_version": b"HTTP/1.1"}
        read = httpx.Response(200, headers=pairs, content=b"{}", extensions=ext)
        theirs = _vars(read)
        theirs.pop("_decoder", None)  # made by read(); ours makes it when asked, as httpx can
        lean = _lean_response(200, _lean_headers(list(triples)), b"{}", ext)
        return _vars(lean) == theirs and hasattr(lean, "_get_content_decoder")
    except Exception:  # any surprise: the constructors it is
        return False


#: True when this httpx's objects are built here directly; False: by their constructors.
LEAN = _layout_matches()


def headers_from_triples(triples: list[Triple]) -> httpx.Headers:
    """``httpx.Headers`` holding ``triples`` (taken over, not copied)."""
    if LEAN:
        return _lean_headers(triples)
    return httpx.Headers([(raw, value) for raw, _, value in triples])


def headers_from_pairs(pairs: list[tuple[bytes, bytes]]) -> httpx.Headers:
    """``httpx.Headers(pairs)`` for header names and values that are bytes already."""
    if LEAN:
        return _lean_headers([(k, k.lower(), v) for k, v in pairs])
    return httpx.Headers(pairs)


def header_list(headers: httpx.Headers) -> list[Triple]:
    """The headers as httpx keeps them (not a copy when built here: do not change it)."""
    if LEAN:
        return headers._list
    return [(k, k.lower(), v) for k, v in headers.raw]


def header_value(headers: httpx.Headers, name: bytes) -> bytes | None:
    """Header ``name``'s value (lowercase ``name``; several joined by ``, ``), None if absent.

    What ``headers.get(name)`` says, as bytes, without decoding and comparing
    every header each time (nor raising and catching a KeyError on a miss).
    """
    if LEAN:
        found = [value for _, key, value in headers._list if key == name]
    else:
        found = [v.encode(headers.encoding) for v in headers.get_list(name.decode("ascii"))]
    if not found:
        return None
    return found[0] if len(found) == 1 else b", ".join(found)


def request(
    method: str, url: httpx.URL, headers: httpx.Headers, body: bytes, extensions: dict[str, Any]
) -> httpx.Request:
    """What ``httpx.Request(method, url, headers=headers, stream=ByteStream(body)).read()``
    makes, ``headers`` taken over as they are (no ``Host`` or ``Content-Length`` added)."""
    if LEAN:
        return _lean_request(method, url, headers, body, extensions)
    made = httpx.Request(
        method, url, headers=headers, stream=httpx.ByteStream(body), extensions=extensions
    )
    made.read()
    return made


def read_response(
    status: int, headers: httpx.Headers, content: bytes, extensions: dict[str, Any]
) -> httpx.Response:
    """What ``httpx.Response(status, headers=headers, content=content, extensions=...)`` makes.

    For an answer whose whole body came in: ``content`` as it was on the wire,
    with no content coding, and ``headers`` carrying its ``Content-Length``
    (or the body empty): httpx would add none then.
    """
    if LEAN:
        return _lean_response(status, headers, content, extensions)
    return httpx.Response(status, headers=headers, content=content, extensions=extensions)
