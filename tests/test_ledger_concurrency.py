"""Concurrent clients against one balance, on SQLite and PostgreSQL (docs/ledger.md, docs/architecture.md "Quality bars").

Two kinds of concurrency: many HTTP clients on one app and one event loop (``asyncio.gather``: requests
interleave at every await, connections come from one pool), and several threads each running its own
event loop with its own app / engine on the same database (truly parallel connections)."""

import asyncio
from datetime import timedelta
import random
import threading
from collections import Counter
from contextlib import asynccontextmanager

from ledger_helpers import (
    GRANT,
    REVOKE,
    account_balance,
    adjust_input,
    grant,
    invariants,
    key,
    pk_of,
    snapshot,
)

from jingtan_api.accounts import service as ledger
from jingtan_api.accounts.jobs import expire_points
from jingtan_api.app import create_app
from jingtan_api.db import Database
from jingtan_api.errors import DomainError
from jingtan_api.testing import GraphQLClient, make_settings, register_member

CLIENTS = 24


def outcome(payload: dict) -> str:
    """'ok', 'replayed' or the user error code of a grant/revoke payload."""
    if payload["userErrors"]:
        return payload["userErrors"][0]["code"]
    return "replayed" if payload["replayed"] else "ok"


async def fire(gql, token: str, query: str, inputs: list[dict]) -> list[dict]:
    """Send every input at once; every response must be a GraphQL success (no internal errors)."""
    field = "grantPoints" if query is GRANT else "revokePoints"
    bodies = await asyncio.gather(*(gql(query, {"i": i}, token=token) for i in inputs))
    for body in bodies:
        assert not body.get("errors"), body["errors"]
    return [b["data"][field] for b in bodies]


async def assert_ledger_consistent(db) -> None:
    assert await invariants(db) == []


# --- one app, many HTTP clients -----------------------------------------------------------------------


async def test_concurrent_revokes_never_overdraw(gql, admin, member, services):
    db = services.db
    await grant(gql, admin, member["id"], 100)
    rng = random.Random(7)
    amounts = [rng.randint(1, 15) for _ in range(CLIENTS)]
    inputs = [adjust_input(member["id"], a) for a in amounts]
    results = await fire(gql, admin["token"], REVOKE, inputs)
    codes = Counter(outcome(r) for r in results)
    assert set(codes) <= {"ok", "INSUFFICIENT_POINTS"}, codes
    taken = sum(a for a, r in zip(amounts, results, strict=True) if outcome(r) == "ok")
    final = await account_balance(db, user_id=pk_of(member["id"]))
    assert final == 100 - taken >= 0
    # The balance only went down, so every refused spend asked for more than what is left now.
    assert all(a > final for a, r in zip(amounts, results, strict=True) if outcome(r) != "ok")
    assert codes["ok"] == await _count_kind(db, "REVOKE")
    await assert_ledger_consistent(db)


async def _count_kind(db, kind: str) -> int:
    from ledger_helpers import count_rows

    return await count_rows(db, "ledger_transaction", kind=kind)


async def test_concurrent_revokes_of_the_whole_balance_exactly_one_wins(gql, admin, member, services):
    await grant(gql, admin, member["id"], 60)
    results = await fire(gql, admin["token"], REVOKE, [adjust_input(member["id"], 60) for _ in range(CLIENTS)])
    assert Counter(outcome(r) for r in results) == {"ok": 1, "INSUFFICIENT_POINTS": CLIENTS - 1}
    assert await account_balance(services.db, user_id=pk_of(member["id"])) == 0
    await assert_ledger_consistent(services.db)


