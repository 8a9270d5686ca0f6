"""Bad input that used to break the server: each gets a typed error, and nothing is written.

* request bodies that are JSON but not a GraphQL request (scalars, lists of non-objects);
* date-times that overflow when converted to UTC or to a time zone;
* NUL characters in any string (PostgreSQL refuses them; SQLite would store them);
* production error messages that echoed submitted values or suggested field names.
"""

import json

import httpx
import pytest
from offers_helpers import CREATE_OFFER, make_admin, make_merchant

from jingtan_api.app import create_app
from jingtan_api.plugins.testing import SUBMIT
from jingtan_api.testing import GraphQLClient, make_settings, register_member, row_counts
from tests.actions_helpers import trip

# --- request bodies --------------------------------------------------------------------------------------


@pytest.fixture
async def http(app):
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        yield client


def _refused_request(response: httpx.Response, code: str = "BAD_REQUEST") -> dict:
    assert response.headers["content-type"].startswith("application/json"), response.text
    assert len(response.headers["x-request-id"]) == 32
    body = response.json()
    assert body["data"] is None
    [error] = body["errors"]
    assert error["extensions"]["code"] == code, error
    assert " / " in error["message"]  # bilingual
    return error


@pytest.mark.parametrize("body", ['"hello"', "123", "null", "true", "1.5", "[1, 2]", '["a"]', '[{"query": "{ viewer { id } }"}, 3]'])
async def test_a_body_that_is_not_a_request_object_is_a_400(http, services, body):
    before = await row_counts(services.db)
    response = await http.post("/graphql", content=body, headers={"content-type": "application/json"})
    assert response.status_code == 400
    error = _refused_request(response)
    assert "JSON object" in error["message"]
    assert await row_counts(services.db) == before


@pytest.mark.parametrize(
    "body, message",
    [
        ("{", "Unable to parse"),
        ('{"query": 5}', "`query` must be a string"),
        ('{"query": "{ viewer { id } }", "variables": 5}', "`variables` must be an object"),
        ("{}", "No GraphQL query"),
        ('[{"query": "{ viewer { id } }"}]', "Batching is not enabled"),
    ],
)
async def test_other_refused_requests_are_graphql_shaped_too(http, body, message):
    response = await http.post("/graphql", content=body, headers={"content-type": "application/json"})
    assert response.status_code == 400
    assert message in _refused_request(response)["message"]


async def test_refused_get_requests_keep_their_status_and_variables_may_be_null(http):
    response = await http.get("/graphql", params={"query": "{ viewer { id } }", "variables": "5"})
    assert response.status_code == 400
    _refused_request(response)
    ok = await http.get("/graphql", params={"query": "{ viewer { id } }", "variables": "null"})
    assert ok.status_code == 200 and ok.json()["data"] == {"viewer": None}
    mutation = await http.get("/graphql", params={"query": "mutation { logout(input: {allSessions: true}) { ok } }"})
    assert mutation.status_code == 405 and mutation.headers["allow"] == "GET, POST"  # GraphQL over HTTP
    assert "mutation" in _refused_request(mutation, "METHOD_NOT_ALLOWED")["message"].lower()


async def test_with_batching_on_every_item_must_be_an_object(db_url):
    app = create_app(make_settings(db_url, graphql={"batching": True}))
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as http:
            refused = await http.post("/graphql", json=[{"query": "{ viewer { id } }"}, "x"])
            assert refused.status_code == 400
            _refused_request(refused)
            for item, key in (({"query": 5}, "query"), ({"query": "{ viewer { id } }", "variables": 5}, "variables"),
                              ({"query": "{ viewer { id } }", "extensions": "x"}, "extensions"),
                              ({"query": "{ viewer { id } }", "operationName": ["a"]}, "operationName")):
                refused = await http.post("/graphql", json=[{"query": "{ viewer { id } }"}, item])
                assert refused.status_code == 400
                assert f"`{key}` of a batched operation" in _refused_request(refused)["message"]
            ok = await http.post("/graphql", json=[{"query": "{ viewer { id } }"}, {"query": "{ viewer { id } }"}])
            assert ok.status_code == 200 and [r["data"] for r in ok.json()] == [{"viewer": None}] * 2


# --- date-times that overflow ----------------------------------------------------------------------------

OVERFLOWING = ["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00", "0001-01-01T00:00:00Z", "9999-12-31T12:00:00Z"]


def _bad_user_input(body: dict, *, field: str | None = None) -> dict:
    assert body["data"] is None, body
    [error] = body["errors"]
    assert error["extensions"]["code"] == "BAD_USER_INPUT", error
    assert "INTERNAL" not in json.dumps(body)
    if field:
        assert field in error["message"], error
    return error


