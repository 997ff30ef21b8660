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
"""

from __future__ import annotations

from . import _batches, _chat, _files, _models, _responses  # noqa: F401  (register the routes)
from ._chat import answer_text, answer_tokens, prompt_tokens
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
