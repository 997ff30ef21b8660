"""client.chat.stream: text deltas, metrics, retries, resume, idle timeout, cancellation.

Against the emulator (faults injected per request), and against respx where the
test needs a byte-exact server reply split across network reads.
"""

from __future__ import annotations

import gzip
import json
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import anyio
import anyio.lowlevel
import httpx
import pytest
import respx

from holysheep_async import (
    APIConnectionError,
    AsyncClient,
    BadRequestError,
    ChatCompletionChunk,
    IncompleteStreamError,
    InvalidResponseError,
    StreamError,
    StreamIdleTimeout,
)
from holysheep_async.testing import Fault, MockServer, answer_text, answer_tokens

from .conftest import FakeSleep

pytestmark = pytest.mark.anyio

MSGS = [{"role": "user", "content": "Tell me about sheep."}]
TOKENS = answer_tokens(MSGS, 16)
TEXT = answer_text(MSGS, 16)


def last_body(server: MockServer) -> dict[str, Any]:
    body = server.requests[-1].json()
    assert isinstance(body, dict)
    return body


@pytest.fixture
def mark(server: MockServer) -> Callable[[], int]:
    """How many requests the emulator got since the fixture was made."""
    start = len(server.requests)
    return lambda: len(server.requests) - start


def make_client(server: MockServer, fake_sleep: FakeSleep, **kw: Any) -> AsyncClient:
    client = AsyncClient(api_key="test-key", base_url=server.base_url, **kw)
    client._requester.sleep = fake_sleep
    return client


# -- the happy path -------------------------------------------------------------


async def test_text_deltas_in_order_with_usage_and_metrics(
    client: AsyncClient, server: MockServer
) -> None:
    async with client.chat.stream(model="m", messages=MSGS) as stream:
        got = [text async for text in stream]
    assert got == TOKENS
    assert stream.text == TEXT
    assert stream.finish_reason == "stop"
    assert stream.done is True
    assert stream.usage is not None and stream.usage.completion_tokens == 16
    assert last_body(server)["stream_options"] == {"include_usage": True}
    m = stream.metrics
    assert (m.deltas, m.tokens, m.attempts, m.resumes) == (16, 16, 1, 0)
    assert m.chunks == 1 + 16 + 1 + 1  # role, content, finish, usage
    assert m.ttft is not None and m.total is not None and m.total >= m.ttft
    assert len(m.gaps) == 15 and m.max_gap == max(m.gaps)
    assert m.tokens_per_s is None or m.tokens_per_s > 0
    assert stream.response is None  # closed


async def test_iterated_directly_without_async_with(client: AsyncClient) -> None:
    got = [text async for text in client.chat.stream(model="m", messages=MSGS)]
    assert "".join(got) == TEXT


async def test_server_ignoring_include_usage_still_works(
    client: AsyncClient, server: MockServer
) -> None:
    server.inject(Fault("no_usage"))
    async with client.chat.stream(model="m", messages=MSGS) as stream:
        assert "".join([t async for t in stream]) == TEXT
    assert stream.usage is None
    assert stream.metrics.tokens == 16  # counted from the deltas


async def test_include_usage_off_and_stream_options_untouched(
    client: AsyncClient, server: MockServer
) -> None:
    async with client.chat.stream(model="m", messages=MSGS, include_usage=False) as stream:
        assert [t async for t in stream] == TOKENS
    assert "stream_options" not in last_body(server)
    opts = {"include_usage": False}
    async with client.chat.stream(model="m", messages=MSGS, stream_options=opts) as stream:
        assert [t async for t in stream] == TOKENS
    assert last_body(server)["stream_options"] == opts


async def test_usage_reaches_the_usage_hooks(client: AsyncClient) -> None:
    seen: list[tuple[str, int, bool]] = []
    client._requester.usage_hooks.append(lambda m, u, b: seen.append((m, u.total_tokens, b)))
    async with client.chat.stream(model="m", messages=MSGS) as stream:
        async for _ in stream:
            pass
    assert stream.usage is not None
    assert seen == [("m", stream.usage.total_tokens, False)]