@pytest.mark.parametrize("value", OVERFLOWING)
@pytest.mark.parametrize("field", ["startedAt", "endedAt"])
async def test_transit_trip_times_out_of_range(gql, services, clock, member, value, field):
    before = await row_counts(services.db)
    data = {**trip(clock), field: value}
    body = await gql(SUBMIT, {"input": {"action": {"transit": data}, "idempotencyKey": "k1"}}, token=member["token"])
    error = _bad_user_input(body, field=field)
    assert "0001-01-02" in error["message"] and value not in error["message"]
    assert await row_counts(services.db) == before


@pytest.mark.parametrize("value", OVERFLOWING[:2])
@pytest.mark.parametrize("field", ["startsAt", "endsAt"])
async def test_offer_window_out_of_range(gql, services, clock, value, field):
    merchant = await make_merchant(gql, services, clock, await make_admin(services, clock))
    before = await row_counts(services.db)
    offer = {
        "titleZh": "燕麦拿铁", "titleEn": "Oat latte", "pointsPrice": 100, "totalStock": 10, "perMemberLimit": 1,
        "startsAt": "2026-01-01T00:00:00+08:00", "endsAt": "2027-01-01T00:00:00+08:00", "status": "ACTIVE",
        field: value,
    }
    _bad_user_input(await gql(CREATE_OFFER, {"input": offer}, token=merchant["token"]), field=field)
    assert await row_counts(services.db) == before


CREATE_TOKEN = "mutation($i: CreateApiTokenInput!) { createApiToken(input: $i) { secret userErrors { code } } }"


@pytest.mark.parametrize("value", OVERFLOWING[:2])
async def test_api_token_expiry_out_of_range(gql, services, member, value):
    before = await row_counts(services.db)
    variables = {"i": {"name": "sync", "scopes": ["account:read"], "expiresAt": value}}
    _bad_user_input(await gql(CREATE_TOKEN, variables, token=member["token"]), field="expiresAt")
    assert await row_counts(services.db) == before


async def test_date_time_literals_are_checked_too(gql, services, member):
    before = await row_counts(services.db)
    body = await gql(
        'mutation { createApiToken(input: {name: "sync", scopes: ["account:read"], '
        'expiresAt: "0001-01-01T00:00:00+14:00"}) { secret } }',
        token=member["token"],
    )
    _bad_user_input(body)
    assert await row_counts(services.db) == before


async def test_the_extreme_accepted_instants_still_work(gql, member):
    for value in ("0001-01-02T00:00:00Z", "9999-12-30T23:59:59+00:00"):
        variables = {"i": {"name": "sync", "scopes": ["account:read"], "expiresAt": value}}
        body = await gql(CREATE_TOKEN, variables, token=member["token"])
        # the far past is a domain refusal (expiry in the past), the far future a token: neither crashes
        assert "errors" not in body, body
        codes = [e["code"] for e in body["data"]["createApiToken"]["userErrors"]]
        assert codes == (["BAD_USER_INPUT"] if value.startswith("0001") else []), codes


# --- NUL characters ---------------------------------------------------------------------------------------

NUL = "a\u0000b"


async def _refused_nul(gql, services, query: str, variables: dict | None = None, *, token: str | None = None,
                       where: str = "") -> None:
    before = await row_counts(services.db)
    error = _bad_user_input(await gql(query, variables, token=token))
    assert "NUL" in error["message"] and where in error["message"], error
    assert "\u0000" not in error["message"]
    assert await row_counts(services.db) == before


@pytest.mark.parametrize(
    "query, variables, where",
    [
        ("query($c: String) { merchants(city: $c) { totalCount } }", {"c": NUL}, "Variable '$c'"),
        ('{ merchants(city: "a\\u0000b") { totalCount } }', None, "string literal"),
        ("query($c: String) { offers(filter: {city: $c}) { totalCount } }", {"c": NUL}, "Variable '$c'"),
        ("query($f: OfferFilter) { offers(filter: $f) { totalCount } }", {"f": {"city": NUL}}, "$f' at .city"),
        ('{ offers(filter: {city: "\\u0000"}) { totalCount } }', None, "string literal"),
        ("query($c: String) { merchants(city: $c) { totalCount } }", {"c": "x", "unused": [{"k": NUL}]}, "$unused"),
    ],
)
async def test_nul_in_query_arguments(gql, services, query, variables, where):
    await _refused_nul(gql, services, query, variables, where=where)


