"""GraphQL types of offers and the catalogue (filters, sort orders, cursors)."""

from datetime import datetime, timedelta
from enum import Enum
from typing import Any

import strawberry
from strawberry.types import Info

from jingtan_api.context import mapped
from jingtan_api.errors import ValidationFailed
from jingtan_api.graphql.mutations import error_code_enum, user_error_type
from jingtan_api.graphql.relay import Connection, Keyset, Node, UserError, build_connection, page_args, selects
from jingtan_api.merchants import loaders as merchant_loaders
from jingtan_api.merchants import service as merchants
from jingtan_api.merchants.types import Merchant, MerchantCategory, can_manage
from jingtan_api.offers import loaders, segments, service
from jingtan_api.users.types import users_loader

# --- enums -------------------------------------------------------------------------------------------


@strawberry.enum(description="Lifecycle of an offer. / 优惠状态。")
class OfferStatus(Enum):
    DRAFT = strawberry.enum_value("DRAFT", description="Being prepared; not visible to members. / 草稿。")
    ACTIVE = strawberry.enum_value("ACTIVE", description="Redeemable within its window. / 上架中。")
    PAUSED = strawberry.enum_value("PAUSED", description="Temporarily not redeemable. / 已暂停。")
    ENDED = strawberry.enum_value("ENDED", description="Closed for good. / 已结束。")


@strawberry.enum(description="Sort order of the offer catalogue. / 优惠排序方式。")
class OfferOrder(Enum):
    NEWEST = strawberry.enum_value("NEWEST", description="Newest first. / 最新。")
    POINTS_ASC = strawberry.enum_value("POINTS_ASC", description="Cheapest first. / 积分从低到高。")
    POINTS_DESC = strawberry.enum_value("POINTS_DESC", description="Most expensive first. / 积分从高到低。")
    ENDING_SOON = strawberry.enum_value("ENDING_SOON", description="Ending soonest first. / 即将结束。")


# --- who may see what --------------------------------------------------------------------------------


async def segment_viewer(info: Info) -> segments.Viewer:
    """The viewer as offer segments see them (offers.segments): anonymous, or a member and when they
    registered (from the request's users loader)."""
    user_id = info.context.viewer.user_id
    if user_id is None:
        return segments.Viewer(None)
    user = await users_loader(info).load(user_id)
    return segments.Viewer(user_id, user["created_at"] if user else None)


async def visible_offers(info: Info, pks: list[int]) -> dict[int, "Offer"]:
    rows = [r for r in await loaders.offers(info).load_many(pks) if r is not None]
    merchant_rows = await merchant_loaders.merchants(info).load_many([r["merchant_id"] for r in rows])
    out, public = {}, []
    for row, merchant in zip(rows, merchant_rows, strict=True):
        if await can_manage(info, row["merchant_id"], "merchant:read"):
            out[row["id"]] = Offer.from_row(row)
        elif row["status"] != service.DRAFT and merchant is not None and merchant["status"] == merchants.ACTIVE:
            public.append(row)
    if public:
        # Outside an offer's segment it is not visible at all (one statement for the batch).
        ctx = info.context
        allowed = await ctx.read(segments.eligible_offer_ids, await segment_viewer(info), [r["id"] for r in public], ctx.now())
        out.update({r["id"]: Offer.from_row(r) for r in public if r["id"] in allowed})
    return out


# --- object types ------------------------------------------------------------------------------------


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
    # The row it was built from: what ``service.unavailable`` decides on.
    _row: strawberry.Private[dict]

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
            _row=row,
        )

    # Both fields map the merchants loader's value (jingtan_api.context.mapped): at once when a page
    # prefetched it (offer_connection), else its future (no coroutine per field); one batch either way.
    @strawberry.field(description="The merchant offering it. / 提供该优惠的商户。")
    def merchant(self, info: Info) -> Merchant:
        return mapped(merchant_loaders.merchants(info).load(self.merchant_pk), Merchant.from_row)  # type: ignore[return-value]

    @strawberry.field(description="Redeemable right now (active, within its window, in stock). / 当前是否可兑换。")
    def available(self, info: Info) -> bool:
        # The same rule as redeemOffer (the merchant must be active too).
        row, now = self._row, info.context.now()
        return mapped(  # type: ignore[return-value]
            merchant_loaders.merchants(info).load(self.merchant_pk),
            lambda merchant: service.offer_is_available(row, merchant, now),
        )


# --- the catalogue: page size, cursors, filters --------------------------------------------------------


# Keys are (sort value, id); the cursor names its order, so a cursor of another order is refused.
OFFER_KEYSETS = {
    service.NEWEST: Keyset(service.NEWEST, (datetime,)),
    service.POINTS_ASC: Keyset(service.POINTS_ASC, (int,)),
    service.POINTS_DESC: Keyset(service.POINTS_DESC, (int,)),
    service.ENDING_SOON: Keyset(service.ENDING_SOON, (datetime,)),
}


# Offer fields answered from the offer's merchant (the merchants loader).
_NEEDS_MERCHANT = frozenset({"merchant", "available"})


async def offer_connection(
    info: Info, order: str, flt: service.CatalogueFilter, first: int | None, after: str | None, last: int | None,
    before: str | None,
) -> Connection[Offer]:
    ctx, keyset = info.context, OFFER_KEYSETS[order]
    args, now = page_args(info, first, after, last, before, keyset), ctx.now()
    page = await ctx.read(service.catalogue_page, args, now=now, order=order, flt=flt)
    loaders.offers(info).prime_many({r["id"]: r for r in page.rows})
    if page.rows and selects(info, ("edges", "node"), _NEEDS_MERCHANT):
        # The page's merchants in one batch before its items are resolved: each offer's `merchant` and
        # `available` are then answered at once (context.mapped), not through a future per offer.
        await ctx.prefetch(merchant_loaders.merchants(info), [r["merchant_id"] for r in page.rows])
    count = lambda: ctx.read(service.catalogue_count, now=now, flt=flt)
    return build_connection(page, Offer.from_row, keyset=keyset, count=count)


def ending_before(info: Info, days: int | None) -> datetime | None:
    if days is None:
        return None
    if not 1 <= days <= 365:
        raise ValidationFailed("endingWithinDays must be 1-365 / 天数须在 1 到 365 之间", field="endingWithinDays")
    return info.context.now() + timedelta(days=days)


# --- inputs and payloads -----------------------------------------------------------------------------


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


OfferErrorCode = error_code_enum(
    "OfferErrorCode", ('INVALID_URL', 'INVALID_WINDOW', 'INVALID_STATUS', 'INVALID_STATUS_TRANSITION', 'STOCK_BELOW_REDEEMED', 'MERCHANT_NOT_ACTIVE'),
    description="Codes of the offer mutations (create, update, status)' userErrors. / 优惠错误代码。",
)
OfferError = user_error_type("OfferError", OfferErrorCode, description="Why one of the offer mutations (create, update, status) failed. / 优惠错误。")


@strawberry.type(description="Result of offer mutations.")
class OfferPayload:
    offer: Offer | None = strawberry.field(default=None, description="The offer.")
    user_errors: list[UserError] = strawberry.field(default_factory=list, description="Why it failed.")
    errors: list[OfferError] = strawberry.field(default_factory=list, description="The same errors with typed codes. / 错误（类型化代码）。")
