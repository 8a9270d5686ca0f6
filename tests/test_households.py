"""Households (docs/community.md "Households"): create, invite, join, leave, remove, transfer ownership,
membership intervals, the shared pool; every refusal is typed and writes nothing (SQLite and PostgreSQL)."""

import asyncio

from community_helpers import call, household_with_members, key, member, ok, op, refused
from ledger_helpers import balance_of, invariants

from jingtan_api.graphql.relay import from_global_id
from jingtan_api.households import service as households


def pk(gid: str) -> int:
    return int(from_global_id(gid)[1])


async def test_household_lifecycle_and_member_intervals(gql, services, clock):
    owner = await member(gql, "王芳 Wang Fang")
    son = await member(gql, "王小明 Wang Xiaoming")
    hid = await household_with_members(gql, owner, son, name="王家 The Wangs")
    mine = await gql.ok(op("community/MyHousehold"), token=son["token"])
    assert mine["myHousehold"]["memberCount"] == 2
    assert [e["node"]["role"] for e in mine["myHousehold"]["members"]["edges"]] == ["OWNER", "MEMBER"]
    assert mine["myHousehold"]["owner"]["id"] == owner["id"]

    clock.advance(minutes=3)
    # The owner cannot leave while others remain; transfers, then leaves.
    payload = await refused(gql, services, "community/LeaveHousehold", None, token=owner["token"], code="OWNER_MUST_TRANSFER")
    assert "transfer" in payload["errors"][0]["message"].lower()
    await ok(gql, "community/TransferHouseholdOwnership", {"input": {"userId": son["id"]}}, token=owner["token"])
    await ok(gql, "community/LeaveHousehold", token=owner["token"])
    assert (await gql.ok(op("community/MyHousehold"), token=owner["token"]))["myHousehold"] is None
    async with services.db.read() as conn:
        intervals = await households.member_intervals(conn, pk(hid))
        assert [(i.user_id, i.left_at is None) for i in intervals] == [(pk(owner["id"]), False), (pk(son["id"]), True)]
        assert intervals[0].left_at == clock()
        assert await households.household_of(conn, pk(owner["id"])) is None
        assert await households.is_owner(conn, pk(hid), pk(son["id"]))
    # The last member leaving dissolves the household.
    await ok(gql, "community/LeaveHousehold", token=son["token"])
    async with services.db.read() as conn:
        assert (await households.household_row(conn, pk(hid))).status == "DISSOLVED"


async def test_one_household_per_member(gql, services):
    a, b = await member(gql), await member(gql)
    await household_with_members(gql, a)
    await household_with_members(gql, b)
    code = (await ok(gql, "community/CreateHouseholdInvite", {"input": {}}, token=a["token"]))["code"]
    await refused(gql, services, "community/JoinHousehold", {"input": {"code": code}}, token=b["token"],
                  code="ALREADY_IN_HOUSEHOLD")
    await refused(gql, services, "community/CreateHousehold", {"input": {"name": "第二个 Second"}}, token=a["token"],
                  code="ALREADY_IN_HOUSEHOLD")


async def test_invite_codes_are_single_use_and_expire(gql, services, clock):
    owner, first, second = [await member(gql) for _ in range(3)]
    await household_with_members(gql, owner)
    code = (await ok(gql, "community/CreateHouseholdInvite", {"input": {"validForHours": 2}}, token=owner["token"]))["code"]
    await ok(gql, "community/JoinHousehold", {"input": {"code": code.lower().replace("-", " ")}}, token=first["token"])
    await refused(gql, services, "community/JoinHousehold", {"input": {"code": code}}, token=second["token"], code="INVITE_USED")
    expiring = (await ok(gql, "community/CreateHouseholdInvite", {"input": {"validForHours": 2}}, token=owner["token"]))["code"]
    clock.advance(hours=2)
    late = await member(gql)  # registered now: a fresh access token
    owner_token = (await gql.ok(
        "mutation($i: LoginInput!) { login(input: $i) { tokens { accessToken } } }",
        {"i": {"identifier": owner["email"], "password": owner["password"]}},
    ))["login"]["tokens"]["accessToken"]
    owner = {**owner, "token": owner_token}
    await refused(gql, services, "community/JoinHousehold", {"input": {"code": expiring}}, token=late["token"],
                  code="INVITE_EXPIRED")
    for bad in ("", "not-a-code", "AAAA-AAAA-AAA0", "Z" * 500):
        await refused(gql, services, "community/JoinHousehold", {"input": {"code": bad}}, token=late["token"],
                      code="INVALID_INVITE")
    await refused(gql, services, "community/JoinHousehold", {"input": {"code": "2345-6789-ABCD"}}, token=late["token"],
                  code="INVALID_INVITE")
    for hours in (0, -1, 24 * 365):
        await refused(gql, services, "community/CreateHouseholdInvite", {"input": {"validForHours": hours}},
                      token=owner["token"], code="BAD_USER_INPUT")


