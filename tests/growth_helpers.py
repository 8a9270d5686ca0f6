"""Helpers of the merchants' growth tests (campaigns, segments, near me, analytics, images)."""

import uuid
from datetime import timedelta

from sqlalchemy import func, select

from jingtan_api.accounts import service as ledger
from jingtan_api.campaigns import service as campaigns_service
from jingtan_api.graphql.relay import decode_id
from jingtan_api.merchants.models import Merchant
from jingtan_api.redemptions import service as redemptions_service

CREATE_CAMPAIGN = """
mutation CreateCampaign($input: CreateCampaignInput!) {
  createCampaign(input: $input) {
    campaign { id titleZh titleEn status fundedPoints budgetLeft refundedPoints bonusPoints bonusPercent perMemberLimit
               startsAt endsAt bonusesPaid merchant { id } }
    replayed
    userErrors { code message field }
    errors { code }
  }
}
"""

CAMPAIGN = """
query Campaign($id: ID!) {
  campaign(id: $id) {
    id status fundedPoints budgetLeft refundedPoints bonusesPaid
    results { bonuses bonusPoints members actions gramsCo2e redemptionsAfter pointsAfter }
  }
}
"""

SUBMIT = """
mutation Submit($input: SubmitActionInput!) {
  submitAction(input: $input) {
    action { id status calculation { gramsCo2e points } }
    userErrors { code message field }
  }
}
"""

ADD_STATION = """
mutation AddStation($input: AddMerchantStationInput!) {
  addMerchantStation(input: $input) { station { id code } userErrors { code message field } errors { code } }
}
"""


def recycling_settings() -> dict:
    return {"plugins": {"enabled": ["recycling", "transit"]}}


def drop(clock, *, station="ST-GREEN-1", receipt=None, grams=1000) -> dict:
    return {"material": "PAPER", "weightGrams": grams, "stationId": station,
            "receiptId": receipt or uuid.uuid4().hex[:20], "droppedAt": (clock() - timedelta(minutes=30)).isoformat()}


async def submit_drop(gql, token, clock, *, station="ST-GREEN-1", source=None, grams=1000) -> dict:
    variables = {"input": {"action": {"recycling": drop(clock, station=station, grams=grams)},
                           "idempotencyKey": uuid.uuid4().hex}}
    if source is not None:
        variables["input"]["evidence"] = {"source": source}
    body = await gql(SUBMIT, variables, token=token)
    assert "errors" not in body, body
    return body["data"]["submitAction"]


async def fund_merchant(services, clock, merchant_gid: str, points: int) -> None:
    """Points into the merchant's account (as redemptions would bring), straight through the ledger."""
    pk = decode_id(merchant_gid, "Merchant")

    async def work(conn):
        account = (await conn.execute(select(Merchant.__table__.c.account_id).where(Merchant.__table__.c.id == pk))).scalar_one()
        issuance = await ledger.platform_account_id(conn, ledger.ISSUANCE_CODE)
        await ledger.post_transaction(conn, kind=ledger.GRANT, postings=[ledger.Posting(issuance, -points),
                                      ledger.Posting(account, points)], now=clock(), lot_expiry_days=365, memo="test")

    await services.db.write(work)


async def merchant_balance(services, merchant_gid: str) -> int:
    async with services.db.read() as conn:
        return (await ledger.accounts_by_ids(conn, [await _account(conn, merchant_gid)]))[await _account(conn, merchant_gid)]["balance"]


async def _account(conn, merchant_gid: str) -> int:
    pk = decode_id(merchant_gid, "Merchant")
    return (await conn.execute(select(Merchant.__table__.c.account_id).where(Merchant.__table__.c.id == pk))).scalar_one()


async def add_station(gql, merchant: dict, code: str) -> dict:
    data = await gql.ok(ADD_STATION, {"input": {"code": code, "nameZh": "回收站", "nameEn": "Station"}},
                        token=merchant["token"])
    return data["addMerchantStation"]


async def create_campaign(gql, clock, merchant: dict, **fields) -> dict:
    values = {"titleZh": "回收双倍积分", "titleEn": "Recycle here: bonus points", "bonusPoints": 20, "budget": 100,
              "startsAt": (clock() - timedelta(hours=2)).isoformat(), "endsAt": (clock() + timedelta(days=7)).isoformat(), "idempotencyKey": uuid.uuid4().hex, **fields}
    data = await gql.ok(CREATE_CAMPAIGN, {"input": values}, token=merchant["token"])
    return data["createCampaign"]


async def invariants(services) -> list[str]:
    async with services.db.read() as conn:
        return (await ledger.check_invariants(conn) + await redemptions_service.check_invariants(conn)
                + await campaigns_service.check_invariants(conn))


async def count_rows(services, table) -> int:
    async with services.db.read() as conn:
        return (await conn.execute(select(func.count()).select_from(table))).scalar_one()
