"""A trio service using the client: a fixed pool of workers answers a queue of prompts.

Run it::

    python examples/trio_service.py "first prompt" "second prompt" ...

Without ``HOLYSHEEP_API_KEY`` it talks to the embedded emulator. The client
needs nothing trio-specific: the same ``AsyncClient`` runs on trio and asyncio.
Structured concurrency does the rest: the nursery owns the workers; a
deadline (``trio.move_on_after``) or Ctrl-C cancels every stream in flight,
and each one closes its connection as it unwinds.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Sequence

import trio

from holysheep_async import AsyncClient, HolySheepError


async def answer_all(
    client: AsyncClient,
    prompts: Sequence[str],
    *,
    model: str = "gpt-4o",
    workers: int = 4,
    max_tokens: int = 24,
) -> dict[int, str]:
    """Answers by prompt index; a prompt that failed maps to ``"error: ..."``."""
    results: dict[int, str] = {}
    send, receive = trio.open_memory_channel[tuple[int, str]](0)

    async def worker(jobs: trio.MemoryReceiveChannel[tuple[int, str]]) -> None:
        async with jobs:
            async for index, prompt in jobs:
                messages = [{"role": "user", "content": prompt}]
                try:
                    async with client.chat.stream(
                        model=model, messages=messages, max_tokens=max_tokens
                    ) as stream:
                        results[index] = "".join([text async for text in stream])
                except HolySheepError as exc:
                    results[index] = f"error: {type(exc).__name__}: {exc}"

    async with trio.open_nursery() as nursery:
        async with receive:
            for _ in range(workers):
                nursery.start_soon(worker, receive.clone())
        async with send:
            for job in enumerate(prompts):
                await send.send(job)
    return results


async def main(prompts: Sequence[str], *, deadline: float = 60.0) -> int:
    """Answer ``prompts``; Ctrl-C cancels everything in flight and gives exit code 130.

    Ctrl-C is taken as a signal and turned into a cancellation (trio's signal
    receiver), rather than a ``KeyboardInterrupt`` that may land anywhere, even
    between creating a task and starting it.
    """
    code = 130
    with trio.open_signal_receiver(signal.SIGINT) as signals:
        async with trio.open_nursery() as nursery:

            async def serve() -> None:
                nonlocal code
                code = await _serve(prompts, deadline)
                nursery.cancel_scope.cancel()

            nursery.start_soon(serve)
            async for _ in signals:
                print("interrupted", file=sys.stderr, flush=True)
                nursery.cancel_scope.cancel()
                break
    return code


async def _serve(prompts: Sequence[str], deadline: float) -> int:
    prompts = list(prompts) or [f"Tell me fact number {i} about sheep" for i in range(1, 7)]
    if os.environ.get("HOLYSHEEP_API_KEY"):
        async with AsyncClient(max_concurrency=8) as client:
            return await _run(client, prompts, deadline)
    from holysheep_async.testing import MockServer

    async with (
        MockServer(ttft=0.05, itl=0.01) as server,
        AsyncClient(api_key="demo", base_url=server.base_url, max_concurrency=8) as client,
    ):
        return await _run(client, prompts, deadline)


async def _run(client: AsyncClient, prompts: list[str], deadline: float) -> int:
    results: dict[int, str] = {}
    print(f"answering {len(prompts)} prompt(s); Ctrl-C stops", file=sys.stderr, flush=True)
    with trio.move_on_after(deadline) as scope:
        results = await answer_all(client, prompts)
    for index, prompt in enumerate(prompts):
        print(
            f"[{index}] {prompt}\n    -> {results.get(index, '(not answered before the deadline)')}"
        )
    print()
    print(client.usage.summary())
    return 1 if scope.cancelled_caught else 0


def interrupted(exc: BaseException) -> bool:
    """Ctrl-C, alone or inside the exception group of the nursery it cancelled."""
    if isinstance(exc, KeyboardInterrupt):
        return True
    group = getattr(exc, "exceptions", None)  # BaseExceptionGroup (exceptiongroup on 3.10)
    return bool(group) and all(interrupted(e) for e in group)


if __name__ == "__main__":
    try:
        sys.exit(trio.run(main, sys.argv[1:]))
    except BaseException as exc:  # Ctrl-C before main() took the signal over
        if not interrupted(exc):
            raise
        print("interrupted", file=sys.stderr)
        sys.exit(130)
