"""Challenges (docs/impact.md "Challenges"): creation by organisation admins within the account's means,
live progress from approved actions, settlement paying qualifiers from the organisation's account in one
balanced transaction, idempotent under 24 concurrent settlements and two job runs; every refusal typed and
writing nothing (SQLite and PostgreSQL)."""

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import httpx
import pytest

from community_helpers import call, join_org, key, member, ok, op, organisation, refused
from impact_helpers import approved_trip
from ledger_helpers import balance_of, invariants, relogin
from live_server import LiveServer
from sqlalchemy import func, select

from jingtan_api.accounts.models import LedgerTransaction
from jingtan_api.challenges import jobs
from jingtan_api.challenges.service import CHALLENGE_REWARD

CREATE = "challenges/CreateChallenge"
SETTLE = "challenges/SettleChallenge"


async def funded_org(gql, admin, boss, points: int) -> str:
    org_id = await organisation(gql, admin, boss)
    if points:
        donor = await member(gql, "捐赠者 Donor", points=points, admin=admin)
        await ok(gql, "community/DonateToOrganisation",
                 {"input": {"organisationId": org_id, "points": points, "idempotencyKey": key()}}, token=donor["token"])
    return org_id


def challenge_input(org_id: str, clock, **over) -> dict:
    return {"organisationId": org_id, "nameZh": "绿色出行周", "nameEn": "Green commute week", "goalKind": "GRAMS",
            "goalValue": 200, "startsAt": clock().isoformat(), "endsAt": (clock() + timedelta(days=7)).isoformat(),
            "rewardPoints": 10, "maxRewarded": 3, **over}


async def test_bad_challenges_are_refused_and_write_nothing(gql, services, admin, clock):
    boss, outsider = await member(gql, "老板 Boss"), await member(gql, "外人 Outsider")
    org_id = await funded_org(gql, admin, boss, 50)
    await join_org(gql, boss, org_id, outsider)  # a plain member, not an admin
    now = clock()
    await refused(gql, services, CREATE, {"input": challenge_input(org_id, clock, endsAt=(now - timedelta(hours=1)).isoformat())},
                  token=boss["token"], code="CHALLENGE_ENDS_BEFORE_START")
    await refused(gql, services, CREATE, {"input": challenge_input(org_id, clock, endsAt=now.isoformat())},
                  token=boss["token"], code="CHALLENGE_ENDS_BEFORE_START")
    await refused(gql, services, CREATE, {"input": challenge_input(org_id, clock, startsAt=(now - timedelta(days=1)).isoformat())},
                  token=boss["token"], code="CHALLENGE_STARTS_IN_PAST")
    await refused(gql, services, CREATE, {"input": challenge_input(org_id, clock, rewardPoints=20, maxRewarded=3)},
                  token=boss["token"], code="REWARD_ABOVE_ACCOUNT")
    await refused(gql, services, CREATE, {"input": challenge_input(org_id, clock)}, token=outsider["token"], code="FORBIDDEN")
    await refused(gql, services, CREATE, {"input": challenge_input(org_id, clock, actionTypes=["teleport"])},
                  token=boss["token"], code="UNKNOWN_ACTION_TYPE")
    await refused(gql, services, CREATE, {"input": challenge_input(org_id, clock, goalValue=0)}, token=boss["token"],
                  code="BAD_USER_INPUT")
    await refused(gql, services, CREATE, {"input": challenge_input(org_id, clock, audience="CITY")}, token=boss["token"],
                  code="BAD_USER_INPUT")
    created = await ok(gql, CREATE, {"input": challenge_input(org_id, clock, rewardPoints=10, maxRewarded=5)},
                       token=boss["token"])
    cid = created["challenge"]["id"]
    await refused(gql, services, SETTLE, {"input": {"challengeId": cid}}, token=boss["token"], code="CHALLENGE_NOT_ENDED")
    await refused(gql, services, SETTLE, {"input": {"challengeId": cid}}, token=outsider["token"], code="FORBIDDEN")
    await refused(gql, services, "challenges/CancelChallenge", {"input": {"challengeId": cid, "reason": "测试 test"}},
                  token=outsider["token"], code="FORBIDDEN")
    cancelled = await ok(gql, "challenges/CancelChallenge", {"input": {"challengeId": cid, "reason": "改期 moved"}},
                         token=boss["token"])
    assert cancelled["challenge"]["status"] == "CANCELLED"
    await refused(gql, services, "challenges/CancelChallenge", {"input": {"challengeId": cid, "reason": "again 再次"}},
                  token=boss["token"], code="CHALLENGE_NOT_ACTIVE")


