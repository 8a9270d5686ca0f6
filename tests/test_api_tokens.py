"""Hashed, scoped, revocable API tokens for server-to-server clients, through GraphQL."""

import pytest
from sqlalchemy import select, update

from jingtan_api.auth.models import ApiToken
from jingtan_api.testing import register_member, row_counts
from jingtan_api.users.service import U

AT = ApiToken.__table__

CREATE = """
mutation($i: CreateApiTokenInput!) {
  createApiToken(input: $i) {
    secret
    apiToken { id name prefix scopes createdAt expiresAt lastUsedAt revokedAt }
    userErrors { code message field }
  }
}
"""
REVOKE = """
mutation($id: ID!) { revokeApiToken(input: {id: $id}) { apiToken { id revokedAt } userErrors { code field } } }
"""
VIEWER = "{ viewer { id email account { balance } } }"
AUDIT = "{ auditLog(first: 5) { edges { node { action } } } }"
SET_ROLES = """
mutation($i: SetUserRolesInput!) { setUserRoles(input: $i) { user { roles } userErrors { code field } } }
"""


async def create(gql, token: str, **fields) -> dict:
    data = {"name": "billing sync", "scopes": ["account:read"]}
    data.update(fields)
    return (await gql.ok(CREATE, {"i": data}, token=token))["createApiToken"]


async def create_ok(gql, token: str, **fields) -> dict:
    payload = await create(gql, token, **fields)
    assert payload["userErrors"] == [], payload
    return payload


def refused(body: dict, code: str, reason: str | None = None) -> None:
    assert body["errors"], body
    ext = body["errors"][0]["extensions"]
    assert ext["code"] == code, body
    if reason:
        assert ext["reason"] == reason, body


async def test_member_creates_a_token_for_themselves(gql, services, member, clock):
    payload = await create_ok(gql, member["token"])
    secret = payload["secret"]
    record = payload["apiToken"]
    assert secret.startswith(f"jt_{record['prefix']}_") and len(record["prefix"]) == 12
    assert record["scopes"] == ["account:read"] and record["name"] == "billing sync"
    assert record["lastUsedAt"] is None and record["revokedAt"] is None and record["expiresAt"] is None
    # Only a hash is stored: the secret is nowhere in the database.
    async with services.db.read() as conn:
        row = (await conn.execute(select(AT))).one()
    assert secret.split("_", 2)[2] not in (row.token_hash, row.prefix, row.name)
    assert len(row.token_hash) == 64
    # The token authenticates as its owner and can read the owner's account.
    data = await gql.ok(VIEWER, token=secret)
    assert data["viewer"] == {"id": member["id"], "email": "member@example.cn", "account": {"balance": 0}}
    # The owner sees it in their list, without the secret.
    listed = await gql.ok("{ viewer { apiTokens { id prefix scopes } } }", token=member["token"])
    assert listed["viewer"]["apiTokens"] == [{"id": record["id"], "prefix": record["prefix"], "scopes": ["account:read"]}]


async def test_member_token_holds_only_its_scopes(gql, services, member):
    secret = (await create_ok(gql, member["token"]))["secret"]
    before = await row_counts(services.db)
    change = await gql.ok(
        "mutation { changePassword(input: {currentPassword: \"Green-leaf-2026\", newPassword: \"Blue-sky-2027\"}) "
        "{ userErrors { code } } }",
        token=secret,
    )
    assert change["changePassword"]["userErrors"][0]["code"] == "FORBIDDEN"
    nested = await create(gql, secret, name="child token")
    assert nested["userErrors"][0]["code"] == "FORBIDDEN" and nested["secret"] is None
    logout = await gql.ok("mutation { logout(input: {allSessions: true}) { ok userErrors { code } } }", token=secret)
    assert logout["logout"] == {"ok": False, "userErrors": [{"code": "FORBIDDEN"}]}
    refused(await gql(AUDIT, token=secret), "FORBIDDEN")
    after = await row_counts(services.db)
    assert after == before
    # The member's own login still works (logout via the token did nothing).
    refreshed = await gql.ok(
        "mutation($t: String!) { refreshToken(input: {refreshToken: $t}) { userErrors { code } } }",
        {"t": member["refresh"]},
    )
    assert refreshed["refreshToken"]["userErrors"] == []


