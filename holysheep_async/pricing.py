"""What requests cost: a price table, per-request and monthly estimates, a running tally.

>>> from holysheep_async.pricing import cost, monthly
>>> cost("gpt-4o", 1_000, 500)
0.0075
>>> cost("gpt-4o", 1_000, 500, batch=True)
0.00375
>>> m = monthly("gpt-4o", daily_requests=5_000, input_tokens=1_000, output_tokens=500)
>>> m.standard_usd, m.batch_usd, m.savings
(1125.0, 562.5, 562.5)

The built-in prices are the providers' **list prices as of** :data:`PRICES_AS_OF`
(USD per million tokens); the Batch API costs :data:`BATCH_DISCOUNT` less.
Prices change, and a relay may charge its own: override or extend the table
with a JSON file, either per call (``load_prices(path)``, then pass
``prices=``) or for the whole process with ``HOLYSHEEP_PRICES=path/to/prices.json``
(the value may also be the JSON text itself)::

    {
      "as_of": "2026-02-01",
      "batch_discount": 0.5,
      "models": {
        "gpt-4o": {"input": 2.5, "output": 10.0, "cached_input": 1.25},
        "my-finetune": {"input": 3.0, "output": 12.0, "batch_discount": 0.0}
      },
      "aliases": {"my-alias": "gpt-4o"}
    }

Model names are normalised before the lookup: case and spaces, a provider
prefix (``openai/gpt-4o``), a dated snapshot (``gpt-4o-2024-08-06``,
``claude-sonnet-4-5-20250929``) and ``-latest`` map to the table's name. An
exact entry always wins (``gpt-4o-2024-05-13`` had its own, higher price).
"""

from __future__ import annotations

import difflib
import json
import logging
import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType

from .errors import HolySheepError
from .models import Usage

__all__ = [
    "BATCH_DISCOUNT",
    "PRICES_AS_OF",
    "PRICES_ENV",
    "ModelPrice",
    "MonthlyEstimate",
    "PriceTable",
    "PricingError",
    "UnknownModelError",
    "UsageLine",
    "UsageTally",
    "cost",
    "default_prices",
    "load_prices",
    "monthly",
    "normalize_model",
]

log = logging.getLogger("holysheep_async")

#: The date the built-in list prices were taken from the providers' pricing pages.
PRICES_AS_OF = "2025-11-01"
#: The Batch API's discount on both input and output tokens (OpenAI, Anthropic, Google: 50%).
BATCH_DISCOUNT = 0.5
#: Environment variable naming a JSON price file (or holding the JSON) that extends the table.
PRICES_ENV = "HOLYSHEEP_PRICES"

_PER = 1_000_000


class PricingError(HolySheepError, ValueError):
    """A price file or a pricing argument is wrong (the message names the field)."""


class UnknownModelError(PricingError, LookupError):
    """No price for this model. ``.model`` is the name asked for, ``.suggestions`` close names."""

    def __init__(self, model: str, suggestions: list[str]) -> None:
        hint = f" (did you mean {', '.join(repr(s) for s in suggestions)}?)" if suggestions else ""
        super().__init__(
            f"No price for model {model!r}{hint}. Add it with a price file:"
            f" {PRICES_ENV}=prices.json (see holysheep_async.pricing)"
        )
        self.model = model
        self.suggestions = suggestions


@dataclass(frozen=True)
class ModelPrice:
    """USD per million tokens. ``batch_discount`` ``None`` means the table's default."""

    input: float
    output: float
    cached_input: float | None = None
    batch_discount: float | None = None


