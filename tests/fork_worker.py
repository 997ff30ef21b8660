"""A process that makes a client, forks, and uses it on both sides (test_fork.py).

python tests/fork_worker.py '{"scenario": "os_fork", "client": "sync", ...}'

Prints one JSON line per fact (``say``); the test reads them. Every request
carries ``x-who`` (``parent``, ``child`` or ``pool``), so the relay in front of
the emulator can tell which process sent what on which connection.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import sys
import warnings
from typing import Any

import anyio

from holysheep_async import AsyncClient, Client, SharedLimits
from holysheep_async.types import ChatCompletionMessageParam

# Python >= 3.12 warns about any fork of a process with threads (the emulator's, the
# client's loop thread): the point of these tests is that our client survives it.
warnings.filterwarnings("ignore", message=".*fork", category=DeprecationWarning)

ASK: list[ChatCompletionMessageParam] = [{"role": "user", "content": "Fork me"}]
CFG: dict[str, Any] = json.loads(sys.argv[1]) if len(sys.argv) > 1 else {}
CLIENT: Any = None


def say(**fields: Any) -> None:
    print(json.dumps(fields), flush=True)


def make() -> Any:
    if CFG.get("transport") == "httpx":  # httpx's own transport: an httpcore pool
        os.environ["HOLYSHEEP_TRANSPORT"] = "httpx"
    shared = SharedLimits(CFG["redis"], timeout=5.0) if CFG.get("redis") else None
    kwargs: dict[str, Any] = {
        "api_key": "test-key",
        "base_url": CFG["base_url"],
        "timeout": 20,
        "max_retries": 0,
        "shared_limits": shared,
        "max_concurrency": 4 if shared else None,
    }
    return Client(**kwargs) if CFG["client"] == "sync" else AsyncClient(**kwargs)


def transport(client: Any) -> Any:
    inner = client.async_client if isinstance(client, Client) else client
    return inner.http_client._transport


class _NoStats:
    idle = opened = 0


def stats(client: Any) -> Any:
    """Our transport's pool stats (httpx's transport has none: zeros)."""
    get = getattr(transport(client), "stats", None)
    return get() if get is not None else _NoStats()


def limiter(client: Any) -> Any:
    return client.limiter


def work(who: str) -> dict[str, Any]:
    """One create and one stream on the module's client, in this process."""
    client = CLIENT
    before = stats(client)
    headers = {"x-who": who}
    if isinstance(client, Client):
        text = client.chat.create(model="m", messages=ASK, max_tokens=4, extra_headers=headers).text
        with client.chat.stream(
            model="m", messages=ASK, max_tokens=5, extra_headers=headers
        ) as stream:
            streamed = "".join(stream)
    else:

        async def both() -> tuple[str, str]:
            completion = await client.chat.create(
                model="m", messages=ASK, max_tokens=4, extra_headers=headers
            )
            async with client.chat.stream(
                model="m", messages=ASK, max_tokens=5, extra_headers=headers
            ) as stream:
                pieces = [piece async for piece in stream]
            return completion.text, "".join(pieces)

        text, streamed = anyio.run(both, backend=CFG.get("backend", "asyncio"))
    after = stats(client)
    return {
        "pid": os.getpid(),
        "create": text,
        "stream": streamed,
        "idle_before": before.idle,
        "opened": after.opened - before.opened,
        "usage_requests": client.usage.requests,
    }


def child_main(uses: bool) -> None:
    """What a forked child does: use the client (or not), then report."""
    if uses:
        say(child=work("child"))
    else:
        say(child_idle=os.getpid())


def os_fork() -> None:
    """``os.fork()`` twice: one child uses the client, one never touches it; both exit
    normally (``sys.exit``: atexit hooks and finalizers run)."""
    for uses in (True, False):
        pid = os.fork()
        if pid == 0:
            code = 0
            try:
                child_main(uses)
            except BaseException as exc:
                say(child_error=repr(exc))
                code = 1
            sys.exit(code)
        _, status = os.waitpid(pid, 0)
        say(child_exit=os.waitstatus_to_exitcode(status), uses=uses)


def _mp_child(queue: Any, uses: bool) -> None:
    try:
        queue.put(work("child") if uses else {"idle": os.getpid()})
    except BaseException as exc:
        queue.put({"error": repr(exc)})


def mp_process() -> None:
    """``multiprocessing`` with the fork start method: a child that uses the client and
    one that does not, each joined within a deadline."""
    ctx = multiprocessing.get_context("fork")
    for uses in (True, False):
        queue = ctx.Queue()
        proc = ctx.Process(target=_mp_child, args=(queue, uses))
        proc.start()
        result = queue.get(timeout=60)
        proc.join(timeout=60)
        say(mp=result, exitcode=proc.exitcode, uses=uses)


def ask(prompt: str) -> tuple[int, str]:
    """A ``Pool`` task: one question on the client made before the pool forked."""
    messages: list[ChatCompletionMessageParam] = [{"role": "user", "content": prompt}]
    headers = {"x-who": "pool"}
    if isinstance(CLIENT, Client):
        text = CLIENT.chat.create(model="m", messages=messages, max_tokens=3, extra_headers=headers)
        return os.getpid(), text.text

    async def one() -> str:
        completion = await CLIENT.chat.create(
            model="m", messages=messages, max_tokens=3, extra_headers=headers
        )
        return completion.text

    return os.getpid(), anyio.run(one, backend=CFG.get("backend", "asyncio"))


def pool() -> None:
    """``multiprocessing.Pool(2).map_async(...).get(timeout=...)``."""
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(2) as workers:
        answers = workers.map_async(ask, [f"q{i}" for i in range(8)]).get(timeout=60)
    say(pool=answers)


def shared() -> None:
    """Shared limits: the parent holds a permit (a stream half read) across the fork;
    the child starts with fresh limiter state and re-attaches to Redis."""
    client = CLIENT
    with client.chat.stream(
        model="m", messages=ASK, max_tokens=50, extra_headers={"x-who": "parent"}
    ) as stream:
        texts = iter(stream)
        first = next(texts)
        held = limiter(client).stats().in_flight
        pid = os.fork()
        if pid == 0:
            try:
                fresh = limiter(client).stats()
                result = work("child")
                stats = limiter(client).stats()
                say(
                    shared_child={
                        "in_flight_at_fork": fresh.in_flight,
                        "requests_at_fork": fresh.requests,
                        "requests": stats.requests,
                        "in_flight": stats.in_flight,
                        "degraded": limiter(client).degraded,
                        "fallback_requests": limiter(client).fallback_requests,
                        "create": result["create"],
                    }
                )
            except BaseException as exc:
                say(child_error=repr(exc))
                os._exit(1)
            sys.exit(0)
        _, status = os.waitpid(pid, 0)
        rest = "".join(texts)
    say(
        shared_parent={
            "held": held,
            "child_exit": os.waitstatus_to_exitcode(status),
            "text": first + rest,
            "in_flight_after": limiter(client).stats().in_flight,
            "degraded": limiter(client).degraded,
        }
    )


def main() -> None:
    global CLIENT
    CLIENT = make()
    if CFG.get("parent_first"):
        say(parent_before=work("parent"))
    {"os_fork": os_fork, "mp_process": mp_process, "pool": pool, "shared": shared}[
        CFG["scenario"]
    ]()
    say(parent_after=work("parent"))
    if isinstance(CLIENT, Client):
        CLIENT.close()
    else:
        anyio.run(CLIENT.aclose, backend=CFG.get("backend", "asyncio"))
    say(done=True)


if __name__ == "__main__":
    main()
