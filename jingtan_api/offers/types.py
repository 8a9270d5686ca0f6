"""GraphQL types of merchants, offers and redemptions."""

import base64
import binascii
import json
from datetime import date, datetime, timedelta
from enum import Enum
from typing import Annotated, Any

import strawberry
from strawberry.types import Info

from jingtan_api.errors import PermissionDenied, ValidationFailed
from jingtan_api.graphql.relay import (
    MAX_PK,
    Connection,
    Edge,
    Node,
    PageInfo,
    UserError,
    build_connection,
    decode_id,
    page_args,
)
from jingtan_api.accounts.types import Account
from jingtan_api.offers import loaders, service
from jingtan_api.users.types import User, user_by_id, users_loader


# --- enums -------------------------------------------------------------------------------------------


@strawberry.enum(description="What kind of business a merchant is. / 商户类别。")
class MerchantCategory(Enum):
    CAFE = strawberry.enum_value("CAFE", description="Café. / 咖啡馆。")
    BIKE_SHOP = strawberry.enum_value("BIKE_SHOP", description="Bicycle shop or repair. / 自行车店。")
    TRANSIT = strawberry.enum_value("TRANSIT", description="Public transport operator. / 公共交通。")
    GROCERY = strawberry.enum_value("GROCERY", description="Grocery or market. / 生鲜超市。")
    SECOND_HAND = strawberry.enum_value("SECOND_HAND", description="Second-hand goods. / 二手商店。")
    RESTAURANT = strawberry.enum_value("RESTAURANT", description="Restaurant. / 餐厅。")
    OTHER = strawberry.enum_value("OTHER", description="Other. / 其他。")


@strawberry.enum(description="Lifecycle of a merchant. / 商户状态。")
class MerchantStatus(Enum):
    PENDING = strawberry.enum_value("PENDING", description="Applied, waiting for review. / 待审核。")
    ACTIVE = strawberry.enum_value("ACTIVE", description="Approved and trading. / 已启用。")
    REJECTED = strawberry.enum_value("REJECTED", description="Application rejected. / 已拒绝。")
    SUSPENDED = strawberry.enum_value("SUSPENDED", description="Suspended by the platform. / 已暂停。")


@strawberry.enum(description="Lifecycle of an offer. / 优惠状态。")
class OfferStatus(Enum):
    DRAFT = strawberry.enum_value("DRAFT", description="Being prepared; not visible to members. / 草稿。")
    ACTIVE = strawberry.enum_value("ACTIVE", description="Redeemable within its window. / 上架中。")
    PAUSED = strawberry.enum_value("PAUSED", description="Temporarily not redeemable. / 已暂停。")
    ENDED = strawberry.enum_value("ENDED", description="Closed for good. / 已结束。")


@strawberry.enum(description="State of a redemption. / 兑换状态。")
class RedemptionStatus(Enum):
    PENDING = strawberry.enum_value("PENDING", description="Code issued, not yet used. / 待核销。")
    CONFIRMED = strawberry.enum_value("CONFIRMED", description="Code used at the merchant. / 已核销。")
    CANCELLED = strawberry.enum_value("CANCELLED", description="Cancelled by the member; refunded. / 已取消并退还积分。")
    EXPIRED = strawberry.enum_value("EXPIRED", description="Not used in time; refunded. / 已过期并退还积分。")


@strawberry.enum(description="Sort order of the offer catalogue. / 优惠排序方式。")
class OfferOrder(Enum):
    NEWEST = strawberry.enum_value("NEWEST", description="Newest first. / 最新。")
    POINTS_ASC = strawberry.enum_value("POINTS_ASC", description="Cheapest first. / 积分从低到高。")
    POINTS_DESC = strawberry.enum_value("POINTS_DESC", description="Most expensive first. / 积分从高到低。")
    ENDING_SOON = strawberry.enum_value("ENDING_SOON", description="Ending soonest first. / 即将结束。")


# --- who may see what --------------------------------------------------------------------------------


async def viewer_merchant_id(info: Info) -> int | None:
    """The merchant the viewer works for, read from the database (merchant_staff and the user's current
    roles), not from token claims: a user added as staff can act at once, and a user whose MERCHANT role
    an admin removed (setUserRoles) can no longer act for the merchant, even with an unexpired token."""
    user_id = info.context.viewer.user_id
    if user_id is None:
        return None
    user = await users_loader(info).load(user_id)
    if user is None or user["status"] != "ACTIVE" or "MERCHANT" not in user["roles"].split(","):
        return None
    return await loaders.staff_merchant(info).load(user_id)


