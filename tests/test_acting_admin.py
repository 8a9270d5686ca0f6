"""Admins acting for a user leave a trail: creating an API token for another user is audit-logged, and
what is done with such a token records the acting admin on the audit entries and ledger transactions it
causes (``acting_admin_id``). Through GraphQL over HTTP and the CLI, on SQLite and PostgreSQL."""

import asyncio

from sqlalchemy import select

from jingtan_api import cli
from jingtan_api.accounts.models import LedgerTransaction
from jingtan_api.audit.models import AuditLogEntry
from jingtan_api.graphql.relay import to_global_id
from jingtan_api.testing import register_member, row_counts
from jingtan_api.users import service as users_service
from tests.actions_helpers import submit, trip

CREATE = """mutation($i: CreateApiTokenInput!) {
  createApiToken(input: $i) { apiToken { id } secret userErrors { code } errors { code } } }"""
GRANT = """mutation($i: AdjustPointsInput!) {
  grantPoints(input: $i) { transaction { id } userErrors { code } } }"""
AUDIT = """{ auditLog(first: 20) { nodes { action targetId details actor { id } actingAdmin { id } } } }"""
TX = LedgerTransaction.__table__
AL = AuditLogEntry.__table__


async def make_token(gql, admin, owner_id: str | None, scopes: list[str]) -> str:
    i = {"name": "support session", "scopes": scopes, **({"userId": owner_id} if owner_id else {})}
    out = (await gql.ok(CREATE, {"i": i}, token=admin["token"]))["createApiToken"]
    assert out["userErrors"] == [], out
    return out["secret"]


async def transactions(services) -> list[dict]:
    async with services.db.read() as conn:
        return [dict(r._mapping) for r in (await conn.execute(select(TX).order_by(TX.c.id))).all()]


async def audit_rows(services) -> list[dict]:
    async with services.db.read() as conn:
        return [dict(r._mapping) for r in (await conn.execute(select(AL).order_by(AL.c.id))).all()]


async def test_a_token_made_for_a_member_is_audited_and_its_credits_name_the_admin(gql, member, admin, services, clock):
    secret = await make_token(gql, admin, member["id"], ["actions:write", "account:read"])
    log = (await gql.ok(AUDIT, token=admin["token"]))["auditLog"]["nodes"]
    created = [n for n in log if n["action"] == "api_token.create_for_user"]
    assert len(created) == 1 and created[0]["actor"]["id"] == admin["id"] and created[0]["targetId"] == member["id"]
    assert created[0]["details"]["scopes"] == ["account:read", "actions:write"]
    assert created[0]["details"]["name"] == "support session"
    # the member's action submitted with the admin-made token: the credit records the admin
    out = await submit(gql, secret, "transit", trip(clock), key="t1")
    assert out["action"]["status"] == "APPROVED", out
    credit = [t for t in await transactions(services) if t["kind"] == "ACTION_CREDIT"]
    assert len(credit) == 1 and credit[0]["acting_admin_id"] == admin["pk"]
    # the member's own session afterwards records nobody (nothing leaks from one request to the next)
    out = await submit(gql, member["token"], "transit", trip(clock, minutes_ago=200), key="t2")
    assert out["action"]["status"] == "APPROVED", out
    credit = [t for t in await transactions(services) if t["kind"] == "ACTION_CREDIT"]
    assert [t["acting_admin_id"] for t in credit] == [admin["pk"], None]


