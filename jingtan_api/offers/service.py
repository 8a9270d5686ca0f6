"""Merchants, offers and redemptions: the rules (issue #4). Knows nothing about GraphQL.

Every write function takes an ``AsyncConnection`` inside ``Database.write`` (one transaction, re-runnable
on PostgreSQL serialization failures) and touches the database only through it.

Redemption without double spend (DESIGN.md §2, §6):

* points move through ``accounts.service.post_transaction`` (conditional balance UPDATE);
* stock moves only by ``UPDATE offer SET stock = stock - :q WHERE id = :id AND stock >= :q AND status =
  'ACTIVE'`` — never read-then-write;
* the per-member limit is a count of the member's live redemptions of the offer, taken *after* locking the
  member's account row (``SELECT … FOR UPDATE`` on PostgreSQL; SQLite write transactions are already
  serialised by ``BEGIN IMMEDIATE``). Every transaction that creates or closes a member's redemption takes
  that lock first, so two parallel redemptions by one member see each other's rows (READ COMMITTED takes a
  fresh snapshot per statement, after the lock was granted).

Lock order everywhere: idempotency record → member account → redemption → offer → merchant account.
"""

import json
import math
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import Date, and_, case, cast, func, insert, literal, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from jingtan_api.accounts import idempotency
from jingtan_api.accounts import service as ledger
from jingtan_api.accounts.models import Account, LedgerEntry, LedgerTransaction
from jingtan_api.audit import service as audit
from jingtan_api.auth.permissions import MERCHANT as MERCHANT_ROLE
from jingtan_api.errors import Conflict, DomainError, NotFound, PermissionDenied, ValidationFailed
from jingtan_api.offers.models import Merchant, MerchantStaff, Offer, Redemption
from jingtan_api.users import service as users

M = Merchant.__table__
S = MerchantStaff.__table__
O = Offer.__table__
R = Redemption.__table__
A = Account.__table__
E = LedgerEntry.__table__
TX = LedgerTransaction.__table__

CATEGORIES = ("CAFE", "BIKE_SHOP", "TRANSIT", "GROCERY", "SECOND_HAND", "RESTAURANT", "OTHER")

M_PENDING, M_ACTIVE, M_REJECTED, M_SUSPENDED = "PENDING", "ACTIVE", "REJECTED", "SUSPENDED"

DRAFT, ACTIVE, PAUSED, ENDED = "DRAFT", "ACTIVE", "PAUSED", "ENDED"
TRANSITIONS: dict[str, frozenset[str]] = {
    DRAFT: frozenset({ACTIVE, ENDED}),
    ACTIVE: frozenset({PAUSED, ENDED}),
    PAUSED: frozenset({ACTIVE, ENDED}),
    ENDED: frozenset(),
}

PENDING, CONFIRMED, CANCELLED, EXPIRED = "PENDING", "CONFIRMED", "CANCELLED", "EXPIRED"
LIVE = (PENDING, CONFIRMED)

# Ledger transaction kinds written here.
REDEMPTION = "REDEMPTION"
REFUND = "REFUND"

# No 0/O, 1/I/L: codes are read aloud and typed at a counter. 31^10 ≈ 8·10^14 codes.
CODE_ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"
CODE_LENGTH = 10

MAX_STOCK = 10**9
MAX_PRICE = 10**9
MAX_PER_MEMBER = 1000
MAX_SETTLEMENT_DAYS = 92


@dataclass(frozen=True)
class Actor:
    """Who performs a merchant-side action: a user, whether an admin, and the merchant they staff."""

    user_id: int
    is_admin: bool
    merchant_id: int | None


# --- validation --------------------------------------------------------------------------------------


def _text(value: Any, field: str, *, max_len: int, required: bool = False, multiline: bool = False) -> str:
    if value is None:
        value = ""
    if not isinstance(value, str):
        raise ValidationFailed(f"{field} must be text / {field} 须为文本", field=field)
    value = value.strip() if multiline else " ".join(value.split())
    if required and not value:
        raise ValidationFailed(f"{field} is required / {field} 为必填项", field=field)
    if len(value) > max_len:
        raise ValidationFailed(f"{field} must have at most {max_len} characters / {field} 最多 {max_len} 个字符", field=field)
    if any(not (ch.isprintable() or (multiline and ch in "\n\t")) for ch in value):
        raise ValidationFailed(f"{field} contains control characters / {field} 含有控制字符", field=field)
    return value


def validate_coordinates(lat: Any, lng: Any) -> tuple[float | None, float | None]:
    if lat is None and lng is None:
        return None, None
    if lat is None or lng is None:
        raise ValidationFailed("Give both latitude and longitude / 经纬度须同时提供", field="latitude" if lat is None else "longitude")
    for name, value, bound in (("latitude", lat, 90), ("longitude", lng, 180)):
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or abs(value) > bound:
            raise ValidationFailed(f"{name} must be between -{bound} and {bound} / 坐标超出范围", code="INVALID_COORDINATES", field=name)
    return float(lat), float(lng)


def validate_commitments(items: Any) -> list[str]:
    items = list(items or [])
    if len(items) > 20:
        raise ValidationFailed("At most 20 commitments / 最多 20 条低碳承诺", field="commitments")
    out = [_text(c, "commitments", max_len=200, required=True) for c in items]
    return out


