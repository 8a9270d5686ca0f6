"""Redemptions: redeem, confirm, cancel, expire and refund; merchants' redemption totals and settlement;
the invariants of merchants, offers and redemptions (issue #4). Knows nothing about GraphQL.

Every write function takes an ``AsyncConnection`` inside ``Database.write`` (one transaction, re-runnable
on PostgreSQL serialization failures) and touches the database only through it.

Redemption without double spend (docs/ledger.md, docs/offers.md):

* points move through ``accounts.service.post_transaction`` (conditional balance UPDATE);
* stock moves only through ``offers.service.take_stock`` (``UPDATE offer SET stock = stock - :q WHERE id =
  :id AND stock >= :q AND status = 'ACTIVE'``) — never read-then-write;
* the per-member limit is a count of the member's live redemptions of the offer, taken *after* locking the
  member's account row (``SELECT … FOR UPDATE`` on PostgreSQL; SQLite write transactions are already
  serialised by ``BEGIN IMMEDIATE``). Every transaction that creates or closes a member's redemption takes
  that lock first, so two parallel redemptions by one member see each other's rows (READ COMMITTED takes a
  fresh snapshot per statement, after the lock was granted).

Lock order everywhere: idempotency record → member account → redemption → offer → merchant account.
"""

import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, func, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from jingtan_api import events
from jingtan_api.accounts import idempotency
from jingtan_api.accounts import service as ledger
from jingtan_api.accounts.models import Account, LedgerEntry, LedgerTransaction
from jingtan_api.db import Page, PageArgs, keyset_page
from jingtan_api.driver import DriverStatement, column_binds, in_list
from jingtan_api.users import service as users
from jingtan_api.errors import Conflict, DomainError, NotFound
from jingtan_api.merchants import service as merchants
from jingtan_api.merchants.models import Merchant
from jingtan_api.offers import service as offers
from jingtan_api.offers.models import Offer
from jingtan_api.redemptions.models import Redemption

M = Merchant.__table__
O = Offer.__table__
R = Redemption.__table__
A = Account.__table__
E = LedgerEntry.__table__
TX = LedgerTransaction.__table__

PENDING, CONFIRMED, CANCELLED, EXPIRED = "PENDING", "CONFIRMED", "CANCELLED", "EXPIRED"
LIVE = (PENDING, CONFIRMED)

# Ledger transaction kinds written here.
REDEMPTION = "REDEMPTION"
REFUND = "REFUND"

# No 0/O, 1/I/L: codes are read aloud and typed at a counter. 31^10 ≈ 8·10^14 codes.
CODE_ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"
CODE_LENGTH = 10


def validate_quantity(quantity: Any, *, max_quantity: int) -> int:
    return merchants.bounded_int(
        quantity, "quantity", low=1, high=max_quantity,
        message=f"quantity must be a whole number from 1 to {max_quantity} / 数量须在 1 到 {max_quantity} 之间",
    )


def normalize_code(code: Any) -> str:
    raw = "".join(ch for ch in str(code or "").upper() if ch not in " -")
    return raw[:32]


def new_code() -> str:
    return "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))


# --- redeem, confirm, cancel, expire -----------------------------------------------------------------


class RedeemFailure(DomainError):
    """Expected refusals of ``redeemOffer`` beyond the offer's availability (code says which)."""


# A redemption's own statements on the driver path (jingtan_api.driver), compiled once.
_ALREADY = DriverStatement(
    select(func.coalesce(func.sum(R.c.quantity), 0).label("already"))
    .where(R.c.offer_id == bindparam("offer_id"), R.c.member_user_id == bindparam("uid"),
           or_(*(R.c.status == status for status in LIVE))))
