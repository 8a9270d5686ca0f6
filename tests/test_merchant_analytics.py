"""Merchant analytics per day and month: redemptions, points, new vs returning members, actions and CO2e
at the merchant, campaign spend (days without activity included); a campaign's results."""

from datetime import timedelta

import pytest

from tests.growth_helpers import CAMPAIGN, add_station, create_campaign, fund_merchant, recycling_settings, submit_drop
from tests.offers_helpers import make_member, make_merchant, make_offer, redeem, reissue

ANALYTICS = """
query Analytics($id: ID!, $from: Date!, $to: Date!, $granularity: AnalyticsGranularity!) {
  merchant(id: $id) {
    analytics(from: $from, to: $to, granularity: $granularity) {
      start redemptions pointsReceived newMembers returningMembers actions gramsCo2e campaignSpend
    }
  }
}
"""


@pytest.fixture
def settings_overrides():
    return recycling_settings()


async def test_daily_and_monthly_analytics_with_a_campaign(gql, services, clock, admin):
    shop = await make_merchant(gql, services, clock, admin)
    await fund_merchant(services, clock, shop["id"], 1000)
    await add_station(gql, shop, "ST-A")
    campaign = (await create_campaign(gql, clock, shop))["campaign"]
    offer = await make_offer(gql, clock, shop, pointsPrice=100, endsAt=(clock() + timedelta(days=60)).isoformat())
    first, second = await make_member(services, clock), await make_member(services, clock, points=500)
    # day 1 (2026-06-01, UTC+8): an action at the station (bonus), then a redemption
    out = await submit_drop(gql, first["token"], clock, station="ST-A")
    grams = out["action"]["calculation"]["gramsCo2e"]
    clock.advance(minutes=5)
    assert (await redeem(gql, reissue(services, clock, first), offer["id"]))["userErrors"] == []
    # day 2: nothing. Day 3: a new member and a returning one redeem
    clock.advance(days=2)
    assert (await redeem(gql, reissue(services, clock, second), offer["id"]))["userErrors"] == []
    assert (await redeem(gql, reissue(services, clock, first), offer["id"]))["userErrors"] == []
    owner = reissue(services, clock, shop["owner"], "MEMBER", "MERCHANT")

    days = (await gql.ok(ANALYTICS, {"id": shop["id"], "from": "2026-06-01", "to": "2026-06-03", "granularity": "DAY"},
                         token=owner["token"]))["merchant"]["analytics"]
    assert days == [
        {"start": "2026-06-01", "redemptions": 1, "pointsReceived": 100, "newMembers": 1, "returningMembers": 0,
         "actions": 1, "gramsCo2e": grams, "campaignSpend": 20},
        {"start": "2026-06-02", "redemptions": 0, "pointsReceived": 0, "newMembers": 0, "returningMembers": 0,
         "actions": 0, "gramsCo2e": 0, "campaignSpend": 0},
        {"start": "2026-06-03", "redemptions": 2, "pointsReceived": 200, "newMembers": 1, "returningMembers": 1,
         "actions": 0, "gramsCo2e": 0, "campaignSpend": 0},
    ]
    months = (await gql.ok(ANALYTICS, {"id": shop["id"], "from": "2026-05-15", "to": "2026-06-20", "granularity": "MONTH"},
                           token=owner["token"]))["merchant"]["analytics"]
    assert months == [
        {"start": "2026-05-01", "redemptions": 0, "pointsReceived": 0, "newMembers": 0, "returningMembers": 0,
         "actions": 0, "gramsCo2e": 0, "campaignSpend": 0},
        {"start": "2026-06-01", "redemptions": 3, "pointsReceived": 300, "newMembers": 2, "returningMembers": 0,
         "actions": 1, "gramsCo2e": grams, "campaignSpend": 20},
    ]
    results = (await gql.ok(CAMPAIGN, {"id": campaign["id"]}, token=owner["token"]))["campaign"]["results"]
    assert results == {"bonuses": 1, "bonusPoints": 20, "members": 1, "actions": 1, "gramsCo2e": grams,
                       "redemptionsAfter": 2, "pointsAfter": 200}


@pytest.mark.parametrize(("variables", "code"), [
    ({"from": "2026-01-01", "to": "2026-06-01", "granularity": "DAY"}, "RANGE_TOO_LONG"),
    ({"from": "2024-01-01", "to": "2026-06-01", "granularity": "MONTH"}, "RANGE_TOO_LONG"),
    ({"from": "2026-06-02", "to": "2026-06-01", "granularity": "DAY"}, "BAD_USER_INPUT"),
    ({"from": "1900-01-01", "to": "1900-01-02", "granularity": "DAY"}, "BAD_USER_INPUT"),
])
async def test_bad_ranges_are_typed_errors(gql, services, clock, admin, variables, code):
    shop = await make_merchant(gql, services, clock, admin)
    body = await gql(ANALYTICS, {"id": shop["id"], **variables}, token=shop["token"])
    assert body["errors"][0]["extensions"]["code"] == code, body


async def test_analytics_are_for_the_merchants_staff(gql, services, clock, admin):
    shop = await make_merchant(gql, services, clock, admin)
    other = await make_merchant(gql, services, clock, admin)
    body = await gql(ANALYTICS, {"id": shop["id"], "from": "2026-06-01", "to": "2026-06-01", "granularity": "DAY"},
                     token=other["token"])
    assert body["errors"][0]["extensions"]["code"] == "FORBIDDEN"
