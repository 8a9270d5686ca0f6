"""Helpers shared by the ledger tests: GraphQL operations, database snapshots, invariant checks."""

import uuid

from sqlalchemy import func, select, text

from jingtan_api.accounts import service as ledger
from jingtan_api.db import Database

ADJUST_FIELDS = """
    transaction { id kind memo }
    account { id balance }
    replayed
    userErrors { code message field }
"""
GRANT = f"mutation($i: AdjustPointsInput!) {{ grantPoints(input: $i) {{ {ADJUST_FIELDS} }} }}"
REVOKE = f"mutation($i: AdjustPointsInput!) {{ revokePoints(input: $i) {{ {ADJUST_FIELDS} }} }}"
BALANCE = "{ viewer { account { balance } } }"

# Tables a points movement writes; a rejected request must leave all of them unchanged.
LEDGER_TABLES = ("ledger_transaction", "ledger_entry", "points_lot", "audit_log", "idempotency_record")


def key() -> str:
    return f"k-{uuid.uuid4().hex}"


def adjust_input(user_id: str, amount, *, reason: str = "test adjustment 测试", idem: str | None = None) -> dict:
    return {"userId": user_id, "amount": amount, "reason": reason, "idempotencyKey": idem or key()}


async def grant(gql, admin: dict, user_id: str, amount: int, **kw) -> dict:
    data = await gql.ok(GRANT, {"i": adjust_input(user_id, amount, **kw)}, token=admin["token"])
    payload = data["grantPoints"]
    assert payload["userErrors"] == [], payload["userErrors"]
    return payload


async def revoke(gql, admin: dict, user_id: str, amount: int, **kw) -> dict:
    data = await gql.ok(REVOKE, {"i": adjust_input(user_id, amount, **kw)}, token=admin["token"])
    return data["revokePoints"]


async def balance_of(gql, member: dict) -> int:
    return (await gql.ok(BALANCE, token=member["token"]))["viewer"]["account"]["balance"]


async def snapshot(db: Database) -> dict:
    """Row counts of every ledger table, every account balance and every lot's remaining points."""
    async with db.read() as conn:
        counts = {
            t: (await conn.execute(text(f"SELECT count(*) FROM {t}"))).scalar_one() for t in LEDGER_TABLES
        }
        balances = dict((await conn.execute(select(ledger.A.c.id, ledger.A.c.balance))).all())
        lots = dict((await conn.execute(select(ledger.L.c.id, ledger.L.c.remaining))).all())
    return {"counts": counts, "balances": balances, "lots": lots}


async def invariants(db: Database) -> list[str]:
    async with db.read() as conn:
        return await ledger.check_invariants(conn)


async def account_balance(db: Database, *, user_id: int | None = None, code: str | None = None) -> int:
    A = ledger.A
    cond = (A.c.user_id == user_id) & (A.c.kind == ledger.MEMBER) if user_id is not None else A.c.code == code
    async with db.read() as conn:
        return (await conn.execute(select(A.c.balance).where(cond))).scalar_one()


async def count_rows(db: Database, table: str, **where) -> int:
    t = {"ledger_transaction": ledger.TX, "ledger_entry": ledger.E, "points_lot": ledger.L}[table]
    stmt = select(func.count()).select_from(t)
    for col, value in where.items():
        stmt = stmt.where(t.c[col] == value)
    async with db.read() as conn:
        return (await conn.execute(stmt)).scalar_one()


async def relogin(gql, *people: dict) -> None:
    """Fresh access tokens (after ``clock.advance`` past their lifetime) for members / admins."""
    for person in people:
        data = await gql.ok(
            "mutation($i: LoginInput!) { login(input: $i) { tokens { accessToken } userErrors { code } } }",
            {"i": {"identifier": person["email"], "password": person["password"]}},
        )
        assert data["login"]["userErrors"] == [], data
        person["token"] = data["login"]["tokens"]["accessToken"]


def pk_of(global_id: str) -> int:
    from jingtan_api.graphql.relay import from_global_id

    return int(from_global_id(global_id)[1])
