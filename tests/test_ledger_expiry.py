"""Lots and expiry: spends take the soonest-expiring lot first; the expiry job and `jingtan expire-points`
move exactly what is left of expired lots to the EXPIRED account; a revoke cannot take expired points."""

import json
import os
import subprocess
import sys
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path

import pytest
from ledger_helpers import account_balance, balance_of, grant, invariants, pk_of, relogin, revoke, snapshot
from sqlalchemy import select

from jingtan_api.accounts import service as ledger
from jingtan_api.accounts.jobs import expire_points
from jingtan_api.app import create_app
from jingtan_api.db import utcnow
from jingtan_api.testing import FrozenClock, GraphQLClient, make_settings, register_member

BIN = Path(sys.executable).parent


@asynccontextmanager
async def app_with_expiry(db_url: str, clock, days: int):
    """A second app on the same database whose grants open lots expiring after ``days`` days."""
    application = create_app(make_settings(db_url, points={"lot_expiry_days": days}), clock=clock)
    async with application.router.lifespan_context(application):
        client = GraphQLClient(application)
        try:
            yield client
        finally:
            await client.aclose()


async def lots_of(db, user_pk: int) -> list[tuple[int, int, object]]:
    """(amount, remaining, expires_at) of the member's lots, oldest first."""
    async with db.read() as conn:
        account_id = await ledger.member_account_id(conn, user_pk)
        rows = await conn.execute(
            select(ledger.L.c.amount, ledger.L.c.remaining, ledger.L.c.expires_at)
            .where(ledger.L.c.account_id == account_id)
            .order_by(ledger.L.c.id)
        )
        return [tuple(r) for r in rows]


@pytest.fixture
async def two_lots(gql, admin, member, db_url, clock, services):
    """Lot B: 100 points granted at t0, expiring in 400 days. Lot A: 50 points granted a day later,
    expiring 10 days after that (so the newer lot expires first)."""
    t0 = clock()
    async with app_with_expiry(db_url, clock, 400) as long_lived:
        await grant(long_lived, admin, member["id"], 100, reason="lot B")
    clock.advance(days=1)
    await relogin(gql, admin, member)
    async with app_with_expiry(db_url, clock, 10) as short_lived:
        await grant(short_lived, admin, member["id"], 50, reason="lot A")
    return {"b_expires": t0 + timedelta(days=400), "a_expires": t0 + timedelta(days=11)}


async def test_spend_takes_the_soonest_expiring_lot_first(gql, admin, member, services, two_lots):
    user = pk_of(member["id"])
    assert await lots_of(services.db, user) == [(100, 100, two_lots["b_expires"]), (50, 50, two_lots["a_expires"])]
    assert (await revoke(gql, admin, member["id"], 30))["userErrors"] == []
    assert await lots_of(services.db, user) == [(100, 100, two_lots["b_expires"]), (50, 20, two_lots["a_expires"])]
    assert (await revoke(gql, admin, member["id"], 45))["userErrors"] == []  # 20 from A, 25 from B
    assert await lots_of(services.db, user) == [(100, 75, two_lots["b_expires"]), (50, 0, two_lots["a_expires"])]
    assert await balance_of(gql, member) == 75
    assert await invariants(services.db) == []


