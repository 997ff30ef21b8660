"""FastAPI: relay a streamed chat answer to the browser as Server-Sent Events.

Run it (``pip install 'holysheep-async[examples]'``)::

    python examples/fastapi_sse.py            # or: uvicorn fastapi_sse:app --app-dir examples
    curl -N 'http://127.0.0.1:8000/chat?prompt=Hello'

Without ``HOLYSHEEP_API_KEY`` the app starts the embedded emulator, so it runs
offline. Each text delta becomes ``data: {"text": "..."}``; the last event is
``data: {"done": true, ...}`` with the finish reason and usage; a failure is
``event: error``. In the browser::

    const source = new EventSource("/chat?prompt=" + encodeURIComponent(prompt));
    source.onmessage = (e) => { const m = JSON.parse(e.data); if (m.done) source.close(); ... };

What matters in a relay:

- ``Cache-Control: no-cache`` and ``X-Accel-Buffering: no``: without them
  nginx and other proxies buffer the stream and the user sees nothing until
  the answer is complete.
- When the browser goes away, the upstream request is cancelled: uvicorn
  reports the disconnect, Starlette cancels the generator, and leaving
  ``async with client.chat.stream(...)`` closes the upstream connection, so
  no tokens are generated (and paid for) for nobody. (Starlette watches for the
  disconnect under ASGI spec < 2.4, which uvicorn speaks; behind a 2.4 server it
  notices at its next write, or after the client's ``stream_idle_timeout``.)
- One ``AsyncClient`` for the app (its connection pool and rate limits are
  shared by every request), opened and closed by the lifespan.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI, Query, Request
from fastapi.responses import StreamingResponse

from holysheep_async import AsyncClient, HolySheepError

SSE_HEADERS = {
    "Cache-Control": "no-cache",
    "X-Accel-Buffering": "no",
    "Connection": "keep-alive",
}


def sse(data: Any, event: str | None = None) -> bytes:
    """One SSE event (JSON has no raw newlines, so one ``data:`` line is enough)."""
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {json.dumps(data, ensure_ascii=False)}\n\n".encode()


async def relay(client: AsyncClient, body: dict[str, Any]) -> AsyncIterator[bytes]:
    """The upstream stream as SSE bytes. Cancelling the iteration closes the upstream."""
    try:
        async with client.chat.stream(**body) as stream:
            async for text in stream:
                yield sse({"text": text})
        usage = stream.usage.model_dump(exclude_none=True) if stream.usage else None
        yield sse({"done": True, "finish_reason": stream.finish_reason, "usage": usage})
    except HolySheepError as exc:
        # The 200 and its headers are already sent: the error travels as an event.
        yield sse({"error": type(exc).__name__, "message": str(exc)}, event="error")


def create_app(
    client: AsyncClient | None = None, *, base_url: str | None = None, api_key: str | None = None
) -> FastAPI:
    """The app. ``client``: use this one (you close it); otherwise the lifespan opens one
    (``base_url``/``api_key``, else the environment, else the embedded emulator)."""

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if client is not None:
            yield
            return
        async with contextlib.AsyncExitStack() as stack:
            url, key = base_url, api_key
            if url is None and key is None and not os.environ.get("HOLYSHEEP_API_KEY"):
                from holysheep_async.testing import MockServer

                server = await stack.enter_async_context(MockServer(ttft=0.05, itl=0.02))
                url, key = server.base_url, "demo"
            app.state.client = await stack.enter_async_context(
                AsyncClient(api_key=key, base_url=url)
            )
            yield

    app = FastAPI(title="holysheep SSE relay", lifespan=lifespan)
    if client is not None:
        app.state.client = client

    @app.get("/chat")
    async def chat(
        request: Request,
        prompt: str = Query(..., min_length=1),
        model: str = "gpt-4o",
        max_tokens: int | None = Query(None, ge=1),
    ) -> StreamingResponse:
        body: dict[str, Any] = {
            "model": model,
            "messages": [{"role": "user", "content": prompt}],
        }
        if max_tokens is not None:
            body["max_tokens"] = max_tokens
        return StreamingResponse(
            relay(request.app.state.client, body),
            media_type="text/event-stream",
            headers=SSE_HEADERS,
        )

    return app


app = create_app()

if __name__ == "__main__":
    import uvicorn

    uvicorn.run(app, host="127.0.0.1", port=int(os.environ.get("PORT", "8000")))
