"""An approved submitAction runs a bounded number of SQL statements (the action, the ledger posting and
the approval listeners: impact totals with the medal check folded into the totals upsert, breakdowns, daily
stats, challenges, webhook outbox) — so the hot write path cannot quietly regress (SQLite and PostgreSQL)."""

from community_helpers import member
from impact_helpers import StatementCounter, approved_trip

# Measured with the totals upsert returning the member's all-time row (no separate medal SELECT), and the
# webhook outbox listener's endpoint lookup done once per transaction for its three events
# (action.recorded, ledger.posted, action.approved; events.attempt_memo).
# An approval by review (not measured here) also runs the REVIEW_DECISION notification listener: one
# INSERT ... ON CONFLICT DO NOTHING (tests/test_notifications.py checks that it is exactly one).
MAX_APPROVAL_STATEMENTS = {"sqlite": 32, "postgresql": 31}


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
