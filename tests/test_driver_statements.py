"""The hot read statements on the bare driver (``jingtan_api.driver``): the same rows, values AND Python
types, as SQLAlchemy's ``conn.execute`` on the same data; one SQL text for any list length, compiled once;
driver errors in SQLAlchemy's DBAPIError family, after which the request's reads still work."""

import enum
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from offers_helpers import grant, make_member, make_merchant, make_offer
from sqlalchemy import (
    JSON, BigInteger, Boolean, Column, Date, Enum, Float, Integer, MetaData, Numeric, String, Table, bindparam,
    event, select,
)
from sqlalchemy.exc import DBAPIError, StatementError
from sqlmodel.sql.sqltypes import UTCDateTime

from jingtan_api.accounts import service as ledger
from jingtan_api.auth.permissions import Viewer
from jingtan_api.context import Context
from jingtan_api.db import Database, PageArgs, keyset_page
from jingtan_api.driver import DriverStatement, in_list
from jingtan_api.merchants import service as merchants
from jingtan_api.offers import segments
from jingtan_api.offers import service as offers
from jingtan_api.users import service as users


def typed(rows):
    """Rows with each value's type beside it, so ``1 == True`` or a naive/aware datetime cannot pass."""
    return [{k: (v, type(v), getattr(v, "tzinfo", None)) for k, v in r.items()} for r in rows]


# --- every kind of column ------------------------------------------------------------------------------


class Colour(enum.Enum):
    RED = "red"
    GREEN = "green"


meta = MetaData()
KINDS = Table(
    "driver_kinds", meta,
    Column("id", Integer, primary_key=True),
    Column("flag", Boolean),
    Column("doc", JSON),
    Column("colour", Enum(Colour)),
    Column("word", Enum("alpha", "beta", name="driver_word")),
    Column("at", UTCDateTime),
    Column("day", Date),
    Column("price", Numeric(12, 2)),
    Column("ratio", Float),
    Column("big", BigInteger),
    Column("note", String(40)),
)
KIND_ROWS = [
    {"id": 1, "flag": True, "doc": {"a": [1, 2], "b": "鲸"}, "colour": Colour.RED, "word": "alpha",
     "at": datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=UTC), "day": date(2026, 1, 2), "price": Decimal("12.50"),
     "ratio": 0.25, "big": 10**15, "note": "一"},
    {"id": 2, "flag": False, "doc": [1, "x", None], "colour": Colour.GREEN, "word": "beta",
     "at": datetime(2025, 12, 31, 23, 59, tzinfo=UTC), "day": date(2025, 12, 31), "price": Decimal("0.00"),
     "ratio": -1.5, "big": -1, "note": ""},
    {"id": 3, "flag": None, "doc": None, "colour": None, "word": None, "at": None, "day": None, "price": None,
     "ratio": None, "big": None, "note": None},
]


@pytest.fixture
async def kinds_db(db_url):
    database = Database(db_url)
    async with database.engine.begin() as conn:
        await conn.run_sync(meta.create_all)
        await conn.execute(KINDS.insert(), KIND_ROWS)
    yield database
    async with database.engine.begin() as conn:
        await conn.run_sync(meta.drop_all)
    await database.dispose()


async def test_every_column_type_comes_back_as_sqlalchemy_gives_it(kinds_db):
    by_ids = DriverStatement(select(KINDS).where(in_list(KINDS.c.id, "ids")).order_by(KINDS.c.id))
    filtered = DriverStatement(
        select(KINDS.c.id, KINDS.c.at, KINDS.c.doc, KINDS.c.colour)
        .where(KINDS.c.at >= bindparam("since", type_=KINDS.c.at.type), KINDS.c.colour == Colour.RED))
    async with kinds_db.read() as conn:
        for ids in ([], [3], [1, 2, 3], [2, 99]):
            reference = [dict(r._mapping) for r in await conn.execute(
                select(KINDS).where(KINDS.c.id.in_(ids)).order_by(KINDS.c.id))]
            got = await by_ids.all(conn, {"ids": ids})
            assert typed(got) == typed(reference) and len(got) == len([i for i in ids if i <= 3])
        since = datetime(2026, 1, 1, tzinfo=UTC)
        reference = [dict(r._mapping) for r in await conn.execute(filtered.statement, {"since": since})]
        assert typed(await filtered.all(conn, {"since": since})) == typed(reference) and len(reference) == 1
    assert by_ids.compilations == 1 and filtered.compilations == 1