async def test_nul_in_login_identifier_and_password(gql, services, member):
    login = "mutation($i: LoginInput!) { login(input: $i) { tokens { accessToken } userErrors { code } } }"
    await _refused_nul(gql, services, login, {"i": {"identifier": f"{NUL}@example.cn", "password": "Green-leaf-2026"}},
                       where=".identifier")
    await _refused_nul(gql, services, login, {"i": {"identifier": member["email"], "password": NUL}}, where=".password")


async def test_nul_in_api_token_names(gql, services, member):
    await _refused_nul(gql, services, CREATE_TOKEN, {"i": {"name": NUL, "scopes": ["account:read"]}},
                       token=member["token"], where=".name")
    await _refused_nul(gql, services, 'mutation { createApiToken(input: {name: "x\\u{0}", scopes: ["account:read"]}) '
                       "{ secret } }", token=member["token"], where="literal")


async def test_nul_in_reasons(gql, services, admin, member):
    grant = "mutation($i: AdjustPointsInput!) { grantPoints(input: $i) { userErrors { code } } }"
    variables = {"i": {"userId": member["id"], "amount": 5, "reason": f"good {NUL} deed", "idempotencyKey": "g1"}}
    await _refused_nul(gql, services, grant, variables, token=admin["token"], where=".reason")


async def test_nul_in_partner_trip_ids_and_evidence(gql, services, clock, member):
    data = trip(clock, partnerTripId=NUL)
    await _refused_nul(gql, services, SUBMIT, {"input": {"action": {"transit": data}, "idempotencyKey": "k1"}},
                       token=member["token"], where=".action.transit.partnerTripId")
    variables = {"input": {"action": {"transit": trip(clock)}, "idempotencyKey": "k2", "evidence": {"externalId": NUL}}}
    await _refused_nul(gql, services, SUBMIT, variables, token=member["token"], where=".evidence.externalId")
    # keys count too
    variables = {"input": {"action": {"transit": trip(clock)}, "idempotencyKey": "k3", NUL: 1}}
    await _refused_nul(gql, services, SUBMIT, variables, token=member["token"], where="$input' at [")


async def test_text_without_nul_still_works(gql, member):
    # escapes other than \u0000 are fine
    data = await gql.ok('{ merchants(city: "\\u6df1\\u5733") { edges { cursor } } }')
    assert data["merchants"]["edges"] == []


# --- production messages ---------------------------------------------------------------------------------

PROD_KEY = "k" * 40
LOGIN = "mutation($i: LoginInput!) { login(input: $i) { tokens { accessToken } userErrors { code } } }"
SECRET = "Hunter2-secret-pw"


@pytest.fixture
async def prod_gql(db_url):
    app = create_app(make_settings(db_url, mode="production", secret_key=PROD_KEY))
    async with app.router.lifespan_context(app):
        client = GraphQLClient(app)
        yield client
        await client.aclose()


@pytest.mark.parametrize(
    "variables",
    [
        {"i": {"identifier": "member@example.cn", "password": [SECRET]}},
        {"i": {"identifier": "member@example.cn", "password": {"value": SECRET}}},
        {"i": {"identifier": "member@example.cn", "passwrd": SECRET}},
        {"i": SECRET},
    ],
)
async def test_production_coercion_errors_do_not_echo_values_or_suggest(prod_gql, variables):
    await register_member(prod_gql, email="member@example.cn", password=SECRET)
    body = await prod_gql(LOGIN, variables)
    assert body["data"] is None and body["errors"]
    text = json.dumps(body)
    assert SECRET not in text and "Did you mean" not in text, text
    for error in body["errors"]:
        assert error["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED"
        assert error["message"].startswith("Variable '$i' has invalid value"), error


async def test_production_literal_errors_do_not_echo_values(prod_gql):
    body = await prod_gql(f'mutation {{ login(input: {{identifier: "x", passwrd: "{SECRET}"}}) {{ userErrors {{ code }} }} }}')
    text = json.dumps(body)
    assert body["errors"] and SECRET not in text and "Did you mean" not in text, text
    # typed coercion errors too (the DateTime range check answers BAD_USER_INPUT)
    body = await prod_gql('mutation { createApiToken(input: {name: "x", scopes: [], expiresAt: "0001-01-01T00:00:00+14:00"}) '
                          "{ secret } }")
    assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    assert "0001-01-01T00:00:00+14:00" not in json.dumps(body), body


async def test_development_keeps_the_details(gql):
    body = await gql(LOGIN, {"i": {"identifier": "member@example.cn", "passwrd": SECRET}})
    text = json.dumps(body)
    assert "Did you mean 'password'?" in text and SECRET in text
