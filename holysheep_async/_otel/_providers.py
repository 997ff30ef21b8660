"""Is anyone listening? The providers the application set, read cheaply; shared helpers."""

from __future__ import annotations

import functools
import inspect
import os
import sys
from collections.abc import Callable
from typing import Any

import httpx

__all__ = [
    "DURATION_BUCKETS",
    "TOKEN_BUCKETS",
    "Live",
    "capture_content",
    "error_type",
    "is_failure",
    "current",
    "mark_coroutine",
    "server_attributes",
    "use_providers",
]

SCOPE = "holysheep_async"
CAPTURE_ENV = "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"
_CAPTURE_ON = frozenset({"true", "span_only", "span_and_event"})

# The conventions' recommended histogram buckets (gen-ai-metrics.md).
DURATION_BUCKETS = (
    0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92,
)  # fmt: skip
TOKEN_BUCKETS = (
    1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864,
)  # fmt: skip

# Hosts with a well-known gen_ai.provider.name; any other server speaks OpenAI's API
# (HolySheep, relays, vLLM, the emulator): "openai", as OpenAI's own instrumentation does.
_PROVIDERS = (
    ("api.openai.com", "openai"),
    (".openai.azure.com", "azure.ai.openai"),
    (".services.ai.azure.com", "azure.ai.inference"),
    ("api.deepseek.com", "deepseek"),
    ("api.groq.com", "groq"),
    ("api.mistral.ai", "mistral_ai"),
    ("api.x.ai", "x_ai"),
    ("api.perplexity.ai", "perplexity"),
    ("api.anthropic.com", "anthropic"),
    ("generativelanguage.googleapis.com", "gcp.gemini"),
    ("aiplatform.googleapis.com", "gcp.vertex_ai"),
    ("api.cohere.ai", "cohere"),
    ("api.cohere.com", "cohere"),
)


# -- is anyone listening? ---------------------------------------------------------


class Live:
    """The tracer and instruments of the providers in use (either may be None)."""

    __slots__ = ("duration", "otel_trace", "tokens", "tracer", "ttfc")

    def __init__(self, tracer_provider: Any, meter_provider: Any) -> None:
        from opentelemetry import trace

        from .._version import __version__

        self.otel_trace = trace
        self.tracer: Any = None
        self.duration: Any = None
        self.tokens: Any = None
        self.ttfc: Any = None
        if tracer_provider is not None:
            self.tracer = tracer_provider.get_tracer(SCOPE, __version__)
        if meter_provider is not None:
            meter = meter_provider.get_meter(SCOPE, __version__)
            self.duration = meter.create_histogram(
                "gen_ai.client.operation.duration",
                unit="s",
                description="GenAI operation duration.",
                explicit_bucket_boundaries_advisory=DURATION_BUCKETS,
            )
            self.tokens = meter.create_histogram(
                "gen_ai.client.token.usage",
                unit="{token}",
                description="Number of input and output tokens used.",
                explicit_bucket_boundaries_advisory=TOKEN_BUCKETS,
            )
            self.ttfc = meter.create_histogram(
                "gen_ai.client.operation.time_to_first_chunk",
                unit="s",
                description="Time to receive the first chunk, from when the client issues the"
                " generation request to when the first chunk is received in the response stream.",
                explicit_bucket_boundaries_advisory=DURATION_BUCKETS,
            )


_MISSING = object()
# Where opentelemetry-api (1.x) keeps the providers set with set_*_provider().
_TRACER_GLOBAL = "_TRACER_PROVIDER"
_METER_GLOBAL = "_METER_PROVIDER"
_modules = sys.modules
_seen: tuple[Any, Any] = (None, None)  # the provider globals _state was made from
_state: Live | None = None
# The providers in use and what was made for them (so that a provider seen again,
# through the public getters, does not get its instruments made again).
_made: tuple[Any, Any, Live | None] = (None, None, None)
#: (tracer provider, meter provider) used instead of the global ones: tests set it.
_override: tuple[Any, Any] | None = None


def current() -> Live | None:
    """What to record to, or None: the one check on the hot path."""
    if _override is not None:
        tp, mp = _override
    else:
        tmod = _modules.get("opentelemetry.trace")
        mmod = _modules.get("opentelemetry.metrics._internal")
        if tmod is None and mmod is None:
            return None
        tp = getattr(tmod, _TRACER_GLOBAL, _MISSING) if tmod is not None else None
        mp = getattr(mmod, _METER_GLOBAL, _MISSING) if mmod is not None else None
    if tp is _seen[0] and mp is _seen[1]:
        return _state
    return _refresh(tp, mp)


def _refresh(tp: Any, mp: Any) -> Live | None:
    global _seen, _state, _made
    seen = (tp, mp)
    if tp is _MISSING:
        tp = _modules["opentelemetry.trace"].get_tracer_provider()
    if mp is _MISSING:
        mp = _modules["opentelemetry.metrics._internal"].get_meter_provider()
    tp = None if tp is None or _is_noop(tp) else tp
    mp = None if mp is None or _is_noop(mp) else mp
    if tp is _made[0] and mp is _made[1]:
        state = _made[2]
    else:
        state = Live(tp, mp) if tp is not None or mp is not None else None
        _made = (tp, mp, state)
    if seen[0] is not _MISSING and seen[1] is not _MISSING:
        _seen, _state = seen, state
    return state


def _is_noop(provider: Any) -> bool:
    """The API's providers that record nothing (the proxies stand for "none set yet")."""
    from opentelemetry import metrics, trace

    internal = _modules.get("opentelemetry.metrics._internal")
    noop: tuple[type, ...] = (
        trace.NoOpTracerProvider,
        trace.ProxyTracerProvider,
        metrics.NoOpMeterProvider,
    )
    proxy = getattr(internal, "_ProxyMeterProvider", None)
    if isinstance(proxy, type):
        noop = (*noop, proxy)
    return isinstance(provider, noop)


def use_providers(tracer_provider: Any = None, meter_provider: Any = None) -> None:
    """Record to these providers instead of the global ones (tests); both None: back to global."""
    global _override, _seen, _state, _made
    if tracer_provider is None and meter_provider is None:
        _override = None
    else:
        _override = (tracer_provider, meter_provider)
    _seen, _state, _made = (None, None), None, (None, None, None)


def capture_content() -> bool:
    return os.environ.get(CAPTURE_ENV, "").strip().lower() in _CAPTURE_ON


# -- where the requests go -----------------------------------------------------------


@functools.lru_cache(maxsize=64)
def server_attributes(base_url: str) -> tuple[str, dict[str, Any]]:
    """``(gen_ai.provider.name, {server.address, server.port})`` of a base URL.

    The host only: never the URL's userinfo or query.
    """
    url = httpx.URL(base_url)
    host = url.host
    port = url.port or (443 if url.scheme == "https" else 80)
    provider = "openai"
    for suffix, name in _PROVIDERS:
        if host == suffix or (suffix.startswith(".") and host.endswith(suffix)):
            provider = name
            break
    return provider, {"server.address": host, "server.port": port}


def error_type(exc: BaseException) -> str:
    return type(exc).__qualname__


def is_failure(exc: BaseException | None) -> bool:
    # Cancellation, GeneratorExit (a stream left early), KeyboardInterrupt: not the call's failure.
    return isinstance(exc, Exception)


def mark_coroutine(wrapper: Callable[..., Any]) -> None:
    # The wrapper returns the coroutine of the function it wraps: it is still awaited like one.
    mark = getattr(inspect, "markcoroutinefunction", None)
    if mark is not None:
        mark(wrapper)
