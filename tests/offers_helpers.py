"""Helpers for the offers tests: cheap members with points, a merchant with staff, offers."""

import uuid
from datetime import timedelta

from sqlalchemy import func, select

from jingtan_api.users import service as users_service
from jingtan_api.accounts import service as ledger
from jingtan_api.auth.permissions import MEMBER, MERCHANT
from jingtan_api.graphql.relay import to_global_id
from jingtan_api.offers.models import Offer
from jingtan_api.redemptions import service as redemptions_service
from jingtan_api.redemptions.models import Redemption

PASSWORD = "Green-leaf-2026"


async def make_member(services, clock, *, points: int = 0, name: str = "会员 Member") -> dict:
    """Register directly through the service and mint an access token (no argon2 login round trip)."""
    email = f"m-{uuid.uuid4().hex[:10]}@example.cn"
    user_id = await users_service.register(services, email=email, phone=None, password=PASSWORD, display_name=name, now=clock())
    if points:
        await grant(services, clock, user_id, points)
    token, _ = services.access_tokens.issue(user_id, frozenset({MEMBER}), clock())
    return {"pk": user_id, "id": to_global_id("User", user_id), "token": token, "email": email}


async def grant(services, clock, user_id: int, points: int) -> None:
    cfg = services.settings.points
    await services.db.write(
        lambda conn: ledger.adjust_points(
            conn, direction=ledger.GRANT, actor_user_id=user_id, user_id=user_id, amount=points,
            reason="test grant", idempotency_key=uuid.uuid4().hex, max_amount=cfg.max_single_amount,
            lot_expiry_days=cfg.lot_expiry_days, now=clock(),
        )
    )


CREATE_MERCHANT = """
mutation CreateMerchant($input: CreateMerchantInput!) {
  createMerchant(input: $input) {
    merchant { id nameZh nameEn category city status commitments latitude longitude }
    userErrors { code message field }
  }
}
"""

CREATE_OFFER = """
mutation CreateOffer($input: CreateOfferInput!) {
  createOffer(input: $input) {
    offer { id titleZh pointsPrice stock totalStock perMemberLimit status startsAt endsAt }
    userErrors { code message field }
  }
}
"""

REDEEM = """
mutation Redeem($input: RedeemOfferInput!) {
  redeemOffer(input: $input) {
    redemption { id code status quantity points expiresAt }
    account { balance }
    replayed
    userErrors { code message field }
  }
}
"""

CONFIRM = """
mutation Confirm($input: ConfirmRedemptionInput!) {
  confirmRedemption(input: $input) {
    redemption { id status confirmedAt }
    userErrors { code message field }
  }
}
"""

CANCEL = """
mutation Cancel($input: CancelRedemptionInput!) {
  cancelRedemption(input: $input) {
    redemption { id status closedAt }
    userErrors { code message field }
  }
}
"""

PROFILE = {
    "nameZh": "绿叶咖啡",
    "nameEn": "Green Leaf Café",
    "category": "CAFE",
    "city": "上海",
    "district": "徐汇区",
    "address": "衡山路 1 号",
    "latitude": 31.2,
    "longitude": 121.44,
    "commitments": ["自带杯减 2 元 / Bring your own cup", "100% 可降解包装"],
}


async def make_merchant(gql, services, clock, admin, *, profile: dict | None = None) -> dict:
    """An ACTIVE merchant onboarded by the admin, with an owner (staff) who has a MERCHANT token."""
    owner = await make_member(services, clock, name="店长 Owner")
    data = await gql.ok(
        CREATE_MERCHANT,
        {"input": {"profile": {**PROFILE, **(profile or {})}, "ownerUserId": owner["id"]}},
        token=admin["token"],
    )
    payload = data["createMerchant"]
    assert payload["userErrors"] == [], payload
    token, _ = services.access_tokens.issue(owner["pk"], frozenset({MEMBER, MERCHANT}), clock())
    return {"id": payload["merchant"]["id"], "owner": {**owner, "token": token}, "token": token}


async def make_offer(gql, clock, merchant: dict, **fields) -> dict:
    now = clock()
    values = {
        "titleZh": "燕麦拿铁",
        "titleEn": "Oat latte",
        "pointsPrice": 100,
        "totalStock": 10,
        "perMemberLimit": 5,
        "startsAt": (now - timedelta(days=1)).isoformat(),
        "endsAt": (now + timedelta(days=30)).isoformat(),
        "status": "ACTIVE",
        **fields,
    }
    data = await gql.ok(CREATE_OFFER, {"input": values}, token=merchant["token"])
    payload = data["createOffer"]
    assert payload["userErrors"] == [], payload
    return payload["offer"]


async def redeem(gql, member: dict, offer_id: str, *, quantity: int = 1, key: str | None = None) -> dict:
    data = await gql.ok(
        REDEEM,
        {"input": {"offerId": offer_id, "quantity": quantity, "idempotencyKey": key or uuid.uuid4().hex}},
        token=member["token"],
    )
    return data["redeemOffer"]


async def db_state(services, offer_gid: str | None = None) -> dict:
    """Stock, redemption count and ledger invariants straight from the database."""
    from jingtan_api.graphql.relay import decode_id

    O, R = Offer.__table__, Redemption.__table__
    async with services.db.read() as conn:
        state = {
            "redemptions": (await conn.execute(select(func.count()).select_from(R))).scalar_one(),
            "problems": await ledger.check_invariants(conn) + await redemptions_service.check_invariants(conn),
        }
        if offer_gid:
            pk = decode_id(offer_gid, "Offer")
            state["stock"] = (await conn.execute(select(O.c.stock).where(O.c.id == pk))).scalar_one()
    return state


async def balance(services, user_pk: int) -> int:
    async with services.db.read() as conn:
        return (await ledger.accounts_by_user_ids(conn, [user_pk]))[user_pk]["balance"]


async def make_admin(services, clock) -> dict:
    """An admin with a minted token (no login round trip; several can exist in one test, unlike
    conftest's single ``admin`` fixture)."""
    from jingtan_api.auth.permissions import ADMIN

    email = f"admin-{uuid.uuid4().hex[:8]}@example.cn"
    user_id = await users_service.create_admin(
        services,
        email=email, phone=None, password="Whale-carbon-2026", display_name="管理员 Admin", now=clock()
    )
    token, _ = services.access_tokens.issue(user_id, frozenset({MEMBER, ADMIN}), clock())
    return {"pk": user_id, "id": to_global_id("User", user_id), "token": token}


def reissue(services, clock, who: dict, *roles: str) -> dict:
    """A fresh access token after the test clock moved (access tokens live 15 minutes)."""
    token, _ = services.access_tokens.issue(who["pk"], frozenset(roles or (MEMBER,)), clock())
    who["token"] = token
    return who
