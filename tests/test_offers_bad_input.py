"""Every refused input: the error code, and that nothing was written."""

from datetime import timedelta

import pytest
from offers_helpers import (
    CREATE_MERCHANT,
    CREATE_OFFER,
    PROFILE,
    balance,
    db_state,
    make_admin,
    make_member,
    make_merchant,
    make_offer,
    redeem,
    reissue,
)
from sqlalchemy import func, select

from jingtan_api.merchants.models import Merchant
from jingtan_api.offers.models import Offer


@pytest.fixture
async def admin(services, clock):
    return await make_admin(services, clock)


@pytest.fixture
async def merchant(gql, services, clock, admin):
    return await make_merchant(gql, services, clock, admin)


async def _refused(gql, services, member, offer, *, expected: str, quantity: int = 1, stock: int | None = None):
    before_balance = await balance(services, member["pk"])
    before = await db_state(services, offer["id"])
    result = await redeem(gql, member, offer["id"], quantity=quantity)
    assert result["redemption"] is None
    assert [e["code"] for e in result["userErrors"]] == [expected], result["userErrors"]
    after = await db_state(services, offer["id"])
    assert after == before and after["problems"] == []
    assert await balance(services, member["pk"]) == before_balance
    if stock is not None:
        assert after["stock"] == stock
    return result["userErrors"][0]


async def test_too_few_points(gql, services, clock, merchant):
    offer = await make_offer(gql, clock, merchant, pointsPrice=100)
    member = await make_member(services, clock, points=99)
    await _refused(gql, services, member, offer, expected="INSUFFICIENT_POINTS", stock=10)


async def test_out_of_stock(gql, services, clock, merchant):
    offer = await make_offer(gql, clock, merchant, pointsPrice=10, totalStock=1)
    member = await make_member(services, clock, points=1000)
    await _refused(gql, services, member, offer, expected="OUT_OF_STOCK", quantity=2, stock=1)
    assert (await redeem(gql, member, offer["id"]))["userErrors"] == []
    await _refused(gql, services, member, offer, expected="OUT_OF_STOCK", stock=0)


async def test_zero_stock_offer_is_out_of_stock(gql, services, clock, merchant):
    offer = await make_offer(gql, clock, merchant, pointsPrice=10, totalStock=0)
    member = await make_member(services, clock, points=1000)
    await _refused(gql, services, member, offer, expected="OUT_OF_STOCK", stock=0)


async def test_beyond_the_per_member_limit(gql, services, clock, merchant):
    offer = await make_offer(gql, clock, merchant, pointsPrice=10, perMemberLimit=2)
    member = await make_member(services, clock, points=1000)
    await _refused(gql, services, member, offer, expected="REDEMPTION_LIMIT_REACHED", quantity=3)
    assert (await redeem(gql, member, offer["id"], quantity=2))["userErrors"] == []
    err = await _refused(gql, services, member, offer, expected="REDEMPTION_LIMIT_REACHED", stock=8)
    assert err["field"] == ["input", "quantity"]


async def test_outside_the_validity_window(gql, services, clock, merchant):
    now = clock()
    future = await make_offer(
        gql, clock, merchant, startsAt=(now + timedelta(days=1)).isoformat(), endsAt=(now + timedelta(days=5)).isoformat()
    )
    member = await make_member(services, clock, points=1000)
    await _refused(gql, services, member, future, expected="OFFER_NOT_STARTED")
    soon = await make_offer(gql, clock, merchant, endsAt=(now + timedelta(hours=1)).isoformat())
    clock.advance(hours=1)
    reissue(services, clock, member)
    await _refused(gql, services, member, soon, expected="OFFER_ENDED")


