"""Spans in the in-memory exporter for a query and a mutation: request, operation, resolvers of interest
(not plain fields) and SQL statements, all with the request id."""

import os
import subprocess
import sys

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.sampling import Decision, Sampler, SamplingResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from jingtan_api.observability import tracing

EXPORTER = InMemorySpanExporter()


class GateSampler(Sampler):
    """Samples only while a test of this module runs: the provider stays installed for the rest of the
    session (a process has one), but later tests record nothing."""

    open = False

    def should_sample(self, parent_context, trace_id, name, kind=None, attributes=None, links=None, trace_state=None):
        return SamplingResult(Decision.RECORD_AND_SAMPLE if GateSampler.open else Decision.DROP, attributes)

    def get_description(self) -> str:
        return "GateSampler"


@pytest.fixture(autouse=True)
def in_memory_tracing():
    # Install ours once, before the app is built (resolvers are wrapped only when tracing is on).
    if not tracing.enabled():
        provider = TracerProvider(sampler=GateSampler())
        provider.add_span_processor(SimpleSpanProcessor(EXPORTER))
        trace.set_tracer_provider(provider)
    EXPORTER.clear()
    GateSampler.open = True
    yield
    GateSampler.open = False
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


def _fresh_process(env: dict, code: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "JINGTAN_"))}
    return subprocess.run([sys.executable, "-c", code], env={**clean, **env}, capture_output=True, text=True, timeout=120)


CHECK = "from jingtan_api.observability import tracing; print(tracing.configure_from_env(), tracing.enabled())"


def test_tracing_is_off_by_default_and_follows_otel_variables():
    assert _fresh_process({}, CHECK).stdout.split() == ["False", "False"]
    assert _fresh_process({"OTEL_TRACES_EXPORTER": "none"}, CHECK).stdout.split() == ["False", "False"]
    on = _fresh_process({"OTEL_TRACES_EXPORTER": "console", "OTEL_SERVICE_NAME": "jt-test"}, CHECK)
    assert on.stdout.split() == ["True", "True"], on.stderr
    disabled = _fresh_process({"OTEL_TRACES_EXPORTER": "console", "OTEL_SDK_DISABLED": "true"}, CHECK)
    assert disabled.stdout.split() == ["False", "False"]
    # An exporter that cannot be had stops startup with one line, not a traceback deep in a request.
    code = ("from jingtan_api.app import create_app\n"
            "from jingtan_api.settings import ConfigurationError\n"
            "from jingtan_api.testing import make_settings\n"
            "try:\n    create_app(make_settings('sqlite+aiosqlite:///:memory:'))\n"
            "except ConfigurationError as exc:\n    print('refused:', exc)\n")
    refused = _fresh_process({"OTEL_TRACES_EXPORTER": "zipkin"}, code)
    assert "refused: OTEL_TRACES_EXPORTER='zipkin' is not supported" in refused.stdout, refused.stderr