# --- the hot paths -------------------------------------------------------------------------------------


async def seed(gql, services, clock, admin):
    shops = [await make_merchant(gql, services, clock, admin, profile={"nameZh": f"店 {i}", "latitude": 31.2 + i / 100,
                                                                       "longitude": 121.4}) for i in range(2)]
    shops.append(await make_merchant(gql, services, clock, admin, profile={"nameZh": "北店", "city": "北京"}))
    for shop in shops:
        for i in range(3):
            await make_offer(gql, clock, shop, titleEn=f"{shop['id'][-3:]}-{i}", pointsPrice=10 * (i + 1))
            clock.advance(seconds=1)
    member = await make_member(services, clock, points=500)
    for amount in (5, 7, 11):
        await grant(services, clock, member["pk"], amount)
        clock.advance(seconds=1)
    return shops, member


async def test_hot_paths_match_sqlalchemy(gql, services, clock, admin):
    shops, member = await seed(gql, services, clock, admin)
    async with services.db.read() as conn:
        merchant_ids = [r.id for r in await conn.execute(select(merchants.M.c.id).order_by(merchants.M.c.id))]
        user_ids = [r.id for r in await conn.execute(select(users.U.c.id).order_by(users.U.c.id))]
        for ids in ([], user_ids[:1], user_ids, user_ids[:2] + [10**6]):
            ref = {r.id: dict(r._mapping) for r in await conn.execute(select(users.U).where(users.U.c.id.in_(ids)))}
            got = await users.users_by_ids(conn, ids)
            assert got.keys() == ref.keys() and typed(got.values()) == typed(ref.values())
        for ids in ([], merchant_ids[:1], merchant_ids):
            ref = {r.id: dict(r._mapping) for r in await conn.execute(select(merchants.M).where(merchants.M.c.id.in_(ids)))}
            got = await merchants.merchants_by_ids(conn, ids)
            assert got.keys() == ref.keys() and typed(got.values()) == typed(ref.values())
        for ids in ([], [member["pk"]], user_ids):
            ref = {r.user_id: dict(r._mapping) for r in await conn.execute(
                select(ledger.A).where(ledger.A.c.user_id.in_(ids), ledger.A.c.kind == ledger.MEMBER))}
            got = await ledger.accounts_by_user_ids(conn, ids)
            assert got.keys() == ref.keys() and typed(got.values()) == typed(ref.values())
        assert len(await ledger.accounts_by_user_ids(conn, user_ids)) >= 2  # members and merchant owners

        account_id = (await ledger.accounts_by_user_ids(conn, [member["pk"]]))[member["pk"]]["id"]
        entries = select(*[ledger.E.c.id, ledger.E.c.transaction_id, ledger.E.c.account_id, ledger.E.c.amount,
                           ledger.E.c.balance_after, ledger.E.c.created_at, ledger.TX.c.kind, ledger.TX.c.memo]
                         ).join(ledger.TX, ledger.TX.c.id == ledger.E.c.transaction_id
                                ).where(ledger.E.c.account_id == account_id)
        order = [(ledger.E.c.id, True)]
        first = await ledger.entries_page(conn, account_id, PageArgs(first=2))
        assert len(first.rows) == 2 and first.has_next
        for args in (PageArgs(first=2), PageArgs(first=10), PageArgs(first=0), PageArgs(first=2, after=first.keys[-1]),
                     PageArgs(last=2), PageArgs(last=1, before=first.keys[-1]),
                     PageArgs(first=5, after=first.keys[0], before=(0,))):
            ref = await keyset_page(conn, entries, order, args)
            got = await ledger.entries_page(conn, account_id, args)
            assert typed(got.rows) == typed(ref.rows) and got.keys == ref.keys, args
            assert (got.has_next, got.has_previous) == (ref.has_next, ref.has_previous), args

        now = clock()
        viewer = segments.Viewer(user_id=member["pk"], registered_at=now - timedelta(days=3))
        filters = [offers.CatalogueFilter(), offers.CatalogueFilter(city="上海", max_price=20),
                   offers.CatalogueFilter(segment=viewer), offers.CatalogueFilter(segment=segments.Viewer(None)),
                   offers.CatalogueFilter(include_unavailable=True)]
        for flt in filters:
            for order_by in (offers.NEWEST, offers.POINTS_ASC, offers.ENDING_SOON):
                column, desc = offers._ORDERS[order_by]
                o = [(column, desc), (offers.O.c.id, desc)]
                stmt = offers._catalogue_where(select(offers.O), now=now, flt=flt)
                top = await offers.catalogue_page(conn, PageArgs(first=2), now=now, order=order_by, flt=flt)
                assert top.rows, (flt, order_by)
                for args in (PageArgs(first=2), PageArgs(first=50), PageArgs(first=3, after=top.keys[-1]),
                             PageArgs(last=2, before=top.keys[-1]), PageArgs(last=4)):
                    ref = await keyset_page(conn, stmt, o, args)
                    got = await offers.catalogue_page(conn, args, now=now, order=order_by, flt=flt)
                    assert typed(got.rows) == typed(ref.rows) and got.keys == ref.keys, (flt, order_by, args)
                    assert (got.has_next, got.has_previous) == (ref.has_next, ref.has_previous)


