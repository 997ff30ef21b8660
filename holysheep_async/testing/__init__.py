"""The embedded OpenAI-compatible emulator, for tests, the demo and benchmarks.

>>> from holysheep_async.testing import MockServer, answer_text
>>> async with MockServer(ttft=0.05, itl=0.01) as server:  # doctest: +SKIP
...     client = AsyncClient(base_url=server.base_url, api_key="test")

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
