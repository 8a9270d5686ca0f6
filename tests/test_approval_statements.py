"""An approved submitAction runs a bounded number of SQL statements (the action, the ledger posting and
the approval listeners: impact totals with the medal check folded into the totals upsert, breakdowns, daily
stats, challenges, webhook outbox) — so the hot write path cannot quietly regress (SQLite and PostgreSQL)."""

from community_helpers import member
from impact_helpers import StatementCounter, approved_trip

# Measured with the totals upsert returning the member's all-time row (no separate medal SELECT), and the
# webhook outbox listener's endpoint lookup done once per transaction for its three events
# (action.recorded, ledger.posted, action.approved; events.attempt_memo), the member's daily and monthly
# caps summed by one SELECT, the household, idempotency key and evidence looked up by one SELECT, the merchant attribution asked once per transaction (merchants' and
# campaigns' listeners) and the daily stats of the transaction written by one upsert before COMMIT.
# An approval by review (not measured here) also runs the REVIEW_DECISION notification listener: one
# INSERT ... ON CONFLICT DO NOTHING (tests/test_notifications.py checks that it is exactly one).
# SQLite's BEGIN IMMEDIATE is sent on the raw connection (one hop to aiosqlite's thread, not through the
# cursor listeners), so both databases count the same statements.
MAX_APPROVAL_STATEMENTS = {"sqlite": 23, "postgresql": 23}


async def test_an_approved_submission_runs_a_bounded_number_of_statements(gql, services, clock):
    who = await member(gql, "甲 A")
    await approved_trip(gql, who, clock)  # warm: first-time rows (profile, medal FIRST_ACTION) are behind us
    with StatementCounter(services) as counter:
        await approved_trip(gql, who, clock)
    dialect = services.db.engine.dialect.name
    assert counter.count <= MAX_APPROVAL_STATEMENTS[dialect], counter.statements


async def test_the_webhook_endpoints_are_read_once_per_transaction(gql, services, clock):
    who = await member(gql, "乙 B")
    await approved_trip(gql, who, clock)
    with StatementCounter(services) as counter:
        await approved_trip(gql, who, clock)
    lookups = [s for s in counter.statements if "FROM webhook_endpoint" in s]
    assert len(lookups) == 1, counter.statements


async def test_an_approved_submission_compiles_no_statement_after_the_first(gql, services, clock):
    """Every statement SQLAlchemy executes for a second approval comes from its compiled cache: a statement
    with no cache key (such as a multi-row ``.values([...])`` upsert) is compiled again on every execution
    (~1 ms each; the totals, breakdown, daily-stats and medal upserts were, five per approval)."""
    from sqlalchemy import event

    who = await member(gql, "丙 C")
    await approved_trip(gql, who, clock)
    await approved_trip(gql, who, clock)
    seen: list[tuple[str, str]] = []

    def record(conn, cursor, statement, parameters, context, executemany) -> None:
        hit = getattr(context, "cache_hit", None)  # absent on the driver path (compiled once, no SQLAlchemy)
        seen.append((hit.name if hit is not None else "DRIVER", statement))

    engine = services.db.engine.sync_engine
    event.listen(engine, "before_cursor_execute", record)
    try:
        await approved_trip(gql, who, clock)
    finally:
        event.remove(engine, "before_cursor_execute", record)
    compiled = [(hit, sql) for hit, sql in seen
                if hit not in ("CACHE_HIT", "DRIVER") and not sql.startswith(("BEGIN", "SAVEPOINT", "RELEASE"))]
    assert compiled == [], compiled
    assert any(sql.startswith("INSERT INTO impact_total") for _, sql in seen), seen  # the approval was seen