_CODE_TAKEN = DriverStatement(select(R.c.id).where(R.c.code == bindparam("code")))
_INSERT_REDEMPTION = DriverStatement(
    insert(R).values(column_binds(R, (
        "offer_id", "merchant_id", "member_user_id", "quantity", "points", "code", "status", "created_at", "expires_at",
        "transaction_id"))).returning(R.c.id))


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
    require_verified_contact: bool = False,
) -> tuple[int, bool]:
    """Redeem ``quantity`` of an offer for the member. Returns (redemption id, replayed)."""
    if require_verified_contact:  # identity gate (docs/identity.md)
        await users.require_verified_contact(conn, user_id)
    quantity = validate_quantity(quantity, max_quantity=max_quantity)
    key = idempotency.validate_key(idempotency_key)
    claim = await idempotency.claim(
        conn, f"redeem:{user_id}", key, idempotency.request_hash({"offerId": offer_id, "quantity": quantity})
    )
    if claim.is_replay:
        return int(claim.result_id), True

    offer, merchant = await offers.offer_with_merchant(conn, offer_id)
    refusal = offers.unavailable(offer, merchant, now)
    if refusal is not None:
        raise refusal
    limit = offer["per_member_limit"]
    if quantity > limit:
        raise RedeemFailure(
            f"At most {limit} per member / 每人限兑 {limit} 份",
            code="REDEMPTION_LIMIT_REACHED", field="quantity",
        )

    member_account = await ledger.lock_member_account(conn, user_id)
    already = (await _ALREADY.all(conn, {"offer_id": offer_id, "uid": user_id}))[0]["already"]
    if int(already) + quantity > limit:
        raise RedeemFailure(
            f"At most {limit} per member; you have {already} / 每人限兑 {limit} 份，您已兑换 {already} 份",
            code="REDEMPTION_LIMIT_REACHED", field="quantity",
        )

    refusal = await offers.take_stock(conn, offer_id, quantity)
    if refusal is not None:
        raise refusal

    points = quantity * offer["points_price"]
    await ledger.expire_account_lots(conn, member_account, now=now, lot_expiry_days=lot_expiry_days)
    posted = await ledger.post_transaction(
        conn,
        kind=REDEMPTION,
        postings=[ledger.Posting(member_account, -points), ledger.Posting(merchant["account_id"], points)],
        now=now,
        lot_expiry_days=lot_expiry_days,
        memo=f"{offer['title_zh']} {offer['title_en']}".strip()[:200] + f" ×{quantity}",
        actor_user_id=user_id,
    )
    for _ in range(5):
        code = new_code()
        if not await _CODE_TAKEN.all(conn, {"code": code}):
            break
    else:  # pragma: no cover - 31^10 codes
        raise RuntimeError("could not draw a free redemption code")
    redemption_id = (await _INSERT_REDEMPTION.all(conn, {
        "offer_id": offer_id, "merchant_id": offer["merchant_id"], "member_user_id": user_id, "quantity": quantity,
        "points": points, "code": code, "status": PENDING, "created_at": now,
        "expires_at": now + timedelta(days=valid_days), "transaction_id": posted.id,
    }))[0]["id"]
    await _emit(conn, "redemption.created", redemption_id=redemption_id, member_user_id=user_id,
                merchant_id=offer["merchant_id"], offer_id=offer_id, points=points, status=PENDING)
    await idempotency.complete(conn, claim, "Redemption", redemption_id)
    return redemption_id, False


async def _emit(conn: AsyncConnection, event_type: str, **data: Any) -> None:
    """``redemption.*`` events (jingtan_api.events): ids, points and the new status."""
    await events.emit(conn, event_type, **data)


def _event_data(row: Any, status: str) -> dict[str, Any]:
    return dict(redemption_id=row.id, member_user_id=row.member_user_id, merchant_id=row.merchant_id,
                offer_id=row.offer_id, points=row.points, status=status)


async def confirm(conn: AsyncConnection, *, actor: merchants.Actor, code: str, now: datetime) -> int:
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
    await _emit(conn, "redemption.confirmed", **_event_data(row, CONFIRMED))
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
    await offers.return_stock(conn, row.offer_id, row.quantity)
    merchant_account = await merchants.merchant_account_id(conn, row.merchant_id)
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
    await _emit(conn, "redemption.cancelled", **_event_data(row, CANCELLED), refunded_points=row.points)


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
    await _emit(conn, "redemption.expired", **_event_data(row, EXPIRED), refunded_points=row.points)
    return int(row.points)


# --- listing -----------------------------------------------------------------------------------------


_BY_IDS = DriverStatement(select(R).where(in_list(R.c.id, "ids")))


async def redemptions_by_ids(conn: AsyncConnection, ids: Sequence[int]) -> dict[int, dict]:
    return {r["id"]: r for r in await _BY_IDS.all(conn, {"ids": list(ids)})}


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
    args: PageArgs,
) -> Page:
    """Newest first (keyset on id)."""
    stmt = _redemptions_where(select(R), member_user_id=member_user_id, merchant_id=merchant_id, status=status)
    return await keyset_page(conn, stmt, [(R.c.id, True)], args)


async def redemptions_count(
    conn: AsyncConnection, *, member_user_id: int | None = None, merchant_id: int | None = None, status: str | None = None
) -> int:
    stmt = _redemptions_where(
        select(func.count()).select_from(R), member_user_id=member_user_id, merchant_id=merchant_id, status=status
    )
    return int((await conn.execute(stmt)).scalar_one())


# --- totals ------------------------------------------------------------------------------------------


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
    active = await offers.active_offer_counts(conn, ids)
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
            active_offers=active.get(m, 0),
        )
    return out


