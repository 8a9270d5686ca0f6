"""GraphQL types of redemptions, and of merchants' redemption totals and settlement."""

from datetime import date, datetime
from enum import Enum

import strawberry
from strawberry.types import Info

from jingtan_api.accounts.types import Account
from jingtan_api.graphql.mutations import error_code_enum, user_error_type
from jingtan_api.graphql.relay import Connection, Node, UserError, build_connection, page_args
from jingtan_api.merchants import loaders as merchant_loaders
from jingtan_api.merchants.types import Merchant, can_manage
from jingtan_api.offers import loaders as offer_loaders
from jingtan_api.offers.types import Offer
from jingtan_api.redemptions import loaders, service
from jingtan_api.users.types import User, user_by_id

# --- enums -------------------------------------------------------------------------------------------


@strawberry.enum(description="State of a redemption. / 兑换状态。")
class RedemptionStatus(Enum):
    PENDING = strawberry.enum_value("PENDING", description="Code issued, not yet used. / 待核销。")
    CONFIRMED = strawberry.enum_value("CONFIRMED", description="Code used at the merchant. / 已核销。")
    CANCELLED = strawberry.enum_value("CANCELLED", description="Cancelled by the member; refunded. / 已取消并退还积分。")
    EXPIRED = strawberry.enum_value("EXPIRED", description="Not used in time; refunded. / 已过期并退还积分。")


# --- who may see what --------------------------------------------------------------------------------


async def can_see_redemption(info: Info, row: dict) -> bool:
    viewer = info.context.viewer
    if viewer.user_id is None:
        return False
    if row["member_user_id"] == viewer.user_id:
        return viewer.api_token_id is None or "offers:redeem" in viewer.scopes or "account:read" in viewer.scopes
    return await can_manage(info, row["merchant_id"], "merchant:read")


async def visible_redemptions(info: Info, pks: list[int]) -> dict[int, "Redemption"]:
    rows = [r for r in await loaders.redemptions(info).load_many(pks) if r is not None]
    return {r["id"]: Redemption.from_row(r) for r in rows if await can_see_redemption(info, r)}


# --- object types ------------------------------------------------------------------------------------


@strawberry.type(description="Redemption totals of a merchant. / 商户兑换统计。")
class MerchantStats:
    redeemed_count: int = strawberry.field(description="Live (pending or confirmed) redemptions. / 有效兑换笔数。")
    redeemed_quantity: int = strawberry.field(description="Items in live redemptions. / 有效兑换件数。")
    confirmed_count: int = strawberry.field(description="Redemptions used at the counter. / 已核销笔数。")
    pending_count: int = strawberry.field(description="Codes issued, not yet used. / 待核销笔数。")
    refunded_count: int = strawberry.field(description="Cancelled or expired (refunded). / 已退还笔数。")
    points_received: int = strawberry.field(description="Points of live redemptions. / 收到的积分（不含已退还）。")
    active_offers: int = strawberry.field(description="Offers currently ACTIVE. / 上架中的优惠数。")


@strawberry.type(description="Redemptions created in a settlement range, by status. / 按状态统计的兑换。")
class SettlementStatusCount:
    status: RedemptionStatus = strawberry.field(description="Status now. / 当前状态。")
    count: int = strawberry.field(description="Redemptions. / 笔数。")
    quantity: int = strawberry.field(description="Items. / 件数。")
    points: int = strawberry.field(description="Points charged at redemption. / 积分。")


@strawberry.type(description="One day of a merchant's settlement (merchant's time zone). / 单日结算。")
class SettlementDay:
    day: date = strawberry.field(name="date", description="Calendar day. / 日期。")
    redemptions: int = strawberry.field(description="Redemptions created that day. / 当日兑换笔数。")
    quantity: int = strawberry.field(description="Items redeemed that day. / 当日兑换件数。")
    confirmed: int = strawberry.field(description="Codes confirmed that day. / 当日核销笔数。")
    points_redeemed: int = strawberry.field(description="Points credited by redemptions. / 当日兑换入账积分。")
    points_refunded: int = strawberry.field(description="Points given back by refunds. / 当日退还积分。")
    net_points: int = strawberry.field(description="pointsRedeemed − pointsRefunded. / 当日净积分。")


