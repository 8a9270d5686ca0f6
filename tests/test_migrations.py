"""The migrations produce exactly the models' schema, on SQLite and PostgreSQL, and go down and up again."""

import asyncio
import uuid

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, select, text
from sqlalchemy.ext.asyncio import create_async_engine

from jingtan_api.accounts import service as ledger
from jingtan_api.migrate import alembic_config, downgrade, upgrade
from jingtan_api.models import metadata
from jingtan_api.testing import DatabaseProvider, _asyncpg_url, postgres_admin_url
from jingtan_api.volunteers import service as volunteers


@pytest.fixture
def empty_db_url(backend: str, tmp_path) -> str:
    """A database with no tables at all (the usual fixtures hand out migrated copies)."""
    if backend == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'empty.db'}"
        return
    name = f"jt_test_mig_{uuid.uuid4().hex[:10]}"
    admin = postgres_admin_url()
    asyncio.run(DatabaseProvider._execute(admin, f'CREATE DATABASE "{name}"'))
    try:
        yield _asyncpg_url(admin, name)
    finally:
        asyncio.run(DatabaseProvider._execute(admin, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def _diff_and_tables(url: str) -> tuple[list, set[str], str | None]:
    def inspect_sync(conn):
        ctx = MigrationContext.configure(conn, opts={"compare_type": True, "compare_server_default": False})
        return compare_metadata(ctx, metadata), set(inspect(conn).get_table_names()), ctx.get_current_revision()

    async def run():
        engine = create_async_engine(url)
        try:
            async with engine.connect() as conn:
                return await conn.run_sync(inspect_sync)
        finally:
            await engine.dispose()

    return asyncio.run(run())


def _platform_accounts(url: str) -> dict[str, tuple[str, bool, int]]:
    async def run():
        engine = create_async_engine(url)
        try:
            async with engine.connect() as conn:
                rows = await conn.execute(
                    select(ledger.A.c.code, ledger.A.c.kind, ledger.A.c.allow_negative, ledger.A.c.balance).where(
                        ledger.A.c.code.is_not(None)
                    )
                )
                return {r.code: (r.kind, r.allow_negative, r.balance) for r in rows}
        finally:
            await engine.dispose()

    return asyncio.run(run())


def test_migrations_match_models_and_round_trip(empty_db_url):
    heads = ScriptDirectory.from_config(alembic_config(empty_db_url)).get_heads()
    assert len(heads) == 1, f"several migration heads: {heads}"

    upgrade(empty_db_url, "heads")
    diff, tables, revision = _diff_and_tables(empty_db_url)
    assert diff == [], diff
    assert tables == set(metadata.tables) | {"alembic_version"}
    assert revision == heads[0]
    accounts = _platform_accounts(empty_db_url)
    assert accounts[ledger.ISSUANCE_CODE][:2] == ("ISSUANCE", True)
    assert accounts[ledger.EXPIRED_CODE][:2] == ("EXPIRED", False)

    downgrade(empty_db_url, "base")
    diff, tables, revision = _diff_and_tables(empty_db_url)
    assert tables <= {"alembic_version"} and revision is None
    assert {d[0] for d in diff} == {"add_table", "add_index"}  # everything is missing again
    assert {d[1].name for d in diff if d[0] == "add_table"} == set(metadata.tables)

    upgrade(empty_db_url, "heads")
    diff, tables, revision = _diff_and_tables(empty_db_url)
    assert diff == [] and revision == heads[0]
    # platform:public-good (identity, 20261202_2101) receives donated balances of deleted accounts.
    assert set(_platform_accounts(empty_db_url)) == {
        ledger.ISSUANCE_CODE, ledger.EXPIRED_CODE, "platform:public-good", *volunteers.PLATFORM_CODES
    }


def _execute(url: str, *statements: str) -> None:
    async def run():
        engine = create_async_engine(url)
        try:
            async with engine.begin() as conn:
                for sql in statements:
                    await conn.execute(text(sql))
        finally:
            await engine.dispose()

    asyncio.run(run())


def test_comparison_detects_a_schema_difference(empty_db_url, backend):
    """The comparison above is not vacuous: an extra column and (PostgreSQL) a changed type are reported."""
    upgrade(empty_db_url, "heads")
    _execute(empty_db_url, "ALTER TABLE account ADD COLUMN stray INTEGER")
    diff, _, _ = _diff_and_tables(empty_db_url)
    assert [(d[0], d[2], d[3].name) for d in diff] == [("remove_column", "account", "stray")]
    if backend == "postgresql":
        # A BigInteger column narrowed to INTEGER (what a hand-written migration might do).
        _execute(empty_db_url, "ALTER TABLE account DROP COLUMN stray", "ALTER TABLE ledger_entry ALTER COLUMN amount TYPE INTEGER")
        diff, _, _ = _diff_and_tables(empty_db_url)
        assert len(diff) == 1 and diff[0][0][0] == "modify_type", diff
        assert diff[0][0][2:4] == ("ledger_entry", "amount")


def test_lot_consumption_backfill_replays_the_ledger(empty_db_url):
    """Migration 0004 backfills lot_consumption for debits written before it existed, exactly as the
    ledger records them now (soonest-expiring lots first), so the invariant holds after upgrading."""
    from datetime import UTC, datetime, timedelta

    from jingtan_api.accounts.models import LotConsumption

    LC = LotConsumption.__table__
    t0 = datetime(2026, 1, 1, tzinfo=UTC)

    async def write_ledger():
        engine = create_async_engine(empty_db_url)
        try:
            async with engine.begin() as conn:
                issuance = await ledger.platform_account_id(conn, ledger.ISSUANCE_CODE)
                members = [await ledger.create_account(conn, kind=ledger.MEMBER) for _ in range(2)]

                async def post(now, *postings):
                    await ledger.post_transaction(conn, kind="TEST", postings=postings, now=now, lot_expiry_days=365)

                for i, member in enumerate(members):
                    # Credits with expiries out of id order, then debits spanning several lots.
                    await post(t0, ledger.Posting(issuance, -30), ledger.Posting(member, 30, lot_expires_at=t0 + timedelta(days=90 + i)))
                    await post(t0, ledger.Posting(issuance, -20), ledger.Posting(member, 20, lot_expires_at=t0 + timedelta(days=30)))
                    await post(t0, ledger.Posting(member, -25), ledger.Posting(issuance, 25))
                    await post(t0, ledger.Posting(issuance, -10), ledger.Posting(member, 10, lot_expires_at=t0 + timedelta(days=60)))
                    await post(t0, ledger.Posting(member, -12), ledger.Posting(issuance, 12))
                await ledger.expire_account_lots(conn, members[0], now=t0 + timedelta(days=100), lot_expiry_days=365)
                assert await ledger.check_invariants(conn) == []
        finally:
            await engine.dispose()

    async def consumption():
        engine = create_async_engine(empty_db_url)
        try:
            async with engine.connect() as conn:
                rows = await conn.execute(
                    select(LC.c.entry_id, LC.c.lot_id, LC.c.amount, LC.c.expires_at).order_by(LC.c.entry_id, LC.c.lot_id)
                )
                return [tuple(r) for r in rows], await ledger.check_invariants(conn)
        finally:
            await engine.dispose()

    upgrade(empty_db_url, "heads")
    asyncio.run(write_ledger())
    written, problems = asyncio.run(consumption())
    assert problems == [] and len(written) == 9  # 2 + 2 per member, 1 for the expiry
    downgrade(empty_db_url, "20261125_0003")
    upgrade(empty_db_url, "heads")
    backfilled, problems = asyncio.run(consumption())
    assert problems == []
    assert backfilled == written