async def test_the_daily_stats_of_a_transaction_are_one_sorted_upsert(gql, services, clock):
    """The three counters an approved submission bumps (actions recorded, points moved, CO2e) are merged
    into one upsert at the end of the transaction (``events.defer_to_commit``), and they still count."""
    from sqlalchemy import select

    from jingtan_api.impact.models import StatsDaily

    who = await member(gql, "丁 D")
    await approved_trip(gql, who, clock)
    SD = StatsDaily.__table__
    async with services.db.read() as conn:
        before = {(r.metric, r.dim): r.value for r in await conn.execute(select(SD))}
    with StatementCounter(services) as counter:
        grams = await approved_trip(gql, who, clock)
    upserts = [i for i, s in enumerate(counter.statements) if s.startswith("INSERT INTO stats_daily")]
    assert len(upserts) == 1, counter.statements
    # Written after the transaction's other writes: the idempotency result is recorded before it.
    completes = [i for i, s in enumerate(counter.statements) if s.startswith("UPDATE idempotency_record")]
    assert completes and completes[0] < upserts[0], counter.statements
    async with services.db.read() as conn:
        after = {(r.metric, r.dim): r.value for r in await conn.execute(select(SD))}
    assert after[("actions", "APPROVED:transit")] == before[("actions", "APPROVED:transit")] + 1
    assert after[("co2e", "transit")] == before[("co2e", "transit")] + grams
    assert after[("points", "ACTION_CREDIT")] > before[("points", "ACTION_CREDIT")]


async def test_the_merchant_attribution_reads_the_action_once_per_transaction(gql, services, clock):
    """The merchants' and the campaigns' ``action.approved`` listeners both ask where the action was done;
    the answer is kept for the transaction attempt, so the action row is read once for it."""
    who = await member(gql, "戊 E")
    await approved_trip(gql, who, clock)
    with StatementCounter(services) as counter:
        await approved_trip(gql, who, clock)
    # One statement reads the action with its attribution, if any (a correlated subquery).
    lookups = [s for s in counter.statements if "FROM merchant_action" in s]
    assert len(lookups) == 1, counter.statements


MAX_REDEMPTION_STATEMENTS = 24


async def test_every_statement_of_an_approval_a_redemption_and_a_grant_is_on_the_driver_path(gql, services, clock):
    """The hot writes (docs/architecture.md, "The driver path") send every statement compiled once on the
    bare driver: none goes through SQLAlchemy's execution layer (a `context.cache_hit` is set only there)."""
    from offers_helpers import make_admin, make_member, make_merchant, make_offer, redeem
    from sqlalchemy import event

    admin = await make_admin(services, clock)
    merchant = await make_merchant(gql, services, clock, admin)
    offer = await make_offer(gql, clock, merchant, pointsPrice=10, totalStock=50)
    buyer = await make_member(services, clock, points=500)
    who = await member(gql, "戊 E")
    await approved_trip(gql, who, clock)
    await redeem(gql, buyer, offer["id"])
    seen: list[tuple[bool, str]] = []

    def record(conn, cursor, statement, parameters, context, executemany) -> None:
        seen.append((getattr(context, "cache_hit", None) is None, statement))

    engine = services.db.engine.sync_engine
    event.listen(engine, "before_cursor_execute", record)
    try:
        await approved_trip(gql, who, clock)
        approval = list(seen)
        seen.clear()
        result = await redeem(gql, buyer, offer["id"])
        redemption = list(seen)
        seen.clear()
        granted = await gql.ok(
            "mutation($i: AdjustPointsInput!) { grantPoints(input: $i) { account { balance } userErrors { code } } }",
            {"i": {"userId": who["id"], "amount": 7, "reason": "welcome / 欢迎", "idempotencyKey": "grant-1"}},
            token=admin["token"])
    finally:
        event.remove(engine, "before_cursor_execute", record)
    assert result["userErrors"] == [] and result["redemption"]["status"] == "PENDING"
    assert granted["grantPoints"]["userErrors"] == []
    for statements in (approval, redemption, seen):
        assert statements and [sql for driver, sql in statements if not driver] == []
    assert any(sql.startswith("INSERT INTO audit_log") for _, sql in seen)
    seen = redemption
    assert any(sql.startswith("INSERT INTO redemption") for _, sql in seen)
    assert len(seen) <= MAX_REDEMPTION_STATEMENTS, [sql for _, sql in seen]
