"""The HTTP fast lane (``JingtanGraphQL._fast_lane``) against the full strawberry path: the same corpus of
requests — good ones, malformed JSON, wrong content types, Accept variants, GET, batches, persisted and
allow-listed operations, auth failures, rate limits, size limits — is sent over HTTP to two apps on one
database that differ only in ``graphql.http_fast_lane``; status, every header and the body must be
identical byte for byte, and the requests the fast lane is meant for must not reach strawberry's ``run``."""

import contextlib
import json
import re
from datetime import timedelta

import httpx
import pytest

from jingtan_api.app import create_app
from jingtan_api.persisted import document_hash, register
from jingtan_api.testing import FrozenClock, GraphQLClient, make_settings, register_member

SECRET = "fast-lane-test-secret-0123456789abcdef"
REQUEST_ID = "fastlane-0001"
CATALOGUE = (
    "query Catalogue($first: Int) { offers(first: $first) { edges { node { id title pointsCost } } "
    "pageInfo { hasNextPage } } }"
)
REGISTERED = "query Registered { __typename }"


def _profile(name: str, tmp_path) -> dict:
    if name == "development":
        return {"graphql": {"batching": True, "max_batch_operations": 3}}
    if name == "production":
        # Rate limits on with a small query bucket, so that the corpus runs into RATE_LIMITED.
        return {
            "mode": "production",
            "secret_key": SECRET,
            "limits": {"rate_limiting": True, "query": {"maximum": 5, "window_seconds": 3000}, "max_document_chars": 400},
        }
    manifest = tmp_path / "persisted.json"
    register(manifest, [("Registered.graphql", REGISTERED)])
    return {
        "mode": "production",
        "secret_key": SECRET,
        "graphql": {"allow_list": True, "persisted_operations_file": str(manifest)},
    }


@pytest.fixture(params=["development", "production", "allow_list"])
def profile(request) -> str:
    return request.param


@pytest.fixture
async def pair(db_url, profile, tmp_path):
    """(profile, fast client, full-path client, the fast app's count of requests that reached ``run``, tokens)."""
    overrides = _profile(profile, tmp_path)
    clock = FrozenClock()
    async with contextlib.AsyncExitStack() as stack:
        clients = []
        ran = []
        for fast in (True, False):
            settings_overrides = json.loads(json.dumps(overrides))
            settings_overrides.setdefault("graphql", {})["http_fast_lane"] = fast
            app = create_app(make_settings(db_url, **settings_overrides), clock=clock)
            await stack.enter_async_context(app.router.lifespan_context(app))
            app.state.buckets.clock = lambda: 1_000_000.0  # the limiter's clock: both apps see the same time
            view = app.state.graphql_app
            assert view.fast_lane is fast
            count = [0]
            original = view.run

            async def run(*args, _original=original, _count=count, **kwargs):
                _count[0] += 1
                return await _original(*args, **kwargs)

            view.run = run
            ran.append(count)
            transport = httpx.ASGITransport(app=app, client=("203.0.113.9", 50000))
            clients.append(await stack.enter_async_context(httpx.AsyncClient(transport=transport, base_url="http://t")))
        fast_app_services = clients[0]._transport.app.state.services
        setup = GraphQLClient(clients[0]._transport.app)
        stack.push_async_callback(setup.aclose)
        tokens = {}
        if profile != "allow_list":
            tokens["member"] = (await register_member(setup, email="fast-lane@example.cn"))["token"]
        access = fast_app_services.access_tokens
        tokens["expired"] = access.issue(1, frozenset({"MEMBER"}), clock() - timedelta(days=1))[0]
        ran[0][0] = 0
        yield profile, clients[0], clients[1], ran[0], tokens


def _post(body, *, content_type="application/json", accept=None, token=None, raw=False, headers=None) -> dict:
    hdrs = {"X-Request-ID": REQUEST_ID}
    if content_type is not None:
        hdrs["Content-Type"] = content_type
    if accept is not None:
        hdrs["Accept"] = accept
    if token is not None:
        hdrs["Authorization"] = token if " " in token else f"Bearer {token}"
    hdrs.update(headers or {})
    content = body if raw else json.dumps(body).encode()
    return {"method": "POST", "url": "/graphql", "headers": hdrs, "content": content}


def _get(params: dict, *, accept=None) -> dict:
    hdrs = {"X-Request-ID": REQUEST_ID}
    if accept is not None:
        hdrs["Accept"] = accept
    return {"method": "GET", "url": "/graphql", "headers": hdrs, "params": params}