async def can_manage(info: Info, merchant_id: int, scope: str) -> bool:
    """Admins and the merchant's staff; API tokens additionally need ``scope``."""
    viewer = info.context.viewer
    if viewer.user_id is None:
        return False
    if viewer.api_token_id is not None and scope not in viewer.scopes:
        return False
    if viewer.is_admin:
        return True
    return await viewer_merchant_id(info) == merchant_id


async def require_manage(info: Info, merchant_id: int, scope: str) -> None:
    info.context.viewer.require_user()
    if not await can_manage(info, merchant_id, scope):
        raise PermissionDenied()


async def actor_of(info: Info, scope: str) -> service.Actor:
    """The viewer as a merchant-side actor (staff membership is read from the database, so a user added
    as staff can act before their access token is refreshed; API tokens also need ``scope``)."""
    viewer = info.context.viewer
    user_id = viewer.require_user()
    if viewer.api_token_id is not None:
        viewer.require_scope(scope)
    return service.Actor(user_id=user_id, is_admin=viewer.is_admin, merchant_id=await viewer_merchant_id(info))


def merchant_visible(info: Info, row: dict, managed: bool) -> bool:
    viewer = info.context.viewer
    return row["status"] == service.M_ACTIVE or managed or viewer.is_admin or (
        viewer.user_id is not None and row["owner_user_id"] == viewer.user_id
    )


async def visible_merchants(info: Info, pks: list[int]) -> dict[int, "Merchant"]:
    rows = await loaders.merchants(info).load_many(pks)
    mine = await viewer_merchant_id(info)
    return {
        r["id"]: Merchant.from_row(r)
        for r in rows
        if r is not None and merchant_visible(info, r, r["id"] == mine)
    }


async def visible_offers(info: Info, pks: list[int]) -> dict[int, "Offer"]:
    rows = [r for r in await loaders.offers(info).load_many(pks) if r is not None]
    merchants = await loaders.merchants(info).load_many([r["merchant_id"] for r in rows])
    out = {}
    for row, merchant in zip(rows, merchants, strict=True):
        public = row["status"] != service.DRAFT and merchant is not None and merchant["status"] == service.M_ACTIVE
        if public or await can_manage(info, row["merchant_id"], "merchant:read"):
            out[row["id"]] = Offer.from_row(row)
    return out


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


# --- cursors of the catalogue ------------------------------------------------------------------------


def encode_offer_cursor(order: str, row: dict) -> str:
    key = service.sort_key(order, row)
    raw = json.dumps([order, key.isoformat() if isinstance(key, datetime) else key, row["id"]], separators=(",", ":"))
    return base64.b64encode(raw.encode()).decode()


def decode_offer_cursor(cursor: str | None, order: str) -> tuple[Any, int] | None:
    if cursor is None:
        return None
    invalid = ValidationFailed("Invalid cursor / 游标无效", code="INVALID_CURSOR", field="after")
    try:
        got_order, key, pk = json.loads(base64.b64decode(cursor.encode(), validate=True).decode())
    except (binascii.Error, UnicodeDecodeError, ValueError, TypeError):
        raise invalid from None
    if got_order != order:
        raise ValidationFailed(
            "This cursor belongs to another sort order / 游标与排序方式不符", code="INVALID_CURSOR", field="after"
        )
    if isinstance(pk, bool) or not isinstance(pk, int) or not 0 <= pk <= MAX_PK:
        raise invalid
    if order in (service.NEWEST, service.ENDING_SOON):
        try:
            key = datetime.fromisoformat(key)
        except (TypeError, ValueError):
            raise invalid from None
        if key.utcoffset() is None:
            raise invalid
    elif isinstance(key, bool) or not isinstance(key, int) or not -MAX_PK <= key <= MAX_PK:
        raise invalid
    return key, pk


def offer_connection(
    info: Info, rows: list[dict], order: str, *, has_next: bool, has_previous: bool, flt: service.CatalogueFilter
) -> Connection["Offer"]:
    edges = [Edge(cursor=encode_offer_cursor(order, r), node=Offer.from_row(r)) for r in rows]
    return Connection(
        edges=edges,
        page_info=PageInfo(
            has_next_page=has_next,
            has_previous_page=has_previous,
            start_cursor=edges[0].cursor if edges else None,
            end_cursor=edges[-1].cursor if edges else None,
        ),
        _count=lambda: info.context.read(service.catalogue_count, now=info.context.now(), flt=flt),
    )


