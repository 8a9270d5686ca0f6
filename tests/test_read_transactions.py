"""How GraphQL operations use read transactions: a query sent alone reads in ONE transaction."""

import pytest
from sqlalchemy import event, text
from sqlalchemy.exc import DBAPIError

from jingtan_api.auth.permissions import Viewer
from jingtan_api.context import Context

ACCOUNT = """query { viewer { displayName account { id balance owner { id }
  entries(first: 5) { totalCount edges { cursor node { id amount transaction { id } } } } } } }"""


def count_begins(app) -> list[int]:
    begins = [0]

    def on_begin(_conn) -> None:
        begins[0] += 1

    event.listen(app.state.services.db.engine.sync_engine, "begin", on_begin)
    return begins


async def test_a_query_reads_in_one_transaction(app, gql, member, admin):
    await gql.ok(
        "mutation($i: AdjustPointsInput!) { grantPoints(input: $i) { userErrors { code } } }",
        {"i": {"userId": member["id"], "amount": 30, "reason": "welcome", "idempotencyKey": "k1"}},
        token=admin["token"],
    )
    begins = count_begins(app)
    data = await gql.ok(ACCOUNT, token=member["token"])
    account = data["viewer"]["account"]
    assert account["balance"] == 30 and account["entries"]["totalCount"] == 1
    # viewer, account, owner, entries page, totalCount: one read transaction for all of them.
    assert begins[0] == 1

    # A mutation reads what it wrote: grantPoints reads its payload inside its write transaction.
    begins[0] = 0
    grant = await gql.ok(
        "mutation($i: AdjustPointsInput!) { grantPoints(input: $i) { account { balance } userErrors { code } } }",
        {"i": {"userId": member["id"], "amount": 12, "reason": "again", "idempotencyKey": "k2"}},
        token=admin["token"],
    )
    assert grant["grantPoints"]["account"]["balance"] == 42
    # One read for the admin-token check (admin roles are confirmed against the database on every
    # request) and one write transaction that also reads the payload.
    assert begins[0] == 2


async def test_a_failed_statement_does_not_poison_later_reads(services):
    ctx = Context(services, None, Viewer(), "req-1")
    ctx.begin_shared_reads()

    async def bad(conn):
        await conn.execute(text("SELECT * FROM no_such_table"))

    async def good(conn):
        return (await conn.execute(text("SELECT 1"))).scalar_one()

    with pytest.raises(DBAPIError):
        await ctx.read(bad)
    # On PostgreSQL the failed statement aborted its transaction: the next read must use a fresh one.
    assert await ctx.read(good) == 1
    await ctx.end_shared_reads()
    assert ctx._shared is None


async def test_a_write_inside_a_write_is_refused_not_hung(services):
    db = services.db

    async def outer(conn):
        return await db.write(lambda inner: inner.execute(text("SELECT 1")))

    with pytest.raises(RuntimeError, match="inside another write transaction"):
        await db.write(outer)
    # The guard is released: a later write works.
    assert await db.write(lambda conn: _one(conn)) == 1


async def _one(conn):
    return (await conn.execute(text("SELECT 1"))).scalar_one()


async def test_a_query_sends_no_begin_on_postgresql_and_stays_on_the_loop_thread_on_sqlite(app, gql, member, admin,
                                                                                          monkeypatch):
    """The account page's reads on their hot path: on PostgreSQL no BEGIN/COMMIT round trips (each
    statement reads its own READ COMMITTED snapshot, as it did inside the transaction); on SQLite one
    transaction (BEGIN, the SELECTs, COMMIT) all on the event loop's thread, none in aiosqlite's."""
    await gql.ok(
        "mutation($i: AdjustPointsInput!) { grantPoints(input: $i) { userErrors { code } } }",
        {"i": {"userId": member["id"], "amount": 30, "reason": "welcome", "idempotencyKey": "k1"}},
        token=admin["token"],
    )
    db = app.state.services.db
    if db.is_postgresql:
        import asyncpg.transaction

        started = []
        start = asyncpg.transaction.Transaction.start

        async def counting_start(self):
            started.append(self)
            return await start(self)

        monkeypatch.setattr(asyncpg.transaction.Transaction, "start", counting_start)
        data = await gql.ok(ACCOUNT, token=member["token"])
        assert data["viewer"]["account"]["balance"] == 30
        assert started == []
        # A write still runs in its transaction.
        await gql.ok(
            "mutation($i: AdjustPointsInput!) { grantPoints(input: $i) { userErrors { code } } }",
            {"i": {"userId": member["id"], "amount": 1, "reason": "again", "idempotencyKey": "k2"}},
            token=admin["token"],
        )
        assert len(started) == 1
        return

    import threading

    seen: list[tuple[int, str]] = []

    def trace_on_checkout(dbapi_connection, _record, _proxy) -> None:
        raw = dbapi_connection.driver_connection._conn
        raw.set_trace_callback(lambda sql: seen.append((threading.get_ident(), sql)))

    engine = db.engine.sync_engine
    event.listen(engine, "checkout", trace_on_checkout)
    try:
        data = await gql.ok(ACCOUNT, token=member["token"])
    finally:
        event.remove(engine, "checkout", trace_on_checkout)
    assert data["viewer"]["account"]["balance"] == 30
    verbs = [sql.split(None, 1)[0].upper() for _, sql in seen]
    assert verbs[0] == "BEGIN" and verbs[-1] == "COMMIT" and verbs.count("BEGIN") == 1
    assert "SELECT" in verbs
    assert {ident for ident, _ in seen} == {threading.get_ident()}, "\n".join(f"{i == threading.get_ident()} {s[:90]}" for i, s in seen)