async def test_concurrent_joins_with_one_code_admit_one(gql, services):
    owner = await member(gql)
    await household_with_members(gql, owner)
    code = (await ok(gql, "community/CreateHouseholdInvite", {"input": {}}, token=owner["token"]))["code"]
    joiners = [await member(gql) for _ in range(20)]
    results = await asyncio.gather(*(call(gql, "community/JoinHousehold", {"input": {"code": code}}, token=j["token"])
                                     for j in joiners))
    codes = sorted(r["errors"][0]["code"] if r["errors"] else "ok" for r in results)
    assert codes == ["INVITE_USED"] * 19 + ["ok"]
    async with services.db.read() as conn:
        assert len(await households.current_member_ids(conn, (await households.household_of(conn, pk(owner["id"]))))) == 2


async def test_one_member_joining_two_households_at_once_joins_one(gql, services):
    owners = [await member(gql) for _ in range(2)]
    codes = []
    for o in owners:
        await household_with_members(gql, o)
        codes.append((await ok(gql, "community/CreateHouseholdInvite", {"input": {}}, token=o["token"]))["code"])
    joiner = await member(gql)
    results = await asyncio.gather(*(call(gql, "community/JoinHousehold", {"input": {"code": c}}, token=joiner["token"])
                                     for c in codes))
    assert sorted(r["errors"][0]["code"] if r["errors"] else "ok" for r in results) == ["ALREADY_IN_HOUSEHOLD", "ok"]


async def test_remove_members_but_never_the_owner(gql, services):
    owner, kid, stranger = await member(gql), await member(gql), await member(gql)
    await household_with_members(gql, owner, kid)
    await refused(gql, services, "community/RemoveHouseholdMember", {"input": {"userId": owner["id"]}},
                  token=owner["token"], code="CANNOT_REMOVE_OWNER")
    await refused(gql, services, "community/RemoveHouseholdMember", {"input": {"userId": owner["id"]}},
                  token=kid["token"], code="FORBIDDEN")
    await refused(gql, services, "community/RemoveHouseholdMember", {"input": {"userId": stranger["id"]}},
                  token=owner["token"], code="NOT_HOUSEHOLD_MEMBER")
    await refused(gql, services, "community/TransferHouseholdOwnership", {"input": {"userId": stranger["id"]}},
                  token=owner["token"], code="NOT_HOUSEHOLD_MEMBER")
    await refused(gql, services, "community/LeaveHousehold", None, token=stranger["token"], code="NOT_HOUSEHOLD_MEMBER")
    payload = await ok(gql, "community/RemoveHouseholdMember", {"input": {"userId": kid["id"]}}, token=owner["token"])
    assert payload["household"]["memberCount"] == 1
    assert (await gql.ok(op("community/MyHousehold"), token=kid["token"]))["myHousehold"] is None


async def test_a_household_is_private_to_its_members(gql, services, admin):
    owner, outsider = await member(gql), await member(gql)
    hid = await household_with_members(gql, owner)
    q = "query($id: ID!) { node(id: $id) { ... on Household { id name } } }"
    assert (await gql.ok(q, {"id": hid}, token=outsider["token"]))["node"] is None
    assert (await gql.ok(q, {"id": hid}, token=owner["token"]))["node"]["id"] == hid
    assert (await gql.ok(q, {"id": hid}, token=admin["token"]))["node"]["id"] == hid
    other = "query($id: ID!) { node(id: $id) { ... on User { household { id } } } }"
    assert (await gql.ok(other, {"id": owner["id"]}, token=outsider["token"]))["node"] is None
    seen = await gql.ok(other, {"id": owner["id"]}, token=admin["token"])
    assert seen["node"]["household"]["id"] == hid


