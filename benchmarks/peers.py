"""The clients compared: this one, the official SDK (httpx and aiohttp), httpx + httpx-sse.

Each adapter opens a fresh client (a cold pool) and offers the same two calls:
``stream(n_tokens)`` -> (ttft seconds, text chunks) and ``complete(n_tokens)``.
The latency profile travels in the ``x-bench-profile`` header, which every
client sends through its own default-headers option.
"""

from __future__ import annotations

import asyncio
import importlib
import io
import json
import time
from types import TracebackType
from typing import Any

import httpx

MODEL = "bench-model"
KEY = "bench-key"
MESSAGES = [{"role": "user", "content": "Say something about sheep."}]


class Adapter:
    name = "?"
    #: The runtimes it runs on.
    backends: tuple[str, ...] = ("asyncio", "trio")

    def __init__(self, base_url: str, profile: str = "", api_key: str = KEY, model: str = MODEL):
        self.base_url = base_url.rstrip("/")
        self.headers = {"x-bench-profile": profile} if profile else {}
        self.api_key = api_key
        self.model = model

    async def __aenter__(self) -> Adapter:
        return self

    async def __aexit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        raise NotImplementedError

    async def stream(self, n_tokens: int) -> tuple[float, int]:
        raise NotImplementedError

    async def complete(self, n_tokens: int) -> int:
        raise NotImplementedError


