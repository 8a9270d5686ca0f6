"""Bad input that used to break the server: each gets a typed error, and nothing is written.

* request bodies that are JSON but not a GraphQL request (scalars, lists of non-objects);
"""

import httpx
import pytest

from jingtan_api.app import create_app
from jingtan_api.testing import make_settings, row_counts

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
    assert mutation.status_code == 400
    assert "mutation" in _refused_request(mutation)["message"]


async def test_with_batching_on_every_item_must_be_an_object(db_url):
    app = create_app(make_settings(db_url, graphql={"batching": True}))
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as http:
            refused = await http.post("/graphql", json=[{"query": "{ viewer { id } }"}, "x"])
            assert refused.status_code == 400
            _refused_request(refused)
            ok = await http.post("/graphql", json=[{"query": "{ viewer { id } }"}, {"query": "{ viewer { id } }"}])
            assert ok.status_code == 200 and [r["data"] for r in ok.json()] == [{"viewer": None}] * 2
