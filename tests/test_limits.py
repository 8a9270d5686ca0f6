"""Abuse limits through the HTTP endpoint: query cost (variable defaults, list arguments), objects per
answer and execution time enforced while executing, request sizes, and the in-process rate limits
(query cost bucket, login, registration, submitAction). Redis-backed buckets: tests/test_limits_redis.py."""

import asyncio
import json
import socket

import pytest
import strawberry
from strawberry.types import Info

from jingtan_api.app import create_app
from jingtan_api.graphql.domain import Domain, hookimpl
from jingtan_api.limits import MemoryBuckets, RedisBuckets, VariablesTooLarge, check_variables
from jingtan_api.plugins.testing import SUBMIT
from jingtan_api.settings import BucketSettings
from jingtan_api.testing import GraphQLClient, make_settings, register_member, row_counts
from tests.actions_helpers import trip

pytestmark = pytest.mark.db

NODES = "query($ids: [ID!]!) { nodes(ids: $ids) { ... on User { id account { id } } } }"


async def _app(db_url, clock=None, extra_plugins=None, **overrides):
    return create_app(make_settings(db_url, **overrides), clock=clock, plugins=extra_plugins)


# --- query cost ------------------------------------------------------------------------------------


async def test_variable_defaults_count_in_the_cost(gql):
    query = (
        "query Q($n: Int = 100) { offers(first: $n) { edges { node { merchant { "
        "offers(first: $n) { edges { node { id } } } } } } } }"
    )
    body = await gql(query)
    # offers 1 + 100 × (edges 1 + node 1 + merchant (1 + offers (1 + 100 × (edges 1 + node 1))))
    assert body["data"] is None
    assert body["errors"][0]["extensions"] == {"code": "QUERY_TOO_COMPLEX", "cost": 1 + 100 * 204, "limit": 5000}
    # A sent value overrides the default.
    small = await gql(query, {"n": 2})
    assert "errors" not in small
    assert small["extensions"]["cost"]["requestedQueryCost"] == 1 + 2 * (3 + 1 + 2 * 2)


async def test_list_arguments_multiply_the_cost(gql, member):
    user_id = member["id"]
    costs = {}
    for n in (1, 10, 100):
        body = await gql(NODES, {"ids": [user_id] * n}, token=member["token"])
        assert "errors" not in body, body
        costs[n] = body["extensions"]["cost"]["requestedQueryCost"]
        # Each entry: the node (1) and its account (1); the list field itself 1.
        assert costs[n] == 1 + n * 2
        assert body["extensions"]["cost"]["actualQueryCost"] == n * 2
    # The same list written in the document counts the same.
    ids = ", ".join([json.dumps(user_id)] * 50)
    literal = "{ nodes(ids: [" + ids + "]) { ... on User { id account { id } } } }"
    body = await gql(literal, token=member["token"])
    assert body["extensions"]["cost"]["requestedQueryCost"] == 1 + 50 * 2


async def test_objects_per_answer_are_capped_while_executing(db_url):
    app = await _app(db_url, limits={"max_objects": 15})
    async with app.router.lifespan_context(app):
        gql = GraphQLClient(app)
        member = await register_member(gql)
        ok = await gql(NODES, {"ids": [member["id"]] * 7}, token=member["token"])
        assert "errors" not in ok and len(ok["data"]["nodes"]) == 7  # 14 objects
        body = await gql(NODES, {"ids": [member["id"]] * 8}, token=member["token"])  # 16 objects
        assert body["data"] is None
        assert body["errors"] == [
            {
                "message": body["errors"][0]["message"],
                "extensions": {"code": "RESULT_TOO_LARGE", "limit": 15},
            }
        ]
        assert "15" in body["errors"][0]["message"] and " / " in body["errors"][0]["message"]
        await gql.aclose()


def _slow_domain(events: list[str]):
    @strawberry.type
    class SlowQuery:
        @strawberry.field(description="Answers after a long time (test). / 慢查询。")
        async def slow_answer(self, info: Info) -> int:
            events.append("started")
            try:
                await asyncio.sleep(60)
            except asyncio.CancelledError:
                events.append("cancelled")
                raise
            return 42

    class Plugin:
        @hookimpl
        def jingtan_register_domain(self) -> Domain:
            return Domain(name="slow", query=[SlowQuery])

    return Plugin()