@pytest.mark.parametrize(
    "fields, code, field",
    [
        ({"scopes": ["points:write"]}, "FORBIDDEN", "scopes"),
        ({"scopes": ["account:read", "audit:read"]}, "FORBIDDEN", "scopes"),
        ({"scopes": ["root"]}, "BAD_USER_INPUT", "scopes"),
        ({"scopes": []}, "BAD_USER_INPUT", "scopes"),
        ({"name": ""}, "BAD_USER_INPUT", "name"),
        ({"name": "   "}, "BAD_USER_INPUT", "name"),
        ({"name": "n" * 101}, "BAD_USER_INPUT", "name"),
        ({"expiresAt": "2026-06-01T07:59:59+00:00"}, "BAD_USER_INPUT", "expiresAt"),
        ({"expiresAt": "2026-06-01T08:00:00+00:00"}, "BAD_USER_INPUT", "expiresAt"),
        ({"expiresAt": "2026-07-01T00:00:00"}, "BAD_USER_INPUT", "expiresAt"),  # no time zone: ambiguous
        ({"userId": "VXNlcjo5OTk5"}, "FORBIDDEN", None),  # someone else (User:9999): members cannot
    ],
)
async def test_member_token_creation_refusals_write_nothing(gql, services, member, fields, code, field):
    before = await row_counts(services.db)
    payload = await create(gql, member["token"], **fields)
    assert payload["secret"] is None and payload["apiToken"] is None
    assert len(payload["userErrors"]) == 1
    error = payload["userErrors"][0]
    assert error["code"] == code, error
    assert error["field"] == (["input", field] if field else None)
    assert await row_counts(services.db) == before


async def test_anonymous_cannot_create_tokens(gql, services):
    before = await row_counts(services.db)
    payload = await create(gql, None)
    assert payload["userErrors"][0]["code"] == "UNAUTHENTICATED"
    assert await row_counts(services.db) == before


async def test_admin_creates_a_token_for_a_member(gql, services, member, admin):
    payload = await create_ok(gql, admin["token"], userId=member["id"], name="partner shop")
    data = await gql.ok(VIEWER, token=payload["secret"])
    assert data["viewer"]["id"] == member["id"]
    # It is the member's token: scopes are bounded by the member's roles, not the admin's.
    before = await row_counts(services.db)
    too_much = await create(gql, admin["token"], userId=member["id"], scopes=["audit:read"])
    assert too_much["userErrors"] == [
        {"code": "FORBIDDEN", "message": too_much["userErrors"][0]["message"], "field": ["input", "scopes"]}
    ]
    for bad_id in ("VXNlcjo5OTk5", "not-an-id", "QWNjb3VudDox"):  # User:9999, garbage, Account:1
        missing = await create(gql, admin["token"], userId=bad_id)
        assert missing["userErrors"][0]["code"] == "NOT_FOUND" and missing["userErrors"][0]["field"] == ["input", "userId"]
    assert await row_counts(services.db) == before
    async with services.db.read() as conn:
        row = (await conn.execute(select(AT))).one()
    assert row.created_by_user_id == admin["pk"] and row.user_id != admin["pk"]


async def test_admin_token_scopes_decide_what_it_can_do(gql, admin, member):
    reader = (await create_ok(gql, admin["token"], scopes=["audit:read"]))["secret"]
    assert "auditLog" in await gql.ok(AUDIT, token=reader)
    # Without users:read the admin token cannot see other users' personal data...
    body = await gql("query($id: ID!) { node(id: $id) { ... on User { email } } }", {"id": member["id"]}, token=reader)
    assert body["data"]["node"] is None
    # ...nor change roles.
    denied = await gql.ok(
        SET_ROLES, {"i": {"userId": member["id"], "roles": ["MEMBER", "ADMIN"], "reason": "token escalation"}},
        token=reader,
    )
    assert denied["setUserRoles"]["userErrors"][0]["code"] == "FORBIDDEN"
    # users:read is about reading: it does not allow changing roles either.
    viewer_token = (await create_ok(gql, admin["token"], scopes=["users:read"]))["secret"]
    data = await gql.ok("query($id: ID!) { node(id: $id) { ... on User { email } } }", {"id": member["id"]}, token=viewer_token)
    assert data["node"]["email"] == "member@example.cn"
    denied = await gql.ok(
        SET_ROLES, {"i": {"userId": member["id"], "roles": ["MEMBER", "ADMIN"], "reason": "token escalation"}},
        token=viewer_token,
    )
    assert denied["setUserRoles"]["userErrors"][0]["code"] == "FORBIDDEN"
    roles = await gql.ok("{ viewer { roles } }", token=member["token"])
    assert roles["viewer"]["roles"] == ["MEMBER"]


