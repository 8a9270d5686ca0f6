"""Executes every merchants' growth operation of the merchant console, the member app and the admin screens
(schema/operations/{merchant,member,admin}/) in one story: a station, a campaign, a bonus, a targeted offer,
near me, analytics, a logo, a certification, the early end of the campaign."""

import io
import uuid
from datetime import timedelta
from pathlib import Path

import pytest
from PIL import Image

from tests.growth_helpers import fund_merchant, recycling_settings, submit_drop
from tests.offers_helpers import PROFILE, make_admin, make_member, reissue

OPERATIONS = Path(__file__).resolve().parent.parent / "schema" / "operations"
GROWTH = {
    "merchant": {"CreateCampaign", "TopUpCampaign", "EndCampaign", "MerchantCampaigns", "AddMerchantStation",
                 "SetOfferSegment", "MerchantAnalytics", "RequestImageUpload"},
    "member": {"MerchantsNearMe", "OffersNearMe", "RunningCampaigns"},
    "admin": {"CertifyMerchant"},
}


@pytest.fixture
def settings_overrides(tmp_path):
    return {**recycling_settings(), "merchants": {"media_dir": str(tmp_path / "media")}}


@pytest.fixture
async def run(gql):
    executed: set[tuple[str, str]] = set()

    async def _run(area: str, name: str, variables: dict | None = None, *, token: str | None = None) -> dict:
        text = (OPERATIONS / area / f"{name}.graphql").read_text(encoding="utf-8")
        data = await gql.ok(text, variables or {}, token=token)
        for value in data.values():
            if isinstance(value, dict) and "userErrors" in value:
                assert value["userErrors"] == [], (name, value["userErrors"])
        executed.add((area, name))
        return data

    _run.executed = executed
    return _run


