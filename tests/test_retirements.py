"""Retiring verified reductions (docs/community.md "Retiring reductions"): a company buys approved,
un-retired CO2e from the platform's pool and retires it against a purpose; the record is public and
verifiable; no gram is ever retired twice, also under 20+ concurrent clients (SQLite and PostgreSQL) and
two server processes (PostgreSQL). Every refusal is typed and writes nothing."""

import asyncio
import hashlib
import json
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from community_helpers import call, key, member, ok, op, organisation, refused
from ledger_helpers import invariants
from live_server import LiveServer
from sqlalchemy import insert

from jingtan_api.actions.models import Action
from jingtan_api.graphql.relay import from_global_id, to_global_id
from jingtan_api.retirements import service as retirements
from jingtan_api.testing import FrozenClock

PERIOD = {"periodStart": "2026-01-01", "periodEnd": "2026-12-31"}
PURPOSE = {"purposeZh": "2026年办公用电", "purposeEn": "2026 office electricity"}


@pytest.fixture
def clock() -> FrozenClock:
    # The live servers check tokens against the real clock, so the in-process setup issues them "now".
    return FrozenClock(datetime.now(UTC).replace(microsecond=0))


def pk(gid: str) -> int:
    return int(from_global_id(gid)[1])


async def seed_actions(services, clock, user_id: int, grams: list[int], *, status: str = "APPROVED",
                       code: str = "transit", version: str = "1.0.0") -> list[int]:
    """Approved actions with recorded grams, as the actions domain stores them (the pool's supply)."""
    now = clock()
    rows = [dict(user_id=user_id, plugin_code=code, plugin_version=version, input="{}", evidence="{}", reasons="[]",
                 factor_ids="[]", factors="[]", formula="seeded for the test",
                 occurred_from=now - timedelta(days=30, hours=i), occurred_to=now - timedelta(days=30, hours=i) + timedelta(minutes=30),
                 status=status, grams_co2e=g, points=g // 10, created_at=now) for i, g in enumerate(grams)]

    async def work(conn):
        return [(await conn.execute(insert(Action.__table__).values(**r).returning(Action.__table__.c.id))).scalar_one()
                for r in rows]

    return await services.db.write(work)


async def retire_ok(gql, token, org_id, **fields) -> dict:
    payload = await ok(gql, "organisation/RetireReductions",
                       {"input": {"organisationId": org_id, "idempotencyKey": key(), **PURPOSE, **PERIOD, **fields}},
                       token=token)
    return payload["retirement"]


async def no_gram_twice(services) -> None:
    async with services.db.read() as conn:
        assert await retirements.check_invariants(conn) == []
    assert await invariants(services.db) == []


@pytest.fixture
async def company(gql, admin, services):
    """A company with an admin holding 10,000 donated points."""
    boss = await member(gql, "财务 Finance", points=10_000, admin=admin)
    org_id = await organisation(gql, admin, boss)
    await ok(gql, "community/DonateToOrganisation",
             {"input": {"organisationId": org_id, "points": 10_000, "idempotencyKey": key()}}, token=boss["token"])
    return {"id": org_id, "boss": boss}


async def test_retire_from_the_pool_public_record_and_digest(gql, services, clock, admin, company):
    walker = await member(gql)
    ids = await seed_actions(services, clock, pk(walker["id"]), [400, 700, 900])
    await seed_actions(services, clock, pk(walker["id"]), [5000], status="NEEDS_REVIEW")  # not in the pool
    pool = (await gql.ok(op("community/RetirementPool")))["retirementPool"]
    assert (pool["approvedGrams"], pool["availableGrams"], pool["pointsPerKg"]) == (2000, 2000, 100)
    r = await retire_ok(gql, company["boss"]["token"], company["id"], grams=1000)
    assert (r["grams"], r["pointsPaid"]) == (1000, 100)  # 100 points per kg
    assert r["methodologies"] == [{"code": "transit", "version": "1.0.0", "grams": 1000}]

    record = (await gql.ok(op("community/RetirementRecord"), {"code": r["code"].lower()}))["retirement"]  # no login
    items = [e["node"] for e in record["items"]["edges"]]
    assert [(pk(i["actionId"]), i["gramFrom"], i["gramTo"]) for i in items] == [(ids[0], 0, 400), (ids[1], 0, 600)]
    assert record["organisation"]["nameZh"] == "绿源科技有限公司" and record["purposeEn"] == PURPOSE["purposeEn"]
    # Anyone recomputes the digest from the public record.
    body = {"code": record["code"], "organisationId": pk(record["organisation"]["id"]), "grams": record["grams"],
            "periodStart": record["periodStart"], "periodEnd": record["periodEnd"], "purposeZh": record["purposeZh"],
            "purposeEn": record["purposeEn"],
            "items": [[pk(i["actionId"]), i["gramFrom"], i["gramTo"]] for i in items]}
    canonical = json.dumps(body, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    assert hashlib.sha256(canonical.encode()).hexdigest() == record["digest"]

    # The next retirement continues where the first stopped: action 2 from gram 600.
    r2 = await retire_ok(gql, company["boss"]["token"], company["id"], grams=500)
    record2 = (await gql.ok(op("community/RetirementRecord"), {"code": r2["code"]}))["retirement"]
    assert [(pk(e["node"]["actionId"]), e["node"]["gramFrom"], e["node"]["gramTo"]) for e in record2["items"]["edges"]] == [
        (ids[1], 600, 700), (ids[2], 0, 400)]
    listed = await gql.ok(op("organisation/OrganisationRetirements"), {"id": company["id"], "first": 10})
    assert [e["node"]["code"] for e in listed["organisation"]["retirements"]["edges"]] == [r2["code"], r["code"]]
    console = await gql.ok(op("organisation/OrganisationConsole"), {"id": company["id"]}, token=company["boss"]["token"])
    assert console["organisation"]["pointsBalance"] == 10_000 - 100 - 50
    assert (await gql.ok(op("community/RetirementRecord"), {"code": "JTR-2026-NOPE"}))["retirement"] is None
    await no_gram_twice(services)


async def test_retire_named_actions_and_off_platform(gql, services, clock, admin, company):
    walker = await member(gql)
    ids = await seed_actions(services, clock, pk(walker["id"]), [300, 800])
    r = await retire_ok(gql, company["boss"]["token"], company["id"],
                        actions=[{"actionId": to_global_id("Action", ids[0])}, {"actionId": to_global_id("Action", ids[1]), "grams": 200}])
    assert r["grams"] == 500
    off = await ok(gql, "admin/RecordOffPlatformRetirement", {"input": {
        "organisationId": company["id"], "grams": 600, **PURPOSE, **PERIOD, "paymentReference": "发票 INV-2026-0042",
        "paymentAmountFen": 1200, "idempotencyKey": key()}}, token=admin["token"])
    assert (off["retirement"]["paymentMethod"], off["retirement"]["pointsPaid"], off["retirement"]["grams"]) == ("OFF_PLATFORM", 0, 600)
    assert (await gql.ok(op("community/RetirementPool")))["retirementPool"]["availableGrams"] == 0
    await refused(gql, services, "admin/RecordOffPlatformRetirement", {"input": {
        "organisationId": company["id"], "grams": 1, **PURPOSE, **PERIOD, "paymentReference": "INV-1",
        "idempotencyKey": key()}}, token=company["boss"]["token"], code="FORBIDDEN")
    await no_gram_twice(services)


async def test_bad_retirements_are_refused_and_write_nothing(gql, services, clock, admin, company):
    walker = await member(gql)
    ids = await seed_actions(services, clock, pk(walker["id"]), [1000])
    pending = await seed_actions(services, clock, pk(walker["id"]), [500], status="NEEDS_REVIEW")
    boss = company["boss"]
    base = {"organisationId": company["id"], **PURPOSE, **PERIOD}

    async def bad(code: str, token: str = boss["token"], **fields):
        await refused(gql, services, "organisation/RetireReductions",
                      {"input": {**base, "idempotencyKey": key(), **fields}}, token=token, code=code)

    await bad("INSUFFICIENT_POOL", grams=1001)
    await bad("BAD_USER_INPUT", grams=0)
    await bad("BAD_USER_INPUT")  # neither grams nor actions
    await bad("BAD_USER_INPUT", grams=10, actions=[{"actionId": to_global_id("Action", ids[0])}])
    await bad("ACTION_NOT_RETIRABLE", actions=[{"actionId": to_global_id("Action", pending[0])}])
    await bad("ALREADY_RETIRED", actions=[{"actionId": to_global_id("Action", ids[0]), "grams": 1001}])
    await bad("BAD_USER_INPUT", actions=[{"actionId": to_global_id("Action", ids[0])}] * 2)
    await bad("INVALID_PERIOD", grams=10, periodStart="2026-12-31", periodEnd="2026-01-01")
    await bad("BAD_USER_INPUT", grams=10, purposeZh="x")
    outsider = await member(gql)
    await bad("FORBIDDEN", token=outsider["token"], grams=10)
    school_admin = await member(gql)
    school = await organisation(gql, admin, school_admin, kind="SCHOOL", nameZh="实验小学")
    await refused(gql, services, "organisation/RetireReductions",
                  {"input": {**base, "organisationId": school, "grams": 10, "idempotencyKey": key()}},
                  token=school_admin["token"], code="NOT_A_COMPANY")
    poor_boss = await member(gql)
    poor = await organisation(gql, admin, poor_boss, nameZh="穷公司", nameEn="Poor Co.")
    await refused(gql, services, "organisation/RetireReductions",
                  {"input": {**base, "organisationId": poor, "grams": 1000, "idempotencyKey": key()}},
                  token=poor_boss["token"], code="INSUFFICIENT_POINTS")
    # The same action retired twice: the second time nothing is left.
    await retire_ok(gql, boss["token"], company["id"], actions=[{"actionId": to_global_id("Action", ids[0])}])
    await bad("ALREADY_RETIRED", actions=[{"actionId": to_global_id("Action", ids[0])}])
    await ok(gql, "organisation/CloseOrganisation", {"input": {"organisationId": company["id"], "reason": "关闭 closing"}},
             token=boss["token"])
    await seed_actions(services, clock, pk(walker["id"]), [100])
    await refused(gql, services, "organisation/RetireReductions",
                  {"input": {**base, "grams": 10, "idempotencyKey": key()}}, token=admin["token"], code="ORGANISATION_CLOSED")
    await no_gram_twice(services)


async def test_idempotent_retirement(gql, services, clock, company):
    walker = await member(gql)
    await seed_actions(services, clock, pk(walker["id"]), [1000])
    k = key()
    variables = {"input": {"organisationId": company["id"], "grams": 300, "idempotencyKey": k, **PURPOSE, **PERIOD}}
    first = await ok(gql, "organisation/RetireReductions", variables, token=company["boss"]["token"])
    again = await ok(gql, "organisation/RetireReductions", variables, token=company["boss"]["token"])
    assert (first["replayed"], again["replayed"]) == (False, True)
    assert again["retirement"]["code"] == first["retirement"]["code"]
    variables["input"]["grams"] = 301
    await refused(gql, services, "organisation/RetireReductions", variables, token=company["boss"]["token"],
                  code="IDEMPOTENCY_KEY_REUSED")
    assert (await gql.ok(op("community/RetirementPool")))["retirementPool"]["availableGrams"] == 700


CLIENTS = 24


async def test_concurrent_retirements_never_retire_a_gram_twice(gql, services, clock, admin, company):
    walker = await member(gql)
    ids = await seed_actions(services, clock, pk(walker["id"]), [250] * 20)  # 5,000 g
    results = await asyncio.gather(*(
        call(gql, "organisation/RetireReductions",
             {"input": {"organisationId": company["id"], "grams": 300, "idempotencyKey": key(), **PURPOSE, **PERIOD}},
             token=company["boss"]["token"])
        for _ in range(CLIENTS)
    ))
    wins = [r for r in results if not r["errors"]]
    assert {r["errors"][0]["code"] for r in results if r["errors"]} == {"INSUFFICIENT_POOL"}
    assert len(wins) == 5000 // 300
    # The same actions named by 24 clients at once: exactly one retires them.
    more = await seed_actions(services, clock, pk(walker["id"]), [100, 100])
    named = [{"actionId": to_global_id("Action", a)} for a in more]
    results = await asyncio.gather(*(
        call(gql, "organisation/RetireReductions",
             {"input": {"organisationId": company["id"], "actions": named, "idempotencyKey": key(), **PURPOSE, **PERIOD}},
             token=company["boss"]["token"])
        for _ in range(CLIENTS)
    ))
    assert sorted(r["errors"][0]["code"] if r["errors"] else "ok" for r in results) == ["ALREADY_RETIRED"] * (CLIENTS - 1) + ["ok"]
    assert ids
    await no_gram_twice(services)


RETIRE_RAW = op("organisation/RetireReductions")


def _post(url: str, token: str, variables: dict) -> dict:
    with httpx.Client(timeout=60) as http:
        r = http.post(url, json={"query": RETIRE_RAW, "variables": variables}, headers={"Authorization": f"Bearer {token}"})
        r.raise_for_status()
        return r.json()["data"]["retireReductions"]


async def test_two_server_processes_retire_each_gram_once(gql, services, clock, admin, company, backend, db_url, tmp_path):
    if backend != "postgresql":
        pytest.skip("two server processes share one database on PostgreSQL")
    walker = await member(gql)
    await seed_actions(services, clock, pk(walker["id"]), [300] * 10)  # 3,000 g
    token = company["boss"]["token"]
    with LiveServer(db_url, tmp_path) as one, LiveServer(db_url, tmp_path) as two:
        jobs = [((one if i % 2 else two).url, {"input": {"organisationId": company["id"], "grams": 250,
                                                         "idempotencyKey": key(), **PURPOSE, **PERIOD}}) for i in range(CLIENTS)]
        with ThreadPoolExecutor(CLIENTS) as pool:
            results = list(pool.map(lambda job: _post(job[0], token, job[1]), jobs))
    wins = [r for r in results if not r["errors"]]
    assert {r["errors"][0]["code"] for r in results if r["errors"]} == {"INSUFFICIENT_POOL"}
    assert len(wins) == 3000 // 250
    await no_gram_twice(services)
