"""The REST calls of the Batch API, one request each (a listing: one per page), answers parsed.

``POST /files`` (upload), ``POST /batches`` (create, once: the exactly-once
logic is :mod:`._create`'s), ``GET /batches/{id}`` (retrieve),
``POST /batches/{id}/cancel``, ``GET /batches`` (list, paged) and
``GET /files/{id}/content`` (streamed; reading it is :mod:`._download`'s).

:class:`BatchAPI` is the bottom of the ``batches`` package: the modules above
it (the create, the downloads, the ``run`` pipeline, the ``client.batches``
surface) take one and call its public methods; it names none of them. It also
hands on the requester's retry policy and sleep, which the steps above pace
themselves by (a test's fake sleep included).
"""

from __future__ import annotations

import os
import re
from collections.abc import AsyncGenerator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import httpx
from pydantic import BaseModel, ValidationError

from .. import _otel
from .._options import CallOptions
from ..errors import invalid_response
from ..models import Batch, FileObject, _FromResponse, attach_response
from ..resources import _Resource, base_url
from ..types import Headers, Query, Timeout

if TYPE_CHECKING:
    from .._requester import Reply
    from ..retry import RetryPolicy

__all__ = ["BatchAPI", "check_id"]

M = TypeVar("M", bound=BaseModel)

_ID = re.compile(r"^[A-Za-z0-9_\-.:]+$")


def check_id(batch_id: str) -> str:
    """``batch_id`` as given, if it can be a batch id (it goes into a URL path)."""
    if not isinstance(batch_id, str) or not _ID.match(batch_id):
        raise ValueError(f"not a batch id: {batch_id!r}")
    return batch_id


class BatchAPI(_Resource):
    """One request per call to ``/files`` and ``/batches``, each with the per-call options."""

    @property
    def retry(self) -> RetryPolicy:
        """The client's retry policy (the create retries by it, looking before each try)."""
        return self._requester.retry

    async def sleep(self, seconds: float) -> None:
        """The client's sleep (a test may replace it with a fake one)."""
        await self._requester.sleep(seconds)

    @_otel.batch_op("upload", base_url=base_url)
    async def upload(
        self,
        path: str | os.PathLike[str],
        *,
        extra_headers: Headers | None = None,
        extra_query: Query | None = None,
        extra_body: Mapping[str, object] | None = None,
        timeout: Timeout = None,
    ) -> FileObject:
        """``POST /files``: the JSONL file at ``path`` with ``purpose=batch`` (multipart)."""
        path = Path(path)
        # httpx streams a multipart body from a sync file object (and rewinds it to retry).
        with path.open("rb") as fh:  # noqa: ASYNC230
            reply = await self._request(
                "POST",
                "/files",
                files={"file": (path.name, fh, "application/jsonl")},
                data={"purpose": "batch"},
                extra_headers=extra_headers,
                extra_query=extra_query,
                extra_body=extra_body,
                timeout=timeout,
            )
        return self._parse(reply.response, FileObject, "a file object")

    async def create(
        self,
        input_file_id: str,
        endpoint: str,
        completion_window: str,
        metadata: dict[str, str] | None,
        options: CallOptions,
        *,
        max_retries: int | None = None,
    ) -> Batch:
        """``POST /batches``, retried by the requester only when ``max_retries`` allows it."""
        body: dict[str, Any] = {
            "input_file_id": input_file_id,
            "endpoint": endpoint,
            "completion_window": completion_window,
        }
        if metadata:
            body["metadata"] = metadata
        reply = await self._request(
            "POST",
            "/batches",
            json=body,
            max_retries=max_retries,
            resend=max_retries != 0,
            **options,
        )
        return self._parse(reply.response, Batch, "a batch object")

    @_otel.batch_op("retrieve", base_url=base_url, first="holysheep.batch.id")
    async def retrieve(
        self,
        batch_id: str,
        *,
        extra_headers: Headers | None = None,
        extra_query: Query | None = None,
        extra_body: Mapping[str, object] | None = None,
        timeout: Timeout = None,
    ) -> Batch:
        """``GET /batches/{batch_id}``."""
        reply = await self._request(
            "GET",
            f"/batches/{check_id(batch_id)}",
            extra_headers=extra_headers,
            extra_query=extra_query,
            extra_body=extra_body,
            timeout=timeout,
        )
        return self._parse(reply.response, Batch, "a batch object")

    async def cancel(
        self,
        batch_id: str,
        *,
        extra_headers: Headers | None = None,
        extra_query: Query | None = None,
        extra_body: Mapping[str, object] | None = None,
        timeout: Timeout = None,
    ) -> Batch:
        """``POST /batches/{batch_id}/cancel`` (no body)."""
        reply = await self._request(
            "POST",
            f"/batches/{check_id(batch_id)}/cancel",
            extra_headers=extra_headers,
            extra_query=extra_query,
            extra_body=extra_body,
            timeout=timeout,
        )
        return self._parse(reply.response, Batch, "a batch object")

    async def as_batch(self, batch: Batch | str, options: CallOptions) -> Batch:
        """A Batch as given, or retrieved by its id; anything else is a clear TypeError."""
        if isinstance(batch, Batch):
            return batch
        if isinstance(batch, str) and batch:
            return await self.retrieve(batch, **options)
        raise TypeError(f"expected a Batch or a batch id, got {type(batch).__name__}")

    async def content(self, file_id: str, options: CallOptions) -> Reply:
        """``GET /files/{file_id}/content``, streamed: the caller reads it and closes the reply."""
        return await self._request("GET", f"/files/{file_id}/content", stream=True, **options)

    async def list(
        self,
        *,
        limit: int = 20,
        after: str | None = None,
        extra_headers: Headers | None = None,
        extra_query: Query | None = None,
        extra_body: Mapping[str, object] | None = None,
        timeout: Timeout = None,
    ) -> AsyncGenerator[Batch, None]:
        """``GET /batches``, newest first, page after page (``limit`` a page)."""
        while True:
            params: dict[str, Any] = {"limit": limit}
            if after:
                params["after"] = after
            reply = await self._request(
                "GET",
                "/batches",
                params=params,
                extra_headers=extra_headers,
                extra_query=extra_query,
                extra_body=extra_body,
                timeout=timeout,
            )
            try:
                page = reply.response.json()
                data = page["data"]
                batches = [Batch.model_validate(item) for item in data]
            except (ValueError, KeyError, TypeError, ValidationError):
                raise invalid_response(reply.response, "a list of batch objects") from None
            for batch in batches:
                yield batch
            if not batches or not page.get("has_more"):
                return
            after = page.get("last_id") or batches[-1].id

    @staticmethod
    def _parse(response: httpx.Response, model: type[M], expected: str) -> M:
        try:
            obj = model.model_validate_json(response.content)
        except ValidationError:
            raise invalid_response(response, expected) from None
        if isinstance(obj, _FromResponse):
            attach_response(obj, response)  # .request_id, .rate_limits
        return obj