async def test_shared_pool_transfers_are_idempotent_and_bounded(gql, services, admin):
    owner = await member(gql, points=500, admin=admin)
    kid = await member(gql, points=100, admin=admin)
    await household_with_members(gql, owner, kid)
    await refused(gql, services, "community/TransferToHouseholdPool", {"input": {"points": 10, "idempotencyKey": key()}},
                  token=kid["token"], code="POOL_NOT_OPEN")
    await refused(gql, services, "community/OpenHouseholdPool", None, token=kid["token"], code="FORBIDDEN")
    await ok(gql, "community/OpenHouseholdPool", token=owner["token"])
    k = key()
    first = await ok(gql, "community/TransferToHouseholdPool", {"input": {"points": 60, "idempotencyKey": k}}, token=kid["token"])
    again = await ok(gql, "community/TransferToHouseholdPool", {"input": {"points": 60, "idempotencyKey": k}}, token=kid["token"])
    assert (first["replayed"], again["replayed"]) == (False, True)
    assert again["transfer"]["id"] == first["transfer"]["id"] and again["household"]["poolBalance"] == 60
    await refused(gql, services, "community/TransferToHouseholdPool", {"input": {"points": 61, "idempotencyKey": k}},
                  token=kid["token"], code="IDEMPOTENCY_KEY_REUSED")
    await refused(gql, services, "community/TransferToHouseholdPool", {"input": {"points": 41, "idempotencyKey": key()}},
                  token=kid["token"], code="INSUFFICIENT_POINTS")
    for bad in (0, -5):
        await refused(gql, services, "community/TransferToHouseholdPool", {"input": {"points": bad, "idempotencyKey": key()}},
                      token=kid["token"], code="BAD_USER_INPUT")
    # Only the owner spends the pool, never more than it holds.
    await refused(gql, services, "community/WithdrawFromHouseholdPool", {"input": {"points": 10, "idempotencyKey": key()}},
                  token=kid["token"], code="FORBIDDEN")
    await refused(gql, services, "community/WithdrawFromHouseholdPool", {"input": {"points": 61, "idempotencyKey": key()}},
                  token=owner["token"], code="INSUFFICIENT_POINTS")
    out = await ok(gql, "community/WithdrawFromHouseholdPool", {"input": {"points": 50, "idempotencyKey": key()}},
                   token=owner["token"])
    assert out["household"]["poolBalance"] == 10 and out["transfer"]["direction"] == "FROM_POOL"
    assert await balance_of(gql, owner) == 550 and await balance_of(gql, kid) == 40
    # Dissolving with points in the pool is refused.
    await ok(gql, "community/RemoveHouseholdMember", {"input": {"userId": kid["id"]}}, token=owner["token"])
    await refused(gql, services, "community/LeaveHousehold", None, token=owner["token"], code="POOL_NOT_EMPTY")
    assert await invariants(services.db) == []


async def test_concurrent_pool_transfers_never_overdraw(gql, services, admin):
    owner = await member(gql, points=100, admin=admin)
    await household_with_members(gql, owner)
    await ok(gql, "community/OpenHouseholdPool", token=owner["token"])
    results = await asyncio.gather(*(
        call(gql, "community/TransferToHouseholdPool", {"input": {"points": 9, "idempotencyKey": key()}}, token=owner["token"])
        for _ in range(24)
    ))
    moved = sum(9 for r in results if not r["errors"])
    assert {r["errors"][0]["code"] for r in results if r["errors"]} <= {"INSUFFICIENT_POINTS"}
    assert moved == 99 and await balance_of(gql, owner) == 1
    assert await invariants(services.db) == []


async def test_bad_names_are_refused(gql, services):
    m = await member(gql)
    for bad in ("", "   ", "x" * 61, "a\u0007b"):
        await refused(gql, services, "community/CreateHousehold", {"input": {"name": bad}}, token=m["token"], code="BAD_USER_INPUT")
