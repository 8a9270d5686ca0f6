"""Who may read what: node/nodes with own, foreign, unknown and malformed IDs; personal fields;
setUserRoles (admin only, audit-logged)."""

import base64

import pytest

from jingtan_api.users import service as users_service
from jingtan_api.testing import register_member, row_counts

USER_FIELDS = "... on User { id displayName email phone roles account { id balance } apiTokens { id } }"
NODE = "query($id: ID!) { node(id: $id) { __typename id " + USER_FIELDS + " ... on Account { balance } } }"
NODES = "query($ids: [ID!]!) { nodes(ids: $ids) { __typename id } }"
SET_ROLES = """
mutation($i: SetUserRolesInput!) {
  setUserRoles(input: $i) { user { id roles } userErrors { code message field } }
}
"""


def gid(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


MALFORMED_IDS = [
    "",
    "!!!",
    "VXNlcjox=",  # padding garbage
    gid("User"),
    gid("User:"),
    gid(":1"),
    gid("User:abc"),
    gid("User:-1"),
    gid("User:1.0"),
    gid("User: 1"),
    gid("User:²"),  # a "digit" to str.isdigit, not to int()
    gid("User:١"),  # Arabic-Indic one: must not alias User:1
    gid("User:99999999999"),  # beyond a 32-bit id column
    gid("User:" + "9" * 40),
    gid("Nope:1"),
    gid("user:1"),
    base64.b64encode(b"\xff\xfe:1").decode(),
    "x" * 10000,
]


@pytest.fixture
async def other(gql) -> dict:
    return await register_member(gql, email="other@example.cn", phone="13900000009", display_name="韩梅梅 Han Meimei")


async def account_id(gql, token: str) -> str:
    return (await gql.ok("{ viewer { account { id } } }", token=token))["viewer"]["account"]["id"]


async def test_member_reads_own_user_and_account_by_id(gql, member):
    own = (await gql.ok(NODE, {"id": member["id"]}, token=member["token"]))["node"]
    assert own["email"] == "member@example.cn" and own["roles"] == ["MEMBER"]
    acc = await account_id(gql, member["token"])
    node = (await gql.ok(NODE, {"id": acc}, token=member["token"]))["node"]
    assert node == {"__typename": "Account", "id": acc, "balance": 0}


async def test_member_cannot_read_another_member_by_id(gql, member, other):
    other_account = await account_id(gql, other["token"])
    for target in (other["id"], other_account):
        body = await gql(NODE, {"id": target}, token=member["token"])
        assert body["data"] == {"node": None} and "errors" not in body, body
    data = await gql.ok(
        NODES, {"ids": [member["id"], other["id"], other_account, gid("User:424242")]}, token=member["token"]
    )
    assert [n and n["id"] for n in data["nodes"]] == [member["id"], None, None, None]


async def test_anonymous_reads_nothing_by_id(gql, member):
    acc = await account_id(gql, member["token"])
    data = await gql.ok(NODES, {"ids": [member["id"], acc]})
    assert data["nodes"] == [None, None]


async def test_malformed_ids_give_null_never_a_500(gql, member):
    for bad in MALFORMED_IDS:
        body = await gql(NODE, {"id": bad}, token=member["token"])
        assert body["data"] == {"node": None} and "errors" not in body, (bad, body)
    body = await gql(NODES, {"ids": [*MALFORMED_IDS, member["id"]]}, token=member["token"])
    assert body["data"]["nodes"] == [None] * len(MALFORMED_IDS) + [{"__typename": "User", "id": member["id"]}], body


async def test_malformed_ids_in_mutations_are_not_found(gql, services, admin, member):
    before = await row_counts(services.db)
    for bad in MALFORMED_IDS:
        payload = (
            await gql.ok(SET_ROLES, {"i": {"userId": bad, "roles": ["MEMBER"], "reason": "test"}}, token=admin["token"])
        )["setUserRoles"]
        assert payload["user"] is None
        assert payload["userErrors"][0]["code"] == "NOT_FOUND", (bad, payload)
        assert payload["userErrors"][0]["field"] == ["input", "userId"]
    assert await row_counts(services.db) == before


async def test_too_many_ids_is_refused(gql, member):
    body = await gql(NODES, {"ids": [member["id"]] * 101}, token=member["token"])
    assert body["data"] is None or body["data"]["nodes"] is None
    assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"


async def test_account_owner_link_shows_own_personal_fields(gql, member):
    acc = await account_id(gql, member["token"])
    data = await gql.ok(
        "query($id: ID!) { node(id: $id) { ... on Account { owner { id email phone roles } } } }",
        {"id": acc},
        token=member["token"],
    )
    assert data["node"]["owner"] == {"id": member["id"], "email": "member@example.cn", "phone": None, "roles": ["MEMBER"]}


async def test_personal_fields_of_another_user_need_users_read(gql, services, member, admin, clock):
    """An admin API token with audit:read but not users:read reaches another admin through the audit
    log: it sees the display name, but email, phone, roles and account are refused field by field."""
    await users_service.create_admin(
        services,
        email="second@example.cn", phone="13700000007", password="Sturdy-oak-2026", display_name="Second", now=clock()
    )
    second = await gql.ok(
        "mutation { login(input: {identifier: \"second@example.cn\", password: \"Sturdy-oak-2026\"}) "
        "{ tokens { accessToken } } }"
    )
    await gql.ok(
        SET_ROLES,
        {"i": {"userId": member["id"], "roles": ["MEMBER", "MERCHANT"], "reason": "merchant onboarding"}},
        token=second["login"]["tokens"]["accessToken"],
    )
    created = await gql.ok(
        "mutation { createApiToken(input: {name: \"auditor\", scopes: [\"audit:read\"]}) { secret } }",
        token=admin["token"],
    )
    auditor = created["createApiToken"]["secret"]
    for personal in ("email", "phone", "roles", "account { balance }"):
        query = "{ auditLog(first: 1) { edges { node { actor { displayName " + personal + " } } } } }"
        body = await gql(query, token=auditor)
        assert body["errors"][0]["extensions"]["code"] == "FORBIDDEN", body
        assert body["errors"][0]["path"][-1] == personal.split()[0]
    ok = await gql.ok("{ auditLog(first: 1) { edges { node { actor { displayName } } } } }", token=auditor)
    assert ok["auditLog"]["edges"][0]["node"]["actor"] == {"displayName": "Second"}
    # With a full admin session the same fields are readable.
    full = await gql.ok("{ auditLog(first: 1) { edges { node { actor { email phone } } } } }", token=admin["token"])
    assert full["auditLog"]["edges"][0]["node"]["actor"] == {"email": "second@example.cn", "phone": "+8613700000007"}


async def test_admin_sees_everyone(gql, member, other, admin):
    data = (await gql.ok(NODE, {"id": other["id"]}, token=admin["token"]))["node"]
    assert data["email"] == "other@example.cn" and data["phone"] == "+8613900000009"
    assert data["roles"] == ["MEMBER"] and data["account"]["balance"] == 0 and data["apiTokens"] == []
    other_account = await account_id(gql, other["token"])
    assert (await gql.ok(NODE, {"id": other_account}, token=admin["token"]))["node"]["balance"] == 0
    nodes = (await gql.ok(NODES, {"ids": [member["id"], other["id"], admin["id"]]}, token=admin["token"]))["nodes"]
    assert [n["id"] for n in nodes] == [member["id"], other["id"], admin["id"]]


async def test_member_cannot_read_another_members_api_tokens(gql, member, other):
    created = await gql.ok(
        "mutation { createApiToken(input: {name: \"mine\", scopes: [\"account:read\"]}) { apiToken { id } } }",
        token=other["token"],
    )
    token_id = created["createApiToken"]["apiToken"]["id"]
    assert (await gql.ok(NODE, {"id": token_id}, token=member["token"]))["node"] is None
    assert (await gql.ok(NODE, {"id": token_id}, token=other["token"]))["node"]["id"] == token_id


async def test_admin_sets_roles_and_it_is_audited(gql, services, member, admin, clock):
    payload = (
        await gql.ok(
            SET_ROLES,
            {"i": {"userId": member["id"], "roles": ["MERCHANT", "MEMBER"], "reason": "  runs the 绿叶 café  "}},
            token=admin["token"],
        )
    )["setUserRoles"]
    assert payload == {"user": {"id": member["id"], "roles": ["MEMBER", "MERCHANT"]}, "userErrors": []}
    log = await gql.ok(
        "{ auditLog(first: 5) { edges { node { action targetType targetId reason details actor { id } createdAt } } } }",
        token=admin["token"],
    )
    entries = [e["node"] for e in log["auditLog"]["edges"]]
    assert entries == [
        {
            "action": "user.set_roles",
            "targetType": "User",
            "targetId": member["id"],
            "reason": "runs the 绿叶 café",
            "details": {"roles": ["MEMBER", "MERCHANT"]},
            "actor": {"id": admin["id"]},
            "createdAt": entries[0]["createdAt"],
        }
    ]
    assert entries[0]["createdAt"].startswith("2026-06-01T08:00:00")
    # The member's next session carries the new role.
    login = await gql.ok(
        "mutation($i: LoginInput!) { login(input: $i) { user { roles } } }",
        {"i": {"identifier": member["email"], "password": member["password"]}},
    )
    assert login["login"]["user"]["roles"] == ["MEMBER", "MERCHANT"]


@pytest.mark.parametrize(
    "who, roles, reason, code, field",
    [
        ("member", ["MEMBER", "ADMIN"], "I want it", "FORBIDDEN", None),
        ("anonymous", ["MEMBER", "ADMIN"], "I want it", "UNAUTHENTICATED", None),
        ("admin", [], "no roles at all", "BAD_USER_INPUT", "roles"),
        ("admin", ["MEMBER"], "  ", "BAD_USER_INPUT", "reason"),
        ("admin", ["MEMBER"], "no", "BAD_USER_INPUT", "reason"),
        ("admin-unknown-user", ["MEMBER"], "fine reason", "NOT_FOUND", "userId"),
    ],
)
async def test_set_roles_refusals_write_nothing(gql, services, member, admin, who, roles, reason, code, field):
    token = {"member": member["token"], "anonymous": None}.get(who, admin["token"])
    target = gid("User:424242") if who == "admin-unknown-user" else member["id"]
    before = await row_counts(services.db)
    payload = (await gql.ok(SET_ROLES, {"i": {"userId": target, "roles": roles, "reason": reason}}, token=token))[
        "setUserRoles"
    ]
    assert payload["user"] is None
    assert [(e["code"], e["field"]) for e in payload["userErrors"]] == [(code, ["input", field] if field else None)]
    assert await row_counts(services.db) == before
    data = await gql.ok("{ viewer { roles } }", token=member["token"])
    assert data["viewer"]["roles"] == ["MEMBER"]


async def test_unknown_enum_role_is_a_validation_error(gql, admin, member):
    body = await gql(SET_ROLES, {"i": {"userId": member["id"], "roles": ["ROOT"], "reason": "nope"}}, token=admin["token"])
    assert body["errors"][0]["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED"


MALFORMED_CURSORS = [
    "", "garbage", gid("c:"), gid("c:²"), gid("c:-1"), gid("c:" + "9" * 19), gid("c:" + "9" * 5000), gid("x:1"),
]


async def test_malformed_cursors_are_bad_input_not_a_500(gql, admin):
    for cursor in MALFORMED_CURSORS:
        body = await gql(
            "query($c: String) { auditLog(first: 2, after: $c) { totalCount } }", {"c": cursor}, token=admin["token"]
        )
        assert body["errors"][0]["extensions"]["code"] == "INVALID_CURSOR", (cursor, body)


async def test_demoted_or_disabled_admin_loses_admin_powers_at_once(gql, services, admin, member, clock):
    """Admin access tokens are checked against the database on each request (members' stay stateless)."""
    await users_service.create_admin(
        services,
        email="second@example.cn", phone=None, password="Sturdy-oak-2026", display_name="Second", now=clock()
    )
    second = (
        await gql.ok(
            "mutation { login(input: {identifier: \"second@example.cn\", password: \"Sturdy-oak-2026\"}) "
            "{ tokens { accessToken } user { id } } }"
        )
    )["login"]
    payload = await gql.ok(
        SET_ROLES,
        {"i": {"userId": second["user"]["id"], "roles": ["MEMBER"], "reason": "left the team"}},
        token=admin["token"],
    )
    assert payload["setUserRoles"]["userErrors"] == []
    # The demoted admin's unexpired token no longer opens admin fields.
    body = await gql("{ auditLog(first: 1) { totalCount } }", token=second["tokens"]["accessToken"])
    assert body["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    assert (await gql.ok("{ viewer { roles } }", token=second["tokens"]["accessToken"]))["viewer"]["roles"] == ["MEMBER"]
    # A disabled admin's token stops working entirely.
    from sqlalchemy import update

    from jingtan_api.users.service import U

    await services.db.write(lambda conn: conn.execute(update(U).where(U.c.id == admin["pk"]).values(status="DISABLED")))
    body = await gql("{ auditLog(first: 1) { totalCount } }", token=admin["token"])
    assert body["errors"][0]["extensions"] == {"code": "UNAUTHENTICATED", "reason": "REVOKED_TOKEN"}
