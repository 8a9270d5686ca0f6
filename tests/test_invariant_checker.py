"""`check_invariants` is what the other ledger tests rely on, so it is tested too: a database corrupted on
purpose (raw SQL, one kind of violation at a time) is reported, precisely."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from ledger_helpers import grant, invariants, pk_of, revoke
from sqlalchemy import text

from jingtan_api.accounts import service as ledger

BIN = Path(sys.executable).parent


async def sql(db, statement: str, **params):
    async def run(conn):
        result = await conn.execute(text(statement), params)
        return result.all() if result.returns_rows else None

    return await db.write(run)


async def one(db, statement: str, **params):
    rows = await sql(db, statement, **params)
    assert len(rows) == 1, rows
    return rows[0][0]


@pytest.fixture
async def ledger_data(gql, admin, member, services):
    """Two grants of 10 then a revoke of 5: lot 1 keeps 5, lot 2 keeps 10. Returns the ids involved."""
    db = services.db
    await grant(gql, admin, member["id"], 10)
    await grant(gql, admin, member["id"], 10)
    assert (await revoke(gql, admin, member["id"], 5))["userErrors"] == []
    assert await invariants(db) == []
    member_account = await one(db, "SELECT id FROM account WHERE user_id = :u", u=pk_of(member["id"]))
    lots = [r[0] for r in await sql(db, "SELECT id FROM points_lot WHERE account_id = :a ORDER BY id", a=member_account)]
    return {
        "db": db,
        "member": member_account,
        "issuance": await one(db, "SELECT id FROM account WHERE code = :c", c=ledger.ISSUANCE_CODE),
        "expired": await one(db, "SELECT id FROM account WHERE code = :c", c=ledger.EXPIRED_CODE),
        "lots": lots,
        "grant_tx": await one(db, "SELECT min(id) FROM ledger_transaction WHERE kind = 'GRANT'"),
    }


async def test_unbalanced_transaction(ledger_data):
    d = ledger_data
    # The issuance side of the first grant says -9 instead of -10; its cached balance agrees with that.
    await sql(
        d["db"],
        "UPDATE ledger_entry SET amount = amount + 1 WHERE transaction_id = :t AND account_id = :a",
        t=d["grant_tx"], a=d["issuance"],
    )
    await sql(d["db"], "UPDATE account SET balance = balance + 1 WHERE id = :a", a=d["issuance"])
    assert await invariants(d["db"]) == [f"transaction {d['grant_tx']} sums to 1 over 2 entries"]


async def test_transaction_with_a_single_entry(ledger_data):
    d = ledger_data
    tx = await one(
        d["db"],
        "INSERT INTO ledger_transaction (kind, memo, created_at) VALUES ('GRANT', 'lonely', CURRENT_TIMESTAMP) RETURNING id",
    )
    await sql(
        d["db"],
        "INSERT INTO ledger_entry (transaction_id, account_id, amount, balance_after, created_at) "
        "VALUES (:t, :a, 0, 0, CURRENT_TIMESTAMP)",
        t=tx, a=d["issuance"],
    )
    assert await invariants(d["db"]) == [f"transaction {tx} sums to 0 over 1 entries"]


async def test_cached_balance_differs_from_entries(ledger_data):
    d = ledger_data
    await sql(d["db"], "UPDATE account SET balance = balance - 3 WHERE id = :a", a=d["issuance"])
    assert await invariants(d["db"]) == [f"account {d['issuance']} caches -18 but its entries sum to -15"]


async def test_member_balance_differs_from_entries_and_lots(ledger_data):
    d = ledger_data
    await sql(d["db"], "UPDATE account SET balance = 20 WHERE id = :a", a=d["member"])
    assert await invariants(d["db"]) == [
        f"account {d['member']} caches 20 but its entries sum to 15",
        f"account {d['member']} balance 20 but lots hold 15",
    ]


async def test_negative_balance_of_a_non_negative_account(ledger_data):
    d = ledger_data
    # A balanced transaction that drives EXPIRED (not allowed to go negative) to -4.
    tx = await one(
        d["db"],
        "INSERT INTO ledger_transaction (kind, memo, created_at) VALUES ('EXPIRY', 'bad', CURRENT_TIMESTAMP) RETURNING id",
    )
    for account, amount in ((d["expired"], -4), (d["issuance"], 4)):
        await sql(
            d["db"],
            "INSERT INTO ledger_entry (transaction_id, account_id, amount, balance_after, created_at) "
            "VALUES (:t, :a, :n, 0, CURRENT_TIMESTAMP)",
            t=tx, a=account, n=amount,
        )
        await sql(d["db"], "UPDATE account SET balance = balance + :n WHERE id = :a", a=account, n=amount)
    assert await invariants(d["db"]) == [f"account {d['expired']} is negative: -4"]


async def test_negative_member_balance(ledger_data):
    d = ledger_data
    tx = await one(
        d["db"],
        "INSERT INTO ledger_transaction (kind, memo, created_at) VALUES ('REVOKE', 'overdraw', CURRENT_TIMESTAMP) RETURNING id",
    )
    for account, amount in ((d["member"], -20), (d["issuance"], 20)):
        await sql(
            d["db"],
            "INSERT INTO ledger_entry (transaction_id, account_id, amount, balance_after, created_at) "
            "VALUES (:t, :a, :n, 0, CURRENT_TIMESTAMP)",
            t=tx, a=account, n=amount,
        )
        await sql(d["db"], "UPDATE account SET balance = balance + :n WHERE id = :a", a=account, n=amount)
    problems = await invariants(d["db"])
    assert f"account {d['member']} is negative: -5" in problems
    assert f"account {d['member']} balance -5 but lots hold 15" in problems
    # The raw debit did not go through the ledger, so it recorded no lot consumption either.
    debit = await one(d["db"], "SELECT id FROM ledger_entry WHERE transaction_id = :t AND amount < 0", t=tx)
    assert f"member debit entry {debit} of -20 has lot consumption of 0" in problems
    assert len(problems) == 3


async def test_lots_disagree_with_balance(ledger_data):
    d = ledger_data
    await sql(d["db"], "UPDATE points_lot SET remaining = remaining - 1 WHERE id = :l", l=d["lots"][1])
    assert await invariants(d["db"]) == [f"account {d['member']} balance 15 but lots hold 14"]


@pytest.mark.parametrize("values,bad", [((11, 4), [0]), ((-1, 16), [0, 1])], ids=["above-amount", "negative"])
async def test_lot_remaining_out_of_range(ledger_data, values, bad):
    d = ledger_data
    for lot, remaining in zip(d["lots"], values, strict=True):
        await sql(d["db"], "UPDATE points_lot SET remaining = :r WHERE id = :l", r=remaining, l=lot)
    # The lots still add up to the balance; only the range check can see this.
    assert await invariants(d["db"]) == [f"lot {d['lots'][i]} remaining out of range" for i in bad]


async def test_idempotency_record_without_result(ledger_data):
    d = ledger_data
    record = await one(
        d["db"],
        "INSERT INTO idempotency_record (scope, key, request_hash, result_type, created_at) "
        "VALUES ('admin:1:points', 'half-done', 'x', '', CURRENT_TIMESTAMP) RETURNING id",
    )
    assert await invariants(d["db"]) == [f"idempotency record {record} (admin:1:points/half-done) has no result"]


async def test_several_violations_are_all_reported(ledger_data):
    d = ledger_data
    await sql(d["db"], "UPDATE account SET balance = balance + 1 WHERE id = :a", a=d["issuance"])
    await sql(d["db"], "UPDATE points_lot SET remaining = 12 WHERE id = :l", l=d["lots"][1])
    problems = await invariants(d["db"])
    assert any(p.startswith(f"account {d['issuance']} caches") for p in problems)
    assert f"lot {d['lots'][1]} remaining out of range" in problems
    assert f"account {d['member']} balance 15 but lots hold 17" in problems


async def test_ledger_check_cli_fails_on_a_corrupt_ledger(ledger_data, db_url):
    env = {k: v for k, v in os.environ.items() if not k.startswith("JINGTAN_")}
    env.update(JINGTAN_DATABASE_URL=db_url, JINGTAN_LOG__LEVEL="WARNING")

    def run():
        return subprocess.run(
            [str(BIN / "jingtan"), "ledger-check"], env=env, capture_output=True, text=True, timeout=60, cwd="/", check=False
        )

    ok = run()
    assert ok.returncode == 0 and "ledger ok" in ok.stdout
    await sql(ledger_data["db"], "UPDATE account SET balance = balance + 7 WHERE id = :a", a=ledger_data["member"])
    bad = run()
    assert bad.returncode == 1
    assert re.search(rf"account {ledger_data['member']} caches 22", bad.stdout)
    assert "2 problem(s)" in bad.stdout