async def test_typed_chunks_with_n_choices_and_logprobs(client: AsyncClient) -> None:
    texts: dict[int, str] = {0: "", 1: ""}
    chunks: list[ChatCompletionChunk] = []
    async with client.chat.stream(model="m", messages=MSGS, n=2, logprobs=True) as stream:
        async for chunk in stream.chunks():
            chunks.append(chunk)
            for choice in chunk.choices:
                texts[choice.index] += choice.delta.content or ""
    assert all(isinstance(c, ChatCompletionChunk) for c in chunks)
    assert texts == {0: TEXT, 1: answer_text(MSGS, 16, choice=1)}
    assert stream.text == TEXT
    with_logprobs = [c for c in chunks if c.choices and c.choices[0].delta.content]
    assert with_logprobs[0].choices[0].logprobs["content"][0]["token"] == TOKENS[0]
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 32


@pytest.mark.parametrize("kind", ["relay", "ping"])
async def test_relay_and_ping_styles_decode_the_same(
    client: AsyncClient, server: MockServer, kind: str
) -> None:
    server.inject(Fault(kind))
    async with client.chat.stream(model="m", messages=MSGS) as stream:
        assert [t async for t in stream] == TOKENS
    assert stream.done and stream.usage is not None


async def test_slow_first_token_is_in_ttft(client: AsyncClient, server: MockServer) -> None:
    server.inject(Fault("slow_first", delay=0.2))
    async with client.chat.stream(model="m", messages=MSGS) as stream:
        assert "".join([t async for t in stream]) == TEXT
    # A lower bound only: the server waited this long before the first token.
    assert stream.metrics.ttft is not None and stream.metrics.ttft >= 0.15


# -- retries before the first token ---------------------------------------------


async def test_429_before_the_stream_is_retried_invisibly(
    client: AsyncClient, server: MockServer, fake_sleep: FakeSleep, mark: Callable[[], int]
) -> None:
    server.inject(Fault("status", status=429, headers={"retry-after": "0.5"}))
    async with client.chat.stream(model="m", messages=MSGS) as stream:
        assert [t async for t in stream] == TOKENS
    assert mark() == 2
    assert fake_sleep.calls == [0.5]
    assert stream.metrics.attempts == 2


async def test_5xx_then_drop_before_first_token_then_success(
    client: AsyncClient, server: MockServer, fake_sleep: FakeSleep, mark: Callable[[], int]
) -> None:
    server.inject(Fault("status", status=503))
    server.inject(Fault("drop", after=0))
    async with client.chat.stream(model="m", messages=MSGS) as stream:
        assert [t async for t in stream] == TOKENS
    assert mark() == 3
    assert len(fake_sleep.calls) == 2
    assert stream.metrics.attempts == 3


async def test_one_retry_budget_for_request_and_stream(
    server: MockServer, fake_sleep: FakeSleep, mark: Callable[[], int]
) -> None:
    server.inject(Fault("status", status=503))
    server.inject(Fault("drop", after=0))
    async with make_client(server, fake_sleep, max_retries=1) as client:
        with pytest.raises(APIConnectionError) as info:
            async with client.chat.stream(model="m", messages=MSGS) as stream:
                async for _ in stream:
                    pass
    assert mark() == 2  # 1 try + 1 retry, shared
    assert info.value.partial_text is None


async def test_overloaded_error_object_before_first_token_is_retried(
    client: AsyncClient, server: MockServer, mark: Callable[[], int]
) -> None:
    server.inject(Fault("error", after=0))
    async with client.chat.stream(model="m", messages=MSGS) as stream:
        assert [t async for t in stream] == TOKENS
    assert mark() == 2


async def test_other_error_object_is_raised_not_retried(
    client: AsyncClient, server: MockServer, mark: Callable[[], int]
) -> None:
    server.inject(
        Fault("error", after=0, code="context_length_exceeded", message="Prompt too long.")
    )
    with pytest.raises(StreamError, match="Prompt too long") as info:
        async with client.chat.stream(model="m", messages=MSGS) as stream:
            async for _ in stream:
                pass
    assert info.value.code == "context_length_exceeded"
    assert mark() == 1


