"""Spans in the in-memory exporter for a query and a mutation: request, operation, resolvers of interest
(not plain fields) and SQL statements, all with the request id."""

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from jingtan_api.observability import tracing

EXPORTER = InMemorySpanExporter()


@pytest.fixture(autouse=True)
def in_memory_tracing():
    # A process has one tracer provider: install ours once (before the app, so resolvers are traced).
    if not tracing.enabled():
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(EXPORTER))
        trace.set_tracer_provider(provider)
    EXPORTER.clear()
    yield
    EXPORTER.clear()


def spans_of(request_id: str):
    return [s for s in EXPORTER.get_finished_spans() if s.attributes.get("jingtan.request_id") == request_id]


async def test_query_and_mutation_spans(gql, member):
    EXPORTER.clear()
    response = await gql.http.post(
        "/graphql",
        json={"query": "mutation Rename($i: CreateApiTokenInput!) { createApiToken(input: $i) { secret userErrors { code } } }",
              "variables": {"i": {"name": "Han Meimei POS", "scopes": ["account:read"]}}},
        headers={"Authorization": f"Bearer {member['token']}", "X-Request-ID": "trace-mutation-1"},
    )
    assert response.status_code == 200
    mutation_spans = spans_of("trace-mutation-1")
    names = [s.name for s in mutation_spans]
    assert "POST /graphql" in names, names
    assert "mutation Rename" in names, names
    assert "resolve Mutation.createApiToken" in names, names
    assert any(n.startswith("SQL INSERT") for n in names), names
    by_name = {s.name: s for s in mutation_spans}
    root = by_name["POST /graphql"]
    operation = by_name["mutation Rename"]
    assert operation.parent.span_id == root.context.span_id
    assert by_name["resolve Mutation.createApiToken"].parent.span_id == operation.context.span_id
    assert all(s.context.trace_id == root.context.trace_id for s in mutation_spans)
    # No variable value reaches a span.
    assert not any("Han Meimei" in str(v) for s in mutation_spans for v in s.attributes.values())

    response = await gql.http.post(
        "/graphql",
        json={"query": "query Me { viewer { id displayName account { balance } } }"},
        headers={"Authorization": f"Bearer {member['token']}", "X-Request-ID": "trace-query-1"},
    )
    assert response.status_code == 200
    query_spans = spans_of("trace-query-1")
    names = [s.name for s in query_spans]
    assert "query Me" in names and "resolve Query.viewer" in names, names
    assert "resolve User.account" in names, names  # a contributed field has a resolver
    assert not any(n.endswith(".displayName") or n.endswith(".id") for n in names), names  # plain fields
    sql = [s for s in query_spans if s.name.startswith("SQL SELECT")]
    assert sql and all(s.attributes["db.statement"] for s in sql)
    op = next(s for s in query_spans if s.name == "query Me")
    assert op.attributes["jingtan.sql_count"] == len([s for s in query_spans if s.name.startswith("SQL ")])
    assert op.attributes["graphql.operation.type"] == "query"


def test_otel_environment_variables(monkeypatch):
    assert tracing.configure_from_env({"OTEL_TRACES_EXPORTER": "none"}) is True  # already on in this process
    from jingtan_api.observability.tracing import TracingConfigurationError, _exporter

    with pytest.raises(TracingConfigurationError):
        _exporter("zipkin-nope")
