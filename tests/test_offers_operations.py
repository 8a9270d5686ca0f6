"""Executes every example operation of the member app, the merchant console and the merchant admin
screens (schema/operations/{member,merchant,admin}/) in one realistic story, and checks the results."""

import uuid
from datetime import timedelta
from pathlib import Path

import pytest
from graphql import OperationDefinitionNode, parse
from offers_helpers import PROFILE, make_admin, make_member

OPERATIONS = Path(__file__).resolve().parent.parent / "schema" / "operations"
DIRS = ("member", "merchant", "admin")
OURS = {
    "member": {"Catalogue", "OfferDetail", "RedeemOffer", "MyRedemptions", "CancelRedemption", "ApplyForMerchant"},
    "merchant": {
        "MerchantDashboard", "UpdateMerchant", "AddMerchantStaff", "CreateOffer", "UpdateOffer", "SetOfferStatus",
        "ConfirmRedemption", "MerchantRedemptions", "Settlement",
    },
    "admin": {"CreateMerchant", "PendingMerchantApplications", "ReviewMerchantApplication"},
}


def load(area: str, name: str) -> str:
    return (OPERATIONS / area / f"{name}.graphql").read_text(encoding="utf-8")


def test_each_file_is_one_named_operation_and_member_and_merchant_files_are_all_covered():
    for area in DIRS:
        for path in sorted((OPERATIONS / area).glob("*.graphql")):
            doc = parse(path.read_text(encoding="utf-8"))
            ops = [d for d in doc.definitions if isinstance(d, OperationDefinitionNode)]
            assert len(ops) == 1 and ops[0].name and ops[0].name.value == path.stem, path
    from test_campaign_operations import GROWTH  # merchants' growth operations run in that story
    from test_webhooks_api import WEBHOOK_OPERATIONS  # webhook operations run in tests/test_webhooks_api.py

    # impact and challenge operations run in tests/test_impact.py, test_leaderboards.py, test_challenges.py
    impact = {"member": {"MyImpact", "SetImpactPreferences", "CityImpact", "Leaderboard", "Challenge"}, "merchant": set()}
    # notification operations run in tests/test_notifications.py
    impact["member"] |= {"Notifications", "MarkNotificationsRead"}
    for area in ("member", "merchant"):
        expected = OURS[area] | GROWTH[area] | impact[area] | WEBHOOK_OPERATIONS.get(area, set())
        assert {p.stem for p in (OPERATIONS / area).glob("*.graphql")} == expected, f"add new {area} operations to this test"


@pytest.fixture
async def run(gql):
    executed: set[tuple[str, str]] = set()

    async def _run(area: str, name: str, variables: dict | None = None, *, token: str | None = None) -> dict:
        data = await gql.ok(load(area, name), variables or {}, token=token)
        for value in data.values():
            if isinstance(value, dict) and "userErrors" in value:
                assert value["userErrors"] == [], (name, value["userErrors"])
        executed.add((area, name))
        return data

    _run.executed = executed
    return _run