async def test_same_idempotency_key_fired_concurrently_has_one_effect(gql, admin, member, services):
    db = services.db
    await grant(gql, admin, member["id"], 100)
    before = await snapshot(db)
    for query in (REVOKE, GRANT):
        same = adjust_input(member["id"], 30, idem=key())
        results = await fire(gql, admin["token"], query, [dict(same) for _ in range(CLIENTS)])
        assert Counter(outcome(r) for r in results) == {"ok": 1, "replayed": CLIENTS - 1}
        assert len({r["transaction"]["id"] for r in results}) == 1
    after = await snapshot(db)
    for table in ("ledger_transaction", "audit_log", "idempotency_record"):
        assert after["counts"][table] == before["counts"][table] + 2, table
    assert await account_balance(db, user_id=pk_of(member["id"])) == 100
    await assert_ledger_consistent(db)


async def test_same_key_different_inputs_concurrently_one_wins(gql, admin, member, services):
    await grant(gql, admin, member["id"], 100)
    idem = key()
    inputs = [adjust_input(member["id"], 1 + i % 3, idem=idem) for i in range(CLIENTS)]
    results = await fire(gql, admin["token"], REVOKE, inputs)
    winners = [i for i, r in zip(inputs, results, strict=True) if outcome(r) == "ok"]
    assert len(winners) == 1
    won = winners[0]["amount"]
    for i, r in zip(inputs, results, strict=True):
        expected = ("ok", "replayed") if i["amount"] == won else ("IDEMPOTENCY_KEY_REUSED",)
        assert outcome(r) in expected
    assert await account_balance(services.db, user_id=pk_of(member["id"])) == 100 - won
    await assert_ledger_consistent(services.db)


async def test_concurrent_grants_to_many_members(gql, admin, services):
    db = services.db
    members = [await register_member(gql, email=f"c{i}@example.cn") for i in range(12)]
    issuance_before = await account_balance(db, code=ledger.ISSUANCE_CODE)
    inputs = [adjust_input(m["id"], 10 + n) for n in range(2) for m in members]
    results = await fire(gql, admin["token"], GRANT, inputs)
    assert all(outcome(r) == "ok" for r in results)
    for m in members:
        assert await account_balance(db, user_id=pk_of(m["id"])) == 21
    assert await account_balance(db, code=ledger.ISSUANCE_CODE) == issuance_before - 21 * len(members)
    await assert_ledger_consistent(db)


async def test_concurrent_grants_and_revokes_on_one_member(gql, admin, member, services):
    db = services.db
    await grant(gql, admin, member["id"], 20)
    rng = random.Random(11)
    ops = [(rng.choice([GRANT, REVOKE]), rng.randint(1, 12)) for _ in range(CLIENTS)]

    async def one(query, amount):
        body = await gql(query, {"i": adjust_input(member["id"], amount)}, token=admin["token"])
        assert not body.get("errors"), body
        return body["data"]["grantPoints" if query is GRANT else "revokePoints"]

    results = await asyncio.gather(*(one(q, a) for q, a in ops))
    delta = 0
    for (query, amount), r in zip(ops, results, strict=True):
        if outcome(r) == "ok":
            delta += amount if query is GRANT else -amount
        else:
            assert query is REVOKE and outcome(r) == "INSUFFICIENT_POINTS"
    assert await account_balance(db, user_id=pk_of(member["id"])) == 20 + delta
    await assert_ledger_consistent(db)


# --- threads: one event loop, app and engine each, same database ---------------------------------------


@asynccontextmanager
async def own_app(db_url: str, clock):
    application = create_app(make_settings(db_url), clock=clock)
    async with application.router.lifespan_context(application):
        client = GraphQLClient(application)
        try:
            yield client
        finally:
            await client.aclose()


async def in_threads(n: int, worker) -> list:
    """Run ``worker(i, barrier)`` in ``n`` threads, each under its own ``asyncio.run``."""
    barrier = threading.Barrier(n, timeout=60)
    threads_out: list = [None] * n

    def run(i: int) -> None:
        threads_out[i] = asyncio.run(worker(i, barrier))

    await asyncio.gather(*(asyncio.to_thread(run, i) for i in range(n)))
    return threads_out