def check_first(info: Info, first: int | None) -> int:
    settings = info.context.settings.graphql
    if first is None:
        return settings.default_page_size
    if not 0 <= first <= settings.max_page_size:
        raise ValidationFailed(
            f"first must be between 0 and {settings.max_page_size} / 每页数量须在 0 到 {settings.max_page_size} 之间",
            code="PAGE_SIZE_EXCEEDED", field="first",
        )
    return first


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


@strawberry.type(description="A low-carbon merchant. / 低碳商户。")
class Merchant(Node):
    name_zh: str = strawberry.field(description="Chinese name. / 中文名称。")
    name_en: str = strawberry.field(description="English name (may be empty). / 英文名称。")
    category: MerchantCategory = strawberry.field(description="Kind of business. / 类别。")
    city: str = strawberry.field(description="City. / 城市。")
    district: str = strawberry.field(description="District. / 区。")
    address: str = strawberry.field(description="Street address. / 地址。")
    latitude: float | None = strawberry.field(description="WGS-84 latitude. / 纬度。")
    longitude: float | None = strawberry.field(description="WGS-84 longitude. / 经度。")
    commitments: list[str] = strawberry.field(description="Low-carbon commitments. / 低碳承诺。")
    status: MerchantStatus = strawberry.field(description="Lifecycle state. / 状态。")
    created_at: datetime = strawberry.field(description="When the merchant was created or applied. / 创建时间。")

    @classmethod
    def from_row(cls, row: dict) -> "Merchant":
        return cls(
            pk=row["id"],
            name_zh=row["name_zh"],
            name_en=row["name_en"],
            category=MerchantCategory(row["category"]),
            city=row["city"],
            district=row["district"],
            address=row["address"],
            latitude=row["latitude"],
            longitude=row["longitude"],
            commitments=json.loads(row["commitments"] or "[]"),
            status=MerchantStatus(row["status"]),
            created_at=row["created_at"],
        )

    @strawberry.field(description="Offers of this merchant, newest first. Staff and admins see every offer (drafts, paused, sold out); others only redeemable ones. / 商户的优惠。")
    async def offers(
        self, info: Info, first: int | None = None, after: str | None = None
    ) -> Connection["Offer"]:
        ctx = info.context
        n = check_first(info, first)
        after_key = decode_offer_cursor(after, service.NEWEST)
        manager = await can_manage(info, self.pk, "merchant:read")
        flt = service.CatalogueFilter(merchant_id=self.pk, include_unavailable=manager)
        rows, has_next = await ctx.read(
            service.catalogue_page, now=ctx.now(), order=service.NEWEST, first=n, after=after_key, flt=flt
        )
        loaders.offers(info).prime_many({r["id"]: r for r in rows})
        return offer_connection(info, rows, service.NEWEST, has_next=has_next, has_previous=after is not None, flt=flt)

    @strawberry.field(description="Redemption totals (staff and admins). / 兑换统计（员工与管理员）。")
    async def stats(self, info: Info) -> MerchantStats:
        await require_manage(info, self.pk, "merchant:read")
        s = await loaders.merchant_stats(info).load(self.pk)
        return MerchantStats(
            redeemed_count=s.redemptions, redeemed_quantity=s.redeemed_quantity, confirmed_count=s.confirmed,
            pending_count=s.pending, refunded_count=s.refunded, points_received=s.points_received,
            active_offers=s.active_offers,
        )

    @strawberry.field(description="Balance of the merchant's points account (staff and admins). / 商户积分余额。")
    async def points_balance(self, info: Info) -> int | None:
        await require_manage(info, self.pk, "merchant:read")
        return await loaders.merchant_balances(info).load(self.pk)

    @strawberry.field(description="Redemptions at this merchant, newest first (staff and admins). / 商户的兑换记录。")
    async def redemptions(
        self, info: Info, first: int | None = None, after: str | None = None, status: RedemptionStatus | None = None
    ) -> "RedemptionConnection":
        await require_manage(info, self.pk, "merchant:read")
        return await redemption_connection(
            info, first, after, merchant_id=self.pk, status=status.value if status else None
        )

    @strawberry.field(description="Settlement for days `from`..`to` (inclusive, at most 92 days; staff and admins). / 结算对账。")
    async def settlement(
        self,
        info: Info,
        from_: Annotated[date, strawberry.argument(name="from", description="First day (inclusive).")],
        to: Annotated[date, strawberry.argument(description="Last day (inclusive).")],
    ) -> MerchantSettlement:
        await require_manage(info, self.pk, "merchant:read")
        ctx = info.context
        s = await ctx.read(
            service.settlement, merchant_id=self.pk, start=from_, end=to,
            offset_minutes=ctx.settings.offers.settlement_utc_offset_minutes,
        )
        return MerchantSettlement(
            from_date=s.start, to_date=s.end, points_received=s.points_received, points_refunded=s.points_refunded,
            net_points=s.points_received - s.points_refunded, balance=s.balance,
            by_status=[SettlementStatusCount(status=RedemptionStatus(r.status), count=r.count, quantity=r.quantity, points=r.points) for r in s.by_status],
            by_day=[
                SettlementDay(
                    day=d.day, redemptions=d.redemptions, quantity=d.quantity, confirmed=d.confirmed,
                    points_redeemed=d.points_redeemed, points_refunded=d.points_refunded,
                    net_points=d.points_redeemed - d.points_refunded,
                )
                for d in s.by_day
            ],
        )


