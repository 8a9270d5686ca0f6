"""Issue #15 "the cost does not grow with the data": the hot paths reach their big table through an index.

A database is seeded with bulk inserts (40,000 ledger entries over 201 accounts, 20,000 actions,
3,000 offers, 20,000 leaderboard rows, 3,000 redemptions) and ANALYZEd. Then the service functions the
GraphQL resolvers call are run on a read connection while a ``before_cursor_execute`` listener captures
the exact SQL and parameters they send, and each statement is explained on the same connection:

* PostgreSQL, ``EXPLAIN (FORMAT JSON)``: the big table is read by an Index Scan / Index Only Scan /
  Bitmap Index Scan on the expected index, never by a Seq Scan, and a first page is a Limit with no
  Sort node under it (the order comes from the index).
* SQLite, ``EXPLAIN QUERY PLAN``: ``SEARCH <table> USING [COVERING] INDEX <expected index>``, no
  ``SCAN <table>`` (a full scan), and no ``USE TEMP B-TREE FOR ORDER BY`` for a page.

Which index serves which path: docs/architecture.md ("Indexes of the hot paths").
"""

import json
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import event, insert, select, text

from jingtan_api.accounts import service as ledger
from jingtan_api.accounts.models import Account, LedgerEntry, LedgerTransaction
from jingtan_api.actions import service as actions_service
from jingtan_api.actions.models import Action
from jingtan_api.auth.permissions import ADMIN, MEMBER
from jingtan_api.db import PageArgs, utcnow
from jingtan_api.impact import service as impact
from jingtan_api.impact.models import ImpactTotal
from jingtan_api.merchants import service as merchants_service
from jingtan_api.offers import segments
from jingtan_api.offers import service as offers_service
from jingtan_api.offers.models import Offer
from jingtan_api.redemptions.models import Redemption
from jingtan_api.redemptions.service import R
from jingtan_api.users import service as users_service
from jingtan_api.users.models import User

MEMBERS = 200
MERCHANTS = 30
TRANSACTIONS = 20_000  # two entries each: 40,000 ledger entries (issuance + 200 member accounts)
ACTIONS = 20_000
OFFERS = 3_000
BOARD_ROWS = 20_000  # four periods of one board
REDEMPTIONS = 3_000

INDEX_SCANS = {"Index Scan", "Index Only Scan", "Bitmap Index Scan"}


@dataclass
class Seeded:
    users: list[int]
    accounts: list[int]
    member_since: Any
    now: Any
    redemption_code: str
    merchant_id: int
    mid_entry_id: int
    week: str  # the leaderboard period of this week


