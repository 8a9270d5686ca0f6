"""redeemOffer: the happy path, races for the last items, per-member limits and idempotency."""

import asyncio
import uuid
from collections import Counter

import pytest
from offers_helpers import (
    REDEEM,
    balance,
    db_state,
    make_admin,
    make_member,
    make_merchant,
    make_offer,
    redeem,
)

from jingtan_api.app import create_app
from jingtan_api.redemptions.service import CODE_ALPHABET
from jingtan_api.testing import GraphQLClient


@pytest.fixture
async def admin(services, clock):
    return await make_admin(services, clock)


async def test_redeem_moves_points_stock_and_issues_code(gql, services, clock, admin):
    merchant = await make_merchant(gql, services, clock, admin)
    offer = await make_offer(gql, clock, merchant, pointsPrice=120, totalStock=5)
    member = await make_member(services, clock, points=500)

    result = await redeem(gql, member, offer["id"], quantity=2)
    assert result["userErrors"] == []
    r = result["redemption"]
    assert r["status"] == "PENDING" and r["quantity"] == 2 and r["points"] == 240
    assert len(r["code"]) == 10 and set(r["code"]) <= set(CODE_ALPHABET)
    assert result["account"]["balance"] == 260
    assert r["expiresAt"].startswith("2026-06-08")  # default: 7 days

    state = await db_state(services, offer["id"])
    assert state["stock"] == 3 and state["problems"] == []

    data = await gql.ok(
        """query($id: ID!) { merchant(id: $id) { pointsBalance stats { redeemedCount redeemedQuantity pointsReceived pendingCount } } }""",
        {"id": merchant["id"]},
        token=merchant["token"],
    )
    assert data["merchant"]["pointsBalance"] == 240
    assert data["merchant"]["stats"] == {"redeemedCount": 1, "redeemedQuantity": 2, "pointsReceived": 240, "pendingCount": 1}

    statement = await gql.ok(
        "{ viewer { account { entries(first: 5) { nodes { amount kind } } } redemptions(first: 5) { nodes { code offer { titleEn } } } } }",
        token=member["token"],
    )
    assert statement["viewer"]["account"]["entries"]["nodes"][0] == {"amount": -240, "kind": "REDEMPTION"}
    assert statement["viewer"]["redemptions"]["nodes"] == [{"code": r["code"], "offer": {"titleEn": "Oat latte"}}]


async def test_redeem_consumes_soonest_expiring_lots_first(gql, services, clock, admin):
    from offers_helpers import grant, reissue
    from sqlalchemy import select

    from jingtan_api.accounts.models import PointsLot

    merchant = await make_merchant(gql, services, clock, admin)
    offer = await make_offer(gql, clock, merchant, pointsPrice=150)
    member = await make_member(services, clock, points=100)  # expires first
    clock.advance(days=10)
    await grant(services, clock, member["pk"], 100)
    result = await redeem(gql, reissue(services, clock, member), offer["id"])
    assert result["userErrors"] == []
    L = PointsLot.__table__
    async with services.db.read() as conn:
        lots = (await conn.execute(select(L.c.remaining).order_by(L.c.expires_at))).scalars().all()
    assert lots == [0, 50]


async def test_fifty_members_race_for_the_last_ten_items(gql, services, clock, admin, settings):
    merchant = await make_merchant(gql, services, clock, admin)
    offer = await make_offer(gql, clock, merchant, pointsPrice=100, totalStock=10, perMemberLimit=1)
    members = [await make_member(services, clock, points=100) for _ in range(50)]

    # Two app instances on the same database, half of the members on each.
    second_app = create_app(settings, clock=clock)
    async with second_app.router.lifespan_context(second_app):
        second = GraphQLClient(second_app)
        try:
            clients = [gql if i % 2 else second for i in range(50)]
            results = await asyncio.gather(
                *(redeem(client, m, offer["id"]) for client, m in zip(clients, members, strict=True))
            )
        finally:
            await second.aclose()

    outcomes = Counter(r["userErrors"][0]["code"] if r["userErrors"] else "OK" for r in results)
    assert outcomes == {"OK": 10, "OUT_OF_STOCK": 40}
    state = await db_state(services, offer["id"])
    assert state["stock"] == 0 and state["redemptions"] == 10 and state["problems"] == []
    balances = [await balance(services, m["pk"]) for m in members]
    assert sorted(balances) == [0] * 10 + [100] * 40
    winners = {m["pk"] for m, r in zip(members, results, strict=True) if not r["userErrors"]}
    assert {m["pk"] for m, b in zip(members, balances, strict=True) if b == 0} == winners


