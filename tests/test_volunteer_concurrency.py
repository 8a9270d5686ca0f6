"""Races of the volunteer programme: event capacity and commissions under 20+ concurrent clients on SQLite
and PostgreSQL (one app), and on PostgreSQL through two server processes; ledger invariants after each; the
number of SQL statements of the event list (independent of the page size)."""

import asyncio
from datetime import UTC, datetime

import httpx
import pytest
from sqlalchemy import func, select

from jingtan_api.auth.permissions import MEMBER
from jingtan_api.volunteers import service as vservice
from live_server import LiveServer
from offers_helpers import CANCEL, REDEEM, make_member
from test_volunteers import merchant_with_offer
from volunteer_helpers import invariants, make_event, make_volunteer, op


@pytest.fixture
def settings_overrides() -> dict:
    return {"auth": {"access_token_ttl_seconds": 86400}}


async def db_counts(services, event_gid: str) -> tuple[int, int]:
    from jingtan_api.graphql.relay import decode_id

    event_id = decode_id(event_gid, "VolunteerEvent")
    async with services.db.read() as conn:
        signed = (await conn.execute(select(vservice.EV.c.signed_up).where(vservice.EV.c.id == event_id))).scalar_one()
        rows = (await conn.execute(select(func.count()).select_from(vservice.SU).where(vservice.SU.c.event_id == event_id))).scalar_one()
    return signed, rows


async def earnings_consistent(services) -> tuple[int, int]:
    """(earnings balances, accrued commissions) — equal when every commission is on the ledger exactly once."""
    async with services.db.read() as conn:
        balance = (await conn.execute(
            select(func.coalesce(func.sum(vservice.A.c.balance), 0)).where(vservice.A.c.kind == vservice.EARNINGS))).scalar_one()
        accrued = (await conn.execute(
            select(func.coalesce(func.sum(vservice.CM.c.points), 0)).where(vservice.CM.c.status == vservice.ACCRUED))).scalar_one()
    return int(balance), int(accrued)


async def test_event_capacity_under_25_concurrent_signups(gql, services, clock, admin):
    volunteer = await make_volunteer(gql, services, clock, admin)
    event_id = await make_event(volunteer, clock, capacity=10)
    members = [await make_member(services, clock) for _ in range(25)]
    bodies = await asyncio.gather(*(
        gql(op("SignUpForVolunteerEvent"), {"input": {"eventId": event_id}}, token=m["token"]) for m in members
    ))
    codes = [b["data"]["signUpForVolunteerEvent"]["errors"] for b in bodies]
    assert sum(1 for c in codes if c == []) == 10
    assert sorted(c[0]["code"] for c in codes if c) == ["EVENT_FULL"] * 15
    assert await db_counts(services, event_id) == (10, 10)

    # One member firing the same signup 20 times at a fresh event: exactly one place taken.
    other = await make_event(volunteer, clock, capacity=50)
    bodies = await asyncio.gather(*(
        gql(op("SignUpForVolunteerEvent"), {"input": {"eventId": other}}, token=members[0]["token"]) for _ in range(20)
    ))
    codes = [b["data"]["signUpForVolunteerEvent"]["errors"] for b in bodies]
    assert sum(1 for c in codes if c == []) == 1
    assert {c[0]["code"] for c in codes if c} == {"ALREADY_SIGNED_UP"}
    assert await db_counts(services, other) == (1, 1)
    await invariants(services)


