"""/metrics after traffic: values checked (as deltas: the series are per process), not only names; the
endpoint's protection in production; the slow-operation log without variables."""

import logging
import uuid

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy.exc import OperationalError

from actions_helpers import submit, trip
from offers_helpers import grant, make_member

from jingtan_api.app import create_app
from jingtan_api.jobs import registered_jobs, run_job
from jingtan_api.testing import GraphQLClient, make_settings


def parse(text: str) -> dict[tuple, float]:
    out: dict[tuple, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def value(samples: dict, name: str, **labels) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


async def scrape(app, headers=None) -> dict:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as http:
        response = await http.get("/metrics", headers=headers or {})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return parse(response.text)


@pytest.fixture
def settings_overrides():
    return {"limits": {"rate_limiting": True, "query": {"maximum": 120, "window_seconds": 1000}},
            "operations": {"metrics": {"ledger_refresh_seconds": 0}}}


MY_BALANCE = "query MyBalance { viewer { account { balance } } }"


async def test_metrics_after_traffic(app, gql, services, clock):
    before = await scrape(app)
    member = await make_member(services, clock)
    await grant(services, clock, member["pk"], 120)
    me = gql.as_user(member["token"])
    for _ in range(3):
        assert (await me.ok(MY_BALANCE))["viewer"]["account"]["balance"] == 120
    invalid = await me("query Broken { viewer { noSuchField } }")
    assert invalid["errors"][0]["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED"
    costly = "query Pages($n: Int) { merchants(first: $n) { nodes { id } } }"
    assert (await me(costly, {"n": 99}))["extensions"]["cost"]["requestedQueryCost"] == 100
    twice = "query Pages($n: Int) { a: merchants(first: $n) { nodes { id } } b: merchants(first: $n) { nodes { id } } }"
    refused = await me(twice, {"n": 99})  # 200, charged as the bucket's 120: more than is left
    assert refused["errors"][0]["extensions"]["code"] == "RATE_LIMITED"
    payload = await submit(me, member["token"], "transit", trip(clock), key=uuid.uuid4().hex)
    assert payload["userErrors"] == []
    expiry = next(job for job in registered_jobs() if job.name == "expiry")
    await run_job(services, expiry)

    calls = {"n": 0}

    async def flaky(conn):
        calls["n"] += 1
        if calls["n"] == 1:
            raise OperationalError("UPDATE account", {}, Exception("database is locked"))
        return 1

    assert await services.db.write(flaky) == 1

    after = await scrape(app)

    def delta(name, **labels):
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("jingtan_graphql_requests_total", operation="MyBalance", type="query", outcome="ok") == 3
    assert delta("jingtan_graphql_requests_total", operation="Broken", type="query", outcome="refused") == 1
    assert delta("jingtan_graphql_requests_total", operation="Pages", type="query", outcome="ok") == 1
    assert delta("jingtan_graphql_requests_total", operation="Pages", type="query", outcome="refused") == 1
    assert delta("jingtan_graphql_requests_total", operation="Submit", type="mutation", outcome="ok") == 1
    assert delta("jingtan_graphql_duration_seconds_count", operation="MyBalance") == 3
    assert delta("jingtan_graphql_duration_seconds_sum", operation="MyBalance") > 0
    assert delta("jingtan_graphql_errors_total", code="GRAPHQL_VALIDATION_FAILED") == 1
    assert delta("jingtan_graphql_errors_total", code="RATE_LIMITED") == 1
    assert delta("jingtan_rate_limit_refusals_total", bucket="query") == 1
    assert delta("jingtan_graphql_query_cost_count", operation="Pages") == 2
    assert delta("jingtan_graphql_query_cost_sum", operation="Pages") == 100 + 200
    assert delta("jingtan_graphql_sql_statements_count", operation="MyBalance") == 3
    assert delta("jingtan_graphql_sql_statements_sum", operation="MyBalance") >= 3
    assert delta("jingtan_plugin_duration_seconds_count", action_type="transit") == 1
    assert delta("jingtan_plugin_failures_total", action_type="transit", reason="error") == 0
    assert delta("jingtan_job_runs_total", job="expiry", outcome="ok") == 1
    assert delta("jingtan_job_duration_seconds_count", job="expiry") == 1
    assert value(after, "jingtan_job_last_success_timestamp_seconds", job="expiry") > 0
    assert delta("jingtan_db_write_retries_total", reason="locked") == 1
    assert delta("jingtan_db_pool_wait_seconds_count") > 10
    assert value(after, "jingtan_db_pool_capacity") >= (0 if services.db.is_sqlite else 20)
    assert value(after, "jingtan_db_pool_connections") >= 1
    assert value(after, "jingtan_db_pool_in_use") >= 0
    assert delta("jingtan_http_requests_total", route="/graphql", status="200") == 7
    # Ledger totals: 120 granted plus the transit credit, nothing redeemed or expired.
    async with services.db.read() as conn:
        from jingtan_api.observability.ledger import ledger_totals

        totals = await ledger_totals(conn)
    assert totals["issued"] >= 120 and totals["outstanding"] == totals["issued"]
    assert totals["issued"] == totals["outstanding"] + totals["redeemed"] + totals["expired"] + totals["other"]
    assert value(after, "jingtan_ledger_points", total="issued") == totals["issued"]
    assert value(after, "jingtan_ledger_points", total="outstanding") == totals["outstanding"]
    assert value(after, "jingtan_ledger_points", total="redeemed") == 0
    assert value(after, "jingtan_ledger_points", total="expired") == 0


async def test_metrics_protected_in_production(db_url):
    settings = make_settings(db_url, mode="production", secret_key="p" * 40,
                             operations={"metrics": {"token": "scrape-secret-123"}})
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as http:
            assert (await http.get("/metrics")).status_code == 404
            assert (await http.get("/metrics", headers={"Authorization": "Bearer wrong"})).status_code == 404
            ok = await http.get("/metrics", headers={"Authorization": "Bearer scrape-secret-123"})
            assert ok.status_code == 200 and "jingtan_graphql_requests_total" in ok.text
            # never on the GraphQL path
            assert "jingtan_" not in (await http.post("/graphql", json={"query": "{ __typename }"})).text

    no_token = create_app(make_settings(db_url, mode="production", secret_key="p" * 40))
    async with no_token.router.lifespan_context(no_token):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=no_token), base_url="http://t") as http:
            assert (await http.get("/metrics")).status_code == 404

    by_address = create_app(make_settings(db_url, mode="production", secret_key="p" * 40,
                                          operations={"metrics": {"allow_from": ["10.9.0.0/16"]}}))
    async with by_address.router.lifespan_context(by_address):
        inside = httpx.ASGITransport(app=by_address, client=("10.9.3.4", 4000))
        outside = httpx.ASGITransport(app=by_address, client=("10.8.3.4", 4000))
        async with httpx.AsyncClient(transport=inside, base_url="http://t") as http:
            assert (await http.get("/metrics")).status_code == 200
        async with httpx.AsyncClient(transport=outside, base_url="http://t") as http:
            assert (await http.get("/metrics", headers={"X-Forwarded-For": "10.9.3.4"})).status_code == 404


