"""Concurrent write transactions through ``Database.write`` (SQLite: queued on a per-loop lock)."""

import asyncio

import pytest

from jingtan_api.errors import Conflict

from jingtan_api.accounts import service as ledger
from jingtan_api.graphql.relay import decode_id

N = 24


async def _insert_and_count(conn):
    """A write for the SQLite tests below: one row into ``t`` (created on first use), then the count."""
    from sqlalchemy import text

    await conn.execute(text("CREATE TABLE IF NOT EXISTS t (x INTEGER)"))
    await conn.execute(text("INSERT INTO t VALUES (1)"))
    return (await conn.execute(text("SELECT COUNT(*) FROM t"))).scalar_one()


async def test_concurrent_grants_all_commit(services, member, admin, clock):
    user_id = decode_id(member["id"], "User")
    cfg = services.settings.points

    def grant(i: int):
        return services.db.write(
            lambda conn: ledger.adjust_points(
                conn,
                direction=ledger.GRANT,
                actor_user_id=admin["pk"],
                user_id=user_id,
                amount=i + 1,
                reason="concurrent grant",
                idempotency_key=f"c-{i}",
                max_amount=cfg.max_single_amount,
                lot_expiry_days=cfg.lot_expiry_days,
                now=clock(),
            )
        )

    results = await asyncio.gather(*(grant(i) for i in range(N)))
    assert len({tx_id for tx_id, _ in results}) == N and not any(replayed for _, replayed in results)
    async with services.db.read() as conn:
        account = (await ledger.accounts_by_user_ids(conn, [user_id]))[user_id]
        assert account["balance"] == N * (N + 1) // 2
        assert await ledger.check_invariants(conn) == []


async def test_sqlite_write_works_from_another_event_loop(tmp_path):
    """The SQLite writer lock is per event loop: a second loop (e.g. a helper thread) can write too.
    (SQLite only: asyncpg connections cannot move between event loops at all.)"""

    from jingtan_api.db import Database
    from jingtan_api.testing import run_sync

    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'loops.db'}")

    async def in_other_loop():
        return await asyncio.gather(*(db.write(_insert_and_count) for _ in range(3)))

    assert sorted(await asyncio.gather(*(db.write(_insert_and_count) for _ in range(3)))) == [1, 2, 3]
    assert sorted(run_sync(in_other_loop())) == [4, 5, 6]
    await db.dispose()


async def test_sqlite_write_waits_for_another_process_writer_without_blocking_the_loop(tmp_path):
    """BEGIN IMMEDIATE is tried on the loop's thread without waiting; while another connection (another
    process, in real use) holds the write lock, the write waits for it in aiosqlite's thread — the event
    loop keeps running — and commits once the lock is released; a busy timeout still ends in a typed
    retryable error, and nothing is written then."""
    import sqlite3

    from sqlalchemy import text

    from jingtan_api.db import Database

    path = tmp_path / "other.db"
    db = Database(f"sqlite+aiosqlite:///{path}", busy_timeout_ms=5000)

    assert await db.write(_insert_and_count) == 1
    other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")  # the other process's writer
    ticks = 0

    async def ticker():
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    beat = asyncio.create_task(ticker())
    write = asyncio.create_task(db.write(_insert_and_count))
    await asyncio.sleep(0.4)
    assert not write.done()  # waiting for the lock ...
    assert ticks >= 20  # ... while the loop went on (a blocked loop would not have ticked)
    other.execute("COMMIT")
    assert await asyncio.wait_for(write, 5) == 2
    beat.cancel()

    short = Database(f"sqlite+aiosqlite:///{path}", busy_timeout_ms=200)
    other.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(Conflict) as refused:  # retried, then given up: the typed "try again"
            await short.write(_insert_and_count)
        assert refused.value.code == "TRY_AGAIN"
    finally:
        other.execute("ROLLBACK")
        other.close()
    async with db.read() as conn:
        assert (await conn.execute(text("SELECT COUNT(*) FROM t"))).scalar_one() == 2
    await short.dispose()
    await db.dispose()


async def test_a_write_cancelled_while_waiting_for_another_writer_leaves_no_lock_behind(tmp_path):
    """A request cancelled while its BEGIN IMMEDIATE waits (in aiosqlite's thread) for another process's
    writer: the wait runs to its end, the transaction it then began is rolled back before the
    connection is reused, nothing is written, and the database's write lock is free afterwards."""
    import sqlite3

    from sqlalchemy import text

    from jingtan_api.db import Database

    path = tmp_path / "cancel.db"
    db = Database(f"sqlite+aiosqlite:///{path}", busy_timeout_ms=5000)

    assert await db.write(_insert_and_count) == 1
    other = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=0)
    other.execute("BEGIN IMMEDIATE")
    write = asyncio.create_task(db.write(_insert_and_count))
    await asyncio.sleep(0.2)
    write.cancel()
    await asyncio.sleep(0.1)
    other.execute("COMMIT")  # the waiting BEGIN IMMEDIATE now gets the lock ...
    with pytest.raises(asyncio.CancelledError):
        await write
    # ... and gives it back: the other writer takes it again at once, the pool's connections work.
    for _ in range(3):
        async with db.read() as conn:
            assert (await conn.execute(text("SELECT COUNT(*) FROM t"))).scalar_one() == 1
    other.execute("BEGIN IMMEDIATE")
    other.execute("ROLLBACK")
    other.close()
    assert await db.write(_insert_and_count) == 2
    await db.dispose()


class _PgError(Exception):
    def __init__(self, sqlstate: str) -> None:
        super().__init__(f"sqlstate {sqlstate}")
        self.sqlstate = sqlstate


def _db_error(sqlstate: str):
    from sqlalchemy.exc import DBAPIError

    return DBAPIError("UPDATE account …", {}, _PgError(sqlstate))


async def test_write_retries_serialization_failures_and_deadlocks(services):
    attempts = []

    async def flaky(conn):
        attempts.append(1)
        if len(attempts) == 1:
            raise _db_error("40001")
        if len(attempts) == 2:
            raise _db_error("40P01")
        return "done"

    assert await services.db.write(flaky) == "done"
    assert len(attempts) == 3


async def test_write_does_not_retry_other_errors_and_gives_up_with_a_typed_error(services):
    import pytest
    from sqlalchemy.exc import DBAPIError

    from jingtan_api.errors import Conflict

    calls = []

    async def broken(conn):
        calls.append(1)
        raise _db_error("23505")  # unique violation: not retryable

    with pytest.raises(DBAPIError):
        await services.db.write(broken)
    assert len(calls) == 1

    calls.clear()

    async def always_conflicting(conn):
        calls.append(1)
        raise _db_error("40001")

    with pytest.raises(Conflict) as info:
        await services.db.write(always_conflicting)
    assert info.value.code == "TRY_AGAIN" and len(calls) == services.db.max_retries