async def test_token_loses_scopes_when_its_owner_loses_the_role(gql, services, admin):
    token = (await create_ok(gql, admin["token"], scopes=["audit:read"]))["secret"]
    assert "errors" not in await gql(AUDIT, token=token)
    await services.db.write(lambda conn: conn.execute(update(U).where(U.c.id == admin["pk"]).values(roles="MEMBER")))
    refused(await gql(AUDIT, token=token), "FORBIDDEN")


async def test_revoke(gql, services, member, clock):
    created = await create_ok(gql, member["token"])
    token_id, secret = created["apiToken"]["id"], created["secret"]
    other = await register_member(gql, email="other@example.cn")
    before = await row_counts(services.db)
    # Someone else's token looks like no token at all.
    foreign = (await gql.ok(REVOKE, {"id": token_id}, token=other["token"]))["revokeApiToken"]
    assert foreign == {"apiToken": None, "userErrors": [{"code": "NOT_FOUND", "field": ["input", "id"]}]}
    for bad in ("garbage", "VXNlcjox", "QXBpVG9rZW46OTk5"):  # garbage, User:1, ApiToken:999
        result = (await gql.ok(REVOKE, {"id": bad}, token=member["token"]))["revokeApiToken"]
        assert result["userErrors"][0]["code"] == "NOT_FOUND"
    anonymous = (await gql.ok(REVOKE, {"id": token_id}))["revokeApiToken"]
    assert anonymous["userErrors"][0]["code"] == "UNAUTHENTICATED"
    assert await row_counts(services.db) == before
    assert "errors" not in await gql(VIEWER, token=secret)

    clock.advance(minutes=3)
    revoked = (await gql.ok(REVOKE, {"id": token_id}, token=member["token"]))["revokeApiToken"]
    assert revoked["userErrors"] == [] and revoked["apiToken"]["revokedAt"].startswith("2026-06-01T08:03:00")
    refused(await gql(VIEWER, token=secret), "UNAUTHENTICATED", "REVOKED_TOKEN")
    # Revoking again is harmless and keeps the first revocation time.
    clock.advance(minutes=1)
    again = (await gql.ok(REVOKE, {"id": token_id}, token=member["token"]))["revokeApiToken"]
    assert again["apiToken"]["revokedAt"] == revoked["apiToken"]["revokedAt"]


async def test_admin_can_revoke_a_members_token(gql, member, admin):
    created = await create_ok(gql, member["token"])
    result = (await gql.ok(REVOKE, {"id": created["apiToken"]["id"]}, token=admin["token"]))["revokeApiToken"]
    assert result["userErrors"] == []
    refused(await gql(VIEWER, token=created["secret"]), "UNAUTHENTICATED", "REVOKED_TOKEN")


async def test_token_expires_on_the_app_clock(gql, member, clock):
    created = await create_ok(gql, member["token"], expiresAt="2026-06-01T11:00:00+02:00")  # 09:00 UTC
    assert created["apiToken"]["expiresAt"].startswith("2026-06-01T09:00:00")
    clock.advance(minutes=59)
    assert "errors" not in await gql(VIEWER, token=created["secret"])
    clock.advance(minutes=1)
    refused(await gql(VIEWER, token=created["secret"]), "UNAUTHENTICATED", "TOKEN_EXPIRED")


async def test_wrong_secret_with_a_real_prefix_is_refused(gql, member):
    secret = (await create_ok(gql, member["token"]))["secret"]
    for forged in (
        f"jt_{secret[3:15]}_{'A' * 43}",
        secret[:-1] + ("A" if secret[-1] != "A" else "B"),
        secret + "x",
        f"jt_{secret[3:15]}_",
        "jt_",
        "jt_short_secret",
        "jt_" + "0" * 12 + secret[15:],  # the right secret under another prefix
    ):
        refused(await gql(VIEWER, token=forged), "UNAUTHENTICATED", "INVALID_TOKEN")