async def test_expiry_job_moves_exactly_what_is_left_of_expired_lots(
    gql, admin, member, services, clock, db_url, two_lots
):
    db = services.db
    user = pk_of(member["id"])
    assert (await revoke(gql, admin, member["id"], 30))["userErrors"] == []  # A keeps 20
    other = await register_member(gql, email="second@example.cn")
    clock.advance(days=1)
    await relogin(gql, admin)
    async with app_with_expiry(db_url, clock, 10) as short_lived:
        await grant(short_lived, admin, other["id"], 7)  # expires a day after A
    expired_before = await account_balance(db, code=ledger.EXPIRED_CODE)

    # Not yet: the run before the expiry moment moves nothing.
    clock.advance(days=8, hours=23)
    assert await expire_points(db, now=clock(), lot_expiry_days=365) == (0, 0)
    # Exactly at A's expiry (expires_at <= now): A expires, the other member's lot (a day younger) not.
    clock.advance(hours=1)
    assert clock() == two_lots["a_expires"]
    before = await snapshot(db)
    assert await expire_points(db, now=clock(), lot_expiry_days=365) == (1, 20)
    after = await snapshot(db)
    assert after["counts"]["ledger_transaction"] == before["counts"]["ledger_transaction"] + 1
    assert after["counts"]["ledger_entry"] == before["counts"]["ledger_entry"] + 2
    assert after["counts"]["audit_log"] == before["counts"]["audit_log"]
    assert await lots_of(db, user) == [(100, 100, two_lots["b_expires"]), (50, 0, two_lots["a_expires"])]
    assert await account_balance(db, user_id=user) == 100
    assert await account_balance(db, code=ledger.EXPIRED_CODE) == expired_before + 20
    # Running again changes nothing.
    assert await expire_points(db, now=clock(), lot_expiry_days=365) == (0, 0)
    assert await snapshot(db) == after

    clock.advance(days=1)
    assert await expire_points(db, now=clock(), lot_expiry_days=365) == (1, 7)
    assert await account_balance(db, user_id=pk_of(other["id"])) == 0
    assert await account_balance(db, code=ledger.EXPIRED_CODE) == expired_before + 27

    # The member's statement shows the expiry with its kind.
    await relogin(gql, member)
    data = await gql.ok(
        "{ viewer { account { balance entries(first: 1) { nodes { kind amount balanceAfter } } } } }",
        token=member["token"],
    )
    assert data["viewer"]["account"]["balance"] == 100
    assert data["viewer"]["account"]["entries"]["nodes"] == [{"kind": "EXPIRY", "amount": -20, "balanceAfter": 100}]
    assert await invariants(db) == []


async def test_fully_spent_expired_lot_expires_nothing(gql, admin, member, services, clock, two_lots):
    assert (await revoke(gql, admin, member["id"], 50))["userErrors"] == []  # A fully spent
    clock.advance(days=30)
    before = await snapshot(services.db)
    assert await expire_points(services.db, now=clock(), lot_expiry_days=365) == (0, 0)
    assert await snapshot(services.db) == before


async def test_revoke_after_expiry_cannot_take_expired_points(gql, admin, member, services, clock, two_lots):
    db = services.db
    user = pk_of(member["id"])
    clock.advance(days=11)  # A (50) expired; no expiry run yet, so the cached balance still says 150
    await relogin(gql, admin, member)
    assert await balance_of(gql, member) == 150
    before = await snapshot(db)
    r = await revoke(gql, admin, member["id"], 101)
    assert [e["code"] for e in r["userErrors"]] == ["INSUFFICIENT_POINTS"]
    assert await snapshot(db) == before  # the expiry attempted inside the revoke rolled back too
    expired_before = await account_balance(db, code=ledger.EXPIRED_CODE)
    r = await revoke(gql, admin, member["id"], 100)
    assert r["userErrors"] == [] and r["account"]["balance"] == 0
    # The revoke first expired A's 50 points, then took B's 100.
    assert await account_balance(db, code=ledger.EXPIRED_CODE) == expired_before + 50
    assert await lots_of(db, user) == [(100, 0, two_lots["b_expires"]), (50, 0, two_lots["a_expires"])]
    kinds = await gql.ok(
        "{ viewer { account { entries(first: 5) { nodes { kind amount } } } } }", token=member["token"]
    )
    assert kinds["viewer"]["account"]["entries"]["nodes"][:2] == [
        {"kind": "REVOKE", "amount": -100},
        {"kind": "EXPIRY", "amount": -50},
    ]
    assert await invariants(db) == []


