"""Creating a batch exactly once: a create whose answer was lost is looked up, not sent again.

A create that got no answer, or a 5xx, may still have made the batch. Before
each new try, the batch is looked for among the server's batches: by its input
file (uploaded for this one batch), by the one-off ``holysheep_create_id`` in its
metadata, or, where the server keeps no metadata, by its creation time.

Also the upload before it (:func:`upload_valid`: only input that validates is
sent). Everything here goes through a :class:`~._api.BatchAPI` (the REST calls);
``client.batches`` and the ``run`` pipeline call these functions.
"""

from __future__ import annotations

import logging
from pathlib import Path

from .. import _otel
from .._options import CallOptions, without_body
from ..errors import APIConnectionError, APIStatusError, BatchValidationError, QuotaExceededError
from ..jsonl import MAX_FILE_BYTES, MAX_REQUESTS, validate_requests
from ..models import Batch, FileObject
from ..resources import base_url
from ._api import BatchAPI

__all__ = [
    "CLOCK_LEEWAY",
    "CREATE_ID_KEY",
    "MAX_METADATA_KEYS",
    "create_once",
    "find_batch",
    "upload_valid",
]

log = logging.getLogger("holysheep_async")

#: Seconds the server's clock may be behind ours when looking for a batch a lost create made.
CLOCK_LEEWAY = 60
#: The metadata key ``create`` tags each batch with, to find it again after a lost answer.
CREATE_ID_KEY = "holysheep_create_id"
#: The API's limit of metadata keys (with as many already, no id is added).
MAX_METADATA_KEYS = 16


async def upload_valid(
    api: BatchAPI,
    path: Path,
    endpoint: str,
    options: CallOptions,
    max_requests: int = MAX_REQUESTS,
    max_bytes: int = MAX_FILE_BYTES,
) -> FileObject:
    """Upload ``path`` once it is known to be valid; else ``BatchValidationError``."""
    report = validate_requests(
        path, endpoint=endpoint, max_requests=max_requests, max_bytes=max_bytes
    )
    if not report.ok:
        raise BatchValidationError(report.problems, source=str(path))
    return await api.upload(path, **without_body(options))


@_otel.batch_op("create", base_url=base_url, first="holysheep.batch.input_file_id")
async def create_once(
    api: BatchAPI,
    input_file_id: str,
    endpoint: str,
    window: str,
    metadata: dict[str, str] | None,
    options: CallOptions,
    *,
    since: int | None = None,
    token: str | None = None,
) -> Batch:
    """Create the batch of ``input_file_id``, never two of them.

    A create that got no answer, or a 5xx, may still have made the batch,
    so it is not simply sent again: before each new try the batch is looked
    for among the server's batches (the file was uploaded for this one
    batch; for a file that may have been used before, ``token`` is the
    ``holysheep_create_id`` sent, and ``since`` the earliest creation time
    that counts where the server kept no metadata).
    """
    policy = api.retry
    attempt = 0
    while True:
        attempt += 1
        try:
            return await api.create(
                input_file_id, endpoint, window, metadata, options, max_retries=0
            )
        except (APIConnectionError, APIStatusError) as exc:
            if isinstance(exc, APIStatusError) and (
                isinstance(exc, QuotaExceededError)
                or not policy.should_retry_status(exc.status_code, exc.headers)
            ):
                raise
            if attempt > policy.max_retries:
                raise
            wait = policy.delay(attempt, exc.headers if isinstance(exc, APIStatusError) else None)
            if wait > policy.max_server_wait:
                raise
            log.info(
                "creating the batch of %s failed (%s): looking for it before trying again",
                input_file_id,
                exc,
            )
            await api.sleep(wait)
            found = await find_batch(api, input_file_id, options, since=since, token=token)
            if found is not None:
                return found


async def find_batch(
    api: BatchAPI,
    input_file_id: str,
    options: CallOptions,
    *,
    since: int | None = None,
    token: str | None = None,
) -> Batch | None:
    """The batch made from ``input_file_id``, among the 500 newest (``None``: not found).

    With ``token``, a batch whose ``holysheep_create_id`` differs is another
    create's; with ``since``, only one created at that Unix time or later counts.

    A server that cannot list batches (a 4xx other than 408/409/429) gets
    ``None`` and a warning: creating the batch again is then the only way
    on, at the risk of a second batch. Other failures raise: the caller
    stops rather than guess (a resumed run looks again).
    """
    seen = 0
    try:
        async for batch in api.list(limit=100, **without_body(options)):
            if since is not None and batch.created_at and batch.created_at < since:
                break  # newest first: the rest are older still
            if batch.input_file_id == input_file_id:
                sent = (batch.metadata or {}).get(CREATE_ID_KEY)
                if token is None or sent is None or sent == token:
                    return batch
            seen += 1
            if seen >= 500:
                break
    except APIStatusError as exc:
        if api.retry.should_retry_status(exc.status_code, exc.headers):
            raise
        # Some servers cannot list batches: creating one is the only way on.
        log.warning(
            "cannot list batches to look for one made from %s (%s): creating it; if an"
            " earlier create did reach the server, there are two batches of this file",
            input_file_id,
            exc,
        )
    return None
