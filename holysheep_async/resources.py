"""``client.models``, ``client.embeddings``, ``client.files``: the smaller endpoints.

Each method takes the per-call options of every request method
(``extra_headers``, ``extra_query``, ``extra_body``, ``timeout``; see
:mod:`._options`) and returns a typed object that keeps the request id
(``.request_id``) and the ``x-ratelimit-*`` headers (``.rate_limits``).
"""

from __future__ import annotations

import builtins
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Literal, TypeVar, overload

import httpx
from pydantic import ValidationError

from ._options import call_timeout, check_extras
from .errors import APIConnectionError, invalid_response
from .jsonl import atomic_write
from .models import (
    EmbeddingsResponse,
    FileDeleted,
    FileObject,
    Model,
    _FromResponse,
    attach_response,
)
from .types import Headers, Query, Timeout

if TYPE_CHECKING:
    from ._requester import Reply, Requester

__all__ = ["Embeddings", "Files", "Models"]

R = TypeVar("R", bound=_FromResponse)

FilePurpose = Literal["assistants", "batch", "fine-tune", "vision", "user_data", "evals"]
#: What ``files.create`` uploads: a path, bytes, ``(filename, bytes)`` or an open binary file.
FileInput = str | os.PathLike[str] | bytes | tuple[str, bytes] | IO[bytes]


def _check_id(name: str, value: object) -> str:
    if not isinstance(value, str) or not value or "/" in value or value.strip() != value:
        raise ValueError(f"{name} must be a non-empty id without '/' or spaces, got {value!r:.60}")
    return value


class _Resource:
    def __init__(self, requester: Requester) -> None:
        self._requester = requester


    async def _request(
        self,
        method: str,
        path: str,
        *,
        json: dict[str, Any] | None = None,
        extra_headers: Headers | None,
        extra_query: Query | None,
        extra_body: Mapping[str, object] | None,
        timeout: Timeout,
        params: dict[str, Any] | None = None,
        stream: bool = False,
        tokens: int = 0,
        **kwargs: Any,
    ) -> Reply:
        check_extras(extra_headers, extra_query, extra_body)
        if extra_body:
            if json is None and "data" not in kwargs:
                raise TypeError(f"{method} {path} sends no body: extra_body has nowhere to go")
            if json is not None:
                json = {**json, **extra_body}
            else:
                kwargs["data"] = {**kwargs["data"], **extra_body}
        query = {**(params or {}), **(extra_query or {})} or None
        return await self._requester.request(
            method,
            path,
            json=json,
            params=query,
            headers=extra_headers,
            timeout=call_timeout(timeout),
            stream=stream,
            tokens=tokens,
            **kwargs,
        )

    @staticmethod
    def _parse(response: httpx.Response, model: type[R], expected: str) -> R:
        try:
            obj = model.model_validate_json(response.content)
        except ValidationError:
            raise invalid_response(response, expected) from None
        attach_response(obj, response)
        return obj

    @staticmethod
    def _page(response: httpx.Response, expected: str) -> dict[str, Any]:
        try:
            page = response.json()
            if isinstance(page, dict) and isinstance(page.get("data"), list):
                return page
        except ValueError:
            pass
        raise invalid_response(response, expected)


def base_url(resource: _Resource) -> str:
    """Where ``resource``'s requests go (for the spans of ``_otel.batch_op``)."""
    return resource._requester.base_url


class Models(_Resource):
    """``client.models``: which models the server offers."""

    async def list(
        self,
        *,
        extra_headers: Headers | None = None,
        extra_query: Query | None = None,
        extra_body: Mapping[str, object] | None = None,
        timeout: Timeout = None,
    ) -> builtins.list[Model]:
        """Every model the server lists (``GET /models``).

        >>> [m.id for m in await client.models.list()]  # doctest: +SKIP
        """
        reply = await self._request(
            "GET",
            "/models",
            extra_headers=extra_headers,
            extra_query=extra_query,
            extra_body=extra_body,
            timeout=timeout,
        )
        page = self._page(reply.response, "a list of models")
        try:
            models = [Model.model_validate(item) for item in page["data"]]
        except ValidationError:
            raise invalid_response(reply.response, "a list of model objects") from None
        for model in models:
            attach_response(model, reply.response)
        return models

    async def retrieve(
        self,
        model: str,
        *,
        extra_headers: Headers | None = None,
        extra_query: Query | None = None,
        extra_body: Mapping[str, object] | None = None,
        timeout: Timeout = None,
    ) -> Model:
        """One model by name (``GET /models/{model}``); :class:`NotFoundError` if unknown."""
        if not isinstance(model, str) or not model:
            raise ValueError(f"model must be a non-empty string, got {model!r}")
        reply = await self._request(
            "GET",
            f"/models/{model}",
            extra_headers=extra_headers,
            extra_query=extra_query,
            extra_body=extra_body,
            timeout=timeout,
        )
        return self._parse(reply.response, Model, "a model object")


