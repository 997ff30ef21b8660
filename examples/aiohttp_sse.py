"""aiohttp: relay a streamed chat answer to the browser as Server-Sent Events.

Run it (``pip install 'holysheep-async[examples]'``)::

    python examples/aiohttp_sse.py
    curl -N 'http://127.0.0.1:8080/chat?prompt=Hello'

Same events as ``fastapi_sse.py``. Without ``HOLYSHEEP_API_KEY`` the app
starts the embedded emulator. A browser that goes away cancels the handler
(``handler_cancellation=True``, off by default since aiohttp 3.7), which
closes the upstream stream at once, even while the model is still silent;
without it the handler would only notice at its next write.
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web

from holysheep_async import AsyncClient, HolySheepError

#: How the app must be run: a browser that leaves cancels its handler (and so the upstream).
RUNNER_OPTIONS: dict[str, Any] = {"handler_cancellation": True}

CLIENT: web.AppKey[AsyncClient] = web.AppKey("holysheep_client", AsyncClient)

SSE_HEADERS = {
    "Content-Type": "text/event-stream; charset=utf-8",
    "Cache-Control": "no-cache",
    "X-Accel-Buffering": "no",
}


def sse(data: Any, event: str | None = None) -> bytes:
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {json.dumps(data, ensure_ascii=False)}\n\n".encode()


async def chat(request: web.Request) -> web.StreamResponse:
    prompt = request.query.get("prompt", "")
    if not prompt:
        raise web.HTTPBadRequest(text="the prompt query parameter is required")
    body: dict[str, Any] = {
        "model": request.query.get("model", "gpt-4o"),
        "messages": [{"role": "user", "content": prompt}],
    }
    if "max_tokens" in request.query:
        try:
            body["max_tokens"] = int(request.query["max_tokens"])
        except ValueError:
            raise web.HTTPBadRequest(text="max_tokens must be an integer") from None
    response = web.StreamResponse(headers=SSE_HEADERS)
    await response.prepare(request)
    client = request.app[CLIENT]
    try:
        async with client.chat.stream(**body) as stream:
            async for text in stream:
                await response.write(sse({"text": text}))
        usage = stream.usage.model_dump(exclude_none=True) if stream.usage else None
        await response.write(
            sse({"done": True, "finish_reason": stream.finish_reason, "usage": usage})
        )
    except HolySheepError as exc:
        await response.write(sse({"error": type(exc).__name__, "message": str(exc)}, "error"))
    except ConnectionResetError:
        pass  # the browser left; leaving `async with` above closed the upstream
    return response


def create_app(*, base_url: str | None = None, api_key: str | None = None) -> web.Application:
    """The app; its client (and, without a key, the emulator) live as long as it does."""

    async def client_ctx(app: web.Application) -> AsyncIterator[None]:
        url, key = base_url, api_key
        server = None
        if url is None and key is None and not os.environ.get("HOLYSHEEP_API_KEY"):
            from holysheep_async.testing import MockServer

            server = await MockServer(ttft=0.05, itl=0.02).__aenter__()
            url, key = server.base_url, "demo"
        try:
            async with AsyncClient(api_key=key, base_url=url) as client:
                app[CLIENT] = client
                yield
        finally:
            if server is not None:
                await server.__aexit__(None, None, None)

    app = web.Application()
    app.cleanup_ctx.append(client_ctx)
    app.router.add_get("/chat", chat)
    return app


if __name__ == "__main__":
    web.run_app(
        create_app(),
        host="127.0.0.1",
        port=int(os.environ.get("PORT", "8080")),
        # Ctrl-C: streams in flight get 2 s to finish, then are cancelled (each closes
        # its upstream as it unwinds); aiohttp's default would wait a minute for them.
        shutdown_timeout=2.0,
        **RUNNER_OPTIONS,
    )
