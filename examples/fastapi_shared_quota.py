"""FastAPI under ``uvicorn --workers 4``: four processes, one quota, shared on Redis.

Run it (``pip install 'holysheep-async[examples,redis]'`` and a Redis on localhost)::

    REDIS_URL=redis://localhost:6379/0 uvicorn fastapi_shared_quota:app --workers 4 \\
        --app-dir examples
    curl 'http://127.0.0.1:8000/ask?prompt=Hello'

Every worker process builds its own ``AsyncClient`` with the same ``rpm``,
``tpm``, ``max_concurrency`` and ``shared_limits``: the limits hold for all of
them together (``rpm=600`` means 600 a minute in all, not 600 per worker), and
a 429 met by one worker pauses the others. Processes on other machines with the
same Redis, base URL and key share the quota as well (``limits_namespace``
names another quota).

Without ``HOLYSHEEP_API_KEY`` the client talks to ``HOLYSHEEP_BASE_URL`` (an
emulator you run with ``holysheep serve``) with a test key. If Redis is down,
each worker falls back to a quarter of each limit (``on_error="local"``) and
logs one warning; it goes back to the shared limits when Redis answers again.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI, Query

from holysheep_async import AsyncClient, SharedLimits


def create_app(
    *, redis_url: str | None = None, base_url: str | None = None, api_key: str | None = None
) -> FastAPI:
    redis_url = redis_url or os.environ.get("REDIS_URL", "redis://localhost:6379/0")
    clients: dict[str, AsyncClient] = {}

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with AsyncClient(
            api_key=api_key or os.environ.get("HOLYSHEEP_API_KEY") or "test-key",
            base_url=base_url,
            rpm=600,
            tpm=200_000,
            max_concurrency=32,
            shared_limits=SharedLimits(redis_url, on_error="local", local_share=0.25),
        ) as client:
            clients["main"] = client
            yield

    app = FastAPI(lifespan=lifespan)

    @app.get("/ask")
    async def ask(prompt: str = Query(..., max_length=4000)) -> dict[str, Any]:
        client = clients["main"]
        completion = await client.chat.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": prompt}], max_tokens=200
        )
        stats = client.limiter.stats()
        return {
            "answer": completion.choices[0].message.content,
            "pid": os.getpid(),
            "waited_s": round(stats.total_wait, 3),
        }

    return app


app = create_app()