# List prices (USD / 1M tokens) as of PRICES_AS_OF, standard tier, short context.
_BUILTIN: dict[str, ModelPrice] = {
    # OpenAI
    "gpt-4o": ModelPrice(2.50, 10.00, cached_input=1.25),
    "gpt-4o-2024-05-13": ModelPrice(5.00, 15.00),
    "gpt-4o-mini": ModelPrice(0.15, 0.60, cached_input=0.075),
    "gpt-4.1": ModelPrice(2.00, 8.00, cached_input=0.50),
    "gpt-4.1-mini": ModelPrice(0.40, 1.60, cached_input=0.10),
    "gpt-4.1-nano": ModelPrice(0.10, 0.40, cached_input=0.025),
    "gpt-5": ModelPrice(1.25, 10.00, cached_input=0.125),
    "gpt-5-mini": ModelPrice(0.25, 2.00, cached_input=0.025),
    "o4-mini": ModelPrice(1.10, 4.40, cached_input=0.275),
    # Anthropic
    "claude-sonnet-4.5": ModelPrice(3.00, 15.00, cached_input=0.30),
    "claude-haiku-4.5": ModelPrice(1.00, 5.00, cached_input=0.10),
    "claude-opus-4.1": ModelPrice(15.00, 75.00, cached_input=1.50),
    # Google (prompts up to 200k tokens)
    "gemini-2.5-pro": ModelPrice(1.25, 10.00, cached_input=0.31),
    "gemini-2.5-flash": ModelPrice(0.30, 2.50, cached_input=0.075),
    "gemini-2.5-flash-lite": ModelPrice(0.10, 0.40, cached_input=0.025),
    # DeepSeek (input on a cache miss; a hit is cached_input)
    "deepseek-v3.2": ModelPrice(0.28, 0.42, cached_input=0.028),
    # OpenAI embeddings: input tokens only
    "text-embedding-3-small": ModelPrice(0.02, 0.0),
    "text-embedding-3-large": ModelPrice(0.13, 0.0),
    "text-embedding-ada-002": ModelPrice(0.10, 0.0),
}

_BUILTIN_ALIASES: dict[str, str] = {
    "chatgpt-4o-latest": "gpt-4o",
    "claude-sonnet-4-5": "claude-sonnet-4.5",
    "claude-4.5-sonnet": "claude-sonnet-4.5",
    "claude-haiku-4-5": "claude-haiku-4.5",
    "claude-opus-4-1": "claude-opus-4.1",
    # DeepSeek's API serves V3.2 under these names.
    "deepseek-chat": "deepseek-v3.2",
    "deepseek-v3.2-exp": "deepseek-v3.2",
}

_PREFIX = re.compile(r"^[a-z0-9_.-]+/")
_SNAPSHOT = re.compile(r"(-\d{4}-\d{2}-\d{2}|-\d{8}|-\d{4}|-\d{2}-\d{2}|@\d{8}|-latest)$")


def normalize_model(model: str) -> str:
    """The lookup form of a name: lower case, no provider prefix (``openai/gpt-4o``)."""
    name = model.strip().lower()
    return _PREFIX.sub("", name)


def _candidates(model: str) -> Iterator[str]:
    name = normalize_model(model)
    yield name
    stripped = name
    # A snapshot suffix, possibly behind "-preview": strip one at a time.
    while True:
        shorter = _SNAPSHOT.sub("", stripped)
        if shorter == stripped:
            break
        stripped = shorter
        yield stripped
    if stripped.endswith("-preview"):
        yield stripped[: -len("-preview")]