async def test_rate_limit_error_object_is_retried_but_quota_is_not(
    client: AsyncClient, server: MockServer, mark: Callable[[], int]
) -> None:
    server.inject(Fault("error", after=0, code="rate_limit_exceeded", message="Slow down"))
    async with client.chat.stream(model="m", messages=MSGS) as stream:
        assert "".join([t async for t in stream]) == TEXT
    assert mark() == 2
    server.inject(Fault("error", after=0, code="insufficient_quota", message="rate limit: quota"))
    with pytest.raises(StreamError, match="quota"):
        async for _ in client.chat.stream(model="m", messages=MSGS):
            pass
    assert mark() == 3


async def test_rate_limit_error_inside_the_stream_pauses_the_whole_client(
    client: AsyncClient, server: MockServer
) -> None:
    limiter = client._requester.limiter
    server.inject(Fault("error", after=0, code="server_error", message="overloaded"))
    async with client.chat.stream(model="m", messages=MSGS) as stream:
        assert "".join([t async for t in stream]) == TEXT
    assert limiter.stats().cooldowns == 0  # overloaded: retried, but no pause for others
    server.inject(Fault("error", after=0, code="rate_limit_exceeded", message="Slow down"))
    async with client.chat.stream(model="m", messages=MSGS) as stream:
        assert "".join([t async for t in stream]) == TEXT
    assert limiter.stats().cooldowns == 1  # a 429 in disguise: the shared cooldown, as for a 429
    server.inject(Fault("error", after=0, code=None, message="Too Many Requests, try later"))
    async with client.chat.stream(model="m", messages=MSGS) as stream:
        assert "".join([t async for t in stream]) == TEXT
    assert limiter.stats().cooldowns == 2


async def test_stream_cut_before_any_text_is_retried(
    client: AsyncClient, server: MockServer, mark: Callable[[], int]
) -> None:
    server.inject(Fault("truncate", after=0))
    async with client.chat.stream(model="m", messages=MSGS) as stream:
        assert [t async for t in stream] == TOKENS
    assert mark() == 2


async def test_stream_options_rejected_by_the_server_is_sent_again_without(
    client: AsyncClient, server: MockServer, mark: Callable[[], int]
) -> None:
    server.inject(
        Fault(
            "status", status=400, message="Unrecognized request argument supplied: stream_options"
        )
    )
    async with client.chat.stream(model="m", messages=MSGS) as stream:
        assert [t async for t in stream] == TOKENS
    assert mark() == 2
    assert "stream_options" not in last_body(server)
    assert stream.usage is None
    server.inject(Fault("status", status=400, message="Bad model"))
    with pytest.raises(BadRequestError, match="Bad model"):
        async for _ in client.chat.stream(model="m", messages=MSGS):
            pass


# -- failures after text: typed error, partial text, nothing twice ----------------


async def consume(stream: AsyncIterator[str], got: list[str]) -> None:
    async for text in stream:
        got.append(text)


async def test_drop_after_text_raises_with_partial_text(
    client: AsyncClient, server: MockServer, mark: Callable[[], int]
) -> None:
    server.inject(Fault("drop", after=5))
    got: list[str] = []
    with pytest.raises(APIConnectionError) as info:
        async with client.chat.stream(model="m", messages=MSGS) as stream:
            await consume(stream, got)
    assert got == TOKENS[:5]
    assert info.value.partial_text == "".join(TOKENS[:5]) == stream.text
    assert mark() == 1  # never retried silently


async def test_error_object_after_text_raises_stream_error_with_partial_text(
    client: AsyncClient, server: MockServer
) -> None:
    server.inject(Fault("error", after=3))
    got: list[str] = []
    with pytest.raises(StreamError, match="overloaded") as info:
        await consume(client.chat.stream(model="m", messages=MSGS), got)
    assert got == TOKENS[:3]
    assert info.value.partial_text == "".join(TOKENS[:3])


async def test_cut_stream_is_never_a_silent_shorter_answer(
    client: AsyncClient, server: MockServer
) -> None:
    server.inject(Fault("truncate", after=4))
    got: list[str] = []
    with pytest.raises(IncompleteStreamError, match="neither") as info:
        await consume(client.chat.stream(model="m", messages=MSGS), got)
    assert info.value.partial_text == "".join(got) == "".join(TOKENS[:4])