async def test_commissions_under_concurrent_redemptions_and_refunds(gql, services, clock, admin):
    services.settings.volunteers.commission_basis_points = 1000
    volunteer = await make_volunteer(gql, services, clock, admin, certified=False)
    _, offer_id = await merchant_with_offer(gql, services, clock, admin, volunteer, price=100)
    members = [await make_member(services, clock, points=500) for _ in range(22)]
    bodies = await asyncio.gather(*(
        gql(REDEEM, {"input": {"offerId": offer_id, "quantity": 2, "idempotencyKey": f"k{n}"}}, token=m["token"])
        for n, m in enumerate(members)
    ))
    redemptions = [b["data"]["redeemOffer"]["redemption"]["id"] for b in bodies]
    assert all(b["data"]["redeemOffer"]["userErrors"] == [] for b in bodies)
    assert await earnings_consistent(services) == (22 * 20, 22 * 20)
    # Refund half of them concurrently, while the other half redeem again.
    cancels = [gql(CANCEL, {"input": {"redemptionId": r}}, token=m["token"])
               for r, m in list(zip(redemptions, members, strict=True))[:11]]
    again = [gql(REDEEM, {"input": {"offerId": offer_id, "quantity": 1, "idempotencyKey": f"again{n}"}}, token=m["token"])
             for n, m in enumerate(members[11:])]
    results = await asyncio.gather(*cancels, *again)
    assert all(not r.get("errors") for r in results)
    assert await earnings_consistent(services) == (11 * 20 + 11 * 10, 11 * 20 + 11 * 10)
    async with services.db.read() as conn:
        reversed_n = (await conn.execute(select(func.count()).select_from(vservice.CM)
                                         .where(vservice.CM.c.status == vservice.REVERSED))).scalar_one()
    assert reversed_n == 11
    await invariants(services)


def _post(url: str, query: str, variables: dict, token: str) -> dict:
    with httpx.Client(timeout=60) as client:
        r = client.post(url, json={"query": query, "variables": variables}, headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 200, r.text
        return r.json()


async def test_two_server_processes_event_capacity_and_commissions(gql, services, clock, admin, backend, db_url, tmp_path):
    if backend != "postgresql":
        pytest.skip("two server processes share one database on PostgreSQL")
    clock.now = datetime.now(UTC)  # the servers run on the real clock
    admin["token"], _ = services.access_tokens.issue(admin["pk"], frozenset({MEMBER, "ADMIN"}), clock())
    services.settings.volunteers.commission_basis_points = 1000
    volunteer = await make_volunteer(gql, services, clock, admin)
    event_id = await make_event(volunteer, clock, capacity=10)
    _, offer_id = await merchant_with_offer(gql, services, clock, admin, volunteer, price=100)
    members = [await make_member(services, clock, points=300) for _ in range(24)]
    plain_url = services.settings.database_url
    with LiveServer(plain_url, tmp_path) as one, LiveServer(plain_url, tmp_path) as two:
        urls = [one.url, two.url]
        signups = [asyncio.to_thread(_post, urls[n % 2], op("SignUpForVolunteerEvent"), {"input": {"eventId": event_id}},
                                     m["token"]) for n, m in enumerate(members)]
        redeems = [asyncio.to_thread(_post, urls[(n + 1) % 2], REDEEM,
                                     {"input": {"offerId": offer_id, "quantity": 1, "idempotencyKey": f"live{n}"}}, m["token"])
                   for n, m in enumerate(members)]
        results = await asyncio.gather(*signups, *redeems)
    signed = [r["data"]["signUpForVolunteerEvent"]["errors"] for r in results[:24]]
    assert sum(1 for e in signed if e == []) == 10, one.log() + two.log()
    assert sorted(e[0]["code"] for e in signed if e) == ["EVENT_FULL"] * 14
    assert all(r["data"]["redeemOffer"]["userErrors"] == [] for r in results[24:]), results[24:]
    assert await db_counts(services, event_id) == (10, 10)
    assert await earnings_consistent(services) == (24 * 10, 24 * 10)
    await invariants(services)


async def test_event_list_runs_a_bounded_number_of_statements(gql, services, clock, admin):
    from sqlalchemy import event as sa_event

    volunteers = [await make_volunteer(gql, services, clock, admin, name=f"志愿者 V{i}") for i in range(3)]
    for n in range(24):
        await make_event(volunteers[n % 3], clock)
    member = await make_member(services, clock)
    statements: list[str] = []

    def count(conn, cursor, statement, parameters, context, executemany):
        statements.append(statement)

    engine = services.db.engine.sync_engine
    sa_event.listen(engine, "before_cursor_execute", count)
    try:
        counts = {}
        for size in (3, 24):
            statements.clear()
            data = await gql.ok(op("VolunteerEvents"), {"first": size}, token=member["token"])
            assert len(data["volunteerEvents"]["edges"]) == size
            counts[size] = len(statements)
    finally:
        sa_event.remove(engine, "before_cursor_execute", count)
    assert counts[3] == counts[24] and counts[24] <= 10, (counts, statements)
