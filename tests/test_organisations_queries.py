"""Community list queries run a bounded number of SQL statements, whatever the page size (DataLoaders, no
N+1), and donations stay exact across two server processes on PostgreSQL."""

from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

import httpx
import pytest
from community_helpers import household_with_members, join_org, key, member, op, organisation
from ledger_helpers import balance_of, invariants
from live_server import LiveServer
from sqlalchemy import event

from jingtan_api.testing import FrozenClock


@pytest.fixture
def clock() -> FrozenClock:
    # The live servers check tokens against the real clock, so the in-process setup issues them "now".
    return FrozenClock(datetime.now(UTC).replace(microsecond=0))


async def statements_of(services, gql, query: str, variables: dict, token: str) -> int:
    seen: list[str] = []

    def count(conn, cursor, statement, parameters, context, executemany):
        seen.append(statement)

    engine = services.db.engine.sync_engine
    event.listen(engine, "before_cursor_execute", count)
    try:
        await gql.ok(query, variables, token=token)
    finally:
        event.remove(engine, "before_cursor_execute", count)
    return len([s for s in seen if s != "BEGIN"])


async def test_organisation_console_statements_do_not_grow_with_members(gql, services, admin):
    console = op("organisation/OrganisationConsole")
    counts = []
    for size in (1, 12):
        boss = await member(gql, points=10, admin=admin)
        org_id = await organisation(gql, admin, boss, nameZh=f"公司{size}")
        people = [await member(gql, points=5, admin=admin) for _ in range(size)]
        await join_org(gql, boss, org_id, *people)
        for p in people:
            await gql.ok(op("community/DonateToOrganisation"),
                         {"input": {"organisationId": org_id, "points": 1, "idempotencyKey": key()}}, token=p["token"])
            await gql.ok(op("community/RequestToJoinOrganisation"), {"input": {"organisationId": org_id}},
                         token=(await member(gql))["token"])
        counts.append(await statements_of(services, gql, console, {"id": org_id}, boss["token"]))
    # organisation, role, member count, balance, 4 pages and 4 counts, users: 14 whatever the size
    assert counts[0] == counts[1] <= 14, counts


async def test_household_members_statements_do_not_grow(gql, services):
    counts = []
    for size in (1, 8):
        owner = await member(gql)
        await household_with_members(gql, owner, *[await member(gql) for _ in range(size)])
        counts.append(await statements_of(services, gql, op("community/MyHousehold"), {}, owner["token"]))
    # household of viewer, household, member count, pool balance, members page and count, users: 7
    assert counts[0] == counts[1] <= 7, counts


DONATE = op("community/DonateToOrganisation")


def _post(url: str, token: str, variables: dict) -> dict:
    with httpx.Client(timeout=60) as http:
        r = http.post(url, json={"query": DONATE, "variables": variables}, headers={"Authorization": f"Bearer {token}"})
        r.raise_for_status()
        return r.json()["data"]["donateToOrganisation"]


async def test_two_server_processes_donations_never_overdraw(gql, services, admin, backend, db_url, tmp_path):
    if backend != "postgresql":
        pytest.skip("two server processes share one database on PostgreSQL")
    boss = await member(gql)
    org_id = await organisation(gql, admin, boss)
    donors = [await member(gql, points=40, admin=admin) for _ in range(3)]
    jobs = [(d, {"input": {"organisationId": org_id, "points": 6, "idempotencyKey": key()}}) for d in donors for _ in range(8)]
    twin = await member(gql, points=10, admin=admin)
    same_key = {"input": {"organisationId": org_id, "points": 5, "idempotencyKey": key()}}
    with LiveServer(db_url, tmp_path) as one, LiveServer(db_url, tmp_path) as two:
        urls = [one.url, two.url]
        with ThreadPoolExecutor(24) as pool:
            results = list(pool.map(lambda ij: _post(urls[ij[0] % 2], ij[1][0]["token"], ij[1][1]), enumerate(jobs)))
            twins = list(pool.map(lambda i: _post(urls[i % 2], twin["token"], same_key), range(8)))
    assert {r["errors"][0]["code"] for r in results if r["errors"]} == {"INSUFFICIENT_POINTS"}
    assert sum(1 for r in results if not r["errors"]) == 3 * 6  # 6 donations of 6 from 40 points each
    for d in donors:
        assert await balance_of(gql, d) == 4
    # One idempotency key sent 8 times through both processes at once: one donation, the rest replays of it.
    assert all(t["errors"] == [] for t in twins), twins
    assert len({t["donation"]["id"] for t in twins}) == 1 and sum(not t["replayed"] for t in twins) == 1
    assert await balance_of(gql, twin) == 5
    assert await invariants(services.db) == []
