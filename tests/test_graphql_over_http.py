"""GraphQL over HTTP (https://graphql.github.io/graphql-over-http/): media types and status codes, over
HTTP through the ASGI app. ``application/graphql-response+json`` when the client asks for it (400 for
request errors, without ``data``); ``application/json`` keeps answering GraphQL errors with 200."""

import json

import httpx
import pytest

from jingtan_api.app import GRAPHQL_RESPONSE_JSON, create_app, negotiate
from jingtan_api.testing import make_settings, row_counts

GRJ = {"Accept": GRAPHQL_RESPONSE_JSON}
GRAPHIQL_ACCEPT = {"Accept": "application/graphql-response+json, application/json, multipart/mixed"}
REGISTER = "mutation($i: RegisterInput!) { register(input: $i) { user { id } userErrors { code } } }"


def register_vars(email: str = "http-user@example.cn") -> dict:
    return {"i": {"email": email, "password": "Green-leaf-2026", "displayName": "HTTP 用户"}}


@pytest.fixture
async def http(app):
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        yield client


def media_type(response: httpx.Response) -> str:
    return response.headers["content-type"].split(";")[0].strip()


@pytest.mark.parametrize(
    ("accept", "expected"),
    [
        (None, "application/json"),
        ("", "application/json"),
        ("*/*", "application/json"),
        ("application/json", "application/json"),
        (GRAPHQL_RESPONSE_JSON, GRAPHQL_RESPONSE_JSON),
        ("application/graphql-response+json, application/json;q=0.9", GRAPHQL_RESPONSE_JSON),
        ("application/graphql-response+json;q=0.5, application/json", "application/json"),
        ("application/graphql-response+json;q=0, */*", "application/json"),
        ("application/*;q=0.2, application/graphql-response+json;q=0.8", GRAPHQL_RESPONSE_JSON),
        ("text/html", None),
        ("application/json;q=0", None),
    ],
)
def test_negotiation(accept, expected):
    assert negotiate(accept) == expected


async def test_a_successful_query_answers_200_in_the_media_type_asked_for(http):
    for headers, expected in [(GRJ, GRAPHQL_RESPONSE_JSON), (GRAPHIQL_ACCEPT, GRAPHQL_RESPONSE_JSON),
                              ({"Accept": "application/json"}, "application/json"), ({}, "application/json")]:
        response = await http.post("/graphql", json={"query": "{ viewer { id } }"}, headers=headers)
        assert response.status_code == 200
        assert media_type(response) == expected
        assert response.json()["data"] == {"viewer": None}
    response = await http.post("/graphql", json={"query": "{ viewer { id } }"}, headers=GRJ)
    assert response.headers["content-type"] == "application/graphql-response+json; charset=utf-8"


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"query": "{ viewer { "}, "GRAPHQL_PARSE_FAILED"),
        ({"query": "{ viewer { nope } }"}, "GRAPHQL_VALIDATION_FAILED"),
        # variable coercion: a string where an Int is declared, and a required variable left out
        ({"query": "query($n: Int!) { viewer { account { entries(first: $n) { totalCount } } } }",
          "variables": {"n": "ten"}}, None),
        ({"query": "query($n: Int!) { viewer { account { entries(first: $n) { totalCount } } } }"}, None),
        ({"query": "query A { viewer { id } } query B { viewer { id } }", "operationName": "C"}, None),
    ],
)
async def test_request_errors_are_400_without_data_for_graphql_response_json(http, services, body, code):
    before = await row_counts(services.db)
    strict = await http.post("/graphql", json=body, headers=GRJ)
    assert strict.status_code == 400, strict.text
    assert media_type(strict) == GRAPHQL_RESPONSE_JSON
    payload = strict.json()
    assert "data" not in payload  # the spec: a request error has no data entry
    assert payload["errors"] and all(e["extensions"]["code"] for e in payload["errors"])
    if code:
        assert payload["errors"][0]["extensions"]["code"] == code
    legacy = await http.post("/graphql", json=body, headers={"Accept": "application/json"})
    assert media_type(legacy) == "application/json"
    if legacy.status_code == 200:  # GraphQL errors keep 200 with application/json
        assert legacy.json()["data"] is None and legacy.json()["errors"]
        if code:
            assert legacy.json()["errors"][0]["extensions"]["code"] == code
    else:  # an unknown operationName is refused by the transport on both media types
        assert legacy.status_code == 400 and legacy.json()["errors"][0]["extensions"]["code"] == "BAD_REQUEST"
    assert await row_counts(services.db) == before


