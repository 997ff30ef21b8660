"""``holysheep chat PROMPT``: stream an answer to the terminal."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from ._common import add_target_options, open_client, run


def add_parser(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser("chat", help="stream a chat answer")
    p.add_argument("prompt", help="the prompt, or - to read it from stdin")
    p.add_argument("--model", default="gpt-4o")
    p.add_argument("--system", help="a system message")
    p.add_argument("--max-tokens", type=int)
    p.add_argument("--temperature", type=float)
    add_target_options(p)
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    prompt = sys.stdin.read() if args.prompt == "-" else args.prompt
    messages = []
    if args.system:
        messages.append({"role": "system", "content": args.system})
    messages.append({"role": "user", "content": prompt})
    params: dict[str, Any] = {}
    if args.max_tokens is not None:
        params["max_tokens"] = args.max_tokens
    if args.temperature is not None:
        params["temperature"] = args.temperature

    async def go() -> int:
        async with open_client(args, emulator={"ttft": 0.05, "itl": 0.01}) as (client, _):
            async with client.chat.stream(model=args.model, messages=messages, **params) as stream:
                async for text in stream:
                    sys.stdout.write(text)
                    sys.stdout.flush()
            m = stream.metrics
            tps = f"{m.tokens_per_s:.1f}" if m.tokens_per_s else "-"
            ttft = f"{m.ttft * 1000:.0f} ms" if m.ttft is not None else "-"
            sys.stdout.write("\n")
            print(f"[ttft {ttft} · {tps} tokens/s · {m.tokens} tokens]", file=sys.stderr)
        return 0

    return run(args, go)
