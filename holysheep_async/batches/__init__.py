"""``client.batches``: the OpenAI Batch API (``/files`` + ``/batches``) and the ``run`` pipeline."""

from __future__ import annotations

from ._create import CLOCK_LEEWAY as CLOCK_LEEWAY
from ._create import CREATE_ID_KEY as CREATE_ID_KEY
from ._create import MAX_METADATA_KEYS as MAX_METADATA_KEYS
from ._input import Requests as Requests
from ._resource import (
    Batches,
    BatchReport,
    RunProgress,
    adaptive_poll_interval,
    split_requests,
)
from ._run import ProgressCallback as ProgressCallback
from ._run import RetryMode as RetryMode

__all__ = ["BatchReport", "Batches", "RunProgress", "adaptive_poll_interval", "split_requests"]