async def test_parallel_apps_spending_one_balance(gql, admin, member, services, db_url, clock):
    db = services.db
    await grant(gql, admin, member["id"], 150)
    threads, per_thread = 4, 6
    amounts = [[7 + (i + j) % 5 for j in range(per_thread)] for i in range(threads)]

    async def worker(i, barrier):
        async with own_app(db_url, clock) as client:
            await asyncio.to_thread(barrier.wait)
            bodies = await asyncio.gather(
                *(client(REVOKE, {"i": adjust_input(member["id"], a)}, token=admin["token"]) for a in amounts[i])
            )
        return bodies

    out = await in_threads(threads, worker)
    taken = 0
    codes = Counter()
    for i, bodies in enumerate(out):
        for a, body in zip(amounts[i], bodies, strict=True):
            assert not body.get("errors"), body["errors"]
            code = outcome(body["data"]["revokePoints"])
            codes[code] += 1
            taken += a if code == "ok" else 0
    assert set(codes) <= {"ok", "INSUFFICIENT_POINTS"}, codes
    assert codes["INSUFFICIENT_POINTS"] > 0  # 24 spends of 7-11 cannot all fit in 150
    final = await account_balance(db, user_id=pk_of(member["id"]))
    assert final == 150 - taken >= 0
    await assert_ledger_consistent(db)


async def test_parallel_apps_same_idempotency_key(gql, admin, member, services, db_url, clock):
    await grant(gql, admin, member["id"], 100)
    same = adjust_input(member["id"], 40, idem=key())
    before = await snapshot(services.db)

    async def worker(i, barrier):
        async with own_app(db_url, clock) as client:
            await asyncio.to_thread(barrier.wait)
            return await asyncio.gather(*(client(REVOKE, {"i": same}, token=admin["token"]) for _ in range(5)))

    out = await in_threads(4, worker)
    payloads = [b["data"]["revokePoints"] for bodies in out for b in bodies]
    assert Counter(outcome(p) for p in payloads) == {"ok": 1, "replayed": 19}
    assert len({p["transaction"]["id"] for p in payloads}) == 1
    after = await snapshot(services.db)
    assert after["counts"]["ledger_transaction"] == before["counts"]["ledger_transaction"] + 1
    assert after["counts"]["audit_log"] == before["counts"]["audit_log"] + 1
    assert await account_balance(services.db, user_id=pk_of(member["id"])) == 60
    await assert_ledger_consistent(services.db)


async def test_parallel_databases_direct_service_calls(gql, admin, services, db_url, clock):
    """Service calls through four ``Database`` instances (own engines and pools) in four threads:
    grants to many members and spends from one of them, with deadlock-prone lock orders mixed."""
    members = [await register_member(gql, email=f"p{i}@example.cn") for i in range(6)]
    user_pks = [pk_of(m["id"]) for m in members]
    await grant(gql, admin, members[0]["id"], 100)
    issuance_before = await account_balance(services.db, code=ledger.ISSUANCE_CODE)
    cfg = services.settings.points

    async def worker(i, barrier):
        db = Database(db_url)
        try:
            await asyncio.to_thread(barrier.wait)

            async def op(j):
                direction = ledger.REVOKE if j % 2 else ledger.GRANT
                target = user_pks[0] if direction == ledger.REVOKE else user_pks[(i + j) % len(user_pks)]
                amount = 3 + (i * 7 + j) % 9
                try:
                    await db.write(
                        lambda conn: ledger.adjust_points(
                            conn,
                            direction=direction,
                            actor_user_id=admin["pk"],
                            user_id=target,
                            amount=amount,
                            reason="parallel test",
                            idempotency_key=f"t{i}-{j}",
                            max_amount=cfg.max_single_amount,
                            lot_expiry_days=cfg.lot_expiry_days,
                            now=clock(),
                        )
                    )
                except DomainError as exc:
                    return direction, target, amount, exc.code
                return direction, target, amount, "ok"

            return await asyncio.gather(*(op(j) for j in range(6)))
        finally:
            await db.dispose()

    out = [r for rs in await in_threads(4, worker) for r in rs]
    expected = dict.fromkeys(user_pks, 0)
    expected[user_pks[0]] = 100
    for direction, target, amount, code in out:
        assert code in ("ok", "INSUFFICIENT_POINTS")
        if code == "ok":
            expected[target] += amount if direction == ledger.GRANT else -amount
        else:
            assert direction == ledger.REVOKE
    for pk in user_pks:
        assert await account_balance(services.db, user_id=pk) == expected[pk]
    assert await account_balance(services.db, code=ledger.ISSUANCE_CODE) == issuance_before - (
        sum(expected.values()) - 100
    )
    await assert_ledger_consistent(services.db)


