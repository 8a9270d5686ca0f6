"""Impact (docs/impact.md): personal, household, organisation, city and platform totals with equivalents,
medals, the green community honour, the admin dashboard; maintained aggregates agree with the actions
and with a rebuild; bad preferences are refused and write nothing (SQLite and PostgreSQL)."""

from zoneinfo import ZoneInfo

from community_helpers import household_with_members, join_org, member, op, organisation
from impact_helpers import approved_trip

from jingtan_api.impact import service
from jingtan_api.testing import row_counts

MY_IMPACT = op("member/MyImpact")
SET_PREFS = op("member/SetImpactPreferences")


async def set_prefs(gql, who, **values) -> dict:
    data = await gql.ok(SET_PREFS, {"input": values}, token=who["token"])
    return data["setImpactPreferences"]


async def test_personal_household_organisation_city_impact(gql, services, admin, clock):
    boss, a, b, outsider = [await member(gql, n) for n in ("老板 Boss", "甲 A", "乙 B", "外人 Outsider")]
    await set_prefs(gql, a, city="深圳")
    await set_prefs(gql, b, city="深圳")
    household = await household_with_members(gql, a, b)
    org_id = await organisation(gql, admin, boss, kind="COMMUNITY")
    await join_org(gql, boss, org_id, a)
    clock.advance(minutes=1)
    ga = [await approved_trip(gql, a, clock) for _ in range(3)]
    gb = [await approved_trip(gql, b, clock, meters=5000) for _ in range(2)]
    go = await approved_trip(gql, outsider, clock)

    mine = (await gql.ok(MY_IMPACT, token=a["token"]))["viewer"]
    assert mine["impact"]["totalGrams"] == sum(ga) and mine["impact"]["actions"] == 3
    assert mine["impact"]["byActionType"] == [{"actionType": "transit", "grams": sum(ga), "actions": 3}]
    assert [m["month"] for m in mine["impact"]["byMonth"]] == ["2026-06"]
    trees = next(e for e in mine["impact"]["equivalents"] if e["code"] == "TREE_YEARS")
    assert trees["value"] == round(sum(ga) / trees["gramsPerUnit"], 2) and "EPA" in trees["source"]
    assert [m["code"] for m in mine["medals"]] == ["FIRST_ACTION"]
    assert mine["impactPreferences"] == {"city": "深圳", "leaderboardOptOut": False}

    hh = await gql.ok("query($id: ID!) { node(id: $id) { ... on Household { impact { totalGrams actions } } } }",
                      {"id": household}, token=b["token"])
    assert hh["node"]["impact"] == {"totalGrams": sum(ga) + sum(gb), "actions": 5}
    denied = await gql("query($id: ID!) { node(id: $id) { ... on Household { impact { totalGrams } } } }",
                       {"id": household}, token=outsider["token"])
    assert denied["data"]["node"] is None or denied["errors"][0]["extensions"]["code"] == "FORBIDDEN"

    org = (await gql.ok(op("challenges/OrganisationImpact"), {"id": org_id}, token=boss["token"]))["node"]
    assert org["impact"]["totalGrams"] == sum(ga)  # only A is a member; B's and the outsider's do not count
    assert org["greenCommunity"]["eligible"] and not org["greenCommunity"]["awarded"]

    city = (await gql.ok(op("member/CityImpact"), {"city": "深圳"}))["cityImpact"]
    assert city["totalGrams"] == sum(ga) + sum(gb)
    platform = (await gql.ok("{ platformImpact { totalGrams actions } }"))["platformImpact"]
    assert platform == {"totalGrams": sum(ga) + sum(gb) + go, "actions": 6}

    # Leaving the organisation keeps what was counted while a member; later actions no longer count.
    clock.advance(minutes=1)
    await gql.ok(op("community/LeaveOrganisation"), {"input": {"organisationId": org_id}}, token=a["token"])
    clock.advance(minutes=1)
    await approved_trip(gql, a, clock)
    org = (await gql.ok(op("challenges/OrganisationImpact"), {"id": org_id}, token=boss["token"]))["node"]
    assert org["impact"]["totalGrams"] == sum(ga)

    # The maintained aggregates are what a rebuild from the actions computes.
    async with services.db.read() as conn:
        before = {s: await service.impact_of(conn, *s) for s in
                  ((service.PLATFORM, ""), (service.CITY, "深圳"), (service.ORGANISATION, str(_pk(org_id))),
                   (service.HOUSEHOLD, str(_pk(household))))}
        totals_before = sorted(tuple(r) for r in await conn.execute(
            service.IT.select().with_only_columns(service.IT.c.board, service.IT.c.board_key, service.IT.c.period,
                                                  service.IT.c.entrant_id, service.IT.c.grams, service.IT.c.actions)))
    await services.db.write(lambda conn: service.rebuild(conn, tz=ZoneInfo("Asia/Shanghai")))
    async with services.db.read() as conn:
        after = {s: await service.impact_of(conn, *s) for s in before}
        totals_after = sorted(tuple(r) for r in await conn.execute(
            service.IT.select().with_only_columns(service.IT.c.board, service.IT.c.board_key, service.IT.c.period,
                                                  service.IT.c.entrant_id, service.IT.c.grams, service.IT.c.actions)))
    assert after == before and totals_after == totals_before


def _pk(gid: str) -> int:
    from jingtan_api.graphql.relay import from_global_id

    return int(from_global_id(gid)[1])


