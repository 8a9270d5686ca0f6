"""Benchmark databases: create (SQLite file or PostgreSQL ``jt_bench_<random>``), migrate, seed, drop.

Small fixtures go through the real services (registration, ``adjust_points``). Deep ledgers are seeded
with set-based SQL on the database server (``generate_series`` / a recursive CTE) writing what
``post_transaction`` writes for a run of GRANTs: one balanced transaction per credit (issuance −a,
member +a), ``balance_after`` running on both accounts, one lot per member credit, cached balances
updated in the same transaction. ``check_invariants`` verifies the result.
"""

import asyncio
import shutil
import tempfile
import uuid
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import text

from jingtan_api.users import service as users_service
from jingtan_api.accounts import service as ledger
from jingtan_api.auth.permissions import ADMIN, MEMBER
from jingtan_api.services import Services
from jingtan_api.db import utcnow
from jingtan_api.graphql.relay import encode_cursor, to_global_id
from jingtan_api.progress import ProgressBar
from jingtan_api.merchants import service as merchants_service
from jingtan_api.offers import service as offers_service
from jingtan_api.testing import _asyncpg_url, _plain_url, make_settings, postgres_admin_url


@dataclass
class BenchDatabase:
    dialect: str
    url: str
    name: str
    _tmpdir: Path | None = None

    def drop(self) -> None:
        if self.dialect == "sqlite":
            if self._tmpdir is not None:
                shutil.rmtree(self._tmpdir, ignore_errors=True)
            return
        asyncio.run(_pg_drop(self.name))


