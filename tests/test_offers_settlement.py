"""Merchant settlement: per-day totals in the merchant's time zone, range limits, access control."""

import pytest
from offers_helpers import (
    CANCEL,
    CONFIRM,
    make_admin,
    make_member,
    make_merchant,
    make_offer,
    redeem,
    reissue,
)

SETTLEMENT = """
query($id: ID!, $from: Date!, $to: Date!) {
  merchant(id: $id) {
    settlement(from: $from, to: $to) {
      pointsReceived pointsRefunded netPoints balance
      byStatus { status count quantity points }
      byDay { date redemptions quantity confirmed pointsRedeemed pointsRefunded netPoints }
    }
  }
}
"""


@pytest.fixture
async def admin(services, clock):
    return await make_admin(services, clock)


async def test_days_follow_the_merchant_time_zone(gql, services, clock, admin):
    shop = await make_merchant(gql, services, clock, admin)
    offer = await make_offer(gql, clock, shop, pointsPrice=10, totalStock=100, perMemberLimit=100)
    member = await make_member(services, clock, points=1000)

    # 2026-06-01 08:00 UTC = 16:00 in Shanghai: day 1.
    a = (await redeem(gql, member, offer["id"], quantity=2))["redemption"]
    # 17:30 UTC = 01:30 next day in Shanghai: day 2 (still June 1st in UTC).
    clock.advance(hours=9, minutes=30)
    reissue(services, clock, member)
    owner = reissue(services, clock, shop["owner"])
    b = (await redeem(gql, member, offer["id"], quantity=3))["redemption"]
    await gql.ok(CONFIRM, {"input": {"code": a["code"]}}, token=owner["token"])
    # Day 3 (June 3rd, Shanghai): the second redemption is cancelled.
    clock.advance(days=1)
    reissue(services, clock, member)
    owner = reissue(services, clock, shop["owner"])
    await gql.ok(CANCEL, {"input": {"redemptionId": b["id"]}}, token=member["token"])

    data = await gql.ok(SETTLEMENT, {"id": shop["id"], "from": "2026-06-01", "to": "2026-06-03"}, token=owner["token"])
    s = data["merchant"]["settlement"]
    assert s["byDay"] == [
        {"date": "2026-06-01", "redemptions": 1, "quantity": 2, "confirmed": 0, "pointsRedeemed": 20, "pointsRefunded": 0, "netPoints": 20},
        {"date": "2026-06-02", "redemptions": 1, "quantity": 3, "confirmed": 1, "pointsRedeemed": 30, "pointsRefunded": 0, "netPoints": 30},
        {"date": "2026-06-03", "redemptions": 0, "quantity": 0, "confirmed": 0, "pointsRedeemed": 0, "pointsRefunded": 30, "netPoints": -30},
    ]
    assert (s["pointsReceived"], s["pointsRefunded"], s["netPoints"], s["balance"]) == (50, 30, 20, 20)
    assert s["byStatus"] == [
        {"status": "CANCELLED", "count": 1, "quantity": 3, "points": 30},
        {"status": "CONFIRMED", "count": 1, "quantity": 2, "points": 20},
    ]

    wider = await gql.ok(SETTLEMENT, {"id": shop["id"], "from": "2026-05-31", "to": "2026-06-04"}, token=owner["token"])
    wide_days = wider["merchant"]["settlement"]["byDay"]
    assert [d["date"] for d in wide_days] == ["2026-05-31", "2026-06-01", "2026-06-02", "2026-06-03", "2026-06-04"]
    assert wide_days[1:4] == s["byDay"]
    for quiet in (wide_days[0], wide_days[4]):
        assert {k: v for k, v in quiet.items() if k != "date"} == {
            "redemptions": 0, "quantity": 0, "confirmed": 0, "pointsRedeemed": 0, "pointsRefunded": 0, "netPoints": 0}

    only_day_two = await gql.ok(SETTLEMENT, {"id": shop["id"], "from": "2026-06-02", "to": "2026-06-02"}, token=owner["token"])
    assert [d["date"] for d in only_day_two["merchant"]["settlement"]["byDay"]] == ["2026-06-02"]
    assert only_day_two["merchant"]["settlement"]["pointsReceived"] == 30


async def test_range_limits_and_access(gql, services, clock, admin):
    shop = await make_merchant(gql, services, clock, admin)
    too_long = await gql(SETTLEMENT, {"id": shop["id"], "from": "2026-01-01", "to": "2026-04-03"}, token=shop["token"])
    assert too_long["errors"][0]["extensions"]["code"] == "RANGE_TOO_LONG"
    ok = await gql.ok(SETTLEMENT, {"id": shop["id"], "from": "2026-01-01", "to": "2026-04-02"}, token=shop["token"])
    days = ok["merchant"]["settlement"]["byDay"]  # every day of the range, zeros without activity
    assert len(days) == 92 and days[0]["date"] == "2026-01-01" and days[-1]["date"] == "2026-04-02"
    assert {(d["redemptions"], d["quantity"], d["confirmed"], d["netPoints"]) for d in days} == {(0, 0, 0, 0)}
    backwards = await gql(SETTLEMENT, {"id": shop["id"], "from": "2026-06-02", "to": "2026-06-01"}, token=shop["token"])
    assert backwards["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    member = await make_member(services, clock)
    hidden = await gql(SETTLEMENT, {"id": shop["id"], "from": "2026-06-01", "to": "2026-06-01"}, token=member["token"])
    assert hidden["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    other = await make_merchant(gql, services, clock, admin, profile={"nameZh": "别家"})
    foreign = await gql(SETTLEMENT, {"id": shop["id"], "from": "2026-06-01", "to": "2026-06-01"}, token=other["token"])
    assert foreign["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    by_admin = await gql.ok(SETTLEMENT, {"id": shop["id"], "from": "2026-06-01", "to": "2026-06-01"}, token=admin["token"])
    assert by_admin["merchant"]["settlement"]["balance"] == 0
