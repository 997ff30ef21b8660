"""OpenTelemetry: a GenAI client span per request and the GenAI client metrics.

Nothing here imports OpenTelemetry until the application has: every hook first
asks :func:`current`, which looks for the API in ``sys.modules`` and, if it is
there, at the tracer and meter providers the application set. Neither imported
nor set (the API's default proxy providers, or ``NoOp*Provider``): the hooks do
nothing, at the cost of two dictionary lookups (API.md: nothing slower without
OpenTelemetry). The providers are read from the API's module globals, because
``get_tracer_provider()`` costs about 2 us a call (an environment lookup);
where those globals are missing (another API version) the public getters are used.

What is recorded follows the GenAI semantic conventions as last released with the
OpenTelemetry semantic conventions (schema 1.44; the names in
``opentelemetry-semantic-conventions`` 0.66b2). They now live in
open-telemetry/semantic-conventions-genai, with no release yet; its unreleased
``gen_ai.client.inference.*`` metrics are not followed. See docs/observability.md.

- span ``chat {model}``, kind CLIENT, child of the caller's current span, with
  ``gen_ai.operation.name``, ``gen_ai.provider.name``, ``gen_ai.request.*``,
  ``gen_ai.response.{id,model,finish_reasons}``, ``gen_ai.usage.*``,
  ``gen_ai.response.time_to_first_chunk`` (streams: the first chunk, which may
  carry no text; the first text is ``holysheep.time_to_first_token``), ``error.type``,
  ``server.address`` / ``server.port``; retries, 429 cooldowns and waits behind
  the client's limits are span events (``holysheep.retry`` ...);
- histograms ``gen_ai.client.operation.duration``, ``gen_ai.client.token.usage``
  and ``gen_ai.client.operation.time_to_first_chunk``, with the conventions'
  bucket boundaries;
- prompts and answers only with ``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=true``
  (as ``gen_ai.input.messages`` / ``gen_ai.output.messages``);
- tools run by ``chat.run_tools``: a span ``execute_tool {name}`` each (kind
  INTERNAL; ``gen_ai.tool.name``, ``gen_ai.tool.call.id``, ``error.type`` when
  it raised; arguments and result with the content opt-in); a chat span's
  output messages (opt-in) carry its reasoning and tool calls, and
  ``gen_ai.usage.reasoning.output_tokens`` its reasoning tokens;
- batches: spans ``batches.run`` (with progress events), ``batches.upload``,
  ``batches.create``, ``batches.wait`` (an event per poll), ``batches.download``.

Modules: ``_providers`` (is anyone listening, where the requests go), ``_chat``
(the chat span and metrics, the hooks), ``_content`` (the opt-in messages),
``_batches`` (the batch spans), ``_tools`` (the tool spans), ``_responses`` (the Responses
API's span, from plain values).

This package sits low: it imports only the wire models (for typing) and
OpenTelemetry, never the client's classes. Callers hand it plain values: the
base URL (``stream_started(base_url, body)``; the decorators take a function
from the decorated method's ``self`` to its base URL), ids, finish reasons,
usage (``ChatTrace.stream_ended``).

Error messages are not recorded (they may quote a server's answer): a failed
span has status ERROR with ``error.type`` as its description.
"""

from ._batches import batch_op
from ._chat import (
    ChatTrace,
    chat_create,
    cooldown,
    retrying,
    stream_closed,
    stream_started,
    waited,
)
from ._providers import (
    DURATION_BUCKETS,
    TOKEN_BUCKETS,
    capture_content,
    current,
    server_attributes,
    use_providers,
)
from ._responses import ResponsesTrace, responses_started
from ._tools import ToolSpan, tool_span

__all__ = [
    "DURATION_BUCKETS",
    "TOKEN_BUCKETS",
    "ChatTrace",
    "ResponsesTrace",
    "ToolSpan",
    "batch_op",
    "capture_content",
    "chat_create",
    "cooldown",
    "current",
    "responses_started",
    "retrying",
    "server_attributes",
    "stream_closed",
    "stream_started",
    "tool_span",
    "use_providers",
    "waited",
]
