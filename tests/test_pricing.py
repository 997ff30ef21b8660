"""Pricing: the table, per-request and monthly cost, overrides, and the client's tally."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import pytest

from holysheep_async import AsyncClient, Usage
from holysheep_async.models import PromptTokensDetails
from holysheep_async.pricing import (
    BATCH_DISCOUNT,
    PRICES_AS_OF,
    ModelPrice,
    PricingError,
    UnknownModelError,
    UsageTally,
    cost,
    default_prices,
    load_prices,
    monthly,
)
from holysheep_async.testing import MockServer, prompt_tokens

# -- the table -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "output_price"),
    [
        ("gpt-4o", 10.00),
        ("gpt-4.1", 8.00),
        ("claude-sonnet-4.5", 15.00),
        ("gemini-2.5-flash", 2.50),
        ("deepseek-v3.2", 0.42),
    ],
)
def test_required_output_prices(model: str, output_price: float) -> None:
    assert default_prices().price(model).output == output_price
    assert cost(model, 0, 1_000_000) == pytest.approx(output_price)


def test_table_has_a_date_and_the_batch_discount() -> None:
    table = default_prices()
    assert table.as_of == PRICES_AS_OF
    assert PRICES_AS_OF[:2] == "20" and len(PRICES_AS_OF) == 10
    assert table.batch_discount == BATCH_DISCOUNT == 0.5
    assert table.price("gpt-4o").input == 2.50


def test_cost_of_one_request() -> None:
    assert cost("gpt-4o", 1_000, 500) == pytest.approx(0.0075)
    assert cost("gpt-4o", 1_000, 500, batch=True) == pytest.approx(0.00375)
    assert cost("gpt-4o", 0, 0) == 0.0


def test_cost_accepts_a_usage_and_prices_cached_tokens() -> None:
    usage = Usage(prompt_tokens=1_000, completion_tokens=500, total_tokens=1_500)
    assert cost("gpt-4o", usage) == cost("gpt-4o", 1_000, 500)
    cached = Usage(
        prompt_tokens=1_000,
        completion_tokens=0,
        total_tokens=1_000,
        prompt_tokens_details=PromptTokensDetails(cached_tokens=400),
    )
    # 600 at $2.50 + 400 at the cached $1.25
    assert cost("gpt-4o", cached) == pytest.approx((600 * 2.5 + 400 * 1.25) / 1e6)
    with pytest.raises(PricingError, match="either a Usage"):
        cost("gpt-4o", usage, 5)


@pytest.mark.parametrize(
    ("args", "field"),
    [
        ((-1, 5), "input_tokens"),
        ((1, -5), "output_tokens"),
        ((1.5, 5), "input_tokens"),
        ((True, 5), "input_tokens"),
        ((1, None), "output_tokens"),
    ],
)
def test_bad_token_counts_name_the_field(args: tuple[object, object], field: str) -> None:
    with pytest.raises(PricingError, match=field):
        cost("gpt-4o", *args)  # type: ignore[arg-type]


def test_monthly_reproduces_the_reference_example() -> None:
    m = monthly("gpt-4o", daily_requests=5_000, input_tokens=1_000, output_tokens=500, days=30)
    assert f"${m.standard_usd:,.2f}" == "$1,125.00"
    assert f"${m.batch_usd:,.2f}" == "$562.50"
    assert m.savings == pytest.approx(562.50)
    assert m.requests == 150_000
    assert m.model == "gpt-4o"


def test_monthly_days_default_and_validation() -> None:
    assert monthly("gpt-4o", 100, 10, 10).days == 30
    assert monthly("gpt-4o", 100, 10, 10, days=1).standard_usd == pytest.approx(
        100 * cost("gpt-4o", 10, 10)
    )
    with pytest.raises(PricingError, match="daily_requests"):
        monthly("gpt-4o", -1, 10, 10)


def test_currency_conversion_uses_the_given_rate() -> None:
    m = monthly("gpt-4o", 5_000, 1_000, 500)
    standard, batch, savings = m.in_currency(0.9, "EUR")
    assert (standard, batch, savings) == pytest.approx((1012.5, 506.25, 506.25))
    with pytest.raises(PricingError, match="rate"):
        m.in_currency(0)


# -- names ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("asked", "resolved"),
    [
        ("gpt-4o-2024-08-06", "gpt-4o"),
        ("GPT-4o", "gpt-4o"),
        ("openai/gpt-4o", "gpt-4o"),
        ("gpt-4.1-2025-04-14", "gpt-4.1"),
        ("claude-sonnet-4-5-20250929", "claude-sonnet-4.5"),
        ("claude-sonnet-4-5", "claude-sonnet-4.5"),
        ("gemini-2.5-flash-preview-05-20", "gemini-2.5-flash"),
        ("deepseek-chat", "deepseek-v3.2"),
        ("gpt-4o-mini", "gpt-4o-mini"),  # never mistaken for gpt-4o
        ("gpt-4o-2024-05-13", "gpt-4o-2024-05-13"),  # an exact entry wins (older price)
    ],
)
def test_names_are_normalised(asked: str, resolved: str) -> None:
    assert default_prices().resolve(asked) == resolved


def test_an_unknown_model_is_named_with_suggestions() -> None:
    with pytest.raises(UnknownModelError) as info:
        cost("claude-sonet-4.5", 1, 1)
    assert "'claude-sonet-4.5'" in str(info.value)
    assert info.value.model == "claude-sonet-4.5"
    assert "claude-sonnet-4.5" in info.value.suggestions
    assert "HOLYSHEEP_PRICES" in str(info.value)
    with pytest.raises(UnknownModelError, match="'totally-new'"):
        monthly("totally-new", 1, 1, 1)
    assert isinstance(info.value, LookupError)


# -- overrides -----------------------------------------------------------------------


def write(path: Path, data: object) -> Path:
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def test_a_price_file_overrides_and_extends(tmp_path: Path) -> None:
    path = write(
        tmp_path / "prices.json",
        {
            "as_of": "2026-02-01",
            "models": {
                "gpt-4o": {"input": 2.0, "output": 8.0},
                "my-finetune": {"input": 3.0, "output": 12.0, "batch_discount": 0.0},
            },
            "aliases": {"ft": "my-finetune"},
        },
    )
    table = load_prices(path)
    assert table.as_of == "2026-02-01"
    assert table.source == str(path)
    assert table.cost("gpt-4o", 0, 1_000_000) == pytest.approx(8.0)
    assert table.cost("ft", 1_000_000, 0, batch=True) == pytest.approx(3.0)  # no discount
    assert table.cost("claude-sonnet-4.5", 0, 1_000_000) == pytest.approx(15.0)  # kept
    assert cost("gpt-4o", 0, 1_000_000, prices=table) == pytest.approx(8.0)


def test_the_environment_variable_extends_the_default_table(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(tmp_path / "p.json", {"models": {"house-model": {"input": 1, "output": 2}}})
    monkeypatch.setenv("HOLYSHEEP_PRICES", str(path))
    assert cost("house-model", 1_000_000, 1_000_000) == pytest.approx(3.0)
    # a changed file is read again
    write(path, {"models": {"house-model": {"input": 1, "output": 4}}})
    os.utime(path, (1, 1))
    assert cost("house-model", 0, 1_000_000) == pytest.approx(4.0)
    monkeypatch.setenv("HOLYSHEEP_PRICES", '{"inline-model": {"input": 5, "output": 5}}')
    assert cost("inline-model", 1_000_000, 0) == pytest.approx(5.0)
    monkeypatch.delenv("HOLYSHEEP_PRICES")
    with pytest.raises(UnknownModelError):
        cost("inline-model", 1, 1)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ([1, 2], "JSON object"),
        ({"models": {"m": {"input": 1}}}, r"models\.m\.output is missing"),
        ({"models": {"m": {"input": -1, "output": 1}}}, r"models\.m\.input must be a number"),
        ({"models": {"m": {"input": 1, "output": "x"}}}, r"models\.m\.output"),
        ({"models": {"m": {"input": 1, "output": 1, "outptu": 2}}}, "unknown field"),
        ({"models": {}, "batch_discount": 2}, "batch_discount must be <= 1"),
        ({"models": {}, "currency": "EUR"}, "USD"),
        ({"models": {}, "aliases": {"a": "nope"}}, "unknown model 'nope'"),
        ({"models": {}, "modles": {}}, "unknown top-level"),
    ],
)
def test_bad_price_files_are_explained(tmp_path: Path, data: object, message: str) -> None:
    path = write(tmp_path / "bad.json", data)
    with pytest.raises(PricingError, match=message) as info:
        load_prices(path)
    assert "bad.json" in str(info.value)


def test_unreadable_or_invalid_price_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(PricingError, match="cannot read"):
        load_prices(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text('{"models": {\n  "m": }', encoding="utf-8")
    with pytest.raises(PricingError, match="line 2"):
        load_prices(bad)
    monkeypatch.setenv("HOLYSHEEP_PRICES", str(tmp_path / "missing.json"))
    with pytest.raises(PricingError, match="HOLYSHEEP_PRICES"):
        cost("gpt-4o", 1, 1)


def test_extended_replaces_case_insensitively() -> None:
    table = default_prices().extended({"GPT-4o": ModelPrice(1.0, 1.0)})
    assert table.cost("gpt-4o", 1_000_000, 0) == pytest.approx(1.0)
    assert "gpt-4o" in table and "nope" not in table


# -- the tally -----------------------------------------------------------------------


def usage(p: int, c: int) -> Usage:
    return Usage(prompt_tokens=p, completion_tokens=c, total_tokens=p + c)


def test_tally_counts_per_model_and_mode() -> None:
    tally = UsageTally()
    tally.record("gpt-4o", usage(1_000, 500))
    tally.record("gpt-4o-2024-08-06", usage(1_000, 500))
    tally.record("gpt-4o", usage(1_000, 500), True)
    assert tally.requests == 3
    assert tally.input_tokens == 3_000 and tally.output_tokens == 1_500
    assert tally.cost_usd == pytest.approx(0.0075 * 2 + 0.00375)
    lines = {(line.model, line.batch): line for line in tally.lines}
    assert lines[("gpt-4o", True)].cost_usd == pytest.approx(0.00375)
    assert lines[("gpt-4o", False)].requests == 1
    merged = tally.by_model()["gpt-4o"]
    assert merged.requests == 2 and merged.cost_usd == pytest.approx(0.01125)
    assert "gpt-4o" in tally.summary() and "batch" in tally.summary()
    tally.reset()
    assert tally.requests == 0


def test_tally_counts_unknown_models_without_crashing(caplog: pytest.LogCaptureFixture) -> None:
    tally = UsageTally()
    with caplog.at_level(logging.INFO, logger="holysheep_async"):
        tally.record("house-model", usage(10, 20))
        tally.record("house-model", usage(10, 20))
    assert tally.requests == 2 and tally.output_tokens == 40
    assert tally.unpriced == ["house-model"]
    assert tally.by_model()["house-model"].cost_usd is None
    assert not tally.lines[0].priced
    assert tally.cost_usd == 0.0
    assert "no price" in tally.summary()
    assert "unpriced" in repr(tally)
    # warned once, not per answer
    assert sum("house-model" in r.getMessage() for r in caplog.records) == 1


@pytest.mark.anyio
async def test_client_usage_is_fed_by_create_and_stream(
    client: AsyncClient, server: MockServer
) -> None:
    messages = [{"role": "user", "content": "What does a sheep cost?"}]
    await client.chat.create(model="gpt-4o", messages=messages, max_tokens=7)
    async with client.chat.stream(model="gpt-4o", messages=messages, max_tokens=5) as stream:
        async for _ in stream:
            pass
    await client.chat.create(model="house-model", messages=messages, max_tokens=3)
    tally = client.usage
    assert tally.requests == 3
    assert tally.output_tokens == 7 + 5 + 3
    assert tally.input_tokens == 3 * prompt_tokens(messages)
    gpt = tally.by_model()["gpt-4o"]
    assert gpt.cost_usd == pytest.approx(cost("gpt-4o", 2 * prompt_tokens(messages), 12))
    assert tally.unpriced == ["house-model"]


@pytest.mark.anyio
async def test_client_usage_records_batch_answers(client: AsyncClient) -> None:
    client._requester.record_usage("gpt-4o", usage(1_000, 500), batch=True)
    client._requester.record_usage("gpt-4o", None, batch=True)  # no usage: nothing counted
    assert client.usage.requests == 1
    assert client.usage.lines[0].batch
    assert client.usage.cost_usd == pytest.approx(0.00375)
