"""``holysheep demo``: a tour against the embedded emulator (or the real service with a key)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from ..client import AsyncClient
from ..errors import HolySheepError
from ..pricing import monthly
from ..types import ChatCompletionMessageParam
from ._common import add_target_options, open_client, run
from .batch import EMULATOR_POLL, ProgressBar, summary

PROMPT = "In two sentences: when should I stream an LLM answer, and when should I batch?"


def add_parser(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "demo", help="stream an answer and run a small batch (emulator unless HOLYSHEEP_API_KEY)"
    )
    p.add_argument("--model", default="gpt-4o")
    p.add_argument("--max-tokens", type=int, default=60)
    p.add_argument("--batch-size", type=int, default=100, help="requests in the demo batch")
    add_target_options(p)
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    async def go() -> int:
        async with open_client(args, emulator={"ttft": 0.05, "itl": 0.01}) as (client, emulated):
            where = "embedded emulator" if emulated else client.base_url
            print(f"holysheep demo against {where}\n")
            print(f"1. Streaming ({args.model}): {PROMPT}\n")
            messages: list[ChatCompletionMessageParam] = [{"role": "user", "content": PROMPT}]
            async with client.chat.stream(
                model=args.model, messages=messages, max_tokens=args.max_tokens
            ) as stream:
                async for text in stream:
                    sys.stdout.write(text)
                    sys.stdout.flush()
            m = stream.metrics
            print("\n")
            print(
                f"   TTFT          {m.ttft * 1000:8.1f} ms" if m.ttft is not None else "   TTFT -"
            )
            if m.tokens_per_s:
                print(f"   throughput    {m.tokens_per_s:8.1f} tokens/s")
            print(f"   tokens        {m.tokens:8d}")
            if emulated:
                await demo_batch(client, args.model, args.batch_size)
            else:
                print("\n2. Batch: skipped against a real service (a batch may take up to 24 h);")
                print("   try `holysheep batch run FILE -o OUT --journal J`")
            demo_cost(args.model)
        return 0

    return run(args, go)


async def demo_batch(client: AsyncClient, model: str, size: int) -> None:
    """Part 2: a small batch through the whole pipeline (validate, upload, poll, download)."""
    print(f"\n2. Batch ({model}): {size} questions, half price, one result per request\n")
    tasks = [
        {
            "custom_id": f"question-{i + 1}",
            "model": model,
            "messages": [{"role": "user", "content": f"Give one fact about the number {i + 1}."}],
            "max_tokens": 12,
        }
        for i in range(size)
    ]
    statuses: list[str] = []
    bar = ProgressBar(sys.stdout)

    def progress(p: Any) -> None:
        batch = p.batch
        if batch is not None and (not statuses or statuses[-1] != batch.status):
            statuses.append(batch.status)
        bar.show(p.done, p.total, p.phase if batch is None else f"{p.phase} {batch.status}")

    report = await client.batches.run(tasks, poll_interval=EMULATOR_POLL, on_progress=progress)
    bar.close()
    print(f"   batches       {', '.join(report.batch_ids)}")
    print(f"   lifecycle     {' -> '.join(statuses)}")
    first = report.results[tasks[0]["custom_id"]]  # type: ignore[index]
    print(f"   first answer  {first.custom_id}: {first.content}")
    print(summary(report))


def demo_cost(model: str) -> None:
    """Part 3: what the seed's workload costs a month, streamed (standard) vs batch."""
    daily, inp, out = 5_000, 1_000, 500
    print(f"\n3. Cost: {daily:,} requests a day, {inp:,} in + {out:,} out tokens, 30 days\n")
    try:
        est = monthly(model, daily, inp, out)
    except HolySheepError as exc:
        print(f"   {exc}")
        return
    print(f"   standard      ${est.standard_usd:>10,.2f}")
    print(f"   batch         ${est.batch_usd:>10,.2f}")
    print(f"   you save      ${est.savings:>10,.2f}  (holysheep cost / holysheep advise for more)")