async def test_a_refused_mutation_writes_nothing(http, services):
    before = await row_counts(services.db)
    bad_variables = {"i": {"email": "x@example.cn", "password": 5}}  # coercion fails: nothing runs
    response = await http.post("/graphql", json={"query": REGISTER, "variables": bad_variables}, headers=GRJ)
    assert response.status_code == 400 and "data" not in response.json()
    assert response.json()["errors"][0]["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED"
    assert await row_counts(services.db) == before


async def test_execution_errors_answer_200_with_the_data_entry(http, member):
    """Execution started: 200 even when an error made data null (the spec's rule for data: null)."""
    auth = {"Authorization": f"Bearer {member['token']}"}
    response = await http.post("/graphql", json={"query": "{ auditLog(first: 1) { totalCount } }"},
                               headers={**GRJ, **auth})
    body = response.json()
    assert response.status_code == 200, body
    assert "data" in body and body["data"] is None
    assert body["errors"][0]["extensions"]["code"] == "FORBIDDEN" and body["errors"][0]["path"] == ["auditLog"]
    response = await http.post("/graphql", json={"query": "{ viewer { displayName } }"}, headers={**GRJ, **auth})
    assert response.status_code == 200 and response.json()["data"]["viewer"]["displayName"] == "李雷 Li Lei"


async def test_a_mutation_over_get_is_405_and_writes_nothing(http, services):
    before = await row_counts(services.db)
    for headers in (GRJ, {"Accept": "application/json"}):
        response = await http.get(
            "/graphql",
            params={"query": 'mutation { logout(input: {allSessions: true}) { ok } }'},
            headers=headers,
        )
        assert response.status_code == 405, response.text
        assert response.headers["allow"] == "GET, POST"
        assert response.json()["errors"][0]["extensions"]["code"] == "METHOD_NOT_ALLOWED"
    response = await http.get("/graphql", params={"query": REGISTER, "variables": json.dumps(register_vars())})
    assert response.status_code == 405
    assert await row_counts(services.db) == before


@pytest.mark.parametrize(
    ("content", "content_type", "fragment"),
    [
        (b"{not json", "application/json", "JSON"),
        (b'{"query": 5}', "application/json", "query"),
        (b'{"query": "{ viewer { id } }", "variables": [1]}', "application/json", "variables"),
        (b"query=%7B%20viewer%20%7B%20id%20%7D%20%7D", "text/plain", "content type"),
        (b"{}", "application/json", "No GraphQL query"),
    ],
)
async def test_malformed_requests_are_400_with_a_typed_error(http, services, content, content_type, fragment):
    before = await row_counts(services.db)
    for accept in (GRAPHQL_RESPONSE_JSON, "application/json"):
        response = await http.post("/graphql", content=content, headers={"Content-Type": content_type, "Accept": accept})
        assert response.status_code == 400, response.text
        assert media_type(response) == accept
        error = response.json()["errors"][0]
        assert error["extensions"]["code"] == "BAD_REQUEST"
        assert fragment.lower() in error["message"].lower() and " / " in error["message"]
    assert await row_counts(services.db) == before


async def test_an_unacceptable_accept_header_is_406(http, services):
    before = await row_counts(services.db)
    response = await http.post(
        "/graphql", json={"query": REGISTER, "variables": register_vars()}, headers={"Accept": "text/csv"}
    )
    assert response.status_code == 406
    assert response.json()["errors"][0]["extensions"]["code"] == "NOT_ACCEPTABLE"
    assert await row_counts(services.db) == before


async def test_the_query_cost_limit_is_a_request_error(http):
    one = "offers(first: 100) { nodes { merchant { id } } }"  # costs 1 + 100 × 2
    response = await http.post("/graphql", json={"query": f"{{ {one} }}"}, headers=GRJ)
    assert response.status_code == 200, response.text
    many = " ".join(f"a{i}: {one}" for i in range(26))  # 26 × 201 > 5,000
    response = await http.post("/graphql", json={"query": f"{{ {many} }}"}, headers=GRJ)
    assert response.status_code == 400 and "data" not in response.json()
    assert response.json()["errors"][0]["extensions"]["code"] == "QUERY_TOO_COMPLEX"


@pytest.mark.parametrize("mode", ["development", "production"])
async def test_graphiql_page_and_assets_follow_the_mode(tmp_path, mode):
    overrides = {"mode": mode, "secret_key": "k" * 40} if mode == "production" else {}
    app = create_app(make_settings(f"sqlite+aiosqlite:///{tmp_path / 'x.db'}", **overrides))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        page = await client.get("/graphql", headers={"Accept": "text/html"})
        asset = await client.get("/graphiql-assets/graphiql.min.js")
    if mode == "development":
        assert page.status_code == 200 and "/graphiql-assets/graphiql.min.js" in page.text
        assert asset.status_code == 200 and asset.headers["content-type"].startswith("text/javascript")
    else:
        assert page.status_code != 200 and asset.status_code == 404


@pytest.mark.parametrize("settings_overrides", [{"graphql": {"batching": True}}])
async def test_a_batch_answers_200_with_one_result_per_operation(http):
    batch = [{"query": "{ viewer { id } }"}, {"query": "{ viewer { nope } }"}]
    response = await http.post("/graphql", json=batch, headers=GRJ)
    assert response.status_code == 200 and media_type(response) == GRAPHQL_RESPONSE_JSON
    first, second = response.json()
    assert first["data"] == {"viewer": None}
    assert second["errors"][0]["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED"
    single = await http.post("/graphql", json=batch[1], headers=GRJ)
    assert single.status_code == 400  # the same request error alone


async def test_response_bodies_are_compact_utf8_json(http):
    """Bodies are written by orjson: compact, Chinese as UTF-8 rather than \\u escapes, and the same
    document a standard JSON parser reads."""
    response = await http.post("/graphql", json={"query": REGISTER, "variables": register_vars()})
    assert response.status_code == 200
    body = response.content
    assert b"\\u" not in body and b": " not in body and b", " not in body
    assert json.loads(body.decode("utf-8"))["data"]["register"]["userErrors"] == []
    response = await http.post("/graphql", json={"query": "{ viewer { displayName } }"})
    assert response.json()["data"] == {"viewer": None}


def test_values_orjson_cannot_encode_fall_back_to_the_standard_encoder(app):
    view = next(route.app for route in app.routes if getattr(route, "path", "") == "/graphql")
    huge = 2**70
    assert json.loads(view.encode_json({"data": {"n": huge, "名": "碳"}})) == {"data": {"n": huge, "名": "碳"}}
    assert json.loads(view.encode_json({"data": {"s": "\ud800"}})) == {"data": {"s": "\ud800"}}
    assert view.encode_json({"data": {"名": "碳"}}) == '{"data":{"名":"碳"}}'.encode()
