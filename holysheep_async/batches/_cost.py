"""Cost of batch results, through ``holysheep_async.pricing`` when it is there.

A placeholder bridge: the pricing module is written in parallel. Until it is
merged, or for a model its table does not know, the cost is ``None``
(unknown) rather than a guess.
"""

from __future__ import annotations

import importlib
import logging
from typing import Any

from ..models import Usage

__all__ = ["usage_cost"]

log = logging.getLogger("holysheep_async")


def _pricing_cost() -> Any:
    try:
        module = importlib.import_module("..pricing", __package__)
    except ImportError:
        return None
    return getattr(module, "cost", None)


def usage_cost(model: str | None, usage: Usage, *, batch: bool) -> float | None:
    """USD for one answer's ``usage``; ``None`` when there are no prices for ``model``."""
    cost = _pricing_cost()
    if cost is None or not model:
        return None
    try:
        return float(cost(model, usage.prompt_tokens, usage.completion_tokens, batch=batch))
    except (LookupError, ValueError) as exc:
        log.debug("no price for %s: %s", model, exc)
        return None