async def test_expiry_job_handles_many_accounts(gql, admin, services, clock):
    members = [await register_member(gql, email=f"m{i}@example.cn") for i in range(5)]
    for i, m in enumerate(members):
        await grant(gql, admin, m["id"], 10 + i)
    clock.advance(days=365)
    assert await expire_points(services.db, now=clock(), lot_expiry_days=365) == (5, sum(10 + i for i in range(5)))
    for m in members:
        assert await account_balance(services.db, user_id=pk_of(m["id"])) == 0
    assert await invariants(services.db) == []


class TestCli:
    """`jingtan expire-points` uses the real clock: lots are set up 30 days in the past."""

    @pytest.fixture
    def clock(self):
        return FrozenClock(utcnow().replace(microsecond=0) - timedelta(days=30))

    @staticmethod
    def run_cli(db_url: str, *args: str) -> subprocess.CompletedProcess:
        env = {k: v for k, v in os.environ.items() if not k.startswith("JINGTAN_")}
        env.update(JINGTAN_DATABASE_URL=db_url, JINGTAN_LOG__LEVEL="WARNING")
        return subprocess.run(
            [str(BIN / "jingtan"), *args], env=env, capture_output=True, text=True, timeout=60, cwd="/", check=False
        )

    async def test_cli_expires_remaining_points_of_expired_lots(self, gql, admin, member, services, db_url, two_lots):
        db = services.db
        assert (await revoke(gql, admin, member["id"], 12))["userErrors"] == []  # A keeps 38
        expired_before = await account_balance(db, code=ledger.EXPIRED_CODE)
        result = self.run_cli(db_url, "expire-points")
        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout.strip().splitlines()[-1]) == {"accounts": 1, "points": 38}
        assert await account_balance(db, user_id=pk_of(member["id"])) == 100
        assert await account_balance(db, code=ledger.EXPIRED_CODE) == expired_before + 38
        again = self.run_cli(db_url, "expire-points")
        assert json.loads(again.stdout.strip().splitlines()[-1]) == {"accounts": 0, "points": 0}
        check = self.run_cli(db_url, "ledger-check")
        assert check.returncode == 0 and "ledger ok" in check.stdout


async def test_a_debit_over_more_lots_than_one_statement_holds(services, member, clock):
    """A debit that takes from 150 lots writes 150 ``lot_consumption`` rows (in statements of at most
    ``driver.MAX_ROWS`` rows: the parameters of one statement are bounded), soonest-expiring first, and
    the ledger's invariants hold."""
    from jingtan_api.accounts.models import LotConsumption
    from jingtan_api.driver import MAX_ROWS

    n = 150
    assert n > 2 * MAX_ROWS
    user_pk = pk_of(member["id"])
    cfg = services.settings.points

    async def credit(conn):
        issuance = await ledger.platform_account_id(conn, "platform:issuance")
        account = await ledger.member_account_id(conn, user_pk)
        lots = tuple((1, clock() + timedelta(days=10 + i)) for i in range(n))
        await ledger.post_transaction(conn, kind="GRANT", now=clock(), lot_expiry_days=cfg.lot_expiry_days,
                                      postings=[ledger.Posting(issuance, -n), ledger.Posting(account, n, lots=lots)])
        return account

    account = await services.db.write(credit)

    async def debit(conn):
        issuance = await ledger.platform_account_id(conn, "platform:issuance")
        return await ledger.post_transaction(conn, kind="REVOKE", now=clock(), lot_expiry_days=cfg.lot_expiry_days,
                                             postings=[ledger.Posting(account, -n), ledger.Posting(issuance, n)])

    await services.db.write(debit)
    LC = LotConsumption.__table__
    async with services.db.read() as conn:
        rows = (await conn.execute(select(LC.c.amount, LC.c.expires_at).order_by(LC.c.id))).all()
        assert len(rows) == n and sum(r.amount for r in rows) == n
        assert [r.expires_at for r in rows] == sorted(r.expires_at for r in rows)
        assert await ledger.check_invariants(conn) == []
    assert await account_balance(services.db, user_id=user_pk) == 0