async def seed(services) -> Seeded:
    now = utcnow().replace(microsecond=0)
    admin = await users_service.register(
        services, email="plans-admin@example.cn", phone=None, password="Sturdy-oak-2026",
        display_name="Admin", roles=frozenset({MEMBER, ADMIN}), now=now,
    )

    async def tx(conn) -> Seeded:
        # Members written in bulk (like bench/impact.py): the hot paths read one member's rows among many.
        base_u = int((await conn.execute(text("SELECT COALESCE(MAX(id), 0) FROM user_account"))).scalar_one())
        base_a = int((await conn.execute(text("SELECT COALESCE(MAX(id), 0) FROM account"))).scalar_one())
        users = [base_u + 1 + i for i in range(MEMBERS)]
        accounts = [base_a + 1 + i for i in range(MEMBERS)]
        await conn.execute(insert(User.__table__), [
            {"id": u, "email": f"plans{u}@example.cn", "display_name": f"成员 {u}", "password_hash": "x",
             "roles": MEMBER, "status": "ACTIVE", "created_at": now - timedelta(days=30),
             "password_changed_at": now - timedelta(days=30)}
            for u in users
        ])
        await conn.execute(insert(Account.__table__), [
            {"id": a, "kind": ledger.MEMBER, "user_id": u, "balance": 0, "allow_negative": False, "created_at": now}
            for a, u in zip(accounts, users, strict=True)
        ])
        await _advance_sequences(conn, "user_account", "account")
        issuance = await ledger.platform_account_id(conn, ledger.ISSUANCE_CODE)
        t0 = now - timedelta(seconds=TRANSACTIONS + 10)
        base_tx = int((await conn.execute(text("SELECT COALESCE(MAX(id), 0) FROM ledger_transaction"))).scalar_one())
        base_e = int((await conn.execute(text("SELECT COALESCE(MAX(id), 0) FROM ledger_entry"))).scalar_one())
        await conn.execute(insert(LedgerTransaction.__table__), [
            {"id": base_tx + i, "kind": "GRANT", "memo": "plans seed", "actor_user_id": admin,
             "created_at": t0 + timedelta(seconds=i)}
            for i in range(1, TRANSACTIONS + 1)
        ])
        entries = []
        for i in range(1, TRANSACTIONS + 1):
            at = t0 + timedelta(seconds=i)
            entries.append({"id": base_e + 2 * i, "transaction_id": base_tx + i, "account_id": issuance,
                            "amount": -5, "balance_after": -5 * i, "created_at": at})
            entries.append({"id": base_e + 2 * i + 1, "transaction_id": base_tx + i,
                            "account_id": accounts[i % MEMBERS], "amount": 5, "balance_after": 5 * i, "created_at": at})
        await conn.execute(insert(LedgerEntry.__table__), entries)

        await conn.execute(insert(Action.__table__), [
            # 100 per member (0.5 % of the table each): the page must neither sort all of the viewer's actions
            # nor walk the table by id filtering on the member.
            {"user_id": users[i % MEMBERS], "plugin_code": ("transit", "recycling", "energy_saving")[i % 3],
             "plugin_version": "1.0.0", "input": "{}", "evidence": "{}",
             "occurred_from": now - timedelta(minutes=i), "occurred_to": now - timedelta(minutes=i - 1),
             "status": "APPROVED" if i % 5 else "REJECTED", "reasons": "[]", "grams_co2e": 100 + i % 900,
             "points": 10, "factor_ids": "[]", "factors": "[]", "formula": "seed",
             "created_at": now - timedelta(minutes=i)}
            for i in range(ACTIONS)
        ])

        merchant_ids = [
            await merchants_service.create_merchant(
                conn, actor_user_id=admin, request_id=None, now=now, owner_user_id=None,
                profile={"name_zh": f"低碳商户 {m}", "name_en": f"Plans merchant {m}",
                         "category": ("CAFE", "GROCERY", "RESTAURANT")[m % 3], "city": ("上海", "北京", "深圳")[m % 3],
                         "district": "徐汇区", "address": f"低碳路 {m} 号", "commitments": []},
            )
            for m in range(MERCHANTS)
        ]
        await conn.execute(text("UPDATE merchant SET status = 'ACTIVE'"))
        merchant_id = merchant_ids[0]
        base_o = int((await conn.execute(text("SELECT COALESCE(MAX(id), 0) FROM offer"))).scalar_one())
        await conn.execute(insert(Offer.__table__), [
            {"id": base_o + i, "merchant_id": merchant_ids[i % MERCHANTS], "title_zh": f"优惠 {i}", "title_en": f"Offer {i}",
             "points_price": 50 + i % 500, "total_stock": 100, "stock": 100 if i % 7 else 0, "per_member_limit": 1,
             "starts_at": now - timedelta(days=1), "ends_at": now + timedelta(days=1 + i % 60),
             "status": ("ACTIVE", "ACTIVE", "ACTIVE", "PAUSED", "ENDED")[i % 5],
             "created_at": now - timedelta(seconds=OFFERS - i), "updated_at": now}
            for i in range(1, OFFERS + 1)
        ])

        periods = [impact.period_key(p, impact.local_day(now, _tz(services))) for p in (impact.WEEK, impact.MONTH, impact.ALL_TIME)]
        periods.append("D2026-01-01")
        await conn.execute(insert(ImpactTotal.__table__), [
            {"board": impact.MEMBER, "board_key": "", "period": periods[i % len(periods)], "entrant_id": 10_000 + i,
             "grams": (i * 7919) % 100_000, "actions": 1 + i % 40}
            for i in range(BOARD_ROWS)
        ])

        codes = [f"PLN{i:08d}" for i in range(REDEMPTIONS)]
        await conn.execute(insert(Redemption.__table__), [
            {"offer_id": base_o + MERCHANTS * (i % (OFFERS // MERCHANTS)) + MERCHANTS, "merchant_id": merchant_id, "member_user_id": users[i % MEMBERS],
             "quantity": 1, "points": 50, "code": codes[i], "status": "CONFIRMED" if i % 3 else "PENDING",
             "created_at": now - timedelta(minutes=i), "expires_at": now + timedelta(days=7),
             "transaction_id": base_tx + 1 + i}
            for i in range(REDEMPTIONS)
        ])
        await _advance_sequences(conn, "ledger_transaction", "ledger_entry", "offer")
        await conn.execute(text("ANALYZE"))
        return Seeded(users=users, accounts=accounts, member_since=now, now=now,
                      redemption_code=codes[REDEMPTIONS // 2], merchant_id=merchant_id,
                      mid_entry_id=base_e + TRANSACTIONS + 1, week=periods[0])

    return await services.db.write(tx)


async def _advance_sequences(conn, *tables: str) -> None:
    """After rows with explicit ids (PostgreSQL): the next id the services take is past them."""
    if conn.dialect.name != "postgresql":
        return
    for table in tables:
        await conn.execute(text(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT MAX(id) FROM {table}))"))


def _tz(services):
    from zoneinfo import ZoneInfo

    return ZoneInfo(services.settings.actions.timezone)


@contextmanager
def captured(engine) -> Iterator[list[tuple[str, Any]]]:
    """The (statement, parameters) the driver's cursor receives while the block runs."""
    seen: list[tuple[str, Any]] = []

    def before(conn, cursor, statement, parameters, context, executemany) -> None:
        seen.append((statement, parameters))

    event.listen(engine.sync_engine, "before_cursor_execute", before)
    try:
        yield seen
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", before)


def _nodes(plan: dict) -> Iterator[dict]:
    yield plan
    for child in plan.get("Plans", ()):
        yield from _nodes(child)


def pg_problems(plan: dict, table: str, index: str, *, page: bool) -> list[str]:
    nodes = list(_nodes(plan))
    problems = []
    if any(n["Node Type"] == "Seq Scan" and n.get("Relation Name") == table for n in nodes):
        problems.append(f"Seq Scan on {table}")
    if not any(n["Node Type"] in INDEX_SCANS and n.get("Index Name") == index for n in nodes):
        problems.append(f"no index scan on {index}")
    if page:
        if plan["Node Type"] != "Limit":
            problems.append(f"top node is {plan['Node Type']}, not Limit")
        sorts = [n["Node Type"] for n in nodes if "Sort" in n["Node Type"]]
        if sorts:
            problems.append(f"{', '.join(sorts)} under the Limit (the order does not come from the index)")
    return problems


def sqlite_problems(details: list[str], table: str, index: str, *, page: bool) -> list[str]:
    problems = []
    if any(d == f"SCAN {table}" or d.startswith(f"SCAN {table} ") for d in details):
        problems.append(f"full scan of {table}")
    prefixes = (f"SEARCH {table} USING INDEX {index}", f"SEARCH {table} USING COVERING INDEX {index}")
    if not any(d.startswith(prefixes) for d in details):
        problems.append(f"{table} not searched through {index}")
    if page and any("USE TEMP B-TREE FOR ORDER BY" in d for d in details):
        problems.append("temporary B-tree for ORDER BY (a sort)")
    return problems


async def explain(conn, statement: str, parameters: Any) -> tuple[Any, str]:
    """The plan of one captured statement and a printable form of it."""
    if conn.dialect.name == "postgresql":
        raw = (await conn.exec_driver_sql("EXPLAIN (FORMAT JSON) " + statement, parameters)).scalar_one()
        doc = json.loads(raw) if isinstance(raw, str) else raw
        return doc[0]["Plan"], json.dumps(doc[0]["Plan"], indent=1)[:4000]
    rows = (await conn.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, parameters)).all()
    details = [r[3] for r in rows]
    return details, "\n".join(details)


@dataclass
class HotPath:
    name: str
    run: Callable[[Any, Seeded], Awaitable[Any]]
    table: str  # the big table
    index: dict[str, str]  # dialect -> expected index name (SQLite: prefix, for autoindexes)
    page: bool = True  # a first page: Limit over the ordered index, no sort
    pick: str = "LIMIT"  # which captured statement: the first containing this text


def _redemption_lookup(conn, s: Seeded):
    # What redemptions.service.confirm reads first: the redemption by its counter code and merchant.
    return conn.execute(select(R).where(R.c.code == s.redemption_code, R.c.merchant_id == s.merchant_id))


HOT_PATHS = [
    HotPath(
        "ledger entries, first page",
        lambda conn, s: ledger.entries_page(conn, s.accounts[0], PageArgs(first=20)),
        "ledger_entry", {"postgresql": "ix_ledger_entry_account_id_id", "sqlite": "ix_ledger_entry_account_id_id"},
    ),
    HotPath(
        "ledger entries, page after a keyset cursor",
        lambda conn, s: ledger.entries_page(conn, s.accounts[1], PageArgs(first=20, after=(s.mid_entry_id,))),
        "ledger_entry", {"postgresql": "ix_ledger_entry_account_id_id", "sqlite": "ix_ledger_entry_account_id_id"},
    ),
    HotPath(
        "catalogue, NEWEST first page for a member (segment filter)",
        lambda conn, s: offers_service.catalogue_page(
            conn, PageArgs(first=20), now=s.now, order=offers_service.NEWEST,
            flt=offers_service.CatalogueFilter(segment=segments.Viewer(s.users[0], s.member_since)),
        ),
        "offer", {"postgresql": "ix_offer_status_created", "sqlite": "ix_offer_status_created"},
    ),
    HotPath(
        "catalogue, POINTS_ASC first page",
        lambda conn, s: offers_service.catalogue_page(
            conn, PageArgs(first=20), now=s.now, order=offers_service.POINTS_ASC,
            flt=offers_service.CatalogueFilter(segment=segments.Viewer(s.users[0], s.member_since)),
        ),
        "offer", {"postgresql": "ix_offer_status_price", "sqlite": "ix_offer_status_price"},
    ),
    HotPath(
        "leaderboard page",
        lambda conn, s: impact.leaderboard_page(conn, impact.MEMBER, "", s.week, PageArgs(first=20)),
        "impact_total", {"postgresql": "ix_impact_total_rank", "sqlite": "ix_impact_total_rank"},
    ),
    HotPath(
        "leaderboard ranks of a page (count above the top)",
        lambda conn, s: impact.leaderboard_page(conn, impact.MEMBER, "", s.week, PageArgs(first=20)),
        "impact_total", {"postgresql": "ix_impact_total_rank", "sqlite": "ix_impact_total_rank"},
        page=False, pick="count(",
    ),
    HotPath(
        "the viewer's actions, first page",
        lambda conn, s: actions_service.actions_page(conn, PageArgs(first=20), user_id=s.users[0]),
        "action", {"postgresql": "ix_action_user_id_id", "sqlite": "ix_action_user_id_id"},
    ),
    HotPath(
        "redemption by counter code",
        _redemption_lookup,
        "redemption", {"postgresql": "uq_redemption_code", "sqlite": "sqlite_autoindex_redemption_"},
        page=False, pick="redemption",
    ),
]

async def check_all(services, s: Seeded) -> tuple[list[str], dict[str, str]]:
    """Problems per hot path, and the printed plans."""
    problems: list[str] = []
    plans: dict[str, str] = {}
    db = services.db
    async with db.read() as conn:
        dialect = conn.dialect.name
        for path in HOT_PATHS:
            with captured(db.engine) as seen:
                await path.run(conn, s)
            sent = [(st, p) for st, p in seen if path.pick.lower() in st.lower() and path.table in st]
            if not sent:
                problems.append(f"{path.name}: no statement on {path.table} containing {path.pick!r} was sent")
                continue
            statement, parameters = sent[0]
            plan, printed = await explain(conn, statement, parameters)
            plans[path.name] = f"{statement}\n{printed}"
            if dialect == "postgresql":
                found = pg_problems(plan, path.table, path.index[dialect], page=path.page)
            else:
                found = sqlite_problems(plan, path.table, path.index[dialect], page=path.page)
            problems += [f"{path.name}: {p}" for p in found]
    return problems, plans


async def test_hot_paths_read_their_big_tables_through_indexes(services):
    s = await seed(services)
    async with services.db.read() as conn:
        counts = {
            t: int((await conn.execute(text(f"SELECT COUNT(*) FROM {t}"))).scalar_one())
            for t in ("ledger_entry", "action", "offer", "impact_total", "redemption")
        }
    assert counts["ledger_entry"] >= 2 * TRANSACTIONS and counts["action"] >= ACTIONS
    assert counts["offer"] >= OFFERS and counts["impact_total"] >= BOARD_ROWS and counts["redemption"] >= REDEMPTIONS
    problems, plans = await check_all(services, s)
    assert not problems, "\n".join(problems) + "\n\n" + "\n\n".join(f"== {k}\n{v}" for k, v in plans.items())
    assert len(plans) == len(HOT_PATHS)


async def test_the_check_sees_a_missing_index(services, backend):
    """The checker is not blind: without ix_ledger_entry_account_id_id the entries page fails it (the
    database is this test's own; the index is dropped in a transaction that is rolled back anyway)."""
    s = await seed(services)
    path = HOT_PATHS[0]
    engine = services.db.engine
    async with engine.connect() as conn:
        trans = await conn.begin()
        await conn.execute(text("DROP INDEX ix_ledger_entry_account_id_id"))
        with captured(engine) as seen:
            await path.run(conn, s)
        statement, parameters = next((st, p) for st, p in seen if "LIMIT" in st and "ledger_entry" in st)
        plan, printed = await explain(conn, statement, parameters)
        await trans.rollback()
    if backend == "postgresql":
        found = pg_problems(plan, path.table, path.index[backend], page=True)
    else:
        found = sqlite_problems(plan, path.table, path.index[backend], page=True)
    assert any("ix_ledger_entry_account_id_id" in p for p in found), printed
