"""The tool loop of ``chat.run_tools`` / ``chat.stream_tools``: ask, run the tools, answer.

Each turn sends the transcript with the tools; when the answer asks for tool
calls, they run (at once, in parallel, when it asks for several), their
answers go back as ``tool`` messages, and the next turn follows. It ends with
the first answer that asks for no tool, or raises :class:`ToolLoopError`
(with the transcript) when ``max_turns`` answers all asked for tools.

- The transcript is kept on the client's side: every assistant turn as the
  server sent it, ``reasoning_content`` included (DeepSeek wants it back in
  tool-call turns), every call with an id (one the server left out is made up,
  the same in the call and in its answer).
- Every turn is an ordinary ``chat.create`` / ``chat.stream``: the client's
  limits, retries, usage and cost apply to each.
- A tool that raises, a call with arguments that do not validate, a call to
  a tool that does not exist: the model gets the error as the tool's answer.

This module names no class above it: the calls it makes are handed in.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import anyio
from typing_extensions import Self

from . import _otel
from ._tools import Tool, ToolOutcome
from .errors import InvalidResponseError, ToolLoopError
from .models import ChatCompletion, ToolCall, Usage
from .streaming import ChatStream, ChatStreamEvent

__all__ = ["ToolResult", "ToolRun", "ToolRunStream", "run_tools"]

Create = Callable[..., Awaitable[ChatCompletion]]
Stream = Callable[..., ChatStream]


@dataclass(frozen=True)
class ToolResult:
    """One tool call and what it gave (also an event of ``stream_tools``: ``"tool.result"``).

    ``output``: the text sent back to the model; ``value``: what the tool
    returned (None when it failed); ``error``: the exception (the model got
    ``Error: ...``); ``turn``: the turn (1, 2, ...) whose answer asked for it.
    """

    type: ClassVar[Literal["tool.result"]] = "tool.result"
    call_id: str
    name: str
    arguments: str
    output: str
    value: Any = None
    error: BaseException | None = None
    turn: int = 0


@dataclass
class ToolRun:
    """What ``run_tools`` did: ``messages`` (the whole transcript: the caller's messages,
    every assistant turn, every tool answer), ``completions`` (every turn's answer; the
    last asks for no tool), ``results`` (every tool call run)."""

    messages: list[dict[str, Any]]
    completions: list[ChatCompletion] = field(default_factory=list)
    results: list[ToolResult] = field(default_factory=list)

    @property
    def completion(self) -> ChatCompletion:
        """The last answer (the one without tool calls)."""
        return self.completions[-1]

    @property
    def text(self) -> str:
        """The last answer's text."""
        return self.completion.text

    @property
    def turns(self) -> int:
        """Calls made to the model."""
        return len(self.completions)

    @property
    def usage(self) -> Usage | None:
        """Tokens of every turn added up (None when no turn reported usage)."""
        usages = [c.usage for c in self.completions if c.usage is not None]
        if not usages:
            return None
        prompt = sum(u.prompt_tokens for u in usages)
        completion = sum(u.completion_tokens for u in usages)
        return Usage(
            prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion
        )


def _calls(completion: ChatCompletion, turn: int) -> list[ToolCall]:
    if not completion.choices:
        raise InvalidResponseError(
            f"turn {turn} of run_tools: the answer has no choices (id {completion.id!r})",
            status_code=200,
            request_id=completion.request_id,
            body=completion.model_dump_json()[:1000],
        )
    calls = list(completion.choices[0].message.tool_calls or ())
    for i, call in enumerate(calls):
        if not call.id:
            # Some servers leave the id out; the tool answer must name the same one.
            calls[i] = call.model_copy(update={"id": f"call_{turn}_{i}"})
    return calls


def _assistant_turn(completion: ChatCompletion, calls: list[ToolCall]) -> dict[str, Any]:
    message = completion.choices[0].message
    turn: dict[str, Any] = {"role": "assistant", "content": message.content}
    if message.reasoning_content:
        turn["reasoning_content"] = message.reasoning_content
    if message.refusal:
        turn["refusal"] = message.refusal
    if calls:
        turn["tool_calls"] = [
            {
                "id": call.id,
                "type": call.type or "function",
                "function": {
                    "name": call.function.name if call.function else "",
                    "arguments": (call.function.arguments if call.function else None) or "",
                },
            }
            for call in calls
        ]
    return turn


async def _run_one(tools: dict[str, Tool], call: ToolCall, turn: int) -> ToolResult:
    name = (call.function.name if call.function else None) or ""
    arguments = (call.function.arguments if call.function else None) or ""
    call_id = call.id or ""
    tool = tools.get(name)
    with _otel.tool_span(name, call_id, tool.description if tool else "", arguments) as span:
        if tool is None:
            error = LookupError(f"no tool named {name!r}; the tools are: {', '.join(tools)}")
            outcome = ToolOutcome(f"Error: {error}", error=error)
        else:
            outcome = await tool.run(arguments)
        if span is not None:
            span.done(outcome.output, outcome.error)
    return ToolResult(call_id, name, arguments, outcome.output, outcome.value, outcome.error, turn)