async def test_progress_settlement_and_rewards(gql, services, admin, clock):
    boss = await member(gql, "老板 Boss")
    org_id = await funded_org(gql, admin, boss, 25)
    a, b, c, outsider = [await member(gql, n) for n in ("甲 A", "乙 B", "丙 C", "外人 Outsider")]
    await join_org(gql, boss, org_id, a, b, c)
    cid = (await ok(gql, CREATE, {"input": challenge_input(org_id, clock, goalValue=250, rewardPoints=10, maxRewarded=2)},
                    token=boss["token"]))["challenge"]["id"]
    clock.advance(hours=2)
    await relogin(gql, boss, a, b, c, outsider)
    for who, trips in ((a, 2), (b, 3), (c, 1), (outsider, 3)):
        for i in range(trips):
            await approved_trip(gql, who, clock, minutes_ago=10 + 30 * i)
    live = (await gql.ok(op("member/Challenge"), {"id": cid, "first": 10}, token=a["token"]))["node"]
    assert live["participantCount"] == 3  # the outsider is not a member
    assert live["qualifiedCount"] == 2 and live["viewerProgress"]["qualifiedAt"] is not None
    progress = [n["progress"] for n in live["participants"]["nodes"]]
    assert progress == sorted(progress, reverse=True)
    before = {w["id"]: await balance_of(gql, w) for w in (a, b, c)}
    clock.advance(days=8)
    await relogin(gql, boss, a, b, c)
    # 24 concurrent settlements and two job runs: exactly one pays.
    results = await asyncio.gather(
        *[call(gql, SETTLE, {"input": {"challengeId": cid}}, token=boss["token"]) for _ in range(24)],
        jobs.settle_due(services, clock()), jobs.settle_due(services, clock()),
    )
    assert all(r["errors"] == [] for r in results[:24]), results
    settled = (await gql.ok(op("member/Challenge"), {"id": cid, "first": 10}, token=boss["token"]))["node"]
    assert (settled["status"], settled["rewarded"], settled["paidPoints"]) == ("SETTLED", 2, 20)
    after = {w["id"]: await balance_of(gql, w) for w in (a, b, c)}
    assert sorted(after[k] - before[k] for k in after) == [0, 10, 10]
    async with services.db.read() as conn:
        n = (await conn.execute(select(func.count()).select_from(LedgerTransaction.__table__)
                                .where(LedgerTransaction.__table__.c.kind == CHALLENGE_REWARD))).scalar_one()
    assert n == 1
    org = (await gql.ok(op("organisation/OrganisationConsole"), {"id": org_id}, token=boss["token"]))["organisation"]
    assert org["pointsBalance"] == 5
    assert await invariants(services.db) == []
    assert (await jobs.settle_due(services, clock()))["settled"] == 0


async def test_settlement_never_pays_more_than_the_account_holds(gql, services, admin, clock):
    boss = await member(gql, "老板 Boss")
    org_id = await funded_org(gql, admin, boss, 30)
    people = [await member(gql, f"成员{i} M{i}") for i in range(22)]
    await join_org(gql, boss, org_id, *people)
    # Two challenges each within the balance, together above it.
    ids = [(await ok(gql, CREATE, {"input": challenge_input(org_id, clock, goalKind="ACTIONS", goalValue=1,
                                                            rewardPoints=1, maxRewarded=30)}, token=boss["token"]))
           ["challenge"]["id"] for _ in range(2)]
    clock.advance(hours=1)
    await relogin(gql, boss, *people)
    await asyncio.gather(*[approved_trip(gql, p, clock, minutes_ago=10) for p in people])
    clock.advance(days=8)
    await relogin(gql, boss)
    results = await asyncio.gather(*[call(gql, SETTLE, {"input": {"challengeId": ids[i % 2]}}, token=boss["token"])
                                     for i in range(24)])
    assert all(r["errors"] == [] for r in results)
    paid = []
    for cid in ids:
        node = (await gql.ok(op("member/Challenge"), {"id": cid}, token=boss["token"]))["node"]
        paid.append(node["paidPoints"])
    assert sum(paid) == 30 and sorted(paid) == [8, 22]
    org = (await gql.ok(op("organisation/OrganisationConsole"), {"id": org_id}, token=boss["token"]))["organisation"]
    assert org["pointsBalance"] == 0
    assert await invariants(services.db) == []


def _post(url: str, query: str, variables: dict, token: str | None = None) -> dict:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    with httpx.Client(timeout=60) as http:
        r = http.post(url, json={"query": query, "variables": variables}, headers=headers)
        r.raise_for_status()
        return r.json()


