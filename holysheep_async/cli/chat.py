"""``holysheep chat PROMPT``: stream an answer to the terminal.

The answer goes to stdout as it arrives (so it can be piped); the closing
line with time to first token, speed, tokens and cost goes to stderr.
Ctrl-C stops the stream, closes the connection and exits with 130.
``--api responses`` streams through the Responses API (``client.responses``)
instead of chat completions.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any, Protocol

from ..client import AsyncClient
from ..streaming import StreamMetrics
from ..types import ChatCompletionMessageParam
from ._common import add_target_options, open_client, run


def add_parser(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "chat",
        help="stream a chat answer",
        description="Stream an answer as it arrives, then report TTFT, tokens/s, tokens and"
        " cost. Without HOLYSHEEP_API_KEY or --base-url it talks to the embedded emulator.",
    )
    p.add_argument("prompt", help="the prompt, or - to read it from stdin")
    p.add_argument("--model", "-m", default="gpt-4o")
    p.add_argument("--system", help="a system message")
    p.add_argument("--max-tokens", type=int)
    p.add_argument("--temperature", type=float)
    p.add_argument(
        "--api",
        choices=("chat", "responses"),
        default="chat",
        help="chat completions (default) or the Responses API",
    )
    add_target_options(p)
    p.set_defaults(func=main)


class _Streamed(Protocol):
    @property
    def metrics(self) -> StreamMetrics: ...

    @property
    def usage(self) -> object | None: ...


def summary(stream: _Streamed, client: AsyncClient) -> str:
    """``ttft 52 ms · 98.1 tokens/s · 16 tokens · $0.000166``."""
    m = stream.metrics
    ttft = f"{m.ttft * 1000:.0f} ms" if m.ttft is not None else "-"
    tps = f"{m.tokens_per_s:.1f}" if m.tokens_per_s else "-"
    if stream.usage is None:
        price = "cost unknown (the server sent no usage)"
    elif client.usage.unpriced:
        price = f"cost unknown (no price for {', '.join(client.usage.unpriced)})"
    else:
        price = f"${client.usage.cost_usd:.6f}"
    return f"ttft {ttft} · {tps} tokens/s · {m.tokens} tokens · {price}"


def main(args: argparse.Namespace) -> int:
    prompt = sys.stdin.read() if args.prompt == "-" else args.prompt
    if not prompt.strip():
        print("error: the prompt is empty", file=sys.stderr)
        return 2
    messages: list[ChatCompletionMessageParam] = []
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
            stream: Any
            if args.api == "responses":
                options: dict[str, Any] = {}
                if args.system:
                    options["instructions"] = args.system
                if args.max_tokens is not None:
                    options["max_output_tokens"] = args.max_tokens
                if args.temperature is not None:
                    options["temperature"] = args.temperature
                stream = client.responses.stream(model=args.model, input=prompt, **options)
            else:
                stream = client.chat.stream(model=args.model, messages=messages, **params)
            try:
                async with stream:
                    async for text in stream:
                        sys.stdout.write(text)
                        sys.stdout.flush()
            finally:
                # Ctrl-C lands here too: end the answer's line before the shell prompt.
                if stream.text and not stream.text.endswith("\n"):
                    sys.stdout.write("\n")
                sys.stdout.flush()
            print(summary(stream, client), file=sys.stderr)
        return 0

    return run(args, go)
