"""Merchant-funded campaigns: funding from the merchant's points, bonuses for approved actions done at the
merchant (promotional points, no CO2e), per-member limits, the end date, the close job, bad input."""

import asyncio
import uuid
from collections import Counter

import pytest
from sqlalchemy import func, select

from jingtan_api.accounts.models import Account, LedgerTransaction
from jingtan_api.actions.models import Action
from jingtan_api.campaigns.jobs import close_due_campaigns
from jingtan_api.campaigns.models import Campaign, CampaignBonus
from jingtan_api.jobs import registered_jobs
from tests.growth_helpers import (
    CAMPAIGN, add_station, create_campaign, fund_merchant, invariants, merchant_balance,
    recycling_settings, submit_drop,
)
from tests.offers_helpers import balance, make_member, make_merchant, reissue

C, B = Campaign.__table__, CampaignBonus.__table__
TX, A, ACT = LedgerTransaction.__table__, Account.__table__, Action.__table__


@pytest.fixture
def settings_overrides():
    return recycling_settings()


async def _setup(gql, services, clock, admin, *, funds=1000, **campaign):
    merchant = await make_merchant(gql, services, clock, admin)
    await fund_merchant(services, clock, merchant["id"], funds)
    assert (await add_station(gql, merchant, "ST-GREEN-1"))["userErrors"] == []
    payload = await create_campaign(gql, clock, merchant, **campaign)
    assert payload["userErrors"] == [], payload
    return merchant, payload["campaign"]


async def _tx_kinds(services) -> Counter:
    async with services.db.read() as conn:
        return Counter(r.kind for r in await conn.execute(select(TX.c.kind)))


async def test_bonus_for_an_action_at_the_merchants_station(gql, services, clock, admin):
    merchant, campaign = await _setup(gql, services, clock, admin)
    assert campaign["fundedPoints"] == 100 and campaign["budgetLeft"] == 100 and campaign["status"] == "ACTIVE"
    assert await merchant_balance(services, merchant["id"]) == 900
    member = await make_member(services, clock)

    out = await submit_drop(gql, member["token"], clock)
    assert out["action"]["status"] == "APPROVED", out
    points = out["action"]["calculation"]["points"]
    assert await balance(services, member["pk"]) == points + 20
    # a second action: the per-member limit (1) stops the bonus; the action itself is credited as usual
    again = await submit_drop(gql, member["token"], clock)
    assert await balance(services, member["pk"]) == 2 * points + 20
    assert again["action"]["status"] == "APPROVED"
    # elsewhere: no bonus
    other = await make_member(services, clock)
    await submit_drop(gql, other["token"], clock, station="ST-ELSEWHERE")
    assert await balance(services, other["pk"]) == points

    data = await gql.ok(CAMPAIGN, {"id": campaign["id"]}, token=merchant["token"])
    c = data["campaign"]
    assert c["budgetLeft"] == 80 and c["bonusesPaid"] == 1
    assert c["results"]["bonuses"] == 1 and c["results"]["bonusPoints"] == 20 and c["results"]["members"] == 1
    grams = out["action"]["calculation"]["gramsCo2e"]
    assert c["results"]["gramsCo2e"] == grams  # the rewarded action's own grams
    # promotional points carry no CO2e: the member's grams are their actions' grams only
    async with services.db.read() as conn:
        total = (await conn.execute(select(func.sum(ACT.c.grams_co2e)).where(ACT.c.user_id == member["pk"]))).scalar_one()
    assert total == 2 * grams
    assert (await _tx_kinds(services))["CAMPAIGN_BONUS"] == 1
    assert await invariants(services) == []


async def test_evidence_naming_the_merchant_by_global_id(gql, services, clock, admin):
    merchant, campaign = await _setup(gql, services, clock, admin, funds=5000, budget=2000, bonusPoints=None, bonusPercent=100, perMemberLimit=5)
    member = await make_member(services, clock)
    out = await submit_drop(gql, member["token"], clock, station="ANY-STATION", source=f"merchant:{merchant['id']}")
    points = out["action"]["calculation"]["points"]
    assert await balance(services, member["pk"]) == 2 * points  # double points
    # a malformed or unknown merchant id names nobody
    await submit_drop(gql, member["token"], clock, station="ANY-STATION", source="merchant:not-an-id")
    assert await balance(services, member["pk"]) == 3 * points
    assert await invariants(services) == []