def corpus(profile: str, tokens: dict) -> list[tuple[str, dict, bool]]:
    """(what, request, meant for the fast lane)."""
    typename = {"query": "{ __typename }"}
    apq_doc = "query Apq { __typename }"
    apq = {"version": 1, "sha256Hash": document_hash(apq_doc)}
    registered = {"persistedQuery": {"version": 1, "sha256Hash": document_hash(REGISTERED)}}
    member = tokens.get("member")
    cases: list[tuple[str, dict, bool]] = [
        ("typename", _post(typename), True),
        ("typename, no request id", {**_post(typename), "headers": {"Content-Type": "application/json"}}, True),
        ("charset utf-8", _post(typename, content_type="application/json; charset=utf-8"), True),
        ("upper-case charset", _post(typename, content_type="application/json; charset=UTF-8"), True),
        ("upper-case content type", _post(typename, content_type="APPLICATION/JSON"), False),
        ("content type with a boundary", _post(typename, content_type="application/json; boundary=x"), False),
        ("variables and operationName", _post({"query": CATALOGUE, "variables": {"first": 3}, "operationName": "Catalogue"}), True),
        ("null fields", _post({"query": "{ __typename }", "variables": None, "extensions": None, "operationName": None}), True),
        ("two operations, one named", _post({"query": "query A { __typename } query B { __typename }", "operationName": "B"}), True),
        ("two operations, none named", _post({"query": "query A { __typename } query B { __typename }"}), True),
        ("unknown operation name", _post({"query": "query A { __typename }", "operationName": "Nope"}), True),
        ("syntax error", _post({"query": "{ __typename "}), True),
        ("validation error", _post({"query": "{ offerz { id } }"}), True),
        ("bad variable", _post({"query": CATALOGUE, "variables": {"first": "lots"}}), True),
        ("huge integer variable", _post({"query": CATALOGUE, "variables": {"first": 12345678901234567890123}}), True),
        ("missing required variable", _post({"query": "query($id: ID!) { node(id: $id) { id } }"}), True),
        ("no query", _post({"variables": {}}), True),
        ("empty query", _post({"query": ""}), True),
        ("subscription over HTTP", _post({"query": "subscription { balanceChanged { id } }"}), True),
        ("mutation without a viewer", _post({"query": "mutation { logout(input: {}) { ok } }"}), True),
        ("introspection", _post({"query": "{ __schema { queryType { name } } }"}), True),
        ("too many directives", _post({"query": "{ __typename @skip(if: false) @skip(if: false) @skip(if: false) @skip(if: false) }"}), True),
        ("too deep", _post({"query": "{ __schema { types { " + "fields { type { " * 6 + "name" + " } }" * 6 + " } } }"}), True),
        ("long list variable", _post({"query": "query($ids: [ID!]!) { nodes(ids: $ids) { id } }", "variables": {"ids": ["x"] * 1001}}), True),
        ("too many ids", _post({"query": "query($ids: [ID!]!) { nodes(ids: $ids) { id } }", "variables": {"ids": ["x"] * 101}}), True),
        ("NUL in a variable", _post({"query": CATALOGUE.replace("Int", "Int, $s: String"), "variables": {"s": "a\u0000b"}}), True),
        ("long document", _post({"query": "{ __typename }" + " " * 500}), True),
        # Accept
        ("accept graphql-response+json", _post(typename, accept="application/graphql-response+json"), True),
        ("accept both", _post(typename, accept="application/graphql-response+json, application/json;q=0.9"), True),
        ("accept wildcard", _post(typename, accept="*/*"), True),
        ("accept q=0 for gr+json", _post(typename, accept="application/graphql-response+json;q=0, */*"), True),
        ("request error as gr+json", _post({"query": "{ nope }"}, accept="application/graphql-response+json"), True),
        ("syntax error as gr+json", _post({"query": "{"}, accept="application/graphql-response+json"), True),
        ("accept text/html", _post(typename, accept="text/html"), False),
        ("accept nothing acceptable", _post(typename, accept="application/json;q=0"), False),
        # Bodies and content types the full path answers
        ("malformed JSON", _post(b"{not json", raw=True), False),
        ("JSON string body", _post(b'"hello"', raw=True), False),
        ("JSON number body", _post(b"123", raw=True), False),
        ("JSON null body", _post(b"null", raw=True), False),
        ("empty body", _post(b"", raw=True), False),
        ("UTF-8 BOM", _post(b"\xef\xbb\xbf" + json.dumps(typename).encode(), raw=True), True),
        ("NaN in variables", _post(b'{"query": "query($f: Float) { __typename }", "variables": {"f": NaN}}', raw=True), True),
        ("query is a number", _post({"query": 1}), False),
        ("variables is a list", _post({"query": "{ __typename }", "variables": []}), False),
        ("extensions is a string", _post({"query": "{ __typename }", "extensions": "x"}), False),
        ("operationName is a number", _post({"query": "{ __typename }", "operationName": 5}), False),
        ("batch", _post([typename, {"query": "query A { __typename }"}]), False),
        ("batch with a bad item", _post([typename, {"query": 5}]), False),
        ("batch too long", _post([typename] * 4), False),
        ("empty batch", _post([]), False),
        ("text/plain", _post(typename, content_type="text/plain"), False),
        ("application/graphql", {**_post(typename, content_type="application/graphql"), "content": b"{ __typename }"}, False),
        ("no content type", _post(typename, content_type=None), False),
        ("charset latin-1", _post(typename, content_type="application/json; charset=latin-1"), False),
        ("multipart", _post(b"--x\r\n\r\n--x--", raw=True, content_type="multipart/form-data; boundary=x"), False),
        ("body too large", _post({"query": "{ __typename }", "pad": "x" * 1_100_000}), False),
        # GET
        ("GET query", _get({"query": "{ __typename }"}), False),
        ("GET mutation", _get({"query": "mutation { logout(input: {}) { ok } }"}), False),
        ("GET IDE page", _get({}, accept="text/html"), False),
        ("GET nothing", _get({}), False),
        ("GET bad variables", _get({"query": "{ __typename }", "variables": "{nope"}), False),
        # Persisted operations
        ("APQ hash unknown", _post({"extensions": {"persistedQuery": apq}}), True),
        ("APQ hash and query", _post({"query": apq_doc, "extensions": {"persistedQuery": apq}}), True),
        ("APQ hash again", _post({"extensions": {"persistedQuery": apq}}), True),
        ("APQ mismatch", _post({"query": "{ __typename }", "extensions": {"persistedQuery": apq}}), True),
        ("APQ bad version", _post({"extensions": {"persistedQuery": {"version": 2, "sha256Hash": "0" * 64}}}), True),
        ("APQ bad hash", _post({"extensions": {"persistedQuery": {"version": 1, "sha256Hash": "xyz"}}}), True),
        ("registered by hash", _post({"extensions": registered}), True),
        ("documentId", _post({"documentId": f"sha256:{document_hash(REGISTERED)}"}), False),
        ("documentId malformed", _post({"documentId": "md5:abc"}), False),
        ("GET by hash", _get({"extensions": json.dumps(registered)}), False),
        # Auth
        ("garbage token", _post({"query": "{ viewer { id } }"}, token="not-a-jwt"), True),
        ("wrong scheme", _post({"query": "{ viewer { id } }"}, token="Basic dXNlcjpwYXNz"), True),
        ("empty bearer", _post({"query": "{ viewer { id } }"}, token="Bearer "), True),
        ("expired token", _post({"query": "{ viewer { id } }"}, token=tokens["expired"]), True),
        ("expired token, mutation", _post({"query": "mutation { logout(input: {}) { ok } }"}, token=tokens["expired"]), True),
        ("unknown API token", _post({"query": "{ viewer { id } }"}, token="jt_abcdefgh_" + "x" * 32), True),
        ("forwarded for (not trusted)", _post(typename, headers={"X-Forwarded-For": "198.51.100.7"}), True),
        ("odd request id", _post(typename, headers={"X-Request-ID": "short"}), True),
    ]
    if member:
        cases += [
            ("member viewer", _post({"query": "{ viewer { id email } }"}, token=member), True),
            ("member account", _post({"query": "{ viewer { account { balance } } }"}, token=member), True),
            ("member, bad field", _post({"query": "{ viewer { passwordHash } }"}, token=member), True),
        ]
    cases += [(f"catalogue #{i}", _post({"query": CATALOGUE, "variables": {"first": 50}}), True) for i in range(3)]
    if member:  # last: the member spends their query bucket (production profile: RATE_LIMITED, Retry-After)
        cases += [(f"member #{i}", _post({"query": "{ viewer { id } }"}, token=member), True) for i in range(8)]
    return cases