async def test_slow_operation_log_has_no_variable_values(db_url, caplog):
    app = create_app(make_settings(db_url, operations={"slow_operation_ms": 0}))
    async with app.router.lifespan_context(app):
        gql = GraphQLClient(app)
        secret_email = "very-private-person@example.cn"
        with caplog.at_level(logging.WARNING, logger="jingtan.slow"):
            body = await gql(
                "mutation SignIn($i: LoginInput!) { login(input: $i) { userErrors { code } } }",
                {"i": {"identifier": secret_email, "password": "Hunter2-secret-pw"}},
            )
        assert body["data"]["login"]["userErrors"]
        await gql.aclose()
    records = [r for r in caplog.records if r.getMessage() == "slow operation"]
    assert len(records) == 1
    record = records[0]
    assert record.operation == "SignIn" and record.operation_type == "mutation"
    assert record.sql_count >= 1 and record.duration_ms >= 0 and isinstance(record.cost, int)
    from jingtan_api.logs import JsonFormatter

    line = JsonFormatter().format(record)
    assert secret_email not in line and "Hunter2" not in line


def test_bad_metrics_networks_are_refused_at_startup(db_url, monkeypatch):
    from jingtan_api.settings import ConfigurationError, load_settings

    with pytest.raises((ConfigurationError, ValueError)) as info:
        make_settings(db_url, operations={"metrics": {"allow_from": ["10.0.0.0/33"]}})
    assert "is not a network" in str(info.value)
    monkeypatch.setenv("JINGTAN_OPERATIONS__METRICS__ALLOW_FROM", '["not-an-address"]')
    with pytest.raises(ConfigurationError) as refused:
        load_settings(database_url=db_url)
    assert "not a network" in str(refused.value)
