"""Targeted offers: who sees and may redeem an offer (city, grams avoided, past customers, new members,
organisation and household members), the refusal outside the segment (nothing written), the catalogue's
statement count with segments."""

import uuid
from datetime import timedelta

import pytest
from sqlalchemy import event, func, select

from jingtan_api.accounts.models import LedgerTransaction
from jingtan_api.graphql.relay import to_global_id
from jingtan_api.households import service as households
from jingtan_api.offers.models import OfferSegmentRule
from jingtan_api.organisations import service as organisations
from jingtan_api.redemptions.models import Redemption
from tests.growth_helpers import add_station, invariants, recycling_settings, submit_drop
from tests.offers_helpers import balance, make_member, make_merchant, make_offer, redeem, reissue

SET_SEGMENT = """
mutation SetSegment($input: SetOfferSegmentInput!) {
  setOfferSegment(input: $input) {
    offer { id segment { kind city minGrams maxMemberDays organisationId } }
    rules { kind }
    userErrors { code message field }
    errors { code }
  }
}
"""
TITLES = "query($first: Int) { offers(first: $first) { totalCount edges { node { titleEn } } } }"
OFFER = "query($id: ID!) { offer(id: $id) { id titleEn segment { kind } } }"
R = OfferSegmentRule.__table__


@pytest.fixture
def settings_overrides():
    return recycling_settings()


async def _segment(gql, merchant, offer, rules):
    data = await gql.ok(SET_SEGMENT, {"input": {"offerId": offer["id"], "rules": rules}}, token=merchant["token"])
    return data["setOfferSegment"]


async def _titles(gql, token=None) -> set[str]:
    data = await gql.ok(TITLES, {"first": 100}, token=token)
    titles = {e["node"]["titleEn"] for e in data["offers"]["edges"]}
    assert data["offers"]["totalCount"] == len(titles)
    return titles


async def _world(gql, services, clock, admin):
    shanghai = await make_merchant(gql, services, clock, admin, profile={"city": "上海"})
    beijing = await make_merchant(gql, services, clock, admin, profile={"city": "北京", "nameZh": "北京店"})
    await add_station(gql, shanghai, "ST-SH")
    await add_station(gql, beijing, "ST-BJ")
    org_admin = await make_member(services, clock)
    org_id = await services.db.write(lambda conn: organisations.create_organisation(
        conn, actor_user_id=admin["pk"], profile={"kind": "COMPANY", "name_zh": "绿色公司", "name_en": "Green Co", "city": "上海"},
        admin_user_id=org_admin["pk"], request_id=None, now=clock()))
    offers = {}
    rules = {
        "open": [],
        "city": [{"kind": "CITY", "city": "上海"}],
        "grams": [{"kind": "MIN_GRAMS_AVOIDED", "minGrams": 5000}],
        "past": [{"kind": "PAST_CUSTOMERS"}],
        "new": [{"kind": "NEW_MEMBERS", "maxMemberDays": 30}],
        "org": [{"kind": "ORGANISATION_MEMBERS", "organisationId": to_global_id("Organisation", org_id)}],
        "house": [{"kind": "HOUSEHOLD_MEMBERS"}],
        "combo": [{"kind": "CITY", "city": "上海"}, {"kind": "MIN_GRAMS_AVOIDED", "minGrams": 100_000}],
    }
    for name, rule in rules.items():
        offer = await make_offer(gql, clock, shanghai, titleEn=name, pointsPrice=10, totalStock=50,
                                 endsAt=(clock() + timedelta(days=90)).isoformat())
        payload = await _segment(gql, shanghai, offer, rule)
        assert payload["userErrors"] == [], payload
        assert len(payload["rules"]) == len(rule)
        offers[name] = offer
    return shanghai, beijing, offers, org_admin