class Embeddings(_Resource):
    """``client.embeddings``: vectors for texts, with usage and cost."""

    async def create(
        self,
        *,
        model: str,
        input: str | Sequence[str] | Sequence[int] | Sequence[Sequence[int]],
        encoding_format: Literal["float", "base64"] | None = None,
        dimensions: int | None = None,
        user: str | None = None,
        extra_headers: Headers | None = None,
        extra_query: Query | None = None,
        extra_body: Mapping[str, object] | None = None,
        timeout: Timeout = None,
    ) -> EmbeddingsResponse:
        """Embed ``input`` (a text, texts, or token ids).

        >>> result = await client.embeddings.create(  # doctest: +SKIP
        ...     model="text-embedding-3-small", input=["a sheep", "a flock"])
        >>> len(result.vectors), result.usage.prompt_tokens  # doctest: +SKIP

        ``encoding_format="base64"`` is smaller on the wire; ``.vectors`` (and
        each ``Embedding.vector()``) decode either form to floats.
        """
        if not isinstance(model, str) or not model:
            raise TypeError(f"model must be a non-empty string, got {model!r}")
        if isinstance(input, (bytes, bytearray)) or not isinstance(input, (str, Sequence)):
            raise TypeError(f"input must be a string or a list, got {type(input).__name__}")
        if not input:
            raise ValueError("input is empty: give a text or a list of texts")
        body: dict[str, Any] = {
            "model": model,
            "input": input if isinstance(input, str) else builtins.list(input),
        }
        if encoding_format is not None:
            if encoding_format not in ("float", "base64"):
                raise ValueError(
                    f"encoding_format must be 'float' or 'base64', got {encoding_format!r}"
                )
            body["encoding_format"] = encoding_format
        if dimensions is not None:
            body["dimensions"] = dimensions
        if user is not None:
            body["user"] = user
        tokens = 0
        if self._requester.limiter.tpm:
            texts = [input] if isinstance(input, str) else input
            tokens = sum(len(t) // 4 + 1 if isinstance(t, str) else 1 for t in texts)
        reply = await self._request(
            "POST",
            "/embeddings",
            json=body,
            tokens=tokens,
            extra_headers=extra_headers,
            extra_query=extra_query,
            extra_body=extra_body,
            timeout=timeout,
        )
        result = self._parse(reply.response, EmbeddingsResponse, "an embeddings list")
        if result.usage is not None:
            reply.permit.reconcile(result.usage.total_tokens)
            self._requester.record_usage(result.model or model, result.usage)
        return result


class Files(_Resource):
    """``client.files``: upload, look up, list, delete files, and download their content."""

    async def create(
        self,
        file: FileInput,
        *,
        purpose: FilePurpose,
        extra_headers: Headers | None = None,
        extra_query: Query | None = None,
        extra_body: Mapping[str, object] | None = None,
        timeout: Timeout = None,
    ) -> FileObject:
        """Upload ``file`` (a path, bytes, ``(filename, bytes)`` or an open binary file)."""
        if not isinstance(purpose, str) or not purpose:
            raise ValueError(f"purpose must be a non-empty string, got {purpose!r}")
        if isinstance(file, (str, os.PathLike)):
            path = Path(file)
            # httpx streams a multipart body from a sync file object (and rewinds it to retry).
            with path.open("rb") as fh:  # noqa: ASYNC230
                return await self._upload(
                    (path.name, fh), purpose, extra_headers, extra_query, extra_body, timeout
                )
        if isinstance(file, bytes):
            upload: tuple[str, Any] = ("upload", file)
        elif isinstance(file, tuple):
            upload = file
        elif hasattr(file, "read"):
            upload = (Path(str(getattr(file, "name", "upload"))).name, file)
        else:
            raise TypeError(
                f"file must be a path, bytes, (filename, bytes) or a binary file, got {file!r:.60}"
            )
        return await self._upload(upload, purpose, extra_headers, extra_query, extra_body, timeout)

    async def _upload(
        self,
        upload: tuple[str, Any],
        purpose: str,
        extra_headers: Headers | None,
        extra_query: Query | None,
        extra_body: Mapping[str, object] | None,
        timeout: Timeout,
    ) -> FileObject:
        reply = await self._request(
            "POST",
            "/files",
            files={"file": (upload[0], upload[1], "application/octet-stream")},
            data={"purpose": purpose},
            extra_headers=extra_headers,
            extra_query=extra_query,
            extra_body=extra_body,
            timeout=timeout,
        )
        return self._parse(reply.response, FileObject, "a file object")

    async def retrieve(
        self,
        file_id: str,
        *,
        extra_headers: Headers | None = None,
        extra_query: Query | None = None,
        extra_body: Mapping[str, object] | None = None,
        timeout: Timeout = None,
    ) -> FileObject:
        """A file's description (``GET /files/{file_id}``)."""
        reply = await self._request(
            "GET",
            f"/files/{_check_id('file_id', file_id)}",
            extra_headers=extra_headers,
            extra_query=extra_query,
            extra_body=extra_body,
            timeout=timeout,
        )
        return self._parse(reply.response, FileObject, "a file object")

    async def list(
        self,
        *,
        purpose: str | None = None,
        limit: int | None = None,
        extra_headers: Headers | None = None,
        extra_query: Query | None = None,
        extra_body: Mapping[str, object] | None = None,
        timeout: Timeout = None,
    ) -> builtins.list[FileObject]:
        """Files, newest first, following the pages (``limit``: at most this many)."""
        out: builtins.list[FileObject] = []
        after: str | None = None
        while limit is None or len(out) < limit:
            params: dict[str, Any] = {}
            if purpose is not None:
                params["purpose"] = purpose
            if limit is not None:
                params["limit"] = limit - len(out)
            if after is not None:
                params["after"] = after
            reply = await self._request(
                "GET",
                "/files",
                params=params,
                extra_headers=extra_headers,
                extra_query=extra_query,
                extra_body=extra_body,
                timeout=timeout,
            )
            page = self._page(reply.response, "a list of files")
            try:
                files = [FileObject.model_validate(item) for item in page["data"]]
            except ValidationError:
                raise invalid_response(reply.response, "a list of file objects") from None
            for f in files:
                attach_response(f, reply.response)
            out.extend(files)
            if not page.get("has_more") or not files:
                break
            after = files[-1].id
        return out

    async def delete(
        self,
        file_id: str,
        *,
        extra_headers: Headers | None = None,
        extra_query: Query | None = None,
        extra_body: Mapping[str, object] | None = None,
        timeout: Timeout = None,
    ) -> FileDeleted:
        """Delete a file (``DELETE /files/{file_id}``)."""
        reply = await self._request(
            "DELETE",
            f"/files/{_check_id('file_id', file_id)}",
            extra_headers=extra_headers,
            extra_query=extra_query,
            extra_body=extra_body,
            timeout=timeout,
        )
        return self._parse(reply.response, FileDeleted, "a file deletion object")

    @overload
    async def content(
        self,
        file_id: str,
        path: None = None,
        *,
        extra_headers: Headers | None = None,
        extra_query: Query | None = None,
        extra_body: Mapping[str, object] | None = None,
        timeout: Timeout = None,
    ) -> bytes: ...

    @overload
    async def content(
        self,
        file_id: str,
        path: str | os.PathLike[str],
        *,
        extra_headers: Headers | None = None,
        extra_query: Query | None = None,
        extra_body: Mapping[str, object] | None = None,
        timeout: Timeout = None,
    ) -> Path: ...

    async def content(
        self,
        file_id: str,
        path: str | os.PathLike[str] | None = None,
        *,
        extra_headers: Headers | None = None,
        extra_query: Query | None = None,
        extra_body: Mapping[str, object] | None = None,
        timeout: Timeout = None,
    ) -> bytes | Path:
        """A file's content: ``content(id)`` returns the bytes (as the official SDK does);
        ``content(id, path)`` streams them to ``path`` (memory stays flat) and returns it.

        To a path, it is written through a temporary file and renamed at the end:
        a broken download leaves no half file behind. A large file (a batch's
        output) is better streamed to a path than read into memory.
        """
        target = None if path is None else Path(path)
        reply = await self._request(
            "GET",
            f"/files/{_check_id('file_id', file_id)}/content",
            stream=True,
            extra_headers=extra_headers,
            extra_query=extra_query,
            extra_body=extra_body,
            timeout=timeout,
        )
        try:
            if target is None:
                try:
                    return await reply.response.aread()
                except httpx.HTTPError as exc:
                    raise _broken(file_id, exc) from exc
            with atomic_write(target, "wb") as fh:
                try:
                    async for piece in reply.response.aiter_bytes():
                        fh.write(piece)
                except httpx.HTTPError as exc:
                    raise _broken(file_id, exc) from exc
        finally:
            await reply.aclose()
        return target


def _broken(file_id: str, exc: httpx.HTTPError) -> APIConnectionError:
    return APIConnectionError(f"file {file_id}: the download broke ({type(exc).__name__})")