async def test_malformed_event_raises_and_is_not_retried(
    client: AsyncClient, server: MockServer, mark: Callable[[], int]
) -> None:
    server.inject(Fault("malformed", after=2))
    with pytest.raises(StreamError, match="Malformed event") as info:
        await consume(client.chat.stream(model="m", messages=MSGS), [])
    assert info.value.code == "malformed_event"
    assert info.value.partial_text == "".join(TOKENS[:2])
    server.inject(Fault("malformed", after=0))
    with pytest.raises(StreamError, match="Malformed event"):
        await consume(client.chat.stream(model="m", messages=MSGS), [])
    assert mark() == 2


async def test_missing_done_after_finish_reason_is_reported_not_fatal(
    client: AsyncClient, server: MockServer, caplog: pytest.LogCaptureFixture
) -> None:
    server.inject(Fault("no_done"))
    with caplog.at_level(logging.WARNING, logger="holysheep_async"):
        async with client.chat.stream(model="m", messages=MSGS) as stream:
            assert "".join([t async for t in stream]) == TEXT
    assert stream.done is False and stream.finish_reason == "stop"
    assert "without 'data: [DONE]'" in caplog.text


# -- idle timeout ----------------------------------------------------------------


async def test_stall_with_pings_raises_idle_timeout_with_partial_text(
    client: AsyncClient, server: MockServer
) -> None:
    # The stall never ends and pings every 50 ms: if pings reset the idle timer
    # this would hang, and the outer guard would fail the test instead.
    server.inject(Fault("stall", after=2, ping=0.05))
    got: list[str] = []
    with anyio.fail_after(20), pytest.raises(StreamIdleTimeout) as info:
        await consume(client.chat.stream(model="m", messages=MSGS, idle_timeout=0.3), got)
    assert got == TOKENS[:2]
    assert info.value.partial_text == "".join(TOKENS[:2])
    assert "pings do not count" in str(info.value)


async def test_stall_before_first_token_is_retried(
    client: AsyncClient, server: MockServer, mark: Callable[[], int]
) -> None:
    server.inject(Fault("stall", after=0))
    with anyio.fail_after(20):
        async with client.chat.stream(model="m", messages=MSGS, idle_timeout=0.2) as stream:
            assert [t async for t in stream] == TOKENS
    assert mark() == 2


async def test_short_stall_within_the_idle_timeout_is_fine(
    client: AsyncClient, server: MockServer, mark: Callable[[], int]
) -> None:
    server.inject(Fault("stall", after=4, delay=0.05))
    async with client.chat.stream(model="m", messages=MSGS, idle_timeout=10) as stream:
        assert [t async for t in stream] == TOKENS
    assert mark() == 1


async def test_client_stream_idle_timeout_is_the_default(
    server: MockServer, fake_sleep: FakeSleep
) -> None:
    server.inject(Fault("stall", after=1))
    async with make_client(server, fake_sleep, stream_idle_timeout=0.2, max_retries=0) as client:
        with anyio.fail_after(20), pytest.raises(StreamIdleTimeout):
            await consume(client.chat.stream(model="m", messages=MSGS), [])


@pytest.mark.parametrize("bad", [0, -1, float("nan"), "10"])
async def test_bad_idle_timeout_is_refused(client: AsyncClient, bad: Any) -> None:
    with pytest.raises(ValueError, match="idle_timeout"):
        client.chat.stream(model="m", messages=MSGS, idle_timeout=bad)


# -- resume ----------------------------------------------------------------------


async def test_resume_continues_a_dropped_answer_seamlessly(
    client: AsyncClient, server: MockServer, mark: Callable[[], int]
) -> None:
    server.inject(Fault("drop", after=5))
    got: list[str] = []
    async with client.chat.stream(model="m", messages=MSGS, resume=True) as stream:
        await consume(stream, got)
    assert got == TOKENS  # each token exactly once
    assert stream.text == TEXT and stream.finish_reason == "stop"
    assert stream.metrics.resumes == 1 and mark() == 2
    follow_up = last_body(server)
    assert follow_up["messages"][-1] == {"role": "assistant", "content": "".join(TOKENS[:5])}


