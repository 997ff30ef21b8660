"""The embedded OpenAI-compatible emulator, for tests, the demo and benchmarks.

>>> from holysheep_async.testing import MockServer, answer_text
>>> async with MockServer(ttft=0.05, itl=0.01) as server:  # doctest: +SKIP
...     client = AsyncClient(base_url=server.base_url, api_key="test")

Needs nothing beyond a plain ``pip install holysheep-async``.

How it is built (bottom to top; a module imports only those below it):

- ``_http``: the HTTP/1.1 server side (``Request``, ``Responder``);
  ``_faults``, ``_schema``, ``_embeddings``: plain data and pure functions.
- ``_state``: the ``Emulator`` protocol, all a handler sees of the server
  (``ttft``, ``itl``, ``tokens``, ``options``, ``state``, ``next_id``), and
  ``route()``, the entry of a route table.
- ``_answers`` (the deterministic answers: text, tokens, usage) and
  ``_store`` (files and batches, on disk): what route families share.
- One module per route family, none importing another: ``_chat``
  (``/v1/chat/completions``), ``_models`` (``/v1/models``, ``/v1/embeddings``),
  ``_files``, ``_batches``; and ``_quota`` (429s by RPM/TPM, a hook of chat's).
- ``_server``: :class:`MockServer`, serving the route table ``ROUTES``.

Adding a route family (``/v1/responses``, say): a new module with its
handlers, typed ``async def handler(server: Emulator, request, responder,
match)``, ending in ``ROUTES = (route("POST", "/v1/responses", create), ...)``;
then one line in ``_server.ROUTES``: ``*_responses.ROUTES,``. Nothing
registers itself on import.
"""

from __future__ import annotations

from ._answers import answer_text, answer_tokens, prompt_tokens
from ._faults import FAULT_KINDS, Fault
from ._http import Request
from ._server import MockServer

__all__ = [
    "FAULT_KINDS",
    "Fault",
    "MockServer",
    "Request",
    "answer_text",
    "answer_tokens",
    "prompt_tokens",
]
