"""W3C trace context on outgoing requests: ``traceparent`` (and ``tracestate``).

With OpenTelemetry set up (a tracer provider, see :func:`current`), every request
carries the context of its span, so that a relay's or a server's own spans join the
caller's trace: the request's ``chat`` span (a stream's, a ``create``'s), a batch
step's span, else the caller's current span. The headers are written by the
application's propagators (``opentelemetry.propagate.inject``: W3C trace context and
baggage unless ``OTEL_PROPAGATORS`` says otherwise). Without OpenTelemetry, or
without a tracer provider, this costs the one check of :func:`current`.

Takes plain values (a span object or None), never a class of the client's.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any

from ._providers import current

__all__ = ["inject_trace_context"]


def inject_trace_context(headers: MutableMapping[str, str], span: Any = None) -> None:
    """Add the trace context of ``span`` (None: the current span) to ``headers``.

    A header the caller set itself (``extra_headers={"traceparent": ...}``, any case)
    is left as it is.
    """
    live = current()
    if live is None or live.tracer is None:
        return
    from opentelemetry import propagate

    context = None if span is None else live.otel_trace.set_span_in_context(span)
    carrier: dict[str, str] = {}
    propagate.inject(carrier, context=context)
    if not carrier:
        return
    present = {name.lower() for name in headers}
    for name, value in carrier.items():
        if name.lower() not in present:
            headers[name] = value