async def _run_calls(tools: dict[str, Tool], calls: list[ToolCall], turn: int) -> list[ToolResult]:
    """Every call of one answer, at the same time; the results in the calls' order."""
    if len(calls) == 1:
        return [await _run_one(tools, calls[0], turn)]
    results: list[ToolResult | None] = [None] * len(calls)

    async def one(i: int) -> None:
        results[i] = await _run_one(tools, calls[i], turn)

    async with anyio.create_task_group() as group:
        for i in range(len(calls)):
            group.start_soon(one, i)
    return [r for r in results if r is not None]


def _answers(results: list[ToolResult]) -> list[dict[str, Any]]:
    return [{"role": "tool", "tool_call_id": r.call_id, "content": r.output} for r in results]


def _too_many(run: ToolRun, max_turns: int, calls: list[ToolCall]) -> ToolLoopError:
    names = ", ".join(sorted({(c.function.name if c.function else None) or "?" for c in calls}))
    return ToolLoopError(
        f"run_tools: the model still asked for tools ({names}) after max_turns={max_turns}"
        " turns; the transcript (.messages) ends with that turn, its calls not run",
        messages=run.messages,
        completions=run.completions,
    )


def _check_turns(max_turns: int) -> None:
    if not isinstance(max_turns, int) or isinstance(max_turns, bool) or max_turns < 1:
        raise ValueError(f"max_turns must be an int >= 1, got {max_turns!r}")


async def run_tools(
    create: Create,
    tools: dict[str, Tool],
    *,
    messages: Sequence[Any],
    max_turns: int,
    params: dict[str, Any],
) -> ToolRun:
    """The loop with ``chat.create`` (``params``: its keywords but ``messages`` and ``tools``)."""
    _check_turns(max_turns)
    run = ToolRun([dict(m) for m in messages])
    specs = [tool.param() for tool in tools.values()]
    for turn in range(1, max_turns + 1):
        completion = await create(messages=list(run.messages), tools=specs, **params)
        run.completions.append(completion)
        calls = _calls(completion, turn)
        run.messages.append(_assistant_turn(completion, calls))
        if not calls:
            return run
        if turn == max_turns:
            raise _too_many(run, max_turns, calls)
        results = await _run_calls(tools, calls, turn)
        run.results.extend(results)
        run.messages.extend(_answers(results))
    raise AssertionError("unreachable")  # pragma: no cover


class ToolRunStream:
    """``chat.stream_tools(...)``: the tool loop, streamed.

    Iterate it for every turn's stream events (:class:`~.streaming.TextDelta`,
    :class:`~.streaming.ToolCallDone`, ... and a :class:`~.streaming.StreamDone`
    per turn) and a :class:`ToolResult` after each tool ran; ``result`` is the
    :class:`ToolRun` once it has ended. Leaving ``async with`` (or breaking out)
    closes the current stream.
    """

    def __init__(
        self,
        stream: Stream,
        tools: dict[str, Tool],
        *,
        messages: Sequence[Any],
        max_turns: int,
        params: dict[str, Any],
    ) -> None:
        _check_turns(max_turns)
        self._stream = stream
        self._tools = tools
        self._max_turns = max_turns
        self._params = params
        self._run = ToolRun([dict(m) for m in messages])
        self._done = False
        self._gen: AsyncGenerator[ChatStreamEvent | ToolResult, None] | None = None

    @property
    def result(self) -> ToolRun:
        """What the loop did; ``RuntimeError`` before it has ended."""
        if not self._done:
            raise RuntimeError("stream_tools(...).result is known once the loop has ended")
        return self._run

    @property
    def messages(self) -> list[dict[str, Any]]:
        """The transcript so far."""
        return self._run.messages

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        gen, self._gen = self._gen, None
        if gen is not None:
            with anyio.CancelScope(shield=True):
                await gen.aclose()

    def __aiter__(self) -> AsyncIterator[ChatStreamEvent | ToolResult]:
        if self._gen is not None or self._done:
            raise RuntimeError("a ToolRunStream can be iterated only once")
        self._gen = self._turns()
        return self._gen

    async def _turns(self) -> AsyncGenerator[ChatStreamEvent | ToolResult, None]:
        run = self._run
        specs = [tool.param() for tool in self._tools.values()]
        for turn in range(1, self._max_turns + 1):
            stream = self._stream(messages=list(run.messages), tools=specs, **self._params)
            async with stream:
                async for event in stream.events():
                    yield event
            completion = stream.final_completion()
            run.completions.append(completion)
            calls = _calls(completion, turn)
            run.messages.append(_assistant_turn(completion, calls))
            if not calls:
                self._done = True
                return
            if turn == self._max_turns:
                raise _too_many(run, self._max_turns, calls)
            results = await _run_calls(self._tools, calls, turn)
            run.results.extend(results)
            run.messages.extend(_answers(results))
            for result in results:
                yield result
