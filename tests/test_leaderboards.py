"""Leaderboards (docs/impact.md): ranks by grams over week / month / all time for the platform, a
household, an organisation, a city and organisations; opted-out members ranked but not named; exact
under concurrent approvals; a bounded number of SQL statements whatever the page size; the verified
reductions report reconciles with the actions' grams (SQLite and PostgreSQL)."""

import asyncio
import csv
import io
import json

from community_helpers import household_with_members, join_org, member, op, organisation
from impact_helpers import StatementCounter, approved_trip
from ledger_helpers import relogin

from jingtan_api.impact import service

BOARD = op("member/Leaderboard")


async def board(gql, who, **variables) -> dict:
    return (await gql.ok(BOARD, variables, token=who["token"]))["leaderboard"]


async def test_ranks_periods_and_opt_out(gql, services, admin, clock):
    people = [await member(gql, f"成员{i} Member {i}") for i in range(4)]
    await gql.ok(op("member/SetImpactPreferences"), {"input": {"leaderboardOptOut": True, "city": "北京"}},
                 token=people[1]["token"])
    grams = {}
    for i, p in enumerate(people):
        grams[i] = sum([await approved_trip(gql, p, clock, meters=2000 + 1000 * i, minutes_ago=30 + 25 * k)
                        for k in range(2)])
    week = await board(gql, people[0], board="PLATFORM", period="WEEK", first=10)
    nodes = [e["node"] for e in week["entries"]["edges"]]
    assert [n["grams"] for n in nodes] == sorted(grams.values(), reverse=True)
    assert [n["rank"] for n in nodes] == [1, 2, 3, 4]
    anon = next(n for n in nodes if n["grams"] == grams[1])
    assert anon["anonymous"] and anon["name"] == "Anonymous member / 匿名成员" and anon["memberId"] is None
    assert week["viewerEntry"]["rank"] == 4 and week["viewerEntry"]["isViewer"]
    assert week["entries"]["totalCount"] == 4 and (week["periodStart"], week["periodEnd"]) == ("2026-06-01", "2026-06-07")
    # The opted-out member sees their own name; totals still count them.
    own = await board(gql, people[1], board="PLATFORM", period="ALL_TIME", first=10)
    assert own["viewerEntry"]["name"] == "成员1 Member 1"
    city = await board(gql, people[0], board="CITY", period="MONTH", city="北京", first=10)
    assert [n["node"]["grams"] for n in city["entries"]["edges"]] == [grams[1]]
    last_week = await board(gql, people[0], board="PLATFORM", period="WEEK", on="2026-05-25", first=10)
    assert last_week["entries"]["edges"] == [] and last_week["viewerEntry"] is None
    # Pages follow each other with cursors, ranks continue.
    first = await board(gql, people[0], board="PLATFORM", period="ALL_TIME", first=2)
    second = await board(gql, people[0], board="PLATFORM", period="ALL_TIME", first=2,
                         after=first["entries"]["pageInfo"]["endCursor"])
    assert [e["node"]["rank"] for e in first["entries"]["edges"] + second["entries"]["edges"]] == [1, 2, 3, 4]
    anonymous = await gql(BOARD, {"board": "PLATFORM", "period": "WEEK"})
    assert anonymous["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
    bad = await gql(BOARD, {"board": "PLATFORM", "period": "WEEK", "after": "bm9wZQ=="}, token=people[0]["token"])
    assert bad["errors"][0]["extensions"]["code"] == "INVALID_CURSOR"


async def test_household_and_organisation_boards_are_for_members(gql, services, admin, clock):
    boss, a, b, stranger = [await member(gql, n) for n in ("老板 Boss", "甲 A", "乙 B", "陌生人 Stranger")]
    household = await household_with_members(gql, a, b)
    org_id = await organisation(gql, admin, boss)
    other_org = await organisation(gql, admin, stranger, nameZh="别家 Other")
    await join_org(gql, boss, org_id, a, b)
    clock.advance(minutes=1)
    await relogin(gql, boss, a, b, stranger)
    ga, gb = await approved_trip(gql, a, clock), await approved_trip(gql, b, clock, meters=6000)
    hh = await board(gql, a, board="HOUSEHOLD", period="MONTH", householdId=household)
    assert [e["node"]["grams"] for e in hh["entries"]["edges"]] == [gb, ga]
    org = await board(gql, b, board="ORGANISATION", period="ALL_TIME", organisationId=org_id)
    assert [e["node"]["grams"] for e in org["entries"]["edges"]] == [gb, ga]
    for variables in ({"board": "HOUSEHOLD", "householdId": household}, {"board": "ORGANISATION", "organisationId": org_id}):
        denied = await gql(BOARD, {**variables, "period": "WEEK"}, token=stranger["token"])
        assert denied["errors"][0]["extensions"]["code"] == "FORBIDDEN", denied
    orgs = await gql.ok(BOARD, {"board": "ORGANISATIONS", "period": "ALL_TIME", "organisationId": org_id})
    rows = [e["node"] for e in orgs["leaderboard"]["entries"]["edges"]]
    assert [(r["organisationId"], r["grams"]) for r in rows] == [(org_id, ga + gb)]
    assert orgs["leaderboard"]["viewerEntry"]["rank"] == 1
    assert other_org not in [r["organisationId"] for r in rows]


async def test_exact_under_concurrent_approvals(gql, services, admin, clock):
    boss = await member(gql, "老板 Boss")
    org_id = await organisation(gql, admin, boss)
    people = [await member(gql, f"并发{i} C{i}") for i in range(22)]
    await join_org(gql, boss, org_id, *people)
    clock.advance(minutes=1)
    await relogin(gql, boss, *people)
    got = await asyncio.gather(*[approved_trip(gql, p, clock, minutes_ago=30 + 25 * k) for p in people for k in range(2)])
    total = sum(got)
    org = await board(gql, boss, board="ORGANISATION", period="WEEK", organisationId=org_id, first=50)
    assert sum(e["node"]["grams"] for e in org["entries"]["edges"]) == total
    assert org["entries"]["totalCount"] == 22
    orgs = await gql.ok(BOARD, {"board": "ORGANISATIONS", "period": "WEEK"})
    assert orgs["leaderboard"]["entries"]["edges"][0]["node"]["grams"] == total
    platform = (await gql.ok("{ platformImpact { totalGrams actions } }"))["platformImpact"]
    assert platform == {"totalGrams": total, "actions": 44}


async def test_leaderboard_runs_a_bounded_number_of_statements(gql, services, clock):
    people = [await member(gql, f"计数{i} Q{i}") for i in range(30)]
    counts = {}
    for size, group in ((5, people[:10]), (25, people[10:])):
        for p in group:
            await approved_trip(gql, p, clock)
        with StatementCounter(services) as counter:
            await board(gql, people[0], board="PLATFORM", period="ALL_TIME", first=size)
        counts[size] = counter.count
    assert counts[5] == counts[25] and counts[25] <= 8, counts


async def test_report_reconciles_with_recorded_grams(gql, services, admin, clock):
    people = [await member(gql) for _ in range(3)]
    for i, p in enumerate(people):
        for k in range(3):
            await approved_trip(gql, p, clock, meters=1500 + 700 * (i + k), minutes_ago=30 + 25 * k)
    data = (await gql.ok(op("admin/ImpactReport"), {"from": "2026-05-01", "to": "2026-06-30"}, token=admin["token"]))
    rep = data["impactReport"]
    async with services.db.read() as conn:
        from datetime import date
        from zoneinfo import ZoneInfo

        recorded = await service.recorded_grams(conn, date(2026, 5, 1), date(2026, 6, 30), tz=ZoneInfo("Asia/Shanghai"))
    assert rep["totalGrams"] == recorded == sum(line["grams"] for line in rep["lines"]) > 0
    assert rep["totalActions"] == 9
    line = rep["lines"][0]
    assert line["actionType"] == "transit" and line["methodologyVersion"] and "transit.metro" in line["factorIds"]
    rows = list(csv.reader(io.StringIO(rep["csv"])))
    assert rows[0][0] == "action_type" and rows[-1][0] == "TOTAL" and int(rows[-1][-1]) == recorded
    assert sum(int(r[-1]) for r in rows[1:-1]) == recorded
    doc = json.loads(rep["json"])
    assert doc["totalGrams"] == recorded and doc["periodStart"] == "2026-05-01"
    empty = (await gql.ok(op("admin/ImpactReport"), {"from": "2026-01-01", "to": "2026-01-31"}, token=admin["token"]))
    assert empty["impactReport"]["totalGrams"] == 0 and empty["impactReport"]["lines"] == []
    bad = await gql(op("admin/ImpactReport"), {"from": "2026-06-02", "to": "2026-06-01"}, token=admin["token"])
    assert bad["errors"][0]["extensions"]["code"] == "INVALID_PERIOD"
    forbidden = await gql(op("admin/ImpactReport"), {"from": "2026-06-01", "to": "2026-06-02"}, token=people[0]["token"])
    assert forbidden["errors"][0]["extensions"]["code"] == "FORBIDDEN"


async def test_ranks_with_ties_across_pages(services):
    """Competition ranks (1, 2, 2, 4, …) hold whatever page the ties fall on, forwards and backwards."""
    from jingtan_api.db import PageArgs

    grams = [900, 700, 700, 700, 500, 500, 300, 100, 100, 50]
    rows = [dict(board="CITY", board_key="测试", period="A", entrant_id=i + 1, grams=g, actions=1) for i, g in enumerate(grams)]
    await services.db.write(lambda conn: conn.execute(service.IT.insert(), rows))
    expected = sorted(1 + sum(1 for h in grams if h > g) for g in grams)
    for size in (1, 2, 3, 4, 7):
        got, after = [], None
        async with services.db.read() as conn:
            while True:
                page = await service.leaderboard_page(conn, "CITY", "测试", "A", PageArgs(first=size, after=after))
                got += [r["rank"] for r in page.rows]
                if not page.has_next:
                    break
                after = page.keys[-1]
            back = await service.leaderboard_page(conn, "CITY", "测试", "A", PageArgs(last=3))
        assert got == expected, (size, got)
        assert [r["rank"] for r in back.rows] == expected[-3:]
    async with services.db.read() as conn:
        entry = await service.leaderboard_entry(conn, "CITY", "测试", "A", 4)
    assert entry["rank"] == 2 and entry["grams"] == 700
