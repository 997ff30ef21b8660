"""``holysheep demo``: a tour against the embedded emulator (or the real service with a key)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from ._common import add_target_options, open_client, run

PROMPT = "In two sentences: when should I stream an LLM answer, and when should I batch?"


def add_parser(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "demo", help="stream an answer and run a small batch (emulator unless HOLYSHEEP_API_KEY)"
    )
    p.add_argument("--model", default="gpt-4o")
    p.add_argument("--max-tokens", type=int, default=60)
    add_target_options(p)
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    async def go() -> int:
        async with open_client(args, emulator={"ttft": 0.05, "itl": 0.01}) as (client, emulated):
            where = "embedded emulator" if emulated else client.base_url
            print(f"holysheep demo against {where}\n")
            print(f"1. Streaming ({args.model}): {PROMPT}\n")
            messages = [{"role": "user", "content": PROMPT}]
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
        return 0

    return run(args, go)
