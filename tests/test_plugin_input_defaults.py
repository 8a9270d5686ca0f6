"""A plugin input field with a default GraphQL cannot show (a Decimal, a ``default_factory``) or an enum
default can be omitted: the model's default applies, as it would for the plugin's own pydantic model."""

from datetime import timedelta

import pytest

from jingtan_api.app import create_app
from jingtan_api.testing import GraphQLClient, make_settings, register_member, row_counts
from tests import fake_plugins
from tests.actions_helpers import submit


@pytest.fixture
async def client(db_url, clock):
    app = create_app(make_settings(db_url, plugins={"enabled": []}), clock=clock,
                     plugins=[("defaults", fake_plugins.defaults)])
    async with app.router.lifespan_context(app):
        c = GraphQLClient(app)
        c.services = app.state.services
        yield c
        await c.aclose()


def test_the_sdl_shows_what_graphql_can_show():
    sdl = str(create_app(make_settings("sqlite+aiosqlite:////tmp/jingtan-never-opened.db", plugins={"enabled": []}),
                         plugins=[("defaults", fake_plugins.defaults)]).state.schema)
    block = sdl[sdl.index("input DefaultsActionInput"):]
    block = block[:block.index("}")]
    assert "size: CupSize! = LARGE" in block
    assert 'note: String! = "none"' in block
    assert "factor: Decimal\n" in block and "tags: [String!]\n" in block  # optional, no default shown


async def test_omitted_fields_take_the_models_defaults(client, clock):
    user = await register_member(client, email="defaults@example.cn")
    at = (clock() - timedelta(minutes=5)).isoformat()
    out = await submit(client, user["token"], "defaults", {"at": at}, key="d1")
    assert out["userErrors"] == [], out
    assert out["action"]["calculation"]["formula"] == "large 1.5 reusable none"
    assert out["action"]["calculation"]["gramsCo2e"] == 150


async def test_given_values_win(client, clock):
    user = await register_member(client, email="given@example.cn")
    at = (clock() - timedelta(minutes=5)).isoformat()
    data = {"at": at, "size": "SMALL", "factor": "2.25", "tags": ["a", "b"], "note": "n"}
    out = await submit(client, user["token"], "defaults", data, key="d2")
    assert out["userErrors"] == [], out
    assert out["action"]["calculation"]["formula"] == "small 2.25 a,b n"


async def test_an_explicit_null_for_a_non_nullable_model_field_is_refused(client, clock):
    user = await register_member(client, email="null@example.cn")
    before = await row_counts(client.services.db)
    at = (clock() - timedelta(minutes=5)).isoformat()
    out = await submit(client, user["token"], "defaults", {"at": at, "factor": None}, key="d3")
    assert out["action"] is None
    assert [e["code"] for e in out["userErrors"]] == ["BAD_USER_INPUT"], out
    assert await row_counts(client.services.db) == before
