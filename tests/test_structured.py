"""Structured outputs: response_format=<pydantic model> sends a strict schema, parses the answer."""

from __future__ import annotations

import httpx
import pytest
import respx
from pydantic import BaseModel

from holysheep_async import AsyncClient, RefusalError, StructuredOutputError
from holysheep_async._structured import strict_schema
from holysheep_async.testing import MockServer
from holysheep_async.types import ChatCompletionMessageParam

from .spec import validate

pytestmark = pytest.mark.anyio

ASK: list[ChatCompletionMessageParam] = [{"role": "user", "content": "A sheep, please"}]
REFUSE: list[ChatCompletionMessageParam] = [{"role": "user", "content": "[refuse] a sheep"}]


class Owner(BaseModel):
    name: str


class Sheep(BaseModel):
    name: str
    age: int
    weight_kg: float
    tags: list[str]
    owner: Owner
    note: str | None = None


def test_the_schema_is_strict() -> None:
    schema = strict_schema(Sheep)
    assert schema["additionalProperties"] is False
    assert schema["required"] == ["name", "age", "weight_kg", "tags", "owner", "note"]
    owner = schema["$defs"]["Owner"]
    assert owner["additionalProperties"] is False and owner["required"] == ["name"]
    assert "default" not in schema["properties"]["note"]  # strict mode has no null defaults


async def test_create_sends_the_schema_and_parses(client: AsyncClient, server: MockServer) -> None:
    completion = await client.chat.create(model="gpt-4o", messages=ASK, response_format=Sheep)
    sheep = completion.parsed
    assert isinstance(sheep, Sheep)
    assert sheep.owner.name == "sheep" and sheep.age == 1 and sheep.tags == ["sheep"]
    assert completion.text == sheep.model_dump_json().replace(",", ", ").replace(":", ": ")
    body = server.requests[-1].json()
    fmt = body["response_format"]
    assert fmt["type"] == "json_schema"
    assert fmt["json_schema"]["name"] == "Sheep" and fmt["json_schema"]["strict"] is True
    assert fmt["json_schema"]["schema"] == strict_schema(Sheep)
    validate("CreateChatCompletionRequest", body)


async def test_stream_gives_the_parsed_object_at_the_end(client: AsyncClient) -> None:
    async with client.chat.stream(model="gpt-4o", messages=ASK, response_format=Sheep) as stream:
        pieces = []
        async for text in stream:
            pieces.append(text)
            with pytest.raises(RuntimeError, match="once the stream has ended"):
                _ = stream.parsed
    assert len(pieces) > 1  # it really streamed the JSON
    assert stream.parsed == Sheep.model_validate_json("".join(pieces))
    assert stream.parsed.owner.name == "sheep"


async def test_a_refusal_is_a_refusal_error(client: AsyncClient) -> None:
    with pytest.raises(RefusalError) as info:
        await client.chat.create(model="gpt-4o", messages=REFUSE, response_format=Sheep)
    assert "can't help" in info.value.refusal
    assert info.value.completion is not None  # usage and id are still there
    assert client.usage.output_tokens > 0

    async with client.chat.stream(model="gpt-4o", messages=REFUSE, response_format=Sheep) as s:
        assert [t async for t in s] == []
    assert s.refusal is not None and "can't help" in s.refusal
    with pytest.raises(RefusalError):
        _ = s.parsed


async def test_an_answer_that_does_not_fit_is_reported() -> None:
    answer = {
        "id": "c1",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": '{"name": "Dolly", "age": '},
                "finish_reason": "length",
            }
        ],
    }
    with respx.mock(base_url="https://relay.test/v1", using="httpx") as router:
        router.post("/chat/completions").mock(return_value=httpx.Response(200, json=answer))
        async with AsyncClient(api_key="k", base_url="https://relay.test/v1") as client:
            with pytest.raises(StructuredOutputError) as info:
                await client.chat.create(model="m", messages=ASK, response_format=Sheep)
    error = info.value
    assert not isinstance(error, RefusalError)
    assert error.finish_reason == "length"
    assert error.text == '{"name": "Dolly", "age": '
    assert "not a valid Sheep" in str(error) and "max_tokens" in str(error)


async def test_a_dict_response_format_is_sent_as_is(
    client: AsyncClient, server: MockServer
) -> None:
    completion = await client.chat.create(
        model="gpt-4o", messages=ASK, response_format={"type": "json_object"}
    )
    assert server.requests[-1].json()["response_format"] == {"type": "json_object"}
    assert completion.text.startswith('{"answer": ')
    with pytest.raises(TypeError, match="response_format must be"):
        await client.chat.create(model="gpt-4o", messages=ASK, response_format="json")  # type: ignore[call-overload]


async def test_the_emulator_answers_any_schema_deterministically() -> None:
    async with MockServer() as server, AsyncClient(api_key="k", base_url=server.base_url) as c:
        first = await c.chat.create(model="m", messages=ASK, response_format=Sheep)
        second = await c.chat.create(model="m", messages=ASK, response_format=Sheep)
    assert first.parsed == second.parsed