@strawberry.type(description="Something members can redeem with points. / 可用积分兑换的优惠。")
class Offer(Node):
    title_zh: str = strawberry.field(description="Chinese title. / 中文标题。")
    title_en: str = strawberry.field(description="English title. / 英文标题。")
    description_zh: str = strawberry.field(description="Chinese description. / 中文描述。")
    description_en: str = strawberry.field(description="English description. / 英文描述。")
    terms: str = strawberry.field(description="Terms of use. / 使用条款。")
    image_url: str | None = strawberry.field(description="https image URL. / 图片地址。")
    points_price: int = strawberry.field(description="Points per item. / 每份所需积分。")
    total_stock: int = strawberry.field(description="Items offered in total. / 总库存。")
    stock: int = strawberry.field(description="Items left. / 剩余库存。")
    per_member_limit: int = strawberry.field(description="Items one member may hold (pending or used). / 每人限兑份数。")
    starts_at: datetime = strawberry.field(description="Redeemable from. / 开始时间。")
    ends_at: datetime = strawberry.field(description="Redeemable until (exclusive). / 结束时间。")
    status: OfferStatus = strawberry.field(description="Lifecycle state. / 状态。")
    created_at: datetime = strawberry.field(description="Creation time. / 创建时间。")
    updated_at: datetime = strawberry.field(description="Last change. / 更新时间。")
    merchant_pk: strawberry.Private[int]

    @classmethod
    def from_row(cls, row: dict) -> "Offer":
        return cls(
            pk=row["id"],
            title_zh=row["title_zh"],
            title_en=row["title_en"],
            description_zh=row["description_zh"],
            description_en=row["description_en"],
            terms=row["terms"],
            image_url=row["image_url"],
            points_price=row["points_price"],
            total_stock=row["total_stock"],
            stock=row["stock"],
            per_member_limit=row["per_member_limit"],
            starts_at=row["starts_at"],
            ends_at=row["ends_at"],
            status=OfferStatus(row["status"]),
            created_at=row["created_at"],
            updated_at=row["updated_at"],
            merchant_pk=row["merchant_id"],
        )

    @strawberry.field(description="The merchant offering it. / 提供该优惠的商户。")
    async def merchant(self, info: Info) -> Merchant:
        row = await loaders.merchants(info).load(self.merchant_pk)
        return Merchant.from_row(row)

    @strawberry.field(description="Redeemable right now (active, within its window, in stock). / 当前是否可兑换。")
    def available(self, info: Info) -> bool:
        now = info.context.now()
        return self.status == OfferStatus.ACTIVE and self.starts_at <= now < self.ends_at and self.stock > 0

    @strawberry.field(description="Items in live redemptions (staff and admins). / 已兑换件数。")
    async def redeemed_count(self, info: Info) -> int:
        await require_manage(info, self.merchant_pk, "merchant:read")
        return (await loaders.offer_redeemed(info).load(self.pk)) or 0


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
        return Offer.from_row(await loaders.offers(info).load(self.offer_pk))

    @strawberry.field(description="The merchant. / 商户。")
    async def merchant(self, info: Info) -> Merchant:
        return Merchant.from_row(await loaders.merchants(info).load(self.merchant_pk))

    @strawberry.field(description="The member who redeemed (their public profile). / 兑换会员。")
    async def member(self, info: Info) -> User | None:
        return await user_by_id(info, self.member_pk)


