"""PLACEHOLDER until the stream core lands."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic

import httpx

from ..models import ModelT

if TYPE_CHECKING:
    from .._requester import Requester


@dataclass
class StreamSetup:
    requester: Requester
    body: dict[str, Any] | None
    response_id: str | None
    starting_after: int | None
    tokens: int
    idle_timeout: float | None
    headers: Mapping[str, str] | None
    query: Mapping[str, Any] | None
    timeout: httpx.Timeout | None
    fallback: Callable[[], str | None]
    on_no_api: Callable[[str], None]
    count: Callable[..., None]


class ResponseStream:
    def __init__(self, setup: StreamSetup) -> None:
        self._setup = setup


class ParsedResponseStream(ResponseStream, Generic[ModelT]):
    _model_class_: type[ModelT]