def _headers(response: httpx.Response) -> list[tuple[str, str]]:
    """Every header in order; a request id the server generated (none or an unusable one was sent) as
    a placeholder — it is random on either path."""
    sent = response.request.headers.get("x-request-id")
    items = response.headers.multi_items()
    if sent != REQUEST_ID:
        assert [v for k, v in items if k == "x-request-id"] != [sent]
        items = [(k, "<generated>" if k == "x-request-id" and re.fullmatch("[0-9a-f]{32}", v) else v) for k, v in items]
    return items


async def test_fast_lane_answers_exactly_like_the_full_path(backend, pair):
    profile, fast, full, ran, tokens = pair
    seen_codes: set[str] = set()
    for what, request, meant_for_fast_lane in corpus(profile, tokens):
        before = ran[0]
        a = await fast.request(**request)
        b = await full.request(**request)
        assert a.status_code == b.status_code, (what, a.text, b.text)
        assert _headers(a) == _headers(b), what
        assert a.content == b.content, (what, a.text, b.text)
        reached_run = ran[0] - before
        if a.status_code != 413:  # refused by BodyLimitMiddleware before any view
            assert reached_run == (0 if meant_for_fast_lane else 1), (what, reached_run)
        with contextlib.suppress(ValueError):
            body = a.json()
            for item in body if isinstance(body, list) else [body]:
                for error in (item or {}).get("errors") or []:
                    seen_codes.add(error.get("extensions", {}).get("code"))
    # The corpus reached what it is meant to cover.
    assert {"GRAPHQL_PARSE_FAILED", "GRAPHQL_VALIDATION_FAILED", "BAD_REQUEST"} <= seen_codes or profile == "allow_list"
    if profile == "production":
        assert "RATE_LIMITED" in seen_codes
        assert "DOCUMENT_TOO_LARGE" in seen_codes
    if profile == "allow_list":
        assert "OPERATION_NOT_ALLOWED" in seen_codes
    else:
        assert {"PERSISTED_QUERY_NOT_FOUND", "PERSISTED_QUERY_HASH_MISMATCH", "UNAUTHENTICATED"} <= seen_codes