def validate_profile(data: dict[str, Any], *, partial: bool = False) -> dict[str, Any]:
    """Merchant profile fields (keys: name_zh, name_en, category, city, district, address, latitude,
    longitude, commitments) → column values. ``partial`` validates only the keys present."""
    out: dict[str, Any] = {}

    def has(key: str) -> bool:
        return not partial or key in data

    if has("name_zh"):
        out["name_zh"] = _text(data.get("name_zh"), "nameZh", max_len=100, required=True)
    if has("name_en"):
        out["name_en"] = _text(data.get("name_en"), "nameEn", max_len=100)
    if has("category"):
        if data.get("category") not in CATEGORIES:
            raise ValidationFailed("Unknown category / 未知类别", field="category")
        out["category"] = data["category"]
    if has("city"):
        out["city"] = _text(data.get("city"), "city", max_len=64, required=True)
    if has("district"):
        out["district"] = _text(data.get("district"), "district", max_len=64)
    if has("address"):
        out["address"] = _text(data.get("address"), "address", max_len=200)
    if has("latitude") or has("longitude"):
        out["latitude"], out["longitude"] = validate_coordinates(data.get("latitude"), data.get("longitude"))
    if has("commitments"):
        out["commitments"] = json.dumps(validate_commitments(data.get("commitments")), ensure_ascii=False)
    return out


def validate_image_url(url: Any) -> str | None:
    if url is None or url == "":
        return None
    if not isinstance(url, str) or len(url) > 500 or any(ch.isspace() for ch in url) or not url.isprintable():
        raise ValidationFailed("imageUrl must be an https URL / 图片地址须为 https 链接", code="INVALID_URL", field="imageUrl")
    parts = urlsplit(url)
    if parts.scheme != "https" or not parts.hostname or "." not in parts.hostname or parts.username or parts.password:
        raise ValidationFailed("imageUrl must be an https URL / 图片地址须为 https 链接", code="INVALID_URL", field="imageUrl")
    return url


