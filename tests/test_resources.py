"""client.models, client.embeddings, client.files against the emulator (and the spec)."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from holysheep_async import AsyncClient, NotFoundError
from holysheep_async.pricing import cost
from holysheep_async.testing import MockServer
from holysheep_async.testing._models import embedding_vector

from .spec import validate

pytestmark = pytest.mark.anyio


async def test_models_list_and_retrieve(client: AsyncClient, server: MockServer) -> None:
    models = await client.models.list(extra_headers={"X-Team": "a"}, extra_query={"v": "1"})
    assert "gpt-4o" in [m.id for m in models]
    assert server.requests[-1].headers["x-team"] == "a" and server.requests[-1].query == {"v": "1"}
    assert models[0].request_id == server.requests[-1].request_id
    model = await client.models.retrieve("gpt-4o")
    assert model.id == "gpt-4o" and model.owned_by
    validate("Model", model.model_dump())
    validate("ListModelsResponse", {"object": "list", "data": [m.model_dump() for m in models]})
    with pytest.raises(NotFoundError):
        await client.models.retrieve("no-such-model")
    with pytest.raises(TypeError, match="extra_body has nowhere to go"):
        await client.models.list(extra_body={"x": 1})


async def test_embeddings_float_and_base64(client: AsyncClient, server: MockServer) -> None:
    texts = ["a sheep", "a flock of sheep"]
    floats = await client.embeddings.create(model="text-embedding-3-small", input=texts)
    assert server.requests[-1].json() == {"model": "text-embedding-3-small", "input": texts}
    packed = await client.embeddings.create(
        model="text-embedding-3-small", input=texts, encoding_format="base64"
    )
    assert isinstance(packed.data[0].embedding, str)  # base64 on the wire
    assert packed.vectors == floats.vectors == [embedding_vector(t) for t in texts]
    assert floats.request_id == server.requests[-2].request_id
    assert floats.usage is not None and floats.usage.prompt_tokens > 0
    # Deterministic, and sized by `dimensions`.
    one = await client.embeddings.create(
        model="text-embedding-3-small", input="a sheep", dimensions=3
    )
    assert len(one.vectors[0]) == 3
    assert one.vectors[0] == embedding_vector("a sheep", 3)


async def test_embeddings_cost_goes_into_the_tally(client: AsyncClient) -> None:
    result = await client.embeddings.create(model="text-embedding-3-large", input=["x" * 400])
    assert result.usage is not None
    tokens = result.usage.prompt_tokens
    assert client.usage.input_tokens == tokens
    assert client.usage.cost_usd == pytest.approx(cost("text-embedding-3-large", tokens, 0))
    assert cost("text-embedding-3-small", 1_000_000, 0) == pytest.approx(0.02)


async def test_embeddings_bad_input_is_named(client: AsyncClient) -> None:
    with pytest.raises(ValueError, match="input is empty"):
        await client.embeddings.create(model="m", input=[])
    with pytest.raises(TypeError, match="input must be"):
        await client.embeddings.create(model="m", input=b"bytes")  # type: ignore[arg-type]


async def test_files_create_retrieve_list_delete_content(
    client: AsyncClient, server: MockServer, tmp_path: Path
) -> None:
    source = tmp_path / "notes.jsonl"
    big = b"".join(b'{"line": %d}\n' % i for i in range(50_000))
    source.write_bytes(big)
    from_path = await client.files.create(source, purpose="user_data")
    from_bytes = await client.files.create(b"abc", purpose="user_data")
    from_tuple = await client.files.create(("named.txt", b"xyz"), purpose="batch")
    from_io = await client.files.create(io.BytesIO(b"io!"), purpose="user_data")
    assert from_path.filename == "notes.jsonl" and from_path.bytes == len(big)
    assert from_tuple.filename == "named.txt"
    validate("OpenAIFile", from_path.model_dump(exclude_none=True))

    again = await client.files.retrieve(from_path.id)
    assert again.id == from_path.id and again.request_id == server.requests[-1].request_id

    everything = await client.files.list()
    ids = {f.id for f in everything}
    assert {from_path.id, from_bytes.id, from_tuple.id, from_io.id} <= ids
    batch_files = await client.files.list(purpose="batch")
    assert from_tuple.id in {f.id for f in batch_files}
    assert all(f.purpose == "batch" for f in batch_files)
    assert len(await client.files.list(limit=2)) == 2

    out = await client.files.content(from_path.id, tmp_path / "copy.jsonl")
    assert out.read_bytes() == big
    assert sorted(p.name for p in tmp_path.iterdir()) == ["copy.jsonl", "notes.jsonl"]  # noqa: ASYNC240

    deleted = await client.files.delete(from_bytes.id)
    assert deleted.deleted and deleted.id == from_bytes.id
    validate("DeleteFileResponse", deleted.model_dump())
    with pytest.raises(NotFoundError):
        await client.files.retrieve(from_bytes.id)
    with pytest.raises(ValueError, match="file_id"):
        await client.files.retrieve("../batches")


async def test_file_content_returns_the_bytes_or_streams_to_a_path(
    client: AsyncClient, tmp_path: Path
) -> None:
    """As the official SDK: ``content(id)`` is the file's bytes; with a path, it is written."""
    data = b"".join(b'{"n": %d}\n' % i for i in range(5000))
    file = await client.files.create(data, purpose="user_data")
    content = await client.files.content(file.id)
    assert isinstance(content, bytes) and content == data
    out = await client.files.content(file.id, str(tmp_path / "copy.jsonl"))
    assert isinstance(out, Path) and out.read_bytes() == data
    with pytest.raises(NotFoundError):
        await client.files.content("file-missing")
    with pytest.raises(ValueError, match="file_id"):
        await client.files.content("../batches")


async def test_list_follows_pages() -> None:
    async with MockServer() as server, AsyncClient(api_key="k", base_url=server.base_url) as c:
        made = [await c.files.create(b"%d" % i, purpose="user_data") for i in range(5)]
        listed = await c.files.list(extra_query={"limit": 2})
        # Three pages of at most two; every file once.
        assert sorted(f.id for f in listed) == sorted(f.id for f in made)
        assert len([r for r in server.requests if r.path == "/v1/files" and r.method == "GET"]) == 3


async def test_batch_objects_keep_the_request_id(client: AsyncClient, server: MockServer) -> None:
    batch = await client.batches.submit(
        [{"custom_id": "a", "model": "m", "messages": [{"role": "user", "content": "x"}]}]
    )
    assert batch.request_id == server.requests[-1].request_id
    again = await client.batches.retrieve(batch.id)
    assert again.request_id == server.requests[-1].request_id
