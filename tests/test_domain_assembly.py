"""The schema assembly (jingtan_api/graphql/assemble.py): a domain registered the documented way — an
object implementing ``jingtan_register_domain`` on the app's plugin manager, the same path the core's
domains take — adds Query and Mutation fields, a Node type with its ``node(id:)`` lookup and fields on
the shared ``User`` type, without the users package knowing about it; clashes stop startup with one line.
"""

from dataclasses import dataclass

import pytest
import strawberry
from strawberry.types import Info

from jingtan_api.app import create_app
from jingtan_api.errors import NotFound, ValidationFailed
from jingtan_api.graphql.domain import Domain, hookimpl
from jingtan_api.graphql.mutations import error_code_enum, payload_mutation, user_error_type
from jingtan_api.graphql.relay import Node, UserError, decode_id
from jingtan_api.settings import ConfigurationError
from jingtan_api.testing import GraphQLClient, make_settings, register_member
from jingtan_api.users.types import User, require_personal

# --- an extra domain, written as a new domain package would be ------------------------------------------


@strawberry.type(description="A badge earned by a member. / 徽章。")
class Badge(Node):
    name: str = strawberry.field(description="Name. / 名称。")
    owner_pk: strawberry.Private[int]


BadgeErrorCode = error_code_enum("BadgeErrorCode", (), description="Codes of badge mutations.")
BadgeError = user_error_type("BadgeError", BadgeErrorCode, description="Why a badge mutation failed.")


@strawberry.type(description="Result of `awardBadge`.")
class AwardBadgePayload:
    badge: Badge | None = None
    user_errors: list[UserError] = strawberry.field(default_factory=list)
    errors: list[BadgeError] = strawberry.field(default_factory=list)


@dataclass
class BadgeStore:
    badges: dict[int, Badge]


def badges_domain(store: BadgeStore):
    """A plugin object whose hook returns the domain (state per app, like a real domain's tables)."""

    @strawberry.type
    class BadgeQuery:
        @strawberry.field(description="Number of badges awarded. / 徽章数。")
        def badge_count(self) -> int:
            return len(store.badges)

    @strawberry.type
    class BadgeMutation:
        @payload_mutation(description="Award a badge to yourself. / 领取徽章。")
        def award_badge(self, info: Info, name: str) -> AwardBadgePayload:
            user_id = info.context.viewer.require_user()
            if not 2 <= len(name) <= 20:
                raise ValidationFailed("Name of 2-20 characters / 名称须为 2-20 个字符", field="name")
            badge = Badge(pk=len(store.badges) + 1, name=name, owner_pk=user_id)
            store.badges[badge.pk] = badge
            return AwardBadgePayload(badge=badge)

        @payload_mutation(description="Look a badge up (fails for unknown ids).")
        def check_badge(self, info: Info, id: strawberry.ID) -> AwardBadgePayload:
            pk = decode_id(id, "Badge")
            if pk not in store.badges:
                raise NotFound("No such badge / 徽章不存在", field="id")
            return AwardBadgePayload(badge=store.badges[pk])

    @strawberry.type
    class UserBadges:
        @strawberry.field(description="The user's badges (only the user and admins). / 徽章。")
        def badges(self: User, info: Info) -> list[Badge]:
            require_personal(info, self)
            return [b for b in store.badges.values() if b.owner_pk == self.pk]

    async def badge_nodes(info: Info, pks: list[int]) -> dict[int, Badge]:
        viewer = info.context.viewer
        return {pk: store.badges[pk] for pk in pks if pk in store.badges and viewer.can_see_user(store.badges[pk].owner_pk)}

    class Plugin:
        @hookimpl
        def jingtan_register_domain(self) -> Domain:
            return Domain(
                name="badges",
                query=[BadgeQuery],
                mutation=[BadgeMutation],
                types=[Badge],
                nodes={"Badge": badge_nodes},
                extends={"User": [UserBadges]},
            )

    return Plugin()


@pytest.fixture
async def badges_app(settings, clock):
    store = BadgeStore(badges={})
    application = create_app(settings, clock=clock, plugins=[("badges", badges_domain(store))])
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
async def bgql(badges_app):
    client = GraphQLClient(badges_app)
    yield client
    await client.aclose()


AWARD = "mutation($n: String!) { awardBadge(name: $n) { badge { id name } userErrors { code field message } errors { code field } } }"


@pytest.mark.db
async def test_hook_jingtan_register_domain(bgql):
    """Query, Mutation, a Node type and a User field, all from one registered domain, over HTTP."""
    member = await register_member(bgql)
    other = await register_member(bgql)
    awarded = await bgql.ok(AWARD, {"n": "低碳先锋 Pioneer"}, token=member["token"])
    badge = awarded["awardBadge"]["badge"]
    assert awarded["awardBadge"]["userErrors"] == [] and badge["name"] == "低碳先锋 Pioneer"

    data = await bgql.ok("{ badgeCount viewer { id badges { id name } } }", token=member["token"])
    assert data["badgeCount"] == 1
    assert data["viewer"]["badges"] == [badge]

    # node(id:) finds the new type, and a User fetched by node has the contributed field: the object is
    # of the type the schema publishes (no separate "merged" class).
    q = "query($ids: [ID!]!) { nodes(ids: $ids) { __typename ... on Badge { name } ... on User { id badges { name } account { balance } } } }"
    nodes = (await bgql.ok(q, {"ids": [badge["id"], member["id"]]}, token=member["token"]))["nodes"]
    assert nodes == [
        {"__typename": "Badge", "name": "低碳先锋 Pioneer"},
        {"__typename": "User", "id": member["id"], "badges": [{"name": "低碳先锋 Pioneer"}], "account": {"balance": 0}},
    ]
    # Someone else's badge is not visible through node(id:), and their User.badges is personal.
    assert (await bgql.ok(q, {"ids": [badge["id"]]}, token=other["token"]))["nodes"] == [None]
    body = await bgql("query($id: ID!) { node(id: $id) { ... on Badge { name } } }", {"id": badge["id"]})
    assert body["data"]["node"] is None


