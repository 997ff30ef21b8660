"""``holysheep cost``: a month of requests, standard against batch, per model."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from ..errors import HolySheepError
from ..pricing import MonthlyEstimate, PriceTable
from ._common import add_price_options, count, money_formatter, price_table


def add_parser(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "cost",
        help="monthly cost, standard against batch (every model, or the ones named)",
        description="Monthly cost of a steady load, at list prices: standard (streaming or"
        " direct calls) against the Batch API's discount.",
    )
    p.add_argument(
        "--model",
        "-m",
        action="append",
        dest="models",
        metavar="MODEL",
        help="price this model (repeat for several; default: every model in the table)",
    )
    p.add_argument("--requests", type=count, default=5_000, help="requests a day (default 5000)")
    p.add_argument(
        "--input-tokens", type=count, default=1_000, help="input tokens a request (default 1000)"
    )
    p.add_argument(
        "--output-tokens", type=count, default=500, help="output tokens a request (default 500)"
    )
    p.add_argument("--days", type=count, default=30, help="days in the month (default 30)")
    add_price_options(p)
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=main)


def estimates(args: argparse.Namespace, table: PriceTable) -> list[MonthlyEstimate]:
    models = args.models or sorted(table.models)
    return [
        table.monthly(m, args.requests, args.input_tokens, args.output_tokens, args.days)
        for m in models
    ]


def main(args: argparse.Namespace) -> int:
    try:
        table = price_table(args)
        fmt = money_formatter(args)
        rows = estimates(args, table)
    except HolySheepError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if args.json:
        rate = args.rate if args.currency.upper() != "USD" else 1.0
        out = {
            "as_of": table.as_of,
            "source": table.source,
            "batch_discount": table.batch_discount,
            "currency": args.currency.upper(),
            "rate": rate,
            "estimates": [
                {
                    "model": m.model,
                    "daily_requests": m.daily_requests,
                    "input_tokens": m.input_tokens,
                    "output_tokens": m.output_tokens,
                    "days": m.days,
                    "standard_usd": round(m.standard_usd, 6),
                    "batch_usd": round(m.batch_usd, 6),
                    "savings_usd": round(m.savings, 6),
                }
                for m in rows
            ],
        }
        print(json.dumps(out, indent=2))
        return 0
    print(
        f"Monthly cost of {args.requests:,} requests a day for {args.days} days,"
        f" {args.input_tokens:,} input + {args.output_tokens:,} output tokens each"
    )
    print(
        f"List prices as of {table.as_of} ({table.source}); batch ="
        f" {table.batch_discount:.0%} off unless the model says otherwise"
    )
    print()
    width = max(len("model"), *(len(m.model) for m in rows))
    cells = [(m.model, fmt(m.standard_usd), fmt(m.batch_usd), fmt(m.savings)) for m in rows]
    cw = max(12, *(len(c) for row in cells for c in row[1:]))
    print(f"{'model':<{width}}  {'standard':>{cw}}  {'batch':>{cw}}  {'you save':>{cw}}")
    for model, standard, batch, saved in cells:
        print(f"{model:<{width}}  {standard:>{cw}}  {batch:>{cw}}  {saved:>{cw}}")
    return 0
