"""Merchants and their staff: onboarding, applications, status, profile, the merchant's points account and
the account side of its settlement (issue #4). Knows nothing about GraphQL.

Every write function takes an ``AsyncConnection`` inside ``Database.write`` (one transaction, re-runnable
on PostgreSQL serialization failures) and touches the database only through it. Role changes go through
``users.service.add_role``.
"""

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import Date, cast, func, insert, literal, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from jingtan_api import events
from jingtan_api.accounts import service as ledger
from jingtan_api.accounts.models import Account, LedgerEntry, LedgerTransaction
from jingtan_api.audit import service as audit
from jingtan_api.auth.permissions import MERCHANT as MERCHANT_ROLE
from jingtan_api.db import Page, PageArgs, keyset_page
from jingtan_api.driver import DriverStatement, in_list
from jingtan_api.errors import Conflict, NotFound, PermissionDenied, ValidationFailed
from jingtan_api.merchants.models import Merchant, MerchantStaff
from jingtan_api.users import service as users

M = Merchant.__table__
S = MerchantStaff.__table__
A = Account.__table__
E = LedgerEntry.__table__
TX = LedgerTransaction.__table__

CATEGORIES = ("CAFE", "BIKE_SHOP", "TRANSIT", "GROCERY", "SECOND_HAND", "RESTAURANT", "OTHER")

PENDING, ACTIVE, REJECTED, SUSPENDED = "PENDING", "ACTIVE", "REJECTED", "SUSPENDED"

MAX_SETTLEMENT_DAYS = 92


@dataclass(frozen=True)
class Actor:
    """Who performs a merchant-side action: a user, whether an admin, and the merchant they staff."""

    user_id: int
    is_admin: bool
    merchant_id: int | None


# --- validation --------------------------------------------------------------------------------------


def clean_text(value: Any, field: str, *, max_len: int, required: bool = False, multiline: bool = False) -> str:
    """A text field: whitespace collapsed (kept inside ``multiline`` text), length-bounded, printable."""
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


def bounded_int(value: Any, field: str, *, low: int, high: int, message: str) -> int:
    """A whole number (not a bool) in ``low..high``."""
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValidationFailed(message, field=field)
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
    return [clean_text(c, "commitments", max_len=200, required=True) for c in items]


def validate_profile(data: dict[str, Any], *, partial: bool = False) -> dict[str, Any]:
    """Merchant profile fields (keys: name_zh, name_en, category, city, district, address, latitude,
    longitude, commitments) → column values. ``partial`` validates only the keys present."""
    out: dict[str, Any] = {}

    def has(key: str) -> bool:
        return not partial or key in data

    if has("name_zh"):
        out["name_zh"] = clean_text(data.get("name_zh"), "nameZh", max_len=100, required=True)
    if has("name_en"):
        out["name_en"] = clean_text(data.get("name_en"), "nameEn", max_len=100)
    if has("category"):
        if data.get("category") not in CATEGORIES:
            raise ValidationFailed("Unknown category / 未知类别", field="category")
        out["category"] = data["category"]
    if has("city"):
        out["city"] = clean_text(data.get("city"), "city", max_len=64, required=True)
    if has("district"):
        out["district"] = clean_text(data.get("district"), "district", max_len=64)
    if has("address"):
        out["address"] = clean_text(data.get("address"), "address", max_len=200)
    if has("latitude") or has("longitude"):
        out["latitude"], out["longitude"] = validate_coordinates(data.get("latitude"), data.get("longitude"))
    if has("commitments"):
        out["commitments"] = json.dumps(validate_commitments(data.get("commitments")), ensure_ascii=False)
    return out


# --- merchants and staff -----------------------------------------------------------------------------


async def staff_merchant_ids(conn: AsyncConnection, user_ids: Sequence[int]) -> dict[int, int]:
    """{user_id: merchant_id} for users who work for a merchant."""
    rows = await conn.execute(select(S.c.user_id, S.c.merchant_id).where(S.c.user_id.in_(list(user_ids))))
    return {r.user_id: r.merchant_id for r in rows}


async def merchant_row(conn: AsyncConnection, merchant_id: int) -> Any:
    """The merchant's row; NOT_FOUND (field ``merchantId``) when there is none."""
    row = (await conn.execute(select(M).where(M.c.id == merchant_id))).one_or_none()
    if row is None:
        raise NotFound("No such merchant / 商户不存在", field="merchantId")
    return row