@strawberry.type(name="RedemptionConnection", description="A page of redemptions (Relay cursor connection). / 兑换记录分页。")
class RedemptionConnection(Connection[Redemption]):
    """Concrete (non-generic): its SDL name ``RedemptionConnection`` is part of the public schema."""


async def redemption_connection(
    info: Info, first: int | None, after: str | None, *, member_user_id: int | None = None,
    merchant_id: int | None = None, status: str | None = None,
) -> "RedemptionConnection":
    ctx = info.context
    first_n, after_key, _, _ = page_args(info, first, after, None, None)
    rows, has_next = await ctx.read(
        service.redemptions_page, member_user_id=member_user_id, merchant_id=merchant_id, status=status,
        first=first_n, after=after_key,
    )
    loaders.redemptions(info).prime_many({r["id"]: r for r in rows})
    conn = build_connection(
        [Redemption.from_row(r) for r in rows], [r["id"] for r in rows], has_next=has_next, has_previous=after is not None
    )
    count = lambda: ctx.read(
        service.redemptions_count, member_user_id=member_user_id, merchant_id=merchant_id, status=status
    )
    return RedemptionConnection(edges=conn.edges, page_info=conn.page_info, _count=count)


async def merchant_of_user(info: Info, user_id: int) -> Merchant | None:
    """``User.merchant``: the merchant the user works for (the user and admins)."""
    merchant_id = await loaders.staff_merchant(info).load(user_id)
    if merchant_id is None:
        return None
    row = await loaders.merchants(info).load(merchant_id)
    return Merchant.from_row(row) if row else None


async def redemptions_of_user(info: Info, user_id: int, first: int | None, after: str | None) -> RedemptionConnection:
    return await redemption_connection(info, first, after, member_user_id=user_id)


# --- inputs and payloads -----------------------------------------------------------------------------


@strawberry.input(description="Merchant profile. / 商户资料。")
class MerchantProfileInput:
    name_zh: str = strawberry.field(description="Chinese name, 1-100 characters. / 中文名称。")
    name_en: str = strawberry.field(default="", description="English name, up to 100 characters. / 英文名称。")
    category: MerchantCategory = strawberry.field(description="Kind of business. / 类别。")
    city: str = strawberry.field(description="City. / 城市。")
    district: str = strawberry.field(default="", description="District. / 区。")
    address: str = strawberry.field(default="", description="Street address. / 地址。")
    latitude: float | None = strawberry.field(default=None, description="WGS-84 latitude, -90..90 (with longitude).")
    longitude: float | None = strawberry.field(default=None, description="WGS-84 longitude, -180..180 (with latitude).")
    commitments: list[str] = strawberry.field(default_factory=list, description="Up to 20 low-carbon commitments. / 低碳承诺。")


def profile_dict(p: Any) -> dict[str, Any]:
    """Input object → service field dict; UNSET fields are left out (partial updates)."""
    out = {}
    for name in ("name_zh", "name_en", "category", "city", "district", "address", "latitude", "longitude", "commitments"):
        value = getattr(p, name, strawberry.UNSET)
        if value is strawberry.UNSET:
            continue
        out[name] = value.value if isinstance(value, Enum) else value
    return out


@strawberry.input(description="Onboard a merchant (admin). / 创建商户（管理员）。")
class CreateMerchantInput:
    profile: MerchantProfileInput = strawberry.field(description="Profile. / 资料。")
    owner_user_id: strawberry.ID | None = strawberry.field(
        default=None, description="User who manages the merchant; becomes staff with the MERCHANT role. / 负责人。"
    )


@strawberry.input(description="Apply to become a merchant. / 申请成为商户。")
class ApplyForMerchantInput:
    profile: MerchantProfileInput = strawberry.field(description="Profile. / 资料。")


@strawberry.input(description="Approve or reject a merchant application (admin). / 审核商户申请。")
class ReviewMerchantApplicationInput:
    merchant_id: strawberry.ID = strawberry.field(description="The pending merchant. / 待审核商户。")
    approve: bool = strawberry.field(description="True to approve, false to reject. / 是否通过。")
    reason: str = strawberry.field(description="Why, 3-500 characters (audit log). / 原因。")


