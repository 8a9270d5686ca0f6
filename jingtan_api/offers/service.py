"""Offers and the catalogue: the rules (issue #4). Knows nothing about GraphQL.

Every write function takes an ``AsyncConnection`` inside ``Database.write`` (one transaction, re-runnable
on PostgreSQL serialization failures) and touches the database only through it.

Stock moves only by ``UPDATE offer SET stock = stock - :q WHERE id = :id AND stock >= :q AND status =
'ACTIVE'`` (:func:`take_stock`) and back by :func:`return_stock` — never read-then-write.

Whether an offer can be redeemed now is decided in one place, :func:`unavailable` (``Offer.available`` and
``redemptions.service.redeem`` both use it); the catalogue's SQL filter (:func:`_catalogue_where`) states
the same rule for listing.
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import bindparam, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from jingtan_api.db import Page, PageArgs, StatementCache, keyset_page_cached
from jingtan_api.driver import DriverStatement
from jingtan_api.errors import Conflict, DomainError, NotFound, ValidationFailed
from jingtan_api.merchants import service as merchants
from jingtan_api.merchants.models import Merchant
from jingtan_api.merchants import geo
from jingtan_api.offers import segments
from jingtan_api.offers.models import Offer

M = Merchant.__table__
O = Offer.__table__

DRAFT, ACTIVE, PAUSED, ENDED = "DRAFT", "ACTIVE", "PAUSED", "ENDED"
TRANSITIONS: dict[str, frozenset[str]] = {
    DRAFT: frozenset({ACTIVE, ENDED}),
    ACTIVE: frozenset({PAUSED, ENDED}),
    PAUSED: frozenset({ACTIVE, ENDED}),
    ENDED: frozenset(),
}

MAX_STOCK = 10**9
MAX_PRICE = 10**9
MAX_PER_MEMBER = 1000


# --- validation --------------------------------------------------------------------------------------


def validate_image_url(url: Any) -> str | None:
    if url is None or url == "":
        return None
    if not isinstance(url, str) or len(url) > 500 or any(ch.isspace() for ch in url) or not url.isprintable():
        raise ValidationFailed("imageUrl must be an https URL / 图片地址须为 https 链接", code="INVALID_URL", field="imageUrl")
    parts = urlsplit(url)
    if parts.scheme != "https" or not parts.hostname or "." not in parts.hostname or parts.username or parts.password:
        raise ValidationFailed("imageUrl must be an https URL / 图片地址须为 https 链接", code="INVALID_URL", field="imageUrl")
    return url


def validate_offer(data: dict[str, Any], *, partial: bool = False) -> dict[str, Any]:
    """Offer fields (title_zh, title_en, description_zh, description_en, terms, image_url, points_price,
    total_stock, per_member_limit, starts_at, ends_at) → column values."""
    text, whole = merchants.clean_text, merchants.bounded_int
    out: dict[str, Any] = {}

    def has(key: str) -> bool:
        return not partial or key in data

    if has("title_zh"):
        out["title_zh"] = text(data.get("title_zh"), "titleZh", max_len=100, required=True)
    if has("title_en"):
        out["title_en"] = text(data.get("title_en"), "titleEn", max_len=100)
    if has("description_zh"):
        out["description_zh"] = text(data.get("description_zh"), "descriptionZh", max_len=2000, multiline=True)
    if has("description_en"):
        out["description_en"] = text(data.get("description_en"), "descriptionEn", max_len=2000, multiline=True)
    if has("terms"):
        out["terms"] = text(data.get("terms"), "terms", max_len=2000, multiline=True)
    if has("image_url"):
        out["image_url"] = validate_image_url(data.get("image_url"))
    if has("points_price"):
        out["points_price"] = whole(
            data.get("points_price"), "pointsPrice", low=1, high=MAX_PRICE,
            message=f"pointsPrice must be a whole number from 1 to {MAX_PRICE} / 积分价格须为正整数",
        )
    if has("total_stock"):
        out["total_stock"] = whole(
            data.get("total_stock"), "totalStock", low=0, high=MAX_STOCK,
            message=f"totalStock must be a whole number from 0 to {MAX_STOCK} / 库存须为非负整数",
        )
    if has("per_member_limit"):
        out["per_member_limit"] = whole(
            data.get("per_member_limit"), "perMemberLimit", low=1, high=MAX_PER_MEMBER,
            message=f"perMemberLimit must be from 1 to {MAX_PER_MEMBER} / 每人限兑数量须在 1 到 {MAX_PER_MEMBER} 之间",
        )
    for key, field in (("starts_at", "startsAt"), ("ends_at", "endsAt")):
        if has(key):
            value = data.get(key)
            if not isinstance(value, datetime) or value.utcoffset() is None:
                raise ValidationFailed(f"{field} must be a date-time with a time zone / {field} 须带时区", field=field)
            out[key] = value.astimezone(UTC)
    return out


def _check_window(starts_at: datetime, ends_at: datetime) -> None:
    if ends_at <= starts_at:
        raise ValidationFailed("endsAt must be after startsAt / 结束时间须晚于开始时间", code="INVALID_WINDOW", field="endsAt")


# --- offers ------------------------------------------------------------------------------------------


async def offer_row(conn: AsyncConnection, offer_id: int) -> Any:
    """The offer's row; NOT_FOUND (field ``offerId``) when there is none."""
    row = (await conn.execute(select(O).where(O.c.id == offer_id))).one_or_none()
    if row is None:
        raise NotFound("No such offer / 优惠不存在", field="offerId")
    return row


