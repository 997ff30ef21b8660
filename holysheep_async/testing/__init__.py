"""The embedded OpenAI-compatible emulator, for tests, the demo and benchmarks.

>>> from holysheep_async.testing import MockServer, answer_text
>>> async with MockServer(ttft=0.05, itl=0.01) as server:  # doctest: +SKIP
...     client = AsyncClient(base_url=server.base_url, api_key="test")

Routes: ``/v1/chat/completions`` (``_chat``), ``/v1/responses`` with
retrieve, cancel, delete, input items and resumable background streams
(``_responses``), ``/v1/files`` and ``/v1/batches`` (``_files``, ``_batches``),
``/v1/models`` and ``/v1/embeddings`` (``_models``). Faults: ``_faults`` (and,
for Responses streams, ``_responses_stream``). Options, ``MockServer(**options)``:
the quotas (``_quota``), the batch lifecycle (``batch_*``, ``_batches``), and for
the Responses API ``responses_api`` (``False`` or 404 / 405 / 501: a relay
without it), ``background_speed`` and ``background_queue`` (``_responses``).

Deterministic answers: :func:`answer_text` (chat), :func:`response_answer_text`
(``/v1/responses``); :func:`reasoning_model` says which model names get
reasoning items.

Needs nothing beyond a plain ``pip install holysheep-async``.

How it is built (bottom to top; a module imports only those below it):

- ``_http``: the HTTP/1.1 server side (``Request``, ``Responder``);
  ``_faults``, ``_schema``, ``_embeddings``: plain data and pure functions.
- ``_state``: the ``Emulator`` protocol, all a handler sees of the server
  (``ttft``, ``itl``, ``tokens``, ``options``, ``state``, ``next_id``), and
  ``route()``, the entry of a route table.
- ``_answers`` (the deterministic answers: text, tokens, usage) and
  ``_store`` (files and batches, on disk): what route families share.
- The Responses API's pure parts, below its route family: ``_responses_input``
  (the request checked), ``_responses_plan`` (the answer and its events),
  ``_responses_store`` (stored responses, background progress, conversations;
  ``_batches`` answers ``/v1/responses`` lines with it), ``_responses_stream``
  (writing events, stream faults).
- One module per route family, none importing another: ``_chat``
  (``/v1/chat/completions``), ``_responses`` (``/v1/responses``), ``_models``
  (``/v1/models``, ``/v1/embeddings``), ``_files``, ``_batches``; and ``_quota``
  (429s by RPM/TPM, a hook of chat's and responses').
- ``_server``: :class:`MockServer`, serving the route table ``ROUTES``.

Adding a route family (``/v1/realtime``, say): a new module with its
handlers, typed ``async def handler(server: Emulator, request, responder,
match)``, ending in ``ROUTES = (route("POST", "/v1/responses", create), ...)``;
then one line in ``_server.ROUTES``: ``*_realtime.ROUTES,``. Nothing
registers itself on import.
"""

from __future__ import annotations

from ._answers import answer_text, answer_tokens, prompt_tokens
from ._faults import FAULT_KINDS, Fault
from ._http import Request
from ._responses_input import reasoning_model, response_answer_text
from ._server import MockServer

__all__ = [
    "FAULT_KINDS",
    "Fault",
    "MockServer",
    "Request",
    "answer_text",
    "answer_tokens",
    "prompt_tokens",
    "reasoning_model",
    "response_answer_text",
]
