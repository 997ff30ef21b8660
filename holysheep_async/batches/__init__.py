"""``client.batches``: the OpenAI Batch API (``/files`` + ``/batches``) and the ``run`` pipeline.

>>> report = await client.batches.run(tasks, journal="run.journal")  # doctest: +SKIP
>>> len(report.succeeded), len(report.failed), len(report.missing), report.cost_usd

``run`` validates, splits at the API's limits, uploads, creates, polls,
downloads and accounts; with a journal it resumes after a crash instead of
submitting again; it retries expired and failed requests; and where the
server has no Batch API it answers every request with direct calls instead.

Every method takes the per-call options (``extra_headers``, ``extra_query``,
``extra_body``, and ``timeout`` -- ``request_timeout`` on ``wait`` and ``run``,
whose ``timeout`` is how long to wait for the batch). A method that makes
several requests applies ``extra_headers``, ``extra_query`` and the timeout to
every one of them, and ``extra_body`` to the JSON body it sends: the batch
create body. A method that sends no body raises ``TypeError`` for ``extra_body``.

Inside, from the top down (a module imports only modules below it, never the
class above it): ``_resource`` (``Batches``, this surface); ``_run`` (the ``run``
pipeline: rounds, polling, direct calls, the journal's steps); ``_create``
(upload, create exactly once), ``_download`` (result files), ``_report``
(accounting), ``_input`` (requests into work files), ``_journal``; at the bottom
``_api`` (the REST calls, one request each), ``_index`` (the on-disk index),
``_progress`` (``RunProgress``, poll pacing) and ``_cost``.
"""

from __future__ import annotations

from ._create import CLOCK_LEEWAY as CLOCK_LEEWAY
from ._create import CREATE_ID_KEY as CREATE_ID_KEY
from ._create import MAX_METADATA_KEYS as MAX_METADATA_KEYS
from ._input import Requests as Requests
from ._input import split_requests
from ._progress import ProgressCallback as ProgressCallback
from ._progress import RunProgress, adaptive_poll_interval
from ._report import BatchReport
from ._resource import Batches
from ._run import RetryMode as RetryMode

# In the order the API reference shows them.
__all__ = ["BatchReport", "RunProgress", "Batches", "adaptive_poll_interval", "split_requests"]