async def test_resume_shrinks_max_tokens_and_keeps_the_whole_answer(
    client: AsyncClient, server: MockServer
) -> None:
    server.inject(Fault("stall", after=3))
    async with client.chat.stream(
        model="m", messages=MSGS, max_tokens=10, resume="vllm", idle_timeout=0.2
    ) as stream:
        got = [t async for t in stream]
    assert got == answer_tokens(MSGS, 10)
    body = last_body(server)
    assert body["max_tokens"] == 7
    assert body["continue_final_message"] is True and body["add_generation_prompt"] is False


async def test_resume_prefix_strategy_and_custom_callable(
    client: AsyncClient, server: MockServer
) -> None:
    server.inject(Fault("truncate", after=2))
    async with client.chat.stream(model="m", messages=MSGS, resume="prefix") as stream:
        assert [t async for t in stream] == TOKENS
    assert last_body(server)["messages"][-1]["prefix"] is True

    def mine(body: dict[str, Any], partial: str) -> dict[str, Any]:
        return {**body, "messages": [*body["messages"], {"role": "assistant", "content": partial}]}

    server.inject(Fault("error", after=6, code="server_error"))
    async with client.chat.stream(model="m", messages=MSGS, resume=mine) as stream:
        assert [t async for t in stream] == TOKENS


async def test_failed_resume_raises_the_original_error_with_partial_text(
    client: AsyncClient, server: MockServer
) -> None:
    server.inject(Fault("drop", after=3))
    server.inject(Fault("status", status=400, message="prefix not supported"))
    with pytest.raises(APIConnectionError) as info:
        await consume(client.chat.stream(model="m", messages=MSGS, resume=True), [])
    assert info.value.partial_text == "".join(TOKENS[:3])
    assert isinstance(info.value.__cause__, BadRequestError)


async def test_resume_arguments_are_checked(client: AsyncClient) -> None:
    with pytest.raises(ValueError, match="one choice"):
        client.chat.stream(model="m", messages=MSGS, n=2, resume=True)
    with pytest.raises(ValueError, match="unknown resume strategy"):
        client.chat.stream(model="m", messages=MSGS, resume="magic")


# -- cancellation and cleanup ----------------------------------------------------


async def test_break_inside_async_with_closes_the_response(client: AsyncClient) -> None:
    async with client.chat.stream(model="m", messages=MSGS, max_tokens=500) as stream:
        async for _ in stream:
            assert stream.response is not None
            break
        assert stream.response is not None  # still open inside the block...
    assert stream.response is None  # ...closed on leaving it
    assert stream.text == TOKENS[0]


async def test_cancelled_scope_closes_the_response(client: AsyncClient) -> None:
    with anyio.CancelScope() as scope:
        async with client.chat.stream(model="m", messages=MSGS, max_tokens=500) as stream:
            async for _ in stream:
                scope.cancel()
                await anyio.lowlevel.checkpoint()  # a checkpoint: the cancellation lands here
    assert scope.cancelled_caught
    assert stream.response is None


async def test_a_stream_is_iterated_once(client: AsyncClient) -> None:
    async with client.chat.stream(model="m", messages=MSGS) as stream:
        async for _ in stream:
            pass
        with pytest.raises(RuntimeError, match="only once"):
            async for _ in stream:
                pass


@pytest.mark.filterwarnings("ignore:Async generator:ResourceWarning")
async def test_a_thousand_cancelled_streams_leak_no_connection(
    client: AsyncClient, server: MockServer
) -> None:
    """Break, leave `async with`, cancel a scope: each closes its connection at once."""

    async def one(i: int) -> None:
        stream = client.chat.stream(model="m", messages=MSGS, max_tokens=40)
        if i % 3 == 0:
            async with stream:
                async for _ in stream:
                    break
        elif i % 3 == 1:
            with anyio.CancelScope() as scope:
                async with stream:
                    async for _ in stream:
                        scope.cancel()
                        await anyio.lowlevel.checkpoint()
        else:
            async with stream:
                async for _ in stream:
                    await stream.aclose()
        assert stream.response is None

    for _ in range(10):
        async with anyio.create_task_group() as tg:
            for i in range(100):
                tg.start_soon(one, i)
    transport = client.http_client._transport
    if hasattr(transport, "idle_connections"):  # our own transport (the default)
        kept = transport.idle_connections
    else:  # httpx's pool (HOLYSHEEP_TRANSPORT=httpx)
        pool = transport._pool  # type: ignore[attr-defined]
        assert all(conn.is_idle() for conn in pool.connections)
        kept = len(pool.connections)
    # The emulator sees the connections go: no more than the pool keeps idle.
    left = await anyio.to_thread.run_sync(server.wait_connections, kept)
    assert left <= kept


