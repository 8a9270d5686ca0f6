"""Executes every core operation in schema/operations/{account,admin} the way a frontend would, and
validates every operation file in schema/operations against the schema."""

import re
from pathlib import Path

import pytest
from graphql import parse, validate

from jingtan_api.app import create_app
from jingtan_api.cli import default_settings

ROOT = Path(__file__).resolve().parent.parent
OPERATIONS = sorted((ROOT / "schema" / "operations").rglob("*.graphql"))


@pytest.fixture(scope="module")
def default_schema():
    """The schema of the default configuration (built-in plugins enabled), as exported to SDL."""
    return create_app(default_settings()).state.schema._schema


@pytest.mark.parametrize("path", OPERATIONS, ids=lambda p: str(p.relative_to(ROOT / "schema" / "operations")))
def test_operation_file_is_valid_against_schema(path, default_schema):
    schema = default_schema
    document = parse(path.read_text(encoding="utf-8"))
    assert validate(schema, document) == []
    names = [d.name.value for d in document.definitions if getattr(d, "name", None)]
    assert names == [path.stem], "one named operation per file, named like the file"


def test_readme_operations_live_in_schema_operations():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```graphql\n(.*?)```", readme, flags=re.S)
    assert blocks, "the README shows GraphQL operations"
    files = {" ".join(p.read_text(encoding="utf-8").split()) for p in OPERATIONS}
    for block in blocks:
        assert " ".join(block.split()) in files, f"README operation not in schema/operations:\n{block}"


async def test_member_and_admin_walkthrough(gql, admin, operation, clock):
    # A member registers, logs in and sees an empty account.
    reg = await gql.ok(
        operation("account/Register"),
        {"input": {"phone": "13900139000", "password": "Low-carbon-1", "displayName": "韩梅梅 Han Meimei"}},
    )
    assert reg["register"]["userErrors"] == []
    member_id = reg["register"]["user"]["id"]
    login = await gql.ok(operation("account/Login"), {"input": {"identifier": "+86 139 0013 9000", "password": "Low-carbon-1"}})
    tokens = login["login"]["tokens"]
    member = gql.as_user(tokens["accessToken"])
    account = (await member.ok(operation("account/MyAccount")))["viewer"]["account"]
    assert account["balance"] == 0 and account["entries"]["edges"] == []

    # The admin grants and revokes points; both are audit-logged.
    staff = gql.as_user(admin["token"])
    grant = await staff.ok(
        operation("admin/GrantPoints"),
        {"input": {"userId": member_id, "amount": 150, "reason": "社区志愿活动 Volunteer day", "idempotencyKey": "g-1"}},
    )
    assert grant["grantPoints"]["userErrors"] == [] and grant["grantPoints"]["account"]["balance"] == 150
    revoke = await staff.ok(
        operation("admin/RevokePoints"),
        {"input": {"userId": member_id, "amount": 50, "reason": "更正 Correction", "idempotencyKey": "r-1"}},
    )
    assert revoke["revokePoints"]["account"]["balance"] == 100
    audit = await staff.ok(operation("admin/AuditLog"), {"first": 10})
    assert [e["node"]["action"] for e in audit["auditLog"]["edges"]] == ["points.revoke", "points.grant"]
    assert audit["auditLog"]["edges"][1]["node"]["details"]["amount"] == 150
    assert audit["auditLog"]["edges"][1]["node"]["actor"]["id"] == admin["id"]

    # The statement shows both movements, newest first, with points expiring in a year.
    account = (await member.ok(operation("account/MyAccount"), {"first": 1}))["viewer"]["account"]
    assert account["balance"] == 100
    assert [e["node"]["amount"] for e in account["entries"]["edges"]] == [-50]
    assert account["entries"]["pageInfo"]["hasNextPage"] is True
    page2 = (await member.ok(operation("account/MyAccount"), {"first": 5, "after": account["entries"]["pageInfo"]["endCursor"]}))
    assert [e["node"]["kind"] for e in page2["viewer"]["account"]["entries"]["edges"]] == ["GRANT"]
    assert account["expiringSoon"] == []  # a year away, outside the 30-day horizon

    # Admin views the member; a member cannot view the admin.
    seen = await staff.ok(operation("admin/MemberAccount"), {"id": member_id})
    assert seen["node"]["phone"] == "+8613900139000" and seen["node"]["account"]["balance"] == 100
    hidden = await member.ok(operation("admin/MemberAccount"), {"id": admin["id"]})
    assert hidden["node"] is None

    # Roles: the admin makes the member merchant staff.
    roles = await staff.ok(
        operation("admin/SetUserRoles"),
        {"input": {"userId": member_id, "roles": ["MEMBER", "MERCHANT"], "reason": "绿叶咖啡店员 Café staff"}},
    )
    assert roles["setUserRoles"]["user"]["roles"] == ["MEMBER", "MERCHANT"]

    # API token for a partner system: reads the account, then is revoked.
    created = await member.ok(
        operation("account/CreateApiToken"), {"input": {"name": "记账小程序 Ledger app", "scopes": ["account:read"]}}
    )
    secret = created["createApiToken"]["secret"]
    assert secret.startswith("jt_")
    via_token = await gql.ok("query { viewer { account { balance } } }", token=secret)
    assert via_token["viewer"]["account"]["balance"] == 100
    revoked = await member.ok(operation("account/RevokeApiToken"), {"input": {"id": created["createApiToken"]["apiToken"]["id"]}})
    assert revoked["revokeApiToken"]["apiToken"]["revokedAt"] is not None
    refused = await gql("query { viewer { id } }", token=secret)
    assert refused["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"

    # Session life cycle: refresh, change password, log out.
    refreshed = await gql.ok(operation("account/RefreshToken"), {"input": {"refreshToken": tokens["refreshToken"]}})
    new_tokens = refreshed["refreshToken"]["tokens"]
    changed = await gql.as_user(new_tokens["accessToken"]).ok(
        operation("account/ChangePassword"),
        {"input": {"currentPassword": "Low-carbon-1", "newPassword": "Even-lower-carbon-2"}},
    )
    assert changed["changePassword"]["userErrors"] == []
    stale = await gql.ok(operation("account/RefreshToken"), {"input": {"refreshToken": new_tokens["refreshToken"]}})
    assert stale["refreshToken"]["userErrors"][0]["code"] == "INVALID_REFRESH_TOKEN"
    out = await gql.ok(operation("account/Logout"), {"input": {"refreshToken": changed["changePassword"]["tokens"]["refreshToken"]}})
    assert out["logout"] == {"ok": True, "userErrors": []}