async def test_pending_action_gets_the_bonus_only_when_approved(gql, services, clock, admin):
    merchant, campaign = await _setup(gql, services, clock, admin)
    member = await make_member(services, clock)
    # unsigned and worth more than the review threshold: NEEDS_REVIEW, no bonus
    pending = await submit_drop(gql, member["token"], clock, grams=5000)
    assert pending["action"]["status"] == "NEEDS_REVIEW"
    rejected = await submit_drop(gql, member["token"], clock, grams=5000)
    assert await balance(services, member["pk"]) == 0
    review = "mutation($i: ReviewActionInput!) { reviewAction(input: $i) { action { status } userErrors { code } } }"
    await gql.ok(review, {"i": {"actionId": rejected["action"]["id"], "decision": "REJECT", "reason": "bad receipt"}},
                 token=admin["token"])
    assert await balance(services, member["pk"]) == 0
    done = await gql.ok(review, {"i": {"actionId": pending["action"]["id"], "decision": "APPROVE", "reason": "checked"}},
                        token=admin["token"])
    assert done["reviewAction"]["action"]["status"] == "APPROVED"
    assert await balance(services, member["pk"]) == 1750 + 20
    assert await invariants(services) == []


async def test_budget_above_the_merchants_balance_is_refused_and_nothing_written(gql, services, clock, admin):
    merchant = await make_merchant(gql, services, clock, admin)
    await fund_merchant(services, clock, merchant["id"], 50)
    before = (await _tx_kinds(services), await _count(services, C), await _count(services, A))
    payload = await create_campaign(gql, clock, merchant, budget=51)
    assert payload["campaign"] is None and [e["code"] for e in payload["errors"]] == ["INSUFFICIENT_POINTS"]
    assert (await _tx_kinds(services), await _count(services, C), await _count(services, A)) == before
    assert await merchant_balance(services, merchant["id"]) == 50
    assert await invariants(services) == []


async def _count(services, table) -> int:
    async with services.db.read() as conn:
        return (await conn.execute(select(func.count()).select_from(table))).scalar_one()


@pytest.mark.parametrize(("patch", "code", "field"), [
    ({"bonusPercent": 100}, "BAD_USER_INPUT", "bonusPoints"),  # both bonus kinds
    ({"bonusPoints": None}, "BAD_USER_INPUT", "bonusPoints"),  # neither
    ({"bonusPoints": 0}, "BAD_USER_INPUT", "bonusPoints"),
    ({"perMemberLimit": 0}, "BAD_USER_INPUT", "perMemberLimit"),
    ({"budget": 0}, "BAD_USER_INPUT", "budget"),
    ({"budget": -5}, "BAD_USER_INPUT", "budget"),
    ({"endsAt": "2026-01-01T00:00:00+00:00"}, "INVALID_WINDOW", "endsAt"),
    ({"endsAt": "2028-06-01T00:00:00+00:00"}, "INVALID_WINDOW", "endsAt"),
    ({"titleZh": "  "}, "BAD_USER_INPUT", "titleZh"),
    ({"actionTypeCode": "teleportation"}, "ACTION_TYPE_DISABLED", "actionTypeCode"),
])
async def test_bad_campaign_input_writes_nothing(gql, services, clock, admin, patch, code, field):
    merchant = await make_merchant(gql, services, clock, admin)
    await fund_merchant(services, clock, merchant["id"], 1000)
    before = (await _tx_kinds(services), await _count(services, C), await _count(services, A))
    payload = await create_campaign(gql, clock, merchant, **patch)
    assert payload["campaign"] is None
    assert payload["userErrors"][0]["code"] == code and payload["userErrors"][0]["field"] == ["input", field], payload
    assert (await _tx_kinds(services), await _count(services, C), await _count(services, A)) == before


async def test_only_the_merchants_staff_fund_its_campaigns(gql, services, clock, admin):
    merchant = await make_merchant(gql, services, clock, admin)
    other = await make_merchant(gql, services, clock, admin)
    await fund_merchant(services, clock, merchant["id"], 1000)
    payload = await create_campaign(gql, clock, other, merchantId=merchant["id"])
    assert payload["userErrors"][0]["code"] == "FORBIDDEN"
    member = await make_member(services, clock)
    payload = await create_campaign(gql, clock, member, merchantId=merchant["id"])
    assert payload["userErrors"][0]["code"] == "FORBIDDEN"
    assert await _count(services, C) == 0 and await merchant_balance(services, merchant["id"]) == 1000


async def test_replayed_creation_funds_once(gql, services, clock, admin):
    merchant = await make_merchant(gql, services, clock, admin)
    await fund_merchant(services, clock, merchant["id"], 1000)
    key = uuid.uuid4().hex
    first = await create_campaign(gql, clock, merchant, idempotencyKey=key)
    second = await create_campaign(gql, clock, merchant, idempotencyKey=key)
    assert second["replayed"] and second["campaign"]["id"] == first["campaign"]["id"]
    assert await merchant_balance(services, merchant["id"]) == 900


TOP_UP = """mutation($i: TopUpCampaignInput!) { topUpCampaign(input: $i) { campaign { budgetLeft fundedPoints status }
  userErrors { code field } errors { code } } }"""