# -- byte-exact replies (respx) --------------------------------------------------

BASE = "https://relay.test/v1"


class Reads(httpx.AsyncByteStream):
    """A response body that arrives in exactly these network reads."""

    def __init__(self, reads: list[bytes], error: Exception | None = None) -> None:
        self.reads = reads
        self.error = error

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for read in self.reads:
            yield read
        if self.error is not None:
            raise self.error


def sse_reply(
    reads: list[bytes], error: Exception | None = None, ctype: str = "text/event-stream"
) -> httpx.Response:
    return httpx.Response(
        200, headers={"content-type": ctype, "x-request-id": "req_x"}, stream=Reads(reads, error)
    )


def chunk(content: str | None = None, finish: str | None = None, **extra: Any) -> bytes:
    delta = {} if content is None else {"content": content}
    obj = {
        "id": "c1",
        "object": "chat.completion.chunk",
        "model": "m",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        **extra,
    }
    return json.dumps(obj).encode()


@pytest.fixture
def relay(fake_sleep: FakeSleep) -> Any:
    # using="httpx": mock at the httpx level, whichever transport sits below.
    with respx.mock(base_url=BASE, assert_all_called=False, using="httpx") as router:
        yield router


async def run_against(relay: Any, *replies: httpx.Response, **kw: Any) -> list[str]:
    relay.post("/chat/completions").mock(side_effect=list(replies))
    async with AsyncClient(api_key="k", base_url=BASE) as client:
        client._requester.sleep = FakeSleep()
        got: list[str] = []
        async with client.chat.stream(model="m", messages=MSGS, **kw) as stream:
            await consume(stream, got)
        run_against.stream = stream  # type: ignore[attr-defined]
        return got


async def test_every_quirk_at_once_split_across_reads(relay: Any) -> None:
    body = (
        b"\xef\xbb\xbf: welcome\r\n\r\n"
        b"event: ping\r\ndata: {}\r\n\r\n"
        b"data:" + chunk("") + b"\r\r"  # CR only, empty delta
        b"data: " + chunk("h\u00e9") + b"\n\n"
        b":ping\n\n"
        b"data: " + chunk("\x07bell\t") + b"\r\n\r\n"  # escaped control characters
        b'data: {"id":"c1","choices":[{"index":0,"delta":{"content":"a\n'
        b'data: b"},"finish_reason":null}]}\n\n'  # multi-line data, raw newline
        b"data: " + chunk("\U0001f411 end", "stop") + b"\n\n"
        b'data: {"id":"c1","choices":[],"error":null,'
        b'"usage":{"prompt_tokens":3,"completion_tokens":5,"total_tokens":8}}\n\n'
        b"data: [DONE]"
    )
    reads = [body[i : i + 5] for i in range(0, len(body), 5)]
    got = await run_against(relay, sse_reply(reads))
    assert got == ["h\u00e9", "\x07bell\t", "a\nb", "\U0001f411 end"]
    stream = run_against.stream  # type: ignore[attr-defined]
    assert stream.usage.total_tokens == 8 and stream.done