@strawberry.type(description="What a merchant received over a date range, to reconcile. / 商户结算对账。")
class MerchantSettlement:
    from_date: date = strawberry.field(name="from", description="First day (inclusive). / 开始日期。")
    to_date: date = strawberry.field(name="to", description="Last day (inclusive). / 结束日期。")
    points_received: int = strawberry.field(description="Points credited by redemptions in the range. / 期间兑换入账积分。")
    points_refunded: int = strawberry.field(description="Points refunded in the range. / 期间退还积分。")
    net_points: int = strawberry.field(description="pointsReceived − pointsRefunded. / 期间净积分。")
    balance: int = strawberry.field(description="The merchant account's balance now. / 当前账户余额。")
    by_status: list[SettlementStatusCount] = strawberry.field(description="Redemptions created in the range, by status now.")
    by_day: list[SettlementDay] = strawberry.field(description="Days with activity, oldest first. / 按日明细。")


@strawberry.type(description="A member's redemption: the code to show at the counter. / 兑换记录与兑换码。")
class Redemption(Node):
    quantity: int = strawberry.field(description="Items. / 数量。")
    points: int = strawberry.field(description="Points charged. / 消耗积分。")
    status: RedemptionStatus = strawberry.field(description="State. / 状态。")
    created_at: datetime = strawberry.field(description="When it was redeemed. / 兑换时间。")
    expires_at: datetime = strawberry.field(description="The code must be used before this. / 兑换码有效期。")
    confirmed_at: datetime | None = strawberry.field(description="When the merchant confirmed it. / 核销时间。")
    closed_at: datetime | None = strawberry.field(description="When it was cancelled or expired. / 取消或过期时间。")
    _code: strawberry.Private[str]
    offer_pk: strawberry.Private[int]
    merchant_pk: strawberry.Private[int]
    member_pk: strawberry.Private[int]

    @classmethod
    def from_row(cls, row: dict) -> "Redemption":
        return cls(
            pk=row["id"],
            quantity=row["quantity"],
            points=row["points"],
            status=RedemptionStatus(row["status"]),
            created_at=row["created_at"],
            expires_at=row["expires_at"],
            confirmed_at=row["confirmed_at"],
            closed_at=row["closed_at"],
            _code=row["code"],
            offer_pk=row["offer_id"],
            merchant_pk=row["merchant_id"],
            member_pk=row["member_user_id"],
        )

    @strawberry.field(
        description="Code to show at the counter (10 characters); only the member sees it, so staff cannot "
        "confirm codes of members who are not there. / 兑换码（仅会员本人可见）。"
    )
    def code(self, info: Info) -> str | None:
        return self._code if info.context.viewer.user_id == self.member_pk else None

    @strawberry.field(description="The offer redeemed. / 兑换的优惠。")
    async def offer(self, info: Info) -> Offer:
        return Offer.from_row(await offer_loaders.offers(info).load(self.offer_pk))

    @strawberry.field(description="The merchant. / 商户。")
    async def merchant(self, info: Info) -> Merchant:
        return Merchant.from_row(await merchant_loaders.merchants(info).load(self.merchant_pk))

    @strawberry.field(description="The member who redeemed (their public profile). / 兑换会员。")
    async def member(self, info: Info) -> User | None:
        return await user_by_id(info, self.member_pk)


@strawberry.type(name="RedemptionConnection", description="A page of redemptions (Relay cursor connection). / 兑换记录分页。")
class RedemptionConnection(Connection[Redemption]):
    """Concrete (non-generic): its SDL name ``RedemptionConnection`` is part of the public schema."""