async def test_one_sql_text_for_any_list_and_compiled_once(services, clock):
    member = await make_member(services, clock)
    statement = users._USERS_BY_IDS
    seen: list[str] = []

    def count(conn, cursor, sql, parameters, context, executemany):
        seen.append(sql)

    engine = services.db.engine.sync_engine
    statement.compiled(services.db.engine.dialect)
    compiled = statement.compilations  # once per dialect for the process (the tests use both)
    event.listen(engine, "before_cursor_execute", count)
    try:
        async with services.db.read() as conn:
            for ids in ([], [member["pk"]], list(range(1, 200)), [member["pk"]] * 3):
                found = await users.users_by_ids(conn, ids)
                assert set(found) == ({member["pk"]} if member["pk"] in ids else set())
    finally:
        event.remove(engine, "before_cursor_execute", count)
    # The engine's listeners (statement counters, tracing) still see every statement, always the same text.
    assert [s for s in seen if s != "BEGIN"] == [statement.sql(services.db.engine.dialect)] * 4  # (SQLite: BEGIN too)
    assert "POSTCOMPILE" not in seen[-1] and statement.compilations == compiled <= 2


async def test_a_missing_parameter_is_a_statement_error_as_in_sqlalchemy(services):
    stmt = select(users.U.c.id).where(users.U.c.id == bindparam("uid", type_=Integer))
    async with services.db.read() as conn:
        with pytest.raises(StatementError, match="A value is required for bind parameter 'uid'") as reference:
            await conn.execute(stmt, {})
        with pytest.raises(StatementError, match="A value is required for bind parameter 'uid'") as got:
            await DriverStatement(stmt).all(conn, {})
        assert not isinstance(got.value, DBAPIError) and type(got.value) is type(reference.value)
        assert await DriverStatement(stmt).all(conn, {"uid": -1}) == []  # the transaction is still usable


def test_an_expanding_in_is_refused():
    stmt = DriverStatement(select(users.U).where(users.U.c.id.in_([1, 2])))
    from sqlalchemy.dialects import postgresql, sqlite

    for dialect in (postgresql.asyncpg.dialect(), sqlite.aiosqlite.dialect()):
        with pytest.raises(ValueError, match="in_list"):
            stmt.compiled(dialect)


# --- errors --------------------------------------------------------------------------------------------