async def merchant_account_id(conn: AsyncConnection, merchant_id: int) -> int | None:
    """The merchant's ledger account (None until the merchant is approved)."""
    return (await conn.execute(select(M.c.account_id).where(M.c.id == merchant_id))).scalar_one_or_none()


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
            insert(M).values(**values, status=ACTIVE, owner_user_id=owner_user_id, created_at=now,
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


async def apply_for_merchant(conn: AsyncConnection, *, user_id: int, profile: dict[str, Any], now: datetime,
                             volunteer_code: str | None = None) -> int:
    values = validate_profile(profile)
    # One application at a time per user: serialise this user's applications on their account row.
    await ledger.lock_member_account(conn, user_id)
    if (await staff_merchant_ids(conn, [user_id])).get(user_id) is not None:
        raise Conflict("You already work for a merchant / 您已是商户员工", code="ALREADY_MERCHANT_STAFF")
    pending = (
        await conn.execute(select(M.c.id).where(M.c.owner_user_id == user_id, M.c.status == PENDING).limit(1))
    ).scalar_one_or_none()
    if pending is not None:
        raise Conflict("You already have a pending application / 您已有待审核的申请", code="APPLICATION_PENDING")
    merchant_id = (
        await conn.execute(
            insert(M).values(**values, status=PENDING, owner_user_id=user_id, created_at=now).returning(M.c.id)
        )
    ).scalar_one()
    # The volunteer who brought the merchant (their code) is the volunteer programme's business (a listener).
    await events.emit(conn, "merchant.applied", merchant_id=merchant_id, user_id=user_id, volunteer_code=volunteer_code)
    return merchant_id


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
    row = await merchant_row(conn, merchant_id)
    new_status = ACTIVE if approve else REJECTED
    result = await conn.execute(
        update(M)
        .where(M.c.id == merchant_id, M.c.status == PENDING)
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
    row = await merchant_row(conn, merchant_id)
    allowed = {ACTIVE: SUSPENDED, SUSPENDED: ACTIVE}
    if allowed.get(row.status) != status:
        raise Conflict(
            f"A merchant cannot go from {row.status} to {status} / 商户状态不能从 {row.status} 变为 {status}",
            code="INVALID_STATUS_TRANSITION", field="status",
        )
    result = await conn.execute(update(M).where(M.c.id == merchant_id, M.c.status == row.status).values(status=status))
    if result.rowcount != 1:
        raise Conflict("The merchant changed meanwhile, try again / 商户状态已变更，请重试", field="status")
    await audit.record(
        conn, actor_user_id=actor_user_id, action="merchant.suspend" if status == SUSPENDED else "merchant.reactivate",
        target_type="Merchant", target_id=merchant_id, reason=reason, details={"from": row.status, "to": status},
        request_id=request_id, now=now,
    )


def require_merchant_manager(actor: Actor, merchant_id: int) -> None:
    """Admins and the merchant's staff manage a merchant (its profile, its offers)."""
    if not actor.is_admin and actor.merchant_id != merchant_id:
        raise PermissionDenied("You do not work for this merchant / 您不是该商户的员工")


async def add_merchant_staff(
    conn: AsyncConnection, *, actor: Actor, merchant_id: int, user_id: int, request_id: str | None, now: datetime
) -> None:
    """Admins, or the merchant's owner, add a staff member; the user gets the MERCHANT role."""
    row = await merchant_row(conn, merchant_id)
    if not actor.is_admin:
        owner = (
            await conn.execute(select(S.c.is_owner).where(S.c.user_id == actor.user_id, S.c.merchant_id == merchant_id))
        ).scalar_one_or_none()
        if not owner:
            raise PermissionDenied("Only the merchant's owner or an admin can add staff / 仅商户负责人或管理员可添加员工")
    if row.status != ACTIVE:
        raise Conflict("The merchant is not active / 商户未启用", code="MERCHANT_NOT_ACTIVE", field="merchantId")
    await _add_staff(conn, merchant_id=merchant_id, user_id=user_id, is_owner=False, added_by=actor.user_id, now=now)
    await audit.record(
        conn, actor_user_id=actor.user_id, action="merchant.add_staff", target_type="Merchant", target_id=merchant_id,
        details={"userId": user_id}, request_id=request_id, now=now,
    )


async def update_merchant(conn: AsyncConnection, *, actor: Actor, merchant_id: int, changes: dict[str, Any]) -> None:
    await merchant_row(conn, merchant_id)
    require_merchant_manager(actor, merchant_id)
    values = validate_profile(changes, partial=True)
    if values:
        await conn.execute(update(M).where(M.c.id == merchant_id).values(**values))


_MERCHANTS_BY_IDS = DriverStatement(select(M).where(in_list(M.c.id, "ids")))


async def merchants_by_ids(conn: AsyncConnection, ids: Sequence[int]) -> dict[int, dict]:
    return {r["id"]: r for r in await _MERCHANTS_BY_IDS.all(conn, {"ids": list(ids)})}


async def merchant_balances(conn: AsyncConnection, merchant_ids: Sequence[int]) -> dict[int, int]:
    rows = await conn.execute(
        select(M.c.id, A.c.balance).join(A, A.c.id == M.c.account_id).where(M.c.id.in_(list(merchant_ids)))
    )
    return {r.id: int(r.balance) for r in rows}


def _merchants_where(stmt: Any, *, city: str | None, category: str | None, status: str) -> Any:
    stmt = stmt.where(M.c.status == status)
    if city:
        stmt = stmt.where(M.c.city == city)
    if category:
        stmt = stmt.where(M.c.category == category)
    return stmt


async def merchants_page(
    conn: AsyncConnection, args: PageArgs, *, city: str | None, category: str | None, status: str
) -> Page:
    """Oldest first (ascending ids)."""
    stmt = _merchants_where(select(M), city=city, category=category, status=status)
    return await keyset_page(conn, stmt, [(M.c.id, False)], args)


async def merchants_count(conn: AsyncConnection, *, city: str | None, category: str | None, status: str) -> int:
    stmt = _merchants_where(select(func.count()).select_from(M), city=city, category=category, status=status)
    return int((await conn.execute(stmt)).scalar_one())


# --- settlement: the period and the merchant account's side --------------------------------------------
# The redemptions of the period are counted by ``redemptions.service.settlement``, which adds them to this.


@dataclass(frozen=True)
class SettlementPeriod:
    """Calendar days ``start``..``end`` (inclusive) in a fixed-offset time zone, as UTC bounds [lo, hi)."""

    start: date
    end: date
    offset_minutes: int
    lo: datetime
    hi: datetime


def settlement_period(start: date, end: date, offset_minutes: int) -> SettlementPeriod:
    """Validate a settlement range (years 2000-2100, ``from`` <= ``to``, at most 92 days)."""
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
    return SettlementPeriod(
        start=start,
        end=end,
        offset_minutes=offset_minutes,
        lo=datetime(start.year, start.month, start.day, tzinfo=UTC) - tz_offset,
        hi=datetime(end.year, end.month, end.day, tzinfo=UTC) + timedelta(days=1) - tz_offset,
    )


def local_day(conn: AsyncConnection, column: Any, offset_minutes: int) -> Any:
    """SQL expression: the calendar day of a UTC timestamp column in a fixed-offset time zone."""
    if conn.dialect.name == "postgresql":
        return cast(func.timezone("UTC", column) + func.make_interval(0, 0, 0, 0, 0, literal(offset_minutes)), Date)
    return func.date(column, f"{offset_minutes:+d} minutes")


def as_date(value: Any) -> date:
    """A day as the driver returns it (a ``date``, or ISO text on SQLite)."""
    return value if isinstance(value, date) else date.fromisoformat(str(value))


@dataclass(frozen=True)
class AccountMovements:
    """The merchant account's entries in a period: amount per (local day, transaction kind); the balance now."""

    by_day: dict[date, dict[str, int]]
    balance: int


async def account_movements(conn: AsyncConnection, *, merchant_id: int, period: SettlementPeriod) -> AccountMovements:
    """What moved on the merchant's account in ``period``, by day and transaction kind (nothing, balance
    0, for a merchant without an account)."""
    account_id = await merchant_account_id(conn, merchant_id)
    if account_id is None:
        return AccountMovements(by_day={}, balance=0)
    day = local_day(conn, E.c.created_at, period.offset_minutes).label("day")
    rows = await conn.execute(
        select(day, TX.c.kind, func.sum(E.c.amount).label("amount"))
        .join(TX, TX.c.id == E.c.transaction_id)
        .where(E.c.account_id == account_id, E.c.created_at >= period.lo, E.c.created_at < period.hi)
        .group_by(day, TX.c.kind)
    )
    by_day: dict[date, dict[str, int]] = {}
    for r in rows:
        kinds = by_day.setdefault(as_date(r.day), {})
        kinds[r.kind] = kinds.get(r.kind, 0) + int(r.amount or 0)
    balance = int((await conn.execute(select(A.c.balance).where(A.c.id == account_id))).scalar_one())
    return AccountMovements(by_day=by_day, balance=balance)