async def test_tool_call_deltas_pass_through_chunks(relay: Any) -> None:
    calls = [
        {
            "index": 0,
            "id": "call_1",
            "type": "function",
            "function": {"name": "f", "arguments": ""},
        },
        {"index": 0, "function": {"arguments": '{"x": 1}'}},
    ]
    events = [
        {"id": "c", "choices": [{"index": 0, "delta": {"role": "assistant", "tool_calls": [c]}}]}
        for c in calls
    ]
    events.append(
        {"id": "c", "choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]}
    )
    body = b"".join(b"data: " + json.dumps(e).encode() + b"\n\n" for e in events)
    relay.post("/chat/completions").mock(return_value=sse_reply([body + b"data: [DONE]\n\n"]))
    async with (
        AsyncClient(api_key="k", base_url=BASE) as client,
        client.chat.stream(model="m", messages=MSGS) as stream,
    ):
        chunks = [c async for c in stream.chunks()]
    deltas = [c.choices[0].delta.tool_calls for c in chunks if c.choices[0].delta.tool_calls]
    assert deltas[0][0].function.name == "f"
    assert deltas[1][0].function.arguments == '{"x": 1}'
    assert stream.finish_reason == "tool_calls" and stream.text == ""


async def test_error_event_inside_a_200_stream(relay: Any) -> None:
    body = b"data: " + chunk("hi") + b"\n\nevent: error\ndata: upstream exploded\n\n"
    relay.post("/chat/completions").mock(return_value=sse_reply([body]))
    with pytest.raises(StreamError, match="upstream exploded") as info:
        await run_against(relay, sse_reply([body]))
    assert info.value.partial_text == "hi"


async def test_connection_lost_after_the_finish_reason_keeps_the_answer(
    relay: Any, caplog: pytest.LogCaptureFixture
) -> None:
    body = b"data: " + chunk("all") + b"\n\ndata: " + chunk(None, "stop") + b"\n\n"
    with caplog.at_level(logging.WARNING, logger="holysheep_async"):
        got = await run_against(relay, sse_reply([body], httpx.ReadError("reset")))
    assert got == ["all"]
    assert "usage may be missing" in caplog.text


async def test_connection_lost_mid_answer_is_an_error(relay: Any) -> None:
    body = b"data: " + chunk("part") + b"\n\n"
    with pytest.raises(APIConnectionError, match="broke mid-stream") as info:
        await run_against(relay, sse_reply([body], httpx.RemoteProtocolError("peer closed")))
    assert info.value.partial_text == "part"


async def test_server_that_ignores_stream_true_answers_json(relay: Any) -> None:
    completion = {
        "id": "x",
        "object": "chat.completion",
        "model": "m",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "whole"},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    }
    reply = sse_reply([json.dumps(completion).encode()], ctype="application/json")
    assert await run_against(relay, reply) == ["whole"]
    assert run_against.stream.usage.total_tokens == 2  # type: ignore[attr-defined]


async def test_html_page_with_status_200_is_an_invalid_response(relay: Any) -> None:
    page = b"<html><title>Portal login</title></html>"
    with pytest.raises(InvalidResponseError, match="Portal login"):
        await run_against(relay, sse_reply([page], ctype="text/html"))


async def test_non_object_event_is_malformed(relay: Any) -> None:
    with pytest.raises(StreamError, match="not a JSON object"):
        await run_against(relay, sse_reply([b"data: [1, 2]\n\n"]))


class PingsForever(httpx.AsyncByteStream):
    """Some text, then keep-alives of every kind and never another data event."""

    async def __aiter__(self) -> AsyncIterator[bytes]:
        yield b"data: " + chunk("so far") + b"\n\n"
        while True:
            yield b": ping\n\nevent: ping\ndata: {}\n\ndata:\n\n"
            await anyio.sleep(0.01)


async def test_no_kind_of_keep_alive_resets_the_idle_timeout(relay: Any) -> None:
    headers = {"content-type": "text/event-stream"}
    reply = httpx.Response(200, headers=headers, stream=PingsForever())
    with anyio.fail_after(20), pytest.raises(StreamIdleTimeout) as info:
        await run_against(relay, reply, idle_timeout=0.2)
    assert info.value.partial_text == "so far"


async def test_gzip_encoded_stream_is_decoded(relay: Any) -> None:
    raw = gzip.compress(b"data: " + chunk("zipped", "stop") + b"\n\ndata: [DONE]\n\n")
    reply = httpx.Response(
        200,
        headers={"content-type": "text/event-stream", "content-encoding": "gzip"},
        stream=Reads([raw[:10], raw[10:]]),
    )
    assert await run_against(relay, reply) == ["zipped"]