async def test_an_admin_token_made_for_another_admin_records_the_maker_on_audit_and_ledger(gql, member, admin, services, clock):
    other_pk = await users_service.create_admin(services, email="second-admin@example.cn", phone=None,
                                                password="Sturdy-oak-2026", display_name="Second", now=clock())
    other_id = to_global_id("User", other_pk)
    secret = await make_token(gql, admin, other_id, ["points:write", "audit:read"])
    out = await gql.ok(GRANT, {"i": {"userId": member["id"], "amount": 50, "reason": "goodwill after outage",
                                     "idempotencyKey": "g-1"}}, token=secret)
    assert out["grantPoints"]["userErrors"] == [], out
    grant = [r for r in await audit_rows(services) if r["action"] == "points.grant"]
    assert len(grant) == 1 and grant[0]["actor_user_id"] == other_pk and grant[0]["acting_admin_id"] == admin["pk"]
    tx = [t for t in await transactions(services) if t["kind"] == "GRANT"]
    assert len(tx) == 1 and tx[0]["actor_user_id"] == other_pk and tx[0]["acting_admin_id"] == admin["pk"]
    log = (await gql.ok(AUDIT, token=secret))["auditLog"]["nodes"]
    entry = next(n for n in log if n["action"] == "points.grant")
    assert entry["actor"]["id"] == other_id and entry["actingAdmin"]["id"] == admin["id"]
    # the same grant with the admin's own session: no acting admin
    await gql.ok(GRANT, {"i": {"userId": member["id"], "amount": 5, "reason": "own session grant",
                               "idempotencyKey": "g-2"}}, token=admin["token"])
    grant = [r for r in await audit_rows(services) if r["action"] == "points.grant"]
    assert [r["acting_admin_id"] for r in grant] == [admin["pk"], None]


async def test_own_tokens_are_not_acting_for_anyone(gql, member, admin, services, clock):
    before = len(await audit_rows(services))
    out = (await gql.ok(CREATE, {"i": {"name": "my app", "scopes": ["actions:write"]}}, token=member["token"]))
    secret = out["createApiToken"]["secret"]
    assert len(await audit_rows(services)) == before  # a token for oneself is not acting for another
    await submit(gql, secret, "transit", trip(clock), key="own")
    assert [t["acting_admin_id"] for t in await transactions(services) if t["kind"] == "ACTION_CREDIT"] == [None]


async def test_a_member_cannot_make_a_token_for_someone_else_and_nothing_is_written(gql, member, services):
    other = await register_member(gql, email="victim@example.cn")
    before = await row_counts(services.db)
    out = await gql.ok(CREATE, {"i": {"name": "x", "scopes": ["account:read"], "userId": other["id"]}},
                       token=member["token"])
    assert out["createApiToken"]["secret"] is None
    assert [e["code"] for e in out["createApiToken"]["userErrors"]] == ["FORBIDDEN"]
    assert await row_counts(services.db) == before


async def test_cli_token_with_by_is_audited_and_acts_as_that_admin(db_url, monkeypatch, tmp_path, gql, member, admin,
                                                                   services, clock, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("JINGTAN_CONFIG", raising=False)
    monkeypatch.setenv("JINGTAN_DATABASE_URL", db_url)
    monkeypatch.setenv("JINGTAN_LOG__LEVEL", "WARNING")
    capsys.readouterr()
    before = await row_counts(services.db)
    # --by must name an active admin; a member is refused and nothing is written
    code = await asyncio.to_thread(cli.main, ["create-api-token", "--user", member["email"], "--name", "erp",
                                               "--scopes", "actions:write", "--by", member["email"]])
    assert code == 1 and "NOT_FOUND" in capsys.readouterr().err
    assert await row_counts(services.db) == before
    code = await asyncio.to_thread(cli.main, ["create-api-token", "--user", member["email"], "--name", "erp",
                                               "--scopes", "actions:write", "--by", admin["email"]])
    assert code == 0
    secret = capsys.readouterr().out.strip()
    entry = [r for r in await audit_rows(services) if r["action"] == "api_token.create_for_user"]
    assert len(entry) == 1 and entry[0]["actor_user_id"] == admin["pk"]
    assert '"via": "cli"' in entry[0]["details"] and '"os_user"' in entry[0]["details"]
    out = await submit(gql, secret, "transit", trip(clock), key="cli-1")
    assert out["action"]["status"] == "APPROVED", out
    assert [t["acting_admin_id"] for t in await transactions(services) if t["kind"] == "ACTION_CREDIT"] == [admin["pk"]]
    # without --by the creation is still audited (no actor: whoever ran the CLI, named by os_user)
    assert await asyncio.to_thread(cli.main, ["create-api-token", "--user", member["email"], "--name", "erp2",
                                              "--scopes", "account:read"]) == 0
    entry = [r for r in await audit_rows(services) if r["action"] == "api_token.create_for_user"]
    assert len(entry) == 2 and entry[1]["actor_user_id"] is None and entry[1]["target_id"] is not None