async def test_one_member_twenty_parallel_redemptions_with_points_for_three(gql, services, clock, admin):
    merchant = await make_merchant(gql, services, clock, admin)
    offer = await make_offer(gql, clock, merchant, pointsPrice=100, totalStock=50, perMemberLimit=50)
    member = await make_member(services, clock, points=300)

    results = await asyncio.gather(*(redeem(gql, member, offer["id"]) for _ in range(20)))

    outcomes = Counter(r["userErrors"][0]["code"] if r["userErrors"] else "OK" for r in results)
    assert outcomes == {"OK": 3, "INSUFFICIENT_POINTS": 17}
    state = await db_state(services, offer["id"])
    assert state["stock"] == 47 and state["redemptions"] == 3 and state["problems"] == []
    assert await balance(services, member["pk"]) == 0


async def test_one_member_twenty_parallel_redemptions_cannot_exceed_the_limit(gql, services, clock, admin):
    merchant = await make_merchant(gql, services, clock, admin)
    offer = await make_offer(gql, clock, merchant, pointsPrice=10, totalStock=100, perMemberLimit=3)
    member = await make_member(services, clock, points=10_000)

    results = await asyncio.gather(*(redeem(gql, member, offer["id"]) for _ in range(20)))

    outcomes = Counter(r["userErrors"][0]["code"] if r["userErrors"] else "OK" for r in results)
    assert outcomes == {"OK": 3, "REDEMPTION_LIMIT_REACHED": 17}
    state = await db_state(services, offer["id"])
    assert state["stock"] == 97 and state["redemptions"] == 3 and state["problems"] == []
    assert await balance(services, member["pk"]) == 10_000 - 30


async def test_duplicate_idempotency_keys_give_one_redemption(gql, services, clock, admin):
    merchant = await make_merchant(gql, services, clock, admin)
    offer = await make_offer(gql, clock, merchant, pointsPrice=100, totalStock=10)
    member = await make_member(services, clock, points=1000)
    key = uuid.uuid4().hex

    results = await asyncio.gather(*(redeem(gql, member, offer["id"], quantity=2, key=key) for _ in range(10)))

    assert all(r["userErrors"] == [] for r in results)
    assert len({r["redemption"]["id"] for r in results}) == 1
    assert sum(not r["replayed"] for r in results) == 1
    state = await db_state(services, offer["id"])
    assert state["stock"] == 8 and state["redemptions"] == 1 and state["problems"] == []
    assert await balance(services, member["pk"]) == 800

    # Same key, different input: a typed error, nothing written.
    reused = await redeem(gql, member, offer["id"], quantity=1, key=key)
    assert reused["userErrors"][0]["code"] == "IDEMPOTENCY_KEY_REUSED" and reused["redemption"] is None
    assert (await db_state(services, offer["id"]))["redemptions"] == 1
    assert await balance(services, member["pk"]) == 800


async def test_anonymous_cannot_redeem(gql, services, clock, admin):
    merchant = await make_merchant(gql, services, clock, admin)
    offer = await make_offer(gql, clock, merchant)
    data = await gql.ok(REDEEM, {"input": {"offerId": offer["id"], "quantity": 1, "idempotencyKey": "k-1"}})
    assert data["redeemOffer"]["userErrors"][0]["code"] == "UNAUTHENTICATED"
    assert (await db_state(services, offer["id"]))["redemptions"] == 0


async def test_confirm_and_cancel_racing_on_the_same_codes(gql, services, clock, admin):
    from offers_helpers import CANCEL, CONFIRM

    merchant = await make_merchant(gql, services, clock, admin)
    offer = await make_offer(gql, clock, merchant, pointsPrice=10, totalStock=10, perMemberLimit=10)
    member = await make_member(services, clock, points=1000)
    redemptions = [(await redeem(gql, member, offer["id"]))["redemption"] for _ in range(8)]

    calls = []
    for r in redemptions:
        calls.append(gql.ok(CONFIRM, {"input": {"code": r["code"]}}, token=merchant["token"]))
        calls.append(gql.ok(CANCEL, {"input": {"redemptionId": r["id"]}}, token=member["token"]))
    results = await asyncio.gather(*calls)

    for confirm, cancel in zip(results[::2], results[1::2], strict=True):
        wins = [not confirm["confirmRedemption"]["userErrors"], not cancel["cancelRedemption"]["userErrors"]]
        assert wins.count(True) == 1, (confirm, cancel)
    cancelled = sum(not r["cancelRedemption"]["userErrors"] for r in results[1::2])
    state = await db_state(services, offer["id"])
    assert state["problems"] == [] and state["stock"] == 2 + cancelled
    assert await balance(services, member["pk"]) == 1000 - 10 * (8 - cancelled)