async def test_errors_are_sqlalchemys_and_later_reads_still_work(services, clock):
    member = await make_member(services, clock)
    by_id = select(users.U.c.id).where(users.U.c.id == bindparam("uid", type_=Integer))
    driver = DriverStatement(by_id)
    bad = {"uid": object()}  # no driver can bind it
    async with services.db.read() as conn:
        with pytest.raises(DBAPIError) as reference:
            await conn.execute(by_id, bad)
    async with services.db.read() as conn:
        with pytest.raises(DBAPIError) as got:
            await driver.all(conn, bad)
    assert type(got.value) is type(reference.value) and type(got.value.orig) is type(reference.value.orig)

    # A server-side failure (PostgreSQL aborts the transaction) then a good read in the same request:
    # Context.read rolls the shared transaction back on DBAPIError and the next read starts a fresh one.
    failing = DriverStatement(select(users.U.c.id).where(
        users.U.c.id == bindparam("uid", type_=Integer) / bindparam("zero", type_=Integer)))
    ctx = Context(services, None, Viewer(), "req-driver")
    ctx.begin_shared_reads()
    try:
        if services.db.is_postgresql:
            with pytest.raises(DBAPIError):
                await ctx.read(failing.all, {"uid": 1, "zero": 0})
        with pytest.raises(DBAPIError):
            await ctx.read(driver.all, bad)
        assert member["pk"] in await ctx.read(users.users_by_ids, [member["pk"]])
    finally:
        await ctx.end_shared_reads()

    # A bind processor that refuses a value raises StatementError, as conn.execute does, before any SQL.
    since = DriverStatement(select(users.U.c.id).where(users.U.c.created_at >= bindparam("t", type_=users.U.c.created_at.type)))
    async with services.db.read() as conn:
        with pytest.raises(StatementError) as reference:
            await conn.execute(since.statement, {"t": "not a datetime"})
        assert not isinstance(reference.value, DBAPIError)
    async with services.db.read() as conn:
        with pytest.raises(StatementError) as got:
            await since.all(conn, {"t": "not a datetime"})
        assert not isinstance(got.value, DBAPIError)
        assert member["pk"] in await users.users_by_ids(conn, [member["pk"]])  # the transaction is usable


async def test_a_read_sends_no_begin_for_its_driver_statements_on_postgresql(services, clock):
    """On PostgreSQL a read connection's driver statements run as statements of their own (READ
    COMMITTED takes a snapshot per statement either way): no BEGIN, no COMMIT. A statement through
    SQLAlchemy on the same read still begins the transaction, and a later driver statement runs inside
    it. On SQLite the read is one transaction (its snapshot), begun by the "begin" hook, the driver
    statements inside it, and nothing is left open."""
    member = await make_member(services, clock)
    if services.db.is_sqlite:
        async with services.db.read() as conn:
            raw = (await conn.get_raw_connection()).driver_connection
            assert member["pk"] in await users.users_by_ids(conn, [member["pk"]])
            assert raw.in_transaction
        assert not raw.in_transaction
        return
    async with services.db.read() as conn:
        raw = (await conn.get_raw_connection()).driver_connection
        assert member["pk"] in await users.users_by_ids(conn, [member["pk"]])
        assert not raw.is_in_transaction()  # no BEGIN was sent for it
        txid = (await conn.exec_driver_sql("SELECT txid_current()")).scalar_one()  # SQLAlchemy's cursor begins
        assert raw.is_in_transaction()
        assert await raw.fetchval("SELECT txid_current()") == txid
        assert member["pk"] in await users.users_by_ids(conn, [member["pk"]])  # inside that transaction
        assert raw.is_in_transaction()
    assert not raw.is_in_transaction()  # SQLAlchemy's COMMIT ended it


async def test_a_write_runs_its_driver_statements_in_its_transaction(services, clock):
    member = await make_member(services, clock)

    async def work(conn):
        raw = (await conn.get_raw_connection()).driver_connection
        assert member["pk"] in await users.users_by_ids(conn, [member["pk"]])
        if services.db.is_sqlite:
            assert raw.in_transaction  # BEGIN IMMEDIATE's transaction, still open
            return None
        assert raw.is_in_transaction()
        # The driver statement ran in SQLAlchemy's transaction: one transaction id for both.
        return (await conn.exec_driver_sql("SELECT txid_current()")).scalar_one(), await raw.fetchval(
            "SELECT txid_current()")

    ids = await services.db.write(work)
    if services.db.is_postgresql:
        mine, theirs = ids
        assert mine == theirs