def _tokens(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise PricingError(f"{name} must be an int >= 0, got {value!r}")
    return value


def _rate(name: str, value: object, *, upper: float | None = None) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
        raise PricingError(f"{name} must be a number >= 0, got {value!r}")
    if upper is not None and value > upper:
        raise PricingError(f"{name} must be <= {upper}, got {value!r}")
    return float(value)


@dataclass(frozen=True)
class PriceTable:
    """Prices by model name, the date they were taken, and the batch discount.

    >>> table = default_prices().extended({"my-model": ModelPrice(1.0, 2.0)})
    >>> table.cost("my-model", 1_000_000, 0)
    1.0
    """

    models: Mapping[str, ModelPrice]
    as_of: str = PRICES_AS_OF
    batch_discount: float = BATCH_DISCOUNT
    aliases: Mapping[str, str] = field(default_factory=dict)
    #: Where the prices came from ("built-in", a file path, the environment).
    source: str = "built-in"
    # Resolved names: the tally prices every answer, so a lookup must stay cheap.
    _resolved: dict[str, str] = field(default_factory=dict, init=False, repr=False, compare=False)
    # Names found unknown, with their suggestions: the fuzzy match costs ~100 us, and
    # a relay's model that is not in the table comes back with every answer.
    _unknown: dict[str, list[str]] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    def resolve(self, model: str) -> str:
        """The table's name for ``model``; raises :class:`UnknownModelError`."""
        known = self._resolved.get(model) if isinstance(model, str) else None
        if known is not None:
            return known
        if not isinstance(model, str) or not model.strip():
            raise PricingError(f"model must be a non-empty string, got {model!r}")
        unknown = self._unknown.get(model)
        if unknown is not None:
            raise UnknownModelError(model, list(unknown))
        keys = {k.lower(): k for k in self.models}
        aliases = {k.lower(): v for k, v in self.aliases.items()}
        for name in _candidates(model):
            found = keys.get(name)
            if found is None and aliases.get(name) in self.models:
                found = aliases[name]
            if found is not None:
                if len(self._resolved) < 10_000:  # bounded: names come from servers
                    self._resolved[model] = found
                return found
        names = [*keys, *aliases]
        close = difflib.get_close_matches(normalize_model(model), names, n=3, cutoff=0.6)
        suggestions = list(dict.fromkeys(keys.get(c) or aliases[c] for c in close))
        if len(self._unknown) < 10_000:  # bounded: names come from servers
            self._unknown[model] = suggestions
        raise UnknownModelError(model, suggestions)

    def price(self, model: str) -> ModelPrice:
        return self.models[self.resolve(model)]

    def __contains__(self, model: object) -> bool:
        if not isinstance(model, str):
            return False
        try:
            self.resolve(model)
        except PricingError:
            return False
        return True

    def discount(self, model: str) -> float:
        price = self.price(model)
        return self.batch_discount if price.batch_discount is None else price.batch_discount

    def cost(
        self,
        model: str,
        input_tokens: int | Usage,
        output_tokens: int | None = None,
        *,
        batch: bool = False,
        cached_tokens: int = 0,
    ) -> float:
        """USD for one request (see :func:`cost`)."""
        if isinstance(input_tokens, Usage):
            if output_tokens is not None:
                raise PricingError("pass either a Usage or input_tokens and output_tokens")
            usage = input_tokens
            input_tokens = usage.prompt_tokens
            output_tokens = usage.completion_tokens
            details = usage.prompt_tokens_details
            if details is not None and details.cached_tokens:
                cached_tokens = details.cached_tokens
        if output_tokens is None:
            raise PricingError("output_tokens is required with an input token count")
        n_in = _tokens("input_tokens", input_tokens)
        n_out = _tokens("output_tokens", output_tokens)
        n_cached = min(_tokens("cached_tokens", cached_tokens), n_in)
        price = self.price(model)
        cached_rate = price.input if price.cached_input is None else price.cached_input
        usd = (
            (n_in - n_cached) * price.input + n_cached * cached_rate + n_out * price.output
        ) / _PER
        if batch:
            usd *= 1.0 - self.discount(model)
        return usd

    def monthly(
        self,
        model: str,
        daily_requests: int,
        input_tokens: int,
        output_tokens: int,
        days: int = 30,
    ) -> MonthlyEstimate:
        """The month's cost, standard and batch (see :func:`monthly`)."""
        _tokens("daily_requests", daily_requests)
        _tokens("days", days)
        name = self.resolve(model)
        requests = daily_requests * days
        standard = self.cost(name, input_tokens * requests, output_tokens * requests)
        batch = self.cost(name, input_tokens * requests, output_tokens * requests, batch=True)
        return MonthlyEstimate(
            model=name,
            daily_requests=daily_requests,
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            days=days,
            standard_usd=standard,
            batch_usd=batch,
            as_of=self.as_of,
        )

    def extended(
        self,
        models: Mapping[str, ModelPrice],
        *,
        aliases: Mapping[str, str] | None = None,
        as_of: str | None = None,
        batch_discount: float | None = None,
        source: str | None = None,
    ) -> PriceTable:
        """A new table: these prices added to (or replacing) the current ones."""
        merged = dict(self.models)
        lower = {k.lower(): k for k in merged}
        for name, price in models.items():
            merged.pop(lower.get(name.lower(), name), None)
            merged[name] = price
        return replace(
            self,
            models=MappingProxyType(merged),
            aliases=MappingProxyType({**self.aliases, **(aliases or {})}),
            as_of=as_of or self.as_of,
            batch_discount=self.batch_discount if batch_discount is None else batch_discount,
            source=source or self.source,
        )


@dataclass(frozen=True)
class MonthlyEstimate:
    """A month of the same request, priced standard and batch. ``savings`` = standard - batch.

    ``in_currency(rate, "EUR")`` converts with a rate you give (1 USD = ``rate`` EUR).
    """

    model: str
    daily_requests: int
    input_tokens: int
    output_tokens: int
    days: int
    standard_usd: float
    batch_usd: float
    as_of: str = PRICES_AS_OF

    @property
    def savings(self) -> float:
        return self.standard_usd - self.batch_usd

    @property
    def requests(self) -> int:
        return self.daily_requests * self.days

    def in_currency(self, rate: float, currency: str = "USD") -> tuple[float, float, float]:
        """(standard, batch, savings) converted at ``rate`` units of ``currency`` per USD."""
        r = _rate("rate", rate)
        if r == 0:
            raise PricingError("rate must be > 0")
        return self.standard_usd * r, self.batch_usd * r, self.savings * r


def _parse_price(where: str, name: str, raw: object) -> ModelPrice:
    if not isinstance(raw, Mapping):
        raise PricingError(
            f'{where}: models.{name} must be an object like {{"input": 2.5, "output": 10}}'
        )
    unknown = set(raw) - {"input", "output", "cached_input", "batch_discount"}
    if unknown:
        raise PricingError(f"{where}: models.{name}: unknown field(s) {sorted(unknown)}")
    for required in ("input", "output"):
        if required not in raw:
            raise PricingError(f"{where}: models.{name}.{required} is missing (USD per 1M tokens)")
    cached = raw.get("cached_input")
    discount = raw.get("batch_discount")
    return ModelPrice(
        input=_rate(f"{where}: models.{name}.input", raw["input"]),
        output=_rate(f"{where}: models.{name}.output", raw["output"]),
        cached_input=None
        if cached is None
        else _rate(f"{where}: models.{name}.cached_input", cached),
        batch_discount=None
        if discount is None
        else _rate(f"{where}: models.{name}.batch_discount", discount, upper=1.0),
    )


def _parse_table(where: str, data: object, base: PriceTable) -> PriceTable:
    if not isinstance(data, Mapping):
        raise PricingError(f"{where}: the price file must hold a JSON object")
    if "models" in data:
        models_raw = data["models"]
        extra = set(data) - {"models", "as_of", "batch_discount", "aliases", "currency", "note"}
        if extra:
            raise PricingError(f"{where}: unknown top-level field(s) {sorted(extra)}")
        if data.get("currency", "USD") != "USD":
            raise PricingError(f"{where}: prices must be in USD, got currency {data['currency']!r}")
    else:
        models_raw = data  # a bare {model: price} mapping
    if not isinstance(models_raw, Mapping):
        raise PricingError(f"{where}: 'models' must be an object of model -> prices")
    models = {str(name): _parse_price(where, str(name), raw) for name, raw in models_raw.items()}
    aliases = data.get("aliases", {}) if "models" in data else {}
    if not isinstance(aliases, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in aliases.items()
    ):
        raise PricingError(f"{where}: 'aliases' must map names to model names")
    as_of = data.get("as_of") if "models" in data else None
    if as_of is not None and not isinstance(as_of, str):
        raise PricingError(f"{where}: 'as_of' must be a date string, got {as_of!r}")
    discount = data.get("batch_discount") if "models" in data else None
    table = base.extended(
        models,
        aliases=aliases,
        as_of=as_of,
        batch_discount=None
        if discount is None
        else _rate(f"{where}: batch_discount", discount, upper=1.0),
        source=where,
    )
    for alias, target in aliases.items():
        if target not in table.models:
            raise PricingError(f"{where}: alias {alias!r} points to unknown model {target!r}")
    return table


def load_prices(source: str | os.PathLike[str], *, base: PriceTable | None = None) -> PriceTable:
    """The built-in table (or ``base``) extended by a JSON price file."""
    path = Path(source)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise PricingError(f"cannot read price file {str(path)!r}: {exc.strerror or exc}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise PricingError(
            f"{path}: not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})"
        ) from None
    return _parse_table(str(path), data, base or _builtin_table())


_BUILTIN_TABLE = PriceTable(
    models=MappingProxyType(dict(_BUILTIN)), aliases=MappingProxyType(dict(_BUILTIN_ALIASES))
)


def _builtin_table() -> PriceTable:
    # Tables are never changed in place (``extended`` copies), so one instance is shared.
    return _BUILTIN_TABLE


_env_cache: tuple[tuple[str, float], PriceTable] | None = None


def default_prices() -> PriceTable:
    """The built-in table, extended by ``HOLYSHEEP_PRICES`` when it is set.

    Read again whenever the variable or the file's modification time changes.
    """
    global _env_cache
    value = os.environ.get(PRICES_ENV, "").strip()
    if not value:
        return _builtin_table()
    if value.startswith("{"):
        key = (value, 0.0)
    else:
        try:
            key = (value, os.stat(value).st_mtime)
        except OSError as exc:
            raise PricingError(
                f"{PRICES_ENV}={value!r}: cannot read the price file: {exc.strerror or exc}"
            ) from None
    if _env_cache is not None and _env_cache[0] == key:
        return _env_cache[1]
    if value.startswith("{"):
        try:
            data = json.loads(value)
        except json.JSONDecodeError as exc:
            raise PricingError(f"{PRICES_ENV}: not valid JSON ({exc.msg})") from None
        table = _parse_table(PRICES_ENV, data, _builtin_table())
    else:
        table = load_prices(value)
    _env_cache = (key, table)
    return table


def cost(
    model: str,
    input_tokens: int | Usage,
    output_tokens: int | None = None,
    *,
    batch: bool = False,
    cached_tokens: int = 0,
    prices: PriceTable | None = None,
) -> float:
    """USD for one request: ``cost("gpt-4o", 1000, 500)`` or ``cost("gpt-4o", usage)``.

    ``batch=True`` applies the batch discount. With a :class:`Usage`, cached
    prompt tokens (``prompt_tokens_details.cached_tokens``) are charged at the
    model's cached-input price. Raises :class:`UnknownModelError` for a model
    the table does not know.
    """
    table = prices or default_prices()
    return table.cost(model, input_tokens, output_tokens, batch=batch, cached_tokens=cached_tokens)


def monthly(
    model: str,
    daily_requests: int,
    input_tokens: int,
    output_tokens: int,
    days: int = 30,
    *,
    prices: PriceTable | None = None,
) -> MonthlyEstimate:
    """A month of ``daily_requests`` requests of this size, standard against batch.

    >>> m = monthly("gpt-4o", 5_000, 1_000, 500)
    >>> f"${m.standard_usd:,.2f} standard, ${m.batch_usd:,.2f} batch"
    '$1,125.00 standard, $562.50 batch'
    """
    table = prices or default_prices()
    return table.monthly(model, daily_requests, input_tokens, output_tokens, days)


# -- the client's running tally ------------------------------------------------------


@dataclass
class UsageLine:
    """One model's usage, standard or batch. ``cost_usd`` is ``None`` for a model with no price."""

    model: str
    batch: bool
    requests: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float | None = 0.0

    @property
    def priced(self) -> bool:
        return self.cost_usd is not None


class UsageTally:
    """Requests, tokens and cost per model, standard and batch, as answers arrive.

    ``client.usage`` is one; the client reports every answer that carries
    usage. A model without a price is still counted (tokens, requests); its
    ``cost_usd`` is ``None`` and it is listed in :attr:`unpriced`.

    >>> client.usage.cost_usd, client.usage.output_tokens  # doctest: +SKIP
    (0.0123, 840)
    >>> print(client.usage.summary())  # doctest: +SKIP
    """

    def __init__(self, prices: PriceTable | None = None) -> None:
        #: The table to price with; ``None``: :func:`default_prices` at each answer.
        self.prices = prices
        self._lines: dict[tuple[str, bool], UsageLine] = {}
        self._warned: set[str] = set()

    def record(self, model: str, usage: Usage, batch: bool = False) -> None:
        """Count one answer (the signature of ``Requester.usage_hooks``). Never raises."""
        line = self._lines.get((model, batch))
        if line is None:
            line = self._lines[(model, batch)] = UsageLine(model, batch)
        line.requests += 1
        line.input_tokens += usage.prompt_tokens
        line.output_tokens += usage.completion_tokens
        if line.cost_usd is None:
            return  # unpriced once, unpriced for good: no price lookup per answer
        try:
            usd = cost(model, usage, batch=batch, prices=self.prices)
        except PricingError as exc:
            line.cost_usd = None
            if model not in self._warned:
                self._warned.add(model)
                log.info("usage tally: %s; its tokens are counted, its cost is not", exc)
            return
        if line.cost_usd is not None:
            line.cost_usd += usd

    __call__ = record

    def reset(self) -> None:
        self._lines.clear()

    @property
    def lines(self) -> list[UsageLine]:
        """Every (model, standard|batch) line, in the order first seen."""
        return list(self._lines.values())

    def by_model(self) -> dict[str, UsageLine]:
        """Standard and batch added up per model (``batch`` is True if any of it was batch)."""
        out: dict[str, UsageLine] = {}
        for line in self._lines.values():
            merged = out.get(line.model)
            if merged is None:
                out[line.model] = replace(line)
                continue
            merged.batch = merged.batch or line.batch
            merged.requests += line.requests
            merged.input_tokens += line.input_tokens
            merged.output_tokens += line.output_tokens
            if merged.cost_usd is None or line.cost_usd is None:
                merged.cost_usd = None
            else:
                merged.cost_usd += line.cost_usd
        return out

    @property
    def requests(self) -> int:
        return sum(line.requests for line in self._lines.values())

    @property
    def input_tokens(self) -> int:
        return sum(line.input_tokens for line in self._lines.values())

    @property
    def output_tokens(self) -> int:
        return sum(line.output_tokens for line in self._lines.values())

    @property
    def cost_usd(self) -> float:
        """The cost of every priced answer (see :attr:`unpriced` for the rest)."""
        return sum(line.cost_usd or 0.0 for line in self._lines.values())

    @property
    def unpriced(self) -> list[str]:
        """Models whose tokens were counted but could not be priced."""
        return sorted({line.model for line in self._lines.values() if line.cost_usd is None})

    def summary(self) -> str:
        """A small text table of the tally."""
        rows = [
            f"{'model':<28} {'mode':<8} {'requests':>8} {'input':>10} {'output':>10} {'cost':>12}"
        ]
        for line in self._lines.values():
            usd = "no price" if line.cost_usd is None else f"${line.cost_usd:,.4f}"
            rows.append(
                f"{line.model:<28} {'batch' if line.batch else 'standard':<8} {line.requests:>8,}"
                f" {line.input_tokens:>10,} {line.output_tokens:>10,} {usd:>12}"
            )
        rows.append(
            f"{'total':<28} {'':<8} {self.requests:>8,} {self.input_tokens:>10,}"
            f" {self.output_tokens:>10,} {'$' + format(self.cost_usd, ',.4f'):>12}"
        )
        if self.unpriced:
            rows.append(
                f"no price for {', '.join(self.unpriced)}: tokens counted, cost not"
                f" (add prices with {PRICES_ENV}=prices.json)"
            )
        return "\n".join(rows)

    def __repr__(self) -> str:
        return (
            f"<UsageTally requests={self.requests} input_tokens={self.input_tokens}"
            f" output_tokens={self.output_tokens} cost_usd={self.cost_usd:.6f}"
            + (f" unpriced={self.unpriced}" if self.unpriced else "")
            + ">"
        )
