"""``client.chat.create``: typed results, bodies as the official spec describes them."""

from __future__ import annotations

import jsonschema
import pytest

from holysheep_async import AsyncClient, ChatCompletion, Usage
from holysheep_async.testing import MockServer, answer_text, prompt_tokens

from .spec import validate

pytestmark = pytest.mark.anyio

MESSAGES = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "Name a colour."},
]


async def test_create_returns_a_typed_completion(client: AsyncClient, server: MockServer) -> None:
    completion = await client.chat.create(model="gpt-4o", messages=MESSAGES, max_tokens=7)
    assert isinstance(completion, ChatCompletion)
    assert completion.model == "gpt-4o"
    assert completion.text == answer_text(MESSAGES, 7)
    assert completion.choices[0].finish_reason == "stop"
    assert completion.choices[0].message.role == "assistant"
    assert isinstance(completion.usage, Usage)
    assert completion.usage.completion_tokens == 7
    assert completion.usage.prompt_tokens == prompt_tokens(MESSAGES)
    assert completion.usage.total_tokens == 7 + prompt_tokens(MESSAGES)


async def test_extra_parameters_pass_through_unchanged(
    client: AsyncClient, server: MockServer
) -> None:
    extra = {
        "temperature": 0.3,
        "top_p": 0.9,
        "seed": 42,
        "response_format": {"type": "json_object"},
        "metadata": {"team": "sheep"},
    }
    knob = {"vendor_specific_knob": {"nested": [1, 2, 3]}}
    await client.chat.create(model="gpt-4o", messages=MESSAGES, **extra, extra_body=knob)  # type: ignore[arg-type]
    body = server.requests[-1].json()
    assert body == {"model": "gpt-4o", "messages": MESSAGES, **extra, **knob}


async def test_request_bodies_validate_against_the_official_spec(
    client: AsyncClient, server: MockServer
) -> None:
    await client.chat.create(
        model="gpt-4o", messages=MESSAGES, max_tokens=5, temperature=0.5, n=2, stop=["\n"]
    )
    validate("CreateChatCompletionRequest", server.requests[-1].json())
    async with client.chat.stream(model="gpt-4o", messages=MESSAGES, max_tokens=3) as stream:
        async for _ in stream:
            pass
    streamed = server.requests[-1].json()
    assert streamed["stream"] is True
    assert streamed["stream_options"] == {"include_usage": True}
    validate("CreateChatCompletionRequest", streamed)


def test_the_spec_check_can_fail() -> None:
    with pytest.raises(jsonschema.ValidationError):
        validate("CreateChatCompletionRequest", {"model": "gpt-4o", "messages": "hello"})


async def test_several_choices(client: AsyncClient) -> None:
    completion = await client.chat.create(model="gpt-4o", messages=MESSAGES, n=3, max_tokens=4)
    assert [c.index for c in completion.choices] == [0, 1, 2]
    assert [c.message.content for c in completion.choices] == [
        answer_text(MESSAGES, 4, i) for i in range(3)
    ]


async def test_unknown_fields_from_a_server_are_kept(client: AsyncClient) -> None:
    completion = await client.chat.create(model="gpt-4o", messages=MESSAGES)
    assert completion.system_fingerprint == "fp_holysheep_mock"
    assert completion.model_dump()["object"] == "chat.completion"


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"model": "", "messages": MESSAGES}, "model"),
        ({"model": "m", "messages": "hello"}, "messages"),
        ({"model": "m", "messages": ["hello"]}, r"messages\[0\]"),
        ({"model": "m", "messages": [{"content": "no role"}]}, r"messages\[0\]"),
    ],
)
async def test_bad_arguments_fail_before_sending(
    client: AsyncClient, server: MockServer, kwargs: dict[str, object], match: str
) -> None:
    before = len(server.requests)
    with pytest.raises(TypeError, match=match):
        await client.chat.create(**kwargs)  # type: ignore[arg-type]
    assert len(server.requests) == before


async def test_create_refuses_stream_true(client: AsyncClient) -> None:
    with pytest.raises(ValueError, match=r"chat\.stream"):
        await client.chat.create(model="m", messages=MESSAGES, stream=True)