async def test_paused_draft_and_ended_offers(gql, services, clock, merchant):
    member = await make_member(services, clock, points=1000)
    draft = await make_offer(gql, clock, merchant, status="DRAFT")
    await _refused(gql, services, member, draft, expected="OFFER_NOT_ACTIVE")
    offer = await make_offer(gql, clock, merchant)
    status = """mutation($i: SetOfferStatusInput!) { setOfferStatus(input: $i) { offer { status } userErrors { code } } }"""
    paused = await gql.ok(status, {"i": {"offerId": offer["id"], "status": "PAUSED"}}, token=merchant["token"])
    assert paused["setOfferStatus"]["offer"]["status"] == "PAUSED"
    await _refused(gql, services, member, offer, expected="OFFER_NOT_ACTIVE")
    await gql.ok(status, {"i": {"offerId": offer["id"], "status": "ENDED"}}, token=merchant["token"])
    await _refused(gql, services, member, offer, expected="OFFER_NOT_ACTIVE")
    back = await gql.ok(status, {"i": {"offerId": offer["id"], "status": "ACTIVE"}}, token=merchant["token"])
    assert back["setOfferStatus"]["userErrors"] == [{"code": "INVALID_STATUS_TRANSITION"}]


@pytest.mark.parametrize("quantity", [0, -1, 101])
async def test_bad_quantity(gql, services, clock, merchant, quantity):
    offer = await make_offer(gql, clock, merchant, pointsPrice=1, totalStock=500, perMemberLimit=500)
    member = await make_member(services, clock, points=1000)
    err = await _refused(gql, services, member, offer, expected="BAD_USER_INPUT", quantity=quantity)
    assert err["field"] == ["input", "quantity"]


async def test_unknown_offer_id(gql, services, clock, merchant):
    member = await make_member(services, clock, points=1000)
    result = await redeem(gql, member, "T2ZmZXI6OTk5OTk=")  # Offer:99999
    assert result["userErrors"][0]["code"] == "NOT_FOUND"
    result = await redeem(gql, member, merchant["id"])  # a Merchant id is not an Offer id
    assert result["userErrors"][0]["code"] == "NOT_FOUND"
    assert (await db_state(services))["redemptions"] == 0


async def _offer_count(services) -> int:
    async with services.db.read() as conn:
        return (await conn.execute(select(func.count()).select_from(Offer.__table__))).scalar_one()


@pytest.mark.parametrize(
    "fields, code, field",
    [
        ({"pointsPrice": 0}, "BAD_USER_INPUT", "pointsPrice"),
        ({"pointsPrice": -5}, "BAD_USER_INPUT", "pointsPrice"),
        ({"totalStock": -1}, "BAD_USER_INPUT", "totalStock"),
        ({"perMemberLimit": 0}, "BAD_USER_INPUT", "perMemberLimit"),
        ({"titleZh": "  "}, "BAD_USER_INPUT", "titleZh"),
        ({"imageUrl": "http://img.example.cn/a.png"}, "INVALID_URL", "imageUrl"),
        ({"imageUrl": "javascript:alert(1)"}, "INVALID_URL", "imageUrl"),
        ({"endsAt": "2026-05-01T00:00:00+00:00"}, "INVALID_WINDOW", "endsAt"),
        ({"status": "PAUSED"}, "INVALID_STATUS", "status"),
    ],
)
async def test_create_offer_rejects_bad_fields(gql, services, clock, merchant, fields, code, field):
    now = clock()
    values = {
        "titleZh": "旧物改造工作坊", "pointsPrice": 50, "totalStock": 5,
        "startsAt": now.isoformat(), "endsAt": (now + timedelta(days=3)).isoformat(), **fields,
    }
    data = await gql.ok(CREATE_OFFER, {"input": values}, token=merchant["token"])
    assert data["createOffer"]["offer"] is None
    assert data["createOffer"]["userErrors"][0]["code"] == code
    assert data["createOffer"]["userErrors"][0]["field"] == ["input", field]
    assert await _offer_count(services) == 0