END = """mutation($i: EndCampaignInput!) { endCampaign(input: $i) { campaign { status budgetLeft refundedPoints }
  userErrors { code field } } }"""


async def test_top_up_end_early_and_no_bonus_after_the_end(gql, services, clock, admin):
    merchant, campaign = await _setup(gql, services, clock, admin)
    up = await gql.ok(TOP_UP, {"i": {"campaignId": campaign["id"], "amount": 50, "idempotencyKey": "t1"}},
                      token=merchant["token"])
    assert up["topUpCampaign"]["campaign"]["budgetLeft"] == 150
    too_much = await gql.ok(TOP_UP, {"i": {"campaignId": campaign["id"], "amount": 10_000, "idempotencyKey": "t2"}},
                            token=merchant["token"])
    assert too_much["topUpCampaign"]["errors"] == [{"code": "INSUFFICIENT_POINTS"}]
    assert await merchant_balance(services, merchant["id"]) == 850
    member = await make_member(services, clock)
    await submit_drop(gql, member["token"], clock)
    ended = await gql.ok(END, {"i": {"campaignId": campaign["id"]}}, token=merchant["token"])
    assert ended["endCampaign"]["campaign"] == {"status": "ENDED", "budgetLeft": 0, "refundedPoints": 130}
    assert await merchant_balance(services, merchant["id"]) == 980
    again = await gql.ok(END, {"i": {"campaignId": campaign["id"]}}, token=merchant["token"])
    assert again["endCampaign"]["userErrors"][0]["code"] == "CAMPAIGN_ENDED"
    late = await gql.ok(TOP_UP, {"i": {"campaignId": campaign["id"], "amount": 5, "idempotencyKey": "t3"}},
                        token=merchant["token"])
    assert late["topUpCampaign"]["errors"] == [{"code": "CAMPAIGN_ENDED"}]
    second = await make_member(services, clock)
    out = await submit_drop(gql, second["token"], clock)
    assert await balance(services, second["pk"]) == out["action"]["calculation"]["points"]
    assert await merchant_balance(services, merchant["id"]) == 980
    assert await invariants(services) == []


async def test_close_job_returns_the_unspent_budget_once(gql, services, clock, admin, app):
    assert "campaign_close" in {job.name for job in registered_jobs()}
    merchant, campaign = await _setup(gql, services, clock, admin)
    member = await make_member(services, clock)
    await submit_drop(gql, member["token"], clock)
    clock.advance(days=8)
    assert await close_due_campaigns(services, clock()) == {"closed": 1, "returned": 80}
    assert await close_due_campaigns(services, clock()) == {"closed": 0, "returned": 0}
    assert await merchant_balance(services, merchant["id"]) == 980
    owner = reissue(services, clock, merchant["owner"], "MEMBER", "MERCHANT")
    data = await gql.ok(CAMPAIGN, {"id": campaign["id"]}, token=owner["token"])
    assert data["campaign"]["status"] == "ENDED" and data["campaign"]["refundedPoints"] == 80
    # ended campaigns are the merchant's business: not public any more
    assert (await gql.ok(CAMPAIGN.replace("results { bonuses bonusPoints members actions gramsCo2e redemptionsAfter pointsAfter }", ""),
                         {"id": campaign["id"]}))["campaign"] is None
    assert await invariants(services) == []


async def test_a_bonus_is_never_paid_beyond_the_end_date(gql, services, clock, admin):
    merchant, campaign = await _setup(gql, services, clock, admin)
    clock.advance(days=7, seconds=1)  # past endsAt, before the close job ran
    member = await make_member(services, clock)
    out = await submit_drop(gql, member["token"], clock)
    assert await balance(services, member["pk"]) == out["action"]["calculation"]["points"]


async def test_twenty_parallel_claims_for_the_last_bonus(gql, services, clock, admin, app):
    from jingtan_api.testing import GraphQLClient

    merchant, campaign = await _setup(gql, services, clock, admin, budget=20)  # exactly one bonus
    members = [await make_member(services, clock) for _ in range(20)]

    async def claim(m):
        client = GraphQLClient(app)
        try:
            return await submit_drop(client, m["token"], clock)
        finally:
            await client.aclose()

    results = await asyncio.gather(*(claim(m) for m in members))
    assert all(r["action"]["status"] == "APPROVED" for r in results)
    points = results[0]["action"]["calculation"]["points"]
    balances = sorted([await balance(services, m["pk"]) for m in members])
    assert balances == [points] * 19 + [points + 20]
    async with services.db.read() as conn:
        assert (await conn.execute(select(func.count()).select_from(B))).scalar_one() == 1
    data = await gql.ok(CAMPAIGN, {"id": campaign["id"]}, token=merchant["token"])
    assert data["campaign"]["budgetLeft"] == 0
    assert await invariants(services) == []