@strawberry.input(description="Suspend or reactivate a merchant (admin). / 暂停或恢复商户（管理员）。")
class SetMerchantStatusInput:
    merchant_id: strawberry.ID = strawberry.field(description="The merchant. / 商户。")
    status: MerchantStatus = strawberry.field(description="SUSPENDED (from ACTIVE) or ACTIVE (from SUSPENDED).")
    reason: str = strawberry.field(description="Why, 3-500 characters (audit log). / 原因。")


@strawberry.input(description="Change a merchant's profile (staff or admin); omitted fields stay. / 修改商户资料。")
class UpdateMerchantInput:
    merchant_id: strawberry.ID = strawberry.field(description="The merchant. / 商户。")
    name_zh: str | None = strawberry.field(default=strawberry.UNSET, description="Chinese name. / 中文名称。")
    name_en: str | None = strawberry.field(default=strawberry.UNSET, description="English name. / 英文名称。")
    category: MerchantCategory | None = strawberry.field(default=strawberry.UNSET, description="Category. / 类别。")
    city: str | None = strawberry.field(default=strawberry.UNSET, description="City. / 城市。")
    district: str | None = strawberry.field(default=strawberry.UNSET, description="District. / 区。")
    address: str | None = strawberry.field(default=strawberry.UNSET, description="Address. / 地址。")
    latitude: float | None = strawberry.field(default=strawberry.UNSET, description="Latitude (give with longitude; null clears).")
    longitude: float | None = strawberry.field(default=strawberry.UNSET, description="Longitude (give with latitude; null clears).")
    commitments: list[str] | None = strawberry.field(default=strawberry.UNSET, description="Low-carbon commitments. / 低碳承诺。")


@strawberry.input(description="Add a staff member to a merchant (admin or the merchant's owner). / 添加商户员工。")
class AddMerchantStaffInput:
    merchant_id: strawberry.ID = strawberry.field(description="The merchant. / 商户。")
    user_id: strawberry.ID = strawberry.field(description="The user to add; they get the MERCHANT role. / 用户。")


@strawberry.input(description="Create an offer (merchant staff or admin). / 创建优惠。")
class CreateOfferInput:
    merchant_id: strawberry.ID | None = strawberry.field(default=None, description="Merchant (default: the one you work for).")
    title_zh: str = strawberry.field(description="Chinese title, 1-100 characters. / 中文标题。")
    title_en: str = strawberry.field(default="", description="English title. / 英文标题。")
    description_zh: str = strawberry.field(default="", description="Chinese description. / 中文描述。")
    description_en: str = strawberry.field(default="", description="English description. / 英文描述。")
    terms: str = strawberry.field(default="", description="Terms of use. / 使用条款。")
    image_url: str | None = strawberry.field(default=None, description="https image URL. / 图片地址。")
    points_price: int = strawberry.field(description="Points per item, > 0. / 每份积分。")
    total_stock: int = strawberry.field(description="Items offered, >= 0. / 总库存。")
    per_member_limit: int = strawberry.field(default=1, description="Items per member, 1-1000. / 每人限兑。")
    starts_at: datetime = strawberry.field(description="Redeemable from. / 开始时间。")
    ends_at: datetime = strawberry.field(description="Redeemable until (exclusive). / 结束时间。")
    status: OfferStatus = strawberry.field(default=OfferStatus.DRAFT, description="DRAFT (default) or ACTIVE.")


_OFFER_FIELDS = (
    "title_zh", "title_en", "description_zh", "description_en", "terms", "image_url", "points_price",
    "total_stock", "per_member_limit", "starts_at", "ends_at",
)


def offer_dict(i: Any) -> dict[str, Any]:
    out = {}
    for name in _OFFER_FIELDS:
        value = getattr(i, name, strawberry.UNSET)
        if value is not strawberry.UNSET:
            out[name] = value
    return out