async def test_two_server_processes_settle_once(gql, services, admin, clock, backend, db_url, tmp_path):
    """Two uvicorn processes on one PostgreSQL database, each running the challenges job every second,
    while 24 clients call settleChallenge on both: one CHALLENGE_REWARD transaction, balances exact."""
    if backend != "postgresql":
        pytest.skip("two server processes share one database on PostgreSQL")
    boss = await member(gql, "老板 Boss")
    org_id = await funded_org(gql, admin, boss, 100)
    people = [await member(gql, f"成员{i} M{i}") for i in range(5)]
    await join_org(gql, boss, org_id, *people)
    cid = (await ok(gql, CREATE, {"input": challenge_input(org_id, clock, goalKind="ACTIONS", goalValue=1,
                                                          rewardPoints=5, maxRewarded=10)}, token=boss["token"]))["challenge"]["id"]
    clock.advance(hours=1)
    await relogin(gql, boss, *people)
    for p in people:
        await approved_trip(gql, p, clock, minutes_ago=10)
    # The live servers run on the real clock, months after the frozen one: the challenge has ended there.
    env = {"JINGTAN_IMPACT__CHALLENGE_SETTLE_INTERVAL_SECONDS": "1"}
    login = "mutation($i: LoginInput!) { login(input: $i) { tokens { accessToken } } }"
    with LiveServer(db_url, tmp_path, env=env) as one, LiveServer(db_url, tmp_path, env=env) as two:
        token = _post(one.url, login, {"i": {"identifier": boss["email"], "password": boss["password"]}})[
            "data"]["login"]["tokens"]["accessToken"]
        settle = op(SETTLE)
        with ThreadPoolExecutor(24) as pool:
            results = list(pool.map(lambda i: _post((one if i % 2 else two).url, settle,
                                                    {"input": {"challengeId": cid}}, token), range(24)))
        assert all(r["data"]["settleChallenge"]["errors"] == [] for r in results), results
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            node = (await gql.ok(op("member/Challenge"), {"id": cid}, token=boss["token"]))["node"]
            if node["status"] == "SETTLED":
                break
            time.sleep(0.5)
        time.sleep(2.5)  # both jobs ran again after the settlement
    node = (await gql.ok(op("member/Challenge"), {"id": cid}, token=boss["token"]))["node"]
    assert (node["status"], node["rewarded"], node["paidPoints"]) == ("SETTLED", 5, 25)
    async with services.db.read() as conn:
        n = (await conn.execute(select(func.count()).select_from(LedgerTransaction.__table__)
                                .where(LedgerTransaction.__table__.c.kind == CHALLENGE_REWARD))).scalar_one()
    assert n == 1
    await relogin(gql, boss)
    org = (await gql.ok(op("organisation/OrganisationConsole"), {"id": org_id}, token=boss["token"]))["organisation"]
    assert org["pointsBalance"] == 75
    assert await invariants(services.db) == []


async def test_city_challenge_counts_the_city_and_hides_what_it_should(gql, services, admin, clock):
    boss = await member(gql, "老板 Boss")
    org_id = await funded_org(gql, admin, boss, 0)
    here, shy, elsewhere, outsider = [await member(gql, n) for n in ("本地 Local", "匿名 Shy", "外地 Away", "外人 Outsider")]
    for who, city in ((here, "深圳"), (shy, "深圳"), (elsewhere, "上海")):
        await gql.ok(op("member/SetImpactPreferences"), {"input": {"city": city}}, token=who["token"])
    await gql.ok(op("member/SetImpactPreferences"), {"input": {"leaderboardOptOut": True}}, token=shy["token"])
    city_cid = (await ok(gql, CREATE, {"input": challenge_input(org_id, clock, audience="CITY", city="深圳", goalKind="ACTIONS",
                                                               goalValue=2, rewardPoints=0, maxRewarded=0,
                                                               actionTypes=["transit"])}, token=boss["token"]))["challenge"]["id"]
    members_cid = (await ok(gql, CREATE, {"input": challenge_input(org_id, clock, rewardPoints=0, maxRewarded=0)},
                            token=boss["token"]))["challenge"]["id"]
    clock.advance(hours=1)
    await relogin(gql, boss, here, shy, elsewhere, outsider)
    for who in (here, shy, elsewhere):
        for i in range(2):
            await approved_trip(gql, who, clock, minutes_ago=10 + 25 * i)
    listed = await gql.ok(op("member/CityImpact"), {"city": "深圳"}, token=here["token"])
    (node,) = listed["cityChallenges"]["nodes"]
    assert node["id"] == city_cid and node["participantCount"] == 2 and node["viewerProgress"]["qualifiedAt"]
    detail = (await gql.ok(op("member/Challenge"), {"id": city_cid, "first": 10}, token=outsider["token"]))["node"]
    names = sorted((n["member"] or {}).get("displayName", "anonymous") for n in detail["participants"]["nodes"])
    assert names == ["anonymous", "本地 Local"]
    assert detail["viewerProgress"] is None
    # A members' challenge lists the organisation's members: not for outsiders.
    hidden = await gql(op("member/Challenge"), {"id": members_cid, "first": 10}, token=outsider["token"])
    assert hidden["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    seen = await gql.ok(op("member/Challenge"), {"id": members_cid, "first": 10}, token=boss["token"])
    assert seen["node"]["participants"]["totalCount"] == 0