async def offer_redeemed_counts(conn: AsyncConnection, offer_ids: Sequence[int]) -> dict[int, int]:
    rows = await conn.execute(
        select(R.c.offer_id, func.sum(R.c.quantity).label("q"))
        .where(R.c.offer_id.in_(list(offer_ids)), R.c.status.in_(LIVE))
        .group_by(R.c.offer_id)
    )
    return {r.offer_id: int(r.q or 0) for r in rows}


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


async def settlement(
    conn: AsyncConnection, *, merchant_id: int, start: date, end: date, offset_minutes: int
) -> Settlement:
    """Reconciliation for days ``start``..``end`` (inclusive, merchant's time zone): ledger movements on
    the merchant's account per day (``merchants.service.account_movements``), and the redemptions created
    in the range by status. ``by_day`` has one row per day of the range, zeros on days without activity."""
    period = merchants.settlement_period(start, end, offset_minutes)
    days: dict[date, dict[str, int]] = {}

    def slot(d: Any) -> dict[str, int]:
        return days.setdefault(merchants.as_date(d), {"redemptions": 0, "quantity": 0, "redeemed": 0, "refunded": 0, "confirmed": 0})

    account = await merchants.account_movements(conn, merchant_id=merchant_id, period=period)
    received = refunded = 0
    for d, kinds in account.by_day.items():
        s = slot(d)
        # Redemptions credit the merchant's account, refunds debit it.
        s["redeemed"] += kinds.get(REDEMPTION, 0)
        s["refunded"] -= kinds.get(REFUND, 0)
        received += kinds.get(REDEMPTION, 0)
        refunded -= kinds.get(REFUND, 0)
    rday = merchants.local_day(conn, R.c.created_at, offset_minutes).label("day")
    for r in await conn.execute(
        select(rday, func.count().label("n"), func.sum(R.c.quantity).label("q"))
        .where(R.c.merchant_id == merchant_id, R.c.created_at >= period.lo, R.c.created_at < period.hi)
        .group_by(rday)
    ):
        s = slot(r.day)
        s["redemptions"] += int(r.n)
        s["quantity"] += int(r.q or 0)
    cday = merchants.local_day(conn, R.c.confirmed_at, offset_minutes).label("day")
    for r in await conn.execute(
        select(cday, func.count().label("n"))
        .where(R.c.merchant_id == merchant_id, R.c.confirmed_at >= period.lo, R.c.confirmed_at < period.hi)
        .group_by(cday)
    ):
        slot(r.day)["confirmed"] += int(r.n)
    by_status = [
        SettlementStatusRow(status=r.status, count=int(r.n), quantity=int(r.q or 0), points=int(r.p or 0))
        for r in await conn.execute(
            select(R.c.status, func.count().label("n"), func.sum(R.c.quantity).label("q"), func.sum(R.c.points).label("p"))
            .where(R.c.merchant_id == merchant_id, R.c.created_at >= period.lo, R.c.created_at < period.hi)
            .group_by(R.c.status)
            .order_by(R.c.status)
        )
    ]
    day = start
    while day <= end:  # every day of the range, with or without activity (a chart needs them all)
        slot(day)
        day += timedelta(days=1)
    by_day = [
        SettlementDay(
            day=d, redemptions=v["redemptions"], quantity=v["quantity"], points_redeemed=v["redeemed"],
            points_refunded=v["refunded"], confirmed=v["confirmed"],
        )
        for d, v in sorted(days.items())
    ]
    return Settlement(
        start=start, end=end, points_received=received, points_refunded=refunded, balance=account.balance,
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
    # Movements of other domains (a merchant funding a campaign and getting its rest back) are not
    # redemptions: the balance less those must be the live redemptions' points.
    other = (
        select(E.c.account_id, func.sum(E.c.amount).label("o"))
        .join(TX, TX.c.id == E.c.transaction_id)
        .where(TX.c.kind.not_in((REDEMPTION, REFUND)))
        .group_by(E.c.account_id)
        .subquery()
    )
    held = A.c.balance - func.coalesce(other.c.o, 0)
    rows = await conn.execute(
        select(M.c.id, held.label("balance"), func.coalesce(live_p.c.p, 0).label("p"))
        .select_from(M.join(A, A.c.id == M.c.account_id).outerjoin(live_p, live_p.c.merchant_id == M.c.id)
                     .outerjoin(other, other.c.account_id == A.c.id))
        .where(held != func.coalesce(live_p.c.p, 0))
    )
    problems += [f"merchant {r.id}: balance {r.balance} from redemptions but live redemptions hold {r.p}" for r in rows]
    return problems
