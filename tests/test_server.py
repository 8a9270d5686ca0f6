"""The HTTP surface: health checks, request ids, error masking, limits, production switches."""

import json
import logging

import httpx
import pytest

from jingtan_api.app import create_app
from jingtan_api.testing import GraphQLClient, make_settings

PROD_KEY = "k" * 40


async def test_healthz_and_readyz(app):
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as http:
        assert (await http.get("/healthz")).json() == {"status": "ok"}
        ready = await http.get("/readyz")
        assert ready.status_code == 200 and ready.json()["database"] == "ok"


async def test_readyz_reports_unreachable_database():
    # Nothing listens on port 1: connecting fails at once.
    app = create_app(make_settings("postgresql+asyncpg://postgres@127.0.0.1:1/nowhere"))
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as http:
            ready = await http.get("/readyz")
    assert ready.status_code == 503
    assert ready.json() == {"status": "unavailable", "database": "unreachable"}


async def test_request_id_is_echoed_or_generated(app):
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as http:
        given = await http.get("/healthz", headers={"X-Request-ID": "req-12345678"})
        assert given.headers["x-request-id"] == "req-12345678"
        generated = await http.get("/healthz", headers={"X-Request-ID": "bad\x01"})
        assert len(generated.headers["x-request-id"]) == 32


async def test_unexpected_errors_are_masked_with_request_id(gql, member, services, monkeypatch, caplog):
    from jingtan_api.accounts import service as ledger

    async def boom(*args, **kwargs):
        raise RuntimeError("secret connection string postgres://user:pw@db")

    monkeypatch.setattr(ledger, "accounts_by_user_ids", boom)
    with caplog.at_level(logging.ERROR, logger="jingtan.graphql"):
        body = await gql("{ viewer { displayName account { balance } } }", token=member["token"],
                         headers={"X-Request-ID": "trace-abcdef12"})
    error = body["errors"][0]
    assert error["message"] == "Internal error / 服务器内部错误"
    assert error["extensions"] == {"code": "INTERNAL_SERVER_ERROR", "requestId": "trace-abcdef12"}
    assert "secret" not in json.dumps(body)
    assert body["data"]["viewer"]["displayName"] == "李雷 Li Lei"  # the rest of the query still answers
    assert any("unexpected error" in r.getMessage() for r in caplog.records)


