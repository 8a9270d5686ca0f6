"""The schema extension that measures every GraphQL operation: metrics, the operation's span (and, when
tracing is on, a span per resolver of interest) and the slow-operation log.

It is the first extension of the schema, so its time covers parsing, validation, the cost check and
execution. It records the operation's name, type, outcome, error codes, requested cost and the number of
SQL statements — never the variables or any argument value (they may hold personal data).
"""

import logging
import time
from collections.abc import Callable, Iterator
from inspect import isawaitable
from typing import Any

from graphql import GraphQLError, get_named_type, is_leaf_type
from opentelemetry import context as otel_context
from opentelemetry import trace
from strawberry.extensions import SchemaExtension
from strawberry.extensions.tracing.utils import should_skip_tracing

from jingtan_api.logs import request_id_var
from jingtan_api.observability import metrics, tracing

log = logging.getLogger("jingtan.slow")


def _code(error: Any) -> object:
    """The code the client sees (``graphql.errors.error_to_wire`` adds the same to errors without one)."""
    extensions = error.extensions if isinstance(error, GraphQLError) else (error or {}).get("extensions")
    code = (extensions or {}).get("code") if isinstance(extensions, dict) else None
    if code is not None:
        return code
    if getattr(error, "path", None):
        return "INTERNAL_SERVER_ERROR"
    return "GRAPHQL_PARSE_FAILED" if str(getattr(error, "message", "")).startswith("Syntax Error") else "GRAPHQL_VALIDATION_FAILED"


class OperationObserver(SchemaExtension):
    def __init__(self, *, slow_ms: float, max_operation_names: int, seen_names: set[str]) -> None:
        super().__init__()
        self.slow_ms = slow_ms
        self.max_operation_names = max_operation_names
        self.seen_names = seen_names

    def on_operation(self) -> Iterator[None]:
        start = time.perf_counter()
        counter = [0]
        counter_token = metrics.SQL_COUNTER.set(counter)
        span = None
        attach_token = None
        if tracing.enabled():
            span = tracing.tracer().start_span("graphql.operation", attributes={tracing.REQUEST_ID: request_id_var.get() or ""})
            attach_token = otel_context.attach(trace.set_span_in_context(span))
        try:
            yield
        finally:
            metrics.SQL_COUNTER.reset(counter_token)
            self._record(time.perf_counter() - start, counter[0], span)
            if attach_token is not None:
                otel_context.detach(attach_token)

    def _record(self, seconds: float, sql_count: int, span: Any) -> None:
        ctx = self.execution_context
        raw_name = ctx.operation_name
        name = metrics.operation_label(raw_name, seen=self.seen_names, limit=self.max_operation_names)
        try:
            kind = ctx.operation_type.value if ctx.graphql_document is not None else "unknown"
        except Exception:  # noqa: BLE001 - no such operation in the document
            kind = "unknown"
        result = ctx.result
        errors = list((result.errors if result is not None else None) or ctx.pre_execution_errors or [])
        executed = result is not None and (result.data is not None or any(getattr(e, "path", None) for e in errors))
        outcome = "ok" if not errors else ("error" if executed else "refused")
        cost = getattr(ctx, "jingtan_query_cost", None)  # set by graphql.cost.QueryCost

        metrics.child(metrics.GRAPHQL_REQUESTS, name, kind, outcome).inc()
        if kind != "subscription":  # a subscription lasts as long as its connection: not a latency
            metrics.child(metrics.GRAPHQL_DURATION, name).observe(seconds)
        metrics.child(metrics.GRAPHQL_SQL, name).observe(sql_count)
        if isinstance(cost, int):
            metrics.child(metrics.GRAPHQL_COST, name).observe(cost)
        codes = []
        for error in errors:
            code = metrics.code_label(_code(error))
            codes.append(code)
            metrics.child(metrics.GRAPHQL_ERRORS, code).inc()
            if code == "RATE_LIMITED":
                bucket = (getattr(error, "extensions", None) or {}).get("bucket")
                metrics.RATE_LIMIT_REFUSALS.labels(bucket=bucket if isinstance(bucket, str) else "query").inc()

        if span is not None:
            span.update_name(f"{kind} {name}")
            span.set_attribute("graphql.operation.name", name)
            span.set_attribute("graphql.operation.type", kind)
            span.set_attribute("jingtan.sql_count", sql_count)
            if isinstance(cost, int):
                span.set_attribute("jingtan.query_cost", cost)
            if codes:
                span.set_attribute("graphql.error_codes", codes)
                tracing.set_error(span, ",".join(sorted(set(codes))))
            span.end()

        duration_ms = seconds * 1000
        if duration_ms >= self.slow_ms and kind != "subscription":
            log.warning(
                "slow operation",
                extra={
                    "operation": name,
                    "operation_type": kind,
                    "outcome": outcome,
                    "cost": cost,
                    "duration_ms": round(duration_ms, 2),
                    "sql_count": sql_count,
                    "error_codes": codes,
                },
            )


class TracedOperationObserver(OperationObserver):
    """Also a span per resolver of interest: root fields, and fields with a resolver of their own that
    answer objects (connections, contributed fields such as ``User.account``) — not leaf fields (scalars,
    enums, ids), which would only add noise. Used only while tracing is on."""

    async def resolve(self, _next: Callable, root: Any, info: Any, *args: Any, **kwargs: Any) -> Any:
        root_field = info.parent_type in (info.schema.query_type, info.schema.mutation_type)
        if not root_field and (should_skip_tracing(_next, info) or is_leaf_type(get_named_type(info.return_type))):
            result = _next(root, info, *args, **kwargs)
            return await result if isawaitable(result) else result
        with tracing.tracer().start_as_current_span(
            f"resolve {info.parent_type.name}.{info.field_name}",
            attributes={
                "graphql.field.parent_type": info.parent_type.name,
                "graphql.field.name": info.field_name,
                tracing.REQUEST_ID: request_id_var.get() or "",
            },
        ):
            result = _next(root, info, *args, **kwargs)
            return await result if isawaitable(result) else result


def observer_factory(settings: Any) -> Callable[[], OperationObserver]:
    cls = TracedOperationObserver if tracing.enabled() else OperationObserver
    ops = settings.operations
    seen: set[str] = set()  # operation names labelled by this app (schema)
    return lambda: cls(slow_ms=ops.slow_operation_ms, max_operation_names=ops.metrics.max_operation_names, seen_names=seen)