async def test_concurrent_reads_on_several_pooled_connections(services, clock):
    """Each pooled connection prepares the statement itself (PostgreSQL: its own column type info); the
    rows are the same on every one, and concurrent reads do not mix their transactions."""
    import asyncio

    member = await make_member(services, clock, points=50)

    async def one() -> tuple[list, list]:
        async with services.db.read() as conn:
            got = await ledger.accounts_by_user_ids(conn, [member["pk"]])
            await asyncio.sleep(0)
            ref = [dict(r._mapping) for r in await conn.execute(
                select(ledger.A).where(ledger.A.c.user_id.in_([member["pk"]]), ledger.A.c.kind == ledger.MEMBER))]
            return typed(got.values()), typed(ref)

    results = await asyncio.gather(*(one() for _ in range(6)))
    assert all(got == ref and len(got) == 1 for got, ref in results)


# --- writes --------------------------------------------------------------------------------------------


async def test_a_write_returns_what_sqlalchemy_returns_and_commits_with_its_transaction(kinds_db):
    """INSERT/UPDATE … RETURNING on the driver path: the returned rows equal SQLAlchemy's, values and types;
    the write is part of the caller's transaction (a rollback undoes it); a unique violation is
    SQLAlchemy's IntegrityError; the engine's statement listeners see it."""
    from sqlalchemy import insert, update
    from sqlalchemy.exc import IntegrityError

    cols = ("id", "flag", "doc", "colour", "at", "day", "price", "note")
    add = DriverStatement(insert(KINDS).values({c: bindparam(c) for c in cols}).returning(*(KINDS.c[c] for c in cols)))
    bump = DriverStatement(update(KINDS).where(KINDS.c.id == bindparam("kid")).values(note=bindparam("note"))
                           .returning(KINDS.c.id, KINDS.c.note, KINDS.c.at))
    row = {"id": 10, "flag": True, "doc": {"鲸": [1]}, "colour": Colour.GREEN,
           "at": datetime(2026, 3, 4, 5, 6, 7, tzinfo=UTC), "day": date(2026, 3, 4), "price": Decimal("3.10"), "note": "新"}
    seen: list[str] = []
    engine = kinds_db.engine.sync_engine
    listener = lambda conn, cursor, statement, *a: seen.append(statement)  # noqa: E731
    event.listen(engine, "before_cursor_execute", listener)
    try:
        async def write(conn):
            got = await add.all(conn, row)
            reference = [dict(r._mapping) for r in await conn.execute(
                insert(KINDS).returning(*(KINDS.c[c] for c in cols)), {**row, "id": 11})]
            assert typed([{**got[0], "id": 11}]) == typed(reference)
            assert await bump.all(conn, {"kid": 10, "note": "改"}) == [{"id": 10, "note": "改", "at": row["at"]}]
            assert await bump.all(conn, {"kid": 999, "note": "x"}) == []  # no row: nothing returned
            return got

        assert (await kinds_db.write(write))[0]["doc"] == {"鲸": [1]}
    finally:
        event.remove(engine, "before_cursor_execute", listener)
    assert sum(1 for s in seen if s.startswith("INSERT INTO driver_kinds")) == 2
    async with kinds_db.read() as conn:
        notes = {r.id: r.note for r in await conn.execute(select(KINDS.c.id, KINDS.c.note))}
    assert notes[10] == "改" and notes[11] == "新"

    class Undo(Exception):
        pass

    async def undone(conn):
        await add.all(conn, {**row, "id": 12})
        raise Undo

    with pytest.raises(Undo):
        await kinds_db.write(undone)

    async def duplicate(conn):
        await add.all(conn, row)

    with pytest.raises(IntegrityError):
        await kinds_db.write(duplicate)
    async with kinds_db.read() as conn:
        ids = {r.id for r in await conn.execute(select(KINDS.c.id))}
    assert 12 not in ids and 10 in ids


def test_a_write_leaving_out_a_python_side_default_is_refused():
    """SQLAlchemy computes a column's Python-side default per execution; the driver path would send NULL."""
    from sqlalchemy import insert
    from sqlalchemy.dialects import postgresql, sqlite

    from jingtan_api.accounts.models import IdempotencyRecord

    T = IdempotencyRecord.__table__
    stmt = DriverStatement(insert(T).values(scope=bindparam("scope"), key=bindparam("key"),
                                            request_hash=bindparam("request_hash")))
    for dialect in (postgresql.asyncpg.dialect(), sqlite.aiosqlite.dialect()):
        with pytest.raises(ValueError, match="Python-side default"):
            stmt.compiled(dialect)