async def test_parallel_expiry_runs_and_spends_expire_each_point_once(gql, admin, services, db_url, clock):
    """Expired lots are moved exactly once even when several expiry runs (and revokes, which expire
    first) race on the same accounts; valid lots are never taken by an expiry."""
    members = [await register_member(gql, email=f"e{i}@example.cn") for i in range(3)]
    for m in members:
        await grant(gql, admin, m["id"], 40)  # expires after 365 days
    clock.advance(days=300)
    from ledger_helpers import relogin

    await relogin(gql, admin)
    for m in members:
        await grant(gql, admin, m["id"], 100)  # expires after 665 days
    clock.advance(days=70)  # the 40-point lots have expired, the 100-point lots have not
    expired_before = await account_balance(services.db, code=ledger.EXPIRED_CODE)
    cfg = services.settings.points
    user_pks = [pk_of(m["id"]) for m in members]

    async def worker(i, barrier):
        db = Database(db_url)
        try:
            await asyncio.to_thread(barrier.wait)

            async def revoke_one(pk, j):
                try:
                    await db.write(
                        lambda conn: ledger.adjust_points(
                            conn,
                            direction=ledger.REVOKE,
                            actor_user_id=admin["pk"],
                            user_id=pk,
                            amount=5,
                            reason="race with expiry",
                            idempotency_key=f"x{i}-{j}-{pk}",
                            max_amount=cfg.max_single_amount,
                            lot_expiry_days=cfg.lot_expiry_days,
                            now=clock(),
                        )
                    )
                except DomainError as exc:
                    return exc.code
                return "ok"

            jobs = [expire_points(db, now=clock(), lot_expiry_days=cfg.lot_expiry_days) for _ in range(2)]
            revokes = [revoke_one(pk, j) for j in range(2) for pk in user_pks]
            return await asyncio.gather(*jobs, *revokes)
        finally:
            await db.dispose()

    out = await in_threads(4, worker)
    revoke_codes = Counter(r for rs in out for r in rs if isinstance(r, str))
    assert revoke_codes == {"ok": 4 * 2 * len(members)}
    assert await account_balance(services.db, code=ledger.EXPIRED_CODE) == expired_before + 40 * len(members)
    for pk in user_pks:
        assert await account_balance(services.db, user_id=pk) == 100 - 5 * 8
    await assert_ledger_consistent(services.db)


async def test_grants_and_revokes_on_one_member_do_not_deadlock(gql, admin, member, services, db_url, clock, monkeypatch):
    """A revoke expires before it posts; grants lock ISSUANCE before the member. Lock order must be the
    same everywhere, or PostgreSQL detects deadlocks (40P01): retried, but each costs deadlock_timeout."""
    import jingtan_api.db as dbmod

    deadlocks = []
    original = dbmod.is_retryable

    def counting(exc):
        if dbmod._sqlstate(exc) == "40P01":
            deadlocks.append(exc)
        return original(exc)

    monkeypatch.setattr(dbmod, "is_retryable", counting)
    await grant(gql, admin, member["id"], 200)
    cfg = services.settings.points
    target = pk_of(member["id"])

    async def worker(i, barrier):
        db = Database(db_url)
        try:
            await asyncio.to_thread(barrier.wait)

            async def op(j):
                direction = ledger.REVOKE if (i + j) % 2 else ledger.GRANT
                await db.write(
                    lambda conn: ledger.adjust_points(
                        conn,
                        direction=direction,
                        actor_user_id=admin["pk"],
                        user_id=target,
                        amount=5,
                        reason="lock order",
                        idempotency_key=f"d{i}-{j}",
                        max_amount=cfg.max_single_amount,
                        lot_expiry_days=cfg.lot_expiry_days,
                        now=clock(),
                    )
                )

            await asyncio.gather(*(op(j) for j in range(6)))
        finally:
            await db.dispose()

    await in_threads(4, worker)
    assert deadlocks == []
    assert await account_balance(services.db, user_id=target) == 200
    await assert_ledger_consistent(services.db)