async def _pg_admin_execute(sql: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(_plain_url(postgres_admin_url(), "postgres"))
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


async def _pg_drop(name: str) -> None:
    await _pg_admin_execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def create_database(dialect: str) -> BenchDatabase:
    """A new, migrated, empty database."""
    from jingtan_api.migrate import upgrade

    if dialect == "sqlite":
        tmpdir = Path(tempfile.mkdtemp(prefix="jt_bench_"))
        db = BenchDatabase("sqlite", f"sqlite+aiosqlite:///{tmpdir / 'bench.db'}", str(tmpdir), tmpdir)
    elif dialect == "postgresql":
        name = f"jt_bench_{uuid.uuid4().hex[:10]}"
        asyncio.run(_pg_admin_execute(f'CREATE DATABASE "{name}"'))
        db = BenchDatabase("postgresql", _asyncpg_url(postgres_admin_url(), name), name)
    else:
        raise ValueError(dialect)
    try:
        upgrade(db.url)
    except BaseException:
        db.drop()
        raise
    return db


def bench_settings(url: str, secret_key: str):
    """Settings of the seeding process (cheap argon2: the bench never logs in, it mints tokens)."""
    return make_settings(url, secret_key=secret_key, auth={"access_token_ttl_seconds": 86400})


@dataclass
class Fixture:
    tokens: dict[str, str] = field(default_factory=dict)
    user_gids: dict[str, str] = field(default_factory=dict)
    account_ids: dict[str, int] = field(default_factory=dict)
    mid_cursors: dict[str, str] = field(default_factory=dict)
    entries: dict[str, int] = field(default_factory=dict)
    submit_tokens: list[str] = field(default_factory=list)
    offers: int = 0
    redeem_tokens: list[str] = field(default_factory=list)
    redeem_offer_gid: str = ""
    redeem_offer_stock: int = 0
    redeem_points: int = 0


async def _user(services: Services, fx: Fixture, name: str, roles: frozenset[str], now) -> int:
    user_id = await users_service.register(
        services,
        email=f"{name}@bench.jingtan.org",
        phone=None,
        password="Bench-password-2026",
        display_name=f"Bench {name}",
        roles=roles,
        now=now,
    )
    token, _ = services.access_tokens.issue(user_id, roles, now)
    fx.tokens[name] = token
    fx.user_gids[name] = to_global_id("User", user_id)
    async with services.db.read() as conn:
        fx.account_ids[name] = await ledger.member_account_id(conn, user_id)
    return user_id


async def _grant(services: Services, admin_id: int, user_id: int, amount: int, key: str, now) -> None:
    cfg = services.settings.points
    await services.db.write(
        lambda conn: ledger.adjust_points(
            conn,
            direction=ledger.GRANT,
            actor_user_id=admin_id,
            user_id=user_id,
            amount=amount,
            reason="bench seed grant",
            idempotency_key=key,
            max_amount=cfg.max_single_amount,
            lot_expiry_days=cfg.lot_expiry_days,
            now=now,
        )
    )


_SQLITE_SEED = [
    """WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < :n)
       INSERT INTO ledger_transaction (id, kind, memo, actor_user_id, reverses_id, created_at)
       SELECT :tx0 + i, 'GRANT', 'bench seed grant', :actor, NULL,
              strftime('%Y-%m-%d %H:%M:%S.000000', :t0, '+' || i || ' seconds') FROM s""",
    """WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < :n)
       INSERT INTO ledger_entry (id, transaction_id, account_id, amount, balance_after, created_at)
       SELECT :e0 + 2 * i, :tx0 + i, :iss, -(1 + i % 10), :iss_bal - (i + 45 * (i / 10) + (i % 10) * (i % 10 + 1) / 2),
              strftime('%Y-%m-%d %H:%M:%S.000000', :t0, '+' || i || ' seconds') FROM s
       UNION ALL
       SELECT :e0 + 2 * i + 1, :tx0 + i, :member, 1 + i % 10, :mem_bal + (i + 45 * (i / 10) + (i % 10) * (i % 10 + 1) / 2),
              strftime('%Y-%m-%d %H:%M:%S.000000', :t0, '+' || i || ' seconds') FROM s""",
    """WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < :n)
       INSERT INTO points_lot (id, account_id, entry_id, amount, remaining, expires_at, created_at)
       SELECT :l0 + i, :member, :e0 + 2 * i + 1, 1 + i % 10, 1 + i % 10,
              strftime('%Y-%m-%d %H:%M:%S.000000', :t0, '+' || i || ' seconds', '+' || :expiry_days || ' days'),
              strftime('%Y-%m-%d %H:%M:%S.000000', :t0, '+' || i || ' seconds') FROM s""",
]

_PG_SEED = [
    """INSERT INTO ledger_transaction (id, kind, memo, actor_user_id, reverses_id, created_at)
       SELECT CAST(:tx0 AS bigint) + i, 'GRANT', 'bench seed grant', CAST(:actor AS integer), NULL,
              CAST(:t0 AS timestamptz) + i * interval '1 second' FROM generate_series(1, CAST(:n AS integer)) AS i""",
    """INSERT INTO ledger_entry (id, transaction_id, account_id, amount, balance_after, created_at)
       SELECT CAST(:e0 AS bigint) + 2 * i, CAST(:tx0 AS bigint) + i, CAST(:iss AS integer), -(1 + i % 10), CAST(:iss_bal AS bigint) - (i + 45 * (i / 10) + (i % 10) * (i % 10 + 1) / 2),
              CAST(:t0 AS timestamptz) + i * interval '1 second' FROM generate_series(1, CAST(:n AS integer)) AS i
       UNION ALL
       SELECT CAST(:e0 AS bigint) + 2 * i + 1, CAST(:tx0 AS bigint) + i, CAST(:member AS integer), 1 + i % 10, CAST(:mem_bal AS bigint) + (i + 45 * (i / 10) + (i % 10) * (i % 10 + 1) / 2),
              CAST(:t0 AS timestamptz) + i * interval '1 second' FROM generate_series(1, CAST(:n AS integer)) AS i""",
    """INSERT INTO points_lot (id, account_id, entry_id, amount, remaining, expires_at, created_at)
       SELECT CAST(:l0 AS bigint) + i, CAST(:member AS integer), CAST(:e0 AS bigint) + 2 * i + 1, 1 + i % 10, 1 + i % 10,
              CAST(:t0 AS timestamptz) + i * interval '1 second' + CAST(:expiry_days AS integer) * interval '1 day',
              CAST(:t0 AS timestamptz) + i * interval '1 second' FROM generate_series(1, CAST(:n AS integer)) AS i""",
]


def _total(n: int) -> int:
    """Sum of 1 + i % 10 for i in 1..n (the amounts the seed SQL writes)."""
    return n + 45 * (n // 10) + (n % 10) * (n % 10 + 1) // 2


async def bulk_grants(services: Services, account_id: int, n: int, *, actor_user_id: int) -> None:
    """Append ``n`` GRANT transactions to a member account in one write transaction."""
    db = services.db
    now = utcnow()
    # Newest entry ~now; older ones one second apart. Lots expire lot_expiry_days after their credit.
    t0 = (now - timedelta(seconds=n + 1)).replace(microsecond=0)
    expiry_days = services.settings.points.lot_expiry_days

    async def tx(conn) -> None:
        iss = await ledger.platform_account_id(conn, ledger.ISSUANCE_CODE)
        # Lock both account rows first (the same order post_transaction uses: by id).
        for acc in sorted((iss, account_id)):
            await conn.execute(text("UPDATE account SET balance = balance WHERE id = :id"), {"id": acc})
        balances = dict(
            (await conn.execute(text("SELECT id, balance FROM account WHERE id IN (:a, :b)"), {"a": iss, "b": account_id})).all()
        )
        maxes = (
            await conn.execute(
                text(
                    "SELECT (SELECT COALESCE(MAX(id), 0) FROM ledger_transaction),"
                    " (SELECT COALESCE(MAX(id), 0) FROM ledger_entry),"
                    " (SELECT COALESCE(MAX(id), 0) FROM points_lot)"
                )
            )
        ).one()
        params: dict[str, Any] = {
            "n": n,
            "tx0": maxes[0],
            "e0": maxes[1],
            "l0": maxes[2],
            "iss": iss,
            "member": account_id,
            "iss_bal": balances[iss],
            "mem_bal": balances[account_id],
            "actor": actor_user_id,
            "expiry_days": expiry_days,
            "t0": t0.strftime("%Y-%m-%d %H:%M:%S") if db.is_sqlite else t0,
        }
        for sql in _SQLITE_SEED if db.is_sqlite else _PG_SEED:
            await conn.execute(text(sql), params)
        total = _total(n)
        await conn.execute(text("UPDATE account SET balance = balance - :t WHERE id = :id"), {"t": total, "id": iss})
        await conn.execute(text("UPDATE account SET balance = balance + :t WHERE id = :id"), {"t": total, "id": account_id})
        if db.is_postgresql:
            for table in ("ledger_transaction", "ledger_entry", "points_lot"):
                await conn.execute(
                    text(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT MAX(id) FROM {table}))")
                )

    await db.write(tx)


async def _members(services: Services, n: int, prefix: str, now) -> list[tuple[int, str]]:
    """``n`` members registered through the real service, their email marked verified (``[identity]
    require_verified_contact`` gates earning and redeeming), with access tokens."""
    bar = ProgressBar(f"bench seed: {prefix}s", total=n)
    out = []
    for i in range(n):
        bar.advance(1)
        user_id = await users_service.register(
            services,
            email=f"{prefix}{i}@bench.jingtan.org", phone=None, password="Bench-password-2026",
            display_name=f"Bench {prefix} {i}", roles=frozenset({MEMBER}), now=now,
        )
        await services.db.write(lambda conn, u=user_id: users_service.mark_contacts_verified(conn, u, now=now))
        out.append((user_id, services.access_tokens.issue(user_id, frozenset({MEMBER}), now)[0]))
    bar.close()
    return out


async def submit_members(services: Services, fx: Fixture, n: int, now) -> None:
    """``n`` verified members with access tokens, for ``submitAction``."""
    fx.submit_tokens.extend(token for _, token in await _members(services, n, "submitter", now))


REDEEM_PRICE = 10
REDEEM_STOCK = 10**6
REDEEM_POINTS = 100_000


async def redeem_fixture(services: Services, fx: Fixture, admin_id: int, n: int, now) -> None:
    """``n`` verified members granted ``REDEEM_POINTS`` each (one GRANT through ``adjust_points``: one lot)
    and one ACTIVE offer of an ACTIVE merchant, created through the services: ``REDEEM_PRICE`` points,
    ``REDEEM_STOCK`` items, at most 1,000 per member (the largest limit the service accepts) — so that no
    request of a run is refused (10,000 redemptions a member before the points run out). Created a day
    ago, so that it is not on the newest catalogue page of the ``catalogue`` scenario."""
    for user_id, token in await _members(services, n, "redeemer", now):
        await _grant(services, admin_id, user_id, REDEEM_POINTS, f"seed-redeemer-{user_id}", now)
        fx.redeem_tokens.append(token)
    actor = merchants_service.Actor(user_id=admin_id, is_admin=True, merchant_id=None)

    async def tx(conn) -> int:
        merchant_id = await merchants_service.create_merchant(
            conn, actor_user_id=admin_id, request_id=None, now=now, owner_user_id=None,
            profile={"name_zh": "兑换商户", "name_en": "Bench redeem merchant", "category": "CAFE", "city": "上海",
                     "district": "徐汇区", "address": "低碳路 1 号", "commitments": []},
        )
        return await offers_service.create_offer(
            conn, actor=actor, merchant_id=merchant_id, status=offers_service.ACTIVE, now=now - timedelta(days=1),
            fields={"title_zh": "自带杯咖啡", "title_en": "Own-cup coffee", "points_price": REDEEM_PRICE,
                    "total_stock": REDEEM_STOCK, "per_member_limit": offers_service.MAX_PER_MEMBER,
                    "starts_at": now - timedelta(days=2), "ends_at": now + timedelta(days=30)},
        )

    fx.redeem_offer_gid = to_global_id("Offer", await services.db.write(tx))
    fx.redeem_offer_stock = REDEEM_STOCK
    fx.redeem_points = REDEEM_POINTS


CATEGORIES = ("CAFE", "BIKE_SHOP", "TRANSIT", "GROCERY", "RESTAURANT")


async def catalogue(services: Services, admin_id: int, merchants: int, per_merchant: int, now) -> int:
    """``merchants`` ACTIVE merchants with ``per_merchant`` ACTIVE offers each, created through the offers
    service (validation, ledger account per merchant, audit row); offers created one second apart,
    interleaved across merchants so that a catalogue page shows offers of many merchants."""
    actor = merchants_service.Actor(user_id=admin_id, is_admin=True, merchant_id=None)

    async def tx(conn) -> int:
        ids = []
        for m in range(merchants):
            ids.append(
                await merchants_service.create_merchant(
                    conn, actor_user_id=admin_id, request_id=None, now=now, owner_user_id=None,
                    profile={
                        "name_zh": f"低碳商户 {m}", "name_en": f"Bench merchant {m}",
                        "category": CATEGORIES[m % len(CATEGORIES)], "city": ("上海", "北京", "深圳")[m % 3],
                        "district": f"第 {m % 7} 区", "address": f"低碳路 {m} 号",
                        "commitments": ["自带杯立减 / Own cup discount"],
                    },
                )
            )
        n = 0
        for k in range(per_merchant):
            for m, merchant_id in enumerate(ids):
                created = now - timedelta(seconds=merchants * per_merchant - n)
                await offers_service.create_offer(
                    conn, actor=actor, merchant_id=merchant_id, status=offers_service.ACTIVE, now=created,
                    fields={
                        "title_zh": f"优惠 {m}-{k}", "title_en": f"Offer {m}-{k}",
                        "image_url": f"https://img.jingtan.org/offers/{m}-{k}.jpg" if k % 2 else None,
                        "points_price": 50 + 10 * k + m, "total_stock": 1000, "per_member_limit": 2,
                        "starts_at": now - timedelta(days=1), "ends_at": now + timedelta(days=30 + k),
                    },
                )
                n += 1
        return n

    return await services.db.write(tx)


async def _mid_cursor(services: Services, account_id: int, n: int) -> str:
    async with services.db.read() as conn:
        entry_id = (
            await conn.execute(
                text("SELECT id FROM ledger_entry WHERE account_id = :a ORDER BY id LIMIT 1 OFFSET :o"),
                {"a": account_id, "o": n // 2},
            )
        ).scalar_one()
    return encode_cursor(entry_id)


async def seed(
    url: str,
    secret_key: str,
    *,
    depth: tuple[int, int] | None = None,
    submitters: int = 0,
    offers: tuple[int, int] | None = None,
    redeemers: int = 0,
    check: bool = True,
    log=print,
) -> Fixture:
    """Users ``member`` (40 ledger entries), ``admin``, ``target`` (receives grants) and, with
    ``depth=(shallow, deep)``, ``shallow`` and ``deep`` members with that many entries; ``submitters``
    more members with tokens (``fx.submit_tokens``); with ``offers=(merchants, per_merchant)``, that many
    active merchants and offers; ``redeemers`` members with points and one offer to redeem."""
    import time

    settings = bench_settings(url, secret_key)
    services = Services.build(settings)
    fx = Fixture()
    now = utcnow()
    try:
        admin_id = await _user(services, fx, "admin", frozenset({MEMBER, ADMIN}), now)
        member_id = await _user(services, fx, "member", frozenset({MEMBER}), now)
        await _user(services, fx, "target", frozenset({MEMBER}), now)
        for i in range(40):
            await _grant(services, admin_id, member_id, 10 + i, f"seed-member-{i}", now - timedelta(minutes=40 - i))
        fx.entries["member"] = 40
        if submitters:
            started = time.perf_counter()
            await submit_members(services, fx, submitters, now)
            log(f"  registered {submitters} submitting members in {time.perf_counter() - started:.1f} s")
        if redeemers:
            started = time.perf_counter()
            await redeem_fixture(services, fx, admin_id, redeemers, now)
            log(f"  registered {redeemers} redeeming members with {REDEEM_POINTS:,} points each and one offer "
                f"in {time.perf_counter() - started:.1f} s")
        if offers is not None:
            fx.offers = await catalogue(services, admin_id, offers[0], offers[1], now)
            log(f"  created {offers[0]} merchants with {fx.offers} active offers")
        if depth is not None:
            for name, n in (("shallow", depth[0]), ("deep", depth[1])):
                log(f"  seeding {n:,} ledger entries for '{name}' (one bulk statement)...")
                await _user(services, fx, name, frozenset({MEMBER}), now)
                started = time.perf_counter()
                await bulk_grants(services, fx.account_ids[name], n, actor_user_id=admin_id)
                fx.entries[name] = n
                fx.mid_cursors[name] = await _mid_cursor(services, fx.account_ids[name], n)
                log(f"  seeded {n:,} ledger entries for '{name}' in {time.perf_counter() - started:.1f} s")
            if services.db.is_postgresql:
                async with services.db.engine.connect() as conn:
                    conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
                    await conn.execute(text("ANALYZE"))
            else:
                async with services.db.engine.connect() as conn:
                    await conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
        if check:
            started = time.perf_counter()
            async with services.db.read() as conn:
                problems = await ledger.check_invariants(conn)
            if problems:
                raise RuntimeError(f"seeded ledger violates invariants: {problems[:5]}")
            log(f"  ledger invariants hold ({time.perf_counter() - started:.1f} s to check)")
    finally:
        await services.db.dispose()
    return fx