async def test_members_and_other_merchants_cannot_create_or_edit_offers(gql, services, clock, admin, merchant):
    offer = await make_offer(gql, clock, merchant)
    other = await make_merchant(gql, services, clock, admin, profile={"nameZh": "单车铺"})
    member = await make_member(services, clock)
    update = """mutation($i: UpdateOfferInput!) { updateOffer(input: $i) { offer { pointsPrice } userErrors { code } } }"""
    for token in (other["token"], member["token"]):
        data = await gql.ok(update, {"i": {"offerId": offer["id"], "pointsPrice": 1}}, token=token)
        assert data["updateOffer"]["userErrors"] == [{"code": "FORBIDDEN"}]
    status = """mutation($i: SetOfferStatusInput!) { setOfferStatus(input: $i) { userErrors { code } } }"""
    data = await gql.ok(status, {"i": {"offerId": offer["id"], "status": "PAUSED"}}, token=other["token"])
    assert data["setOfferStatus"]["userErrors"] == [{"code": "FORBIDDEN"}]
    # A member with no merchant cannot create one; a merchant cannot create for another merchant.
    now = clock()
    values = {"titleZh": "x", "pointsPrice": 1, "totalStock": 1, "startsAt": now.isoformat(), "endsAt": (now + timedelta(days=1)).isoformat()}
    data = await gql.ok(CREATE_OFFER, {"input": values}, token=member["token"])
    assert data["createOffer"]["userErrors"][0]["code"] == "BAD_USER_INPUT"
    data = await gql.ok(CREATE_OFFER, {"input": {**values, "merchantId": merchant["id"]}}, token=other["token"])
    assert data["createOffer"]["userErrors"][0]["code"] == "FORBIDDEN"
    assert await _offer_count(services) == 1
    O = Offer.__table__
    async with services.db.read() as conn:
        row = (await conn.execute(select(O.c.points_price, O.c.status))).one()
    assert (row.points_price, row.status) == (100, "ACTIVE")

    # The owner and admins may edit; totalStock cannot go below what was redeemed.
    mine = await gql.ok(update, {"i": {"offerId": offer["id"], "pointsPrice": 80, "totalStock": 12}}, token=merchant["token"])
    assert mine["updateOffer"] == {"offer": {"pointsPrice": 80}, "userErrors": []}
    buyer = await make_member(services, clock, points=1000)
    assert (await redeem(gql, buyer, offer["id"], quantity=3))["userErrors"] == []
    shrink = await gql.ok(update, {"i": {"offerId": offer["id"], "totalStock": 2}}, token=admin["token"])
    assert shrink["updateOffer"]["userErrors"] == [{"code": "STOCK_BELOW_REDEEMED"}]
    assert (await db_state(services, offer["id"]))["stock"] == 9
    fine = await gql.ok(update, {"i": {"offerId": offer["id"], "totalStock": 3}}, token=admin["token"])
    assert fine["updateOffer"]["userErrors"] == []
    assert (await db_state(services, offer["id"]))["stock"] == 0


@pytest.mark.parametrize(
    "profile, code, field",
    [
        ({"latitude": 95.0}, "INVALID_COORDINATES", "latitude"),
        ({"longitude": -181.0}, "INVALID_COORDINATES", "longitude"),
        ({"latitude": None}, "BAD_USER_INPUT", "latitude"),
        ({"nameZh": ""}, "BAD_USER_INPUT", "nameZh"),
        ({"city": " "}, "BAD_USER_INPUT", "city"),
        ({"commitments": ["x" * 201]}, "BAD_USER_INPUT", "commitments"),
    ],
)
async def test_create_merchant_rejects_bad_profiles(gql, services, clock, admin, profile, code, field):
    data = await gql.ok(CREATE_MERCHANT, {"input": {"profile": {**PROFILE, **profile}}}, token=admin["token"])
    assert data["createMerchant"]["merchant"] is None
    assert data["createMerchant"]["userErrors"][0]["code"] == code
    assert data["createMerchant"]["userErrors"][0]["field"] == ["input", field]
    async with services.db.read() as conn:
        assert (await conn.execute(select(func.count()).select_from(Merchant.__table__))).scalar_one() == 0


async def test_only_admins_create_merchants(gql, services, clock):
    member = await make_member(services, clock)
    data = await gql.ok(CREATE_MERCHANT, {"input": {"profile": PROFILE}}, token=member["token"])
    assert data["createMerchant"]["userErrors"][0]["code"] == "FORBIDDEN"
    async with services.db.read() as conn:
        assert (await conn.execute(select(func.count()).select_from(Merchant.__table__))).scalar_one() == 0
