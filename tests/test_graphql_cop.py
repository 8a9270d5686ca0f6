"""graphql-cop's twelve security checks (github.com/dolevf/graphql-cop), written as tests against the
API in production mode. graphql-cop is not on the package registries reachable here, so each check sends
the request graphql-cop sends and applies graphql-cop's own verdict; every test asserts "no finding".
"""

import json

import httpx
import pytest

from jingtan_api.app import create_app
from jingtan_api.testing import make_settings

PROD_KEY = "p" * 40


@pytest.fixture
async def prod(db_url):
    app = create_app(make_settings(db_url, mode="production", secret_key=PROD_KEY))
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://cop") as http:
            yield http


def _json(response: httpx.Response):
    try:
        return response.json()
    except ValueError:
        return None


async def post(http: httpx.AsyncClient, payload, **kwargs) -> httpx.Response:
    return await http.post("/graphql", json=payload, **kwargs)


def has_data(body) -> bool:
    return isinstance(body, dict) and bool(body.get("data"))


async def test_alias_overloading(prod):
    query = "query cop { " + " ".join(f"alias{i}:__typename" for i in range(101)) + " }"
    body = _json(await post(prod, {"query": query}))
    assert not has_data(body), "101 aliases were executed"


async def test_batch_queries(prod):
    response = await post(prod, [{"query": "query cop { __typename }"}] * 10)
    body = _json(response)
    assert not (isinstance(body, list) and len(body) >= 10), "a batch of 10 queries was executed"


async def test_directive_overloading(prod):
    query = "query cop { __typename " + "@aa" * 10 + " }"
    body = _json(await post(prod, {"query": query}))
    # graphql-cop's finding: one error per repeated directive, i.e. the server validated every one.
    errors = (body or {}).get("errors") or []
    assert len(errors) < 10, f"{len(errors)} errors for 10 repeated directives"


async def test_field_suggestions(prod):
    body = _json(await post(prod, {"query": "query cop { __schema { directive } }"}))
    assert "Did you mean" not in json.dumps(body)
    body = _json(await post(prod, {"query": "{ viewr { id } }"}))
    assert "Did you mean" not in json.dumps(body)


async def test_get_queries_are_refused(prod):
    response = await prod.get("/graphql", params={"query": "query cop { __typename }"})
    assert not has_data(_json(response)), "a query over GET was executed (CSRF-prone)"
    assert response.status_code in (400, 405)


async def test_get_mutations_are_refused(prod):
    response = await prod.get("/graphql", params={"query": "mutation cop { __typename }"})
    assert not has_data(_json(response))


async def test_graphiql_is_not_exposed(prod):
    for path in ("/graphql", "/graphiql", "/playground", "/console"):
        response = await prod.get(path, headers={"Accept": "text/html"})
        assert "graphiql" not in response.text.lower(), path


async def test_introspection_is_off(prod):
    body = _json(await post(prod, {"query": "query cop { __schema { types { name fields { name } } } }"}))
    assert not has_data(body)


async def test_circular_introspection_is_off(prod):
    deep = "query cop { __schema { types { fields { type { fields { type { fields { type { fields { type { name } } } } } } } } } } }"
    body = _json(await post(prod, {"query": deep}))
    assert not has_data(body)


async def test_no_trace_mode(prod):
    body = _json(await post(prod, {"query": "query cop { __typename }"}))
    assert "tracing" not in ((body or {}).get("extensions") or {})
    assert "errors" not in body or all("locations" in e or "message" in e for e in body["errors"])


async def test_unhandled_errors_show_no_stack_trace(prod):
    for payload in ({"query": "qwerty cop { abc }"}, {"query": "{ __typename }", "variables": "nope"}):
        response = await post(prod, payload)
        text = response.text
        assert "Traceback" not in text and "exception" not in text.lower() and 'File "' not in text, text[:300]


async def test_url_encoded_post_is_refused(prod):
    response = await prod.post(
        "/graphql", content="query=query+cop+%7B+__typename+%7D",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert not has_data(_json(response)), "a url-encoded POST (a cross-site form) was executed"


async def test_ordinary_directives_still_work_and_the_refusal_is_one_error(prod):
    ok = _json(await post(prod, {"query": "query($a: Boolean!) { __typename @include(if: $a) @skip(if: false) }", "variables": {"a": True}}))
    assert ok["data"] == {"__typename": "Query"}
    many = "query { " + " ".join(f"f{i}: __typename @include(if: true)" for i in range(51)) + " }"
    body = _json(await post(prod, {"query": many}))
    assert "data" not in body or body["data"] is None
    assert [e["extensions"]["code"] for e in body["errors"]] == ["GRAPHQL_VALIDATION_FAILED"]
    assert body["errors"][0]["message"].startswith("Too many directives")


async def test_get_queries_stay_available_in_development(gql, app):
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://dev") as http:
        response = await http.get("/graphql", params={"query": "{ __typename }"})
    assert response.json()["data"] == {"__typename": "Query"}
