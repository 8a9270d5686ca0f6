"""Confirmation, cancellation and expiry refunds; merchant onboarding and staff; merchant API tokens."""

from datetime import timedelta

import pytest
from offers_helpers import (
    CANCEL,
    CONFIRM,
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
from sqlalchemy import select

from jingtan_api.accounts.models import LedgerTransaction, PointsLot
from jingtan_api.audit.models import AuditLogEntry
from jingtan_api.merchants.models import Merchant
from jingtan_api.redemptions.jobs import expire_redemptions
from jingtan_api.redemptions.models import Redemption
from jingtan_api.users.models import User


@pytest.fixture
async def admin(services, clock):
    return await make_admin(services, clock)


@pytest.fixture
async def shop(gql, services, clock, admin):
    merchant = await make_merchant(gql, services, clock, admin)
    offer = await make_offer(gql, clock, merchant, pointsPrice=100, totalStock=10, perMemberLimit=5)
    member = await make_member(services, clock, points=500)
    return {"merchant": merchant, "offer": offer, "member": member}


async def _redemption_row(services, gid: str) -> dict:
    from jingtan_api.graphql.relay import decode_id

    R = Redemption.__table__
    async with services.db.read() as conn:
        return dict((await conn.execute(select(R).where(R.c.id == decode_id(gid, "Redemption")))).one()._mapping)


# --- confirmation ------------------------------------------------------------------------------------


async def test_staff_confirm_a_code_once(gql, services, clock, shop):
    r = (await redeem(gql, shop["member"], shop["offer"]["id"]))["redemption"]
    typed = f"{r['code'][:5].lower()}-{r['code'][5:]}"  # case and dashes do not matter at the counter
    data = await gql.ok(CONFIRM, {"input": {"code": typed}}, token=shop["merchant"]["token"])
    assert data["confirmRedemption"]["userErrors"] == []
    assert data["confirmRedemption"]["redemption"]["status"] == "CONFIRMED"
    first = await _redemption_row(services, r["id"])

    clock.advance(minutes=1)
    again = await gql.ok(CONFIRM, {"input": {"code": r["code"]}}, token=shop["merchant"]["token"])
    assert again["confirmRedemption"]["userErrors"][0]["code"] == "ALREADY_CONFIRMED"
    assert await _redemption_row(services, r["id"]) == first  # nothing written

    stats = await gql.ok(
        "query($id: ID!) { merchant(id: $id) { stats { confirmedCount pendingCount } } }",
        {"id": shop["merchant"]["id"]}, token=shop["merchant"]["token"],
    )
    assert stats["merchant"]["stats"] == {"confirmedCount": 1, "pendingCount": 0}


async def test_other_merchant_and_guessed_codes_get_the_same_not_found(gql, services, clock, admin, shop):
    other = await make_merchant(gql, services, clock, admin, profile={"nameZh": "单车铺", "category": "BIKE_SHOP"})
    r = (await redeem(gql, shop["member"], shop["offer"]["id"]))["redemption"]

    foreign = await gql.ok(CONFIRM, {"input": {"code": r["code"]}}, token=other["token"])
    guessed = await gql.ok(CONFIRM, {"input": {"code": "ABCDEFGHJK"}}, token=shop["merchant"]["token"])
    member = await gql.ok(CONFIRM, {"input": {"code": r["code"]}}, token=shop["member"]["token"])
    errors = [x["confirmRedemption"]["userErrors"] for x in (foreign, guessed, member)]
    assert errors[0] == errors[1] == errors[2]
    assert errors[0][0]["code"] == "NOT_FOUND"
    assert (await _redemption_row(services, r["id"]))["status"] == "PENDING"


async def test_merchant_api_token_confirms_codes(gql, services, clock, shop):
    owner = shop["merchant"]["owner"]
    created = await gql.ok(
        """mutation($i: CreateApiTokenInput!) { createApiToken(input: $i) { secret userErrors { code message } } }""",
        {"i": {"name": "POS 收银机", "scopes": ["redemptions:confirm"]}}, token=owner["token"],
    )
    secret = created["createApiToken"]["secret"]
    assert secret, created
    reader = await gql.ok(
        """mutation($i: CreateApiTokenInput!) { createApiToken(input: $i) { secret } }""",
        {"i": {"name": "read only", "scopes": ["account:read"]}}, token=owner["token"],
    )
    r = (await redeem(gql, shop["member"], shop["offer"]["id"]))["redemption"]

    refused = await gql.ok(CONFIRM, {"input": {"code": r["code"]}}, token=reader["createApiToken"]["secret"])
    assert refused["confirmRedemption"]["userErrors"][0]["code"] == "FORBIDDEN"
    assert (await _redemption_row(services, r["id"]))["status"] == "PENDING"

    data = await gql.ok(CONFIRM, {"input": {"code": r["code"]}}, token=secret)
    assert data["confirmRedemption"]["redemption"]["status"] == "CONFIRMED"


# --- cancellation and expiry -------------------------------------------------------------------------


async def test_cancel_refunds_points_and_stock_with_a_reversing_transaction(gql, services, clock, shop):
    member = shop["member"]
    r = (await redeem(gql, member, shop["offer"]["id"], quantity=2))["redemption"]
    assert await balance(services, member["pk"]) == 300

    data = await gql.ok(CANCEL, {"input": {"redemptionId": r["id"]}}, token=member["token"])
    assert data["cancelRedemption"]["userErrors"] == []
    assert data["cancelRedemption"]["redemption"]["status"] == "CANCELLED"
    assert await balance(services, member["pk"]) == 500
    state = await db_state(services, shop["offer"]["id"])
    assert state["stock"] == 10 and state["problems"] == []

    row = await _redemption_row(services, r["id"])
    TX = LedgerTransaction.__table__
    async with services.db.read() as conn:
        refund = (await conn.execute(select(TX).where(TX.c.id == row["refund_transaction_id"]))).one()
    assert refund.kind == "REFUND" and refund.reverses_id == row["transaction_id"]

    again = await gql.ok(CANCEL, {"input": {"redemptionId": r["id"]}}, token=member["token"])
    assert again["cancelRedemption"]["userErrors"][0]["code"] == "REDEMPTION_CANCELLED"
    assert await balance(services, member["pk"]) == 500


async def test_cancel_after_confirmation_is_refused(gql, services, clock, shop):
    member = shop["member"]
    r = (await redeem(gql, member, shop["offer"]["id"]))["redemption"]
    await gql.ok(CONFIRM, {"input": {"code": r["code"]}}, token=shop["merchant"]["token"])
    data = await gql.ok(CANCEL, {"input": {"redemptionId": r["id"]}}, token=member["token"])
    assert data["cancelRedemption"]["userErrors"][0]["code"] == "ALREADY_CONFIRMED"
    assert await balance(services, member["pk"]) == 400
    state = await db_state(services, shop["offer"]["id"])
    assert state["stock"] == 9 and state["problems"] == []
    assert (await _redemption_row(services, r["id"]))["status"] == "CONFIRMED"


async def test_another_member_cannot_cancel(gql, services, clock, shop):
    r = (await redeem(gql, shop["member"], shop["offer"]["id"]))["redemption"]
    stranger = await make_member(services, clock)
    data = await gql.ok(CANCEL, {"input": {"redemptionId": r["id"]}}, token=stranger["token"])
    assert data["cancelRedemption"]["userErrors"][0]["code"] == "NOT_FOUND"
    assert (await _redemption_row(services, r["id"]))["status"] == "PENDING"
    assert await balance(services, shop["member"]["pk"]) == 400


async def test_expired_codes_cannot_be_confirmed_and_the_job_refunds_them(gql, services, clock, shop):
    member = shop["member"]
    r = (await redeem(gql, member, shop["offer"]["id"], quantity=3))["redemption"]
    kept = (await redeem(gql, member, shop["offer"]["id"]))["redemption"]
    await gql.ok(CONFIRM, {"input": {"code": kept["code"]}}, token=shop["merchant"]["token"])
    assert await balance(services, member["pk"]) == 100

    clock.advance(days=7, seconds=1)
    merchant = reissue(services, clock, shop["merchant"]["owner"])
    late = await gql.ok(CONFIRM, {"input": {"code": r["code"]}}, token=merchant["token"])
    assert late["confirmRedemption"]["userErrors"][0]["code"] == "REDEMPTION_EXPIRED"

    cfg = services.settings
    result = await expire_redemptions(
        services.db, now=clock(), lot_expiry_days=cfg.points.lot_expiry_days,
        refund_min_valid_days=cfg.offers.refund_min_valid_days,
    )
    assert result == (1, 300)
    assert await expire_redemptions(
        services.db, now=clock(), lot_expiry_days=cfg.points.lot_expiry_days, refund_min_valid_days=7
    ) == (0, 0)
    assert await balance(services, member["pk"]) == 400
    row = await _redemption_row(services, r["id"])
    assert row["status"] == "EXPIRED"
    state = await db_state(services, shop["offer"]["id"])
    assert state["stock"] == 9 and state["problems"] == []

    # The refunded points keep the expiry of the points they replaced (granted at the start: +365 days).
    L = PointsLot.__table__
    async with services.db.read() as conn:
        lots = (await conn.execute(select(L.c.amount, L.c.expires_at).order_by(L.c.id))).all()
    assert lots[-1].amount == 300 and lots[-1].expires_at == lots[0].expires_at
    assert lots[-1].expires_at.date().isoformat() == "2027-06-01"


async def test_refund_of_points_about_to_expire_gets_a_grace_period(gql, services, clock, shop):
    member = shop["member"]
    clock.advance(days=362)  # the member's 500 points expire in 3 days
    reissue(services, clock, member)
    merchant = reissue(services, clock, shop["merchant"]["owner"])
    offer = await make_offer(gql, clock, {"token": merchant["token"]}, pointsPrice=100)
    r = (await redeem(gql, member, offer["id"]))["redemption"]
    await gql.ok(CANCEL, {"input": {"redemptionId": r["id"]}}, token=member["token"])
    L = PointsLot.__table__
    async with services.db.read() as conn:
        newest = (await conn.execute(select(L.c.expires_at).order_by(L.c.id.desc()).limit(1))).scalar_one()
    assert newest == clock() + timedelta(days=services.settings.offers.refund_min_valid_days)


async def test_expire_redemptions_cli(gql, services, clock, shop, db_url, monkeypatch, capsys):
    from datetime import UTC, datetime

    from jingtan_api.cli import main

    # The CLI runs on the real clock: redeem in 2001, so the code is long expired whenever this runs.
    clock.now = datetime(2001, 1, 1, tzinfo=UTC)
    member = reissue(services, clock, shop["member"])
    owner = reissue(services, clock, shop["merchant"]["owner"])
    offer = await make_offer(gql, clock, {"token": owner["token"]})
    r = (await redeem(gql, member, offer["id"]))["redemption"]
    monkeypatch.setenv("JINGTAN_DATABASE_URL", db_url)
    monkeypatch.setenv("JINGTAN_LOG__LEVEL", "WARNING")
    import asyncio

    code = await asyncio.to_thread(main, ["expire-redemptions"])
    assert code == 0
    assert '"redemptions": 1' in capsys.readouterr().out
    assert (await _redemption_row(services, r["id"]))["status"] == "EXPIRED"
    assert (await db_state(services))["problems"] == []


# --- merchants: onboarding, applications, staff -------------------------------------------------------


APPLY = """
mutation Apply($input: ApplyForMerchantInput!) {
  applyForMerchant(input: $input) { merchant { id status nameZh } userErrors { code field } }
}
"""
REVIEW = """
mutation Review($input: ReviewMerchantApplicationInput!) {
  reviewMerchantApplication(input: $input) { merchant { id status } userErrors { code field } }
}
"""
ADD_STAFF = """
mutation AddStaff($input: AddMerchantStaffInput!) {
  addMerchantStaff(input: $input) { merchant { id } user { id displayName } userErrors { code field } }
}
"""


async def test_application_is_reviewed_by_an_admin(gql, services, clock, admin):
    applicant = await make_member(services, clock)
    data = await gql.ok(APPLY, {"input": {"profile": PROFILE}}, token=applicant["token"])
    merchant = data["applyForMerchant"]["merchant"]
    assert merchant["status"] == "PENDING"
    twice = await gql.ok(APPLY, {"input": {"profile": PROFILE}}, token=applicant["token"])
    assert twice["applyForMerchant"]["userErrors"][0]["code"] == "APPLICATION_PENDING"

    query = "query($id: ID!) { merchant(id: $id) { id status } }"
    stranger = await make_member(services, clock)
    assert (await gql.ok(query, {"id": merchant["id"]}, token=stranger["token"]))["merchant"] is None
    assert (await gql.ok(query, {"id": merchant["id"]}, token=applicant["token"]))["merchant"]["status"] == "PENDING"
    pending = await gql.ok("{ merchants(status: PENDING) { nodes { id } } }", token=admin["token"])
    assert pending["merchants"]["nodes"] == [{"id": merchant["id"]}]
    refused = await gql(
        "{ merchants(status: PENDING) { nodes { id } } }", token=stranger["token"]
    )
    assert refused["errors"][0]["extensions"]["code"] == "FORBIDDEN"

    denied = await gql.ok(REVIEW, {"input": {"merchantId": merchant["id"], "approve": True, "reason": "资料齐全"}}, token=stranger["token"])
    assert denied["reviewMerchantApplication"]["userErrors"][0]["code"] == "FORBIDDEN"

    approved = await gql.ok(
        REVIEW, {"input": {"merchantId": merchant["id"], "approve": True, "reason": "资料齐全 documents ok"}}, token=admin["token"]
    )
    assert approved["reviewMerchantApplication"]["merchant"]["status"] == "ACTIVE"
    again = await gql.ok(
        REVIEW, {"input": {"merchantId": merchant["id"], "approve": False, "reason": "changed my mind"}}, token=admin["token"]
    )
    assert again["reviewMerchantApplication"]["userErrors"][0]["code"] == "ALREADY_REVIEWED"

    A = AuditLogEntry.__table__
    async with services.db.read() as conn:
        actions = (await conn.execute(select(A.c.action).order_by(A.c.id))).scalars().all()
    assert "merchant.approve" in actions and "merchant.reject" not in actions

    # The applicant now runs the merchant: with their current token (staff membership is read from the
    # database), they see it as viewer.merchant and can publish offers.
    mine = await gql.ok("{ viewer { roles merchant { id status } } }", token=applicant["token"])
    assert mine["viewer"]["merchant"] == {"id": merchant["id"], "status": "ACTIVE"}
    offer = await make_offer(gql, clock, {"token": applicant["token"]})
    assert offer["status"] == "ACTIVE"
    U = User.__table__
    async with services.db.read() as conn:
        roles = (await conn.execute(select(U.c.roles).where(U.c.id == applicant["pk"]))).scalar_one()
    assert roles == "MEMBER,MERCHANT"


async def test_rejected_application_writes_no_account(gql, services, clock, admin):
    applicant = await make_member(services, clock)
    merchant = (await gql.ok(APPLY, {"input": {"profile": PROFILE}}, token=applicant["token"]))["applyForMerchant"]["merchant"]
    rejected = await gql.ok(
        REVIEW, {"input": {"merchantId": merchant["id"], "approve": False, "reason": "地址无法核实"}}, token=admin["token"]
    )
    assert rejected["reviewMerchantApplication"]["merchant"]["status"] == "REJECTED"
    M = Merchant.__table__
    async with services.db.read() as conn:
        row = (await conn.execute(select(M.c.account_id, M.c.review_reason))).one()
    assert row.account_id is None and row.review_reason == "地址无法核实"
    assert (await gql.ok("{ viewer { merchant { id } } }", token=applicant["token"]))["viewer"]["merchant"] is None


async def test_owner_adds_staff_who_can_confirm(gql, services, clock, admin, shop):
    cashier = await make_member(services, clock)
    data = await gql.ok(
        ADD_STAFF, {"input": {"merchantId": shop["merchant"]["id"], "userId": cashier["id"]}}, token=shop["merchant"]["token"]
    )
    assert data["addMerchantStaff"]["userErrors"] == []
    assert data["addMerchantStaff"]["user"]["id"] == cashier["id"]
    mine = await gql.ok("{ viewer { roles merchant { id } } }", token=cashier["token"])
    assert mine["viewer"] == {"roles": ["MEMBER", "MERCHANT"], "merchant": {"id": shop["merchant"]["id"]}}

    # Staff who are not the owner cannot add staff; nobody can be staff of two merchants.
    third = await make_member(services, clock)
    refused = await gql.ok(
        ADD_STAFF, {"input": {"merchantId": shop["merchant"]["id"], "userId": third["id"]}}, token=cashier["token"]
    )
    assert refused["addMerchantStaff"]["userErrors"][0]["code"] == "FORBIDDEN"
    duplicate = await gql.ok(
        ADD_STAFF, {"input": {"merchantId": shop["merchant"]["id"], "userId": cashier["id"]}}, token=admin["token"]
    )
    assert duplicate["addMerchantStaff"]["userErrors"][0]["code"] == "ALREADY_MERCHANT_STAFF"
    U = User.__table__
    async with services.db.read() as conn:
        assert (await conn.execute(select(U.c.roles).where(U.c.id == third["pk"]))).scalar_one() == "MEMBER"

    r = (await redeem(gql, shop["member"], shop["offer"]["id"]))["redemption"]
    confirmed = await gql.ok(CONFIRM, {"input": {"code": r["code"]}}, token=cashier["token"])
    assert confirmed["confirmRedemption"]["redemption"]["status"] == "CONFIRMED"

    # Staff see the merchant's redemptions; other members do not.
    # Codes are shown to their member only: staff cannot confirm codes of members who are not there.
    query = "query($id: ID!) { merchant(id: $id) { redemptions(first: 10) { nodes { id code status member { displayName } } } } }"
    seen = await gql.ok(query, {"id": shop["merchant"]["id"]}, token=cashier["token"])
    assert seen["merchant"]["redemptions"]["nodes"] == [
        {"id": r["id"], "code": None, "status": "CONFIRMED", "member": {"displayName": "会员 Member"}}
    ]
    hidden = await gql(query, {"id": shop["merchant"]["id"]}, token=third["token"])
    assert hidden["errors"][0]["extensions"]["code"] == "FORBIDDEN"


async def test_update_merchant_profile(gql, services, clock, admin, shop):
    mutation = """mutation($i: UpdateMerchantInput!) { updateMerchant(input: $i) {
      merchant { nameEn commitments latitude longitude } userErrors { code field } } }"""
    ok = await gql.ok(
        mutation, {"i": {"merchantId": shop["merchant"]["id"], "nameEn": "Green Leaf Coffee", "commitments": ["无吸管"]}},
        token=shop["merchant"]["token"],
    )
    assert ok["updateMerchant"]["merchant"] == {
        "nameEn": "Green Leaf Coffee", "commitments": ["无吸管"], "latitude": 31.2, "longitude": 121.44,
    }
    bad = await gql.ok(
        mutation, {"i": {"merchantId": shop["merchant"]["id"], "latitude": 91.0, "longitude": 121.0}},
        token=shop["merchant"]["token"],
    )
    assert bad["updateMerchant"]["userErrors"] == [{"code": "INVALID_COORDINATES", "field": ["input", "latitude"]}]
    stranger = await make_member(services, clock)
    forbidden = await gql.ok(mutation, {"i": {"merchantId": shop["merchant"]["id"], "nameEn": "Mine"}}, token=stranger["token"])
    assert forbidden["updateMerchant"]["userErrors"][0]["code"] == "FORBIDDEN"
    M = Merchant.__table__
    async with services.db.read() as conn:
        row = (await conn.execute(select(M.c.name_en, M.c.latitude))).one()
    assert row.name_en == "Green Leaf Coffee" and row.latitude == 31.2


async def test_invariant_check_notices_stock_drift(gql, services, clock, shop, db_url, monkeypatch):
    import asyncio

    from sqlalchemy import update

    from jingtan_api.cli import main
    from jingtan_api.offers.models import Offer

    await redeem(gql, shop["member"], shop["offer"]["id"], quantity=2)
    monkeypatch.setenv("JINGTAN_DATABASE_URL", db_url)
    monkeypatch.setenv("JINGTAN_LOG__LEVEL", "WARNING")
    assert await asyncio.to_thread(main, ["ledger-check"]) == 0
    O = Offer.__table__
    await services.db.write(lambda conn: conn.execute(update(O).values(stock=O.c.stock + 1)))
    problems = (await db_state(services))["problems"]
    assert len(problems) == 1 and "stock 9 but total 10 - redeemed 2" in problems[0]
    assert await asyncio.to_thread(main, ["ledger-check"]) == 1


SET_MERCHANT_STATUS = """
mutation($i: SetMerchantStatusInput!) { setMerchantStatus(input: $i) { merchant { status } userErrors { code } } }
"""


async def test_suspended_merchant_leaves_the_catalogue_but_honours_issued_codes(gql, services, clock, admin, shop):
    member = shop["member"]
    r = (await redeem(gql, member, shop["offer"]["id"]))["redemption"]
    mid = shop["merchant"]["id"]
    refused = await gql.ok(SET_MERCHANT_STATUS, {"i": {"merchantId": mid, "status": "SUSPENDED", "reason": "投诉核查"}}, token=shop["merchant"]["token"])
    assert refused["setMerchantStatus"]["userErrors"] == [{"code": "FORBIDDEN"}]
    done = await gql.ok(SET_MERCHANT_STATUS, {"i": {"merchantId": mid, "status": "SUSPENDED", "reason": "投诉核查 complaint"}}, token=admin["token"])
    assert done["setMerchantStatus"]["merchant"]["status"] == "SUSPENDED"
    pending = await gql.ok(SET_MERCHANT_STATUS, {"i": {"merchantId": mid, "status": "PENDING", "reason": "nope"}}, token=admin["token"])
    assert pending["setMerchantStatus"]["userErrors"] == [{"code": "INVALID_STATUS_TRANSITION"}]

    catalogue = await gql.ok("{ offers { edges { node { id } } } }")
    assert catalogue["offers"]["edges"] == []
    before = await db_state(services, shop["offer"]["id"])
    refused = await redeem(gql, member, shop["offer"]["id"])
    assert refused["userErrors"][0]["code"] == "MERCHANT_NOT_ACTIVE"
    assert await db_state(services, shop["offer"]["id"]) == before
    confirmed = await gql.ok(CONFIRM, {"input": {"code": r["code"]}}, token=shop["merchant"]["token"])
    assert confirmed["confirmRedemption"]["redemption"]["status"] == "CONFIRMED"

    back = await gql.ok(SET_MERCHANT_STATUS, {"i": {"merchantId": mid, "status": "ACTIVE", "reason": "核查完毕 resolved"}}, token=admin["token"])
    assert back["setMerchantStatus"]["merchant"]["status"] == "ACTIVE"
    assert len((await gql.ok("{ offers { edges { node { id } } } }"))["offers"]["edges"]) == 1
    A = AuditLogEntry.__table__
    async with services.db.read() as conn:
        actions = (await conn.execute(select(A.c.action).where(A.c.action.like("merchant.%")).order_by(A.c.id))).scalars().all()
    assert actions == ["merchant.create", "merchant.suspend", "merchant.reactivate"]


OFFER_AVAILABLE = "query($id: ID!) { offer(id: $id) { id available } }"
MERCHANT_OFFERS = "query($id: ID!) { merchant(id: $id) { offers { nodes { id available } } } }"


async def test_offer_of_a_suspended_merchant_is_not_available(gql, services, clock, admin, shop):
    """`Offer.available` follows the rule `redeemOffer` applies: the merchant must be active too."""
    offer_id, mid, member = shop["offer"]["id"], shop["merchant"]["id"], shop["member"]
    assert (await gql.ok(OFFER_AVAILABLE, {"id": offer_id}, token=member["token"]))["offer"]["available"] is True
    done = await gql.ok(SET_MERCHANT_STATUS, {"i": {"merchantId": mid, "status": "SUSPENDED", "reason": "投诉核查 complaint"}}, token=admin["token"])
    assert done["setMerchantStatus"] == {"merchant": {"status": "SUSPENDED"}, "userErrors": []}

    # Admins and the merchant's staff still see the offer (members do not), and it is not available.
    for token in (admin["token"], shop["merchant"]["token"]):
        assert (await gql.ok(OFFER_AVAILABLE, {"id": offer_id}, token=token))["offer"] == {"id": offer_id, "available": False}
    staff_view = await gql.ok(MERCHANT_OFFERS, {"id": mid}, token=shop["merchant"]["token"])
    assert staff_view["merchant"]["offers"]["nodes"] == [{"id": offer_id, "available": False}]
    assert (await gql.ok(OFFER_AVAILABLE, {"id": offer_id}, token=member["token"]))["offer"] is None
    before = await db_state(services, offer_id)
    refused = await redeem(gql, member, offer_id)
    assert refused["redemption"] is None
    assert [e["code"] for e in refused["userErrors"]] == ["MERCHANT_NOT_ACTIVE"]
    assert await db_state(services, offer_id) == before
    assert await balance(services, member["pk"]) == 500

    back = await gql.ok(SET_MERCHANT_STATUS, {"i": {"merchantId": mid, "status": "ACTIVE", "reason": "核查完毕 resolved"}}, token=admin["token"])
    assert back["setMerchantStatus"] == {"merchant": {"status": "ACTIVE"}, "userErrors": []}
    for token in (admin["token"], member["token"]):
        assert (await gql.ok(OFFER_AVAILABLE, {"id": offer_id}, token=token))["offer"] == {"id": offer_id, "available": True}
    redeemed = await redeem(gql, member, offer_id)
    assert redeemed["userErrors"] == [] and redeemed["redemption"]["status"] == "PENDING"
    assert await balance(services, member["pk"]) == 400


async def test_redemptions_by_node_id_are_private(gql, services, clock, admin, shop):
    r = (await redeem(gql, shop["member"], shop["offer"]["id"]))["redemption"]
    query = "query($id: ID!) { node(id: $id) { ... on Redemption { id status code } } }"
    own = await gql.ok(query, {"id": r["id"]}, token=shop["member"]["token"])
    assert own["node"] == {"id": r["id"], "status": "PENDING", "code": r["code"]}
    staff = await gql.ok(query, {"id": r["id"]}, token=shop["merchant"]["token"])
    assert staff["node"] == {"id": r["id"], "status": "PENDING", "code": None}
    stranger = await make_member(services, clock)
    assert (await gql.ok(query, {"id": r["id"]}, token=stranger["token"]))["node"] is None
    assert (await gql.ok(query, {"id": r["id"]}))["node"] is None
    other = await make_merchant(gql, services, clock, admin, profile={"nameZh": "别家"})
    assert (await gql.ok(query, {"id": r["id"]}, token=other["token"]))["node"] is None
    # Another member's redemption list is not reachable either.
    hidden = await gql("query($id: ID!) { node(id: $id) { ... on User { redemptions { nodes { id } } } } }",
                       {"id": shop["member"]["id"]}, token=stranger["token"])
    assert hidden["data"]["node"] is None


async def test_periodic_expiry_run_refunds_redemptions_then_expires_points(gql, services, clock, shop):
    from jingtan_api.jobs import run_expiry_once

    member = shop["member"]
    await redeem(gql, member, shop["offer"]["id"], quantity=2)  # 200 of the member's 500 points
    clock.advance(days=366)  # the redemption is overdue and every lot has expired
    result = await run_expiry_once(services.db, now=clock(), settings=services.settings)
    # The refund keeps at least refund_min_valid_days of life, so only the 300 unspent points expire.
    assert result == {"redemptions": 1, "refunded": 200, "accounts": 1, "expired": 300, "deletions": 0}
    assert await balance(services, member["pk"]) == 200
    assert (await db_state(services, shop["offer"]["id"]))["problems"] == []