async def test_same_key_refused_concurrently_leaves_the_key_free(gql, admin, member, services):
    """Twins of a request that fails (INSUFFICIENT_POINTS) all fail: the key is claimed inside the
    failing transaction, so it rolls back with it, and a later good request can use the key."""
    await grant(gql, admin, member["id"], 10)
    before = await snapshot(services.db)
    same = adjust_input(member["id"], 11, idem=key())
    results = await fire(gql, admin["token"], REVOKE, [dict(same) for _ in range(CLIENTS)])
    assert Counter(outcome(r) for r in results) == {"INSUFFICIENT_POINTS": CLIENTS}
    assert await snapshot(services.db) == before
    await grant(gql, admin, member["id"], 1)
    results = await fire(gql, admin["token"], REVOKE, [dict(same) for _ in range(CLIENTS)])
    assert Counter(outcome(r) for r in results) == {"ok": 1, "replayed": CLIENTS - 1}
    assert await account_balance(services.db, user_id=pk_of(member["id"])) == 0
    await assert_ledger_consistent(services.db)


async def test_action_credits_and_admin_grants_on_the_same_members_do_not_deadlock(gql, admin, services, clock, monkeypatch):
    """An action credit locks the member before ISSUANCE; grants post ISSUANCE and the member. With one
    lock order everywhere (member rows before platform rows) PostgreSQL never detects a deadlock."""
    import jingtan_api.db as dbmod

    deadlocks = []
    original = dbmod.is_retryable

    def counting(exc):
        if dbmod._sqlstate(exc) == "40P01":
            deadlocks.append(exc)
        return original(exc)

    monkeypatch.setattr(dbmod, "is_retryable", counting)
    members = [await register_member(gql) for _ in range(3)]
    submit = """mutation($i: SubmitActionInput!) { submitAction(input: $i) {
        action { status } userErrors { code } } }"""
    grant_op = """mutation($i: AdjustPointsInput!) { grantPoints(input: $i) { userErrors { code } } }"""
    dropped_at = (clock() - timedelta(hours=1)).isoformat()

    async def credit(m, j):
        drop = {"material": "PAPER", "weightGrams": 500, "stationId": "ST-1", "receiptId": f"R-{m['id']}-{j}",
                "droppedAt": dropped_at}
        body = await gql.ok(submit, {"i": {"action": {"recycling": drop}, "idempotencyKey": f"a-{j}"}}, token=m["token"])
        assert body["submitAction"]["userErrors"] == [] and body["submitAction"]["action"]["status"] == "APPROVED"

    async def give(m, j):
        body = await gql.ok(grant_op, {"i": {"userId": m["id"], "amount": 7, "reason": "lock order",
                                             "idempotencyKey": f"g-{m['id']}-{j}"}}, token=admin["token"])
        assert body["grantPoints"]["userErrors"] == []

    await asyncio.gather(*(op(m, j) for m in members for j in range(6) for op in (credit, give)))
    assert deadlocks == []
    for m in members:
        # 0.5 kg paper = 1,750 g CO2e = 175 points per drop-off (under the daily cap), plus 7 per grant.
        assert await account_balance(services.db, user_id=pk_of(m["id"])) == 6 * 175 + 6 * 7
    await assert_ledger_consistent(services.db)
