"""OpenTelemetry traces: a span per HTTP request, per GraphQL operation, per resolver of interest (those
with a resolver of their own, not plain attribute fields) and per SQL statement, each with the request id.

Off by default. :func:`configure_from_env` (called by ``create_app``) installs the SDK when the standard
``OTEL_TRACES_EXPORTER`` variable names an exporter: ``otlp`` (needs ``pip install 'jingtan-api[otlp]'``;
endpoint, headers, protocol and timeouts from ``OTEL_EXPORTER_OTLP_*``) or ``console``. Service name and
resource attributes come from ``OTEL_SERVICE_NAME`` / ``OTEL_RESOURCE_ATTRIBUTES``, sampling from
``OTEL_TRACES_SAMPLER``, batching from ``OTEL_BSP_*``; ``OTEL_SDK_DISABLED=true`` keeps it off. A process
that already installed a tracer provider (tests with the in-memory exporter) keeps its own.

While off, the OpenTelemetry API's no-op tracer is used and resolvers are not wrapped at all.
"""

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from jingtan_api.logs import request_id_var

log = logging.getLogger("jingtan.tracing")

TRACER_NAME = "jingtan_api"
REQUEST_ID = "jingtan.request_id"

_installed_here = False


class TracingConfigurationError(Exception):
    """OTEL_* variables that cannot be honoured (create_app turns it into a ConfigurationError)."""


def tracer() -> trace.Tracer:
    return trace.get_tracer(TRACER_NAME)


def enabled() -> bool:
    """A real (SDK) tracer provider is installed in this process.

    Asked per request and per SQL statement. While no provider is set, ``trace.get_tracer_provider()``
    looks ``OTEL_PYTHON_TRACER_PROVIDER`` up in ``os.environ`` on every call (a KeyError raised and
    caught: ~5 % of the account page's CPU); a provider, once set, cannot be replaced, so a True answer
    is kept and, while the module's global is still unset and the variable was absent at import, the
    answer is False without the lookup."""
    global _enabled
    if _enabled:
        return True
    if _LAZY_PROVIDER is False and getattr(trace, "_TRACER_PROVIDER", _UNKNOWN) is None:
        return False
    provider = trace.get_tracer_provider()
    _enabled = not isinstance(provider, trace.ProxyTracerProvider | trace.NoOpTracerProvider)
    return _enabled


_enabled = False
_UNKNOWN = object()
# An SDK provider named by the environment is loaded lazily by get_tracer_provider() itself.
_LAZY_PROVIDER = "OTEL_PYTHON_TRACER_PROVIDER" in os.environ


def _exporter(name: str) -> Any:
    if name == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        return ConsoleSpanExporter()
    if name == "otlp":
        protocol = os.environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or os.environ.get(
            "OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"
        )
        try:
            if protocol == "grpc":
                from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
            else:
                from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        except ImportError as exc:
            raise TracingConfigurationError(
                "OTEL_TRACES_EXPORTER=otlp needs the OTLP exporter: pip install 'jingtan-api[otlp]'"
            ) from exc
        return OTLPSpanExporter()
    raise TracingConfigurationError(f"OTEL_TRACES_EXPORTER={name!r} is not supported here (use otlp, console or none)")


def configure_from_env(environ: dict[str, str] | None = None) -> bool:
    """Install the SDK tracer provider from ``OTEL_*`` variables; True when tracing is on afterwards."""
    global _installed_here
    env = os.environ if environ is None else environ
    if enabled():
        return True
    exporters = [e.strip() for e in env.get("OTEL_TRACES_EXPORTER", "none").split(",") if e.strip()]
    if env.get("OTEL_SDK_DISABLED", "").lower() == "true" or not exporters or exporters == ["none"]:
        return False
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    attributes = {} if env.get("OTEL_SERVICE_NAME") else {"service.name": "jingtan-api"}
    provider = TracerProvider(resource=Resource.create(attributes))
    for name in exporters:
        if name != "none":
            provider.add_span_processor(BatchSpanProcessor(_exporter(name)))
    trace.set_tracer_provider(provider)
    _installed_here = True
    log.info("tracing on", extra={"exporters": ",".join(exporters)})
    return True


def shutdown() -> None:
    """Flush spans at process exit (only a provider this module installed)."""
    if _installed_here:
        provider = trace.get_tracer_provider()
        shut = getattr(provider, "shutdown", None)
        if shut is not None:
            shut()


@contextmanager
def request_span(scope: dict, request_id: str) -> Iterator[Any]:
    """The server span of one HTTP request, continuing a ``traceparent`` sent by the caller."""
    from opentelemetry import propagate

    headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope.get("headers") or []}
    method = scope.get("method", "GET")
    path = scope.get("path", "")
    with tracer().start_as_current_span(
        f"{method} {path}",
        context=propagate.extract(headers),
        kind=SpanKind.SERVER,
        attributes={"http.request.method": method, "url.path": path, REQUEST_ID: request_id},
    ) as span:
        yield span


def set_error(span: Any, description: str) -> None:
    span.set_status(Status(StatusCode.ERROR, description))


# --- SQL statements ------------------------------------------------------------------------------------


def instrument_engine(engine, *, system: str) -> None:
    """A client span per SQL statement (the statement text: values are bound parameters, never in it)."""
    from sqlalchemy import event

    sync_engine = engine.sync_engine
    key = "_jingtan_span"

    @event.listens_for(sync_engine, "before_cursor_execute")
    def _before(conn, cursor, statement, parameters, context, executemany) -> None:
        if context is None or not enabled():
            return
        verb = statement.lstrip().split(None, 1)[0].upper() if statement.strip() else "SQL"
        span = tracer().start_span(
            f"SQL {verb}",
            kind=SpanKind.CLIENT,
            attributes={"db.system": system, "db.statement": statement[:2000], REQUEST_ID: request_id_var.get() or ""},
        )
        setattr(context, key, span)

    @event.listens_for(sync_engine, "after_cursor_execute")
    def _after(conn, cursor, statement, parameters, context, executemany) -> None:
        span = getattr(context, key, None)
        if span is not None:
            span.end()
            setattr(context, key, None)

    @event.listens_for(sync_engine, "handle_error")
    def _error(exception_context) -> None:
        context = exception_context.execution_context
        span = getattr(context, key, None) if context is not None else None
        if span is not None:
            set_error(span, type(exception_context.original_exception).__name__)
            span.end()
            setattr(context, key, None)