async def test_execution_is_aborted_after_the_timeout(db_url):
    events: list[str] = []
    app = await _app(db_url, extra_plugins=[("slow", _slow_domain(events))], limits={"execution_timeout_seconds": 0.2})
    async with app.router.lifespan_context(app):
        gql = GraphQLClient(app)
        body = await gql("{ slowAnswer }")
        assert body["data"] is None
        assert body["errors"][0]["extensions"] == {"code": "TIMEOUT", "limit": 0.2}
        # The resolver still in flight was cancelled (it may finish unwinding after the answer was sent).
        for _ in range(100):
            if "cancelled" in events:
                break
            await asyncio.sleep(0.05)
        assert events == ["started", "cancelled"]
        await gql.aclose()


# --- request sizes ---------------------------------------------------------------------------------

REGISTER = (
    "mutation($i: RegisterInput!) { register(input: $i) { user { id } userErrors { code } } }"
)


def _register_vars(email: str = "big@example.cn") -> dict:
    return {"i": {"email": email, "password": "Green-leaf-2026", "displayName": "大 Big"}}


async def test_bodies_over_the_limit_get_413_before_parsing(db_url):
    app = await _app(db_url, limits={"max_body_bytes": 2000})
    async with app.router.lifespan_context(app):
        gql = GraphQLClient(app)
        before = await row_counts(app.state.services.db)
        padded = REGISTER + "#" + "x" * 2000
        response = await gql.http.post("/graphql", json={"query": padded, "variables": _register_vars()})
        assert response.status_code == 413
        assert response.json()["errors"][0]["extensions"] == {"code": "REQUEST_TOO_LARGE", "limit": 2000}
        # Without Content-Length (chunked): counted while reading.
        body = json.dumps({"query": padded, "variables": _register_vars()}).encode()

        async def chunks():
            for i in range(0, len(body), 500):
                yield body[i : i + 500]

        chunked = await gql.http.post("/graphql", content=chunks(), headers={"content-type": "application/json"})
        assert chunked.status_code == 413 and chunked.json()["errors"][0]["extensions"]["code"] == "REQUEST_TOO_LARGE"
        # GET query strings too.
        long_get = await gql.http.get("/graphql", params={"query": "{ __typename }" + " " * 2100})
        assert long_get.status_code == 413
        assert await row_counts(app.state.services.db) == before
        # Under the limit everything works.
        assert (await gql.http.get("/graphql", params={"query": "{ __typename }"})).status_code == 200
        ok = await gql(REGISTER, _register_vars())
        assert ok["data"]["register"]["userErrors"] == []
        await gql.aclose()


