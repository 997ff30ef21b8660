"""``holysheep advise``: stream, batch, or a mix, from the daily volume and who is waiting.

Requests someone waits for on screen must stream (the Batch API answers
within its 24 h window, not in seconds); everything else can go through the
Batch API at its discount. The advice is the cheapest plan that keeps every
waiting user served, unless the saving is too small to be worth running a
second pipeline.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from typing import Any

from ..errors import HolySheepError
from ..pricing import PriceTable
from ._common import add_price_options, count, money_formatter, price_table


def share(text: str) -> float:
    """An argparse type: ``20%`` or ``0.2``."""
    raw = text.strip()
    try:
        value = float(raw[:-1]) / 100 if raw.endswith("%") else float(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a share: {text!r} (say 20% or 0.2)") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"a share is between 0% and 100%, got {text!r}")
    return value


@dataclass(frozen=True)
class Plan:
    name: str
    description: str
    monthly_usd: float
    feasible: bool


@dataclass(frozen=True)
class Advice:
    model: str
    daily_requests: int
    interactive_per_day: int
    plans: list[Plan]
    recommended: Plan
    reason: str


def advise(
    table: PriceTable,
    model: str,
    daily_requests: int,
    interactive: float,
    input_tokens: int,
    output_tokens: int,
    days: int = 30,
    min_savings: float = 10.0,
) -> Advice:
    """The plans and the one to pick. ``interactive``: the share (0-1) someone waits for."""
    live = round(daily_requests * interactive)
    offline = daily_requests - live
    per_request = table.monthly(model, 1, input_tokens, output_tokens, days)
    stream_all = per_request.standard_usd * daily_requests
    batch_all = per_request.batch_usd * daily_requests
    mixed = per_request.standard_usd * live + per_request.batch_usd * offline
    plans = [
        Plan("stream", "stream everything", stream_all, True),
        Plan("batch", "batch everything", batch_all, live == 0),
        Plan(
            "mix",
            f"stream {live:,}/day live, batch {offline:,}/day",
            mixed,
            0 < live < daily_requests,
        ),
    ]
    by_name = {p.name: p for p in plans}
    saved = stream_all - (batch_all if live == 0 else mixed)
    if live == daily_requests:
        pick = by_name["stream"]
        reason = (
            "Every request has someone waiting, so stream them all: low time to first token"
            " matters more than the batch discount."
        )
    elif saved < min_savings:
        pick = by_name["stream"]
        reason = (
            f"Batching would save only ${saved:,.2f} a month (under ${min_savings:,.2f}):"
            " not worth a second pipeline. Stream everything."
        )
    elif live == 0:
        pick = by_name["batch"]
        reason = (
            "Nobody waits for these answers: send them all through the Batch API (results"
            " within 24 h) at the discount."
        )
    else:
        pick = by_name["mix"]
        reason = (
            f"Stream the {live:,} requests a day someone waits for (time to first token"
            f" matters there) and send the other {offline:,} through the Batch API (results"
            " within 24 h)."
        )
    return Advice(table.resolve(model), daily_requests, live, plans, pick, reason)


def add_parser(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "advise",
        help="stream, batch or a mix? what each costs a month",
        description="Recommend streaming, the Batch API or a mix from your daily volume and"
        " the share of requests someone waits for, with what each plan costs a month.",
    )
    p.add_argument("--requests", type=count, required=True, help="requests a day")
    p.add_argument(
        "--interactive",
        type=share,
        required=True,
        metavar="SHARE",
        help="share of requests someone waits for on screen: 20%% or 0.2",
    )
    p.add_argument("--model", "-m", default="gpt-4o")
    p.add_argument("--input-tokens", type=count, default=1_000)
    p.add_argument("--output-tokens", type=count, default=500)
    p.add_argument("--days", type=count, default=30)
    p.add_argument(
        "--min-savings",
        type=float,
        default=10.0,
        metavar="USD",
        help="below this saving a month, advise streaming everything (default 10)",
    )
    add_price_options(p)
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    try:
        table = price_table(args)
        fmt = money_formatter(args)
        advice = advise(
            table,
            args.model,
            args.requests,
            args.interactive,
            args.input_tokens,
            args.output_tokens,
            args.days,
            args.min_savings,
        )
    except HolySheepError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if args.json:
        out = {
            "model": advice.model,
            "daily_requests": advice.daily_requests,
            "interactive_per_day": advice.interactive_per_day,
            "recommended": advice.recommended.name,
            "reason": advice.reason,
            "plans": [
                {"plan": p.name, "monthly_usd": round(p.monthly_usd, 6), "feasible": p.feasible}
                for p in advice.plans
            ],
        }
        print(json.dumps(out, indent=2))
        return 0
    offline = advice.daily_requests - advice.interactive_per_day
    print(
        f"{advice.daily_requests:,} requests a day: {advice.interactive_per_day:,} with someone"
        f" waiting, {offline:,} that can wait"
    )
    print(
        f"{advice.model}, {args.input_tokens:,} input + {args.output_tokens:,} output tokens"
        f" each, {args.days} days, list prices as of {table.as_of}"
    )
    print()
    width = max(len(p.description) for p in advice.plans)
    for p in advice.plans:
        if p.name == "mix" and not p.feasible:
            continue
        note = ""
        if p is advice.recommended:
            note = "  <- recommended"
        elif not p.feasible:
            note = f"  (not an option: {advice.interactive_per_day:,}/day need an answer now)"
        print(f"  {p.description:<{width}}  {fmt(p.monthly_usd):>14} a month{note}")
    print()
    saved = advice.plans[0].monthly_usd - advice.recommended.monthly_usd
    tail = f" You save {fmt(saved)} a month against streaming everything." if saved > 0 else ""
    print(f"Advice: {advice.recommended.description}. {advice.reason}{tail}")
    return 0
