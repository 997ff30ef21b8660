"""Calls with wrong types: mypy must flag every line marked ``# error``."""

# ruff: noqa: F841, B018

from __future__ import annotations

from pydantic import BaseModel

from holysheep_async import AsyncClient, Client
from holysheep_async.types import ChatCompletionMessageParam

MESSAGES: list[ChatCompletionMessageParam] = [{"role": "user", "content": "Hi"}]


class Answer(BaseModel):
    city: str


async def wrong_async(client: AsyncClient) -> None:
    await client.chat.create(model="m", messages=MESSAGES, temperature="hot")  # error
    await client.chat.create(model="m", messages=MESSAGES, temprature=0.2)  # error
    await client.chat.create(model="m", messages=[{"role": "robot", "content": "x"}])  # error
    await client.chat.create(model="m", messages=MESSAGES, reasoning_effort="extreme")  # error
    await client.chat.create(model="m", messages=MESSAGES, extra_headers={"X": 1})  # error
    client.chat.stream(model="m", messages=MESSAGES, tool_choice="sometimes")  # error
    done = await client.chat.create(model="m", messages=MESSAGES, response_format=Answer)
    number: int = done.parsed.city  # error
    await client.embeddings.create(model="m", input="x", encoding_format="int8")  # error
    await client.files.create(b"x", purpose="homework")  # error
    saved: str = await client.files.content("file-1")  # error
    await client.batches.run([], extra_query=["tenant"])  # error


def wrong_sync(client: Client) -> None:
    client.chat.create(model="m", messages=MESSAGES, max_tokens="ten")  # error
    client.batches.retrieve(123)  # error
    client.batches.wait("batch_1", request_timeout="soon")  # error
    client.batches.submit([], extra_headers={"X": 1})  # error
    text: int = client.chat.create(model="m", messages=MESSAGES).text  # error
    client.models.retrieve("m", timeout="soon")  # error
    written: bytes = client.files.content("file-1", "out.jsonl")  # error
    for chunk in client.chat.stream(model="m", messages=MESSAGES):
        chunk.upper()
        chunk.choices  # error