def _int(value: Any, field: str, *, low: int, high: int, message: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValidationFailed(message, field=field)
    return value


def validate_offer(data: dict[str, Any], *, partial: bool = False) -> dict[str, Any]:
    """Offer fields (title_zh, title_en, description_zh, description_en, terms, image_url, points_price,
    total_stock, per_member_limit, starts_at, ends_at) → column values."""
    out: dict[str, Any] = {}

    def has(key: str) -> bool:
        return not partial or key in data

    if has("title_zh"):
        out["title_zh"] = _text(data.get("title_zh"), "titleZh", max_len=100, required=True)
    if has("title_en"):
        out["title_en"] = _text(data.get("title_en"), "titleEn", max_len=100)
    if has("description_zh"):
        out["description_zh"] = _text(data.get("description_zh"), "descriptionZh", max_len=2000, multiline=True)
    if has("description_en"):
        out["description_en"] = _text(data.get("description_en"), "descriptionEn", max_len=2000, multiline=True)
    if has("terms"):
        out["terms"] = _text(data.get("terms"), "terms", max_len=2000, multiline=True)
    if has("image_url"):
        out["image_url"] = validate_image_url(data.get("image_url"))
    if has("points_price"):
        out["points_price"] = _int(
            data.get("points_price"), "pointsPrice", low=1, high=MAX_PRICE,
            message=f"pointsPrice must be a whole number from 1 to {MAX_PRICE} / 积分价格须为正整数",
        )
    if has("total_stock"):
        out["total_stock"] = _int(
            data.get("total_stock"), "totalStock", low=0, high=MAX_STOCK,
            message=f"totalStock must be a whole number from 0 to {MAX_STOCK} / 库存须为非负整数",
        )
    if has("per_member_limit"):
        out["per_member_limit"] = _int(
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


def validate_quantity(quantity: Any, *, max_quantity: int) -> int:
    return _int(
        quantity, "quantity", low=1, high=max_quantity,
        message=f"quantity must be a whole number from 1 to {max_quantity} / 数量须在 1 到 {max_quantity} 之间",
    )


def normalize_code(code: Any) -> str:
    raw = "".join(ch for ch in str(code or "").upper() if ch not in " -")
    return raw[:32]


def new_code() -> str:
    return "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))


# --- merchants ---------------------------------------------------------------------------------------


async def staff_merchant_ids(conn: AsyncConnection, user_ids: Sequence[int]) -> dict[int, int]:
    """{user_id: merchant_id} for users who work for a merchant."""
    rows = await conn.execute(select(S.c.user_id, S.c.merchant_id).where(S.c.user_id.in_(list(user_ids))))
    return {r.user_id: r.merchant_id for r in rows}


async def _merchant_row(conn: AsyncConnection, merchant_id: int) -> Any:
    row = (await conn.execute(select(M).where(M.c.id == merchant_id))).one_or_none()
    if row is None:
        raise NotFound("No such merchant / 商户不存在", field="merchantId")
    return row


async def _open_merchant_account(conn: AsyncConnection, merchant_id: int) -> int:
    account_id = await ledger.create_account(conn, kind=ledger.MERCHANT, code=f"merchant:{merchant_id}")
    await conn.execute(update(M).where(M.c.id == merchant_id).values(account_id=account_id))
    return account_id


async def _add_staff(conn: AsyncConnection, *, merchant_id: int, user_id: int, is_owner: bool, added_by: int | None, now: datetime) -> None:
    # The role first: add_role locks the user's row, so two concurrent additions of one user queue
    # instead of one of them failing on the unique constraint (a refusal below rolls the role back).
    await users.add_role(conn, user_id, MERCHANT_ROLE)
    existing = (await conn.execute(select(S.c.merchant_id).where(S.c.user_id == user_id))).scalar_one_or_none()
    if existing is not None:
        raise Conflict(
            "This user already works for a merchant / 该用户已是商户员工", code="ALREADY_MERCHANT_STAFF", field="userId"
        )
    await conn.execute(
        insert(S).values(merchant_id=merchant_id, user_id=user_id, is_owner=is_owner, added_by_user_id=added_by, created_at=now)
    )


async def create_merchant(
    conn: AsyncConnection,
    *,
    actor_user_id: int,
    profile: dict[str, Any],
    owner_user_id: int | None,
    request_id: str | None,
    now: datetime,
) -> int:
    """Admin onboarding: an ACTIVE merchant with its MERCHANT ledger account (and owner, if given)."""
    values = validate_profile(profile)
    merchant_id = (
        await conn.execute(
            insert(M).values(**values, status=M_ACTIVE, owner_user_id=owner_user_id, created_at=now,
                             reviewed_at=now, reviewed_by_user_id=actor_user_id).returning(M.c.id)
        )
    ).scalar_one()
    account_id = await _open_merchant_account(conn, merchant_id)
    if owner_user_id is not None:
        await _add_staff(conn, merchant_id=merchant_id, user_id=owner_user_id, is_owner=True, added_by=actor_user_id, now=now)
    await audit.record(
        conn, actor_user_id=actor_user_id, action="merchant.create", target_type="Merchant", target_id=merchant_id,
        details={"ownerUserId": owner_user_id, "accountId": account_id, "nameZh": values["name_zh"]},
        request_id=request_id, now=now,
    )
    return merchant_id


async def apply_for_merchant(conn: AsyncConnection, *, user_id: int, profile: dict[str, Any], now: datetime) -> int:
    values = validate_profile(profile)
    # One application at a time per user: serialise this user's applications on their account row.
    await ledger.lock_member_account(conn, user_id)
    if (await staff_merchant_ids(conn, [user_id])).get(user_id) is not None:
        raise Conflict("You already work for a merchant / 您已是商户员工", code="ALREADY_MERCHANT_STAFF")
    pending = (
        await conn.execute(select(M.c.id).where(M.c.owner_user_id == user_id, M.c.status == M_PENDING).limit(1))
    ).scalar_one_or_none()
    if pending is not None:
        raise Conflict("You already have a pending application / 您已有待审核的申请", code="APPLICATION_PENDING")
    return (
        await conn.execute(
            insert(M).values(**values, status=M_PENDING, owner_user_id=user_id, created_at=now).returning(M.c.id)
        )
    ).scalar_one()


async def review_application(
    conn: AsyncConnection,
    *,
    actor_user_id: int,
    merchant_id: int,
    approve: bool,
    reason: str,
    request_id: str | None,
    now: datetime,
) -> None:
    reason = audit.validate_reason(reason)
    row = await _merchant_row(conn, merchant_id)
    new_status = M_ACTIVE if approve else M_REJECTED
    result = await conn.execute(
        update(M)
        .where(M.c.id == merchant_id, M.c.status == M_PENDING)
        .values(status=new_status, reviewed_at=now, reviewed_by_user_id=actor_user_id, review_reason=reason)
    )
    if result.rowcount != 1:
        raise Conflict("This application was already reviewed / 该申请已审核", code="ALREADY_REVIEWED", field="merchantId")
    if approve:
        await _open_merchant_account(conn, merchant_id)
        if row.owner_user_id is not None:
            await _add_staff(conn, merchant_id=merchant_id, user_id=row.owner_user_id, is_owner=True, added_by=actor_user_id, now=now)
    await audit.record(
        conn, actor_user_id=actor_user_id, action="merchant.approve" if approve else "merchant.reject",
        target_type="Merchant", target_id=merchant_id, reason=reason,
        details={"applicantUserId": row.owner_user_id}, request_id=request_id, now=now,
    )


async def set_merchant_status(
    conn: AsyncConnection,
    *,
    actor_user_id: int,
    merchant_id: int,
    status: str,
    reason: str,
    request_id: str | None,
    now: datetime,
) -> None:
    """Admin: suspend an ACTIVE merchant (its offers leave the catalogue and cannot be redeemed; codes
    already issued can still be confirmed or cancelled) or reactivate a SUSPENDED one. Audit-logged."""
    reason = audit.validate_reason(reason)
    row = await _merchant_row(conn, merchant_id)
    allowed = {M_ACTIVE: M_SUSPENDED, M_SUSPENDED: M_ACTIVE}
    if allowed.get(row.status) != status:
        raise Conflict(
            f"A merchant cannot go from {row.status} to {status} / 商户状态不能从 {row.status} 变为 {status}",
            code="INVALID_STATUS_TRANSITION", field="status",
        )
    result = await conn.execute(update(M).where(M.c.id == merchant_id, M.c.status == row.status).values(status=status))
    if result.rowcount != 1:
        raise Conflict("The merchant changed meanwhile, try again / 商户状态已变更，请重试", field="status")
    await audit.record(
        conn, actor_user_id=actor_user_id, action="merchant.suspend" if status == M_SUSPENDED else "merchant.reactivate",
        target_type="Merchant", target_id=merchant_id, reason=reason, details={"from": row.status, "to": status},
        request_id=request_id, now=now,
    )


def _require_merchant_manager(actor: Actor, merchant_id: int) -> None:
    if not actor.is_admin and actor.merchant_id != merchant_id:
        raise PermissionDenied("You do not work for this merchant / 您不是该商户的员工")


async def add_merchant_staff(
    conn: AsyncConnection, *, actor: Actor, merchant_id: int, user_id: int, request_id: str | None, now: datetime
) -> None:
    """Admins, or the merchant's owner, add a staff member; the user gets the MERCHANT role."""
    row = await _merchant_row(conn, merchant_id)
    if not actor.is_admin:
        owner = (
            await conn.execute(select(S.c.is_owner).where(S.c.user_id == actor.user_id, S.c.merchant_id == merchant_id))
        ).scalar_one_or_none()
        if not owner:
            raise PermissionDenied("Only the merchant's owner or an admin can add staff / 仅商户负责人或管理员可添加员工")
    if row.status != M_ACTIVE:
        raise Conflict("The merchant is not active / 商户未启用", code="MERCHANT_NOT_ACTIVE", field="merchantId")
    await _add_staff(conn, merchant_id=merchant_id, user_id=user_id, is_owner=False, added_by=actor.user_id, now=now)
    await audit.record(
        conn, actor_user_id=actor.user_id, action="merchant.add_staff", target_type="Merchant", target_id=merchant_id,
        details={"userId": user_id}, request_id=request_id, now=now,
    )


async def update_merchant(conn: AsyncConnection, *, actor: Actor, merchant_id: int, changes: dict[str, Any]) -> None:
    await _merchant_row(conn, merchant_id)
    _require_merchant_manager(actor, merchant_id)
    values = validate_profile(changes, partial=True)
    if values:
        await conn.execute(update(M).where(M.c.id == merchant_id).values(**values))


async def merchants_by_ids(conn: AsyncConnection, ids: Sequence[int]) -> dict[int, dict]:
    rows = await conn.execute(select(M).where(M.c.id.in_(list(ids))))
    return {r.id: dict(r._mapping) for r in rows}


async def merchant_balances(conn: AsyncConnection, merchant_ids: Sequence[int]) -> dict[int, int]:
    rows = await conn.execute(
        select(M.c.id, A.c.balance).join(A, A.c.id == M.c.account_id).where(M.c.id.in_(list(merchant_ids)))
    )
    return {r.id: int(r.balance) for r in rows}


async def merchants_page(
    conn: AsyncConnection, *, first: int, after: int | None, city: str | None, category: str | None, status: str
) -> tuple[list[dict], bool]:
    stmt = select(M).where(M.c.status == status)
    if city:
        stmt = stmt.where(M.c.city == city)
    if category:
        stmt = stmt.where(M.c.category == category)
    if after is not None:
        stmt = stmt.where(M.c.id > after)
    rows = (await conn.execute(stmt.order_by(M.c.id).limit(first + 1))).all()
    return [dict(r._mapping) for r in rows[:first]], len(rows) > first


# --- offers ------------------------------------------------------------------------------------------


async def _offer_row(conn: AsyncConnection, offer_id: int) -> Any:
    row = (await conn.execute(select(O).where(O.c.id == offer_id))).one_or_none()
    if row is None:
        raise NotFound("No such offer / 优惠不存在", field="offerId")
    return row


async def create_offer(
    conn: AsyncConnection, *, actor: Actor, merchant_id: int, fields: dict[str, Any], status: str, now: datetime
) -> int:
    merchant = await _merchant_row(conn, merchant_id)
    _require_merchant_manager(actor, merchant_id)
    if merchant.status != M_ACTIVE:
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


async def update_offer(conn: AsyncConnection, *, actor: Actor, offer_id: int, changes: dict[str, Any], now: datetime) -> None:
    row = await _offer_row(conn, offer_id)
    _require_merchant_manager(actor, row.merchant_id)
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


async def set_offer_status(conn: AsyncConnection, *, actor: Actor, offer_id: int, status: str, now: datetime) -> None:
    row = await _offer_row(conn, offer_id)
    _require_merchant_manager(actor, row.merchant_id)
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


def offer_is_available(row: dict, now: datetime) -> bool:
    return row["status"] == ACTIVE and row["starts_at"] <= now < row["ends_at"] and row["stock"] > 0


NEWEST, POINTS_ASC, POINTS_DESC, ENDING_SOON = "NEWEST", "POINTS_ASC", "POINTS_DESC", "ENDING_SOON"
# order -> (column, descending)
_ORDERS = {
    NEWEST: (O.c.created_at, True),
    POINTS_ASC: (O.c.points_price, False),
    POINTS_DESC: (O.c.points_price, True),
    ENDING_SOON: (O.c.ends_at, False),
}


def sort_key(order: str, row: dict) -> Any:
    column, _ = _ORDERS[order]
    return row[column.name]


@dataclass(frozen=True)
class CatalogueFilter:
    city: str | None = None
    category: str | None = None
    merchant_id: int | None = None
    max_price: int | None = None
    ends_before: datetime | None = None
    include_unavailable: bool = False


def _catalogue_where(stmt: Any, *, now: datetime, flt: CatalogueFilter) -> Any:
    if flt.city or flt.category or not flt.include_unavailable:
        stmt = stmt.join(M, M.c.id == O.c.merchant_id)
    if not flt.include_unavailable:
        stmt = stmt.where(
            O.c.status == ACTIVE, O.c.starts_at <= now, O.c.ends_at > now, O.c.stock > 0, M.c.status == M_ACTIVE
        )
    if flt.city:
        stmt = stmt.where(M.c.city == flt.city)
    if flt.category:
        stmt = stmt.where(M.c.category == flt.category)
    if flt.merchant_id is not None:
        stmt = stmt.where(O.c.merchant_id == flt.merchant_id)
    if flt.max_price is not None:
        stmt = stmt.where(O.c.points_price <= flt.max_price)
    if flt.ends_before is not None:
        stmt = stmt.where(O.c.ends_at <= flt.ends_before)
    return stmt


async def catalogue_page(
    conn: AsyncConnection,
    *,
    now: datetime,
    order: str,
    first: int,
    after: tuple[Any, int] | None,
    flt: CatalogueFilter,
) -> tuple[list[dict], bool]:
    """One keyset page of offers. ``after`` is (sort key, id) of the last row seen."""
    column, desc = _ORDERS[order]
    stmt = _catalogue_where(select(O), now=now, flt=flt)
    if after is not None:
        key, last_id = after
        if desc:
            stmt = stmt.where(or_(column < key, and_(column == key, O.c.id < last_id)))
        else:
            stmt = stmt.where(or_(column > key, and_(column == key, O.c.id > last_id)))
    ordering = (column.desc(), O.c.id.desc()) if desc else (column.asc(), O.c.id.asc())
    rows = (await conn.execute(stmt.order_by(*ordering).limit(first + 1))).all()
    return [dict(r._mapping) for r in rows[:first]], len(rows) > first


async def catalogue_count(conn: AsyncConnection, *, now: datetime, flt: CatalogueFilter) -> int:
    stmt = _catalogue_where(select(func.count()).select_from(O), now=now, flt=flt)
    return int((await conn.execute(stmt)).scalar_one())


@dataclass(frozen=True)
class MerchantStats:
    redemptions: int
    redeemed_quantity: int
    confirmed: int
    pending: int
    refunded: int
    points_received: int
    active_offers: int


async def merchant_stats(conn: AsyncConnection, merchant_ids: Sequence[int]) -> dict[int, MerchantStats]:
    ids = list(merchant_ids)
    by: dict[int, dict[str, tuple[int, int, int]]] = {m: {} for m in ids}
    rows = await conn.execute(
        select(R.c.merchant_id, R.c.status, func.count().label("n"), func.sum(R.c.quantity).label("q"), func.sum(R.c.points).label("p"))
        .where(R.c.merchant_id.in_(ids))
        .group_by(R.c.merchant_id, R.c.status)
    )
    for r in rows:
        by[r.merchant_id][r.status] = (int(r.n), int(r.q or 0), int(r.p or 0))
    active = dict(
        (
            await conn.execute(
                select(O.c.merchant_id, func.count()).where(O.c.merchant_id.in_(ids), O.c.status == ACTIVE).group_by(O.c.merchant_id)
            )
        ).all()
    )
    out = {}
    for m in ids:
        s = by[m]
        live = [s.get(st, (0, 0, 0)) for st in LIVE]
        out[m] = MerchantStats(
            redemptions=sum(v[0] for v in live),
            redeemed_quantity=sum(v[1] for v in live),
            confirmed=s.get(CONFIRMED, (0, 0, 0))[0],
            pending=s.get(PENDING, (0, 0, 0))[0],
            refunded=s.get(CANCELLED, (0, 0, 0))[0] + s.get(EXPIRED, (0, 0, 0))[0],
            points_received=sum(v[2] for v in live),
            active_offers=int(active.get(m, 0)),
        )
    return out


async def offer_redeemed_counts(conn: AsyncConnection, offer_ids: Sequence[int]) -> dict[int, int]:
    rows = await conn.execute(
        select(R.c.offer_id, func.sum(R.c.quantity).label("q"))
        .where(R.c.offer_id.in_(list(offer_ids)), R.c.status.in_(LIVE))
        .group_by(R.c.offer_id)
    )
    return {r.offer_id: int(r.q or 0) for r in rows}


# --- redemptions -------------------------------------------------------------------------------------


class RedeemFailure(DomainError):
    """Expected refusals of ``redeemOffer`` (code says which)."""


async def redeem(
    conn: AsyncConnection,
    *,
    user_id: int,
    offer_id: int,
    quantity: int,
    idempotency_key: str,
    now: datetime,
    lot_expiry_days: int,
    valid_days: int,
    max_quantity: int,
) -> tuple[int, bool]:
    """Redeem ``quantity`` of an offer for the member. Returns (redemption id, replayed)."""
    quantity = validate_quantity(quantity, max_quantity=max_quantity)
    key = idempotency.validate_key(idempotency_key)
    claim = await idempotency.claim(
        conn, f"redeem:{user_id}", key, idempotency.request_hash({"offerId": offer_id, "quantity": quantity})
    )
    if claim.is_replay:
        return int(claim.result_id), True

    offer = await _offer_row(conn, offer_id)
    merchant = await _merchant_row(conn, offer.merchant_id)
    if merchant.status != M_ACTIVE or merchant.account_id is None:
        raise RedeemFailure("This merchant is not active / 该商户暂停营业", code="MERCHANT_NOT_ACTIVE", field="offerId")
    if offer.status != ACTIVE:
        raise RedeemFailure(
            "This offer is not available now / 该优惠当前不可兑换", code="OFFER_NOT_ACTIVE", field="offerId"
        )
    if now < offer.starts_at:
        raise RedeemFailure("This offer has not started yet / 该优惠尚未开始", code="OFFER_NOT_STARTED", field="offerId")
    if now >= offer.ends_at:
        raise RedeemFailure("This offer has ended / 该优惠已结束", code="OFFER_ENDED", field="offerId")
    if quantity > offer.per_member_limit:
        raise RedeemFailure(
            f"At most {offer.per_member_limit} per member / 每人限兑 {offer.per_member_limit} 份",
            code="REDEMPTION_LIMIT_REACHED", field="quantity",
        )

    member_account = await ledger.lock_member_account(conn, user_id)
    already = (
        await conn.execute(
            select(func.coalesce(func.sum(R.c.quantity), 0)).where(
                R.c.offer_id == offer_id, R.c.member_user_id == user_id, R.c.status.in_(LIVE)
            )
        )
    ).scalar_one()
    if int(already) + quantity > offer.per_member_limit:
        raise RedeemFailure(
            f"At most {offer.per_member_limit} per member; you have {already} / 每人限兑 {offer.per_member_limit} 份，您已兑换 {already} 份",
            code="REDEMPTION_LIMIT_REACHED", field="quantity",
        )

    taken = await conn.execute(
        update(O)
        .where(O.c.id == offer_id, O.c.stock >= quantity, O.c.status == ACTIVE)
        .values(stock=O.c.stock - quantity)
    )
    if taken.rowcount != 1:
        status = (await conn.execute(select(O.c.status).where(O.c.id == offer_id))).scalar_one()
        if status != ACTIVE:
            raise RedeemFailure("This offer is not available now / 该优惠当前不可兑换", code="OFFER_NOT_ACTIVE", field="offerId")
        raise RedeemFailure("Out of stock / 库存不足", code="OUT_OF_STOCK", field="quantity")

    points = quantity * offer.points_price
    await ledger.expire_account_lots(conn, member_account, now=now, lot_expiry_days=lot_expiry_days)
    posted = await ledger.post_transaction(
        conn,
        kind=REDEMPTION,
        postings=[ledger.Posting(member_account, -points), ledger.Posting(merchant.account_id, points)],
        now=now,
        lot_expiry_days=lot_expiry_days,
        memo=f"{offer.title_zh} {offer.title_en}".strip()[:200] + f" ×{quantity}",
        actor_user_id=user_id,
    )
    for _ in range(5):
        code = new_code()
        clash = (await conn.execute(select(R.c.id).where(R.c.code == code))).scalar_one_or_none()
        if clash is None:
            break
    else:  # pragma: no cover - 31^10 codes
        raise RuntimeError("could not draw a free redemption code")
    redemption_id = (
        await conn.execute(
            insert(R)
            .values(
                offer_id=offer_id,
                merchant_id=offer.merchant_id,
                member_user_id=user_id,
                quantity=quantity,
                points=points,
                code=code,
                status=PENDING,
                created_at=now,
                expires_at=now + timedelta(days=valid_days),
                transaction_id=posted.id,
            )
            .returning(R.c.id)
        )
    ).scalar_one()
    await idempotency.complete(conn, claim, "Redemption", redemption_id)
    return redemption_id, False


async def confirm(conn: AsyncConnection, *, actor: Actor, code: str, now: datetime) -> int:
    """Mark a PENDING redemption of the actor's merchant as used. A code of another merchant, or no
    code at all, gives the same NOT_FOUND, so codes cannot be probed."""
    not_found = NotFound("No such redemption code / 兑换码不存在", code="NOT_FOUND", field="code")
    normalized = normalize_code(code)
    if actor.merchant_id is None or len(normalized) != CODE_LENGTH:
        raise not_found
    row = (
        await conn.execute(select(R).where(R.c.code == normalized, R.c.merchant_id == actor.merchant_id))
    ).one_or_none()
    if row is None:
        raise not_found
    result = await conn.execute(
        update(R)
        .where(R.c.id == row.id, R.c.status == PENDING, R.c.expires_at > now)
        .values(status=CONFIRMED, confirmed_at=now, confirmed_by_user_id=actor.user_id)
    )
    if result.rowcount != 1:
        current = (await conn.execute(select(R.c.status).where(R.c.id == row.id))).scalar_one()
        raise _closed_error(current, field="code")
    return row.id


def _closed_error(status: str, *, field: str) -> DomainError:
    if status == CONFIRMED:
        return Conflict("This code was already used / 该兑换码已被使用", code="ALREADY_CONFIRMED", field=field)
    if status == CANCELLED:
        return Conflict("This redemption was cancelled / 该兑换已取消", code="REDEMPTION_CANCELLED", field=field)
    return Conflict("This code has expired / 该兑换码已过期", code="REDEMPTION_EXPIRED", field=field)


async def _refund(
    conn: AsyncConnection, row: Any, *, member_account: int, now: datetime, lot_expiry_days: int,
    refund_min_valid_days: int, actor_user_id: int | None, memo: str,
) -> int:
    await conn.execute(update(O).where(O.c.id == row.offer_id).values(stock=O.c.stock + row.quantity))
    merchant_account = (await conn.execute(select(M.c.account_id).where(M.c.id == row.merchant_id))).scalar_one()
    # Refunded points get back the expiries of the very lots the redemption consumed (recorded by the
    # ledger in lot_consumption): one lot per original expiry, so redeem-and-cancel cannot extend any
    # point's life. The only extension is a floor of `refund_min_valid_days` from now, so that a refund
    # made after (or just before) the original expiry — e.g. by the expiry job — is not worthless.
    debit_entry = (
        await conn.execute(
            select(E.c.id).where(E.c.transaction_id == row.transaction_id, E.c.account_id == member_account)
        )
    ).scalar_one()
    floor = now + timedelta(days=refund_min_valid_days)
    by_expiry: dict[datetime, int] = {}
    for points, expires_at in await ledger.consumed_lots(conn, debit_entry):
        at = max(expires_at, floor)
        by_expiry[at] = by_expiry.get(at, 0) + points
    lots = tuple(sorted(((points, at) for at, points in by_expiry.items()), key=lambda lot: lot[1]))
    posted = await ledger.post_transaction(
        conn,
        kind=REFUND,
        postings=[
            ledger.Posting(merchant_account, -row.points),
            ledger.Posting(member_account, row.points, lots=lots),
        ],
        now=now,
        lot_expiry_days=lot_expiry_days,
        memo=memo,
        actor_user_id=actor_user_id,
        reverses_id=row.transaction_id,
    )
    await conn.execute(update(R).where(R.c.id == row.id).values(refund_transaction_id=posted.id))
    return posted.id


async def cancel(
    conn: AsyncConnection, *, user_id: int, is_admin: bool, redemption_id: int, now: datetime,
    lot_expiry_days: int, refund_min_valid_days: int,
) -> None:
    """The member (or an admin) cancels a PENDING redemption: points back, stock back."""
    row = (await conn.execute(select(R).where(R.c.id == redemption_id))).one_or_none()
    if row is None or (row.member_user_id != user_id and not is_admin):
        raise NotFound("No such redemption / 兑换记录不存在", field="redemptionId")
    member_account = await ledger.lock_member_account(conn, row.member_user_id)
    result = await conn.execute(
        update(R).where(R.c.id == row.id, R.c.status == PENDING).values(status=CANCELLED, closed_at=now)
    )
    if result.rowcount != 1:
        current = (await conn.execute(select(R.c.status).where(R.c.id == row.id))).scalar_one()
        raise _closed_error(current, field="redemptionId")
    await _refund(
        conn, row, member_account=member_account, now=now, lot_expiry_days=lot_expiry_days,
        refund_min_valid_days=refund_min_valid_days, actor_user_id=user_id,
        memo="redemption cancelled / 兑换已取消",
    )


async def overdue_redemption_ids(conn: AsyncConnection, now: datetime, limit: int = 500, after: int = 0) -> list[int]:
    """Overdue PENDING redemptions by id, after ``after`` (keyset batches)."""
    rows = await conn.execute(
        select(R.c.id).where(R.c.status == PENDING, R.c.expires_at <= now, R.c.id > after).order_by(R.c.id).limit(limit)
    )
    return [r.id for r in rows]


async def expire_redemption(
    conn: AsyncConnection, redemption_id: int, *, now: datetime, lot_expiry_days: int, refund_min_valid_days: int
) -> int:
    """Expire one overdue PENDING redemption and refund it; returns the points refunded (0 if it was
    confirmed or cancelled meanwhile)."""
    row = (await conn.execute(select(R).where(R.c.id == redemption_id))).one_or_none()
    if row is None or row.status != PENDING or row.expires_at > now:
        return 0
    member_account = await ledger.lock_member_account(conn, row.member_user_id)
    result = await conn.execute(
        update(R)
        .where(R.c.id == row.id, R.c.status == PENDING, R.c.expires_at <= now)
        .values(status=EXPIRED, closed_at=now)
    )
    if result.rowcount != 1:
        return 0
    await _refund(
        conn, row, member_account=member_account, now=now, lot_expiry_days=lot_expiry_days,
        refund_min_valid_days=refund_min_valid_days, actor_user_id=None,
        memo="redemption expired / 兑换码过期退还",
    )
    return int(row.points)


async def redemptions_by_ids(conn: AsyncConnection, ids: Sequence[int]) -> dict[int, dict]:
    rows = await conn.execute(select(R).where(R.c.id.in_(list(ids))))
    return {r.id: dict(r._mapping) for r in rows}


def _redemptions_where(stmt: Any, *, member_user_id: int | None, merchant_id: int | None, status: str | None) -> Any:
    if member_user_id is not None:
        stmt = stmt.where(R.c.member_user_id == member_user_id)
    if merchant_id is not None:
        stmt = stmt.where(R.c.merchant_id == merchant_id)
    if status is not None:
        stmt = stmt.where(R.c.status == status)
    return stmt


async def redemptions_page(
    conn: AsyncConnection,
    *,
    member_user_id: int | None = None,
    merchant_id: int | None = None,
    status: str | None = None,
    first: int,
    after: int | None,
) -> tuple[list[dict], bool]:
    """Newest first (keyset on id)."""
    stmt = _redemptions_where(select(R), member_user_id=member_user_id, merchant_id=merchant_id, status=status)
    if after is not None:
        stmt = stmt.where(R.c.id < after)
    rows = (await conn.execute(stmt.order_by(R.c.id.desc()).limit(first + 1))).all()
    return [dict(r._mapping) for r in rows[:first]], len(rows) > first


async def redemptions_count(
    conn: AsyncConnection, *, member_user_id: int | None = None, merchant_id: int | None = None, status: str | None = None
) -> int:
    stmt = _redemptions_where(
        select(func.count()).select_from(R), member_user_id=member_user_id, merchant_id=merchant_id, status=status
    )
    return int((await conn.execute(stmt)).scalar_one())


# --- settlement --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SettlementDay:
    day: date
    redemptions: int
    quantity: int
    points_redeemed: int
    points_refunded: int
    confirmed: int


@dataclass(frozen=True)
class SettlementStatusRow:
    status: str
    count: int
    quantity: int
    points: int


@dataclass(frozen=True)
class Settlement:
    start: date
    end: date
    points_received: int
    points_refunded: int
    balance: int
    by_status: list[SettlementStatusRow]
    by_day: list[SettlementDay]


def _local_day(conn: AsyncConnection, column: Any, offset_minutes: int) -> Any:
    """SQL expression: the calendar day of a UTC timestamp column in a fixed-offset time zone."""
    if conn.dialect.name == "postgresql":
        return cast(func.timezone("UTC", column) + func.make_interval(0, 0, 0, 0, 0, literal(offset_minutes)), Date)
    return func.date(column, f"{offset_minutes:+d} minutes")


def _as_date(value: Any) -> date:
    return value if isinstance(value, date) else date.fromisoformat(str(value))


async def settlement(
    conn: AsyncConnection, *, merchant_id: int, start: date, end: date, offset_minutes: int
) -> Settlement:
    """Reconciliation for days ``start``..``end`` (inclusive, merchant's time zone): ledger movements on
    the merchant's account per day, and the redemptions created in the range by status."""
    for name, day in (("from", start), ("to", end)):
        if not 2000 <= day.year <= 2100:
            raise ValidationFailed(f"`{name}` must be between 2000 and 2100 / 日期须在 2000 到 2100 年之间", field=name)
    if end < start:
        raise ValidationFailed("`to` must not be before `from` / 结束日期不能早于开始日期", field="to")
    if (end - start).days + 1 > MAX_SETTLEMENT_DAYS:
        raise ValidationFailed(
            f"At most {MAX_SETTLEMENT_DAYS} days / 最多查询 {MAX_SETTLEMENT_DAYS} 天", code="RANGE_TOO_LONG", field="to"
        )
    tz_offset = timedelta(minutes=offset_minutes)
    lo = datetime(start.year, start.month, start.day, tzinfo=UTC) - tz_offset
    hi = datetime(end.year, end.month, end.day, tzinfo=UTC) + timedelta(days=1) - tz_offset
    account_id = (await conn.execute(select(M.c.account_id).where(M.c.id == merchant_id))).scalar_one_or_none()
    days: dict[date, dict[str, int]] = {}

    def slot(d: Any) -> dict[str, int]:
        return days.setdefault(_as_date(d), {"redemptions": 0, "quantity": 0, "redeemed": 0, "refunded": 0, "confirmed": 0})

    received = refunded = balance = 0
    if account_id is not None:
        day = _local_day(conn, E.c.created_at, offset_minutes).label("day")
        rows = await conn.execute(
            select(
                day,
                func.sum(case((TX.c.kind == REDEMPTION, E.c.amount), else_=0)).label("redeemed"),
                func.sum(case((TX.c.kind == REFUND, -E.c.amount), else_=0)).label("refunded"),
            )
            .join(TX, TX.c.id == E.c.transaction_id)
            .where(E.c.account_id == account_id, E.c.created_at >= lo, E.c.created_at < hi)
            .group_by(day)
        )
        for r in rows:
            s = slot(r.day)
            s["redeemed"] += int(r.redeemed or 0)
            s["refunded"] += int(r.refunded or 0)
            received += int(r.redeemed or 0)
            refunded += int(r.refunded or 0)
        balance = int((await conn.execute(select(A.c.balance).where(A.c.id == account_id))).scalar_one())
    rday = _local_day(conn, R.c.created_at, offset_minutes).label("day")
    for r in await conn.execute(
        select(rday, func.count().label("n"), func.sum(R.c.quantity).label("q"))
        .where(R.c.merchant_id == merchant_id, R.c.created_at >= lo, R.c.created_at < hi)
        .group_by(rday)
    ):
        s = slot(r.day)
        s["redemptions"] += int(r.n)
        s["quantity"] += int(r.q or 0)
    cday = _local_day(conn, R.c.confirmed_at, offset_minutes).label("day")
    for r in await conn.execute(
        select(cday, func.count().label("n"))
        .where(R.c.merchant_id == merchant_id, R.c.confirmed_at >= lo, R.c.confirmed_at < hi)
        .group_by(cday)
    ):
        slot(r.day)["confirmed"] += int(r.n)
    by_status = [
        SettlementStatusRow(status=r.status, count=int(r.n), quantity=int(r.q or 0), points=int(r.p or 0))
        for r in await conn.execute(
            select(R.c.status, func.count().label("n"), func.sum(R.c.quantity).label("q"), func.sum(R.c.points).label("p"))
            .where(R.c.merchant_id == merchant_id, R.c.created_at >= lo, R.c.created_at < hi)
            .group_by(R.c.status)
            .order_by(R.c.status)
        )
    ]
    by_day = [
        SettlementDay(
            day=d, redemptions=v["redemptions"], quantity=v["quantity"], points_redeemed=v["redeemed"],
            points_refunded=v["refunded"], confirmed=v["confirmed"],
        )
        for d, v in sorted(days.items())
    ]
    return Settlement(
        start=start, end=end, points_received=received, points_refunded=refunded, balance=balance,
        by_status=by_status, by_day=by_day,
    )


# --- invariants --------------------------------------------------------------------------------------


async def check_invariants(conn: AsyncConnection) -> list[str]:
    """Violations of the offers invariants (empty when all hold): stock never negative and always equal to
    total stock minus the items of live redemptions; every live redemption unrefunded and every closed one
    refunded by a REFUND reversing its REDEMPTION; each merchant account holding exactly its live points."""
    problems: list[str] = []
    live_q = (
        select(R.c.offer_id, func.sum(R.c.quantity).label("q"))
        .where(R.c.status.in_(LIVE))
        .group_by(R.c.offer_id)
        .subquery()
    )
    rows = await conn.execute(
        select(O.c.id, O.c.stock, O.c.total_stock, func.coalesce(live_q.c.q, 0).label("q"))
        .select_from(O.outerjoin(live_q, live_q.c.offer_id == O.c.id))
        .where((O.c.stock < 0) | (O.c.stock != O.c.total_stock - func.coalesce(live_q.c.q, 0)))
    )
    problems += [f"offer {r.id}: stock {r.stock} but total {r.total_stock} - redeemed {r.q}" for r in rows]
    refund = TX.alias("refund")
    rows = await conn.execute(
        select(R.c.id, R.c.status, TX.c.kind, refund.c.kind.label("refund_kind"), refund.c.reverses_id)
        .join(TX, TX.c.id == R.c.transaction_id)
        .outerjoin(refund, refund.c.id == R.c.refund_transaction_id)
    )
    for r in rows:
        if r.kind != REDEMPTION:
            problems.append(f"redemption {r.id}: transaction kind {r.kind}")
        closed = r.status in (CANCELLED, EXPIRED)
        if closed != (r.refund_kind == REFUND) or (closed and r.reverses_id is None):
            problems.append(f"redemption {r.id}: status {r.status} but refund {r.refund_kind}")
    live_p = (
        select(R.c.merchant_id, func.sum(R.c.points).label("p"))
        .where(R.c.status.in_(LIVE))
        .group_by(R.c.merchant_id)
        .subquery()
    )
    rows = await conn.execute(
        select(M.c.id, A.c.balance, func.coalesce(live_p.c.p, 0).label("p"))
        .select_from(M.join(A, A.c.id == M.c.account_id).outerjoin(live_p, live_p.c.merchant_id == M.c.id))
        .where(A.c.balance != func.coalesce(live_p.c.p, 0))
    )
    problems += [f"merchant {r.id}: balance {r.balance} but live redemptions hold {r.p}" for r in rows]
    return problems