async def test_each_viewer_sees_exactly_the_offers_of_their_segments(gql, services, clock, admin):
    shanghai, beijing, offers, org_admin = await _world(gql, services, clock, admin)
    veteran = await make_member(services, clock, points=100)
    clock.advance(days=40)  # the veteran is no longer new; tokens are re-issued after the jump
    for who in (veteran, org_admin, shanghai["owner"]):
        reissue(services, clock, who, *(("MEMBER", "MERCHANT") if who is shanghai["owner"] else ("MEMBER",)))
    out = await submit_drop(gql, veteran["token"], clock, station="ST-SH", grams=2000)  # 7 000 g at the Shanghai shop
    assert out["action"]["status"] == "APPROVED"
    newbie = await make_member(services, clock, points=100)
    family = await make_member(services, clock)
    await services.db.write(lambda conn: households.create_household(conn, user_id=family["pk"], name="张家", now=clock()))
    beijinger = await make_member(services, clock)
    await submit_drop(gql, beijinger["token"], clock, station="ST-BJ", grams=2000)

    assert await _titles(gql) == {"open"}
    assert await _titles(gql, newbie["token"]) == {"open", "new"}
    assert await _titles(gql, veteran["token"]) == {"open", "city", "grams", "past"}
    assert await _titles(gql, family["token"]) == {"open", "new", "house"}
    assert await _titles(gql, beijinger["token"]) == {"open", "new", "grams"}
    assert await _titles(gql, org_admin["token"]) == {"open", "org"}
    # offer(id:) agrees with the catalogue; the merchant's staff see their segmented offers and their rules
    assert (await gql.ok(OFFER, {"id": offers["past"]["id"]}, token=newbie["token"]))["offer"] is None
    assert (await gql.ok(OFFER, {"id": offers["past"]["id"]}, token=veteran["token"]))["offer"]["titleEn"] == "past"
    staff = await gql.ok(OFFER, {"id": offers["combo"]["id"]}, token=shanghai["owner"]["token"])
    assert [r["kind"] for r in staff["offer"]["segment"]] == ["CITY", "MIN_GRAMS_AVOIDED"]

    # redeeming: inside the segment works, outside is refused with NOT_IN_SEGMENT and writes nothing
    ok = await redeem(gql, veteran, offers["past"]["id"])
    assert ok["userErrors"] == [] and ok["redemption"]["status"] == "PENDING"
    before = await _state(services)
    refused = await redeem(gql, newbie, offers["past"]["id"])
    assert refused["redemption"] is None and refused["userErrors"][0]["code"] == "NOT_IN_SEGMENT"
    assert refused["userErrors"][0]["field"] == ["input", "offerId"]
    refused = await redeem(gql, veteran, offers["combo"]["id"])
    assert refused["userErrors"][0]["code"] == "NOT_IN_SEGMENT"
    assert await _state(services) == before
    assert await balance(services, newbie["pk"]) == 100
    assert await invariants(services) == []


async def test_past_customers_means_customers_of_the_offers_merchant(gql, services, clock, admin):
    """A customer of another merchant (one with offers of its own) is not a past customer of this one: the
    rule's EXISTS is correlated to the catalogue's offer row, not to any offer of the table."""
    shanghai, beijing, offers, _ = await _world(gql, services, clock, admin)
    await make_offer(gql, clock, beijing, titleEn="beijing", pointsPrice=10, totalStock=50,
                     endsAt=(clock() + timedelta(days=90)).isoformat())
    beijinger = await make_member(services, clock)
    await submit_drop(gql, beijinger["token"], clock, station="ST-BJ", grams=2000)
    assert "past" not in await _titles(gql, beijinger["token"])
    assert (await gql.ok(OFFER, {"id": offers["past"]["id"]}, token=beijinger["token"]))["offer"] is None
    before = await _state(services)
    refused = await redeem(gql, beijinger, offers["past"]["id"])
    assert refused["redemption"] is None and refused["userErrors"][0]["code"] == "NOT_IN_SEGMENT"
    assert await _state(services) == before
    shanghai_customer = await make_member(services, clock)
    await submit_drop(gql, shanghai_customer["token"], clock, station="ST-SH", grams=2000)
    assert "past" in await _titles(gql, shanghai_customer["token"])


async def _state(services):
    async with services.db.read() as conn:
        return (
            (await conn.execute(select(func.count()).select_from(Redemption.__table__))).scalar_one(),
            (await conn.execute(select(func.count()).select_from(LedgerTransaction.__table__))).scalar_one(),
        )