async def test_long_documents_and_big_variables_are_refused_before_parsing(db_url):
    app = await _app(db_url, limits={"max_document_chars": 1000, "max_variable_list_length": 100})
    async with app.router.lifespan_context(app):
        gql = GraphQLClient(app)
        before = await row_counts(app.state.services.db)
        commented = await gql(REGISTER + "\n# " + "注" * 1000, _register_vars())
        assert commented["data"] is None
        assert commented["errors"][0]["extensions"] == {"code": "DOCUMENT_TOO_LARGE", "limit": 1000}
        too_many = await gql(NODES, {"ids": ["x"] * 101})
        assert too_many["data"] is None and too_many["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
        assert "100" in too_many["errors"][0]["message"]
        deep: list = [1]
        for _ in range(25):
            deep = [deep]
        nested = await gql(REGISTER, {"i": _register_vars()["i"], "extra": deep})
        assert nested["data"] is None and nested["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
        assert await row_counts(app.state.services.db) == before
        assert "errors" not in await gql(NODES, {"ids": ["x"] * 100})
        await gql.aclose()


def test_check_variables_walks_iteratively():
    deep: list = []
    for _ in range(100_000):
        deep = [deep]
    with pytest.raises(VariablesTooLarge):
        check_variables({"v": deep}, max_list_length=10, max_depth=20)
    check_variables({"a": [1] * 10, "b": {"c": [{"d": 1}]}}, max_list_length=10, max_depth=20)
    with pytest.raises(VariablesTooLarge):
        check_variables({"b": {"c": [0] * 11}}, max_list_length=10, max_depth=20)


# --- rate limits (in-process) ----------------------------------------------------------------------


async def test_leaky_bucket_refills_and_refunds():
    now = [1000.0]
    buckets = MemoryBuckets(clock=lambda: now[0])
    bucket = BucketSettings(maximum=100, window_seconds=10)  # 10 points per second
    assert (await buckets.spend("k", 60, bucket)).allowed
    refused = await buckets.spend("k", 60, bucket)
    assert not refused.allowed and refused.available == 40 and refused.retry_after(60) == 2
    now[0] += 2
    assert (await buckets.spend("k", 60, bucket)).allowed
    state = await buckets.spend("k", -500, bucket)  # a refund never overfills
    assert state.available == 100
    assert (await buckets.peek("other", bucket)).available == 100


async def test_memory_buckets_prune_by_each_buckets_own_rate(monkeypatch):
    now = [0.0]
    buckets = MemoryBuckets(clock=lambda: now[0])
    monkeypatch.setattr(MemoryBuckets, "MAX_KEYS", 3)
    slow = BucketSettings(maximum=10, window_seconds=1_000_000)
    fast = BucketSettings(maximum=10, window_seconds=1)
    await buckets.spend("slow", 10, slow)
    await buckets.spend("fast-1", 10, fast)
    await buckets.spend("fast-2", 10, fast)
    now[0] += 5  # the fast buckets are full again, the slow one is still empty
    await buckets.spend("new", 1, fast)
    assert not (await buckets.spend("slow", 1, slow)).allowed


async def test_unreachable_redis_fails_open_and_logs(caplog):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    buckets = RedisBuckets(f"redis://127.0.0.1:{port}/0", prefix="x:")
    try:
        state = await buckets.spend("k", 5, BucketSettings(maximum=10, window_seconds=10))
    finally:
        await buckets.aclose()
    assert state.allowed
    assert any("rate-limit store unreachable" in r.getMessage() for r in caplog.records)


def _limited(**buckets):
    return {"rate_limiting": True, **buckets}


async def test_query_bucket_refuses_with_retry_after_and_headers(db_url):
    app = await _app(db_url, limits=_limited(query={"maximum": 100, "window_seconds": 1000}))
    async with app.router.lifespan_context(app):
        gql = GraphQLClient(app)
        query = "query($n: Int) { merchants(first: $n) { nodes { id } } }"  # 1 + n, nothing to return
        first = await gql.http.post("/graphql", json={"query": query, "variables": {"n": 59}})
        cost = first.json()["extensions"]["cost"]
        assert cost["requestedQueryCost"] == 60 and cost["actualQueryCost"] == 1
        # Charged the requested cost up front, then the unused 59 points given back.
        assert cost["throttleStatus"] == {"maximumAvailable": 100, "currentlyAvailable": 99, "restoreRate": 0.1}
        assert first.headers["RateLimit-Limit"] == "100" and first.headers["RateLimit-Remaining"] == "99"
        assert "Retry-After" not in first.headers
        second = await gql.http.post("/graphql", json={"query": query, "variables": {"n": 99}})
        body = second.json()
        assert second.status_code == 200 and body["data"] is None
        error = body["errors"][0]
        assert error["extensions"]["code"] == "RATE_LIMITED" and error["extensions"]["bucket"] == "query"
        assert error["extensions"]["retryAfter"] == 10  # 1 point missing at 0.1 point/s
        assert second.headers["Retry-After"] == "10" and second.headers["RateLimit-Remaining"] == "99"
        assert body["extensions"]["cost"]["actualQueryCost"] == 0
        # Another address and an authenticated user have their own buckets.
        other = GraphQLClient(app, client_address="203.0.113.9")
        assert "errors" not in await other(query, {"n": 99})
        await other.aclose()
        await gql.aclose()


async def test_login_bucket_counts_attempts_per_address_and_writes_nothing(db_url):
    app = await _app(db_url, limits=_limited(login={"maximum": 3, "window_seconds": 3600}))
    # The limiter's own clock, frozen: the retryAfter below is exact however long the logins take.
    app.state.buckets.clock = lambda: 1_800_000_000.0
    async with app.router.lifespan_context(app):
        gql = GraphQLClient(app)
        member = await register_member(gql, email="owner@example.cn")
        login = "mutation($i: LoginInput!) { login(input: $i) { tokens { accessToken } userErrors { code } } }"
        creds = {"i": {"identifier": "owner@example.cn", "password": member["password"]}}
        for _ in range(3):
            assert (await gql(login, creds))["data"]["login"]["userErrors"] == []
        before = await row_counts(app.state.services.db)
        refused = await gql(login, creds)
        assert refused["data"] is None
        assert refused["errors"][0]["extensions"]["code"] == "RATE_LIMITED"
        assert refused["errors"][0]["extensions"]["bucket"] == "login"
        assert refused["errors"][0]["extensions"]["retryAfter"] == 1200
        assert await row_counts(app.state.services.db) == before
        # Two aliased logins count twice; another address is not affected.
        elsewhere = GraphQLClient(app, client_address="198.51.100.7")
        twice = "mutation($i: LoginInput!) { a: login(input: $i) { userErrors { code } } b: login(input: $i) { userErrors { code } } }"
        assert "errors" not in await elsewhere(twice, creds)
        assert (await elsewhere(twice, creds))["errors"][0]["extensions"]["code"] == "RATE_LIMITED"
        await elsewhere.aclose()
        await gql.aclose()


async def test_registration_is_limited_per_address_and_globally(db_url):
    app = await _app(
        db_url,
        limits=_limited(
            registration={"maximum": 2, "window_seconds": 3600},
            registration_global={"maximum": 3, "window_seconds": 3600},
        ),
    )
    async with app.router.lifespan_context(app):
        a = GraphQLClient(app, client_address="192.0.2.1")
        for n in range(2):
            assert (await a(REGISTER, _register_vars(f"a{n}@example.cn")))["data"]["register"]["userErrors"] == []
        before = await row_counts(app.state.services.db)
        per_address = await a(REGISTER, _register_vars("a2@example.cn"))
        assert per_address["data"] is None
        assert per_address["errors"][0]["extensions"]["code"] == "RATE_LIMITED"
        assert per_address["errors"][0]["extensions"]["bucket"] == "registration"
        assert await row_counts(app.state.services.db) == before
        # The IPv6 /64 is one client.
        b1 = GraphQLClient(app, client_address="2001:db8:1:2::1")
        b2 = GraphQLClient(app, client_address="2001:db8:1:2::ffff")
        assert (await b1(REGISTER, _register_vars("b1@example.cn")))["data"]["register"]["userErrors"] == []
        before = await row_counts(app.state.services.db)
        globally = await b2(REGISTER, _register_vars("b2@example.cn"))
        assert globally["errors"][0]["extensions"]["bucket"] == "registration_global"
        assert await row_counts(app.state.services.db) == before
        # A refused global registration gave back the per-address point it took.
        state = await app.state.buckets.peek("registration:addr:2001:db8:1:2::/64", app.state.services.settings.limits.registration)
        assert state.available == pytest.approx(1, abs=0.01)
        for client in (a, b1, b2):
            await client.aclose()


async def test_submissions_have_their_own_bucket(db_url, clock):
    app = await _app(
        db_url,
        clock=clock,
        limits=_limited(submit_action={"maximum": 1, "window_seconds": 3600}),
        plugins={"enabled": ["transit"], "transit": {"partners": {"sz-metro": "metro-secret-0123456789"}}},
    )
    async with app.router.lifespan_context(app):
        gql = GraphQLClient(app)
        member = await register_member(gql)
        first = await gql(SUBMIT, {"input": {"action": {"transit": trip(clock)}, "idempotencyKey": "k1"}}, token=member["token"])
        assert "errors" not in first, first
        before = await row_counts(app.state.services.db)
        second = await gql(SUBMIT, {"input": {"action": {"transit": trip(clock)}, "idempotencyKey": "k2"}}, token=member["token"])
        assert second["data"] is None
        assert second["errors"][0]["extensions"]["code"] == "RATE_LIMITED"
        assert second["errors"][0]["extensions"]["bucket"] == "submit_action"
        assert await row_counts(app.state.services.db) == before
        # The bucket is the member's, not the address's.
        other = await register_member(gql)
        third = await gql(SUBMIT, {"input": {"action": {"transit": trip(clock)}, "idempotencyKey": "k3"}}, token=other["token"])
        assert "errors" not in third
        await gql.aclose()