@strawberry.input(description="Change an offer (its merchant's staff or an admin); omitted fields stay. / 修改优惠。")
class UpdateOfferInput:
    offer_id: strawberry.ID = strawberry.field(description="The offer. / 优惠。")
    title_zh: str | None = strawberry.field(default=strawberry.UNSET, description="Chinese title. / 中文标题。")
    title_en: str | None = strawberry.field(default=strawberry.UNSET, description="English title. / 英文标题。")
    description_zh: str | None = strawberry.field(default=strawberry.UNSET, description="Chinese description.")
    description_en: str | None = strawberry.field(default=strawberry.UNSET, description="English description.")
    terms: str | None = strawberry.field(default=strawberry.UNSET, description="Terms of use. / 使用条款。")
    image_url: str | None = strawberry.field(default=strawberry.UNSET, description="https image URL (null clears).")
    points_price: int | None = strawberry.field(default=strawberry.UNSET, description="Points per item, > 0.")
    total_stock: int | None = strawberry.field(
        default=strawberry.UNSET, description="New total; remaining stock moves by the same difference. / 总库存。"
    )
    per_member_limit: int | None = strawberry.field(default=strawberry.UNSET, description="Items per member.")
    starts_at: datetime | None = strawberry.field(default=strawberry.UNSET, description="Redeemable from.")
    ends_at: datetime | None = strawberry.field(default=strawberry.UNSET, description="Redeemable until.")


@strawberry.input(description="Publish, pause, resume or end an offer. / 上架、暂停、恢复或结束优惠。")
class SetOfferStatusInput:
    offer_id: strawberry.ID = strawberry.field(description="The offer. / 优惠。")
    status: OfferStatus = strawberry.field(
        description="DRAFT→ACTIVE|ENDED, ACTIVE→PAUSED|ENDED, PAUSED→ACTIVE|ENDED. / 目标状态。"
    )


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


@strawberry.input(description="Catalogue filters. / 优惠筛选。")
class OfferFilter:
    city: str | None = strawberry.field(default=None, description="Merchant's city. / 城市。")
    category: MerchantCategory | None = strawberry.field(default=None, description="Merchant category. / 类别。")
    merchant_id: strawberry.ID | None = strawberry.field(default=None, description="One merchant. / 商户。")
    affordable: bool | None = strawberry.field(
        default=None, description="Only offers priced within your balance (needs login). / 仅显示积分够兑换的。"
    )
    ending_within_days: int | None = strawberry.field(default=None, description="Ending within N days (1-365). / N 天内结束。")
    include_unavailable: bool = strawberry.field(
        default=False,
        description="Also drafts, paused, ended, sold-out and out-of-window offers (staff of merchantId, or admins).",
    )


@strawberry.type(description="Result of merchant mutations.")
class MerchantPayload:
    merchant: Merchant | None = strawberry.field(default=None, description="The merchant.")
    user_errors: list[UserError] = strawberry.field(default_factory=list, description="Why it failed.")


@strawberry.type(description="Result of `addMerchantStaff`.")
class AddMerchantStaffPayload:
    merchant: Merchant | None = strawberry.field(default=None, description="The merchant.")
    user: User | None = strawberry.field(
        default=None, description="The new staff member."
    )
    user_errors: list[UserError] = strawberry.field(default_factory=list, description="Why it failed.")


@strawberry.type(description="Result of offer mutations.")
class OfferPayload:
    offer: Offer | None = strawberry.field(default=None, description="The offer.")
    user_errors: list[UserError] = strawberry.field(default_factory=list, description="Why it failed.")


@strawberry.type(description="Result of `redeemOffer`.")
class RedeemOfferPayload:
    redemption: Redemption | None = strawberry.field(default=None, description="The redemption with its code.")
    account: Account | None = strawberry.field(
        default=None, description="The member's account after it."
    )
    replayed: bool = strawberry.field(default=False, description="True when an earlier identical request's result was returned.")
    user_errors: list[UserError] = strawberry.field(default_factory=list, description="Why it failed.")


@strawberry.type(description="Result of `confirmRedemption` / `cancelRedemption`.")
class RedemptionPayload:
    redemption: Redemption | None = strawberry.field(default=None, description="The redemption.")
    user_errors: list[UserError] = strawberry.field(default_factory=list, description="Why it failed.")


def decode_opt(gid: Any, type_name: str, field: str) -> int | None:
    return None if gid is None else decode_id(gid, type_name, field=field)


def ending_before(info: Info, days: int | None) -> datetime | None:
    if days is None:
        return None
    if not 1 <= days <= 365:
        raise ValidationFailed("endingWithinDays must be 1-365 / 天数须在 1 到 365 之间", field="endingWithinDays")
    return info.context.now() + timedelta(days=days)
