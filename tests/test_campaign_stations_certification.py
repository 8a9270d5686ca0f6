"""Stations (what actions name) and green certification: refusals write nothing; the level shows on the
merchant and its offers until it expires; admins and certified volunteers certify."""

import pytest
from sqlalchemy import func, select

from jingtan_api.merchants.models import MerchantCertification, MerchantStation
from tests.growth_helpers import ADD_STATION
from tests.offers_helpers import make_member, make_merchant, make_offer

CERTIFY = """
mutation($i: CertifyMerchantInput!) {
  certifyMerchant(input: $i) { certification { level validUntil } userErrors { code field } errors { code } }
}
"""
SHOWN = "query($m: ID!, $o: ID!) { merchant(id: $m) { certification { level } } offer(id: $o) { merchantCertification { level } } }"


async def _count(services, table) -> int:
    async with services.db.read() as conn:
        return (await conn.execute(select(func.count()).select_from(table))).scalar_one()


@pytest.mark.parametrize(("code", "error"), [("has space", "BAD_USER_INPUT"), ("", "BAD_USER_INPUT"),
                                             ("x" * 65, "BAD_USER_INPUT"), ("站点", "BAD_USER_INPUT")])
async def test_bad_station_codes_write_nothing(gql, services, clock, admin, code, error):
    shop = await make_merchant(gql, services, clock, admin)
    data = await gql.ok(ADD_STATION, {"input": {"code": code}}, token=shop["token"])
    assert data["addMerchantStation"]["errors"] == [{"code": error}]
    assert await _count(services, MerchantStation.__table__) == 0


async def test_a_station_code_belongs_to_one_merchant(gql, services, clock, admin):
    shop, other = await make_merchant(gql, services, clock, admin), await make_merchant(gql, services, clock, admin)
    assert (await gql.ok(ADD_STATION, {"input": {"code": "ST-1"}}, token=shop["token"]))["addMerchantStation"]["errors"] == []
    taken = await gql.ok(ADD_STATION, {"input": {"code": "ST-1"}}, token=other["token"])
    assert taken["addMerchantStation"]["errors"] == [{"code": "STATION_CODE_TAKEN"}]
    member = await make_member(services, clock)
    denied = await gql.ok(ADD_STATION, {"input": {"code": "ST-2", "merchantId": shop["id"]}}, token=member["token"])
    assert denied["addMerchantStation"]["errors"] == [{"code": "FORBIDDEN"}]
    assert await _count(services, MerchantStation.__table__) == 1


async def test_certification_shows_on_merchant_and_offers_until_it_expires(gql, services, clock, admin):
    shop = await make_merchant(gql, services, clock, admin)
    offer = await make_offer(gql, clock, shop)
    ok = await gql.ok(CERTIFY, {"i": {"merchantId": shop["id"], "level": "SILVER", "notes": "现场审核 / on-site audit",
                                      "validDays": 30}}, token=admin["token"])
    assert ok["certifyMerchant"]["certification"]["level"] == "SILVER"
    shown = await gql.ok(SHOWN, {"m": shop["id"], "o": offer["id"]})
    assert shown == {"merchant": {"certification": {"level": "SILVER"}}, "offer": {"merchantCertification": {"level": "SILVER"}}}
    clock.advance(days=31)
    shown = await gql.ok(SHOWN, {"m": shop["id"], "o": offer["id"]})
    assert shown["merchant"]["certification"] is None


@pytest.mark.parametrize(("patch", "code"), [({"notes": "  "}, "BAD_USER_INPUT"), ({"validDays": 0}, "BAD_USER_INPUT"),
                                             ({"validDays": 5000}, "BAD_USER_INPUT")])
async def test_bad_certifications_write_nothing(gql, services, clock, admin, patch, code):
    shop = await make_merchant(gql, services, clock, admin)
    data = await gql.ok(CERTIFY, {"i": {"merchantId": shop["id"], "level": "GOLD", "notes": "audit", **patch}},
                        token=admin["token"])
    assert data["certifyMerchant"]["errors"] == [{"code": code}]
    assert await _count(services, MerchantCertification.__table__) == 0


async def test_only_admins_certify(gql, services, clock, admin):
    shop = await make_merchant(gql, services, clock, admin)
    data = await gql.ok(CERTIFY, {"i": {"merchantId": shop["id"], "level": "GOLD", "notes": "self-certified"}},
                        token=shop["token"])
    assert data["certifyMerchant"]["errors"] == [{"code": "FORBIDDEN"}]
    assert await _count(services, MerchantCertification.__table__) == 0


async def test_certified_volunteers_audit_merchants_trainees_do_not(gql, services, clock, admin):
    from tests.volunteer_helpers import make_volunteer

    shop = await make_merchant(gql, services, clock, admin)
    trainee = await make_volunteer(gql, services, clock, admin, certified=False, name="见习 Trainee")
    refused = await gql.ok(CERTIFY, {"i": {"merchantId": shop["id"], "level": "BRONZE", "notes": "现场审核 / audit"}},
                           token=trainee["token"])
    assert refused["certifyMerchant"]["errors"] == [{"code": "FORBIDDEN"}]
    assert await _count(services, MerchantCertification.__table__) == 0
    certified = await make_volunteer(gql, services, clock, admin, name="认证 Certified")
    ok = await gql.ok(CERTIFY, {"i": {"merchantId": shop["id"], "level": "BRONZE", "notes": "现场审核 / on-site audit"}},
                      token=certified["token"])
    assert ok["certifyMerchant"]["errors"] == [] and ok["certifyMerchant"]["certification"]["level"] == "BRONZE"
    assert await _count(services, MerchantCertification.__table__) == 1