async def test_member_app_and_merchant_console_story(run, services, clock):
    admin = await make_admin(services, clock)
    owner = await make_member(services, clock, name="店长 Owner")
    cashier = await make_member(services, clock, name="收银员 Cashier")
    member = await make_member(services, clock, points=1000, name="李雷 Li Lei")
    now = clock()

    # Admin onboards the merchant; the owner completes the profile and adds a cashier.
    created = await run("admin", "CreateMerchant", {"input": {"profile": PROFILE, "ownerUserId": owner["id"]}}, token=admin["token"])
    merchant_id = created["createMerchant"]["merchant"]["id"]
    await run(
        "merchant", "UpdateMerchant",
        {"input": {"merchantId": merchant_id, "address": "衡山路 2 号", "commitments": ["自带杯减 2 元", "无一次性餐具"]}},
        token=owner["token"],
    )
    await run("merchant", "AddMerchantStaff", {"input": {"merchantId": merchant_id, "userId": cashier["id"]}}, token=owner["token"])

    # The owner creates a draft, edits it, publishes it.
    offer = (
        await run(
            "merchant", "CreateOffer",
            {
                "input": {
                    "titleZh": "燕麦拿铁一杯", "titleEn": "One oat latte", "descriptionZh": "自带杯可兑换",
                    "imageUrl": "https://img.jingtan.example/latte.jpg", "pointsPrice": 150, "totalStock": 20,
                    "perMemberLimit": 2, "startsAt": now.isoformat(), "endsAt": (now + timedelta(days=30)).isoformat(),
                }
            },
            token=owner["token"],
        )
    )["createOffer"]["offer"]
    assert offer["status"] == "DRAFT"
    updated = await run("merchant", "UpdateOffer", {"input": {"offerId": offer["id"], "pointsPrice": 120, "totalStock": 25}}, token=owner["token"])
    assert updated["updateOffer"]["offer"]["stock"] == 25
    await run("merchant", "SetOfferStatus", {"input": {"offerId": offer["id"], "status": "ACTIVE"}}, token=owner["token"])

    # The member browses, opens the offer, redeems twice and gives one code back.
    catalogue = await run("member", "Catalogue", {"first": 10, "filter": {"city": "上海", "affordable": True}, "orderBy": "POINTS_ASC"}, token=member["token"])
    assert [e["node"]["id"] for e in catalogue["offers"]["edges"]] == [offer["id"]]
    detail = await run("member", "OfferDetail", {"id": offer["id"]}, token=member["token"])
    assert detail["offer"]["merchant"]["address"] == "衡山路 2 号" and detail["viewer"]["account"]["balance"] == 1000
    first = (await run("member", "RedeemOffer", {"input": {"offerId": offer["id"], "quantity": 1, "idempotencyKey": uuid.uuid4().hex}}, token=member["token"]))["redeemOffer"]
    second = (await run("member", "RedeemOffer", {"input": {"offerId": offer["id"], "quantity": 1, "idempotencyKey": uuid.uuid4().hex}}, token=member["token"]))["redeemOffer"]
    assert second["account"]["balance"] == 760
    await run("member", "CancelRedemption", {"input": {"redemptionId": second["redemption"]["id"]}}, token=member["token"])
    mine = await run("member", "MyRedemptions", {"first": 10}, token=member["token"])
    assert mine["viewer"]["redemptions"]["totalCount"] == 2
    assert [e["node"]["status"] for e in mine["viewer"]["redemptions"]["edges"]] == ["CANCELLED", "PENDING"]
    assert mine["viewer"]["account"]["balance"] == 880

    # The cashier confirms the code at the counter; the console shows the totals.
    confirmed = await run("merchant", "ConfirmRedemption", {"input": {"code": first["redemption"]["code"]}}, token=cashier["token"])
    assert confirmed["confirmRedemption"]["redemption"]["member"]["displayName"] == "李雷 Li Lei"
    dashboard = await run("merchant", "MerchantDashboard", {"first": 10}, token=owner["token"])
    m = dashboard["viewer"]["merchant"]
    assert m["pointsBalance"] == 120
    assert m["stats"] == {
        "redeemedCount": 1, "redeemedQuantity": 1, "confirmedCount": 1, "pendingCount": 0, "refundedCount": 1,
        "pointsReceived": 120, "activeOffers": 1,
    }
    assert m["offers"]["edges"][0]["node"]["redeemedCount"] == 1
    listed = await run("merchant", "MerchantRedemptions", {"id": merchant_id, "status": "CONFIRMED"}, token=cashier["token"])
    assert [e["node"]["id"] for e in listed["merchant"]["redemptions"]["edges"]] == [first["redemption"]["id"]]
    day = (now + timedelta(hours=8)).date().isoformat()  # settlement days are in UTC+8 by default
    settlement = (await run("merchant", "Settlement", {"id": merchant_id, "from": day, "to": day}, token=owner["token"]))["merchant"]["settlement"]
    assert settlement["pointsReceived"] == 240 and settlement["pointsRefunded"] == 120
    assert settlement["netPoints"] == settlement["balance"] == 120
    assert settlement["byStatus"] == [
        {"status": "CANCELLED", "count": 1, "quantity": 1, "points": 120},
        {"status": "CONFIRMED", "count": 1, "quantity": 1, "points": 120},
    ]
    assert settlement["byDay"] == [
        {"date": day, "redemptions": 2, "quantity": 2, "confirmed": 1, "pointsRedeemed": 240, "pointsRefunded": 120, "netPoints": 120}
    ]

    # Another member applies to become a merchant; the admin reviews the application.
    applicant = await make_member(services, clock)
    applied = await run("member", "ApplyForMerchant", {"input": {"profile": {**PROFILE, "nameZh": "循环小铺", "category": "SECOND_HAND"}}}, token=applicant["token"])
    pending = await run("admin", "PendingMerchantApplications", {}, token=admin["token"])
    assert [e["node"]["nameZh"] for e in pending["merchants"]["edges"]] == ["循环小铺"]
    reviewed = await run(
        "admin", "ReviewMerchantApplication",
        {"input": {"merchantId": applied["applyForMerchant"]["merchant"]["id"], "approve": True, "reason": "资料齐全 complete"}},
        token=admin["token"],
    )
    assert reviewed["reviewMerchantApplication"]["merchant"]["status"] == "ACTIVE"

    assert run.executed == {(area, name) for area in DIRS for name in OURS[area]}