async def test_merchant_growth_story(run, gql, services, clock):
    admin = await make_admin(services, clock)
    owner = await make_member(services, clock, name="店长 Owner")
    member = await make_member(services, clock, name="韩梅梅 Han Meimei")
    now = clock()
    created = await run("admin", "CreateMerchant", {"input": {"profile": PROFILE, "ownerUserId": owner["id"]}},
                        token=admin["token"])
    merchant_id = created["createMerchant"]["merchant"]["id"]
    owner = reissue(services, clock, owner, "MEMBER", "MERCHANT")
    await fund_merchant(services, clock, merchant_id, 500)  # points its redemptions brought

    await run("merchant", "AddMerchantStation", {"input": {"code": "ST-HENGSHAN", "nameZh": "衡山路回收点",
                                                           "nameEn": "Hengshan Rd station"}}, token=owner["token"])
    campaign = (await run("merchant", "CreateCampaign", {"input": {
        "titleZh": "自带杯/回收 +20 积分", "titleEn": "Recycle here: +20 points", "actionTypeCode": "recycling",
        "bonusPoints": 20, "perMemberLimit": 2, "startsAt": (now - timedelta(hours=1)).isoformat(),
        "endsAt": (now + timedelta(days=7)).isoformat(), "budget": 200, "idempotencyKey": uuid.uuid4().hex,
    }}, token=owner["token"]))["createCampaign"]["campaign"]
    assert campaign["merchant"]["pointsBalance"] == 300 and campaign["budgetLeft"] == 200
    topped = await run("merchant", "TopUpCampaign", {"input": {"campaignId": campaign["id"], "amount": 100,
                                                               "idempotencyKey": uuid.uuid4().hex}}, token=owner["token"])
    assert topped["topUpCampaign"]["campaign"]["budgetLeft"] == 300

    running = await run("member", "RunningCampaigns", {"merchantId": merchant_id}, token=member["token"])
    assert [e["node"]["titleEn"] for e in running["campaigns"]["edges"]] == ["Recycle here: +20 points"]
    out = await submit_drop(gql, member["token"], clock, station="ST-HENGSHAN")
    assert out["action"]["status"] == "APPROVED"

    offer = (await gql.ok(
        "mutation($i: CreateOfferInput!) { createOffer(input: $i) { offer { id } userErrors { code } } }",
        {"i": {"titleZh": "老顾客燕麦拿铁", "titleEn": "Regulars' oat latte", "pointsPrice": 50, "totalStock": 10,
               "startsAt": now.isoformat(), "endsAt": (now + timedelta(days=30)).isoformat(), "status": "ACTIVE"}},
        token=owner["token"]))["createOffer"]["offer"]
    seg = await run("merchant", "SetOfferSegment", {"input": {"offerId": offer["id"], "rules": [{"kind": "PAST_CUSTOMERS"}]}},
                    token=owner["token"])
    assert seg["setOfferSegment"]["offer"]["segment"][0]["kind"] == "PAST_CUSTOMERS"

    grant = (await run("merchant", "RequestImageUpload", {"input": {"ownerId": merchant_id, "slot": "LOGO"}},
                       token=owner["token"]))["requestImageUpload"]
    buf = io.BytesIO()
    Image.new("RGB", (64, 64), (30, 150, 80)).save(buf, format="PNG")
    assert (await gql.http.post(grant["uploadUrl"], content=buf.getvalue())).status_code == 201
    await run("admin", "CertifyMerchant", {"input": {"merchantId": merchant_id, "level": "GOLD",
                                                     "notes": "Audit 2026-06: no single-use cups / 无一次性杯", "validDays": 365}},
              token=admin["token"])

    near = {"latitude": PROFILE["latitude"], "longitude": PROFILE["longitude"] + 0.01, "radiusMeters": 5000}
    shops = await run("member", "MerchantsNearMe", {"near": near}, token=member["token"])
    edge = shops["merchantsNear"]["edges"][0]
    assert edge["node"]["id"] == merchant_id and 900 < edge["distanceMeters"] < 1000
    assert edge["node"]["logo"]["url"].startswith("/media/") and edge["node"]["certification"]["level"] == "GOLD"
    offers = await run("member", "OffersNearMe", {"near": near}, token=member["token"])
    node = offers["offersNear"]["edges"][0]["node"]
    assert node["titleEn"] == "Regulars' oat latte" and node["merchantCertification"] == {"level": "GOLD"}
    stranger = await make_member(services, clock)
    assert (await run("member", "OffersNearMe", {"near": near}, token=stranger["token"]))["offersNear"]["totalCount"] == 0

    mine = await run("merchant", "MerchantCampaigns", token=owner["token"])
    node = mine["viewer"]["merchant"]["campaigns"]["edges"][0]["node"]
    assert node["bonusesPaid"] == 1 and node["results"]["bonusPoints"] == 20 and node["budgetLeft"] == 280
    assert mine["viewer"]["merchant"]["stations"][0]["code"] == "ST-HENGSHAN"
    day = now.date().isoformat()
    stats = await run("merchant", "MerchantAnalytics", {"from": day, "to": day}, token=owner["token"])
    assert stats["viewer"]["merchant"]["analytics"][0]["campaignSpend"] == 20
    ended = await run("merchant", "EndCampaign", {"input": {"campaignId": campaign["id"]}}, token=owner["token"])
    assert ended["endCampaign"]["campaign"]["refundedPoints"] == 280

    assert run.executed == {(area, name) for area, names in GROWTH.items() for name in names} | {("admin", "CreateMerchant")}


async def test_demo_data_has_a_running_bilingual_campaign(gql, services, clock):
    from jingtan_api.demo import seed_demo

    assert await seed_demo(services, if_empty=True) == 0
    data = await gql.ok((OPERATIONS / "member" / "RunningCampaigns.graphql").read_text(encoding="utf-8"))
    [edge] = data["campaigns"]["edges"]
    node = edge["node"]
    assert node["titleZh"] == "本店回收，积分翻倍" and node["titleEn"] == "Recycle at our station: double points"
    assert node["bonusPercent"] == 100 and node["budgetLeft"] == 600 and node["merchant"]["nameEn"] == "Green Leaf Café"
    cert = await gql.ok("query($id: ID!) { merchant(id: $id) { certification { level } } }", {"id": node["merchant"]["id"]})
    assert cert["merchant"]["certification"]["level"] == "GOLD"