_MERCHANT_PREFIX = "merchant__"
_OFFER_WITH_MERCHANT = DriverStatement(
    select(O, *(c.label(_MERCHANT_PREFIX + c.key) for c in M.c))
    .join(M, M.c.id == O.c.merchant_id).where(O.c.id == bindparam("offer_id")))


async def offer_with_merchant(conn: AsyncConnection, offer_id: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """The offer's row and its merchant's row (dicts of column values), one statement on the driver path
    (every redemption asks it); NOT_FOUND (field ``offerId``) when there is no such offer."""
    rows = await _OFFER_WITH_MERCHANT.all(conn, {"offer_id": offer_id})
    if not rows:
        raise NotFound("No such offer / 优惠不存在", field="offerId")
    offer: dict[str, Any] = {}
    merchant: dict[str, Any] = {}
    cut = len(_MERCHANT_PREFIX)
    for key, value in rows[0].items():
        if key.startswith(_MERCHANT_PREFIX):
            merchant[key[cut:]] = value
        else:
            offer[key] = value
    return offer, merchant


async def create_offer(
    conn: AsyncConnection, *, actor: merchants.Actor, merchant_id: int, fields: dict[str, Any], status: str, now: datetime
) -> int:
    merchant = await merchants.merchant_row(conn, merchant_id)
    merchants.require_merchant_manager(actor, merchant_id)
    if merchant.status != merchants.ACTIVE:
        raise Conflict("The merchant is not active / 商户未启用", code="MERCHANT_NOT_ACTIVE", field="merchantId")
    values = validate_offer(fields)
    _check_window(values["starts_at"], values["ends_at"])
    if status not in (DRAFT, ACTIVE):
        raise ValidationFailed("A new offer is DRAFT or ACTIVE / 新优惠须为草稿或上架", code="INVALID_STATUS", field="status")
    return (
        await conn.execute(
            insert(O)
            .values(**values, stock=values["total_stock"], merchant_id=merchant_id, status=status, created_at=now, updated_at=now)
            .returning(O.c.id)
        )
    ).scalar_one()


async def update_offer(
    conn: AsyncConnection, *, actor: merchants.Actor, offer_id: int, changes: dict[str, Any], now: datetime
) -> None:
    row = await offer_row(conn, offer_id)
    merchants.require_merchant_manager(actor, row.merchant_id)
    if row.status == ENDED:
        raise Conflict("An ended offer cannot be edited / 已结束的优惠不能修改", code="OFFER_ENDED", field="offerId")
    values = validate_offer(changes, partial=True)
    _check_window(values.get("starts_at", row.starts_at), values.get("ends_at", row.ends_at))
    total = values.pop("total_stock", None)
    if values:
        await conn.execute(update(O).where(O.c.id == offer_id).values(**values, updated_at=now))
    if total is not None:
        # Move the remaining stock by the change of the total, atomically; refuse to go below what is
        # already redeemed (concurrent redemptions keep decrementing `stock` meanwhile).
        delta = total - O.c.total_stock
        result = await conn.execute(
            update(O)
            .where(O.c.id == offer_id, O.c.stock + delta >= 0)
            .values(stock=O.c.stock + delta, total_stock=total, updated_at=now)
        )
        if result.rowcount != 1:
            raise ValidationFailed(
                "totalStock is below what was already redeemed / 总库存不能少于已兑换数量",
                code="STOCK_BELOW_REDEEMED", field="totalStock",
            )


async def set_offer_status(conn: AsyncConnection, *, actor: merchants.Actor, offer_id: int, status: str, now: datetime) -> None:
    row = await offer_row(conn, offer_id)
    merchants.require_merchant_manager(actor, row.merchant_id)
    if status == row.status:
        return
    if status not in TRANSITIONS.get(row.status, frozenset()):
        raise Conflict(
            f"An offer cannot go from {row.status} to {status} / 优惠状态不能从 {row.status} 变为 {status}",
            code="INVALID_STATUS_TRANSITION", field="status",
        )
    result = await conn.execute(
        update(O).where(O.c.id == offer_id, O.c.status == row.status).values(status=status, updated_at=now)
    )
    if result.rowcount != 1:
        raise Conflict("The offer changed meanwhile, try again / 优惠已被修改，请重试", field="status")


async def offers_by_ids(conn: AsyncConnection, ids: Sequence[int]) -> dict[int, dict]:
    rows = await conn.execute(select(O).where(O.c.id.in_(list(ids))))
    return {r.id: dict(r._mapping) for r in rows}


async def active_offer_counts(conn: AsyncConnection, merchant_ids: Sequence[int]) -> dict[int, int]:
    """{merchant_id: number of its ACTIVE offers} (merchants without any are left out)."""
    rows = await conn.execute(
        select(O.c.merchant_id, func.count().label("n"))
        .where(O.c.merchant_id.in_(list(merchant_ids)), O.c.status == ACTIVE)
        .group_by(O.c.merchant_id)
    )
    return {r.merchant_id: int(r.n) for r in rows}


# --- availability and stock --------------------------------------------------------------------------


class OfferUnavailable(DomainError):
    """Why an offer cannot be redeemed now (code says which)."""


def unavailable(offer: Mapping[str, Any], merchant: Mapping[str, Any] | None, now: datetime) -> OfferUnavailable | None:
    """Why the offer cannot be redeemed at ``now``, or None when it can: its merchant is ACTIVE (with its
    account), the offer is ACTIVE, inside its window and in stock. ``offer`` and ``merchant`` are rows
    (mappings of column values). The one definition of availability: ``Offer.available`` and ``redeem``."""
    if merchant is None or merchant["status"] != merchants.ACTIVE or merchant["account_id"] is None:
        return OfferUnavailable("This merchant is not active / 该商户暂停营业", code="MERCHANT_NOT_ACTIVE", field="offerId")
    if offer["status"] != ACTIVE:
        return OfferUnavailable("This offer is not available now / 该优惠当前不可兑换", code="OFFER_NOT_ACTIVE", field="offerId")
    if now < offer["starts_at"]:
        return OfferUnavailable("This offer has not started yet / 该优惠尚未开始", code="OFFER_NOT_STARTED", field="offerId")
    if now >= offer["ends_at"]:
        return OfferUnavailable("This offer has ended / 该优惠已结束", code="OFFER_ENDED", field="offerId")
    if offer["stock"] <= 0:
        return OfferUnavailable("Out of stock / 库存不足", code="OUT_OF_STOCK", field="quantity")
    return None


def offer_is_available(offer: Mapping[str, Any], merchant: Mapping[str, Any] | None, now: datetime) -> bool:
    return unavailable(offer, merchant, now) is None


_quantity = bindparam("quantity", type_=O.c.stock.type)
_TAKE_STOCK = DriverStatement(  # every redemption: on the driver path (RETURNING instead of a row count)
    update(O).where(O.c.id == bindparam("offer_id"), O.c.stock >= _quantity, O.c.status == ACTIVE)
    .values(stock=O.c.stock - _quantity).returning(O.c.id))


async def take_stock(conn: AsyncConnection, offer_id: int, quantity: int) -> OfferUnavailable | None:
    """Take ``quantity`` items of an ACTIVE offer in one conditional UPDATE; None when taken, else why not."""
    if await _TAKE_STOCK.all(conn, {"offer_id": offer_id, "quantity": quantity}):
        return None
    status = (await conn.execute(select(O.c.status).where(O.c.id == offer_id))).scalar_one()
    if status != ACTIVE:
        return OfferUnavailable("This offer is not available now / 该优惠当前不可兑换", code="OFFER_NOT_ACTIVE", field="offerId")
    return OfferUnavailable("Out of stock / 库存不足", code="OUT_OF_STOCK", field="quantity")


async def return_stock(conn: AsyncConnection, offer_id: int, quantity: int) -> None:
    """Put back the items of a refunded redemption (whatever the offer's status)."""
    await conn.execute(update(O).where(O.c.id == offer_id).values(stock=O.c.stock + quantity))


# --- the catalogue -----------------------------------------------------------------------------------


NEWEST, POINTS_ASC, POINTS_DESC, ENDING_SOON = "NEWEST", "POINTS_ASC", "POINTS_DESC", "ENDING_SOON"
# order -> (column, descending)
_ORDERS = {
    NEWEST: (O.c.created_at, True),
    POINTS_ASC: (O.c.points_price, False),
    POINTS_DESC: (O.c.points_price, True),
    ENDING_SOON: (O.c.ends_at, False),
}


@dataclass(frozen=True)
class CatalogueFilter:
    city: str | None = None
    category: str | None = None
    merchant_id: int | None = None
    max_price: int | None = None
    ends_before: datetime | None = None
    include_unavailable: bool = False
    # Only offers whose segment admits this viewer (offers.segments); None: no segment filter.
    segment: segments.Viewer | None = None


_CATALOGUE_STATEMENTS = StatementCache()


def _catalogue_shape(flt: CatalogueFilter) -> tuple:
    return (bool(flt.city), bool(flt.category), flt.merchant_id is not None, flt.max_price is not None,
            flt.ends_before is not None, flt.include_unavailable,
            None if flt.segment is None else segments.viewer_shape(flt.segment))


def _catalogue_where_bound(stmt: Any, shape: tuple, *, join_merchant: bool = False) -> Any:
    """The catalogue's filters on ``stmt``, values as bind parameters (``_catalogue_values``): an ACTIVE
    offer of an ACTIVE merchant, inside its window, in stock (unless unavailable ones are included), then
    the optional filters and the viewer's segment."""
    city, category, merchant, max_price, ends_before, include_unavailable, segment = shape
    if city or category or not include_unavailable or join_merchant:
        stmt = stmt.join(M, M.c.id == O.c.merchant_id)
    if not include_unavailable:
        now = bindparam("now", type_=O.c.starts_at.type)
        stmt = stmt.where(O.c.status == ACTIVE, O.c.starts_at <= now, O.c.ends_at > now, O.c.stock > 0,
                          M.c.status == merchants.ACTIVE)
    if city:
        stmt = stmt.where(M.c.city == bindparam("city", type_=M.c.city.type))
    if category:
        stmt = stmt.where(M.c.category == bindparam("category", type_=M.c.category.type))
    if merchant:
        stmt = stmt.where(O.c.merchant_id == bindparam("merchant_id", type_=O.c.merchant_id.type))
    if max_price:
        stmt = stmt.where(O.c.points_price <= bindparam("max_price", type_=O.c.points_price.type))
    if ends_before:
        stmt = stmt.where(O.c.ends_at <= bindparam("ends_before", type_=O.c.ends_at.type))
    if segment is not None:
        stmt = stmt.where(segments.visible_to_bound(segment))
    return stmt


def _catalogue_where(stmt: Any, *, now: datetime, flt: CatalogueFilter, join_merchant: bool = False) -> Any:
    """The filters with this request's values bound, for statements built per call (count, near me)."""
    return _catalogue_where_bound(stmt, _catalogue_shape(flt), join_merchant=join_merchant).params(
        _catalogue_values(now, flt))


def _catalogue_values(now: datetime, flt: CatalogueFilter) -> dict[str, Any]:
    values: dict[str, Any] = {"now": now}
    for name in ("city", "category", "merchant_id", "max_price", "ends_before"):
        if getattr(flt, name) is not None and getattr(flt, name) != "":
            values[name] = getattr(flt, name)
    if flt.segment is not None:
        values.update(segments.bound_values(flt.segment, now))
    return values


async def catalogue_page(
    conn: AsyncConnection, args: PageArgs, *, now: datetime, order: str, flt: CatalogueFilter
) -> Page:
    """One keyset page of offers; keys are (sort value, id). The statement is built once per filter
    shape and order (``StatementCache``), the filter values bound per request."""
    column, desc = _ORDERS[order]
    shape = _catalogue_shape(flt)
    return await keyset_page_cached(
        conn, _CATALOGUE_STATEMENTS, (order, shape), lambda: _catalogue_where_bound(select(O), shape),
        [(column, desc), (O.c.id, desc)], args, _catalogue_values(now, flt),
    )


async def catalogue_count(conn: AsyncConnection, *, now: datetime, flt: CatalogueFilter) -> int:
    stmt = _catalogue_where(select(func.count()).select_from(O), now=now, flt=flt)
    return int((await conn.execute(stmt)).scalar_one())


async def offers_near(
    conn: AsyncConnection, near: geo.Near, args: PageArgs, *, now: datetime, flt: CatalogueFilter
) -> geo.NearPage:
    """Catalogue offers of merchants within ``near``, nearest first (ties: newest offer id last); each row
    carries ``distance_m`` (see merchants.geo)."""
    stmt = _catalogue_where(select(O, M.c.latitude, M.c.longitude), now=now, flt=flt, join_merchant=True)
    return await geo.nearest(conn, stmt, near, args, key_id=lambda row: row["id"])