@pytest.mark.db
async def test_extra_domain_mutation_errors_are_typed_and_write_nothing(bgql):
    member = await register_member(bgql)
    bad = (await bgql.ok(AWARD, {"n": "x"}, token=member["token"]))["awardBadge"]
    assert bad["badge"] is None
    assert bad["userErrors"] == [{"code": "BAD_USER_INPUT", "field": ["input", "name"], "message": "Name of 2-20 characters / 名称须为 2-20 个字符"}]
    assert bad["errors"] == [{"code": "BAD_USER_INPUT", "field": ["input", "name"]}]
    anonymous = (await bgql.ok(AWARD, {"n": "Pioneer"}))["awardBadge"]
    assert [e["code"] for e in anonymous["errors"]] == ["UNAUTHENTICATED"]
    assert (await bgql.ok("{ badgeCount }"))["badgeCount"] == 0
    missing = await bgql.ok(
        "mutation($id: ID!) { checkBadge(id: $id) { badge { id } errors { code } } }",
        {"id": "QmFkZ2U6OTk="},  # Badge:99
        token=member["token"],
    )
    assert missing["checkBadge"] == {"badge": None, "errors": [{"code": "NOT_FOUND"}]}


@pytest.mark.db
async def test_apps_with_and_without_the_extra_domain_live_side_by_side(badges_app, app):
    with_badges, core_only = str(badges_app.state.schema), str(app.state.schema)
    assert "badgeCount" in with_badges and "type Badge implements Node" in with_badges
    assert "badgeCount" not in core_only and "badges" not in core_only and "type Badge" not in core_only
    # The shared Python class is untouched: the field exists only in the schema that assembled it.
    assert "badges" not in {f.python_name for f in User.__strawberry_definition__.fields}


def _domain_plugin(**kwargs):
    class Plugin:
        @hookimpl
        def jingtan_register_domain(self) -> Domain:
            return Domain(name=kwargs.pop("name", "extra"), **kwargs)

    return Plugin()


@strawberry.type
class DisplayNameAgain:
    @strawberry.field
    def display_name(self) -> str:
        return "x"


@strawberry.type
class ViewerAgain:
    @strawberry.field
    def viewer(self) -> int:
        return 1


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"query": [ViewerAgain]}, "Query.viewer is contributed twice: by users (UsersQuery) and extra (ViewerAgain)"),
        ({"extends": {"User": [DisplayNameAgain]}}, "User.displayName already exists; a domain cannot replace it"),
        ({"extends": {"Nope": [DisplayNameAgain]}}, "fields contributed to Nope, which is not an object type of the schema"),
        ({"nodes": {"User": None}}, "node lookup for User is contributed twice (by extra)"),
    ],
)
def test_clashing_contributions_stop_startup_with_one_line(tmp_path, kwargs, message):
    settings = make_settings(f"sqlite+aiosqlite:///{tmp_path / 'x.db'}")
    with pytest.raises(ConfigurationError) as err:
        create_app(settings, plugins=[("extra", _domain_plugin(**kwargs))])
    assert str(err.value) == message


def test_a_failing_or_wrong_domain_hook_names_the_plugin(tmp_path):
    settings = make_settings(f"sqlite+aiosqlite:///{tmp_path / 'x.db'}")

    class Raises:
        @hookimpl
        def jingtan_register_domain(self):
            raise RuntimeError("boom")

    class Wrong:
        @hookimpl
        def jingtan_register_domain(self):
            return {"query": []}

    with pytest.raises(ConfigurationError, match=r"^plugin 'raises': jingtan_register_domain failed: RuntimeError: boom$"):
        create_app(settings, plugins=[("raises", Raises())])
    with pytest.raises(ConfigurationError, match=r"^plugin 'wrong': jingtan_register_domain returned .*not a Domain$"):
        create_app(settings, plugins=[("wrong", Wrong())])


def test_an_app_dropped_after_answering_leaves_no_schema_behind(databases):
    # Every cache an app's requests fill (parsed documents, validation results, compiled plans, costs)
    # belongs to its schema or holds no schema: once the app is gone, so is its schema. strawberry's
    # module-level ValidationCache kept every schema alive (a test run built thousands of them).
    import gc
    import weakref

    import asyncio

    url = databases.sqlite_url()

    async def answer_then_drop() -> weakref.ref:
        app = create_app(make_settings(url))
        gql = GraphQLClient(app)
        try:
            assert (await gql.ok("query Q($s: Boolean = false) { __typename @skip(if: $s) }", {"s": False})) == {"__typename": "Query"}
            assert (await gql.ok("{ __typename }")) == {"__typename": "Query"}
        finally:
            await gql.aclose()
            await app.state.services.db.dispose()
        return weakref.ref(app.state.schema)

    gone = asyncio.run(answer_then_drop())
    gc.collect()
    assert gone() is None, [type(r).__name__ for r in gc.get_referrers(gone())][:10]