class HolySheep(Adapter):
    """This client, with its default transport (or the stock httpx pool: ``transport="httpx"``)."""

    name = "holysheep"

    package = "holysheep_async"  # --before: the same adapter on an older tree's package

    def __init__(
        self, *args: Any, transport: str = "default", proxy: str | None = None, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        AsyncClient = importlib.import_module(self.package).AsyncClient
        # proxy=: passed only when given (a --before tree may not have the argument).
        extra = {} if proxy is None else {"proxy": proxy}

        http = None
        if transport == "httpx":
            self.name = "holysheep[httpx-pool]"
            http = httpx.AsyncClient(
                timeout=httpx.Timeout(60.0, connect=10.0),
                limits=httpx.Limits(max_connections=None, max_keepalive_connections=256),
            )
        self._http = http
        self.client = AsyncClient(
            api_key=self.api_key,
            base_url=self.base_url,
            max_retries=0,
            default_headers=self.headers,
            http_client=http,
            **extra,
        )

    async def aclose(self) -> None:
        await self.client.aclose()
        if self._http is not None:
            await self._http.aclose()

    async def stream(self, n_tokens: int) -> tuple[float, int]:
        start = time.perf_counter()
        ttft = 0.0
        n = 0
        async with self.client.chat.stream(
            model=self.model, messages=MESSAGES, max_tokens=n_tokens
        ) as stream:
            async for _text in stream:
                if not n:
                    ttft = time.perf_counter() - start
                n += 1
        return ttft, n

    async def complete(self, n_tokens: int) -> int:
        completion = await self.client.chat.create(
            model=self.model, messages=MESSAGES, max_tokens=n_tokens
        )
        return len(completion.choices)


class OpenAISDK(Adapter):
    """The official SDK (``AsyncOpenAI``), typed chunk objects, as users write it."""

    name = "openai"

    def __init__(self, *args: Any, proxy: str | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        import openai

        self.client = openai.AsyncOpenAI(
            api_key=self.api_key,
            base_url=self.base_url,
            max_retries=0,
            default_headers=self.headers,
            http_client=self._http_client(proxy),
        )

    def _http_client(self, proxy: str | None) -> Any:
        """The SDK's default (httpx); through a proxy as the SDK documents it (proxy=)."""
        if proxy is None:
            return None
        import openai

        return openai.DefaultAsyncHttpxClient(proxy=proxy)

    async def aclose(self) -> None:
        await self.client.close()

    async def stream(self, n_tokens: int) -> tuple[float, int]:
        start = time.perf_counter()
        ttft = 0.0
        n = 0
        stream = await self.client.chat.completions.create(
            model=self.model,
            messages=MESSAGES,  # type: ignore[arg-type]
            max_tokens=n_tokens,
            stream=True,
            stream_options={"include_usage": True},
        )
        async for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                if not n:
                    ttft = time.perf_counter() - start
                n += 1
        return ttft, n

    async def complete(self, n_tokens: int) -> int:
        completion = await self.client.chat.completions.create(
            model=self.model,
            messages=MESSAGES,  # type: ignore[arg-type]
            max_tokens=n_tokens,
        )
        return len(completion.choices)


class OpenAIAioHttp(OpenAISDK):
    """The official SDK on its aiohttp backend (``openai[aiohttp]``), its fastest; asyncio only."""

    name = "openai[aiohttp]"
    #: The runtimes it runs on (aiohttp is asyncio's).
    backends = ("asyncio",)

    def _http_client(self, proxy: str | None) -> Any:
        from openai import DefaultAioHttpClient

        return DefaultAioHttpClient() if proxy is None else DefaultAioHttpClient(proxy=proxy)


class HttpxSSE(Adapter):
    """Plain httpx (default pool limits) + httpx-sse + json.loads per event."""

    name = "httpx+httpx-sse"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.client = httpx.AsyncClient(
            timeout=httpx.Timeout(60.0, connect=10.0),
            headers={"Authorization": f"Bearer {self.api_key}", **self.headers},
        )

    async def aclose(self) -> None:
        await self.client.aclose()

    async def stream(self, n_tokens: int) -> tuple[float, int]:
        from httpx_sse import aconnect_sse

        start = time.perf_counter()
        ttft = 0.0
        n = 0
        body = {
            "model": self.model,
            "messages": MESSAGES,
            "max_tokens": n_tokens,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        async with aconnect_sse(
            self.client, "POST", f"{self.base_url}/chat/completions", json=body
        ) as source:
            source.response.raise_for_status()
            async for sse in source.aiter_sse():
                if sse.data == "[DONE]":
                    break
                obj = json.loads(sse.data)
                choices = obj.get("choices")
                if choices and choices[0]["delta"].get("content"):
                    if not n:
                        ttft = time.perf_counter() - start
                    n += 1
        return ttft, n

    async def complete(self, n_tokens: int) -> int:
        response = await self.client.post(
            f"{self.base_url}/chat/completions",
            json={"model": self.model, "messages": MESSAGES, "max_tokens": n_tokens},
        )
        response.raise_for_status()
        return len(response.json()["choices"])


def before(ref: str) -> tuple[str, Any]:
    """``holysheep@REF``: this client as it was at git ``REF``, measured in the same run.

    The package of that commit is extracted (``git archive``) into a temporary folder under
    another name (``holysheep_before``); the package imports itself only relatively, so both
    versions live in one process and alternate with the other clients run by run.
    """
    import subprocess
    import sys
    import tarfile
    import tempfile
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    dest = Path(tempfile.mkdtemp(prefix="holysheep-before-"))
    archive = subprocess.run(
        ["git", "-C", str(root), "archive", ref, "holysheep_async"],
        check=True,
        capture_output=True,
    ).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(dest, filter="data")
    (dest / "holysheep_async").rename(dest / "holysheep_before")
    sys.path.insert(0, str(dest))
    short = subprocess.run(
        ["git", "-C", str(root), "rev-parse", "--short", ref],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    name = f"holysheep@{short}"

    class Before(HolySheep):
        package = "holysheep_before"

    def make(*args: Any, **kwargs: Any) -> HolySheep:
        adapter = Before(*args, **kwargs)
        adapter.name = name
        return adapter

    return name, make


def available() -> dict[str, Any]:
    """Adapter factories by name; peers whose package is missing are left out."""
    out: dict[str, Any] = {
        "socket (floor)": Floor,
        "holysheep": HolySheep,
        "holysheep[httpx-pool]": lambda *a, **k: HolySheep(*a, transport="httpx", **k),
        "httpx+httpx-sse": HttpxSSE,
    }
    try:
        import openai
    except ImportError:
        pass
    else:
        out["openai"] = OpenAISDK
        aio = getattr(openai, "DefaultAioHttpClient", None)  # openai >= 1.80, with its extra
        if aio is not None and "Missing" not in aio.__name__:
            out["openai[aiohttp]"] = OpenAIAioHttp
    try:
        import httpx_sse  # noqa: F401
    except ImportError:
        del out["httpx+httpx-sse"]
    return out


try:
    from orjson import loads as _loads
except ImportError:  # the bench extra installs it; the floor still runs without
    _loads = json.loads


class _FloorProtocol(asyncio.Protocol):
    """The floor's asyncio side: the bytes that arrived, and a waiter to wake."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.pieces: list[bytes] = []
        self.waiter: asyncio.Future[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.pieces.append(data)
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        self.data_received(b"")


class Floor(Adapter):
    """The floor: a raw socket, hand-written HTTP, orjson per answer and per event, no checks.

    On asyncio an ``asyncio.Protocol`` (no streams layer), on trio a trio
    socket read directly. Each data event of a stream and each whole answer is
    decoded (orjson; ``json`` when it is not installed) and its text read, as
    any client must; nothing else: no header parsing beyond the body's length,
    no chunked decoding (the server's chunks hold whole events), no error
    handling, no timeouts, no pool bookkeeping. Not a usable client: it shows
    what the server, the loopback, the event loop and the JSON decode cost, so
    the others' overhead can be read above it.
    """

    name = "socket (floor)"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        url = httpx.URL(self.base_url)
        self._addr = (url.host, url.port or 80)
        self._prefix = url.raw_path.rstrip(b"/")
        self._idle: list[Any] = []
        extra = b"".join(b"%s: %s\r\n" % (k.encode(), v.encode()) for k, v in self.headers.items())
        self._head = (
            b"POST %s/chat/completions HTTP/1.1\r\nhost: bench\r\n"
            b"authorization: Bearer %s\r\ncontent-type: application/json\r\n%s"
            % (self._prefix, self.api_key.encode(), extra)
        )

    async def aclose(self) -> None:
        for conn in self._idle:
            if isinstance(conn, _FloorProtocol):
                if conn.transport is not None:
                    conn.transport.close()
            else:
                conn.close()
        self._idle.clear()

    async def _exchange(self, body: bytes, take: Any) -> None:
        """Send one request; hand every piece of the answer to ``take`` until it says done."""
        request = self._head + b"content-length: %d\r\n\r\n%b" % (len(body), body)
        if asyncio._get_running_loop() is not None:
            proto = self._idle.pop() if self._idle else None
            if proto is None:
                loop = asyncio.get_running_loop()
                _, proto = await loop.create_connection(_FloorProtocol, *self._addr)
            assert proto.transport is not None
            proto.transport.write(request)
            while True:
                if not proto.pieces:
                    proto.waiter = asyncio.get_running_loop().create_future()
                    await proto.waiter
                    proto.waiter = None
                pieces = proto.pieces
                data = pieces[0] if len(pieces) == 1 else b"".join(pieces)
                pieces.clear()
                if take(data):
                    break
            self._idle.append(proto)
            return
        import trio

        sock = self._idle.pop() if self._idle else None
        if sock is None:
            sock = trio.socket.socket()
            await sock.connect(self._addr)
        await sock.send(request)
        while not take(await sock.recv(65536)):
            pass
        self._idle.append(sock)

    async def stream(self, n_tokens: int) -> tuple[float, int]:
        body = json.dumps(
            {"model": self.model, "messages": MESSAGES, "max_tokens": n_tokens, "stream": True}
        ).encode()
        start = time.perf_counter()
        ttft = 0.0
        n = 0
        pending = b""

        def take(data: bytes) -> bool:
            nonlocal pending, n, ttft
            buf = pending + data if pending else data
            end = buf.rfind(b"\n")
            pending = buf[end + 1 :]
            for line in buf[: end + 1].split(b"\n"):
                if line[:7] == b"data: {":
                    choices = _loads(line[6:])["choices"]
                    if choices and choices[0]["delta"].get("content"):
                        if not n:
                            ttft = time.perf_counter() - start
                        n += 1
            return buf.endswith(b"\r\n0\r\n\r\n") or not data

        await self._exchange(body, take)
        return ttft, n

    async def complete(self, n_tokens: int) -> int:
        body = json.dumps(
            {"model": self.model, "messages": MESSAGES, "max_tokens": n_tokens}
        ).encode()
        buf = b""
        choices = 0

        def take(data: bytes) -> bool:
            nonlocal buf, choices
            buf += data
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                return not data
            at = buf.find(b"content-length: ", 0, end) + 16
            length = int(buf[at : buf.find(b"\r\n", at)])
            if len(buf) < end + 4 + length:
                return not data
            choices = len(_loads(buf[end + 4 : end + 4 + length])["choices"])
            return True

        await self._exchange(body, take)
        return choices