async def test_disabled_owner_disables_the_token(gql, services, member):
    secret = (await create_ok(gql, member["token"]))["secret"]
    await services.db.write(lambda conn: conn.execute(update(U).values(status="DISABLED")))
    refused(await gql(VIEWER, token=secret), "UNAUTHENTICATED", "REVOKED_TOKEN")


async def test_last_used_at_is_recorded_at_most_once_a_minute(gql, services, member, clock):
    created = await create_ok(gql, member["token"])

    async def last_used():
        async with services.db.read() as conn:
            return (await conn.execute(select(AT.c.last_used_at))).scalar_one()

    assert await last_used() is None
    await gql.ok(VIEWER, token=created["secret"])
    first = clock()
    assert await last_used() == first
    clock.advance(seconds=30)
    await gql.ok(VIEWER, token=created["secret"])
    assert await last_used() == first
    clock.advance(seconds=31)
    await gql.ok(VIEWER, token=created["secret"])
    assert await last_used() == clock()
    listed = await gql.ok("{ viewer { apiTokens { lastUsedAt } } }", token=member["token"])
    assert listed["viewer"]["apiTokens"][0]["lastUsedAt"].startswith("2026-06-01T08:01:01")
    # A refused token leaves no trace.
    clock.advance(minutes=5)
    await gql(VIEWER, token=created["secret"] + "x")
    assert await last_used() != clock()


async def test_api_scopes_are_listed(gql):
    data = await gql.ok("{ apiScopes { name description } }")
    names = [s["name"] for s in data["apiScopes"]]
    assert "account:read" in names and "users:write" in names
    assert all(s["description"] for s in data["apiScopes"])


async def test_reads_with_a_fresh_token_open_no_write_transaction(gql, services, member, clock, monkeypatch):
    secret = (await create_ok(gql, member["token"]))["secret"]
    await gql.ok(VIEWER, token=secret)  # first use records last_used_at
    writes = []
    original = services.db.write

    async def counting_write(fn):
        writes.append(fn)
        return await original(fn)

    monkeypatch.setattr(services.db, "write", counting_write)
    for _ in range(3):
        clock.advance(seconds=10)
        await gql.ok(VIEWER, token=secret)
    assert writes == []
    clock.advance(seconds=60)
    await gql.ok(VIEWER, token=secret)
    assert len(writes) == 1


async def test_api_tokens_cannot_manage_other_tokens(gql, services, member, admin):
    first = await create_ok(gql, member["token"], name="first")
    second = await create_ok(gql, member["token"], name="second")
    # A member's API token cannot revoke the owner's other tokens...
    payload = (await gql.ok(REVOKE, {"id": second["apiToken"]["id"]}, token=first["secret"]))["revokeApiToken"]
    assert payload["userErrors"] == [{"code": "FORBIDDEN", "field": ["input", "id"]}]
    assert "errors" not in await gql(VIEWER, token=second["secret"])
    # ...nor can an admin API token without users:write see or revoke anyone else's.
    auditor = (await create_ok(gql, admin["token"], scopes=["audit:read"]))["secret"]
    node = await gql.ok("query($id: ID!) { node(id: $id) { id } }", {"id": second["apiToken"]["id"]}, token=auditor)
    assert node["node"] is None
    payload = (await gql.ok(REVOKE, {"id": second["apiToken"]["id"]}, token=auditor))["revokeApiToken"]
    assert payload["userErrors"] == [{"code": "NOT_FOUND", "field": ["input", "id"]}]
    assert "errors" not in await gql(VIEWER, token=second["secret"])
    # An admin session sees it; a leaked token can revoke itself.
    node = await gql.ok("query($id: ID!) { node(id: $id) { id } }", {"id": second["apiToken"]["id"]}, token=admin["token"])
    assert node["node"] == {"id": second["apiToken"]["id"]}
    payload = (await gql.ok(REVOKE, {"id": first["apiToken"]["id"]}, token=first["secret"]))["revokeApiToken"]
    assert payload["userErrors"] == []
    refused(await gql(VIEWER, token=first["secret"]), "UNAUTHENTICATED", "REVOKED_TOKEN")
