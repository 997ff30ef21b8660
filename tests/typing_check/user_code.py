"""A user's program, typed: mypy --strict must pass on it (tests/test_typing.py runs it).

It calls every public method of AsyncClient and Client with typed arguments and
pins the result types with annotations, so a wrong return type fails too.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
from pydantic import BaseModel

from holysheep_async import (
    AsyncClient,
    Batch,
    BatchReport,
    BatchResult,
    ChatCompletion,
    ChatCompletionChunk,
    ChatStream,
    Client,
    EmbeddingsResponse,
    FileDeleted,
    FileObject,
    Model,
    ParsedChatCompletion,
    ParsedChatStream,
    StreamedToolCall,
    SyncChatStream,
    SyncParsedChatStream,
    SyncToolRunStream,
    ToolResult,
    ToolRun,
    Usage,
)
from holysheep_async.types import (
    ChatCompletionMessageParam,
    ChatCompletionToolParam,
    ResponseFormatParam,
)


class Answer(BaseModel):
    city: str
    population: int


MESSAGES: list[ChatCompletionMessageParam] = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": [{"type": "text", "text": "Largest city?"}]},
]
TOOLS: list[ChatCompletionToolParam] = [
    {"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}
]
JSON_MODE: ResponseFormatParam = {"type": "json_object"}


async def use_async(path: Path) -> None:
    async with AsyncClient(api_key="k", base_url="http://127.0.0.1:1/v1") as client:
        completion: ChatCompletion = await client.chat.create(
            model="gpt-4o",
            messages=MESSAGES,
            temperature=0.2,
            max_tokens=10,
            tools=TOOLS,
            tool_choice="auto",
            reasoning_effort="low",
            stop=["\n"],
            response_format=JSON_MODE,
            extra_headers={"X-Trace": "1"},
            extra_query={"api-version": "2024-10-21"},
            extra_body={"top_k": 40},
            timeout=httpx.Timeout(5.0),
        )
        rid: str | None = completion.request_id
        limits: dict[str, str] = completion.rate_limits
        parsed: ParsedChatCompletion[Answer] = await client.chat.create(
            model="gpt-4o", messages=MESSAGES, response_format=Answer, timeout=5
        )
        population: int = parsed.parsed.population

        async with client.chat.stream(model="gpt-4o", messages=MESSAGES, top_p=0.9) as stream:
            async for text in stream:
                piece: str = text
        plain: ChatStream = stream
        usage: Usage | None = plain.usage
        chunks: AsyncIterator[ChatCompletionChunk] = client.chat.stream(
            model="gpt-4o", messages=MESSAGES
        ).chunks()
        async with client.chat.stream(
            model="gpt-4o", messages=MESSAGES, response_format=Answer, include_usage=False
        ) as typed:
            async for _ in typed:
                pass
        typed_stream: ParsedChatStream[Answer] = typed
        city: str = typed.parsed.city

        async with client.chat.stream(model="gpt-4o", messages=MESSAGES, tools=TOOLS) as agent:
            async for event in agent.events():
                if event.type == "content.delta":
                    delta: str = event.delta
                elif event.type == "tool_calls.function.arguments.done":
                    done_call: StreamedToolCall = event.call
        reasoning: str = agent.reasoning
        calls: list[StreamedToolCall] = agent.tool_calls
        final: ChatCompletion = agent.final_completion()

        def lookup(city: str, days: int = 1) -> str:
            """Look a city up."""
            return city

        run: ToolRun = await client.chat.run_tools(
            model="gpt-4o", messages=MESSAGES, tools=[lookup, Answer], max_turns=4, temperature=0
        )
        async with client.chat.stream_tools(model="gpt-4o", messages=MESSAGES, tools=[lookup]) as r:
            async for item in r:
                if isinstance(item, ToolResult):
                    output: str = item.output
        answer: str = r.result.text

        models: list[Model] = await client.models.list()
        model: Model = await client.models.retrieve("gpt-4o")
        vectors: EmbeddingsResponse = await client.embeddings.create(
            model="text-embedding-3-small", input=["a", "b"], encoding_format="base64"
        )
        floats: list[list[float]] = vectors.vectors
        file: FileObject = await client.files.create(path, purpose="batch")
        same: FileObject = await client.files.retrieve(file.id, extra_headers={"X": "y"})
        files: list[FileObject] = await client.files.list(purpose="batch", limit=10)
        saved: Path = await client.files.content(file.id, path.with_suffix(".out"))
        data: bytes = await client.files.content(file.id)
        gone: FileDeleted = await client.files.delete(file.id)

        batch: Batch = await client.batches.submit(
            path, extra_headers={"X-Trace": "1"}, extra_body={"priority": "low"}, timeout=5
        )
        uploaded: FileObject = await client.batches.upload(path, extra_query={"v": 1})
        batch = await client.batches.create(
            uploaded.id, extra_body={"priority": "low"}, timeout=httpx.Timeout(5.0)
        )
        batch = await client.batches.retrieve(batch.id, extra_query={"tenant": "a"}, timeout=5)
        batch = await client.batches.wait(
            batch.id, poll_interval=1.0, timeout=600.0, extra_headers={"X": "y"}, request_timeout=5
        )
        batch = await client.batches.cancel(batch.id, extra_headers={"X": "y"})
        async for result in client.batches.results(batch, extra_headers={"X": "y"}, timeout=5):
            one: BatchResult = result
        async for b in client.batches.list(limit=5, extra_query={"tenant": "a"}, timeout=5.0):
            listed: Batch = b
        written: Path = await client.batches.download(
            batch, path.with_suffix(".jsonl"), extra_headers={"X": "y"}, timeout=5
        )
        report: BatchReport = await client.batches.run(
            path,
            journal="run.journal",
            timeout=3600.0,
            extra_headers={"X-Trace": "1"},
            extra_query={"tenant": "a"},
            extra_body={"priority": "low"},
            request_timeout=httpx.Timeout(30.0),
        )
        del rid, limits, population, piece, usage, chunks, typed_stream, city, models, model
        del floats, same, files, saved, data, gone, one, listed, written, report
        del delta, done_call, reasoning, calls, final, run, output, answer


def use_sync(path: Path) -> None:
    with Client(api_key="k", base_url="http://127.0.0.1:1/v1", rpm=60) as client:
        completion: ChatCompletion = client.chat.create(
            model="gpt-4o", messages=MESSAGES, seed=1, extra_body={"top_k": 1}, timeout=3.0
        )
        parsed: ParsedChatCompletion[Answer] = client.chat.create(
            model="gpt-4o", messages=MESSAGES, response_format=Answer
        )
        population: int = parsed.parsed.population
        with client.chat.stream(model="gpt-4o", messages=MESSAGES) as stream:
            for text in stream:
                piece: str = text
        plain: SyncChatStream[ChatStream] = stream
        chunks: Iterator[ChatCompletionChunk] = plain.chunks()
        with client.chat.stream(model="gpt-4o", messages=MESSAGES, response_format=Answer) as s:
            for _ in s:
                pass
        typed: SyncParsedChatStream[Answer] = s
        city: str = typed.parsed.city
        sync_run: ToolRun = client.chat.run_tools(model="gpt-4o", messages=MESSAGES, tools=[len])
        loop: SyncToolRunStream = client.chat.stream_tools(
            model="gpt-4o", messages=MESSAGES, tools=[len]
        )

        models: list[Model] = client.models.list()
        vectors: EmbeddingsResponse = client.embeddings.create(model="e", input="a sheep")
        file: FileObject = client.files.create(b"data", purpose="user_data")
        files: list[FileObject] = client.files.list()
        saved: Path = client.files.content(file.id, path)
        data: bytes = client.files.content(file.id, timeout=5)
        gone: FileDeleted = client.files.delete(file.id)

        batch: Batch = client.batches.submit(path, metadata={"team": "a"})
        batch = client.batches.wait(batch, timeout=60.0, request_timeout=5)
        batch = client.batches.retrieve(batch.id, extra_headers={"X": "y"}, timeout=5)
        results: list[BatchResult] = list(client.batches.results(batch, extra_query={"t": "a"}))
        batches: Iterator[Batch] = client.batches.list(extra_headers={"X": "y"})
        report: BatchReport = client.batches.run(
            path, journal="q.journal", extra_body={"priority": "low"}, request_timeout=30
        )
        del completion, population, piece, chunks, city, models, vectors, files, saved, gone
        del data
        del results, batches, report, sync_run, loop
