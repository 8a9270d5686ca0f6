"""Executes every operation of the community member app, the organisation-admin console and the platform
admin's community screens (schema/operations/{community,organisation}/ and admin/*Organisation*,
admin/*Retirement*) in one story, as the frontends would send them, and checks the results."""

from datetime import UTC, datetime, timedelta

import pytest
from community_helpers import OPERATIONS, PROFILE, key, member, op
from ledger_helpers import invariants
from sqlalchemy import insert

from jingtan_api.actions.models import Action
from jingtan_api.demo import seed_demo
from jingtan_api.graphql.relay import from_global_id
from jingtan_api.testing import FrozenClock

ADMIN_OPS = {"CreateOrganisation", "PendingOrganisationApplications", "ReviewOrganisationApplication",
             "RecordOffPlatformRetirement"}


def ours() -> set[tuple[str, str]]:
    names = {(area, p.stem) for area in ("community", "organisation") for p in (OPERATIONS / area).glob("*.graphql")}
    return names | {("admin", n) for n in ADMIN_OPS}


@pytest.fixture
def clock():
    return FrozenClock(datetime(2026, 12, 1, 8, 0, tzinfo=UTC))


async def test_community_consoles_story(gql, services, admin, clock):
    executed: set[tuple[str, str]] = set()

    async def run(name: str, variables: dict | None = None, *, token: str | None = None) -> dict:
        data = await gql.ok(op(name), variables or {}, token=token)
        for value in data.values():
            if isinstance(value, dict) and "errors" in value:
                assert value["errors"] == [], (name, value["errors"])
        area, stem = name.split("/")
        executed.add((area, stem))
        return data

    mum = await member(gql, "王芳 Wang Fang", points=800, admin=admin)
    son = await member(gql, "王小明 Wang Xiaoming", points=200, admin=admin)
    grandpa = await member(gql, "王大爷 Grandpa Wang")

    # --- member app: a household
    await run("community/CreateHousehold", {"input": {"name": "王家 The Wangs"}}, token=mum["token"])
    for joiner in (son, grandpa):
        code = (await run("community/CreateHouseholdInvite", {"input": {"validForHours": 24}}, token=mum["token"]))[
            "createHouseholdInvite"]["code"]
        await run("community/JoinHousehold", {"input": {"code": code}}, token=joiner["token"])
    spare = (await run("community/CreateHouseholdInvite", {"input": {}}, token=mum["token"]))["createHouseholdInvite"]
    revoked = await run("community/RevokeHouseholdInvite", {"input": {"inviteId": spare["invite"]["id"]}}, token=mum["token"])
    assert revoked["revokeHouseholdInvite"]["household"]["invites"]["totalCount"] == 0
    renamed = await run("community/RenameHousehold", {"input": {"name": "王家小院 The Wang courtyard"}}, token=mum["token"])
    assert renamed["renameHousehold"]["household"]["name"] == "王家小院 The Wang courtyard"
    await run("community/OpenHouseholdPool", token=mum["token"])
    moved = await run("community/TransferToHouseholdPool", {"input": {"points": 150, "idempotencyKey": key()}}, token=son["token"])
    assert moved["transferToHouseholdPool"]["household"]["poolBalance"] == 150
    out = await run("community/WithdrawFromHouseholdPool", {"input": {"points": 100, "idempotencyKey": key()}}, token=mum["token"])
    assert out["withdrawFromHouseholdPool"]["household"]["poolBalance"] == 50
    await run("community/RemoveHouseholdMember", {"input": {"userId": grandpa["id"]}}, token=mum["token"])
    await run("community/TransferHouseholdOwnership", {"input": {"userId": son["id"]}}, token=mum["token"])
    mine = (await run("community/MyHousehold", token=mum["token"]))["myHousehold"]
    assert mine["owner"]["id"] == son["id"] and mine["memberCount"] == 2 and mine["poolBalance"] == 50
    await run("community/LeaveHousehold", token=mum["token"])

    # --- organisations: applied and approved, created by the admin
    applied = await run("community/ApplyForOrganisation", {"input": {"profile": {**PROFILE, "kind": "COMMUNITY",
                                                                                 "nameZh": "阳光社区", "nameEn": "Sunshine Community"}}},
                        token=grandpa["token"])
    community_id = applied["applyForOrganisation"]["organisation"]["id"]
    pending = await run("admin/PendingOrganisationApplications", {"first": 10}, token=admin["token"])
    assert pending["organisations"]["totalCount"] == 1
    await run("admin/ReviewOrganisationApplication",
              {"input": {"organisationId": community_id, "approve": True, "reason": "资料齐全 documents complete"}},
              token=admin["token"])
    created = await run("admin/CreateOrganisation", {"input": {"profile": PROFILE, "adminUserId": mum["id"]}}, token=admin["token"])
    company_id = created["createOrganisation"]["organisation"]["id"]
    listed = await run("community/Organisations", {"kind": "COMPANY", "first": 10})
    assert [e["node"]["id"] for e in listed["organisations"]["edges"]] == [company_id]

    invite = await run("organisation/CreateOrganisationInvite", {"input": {"organisationId": company_id, "maxUses": 5}},
                       token=mum["token"])
    await run("community/JoinOrganisation", {"input": {"code": invite["createOrganisationInvite"]["code"]}}, token=son["token"])
    req = await run("community/RequestToJoinOrganisation", {"input": {"organisationId": company_id, "message": "你好 hello"}},
                    token=grandpa["token"])
    await run("organisation/DecideJoinRequest", {"input": {"requestId": req["requestToJoinOrganisation"]["request"]["id"],
                                                           "approve": True}}, token=mum["token"])
    again = await run("community/RequestToJoinOrganisation", {"input": {"organisationId": community_id}}, token=son["token"])
    withdrawn = await run("community/WithdrawJoinRequest",
                          {"input": {"requestId": again["requestToJoinOrganisation"]["request"]["id"]}}, token=son["token"])
    assert withdrawn["withdrawJoinRequest"]["request"]["status"] == "WITHDRAWN"
    updated = await run("organisation/UpdateOrganisation", {"input": {
        "organisationId": company_id, "descriptionEn": "Saves energy, and retires what it cannot save.",
        "descriptionZh": "节能，并注销无法避免的排放。"}}, token=mum["token"])
    assert updated["updateOrganisation"]["organisation"]["descriptionEn"].startswith("Saves energy")
    await run("organisation/SetOrganisationRole", {"input": {"organisationId": company_id, "userId": son["id"], "role": "ADMIN"}},
              token=mum["token"])
    await run("organisation/RemoveOrganisationMember", {"input": {"organisationId": company_id, "userId": grandpa["id"],
                                                                  "reason": "测试 test"}}, token=son["token"])
    await run("community/DonateToOrganisation", {"input": {"organisationId": company_id, "points": 700, "idempotencyKey": key()}},
              token=mum["token"])
    console = (await run("organisation/OrganisationConsole", {"id": company_id}, token=son["token"]))["organisation"]
    assert console["pointsBalance"] == 700 and console["members"]["totalCount"] == 2
    assert console["donations"]["totalCount"] == 1 and console["invites"]["totalCount"] == 1
    invite_id = console["invites"]["edges"][0]["node"]["id"]
    gone = await run("organisation/RevokeOrganisationInvite", {"input": {"inviteId": invite_id}}, token=son["token"])
    assert gone["revokeOrganisationInvite"]["organisation"]["invites"]["totalCount"] == 0
    mine = await run("community/MyOrganisations", token=son["token"])
    assert [o["viewerRole"] for o in mine["viewer"]["organisations"]] == ["ADMIN"]

    # --- retirements: the pool, a points-paid and an off-platform retirement, the public record
    now = clock()

    async def seed(conn):
        await conn.execute(insert(Action.__table__), [dict(
            user_id=int(from_global_id(grandpa["id"])[1]), plugin_code="transit", plugin_version="1.0.0", input="{}",
            evidence="{}", reasons="[]", factor_ids="[]", factors="[]", formula="seeded", status="APPROVED",
            occurred_from=now - timedelta(days=i + 2), occurred_to=now - timedelta(days=i + 1), grams_co2e=2000,
            points=200, created_at=now) for i in range(3)])

    await services.db.write(seed)
    pool = (await run("community/RetirementPool"))["retirementPool"]
    assert pool["availableGrams"] == 6000
    period = {"periodStart": "2026-01-01", "periodEnd": "2026-12-31"}
    retired = await run("organisation/RetireReductions", {"input": {
        "organisationId": company_id, "grams": 2500, "purposeZh": "2026年办公用电", "purposeEn": "2026 office electricity",
        **period, "idempotencyKey": key()}}, token=son["token"])
    record = retired["retireReductions"]["retirement"]
    assert (record["grams"], record["pointsPaid"]) == (2500, 250)
    await run("admin/RecordOffPlatformRetirement", {"input": {
        "organisationId": company_id, "grams": 1000, "purposeZh": "2026年差旅", "purposeEn": "2026 business travel",
        **period, "paymentReference": "INV-2026-0042", "paymentAmountFen": 5000, "idempotencyKey": key()}}, token=admin["token"])
    public = (await run("community/RetirementRecord", {"code": record["code"]}))["retirement"]
    assert public["items"]["totalCount"] == 2 and public["organisation"]["nameEn"] == PROFILE["nameEn"]
    history = await run("organisation/OrganisationRetirements", {"id": company_id, "first": 10})
    assert history["organisation"]["retirements"]["totalCount"] == 2

    await run("community/LeaveOrganisation", {"input": {"organisationId": company_id}}, token=mum["token"])
    await run("organisation/CloseOrganisation", {"input": {"organisationId": community_id, "reason": "合并 merged"}},
              token=grandpa["token"])

    assert executed == ours(), sorted(ours() - executed)


async def test_seed_demo_has_a_household_and_organisations(gql, services, clock):
    assert await seed_demo(services, if_empty=True) == 0
    login = await gql.ok("mutation($i: LoginInput!) { login(input: $i) { tokens { accessToken } } }",
                         {"i": {"identifier": "wangfang@demo.jingtan.org", "password": "Jingtan-demo-2026"}})
    token = login["login"]["tokens"]["accessToken"]
    mine = (await gql.ok(op("community/MyHousehold"), token=token))["myHousehold"]
    assert mine["name"] == "王家 The Wang family" and mine["memberCount"] == 2 and mine["poolBalance"] == 50
    orgs = await gql.ok(op("community/Organisations"), {"first": 10})
    assert {e["node"]["nameEn"] for e in orgs["organisations"]["edges"]} == {
        "Lvyuan Technology Co., Ltd.", "Sunshine Garden Community"}
    assert await invariants(services.db) == []
