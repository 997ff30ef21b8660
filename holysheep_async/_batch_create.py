"""Creating a batch exactly once: a create whose answer was lost is looked up, not sent again.

A create that got no answer, or a 5xx, may still have made the batch. Before
each new try, the batch is looked for among the server's batches: by its input
file (uploaded for this one batch), by the one-off ``holysheep_create_id`` in its
metadata, or, where the server keeps no metadata, by its creation time.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from . import _otel
from ._options import CallOptions, without_body
from .errors import APIConnectionError, APIStatusError, QuotaExceededError
from .models import Batch

if TYPE_CHECKING:
    from .batches import Batches

__all__ = ["CLOCK_LEEWAY", "CREATE_ID_KEY", "MAX_METADATA_KEYS", "create_once", "find_batch"]

log = logging.getLogger("holysheep_async")

#: Seconds the server's clock may be behind ours when looking for a batch a lost create made.
CLOCK_LEEWAY = 60
#: The metadata key ``create`` tags each batch with, to find it again after a lost answer.
CREATE_ID_KEY = "holysheep_create_id"
#: The API's limit of metadata keys (with as many already, no id is added).
MAX_METADATA_KEYS = 16


def _base_url(batches: Batches) -> str:
    return batches._requester.base_url  # where the span says the request goes


async def _create(
    batches: Batches,
    input_file_id: str,
    endpoint: str,
    completion_window: str,
    metadata: dict[str, str] | None,
    options: CallOptions,
    max_retries: int | None = None,
) -> Batch:
    body: dict[str, Any] = {
        "input_file_id": input_file_id,
        "endpoint": endpoint,
        "completion_window": completion_window,
    }
    if metadata:
        body["metadata"] = metadata
    reply = await batches._request(
        "POST",
        "/batches",
        json=body,
        max_retries=max_retries,
        resend=max_retries != 0,
        **options,
    )
    return batches._parse(reply.response, Batch, "a batch object")


@_otel.batch_op("create", base_url=_base_url, first="holysheep.batch.input_file_id")
async def create_once(
    batches: Batches,
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
    policy = batches._requester.retry
    attempt = 0
    while True:
        attempt += 1
        try:
            return await _create(
                batches, input_file_id, endpoint, window, metadata, options, max_retries=0
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
            await batches._requester.sleep(wait)
            found = await find_batch(batches, input_file_id, options, since=since, token=token)
            if found is not None:
                return found


async def find_batch(
    batches: Batches,
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
        async for batch in batches.list(limit=100, **without_body(options)):
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
        if batches._requester.retry.should_retry_status(exc.status_code, exc.headers):
            raise
        # Some servers cannot list batches: creating one is the only way on.
        log.warning(
            "cannot list batches to look for one made from %s (%s): creating it; if an"
            " earlier create did reach the server, there are two batches of this file",
            input_file_id,
            exc,
        )
    return None