@pytest.mark.parametrize(("rules", "code"), [
    ([{"kind": "CITY"}], "BAD_USER_INPUT"),
    ([{"kind": "MIN_GRAMS_AVOIDED", "minGrams": 0}], "BAD_USER_INPUT"),
    ([{"kind": "NEW_MEMBERS", "maxMemberDays": 99999}], "BAD_USER_INPUT"),
    ([{"kind": "ORGANISATION_MEMBERS"}], "BAD_USER_INPUT"),
    ([{"kind": "ORGANISATION_MEMBERS", "organisationId": to_global_id("Organisation", 999)}], "NOT_FOUND"),
    ([{"kind": "PAST_CUSTOMERS"}] * 11, "BAD_USER_INPUT"),
])
async def test_bad_segments_are_refused_and_keep_the_old_rules(gql, services, clock, admin, rules, code):
    shop = await make_merchant(gql, services, clock, admin)
    offer = await make_offer(gql, clock, shop, titleEn="x")
    assert (await _segment(gql, shop, offer, [{"kind": "PAST_CUSTOMERS"}]))["userErrors"] == []
    payload = await _segment(gql, shop, offer, rules)
    assert payload["offer"] is None and payload["userErrors"][0]["code"] == code, payload
    async with services.db.read() as conn:
        kinds = [r.kind for r in await conn.execute(select(R.c.kind))]
    assert kinds == ["PAST_CUSTOMERS"]


async def test_only_the_merchants_staff_set_segments(gql, services, clock, admin):
    shop = await make_merchant(gql, services, clock, admin)
    other = await make_merchant(gql, services, clock, admin)
    offer = await make_offer(gql, clock, shop, titleEn="x")
    payload = await _segment(gql, other, offer, [{"kind": "PAST_CUSTOMERS"}])
    assert payload["userErrors"][0]["code"] == "FORBIDDEN"
    async with services.db.read() as conn:
        assert (await conn.execute(select(func.count()).select_from(R))).scalar_one() == 0


async def test_segmented_catalogue_runs_a_bounded_number_of_statements(gql, services, clock, admin):
    shop = await make_merchant(gql, services, clock, admin)
    await add_station(gql, shop, "ST-SH")
    for i in range(30):
        offer = await make_offer(gql, clock, shop, titleEn=f"o{i}")
        kind = ({"kind": "CITY", "city": "上海"}, {"kind": "MIN_GRAMS_AVOIDED", "minGrams": 1}, {"kind": "PAST_CUSTOMERS"})[i % 3]
        await _segment(gql, shop, offer, [kind])
    member = await make_member(services, clock)
    await submit_drop(gql, member["token"], clock, station="ST-SH")
    statements: list[str] = []

    def count(conn, cursor, statement, parameters, context, executemany):
        statements.append(statement)

    engine = services.db.engine.sync_engine
    event.listen(engine, "before_cursor_execute", count)
    try:
        counts = {}
        for size in (5, 30):
            statements.clear()
            query = "query($n: Int) { offers(first: $n) { totalCount edges { node { id titleEn merchant { nameZh } segment { kind } } } } }"
            data = await gql.ok(query, {"n": size}, token=member["token"])
            assert len(data["offers"]["edges"]) == size and data["offers"]["totalCount"] == 30
            counts[size] = len(statements)
    finally:
        event.remove(engine, "before_cursor_execute", count)
    # BEGIN (SQLite), the viewer's user row, the page (segments inside it), totalCount, the merchants, the rules
    assert counts[5] == counts[30] and counts[30] <= 6, (counts, statements)


async def test_redeem_segment_check_uses_the_database_not_the_token(gql, services, clock, admin):
    """A member becomes eligible the moment they act at the merchant (no new token needed)."""
    shop = await make_merchant(gql, services, clock, admin)
    await add_station(gql, shop, "ST-SH")
    offer = await make_offer(gql, clock, shop, titleEn="regulars", pointsPrice=1)
    await _segment(gql, shop, offer, [{"kind": "PAST_CUSTOMERS"}])
    member = await make_member(services, clock, points=10)
    assert (await redeem(gql, member, offer["id"], key=uuid.uuid4().hex))["userErrors"][0]["code"] == "NOT_IN_SEGMENT"
    await submit_drop(gql, member["token"], clock, station="ST-SH")
    assert (await redeem(gql, member, offer["id"]))["userErrors"] == []