async def test_validation_and_parse_errors_keep_their_message(gql):
    body = await gql("{ viewer { nope } }")
    assert body["errors"][0]["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED"
    assert "nope" in body["errors"][0]["message"]
    body = await gql("{ viewer { ")
    assert body["errors"][0]["extensions"]["code"] == "GRAPHQL_PARSE_FAILED"


async def test_mutations_over_get_are_refused(app):
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as http:
        response = await http.get("/graphql", params={"query": 'mutation { logout(input: {allSessions: true}) { ok } }'})
        assert response.status_code in (400, 405)
        ok = await http.get("/graphql", params={"query": "{ viewer { id } }"})
        assert ok.status_code == 200 and ok.json()["data"] == {"viewer": None}


async def test_depth_and_alias_limits(db_url):
    app = create_app(make_settings(db_url, graphql={"max_depth": 3, "max_aliases": 2}))
    async with app.router.lifespan_context(app):
        gql = GraphQLClient(app)
        deep = await gql("{ viewer { account { entries { edges { node { id } } } } } }")
        assert "exceeds maximum operation depth" in deep["errors"][0]["message"]
        aliases = await gql("{ a: viewer { id } b: viewer { id } c: viewer { id } }")
        assert aliases["errors"][0]["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED"
        await gql.aclose()


async def test_a_repeated_document_is_validated_once(db_url, monkeypatch):
    """The depth/alias rules must be the same classes on every request, or ValidationCache never hits."""
    import uuid

    import strawberry.schema.schema as strawberry_schema

    calls = []
    real_validate = strawberry_schema.validate

    def counting_validate(*args, **kwargs):
        calls.append(1)
        return real_validate(*args, **kwargs)

    monkeypatch.setattr(strawberry_schema, "validate", counting_validate)
    app = create_app(make_settings(db_url, graphql={"max_depth": 3, "max_aliases": 2}))
    async with app.router.lifespan_context(app):
        gql = GraphQLClient(app)
        probe = f"probe{uuid.uuid4().hex}"  # a document no earlier test validated
        for _ in range(3):
            assert (await gql(f"{{ {probe}: viewer {{ id }} }}"))["data"] == {probe: None}
        too_deep = f"{{ {probe}: viewer {{ account {{ entries {{ edges {{ node {{ id }} }} }} }} }} }}"
        for _ in range(2):
            assert "exceeds maximum operation depth" in (await gql(too_deep))["errors"][0]["message"]
        await gql.aclose()
    assert len(calls) == 2


@pytest.mark.parametrize("mode", ["development", "production"])
async def test_graphiql_and_introspection_follow_the_mode(db_url, mode):
    overrides = {"mode": mode, "secret_key": PROD_KEY} if mode == "production" else {}
    app = create_app(make_settings(db_url, **overrides))
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as http:
            page = await http.get("/graphql", headers={"Accept": "text/html"})
            has_ide = page.status_code == 200 and "graphiql" in page.text.lower()
            assert has_ide is (mode == "development")
        gql = GraphQLClient(app)
        body = await gql("{ __schema { queryType { name } } }")
        if mode == "development":
            assert body["data"]["__schema"]["queryType"]["name"] == "Query"
        else:
            assert body["errors"][0]["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED"
        typo = await gql("{ viewer { displayNam } }")
        assert ("Did you mean" in typo["errors"][0]["message"]) is (mode == "development")
        await gql.aclose()


def test_schema_file_is_up_to_date(capsys):
    from jingtan_api.cli import main

    assert main(["schema", "check"]) == 0, "schema/schema.graphql is stale: run `make schema`"


def test_schema_check_detects_a_stale_file(tmp_path, capsys):
    from jingtan_api.cli import main

    target = tmp_path / "schema.graphql"
    assert main(["schema", "export", "--output", str(target)]) == 0
    assert main(["schema", "check", "--output", str(target)]) == 0
    target.write_text(target.read_text().replace("type Account", "type Acount"))
    assert main(["schema", "check", "--output", str(target)]) == 1


def test_logs_are_json_lines_with_the_request_id():
    import io

    from jingtan_api.logs import JsonFormatter, request_id_var

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("jingtan.test-json")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    token = request_id_var.set("rid-0001")
    try:
        logger.info("granted", extra={"points": 5})
        try:
            raise ValueError("boom")
        except ValueError:
            logger.exception("failed")
    finally:
        request_id_var.reset(token)
        logger.removeHandler(handler)
    first, second = (json.loads(line) for line in stream.getvalue().splitlines() if line.startswith("{"))
    assert first["msg"] == "granted" and first["points"] == 5 and first["request_id"] == "rid-0001"
    assert second["level"] == "ERROR" and "ValueError: boom" in second["exc"]


async def test_query_cost_is_reported_and_limited(db_url):
    from jingtan_api.testing import register_member

    app = create_app(make_settings(db_url, graphql={"max_cost": 50}))
    async with app.router.lifespan_context(app):
        gql = GraphQLClient(app)
        user = await register_member(gql)
        query = "query($n: Int) { viewer { account { entries(first: $n) { edges { node { id amount } } } } } }"
        # viewer 1 + account 1 + entries (1 + n × (edges 1 + node 1))
        small = await gql(query, {"n": 5}, token=user["token"])
        assert "errors" not in small and small["extensions"]["cost"] == {"requestedQueryCost": 13, "actualQueryCost": 3}
        big = await gql(query, {"n": 30}, token=user["token"])
        assert big["data"] is None
        assert big["errors"][0]["extensions"] == {"code": "QUERY_TOO_COMPLEX", "cost": 63, "limit": 50}
        # Without first/last the default page size (20) counts.
        default = await gql("{ viewer { account { entries { nodes { id } } } } }", token=user["token"])
        assert default["extensions"]["cost"]["requestedQueryCost"] == 1 + 1 + 1 + 20 * 1
        # Costs are cached per query text AND page-size variables: repeats give the same answers.
        for n, requested in ((30, 63), (5, 13), (None, 43), (30, 63), (None, 43)):
            again = await gql(query, {"n": n}, token=user["token"])
            assert again["extensions"]["cost"]["requestedQueryCost"] == requested
            assert ("errors" in again) is (requested > 50)
        await gql.aclose()