async def test_green_community_honour_and_medals(gql, services, admin, clock, settings):
    settings.impact.green_community_grams = 200
    boss, a = await member(gql, "社区主任 Director"), await member(gql, "居民 Resident")
    community = await organisation(gql, admin, boss, kind="COMMUNITY")
    company = await organisation(gql, admin, boss, kind="COMPANY", nameZh="公司 Co")
    await join_org(gql, boss, community, a)
    await join_org(gql, boss, company, a)
    grams = [await approved_trip(gql, a, clock, meters=10_000) for _ in range(10)]
    assert sum(grams) >= 1000
    honours = {}
    for org in (community, company):
        honours[org] = (await gql.ok(op("challenges/OrganisationImpact"), {"id": org}))["node"]["greenCommunity"]
    assert honours[community] == {"eligible": True, "awarded": True, "grams": sum(grams), "thresholdGrams": 200}
    assert honours[company]["awarded"] is False and honours[company]["eligible"] is False
    medals = [m["code"] for m in (await gql.ok(MY_IMPACT, token=a["token"]))["viewer"]["medals"]]
    assert medals == ["FIRST_ACTION", "CO2E_1KG", "ACTIONS_10"] or sorted(medals) == sorted(
        ["FIRST_ACTION", "ACTIONS_10", "CO2E_1KG"])
    catalogue = await gql.ok("{ medalCatalogue { code threshold } impactEquivalents { code gramsPerUnit source } }")
    assert {m["code"] for m in catalogue["medalCatalogue"]} >= {"CO2E_1T", "ACTIONS_100"}
    assert all(e["source"] for e in catalogue["impactEquivalents"])


async def test_bad_preferences_are_refused_and_write_nothing(gql, services):
    a = await member(gql)
    for city, code in (("深" * 65, "BAD_USER_INPUT"), ("a\x01b", "BAD_USER_INPUT")):
        before = await row_counts(services.db)
        payload = await set_prefs(gql, a, city=city)
        assert [e["code"] for e in payload["errors"]] == [code], payload
        assert await row_counts(services.db) == before
    anonymous = await gql(SET_PREFS, {"input": {"leaderboardOptOut": True}})
    assert anonymous["data"]["setImpactPreferences"]["errors"][0]["code"] == "UNAUTHENTICATED"
    ok = await set_prefs(gql, a, leaderboardOptOut=True)
    assert ok["preferences"] == {"city": "", "leaderboardOptOut": True}
    ok = await set_prefs(gql, a, city="  上海  ")
    assert ok["preferences"] == {"city": "上海", "leaderboardOptOut": True}


async def test_personal_impact_is_private(gql, services, clock):
    a, b = await member(gql), await member(gql)
    body = await gql("query($id: ID!) { node(id: $id) { ... on User { impact { totalGrams } } } }",
                     {"id": a["id"]}, token=b["token"])
    assert body["data"]["node"] is None or body["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    mine = await gql.ok("{ viewer { impact { totalGrams } } }", token=a["token"])
    assert mine["viewer"]["impact"]["totalGrams"] == 0


async def test_admin_dashboard_includes_empty_days(gql, services, admin, clock):
    a = await member(gql)
    g = await approved_trip(gql, a, clock)
    data = await gql.ok(op("admin/AdminDashboard"), {"from": "2026-05-29", "to": "2026-06-02"}, token=admin["token"])
    days = data["adminDashboard"]["days"]
    assert [d["day"] for d in days] == ["2026-05-29", "2026-05-30", "2026-05-31", "2026-06-01", "2026-06-02"]
    today = days[3]
    assert today["newMembers"] >= 2 and today["activeMembers"] == 1
    assert today["co2eGramsByType"] == [{"key": "transit", "value": g}]
    assert {"key": "APPROVED:transit", "value": 1} in today["actionsByStatusAndType"]
    assert today["points"]["issued"] > 0
    assert days[0]["newMembers"] == 0 and days[0]["co2eGramsByType"] == [] and days[0]["activeMembers"] == 0
    refused = await gql(op("admin/AdminDashboard"), {"from": "2026-06-02", "to": "2026-06-01"}, token=admin["token"])
    assert refused["errors"][0]["extensions"]["code"] == "INVALID_PERIOD"
    forbidden = await gql(op("admin/AdminDashboard"), {"from": "2026-06-01", "to": "2026-06-01"}, token=a["token"])
    assert forbidden["errors"][0]["extensions"]["code"] == "FORBIDDEN"


async def test_dashboard_is_exact_under_concurrent_donations_and_bounded(gql, services, admin, clock):
    import asyncio

    from community_helpers import key, ok
    from impact_helpers import StatementCounter

    boss = await member(gql, "老板 Boss")
    org_id = await organisation(gql, admin, boss)
    donors = [await member(gql, f"捐赠{i} D{i}", points=50, admin=admin) for i in range(22)]
    await asyncio.gather(*[
        ok(gql, "community/DonateToOrganisation", {"input": {"organisationId": org_id, "points": 10 + i,
                                                              "idempotencyKey": key()}}, token=d["token"])
        for i, d in enumerate(donors)
    ])
    counts = {}
    for days, start in ((3, "2026-05-30"), (60, "2026-04-03")):
        with StatementCounter(services) as counter:
            data = await gql.ok(op("admin/AdminDashboard"), {"from": start, "to": "2026-06-01"}, token=admin["token"])
        counts[days] = counter.count
        day = data["adminDashboard"]["days"][-1]
        assert len(data["adminDashboard"]["days"]) == days
        assert day["points"]["donated"] == sum(10 + i for i in range(22))
        assert day["points"]["issued"] == 22 * 50
    assert counts[3] == counts[60] and counts[60] <= 10, counts