async def redemption_connection(
    info: Info, first: int | None, after: str | None, last: int | None, before: str | None, *,
    member_user_id: int | None = None, merchant_id: int | None = None, status: str | None = None,
) -> "RedemptionConnection":
    ctx = info.context
    args = page_args(info, first, after, last, before)
    page = await ctx.read(
        service.redemptions_page, member_user_id=member_user_id, merchant_id=merchant_id, status=status, args=args
    )
    loaders.redemptions(info).prime_many({r["id"]: r for r in page.rows})
    count = lambda: ctx.read(
        service.redemptions_count, member_user_id=member_user_id, merchant_id=merchant_id, status=status
    )
    return build_connection(page, Redemption.from_row, count=count, type_=RedemptionConnection)


async def redemptions_of_user(
    info: Info, user_id: int, first: int | None, after: str | None, last: int | None, before: str | None
) -> RedemptionConnection:
    return await redemption_connection(info, first, after, last, before, member_user_id=user_id)


# --- inputs and payloads -----------------------------------------------------------------------------


@strawberry.input(description="Redeem an offer with points. / 用积分兑换优惠。")
class RedeemOfferInput:
    offer_id: strawberry.ID = strawberry.field(description="The offer. / 优惠。")
    quantity: int = strawberry.field(default=1, description="Items, >= 1. / 数量。")
    idempotency_key: str = strawberry.field(
        description="Client-chosen unique key; a retry with the same key and input returns the first redemption."
    )


@strawberry.input(description="Confirm a code at the counter (merchant staff or merchant API token). / 核销兑换码。")
class ConfirmRedemptionInput:
    code: str = strawberry.field(description="The member's code (case and dashes ignored). / 兑换码。")


@strawberry.input(description="Cancel an unused redemption; points and stock come back. / 取消兑换。")
class CancelRedemptionInput:
    redemption_id: strawberry.ID = strawberry.field(description="The redemption. / 兑换记录。")


RedemptionErrorCode = error_code_enum(
    "RedemptionErrorCode", ('INSUFFICIENT_POINTS', 'IDEMPOTENCY_KEY_REUSED', 'MERCHANT_NOT_ACTIVE', 'OFFER_NOT_ACTIVE', 'OFFER_NOT_STARTED', 'OFFER_ENDED', 'OUT_OF_STOCK', 'REDEMPTION_LIMIT_REACHED', 'ALREADY_CONFIRMED', 'REDEMPTION_CANCELLED', 'REDEMPTION_EXPIRED', 'CONTACT_NOT_VERIFIED', 'NOT_IN_SEGMENT'),
    description="Codes of the redemption mutations (redeem, confirm, cancel)' userErrors. / 兑换错误代码。",
)
RedemptionError = user_error_type("RedemptionError", RedemptionErrorCode, description="Why one of the redemption mutations (redeem, confirm, cancel) failed. / 兑换错误。")


@strawberry.type(description="Result of `redeemOffer`.")
class RedeemOfferPayload:
    redemption: Redemption | None = strawberry.field(default=None, description="The redemption with its code.")
    account: Account | None = strawberry.field(
        default=None, description="The member's account after it."
    )
    replayed: bool = strawberry.field(default=False, description="True when an earlier identical request's result was returned.")
    user_errors: list[UserError] = strawberry.field(default_factory=list, description="Why it failed.")
    errors: list[RedemptionError] = strawberry.field(default_factory=list, description="The same errors with typed codes. / 错误（类型化代码）。")


@strawberry.type(description="Result of `confirmRedemption` / `cancelRedemption`.")
class RedemptionPayload:
    redemption: Redemption | None = strawberry.field(default=None, description="The redemption.")
    user_errors: list[UserError] = strawberry.field(default_factory=list, description="Why it failed.")
    errors: list[RedemptionError] = strawberry.field(default_factory=list, description="The same errors with typed codes. / 错误（类型化代码）。")
