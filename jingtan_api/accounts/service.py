"""The points ledger: accounts, double-entry transactions, lots and expiry (docs/ledger.md).

Only this module writes ledger rows. Every function that writes takes an ``AsyncConnection`` inside a
write transaction (``Database.write``), so callers compose ledger postings with their own rows (an
approved action, a redemption) atomically.

Concurrency: balances change only through ``UPDATE account SET balance = balance + :d WHERE id = :id
AND (allow_negative OR balance + :d >= 0)``; the row lock it takes serialises concurrent spenders on
PostgreSQL, and SQLite write transactions are serialised by BEGIN IMMEDIATE.

Lock order (PostgreSQL): accounts are locked in DESCENDING id order. The platform accounts (issuance,
expired) are created first by the migration and have the lowest ids, so every transaction takes the
member's or merchant's row before the platform rows: the domains that lock a member up front (an action
credit, a redemption, a refund, an expiry) and the plain postings (a grant) agree, two transactions never
wait on each other in opposite orders, and the hot issuance row is held for the shortest time. A
transaction that touches a member and a merchant locks the member first (the domains do it explicitly).
Lots of an account are only
read or touched after its row was locked in the same transaction (by its balance UPDATE, or earlier by
``lock_accounts``), so they are protected by that lock; an operation that must lock several accounts
before its postings (a revoke expires, then posts) takes them all up front with ``lock_accounts``.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, bindparam, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from jingtan_api.accounts.models import (
    Account,
    IdempotencyRecord,
    LedgerEntry,
    LedgerTransaction,
    LotConsumption,
    PointsLot,
)
from jingtan_api import events
from jingtan_api.accounts import idempotency
from jingtan_api.audit import service as audit
from jingtan_api.auth.permissions import acting_admin_var
from jingtan_api.db import Page, PageArgs, StatementCache, keyset_page_cached, utcnow
from jingtan_api.driver import DriverStatement, in_list, row_binds, row_chunks, row_params
from jingtan_api.errors import InsufficientPoints, NotFound, ValidationFailed

A = Account.__table__
TX = LedgerTransaction.__table__
E = LedgerEntry.__table__
L = PointsLot.__table__
LC = LotConsumption.__table__

MEMBER = "MEMBER"
MERCHANT = "MERCHANT"
ISSUANCE = "ISSUANCE"
EXPIRED = "EXPIRED"

ISSUANCE_CODE = "platform:issuance"
EXPIRED_CODE = "platform:expired"

# Transaction kinds written by the core.
GRANT = "GRANT"
REVOKE = "REVOKE"
EXPIRY = "EXPIRY"

# Bigger than any sane single movement, well inside a signed 64-bit column.
HARD_MAX_AMOUNT = 10**12


@dataclass(frozen=True)
class Posting:
    """One side of a transaction: ``amount`` points added to (positive) or taken from ``account_id``.

    ``lot_expires_at`` applies to credits of member accounts (default: now + lot expiry days). ``lots``
    instead splits a credit of a member account into several lots, as ``(points, expires_at)`` pairs
    whose points are positive and sum to ``amount`` (a refund restoring points with their original
    expiries); give one or the other, not both."""

    account_id: int
    amount: int
    lot_expires_at: datetime | None = None
    lots: tuple[tuple[int, datetime], ...] | None = None


@dataclass(frozen=True)
class PostedEntry:
    entry_id: int
    account_id: int
    amount: int
    balance_after: int


@dataclass(frozen=True)
class PostedTransaction:
    id: int
    kind: str
    created_at: datetime
    entries: tuple[PostedEntry, ...]


def validate_amount(amount: object, *, max_amount: int, field: str = "amount") -> int:
    if isinstance(amount, bool) or not isinstance(amount, int):
        raise ValidationFailed("Points must be a whole number / 积分必须为整数", field=field)
    if amount <= 0:
        raise ValidationFailed("Points must be greater than zero / 积分必须大于零", field=field)
    if amount > min(max_amount, HARD_MAX_AMOUNT):
        raise ValidationFailed(
            f"Points must not exceed {max_amount} in one operation / 单次积分不能超过 {max_amount}", field=field
        )
    return amount


_PLATFORM_ACCOUNT = DriverStatement(select(A.c.id).where(A.c.code == bindparam("code")))


async def platform_account_id(conn: AsyncConnection, code: str) -> int:
    found = await _PLATFORM_ACCOUNT.all(conn, {"code": code})
    if not found:
        raise RuntimeError(f"platform account {code!r} is missing; run `jingtan migrate`")
    return found[0]["id"]


async def cached_platform_account_id(cache: dict[str, int], conn: AsyncConnection, code: str) -> int:
    """``platform_account_id`` remembered in ``cache`` (``Services.platform_accounts``): platform accounts
    are created by the migrations and their ids never change."""
    if code not in cache:
        cache[code] = await platform_account_id(conn, code)
    return cache[code]


async def create_account(
    conn: AsyncConnection,
    *,
    kind: str,
    user_id: int | None = None,
    code: str | None = None,
    allow_negative: bool = False,
) -> int:
    return (
        await conn.execute(
            insert(A)
            .values(
                kind=kind,
                user_id=user_id,
                code=code,
                balance=0,
                allow_negative=allow_negative,
                created_at=utcnow(),
            )
            .returning(A.c.id)
        )
    ).scalar_one()


_MEMBER_ACCOUNT = DriverStatement(select(A.c.id).where(A.c.user_id == bindparam("user_id"), A.c.kind == MEMBER))


async def member_account_id(conn: AsyncConnection, user_id: int) -> int:
    found = await _MEMBER_ACCOUNT.all(conn, {"user_id": user_id})
    if not found:
        raise NotFound("No points account for this user / 该用户没有积分账户", field="userId")
    return found[0]["id"]


async def lock_member_account(conn: AsyncConnection, user_id: int) -> int:
    """Lock the member's account row (``SELECT … FOR UPDATE`` on PostgreSQL; SQLite writers are already
    serialised by BEGIN IMMEDIATE) and return its id. Domains call this first when they must read a
    member's state (caps, limits, lots) before posting — it is the "member row first" of the lock order."""
    rows = await _LOCK_MEMBER.all(conn, {"uid": user_id})
    if not rows:
        raise NotFound("No points account for this user / 该用户没有积分账户", field="userId")
    return rows[0]["id"]


_LOCK_MEMBER = DriverStatement(
    select(A.c.id).where(A.c.user_id == bindparam("uid"), A.c.kind == MEMBER).with_for_update())


# The posting's statements on the driver path (jingtan_api.driver): compiled once, sent on the raw
# connection of the caller's transaction — every grant, credit, redemption and refund runs them.
_POST_TX = DriverStatement(
    insert(TX).values(kind=bindparam("kind"), memo=bindparam("memo"), actor_user_id=bindparam("actor_user_id"),
                      acting_admin_id=bindparam("acting_admin_id"), reverses_id=bindparam("reverses_id"),
                      created_at=bindparam("created_at")).returning(TX.c.id))
_amount = bindparam("amount", type_=A.c.balance.type)
_POST_BALANCE = DriverStatement(
    update(A)
    .where(A.c.id == bindparam("account_id"), (A.c.allow_negative == True) | (A.c.balance + _amount >= 0))  # noqa: E712
    .values(balance=A.c.balance + _amount)
    .returning(A.c.balance, A.c.kind, A.c.user_id))
_POST_ENTRY = DriverStatement(
    insert(E).values(transaction_id=bindparam("transaction_id"), account_id=bindparam("account_id"),
                     amount=bindparam("amount"), balance_after=bindparam("balance_after"),
                     created_at=bindparam("created_at")).returning(E.c.id))
_POST_LOT = DriverStatement(
    insert(L).values(account_id=bindparam("account_id"), entry_id=bindparam("entry_id"), amount=bindparam("amount"),
                     remaining=bindparam("amount"), expires_at=bindparam("expires_at"),
                     created_at=bindparam("created_at")))


async def post_transaction(
    conn: AsyncConnection,
    *,
    kind: str,
    postings: Sequence[Posting],
    now: datetime,
    lot_expiry_days: int,
    memo: str = "",
    actor_user_id: int | None = None,
    reverses_id: int | None = None,
) -> PostedTransaction:
    """Write one balanced transaction and update balances and lots (the admin acting through an API token
    made for the member, ``acting_admin_var``, is recorded as ``acting_admin_id``); raise InsufficientPoints (and let
    the caller's transaction roll back) when a non-negative account would go below zero."""
    if len(postings) < 2:
        raise ValueError("a transaction needs at least two postings")
    if sum(p.amount for p in postings) != 0:
        raise ValueError("postings must sum to zero")
    if any(p.amount == 0 or not isinstance(p.amount, int) for p in postings):
        raise ValueError("postings must be non-zero integers")
    for p in postings:
        if p.lots is None:
            continue
        if p.amount < 0 or p.lot_expires_at is not None or not p.lots:
            raise ValueError("lots split a credit and exclude lot_expires_at")
        if any(isinstance(n, bool) or not isinstance(n, int) or n <= 0 for n, _ in p.lots):
            raise ValueError("lot points must be positive integers")
        if sum(n for n, _ in p.lots) != p.amount:
            raise ValueError("lots must sum to the posting's amount")

    tx_id = (await _POST_TX.all(conn, {
        "kind": kind, "memo": memo, "actor_user_id": actor_user_id, "acting_admin_id": acting_admin_var.get(),
        "reverses_id": reverses_id, "created_at": now,
    }))[0]["id"]

    posted: list[PostedEntry] = []
    member_users: list[int] = []
    for posting in sorted(postings, key=lambda p: -p.account_id):  # lock order: see the module docstring
        rows = await _POST_BALANCE.all(conn, {"account_id": posting.account_id, "amount": posting.amount})
        if not rows:
            exists = (
                await conn.execute(select(A.c.id).where(A.c.id == posting.account_id))
            ).scalar_one_or_none()
            if exists is None:
                raise NotFound(f"Account {posting.account_id} does not exist / 账户不存在")
            raise InsufficientPoints(
                f"Not enough points: {-posting.amount} needed / 积分不足", field="amount"
            )
        row = rows[0]
        entry_id = (await _POST_ENTRY.all(conn, {
            "transaction_id": tx_id, "account_id": posting.account_id, "amount": posting.amount,
            "balance_after": row["balance"], "created_at": now,
        }))[0]["id"]
        if row["kind"] == MEMBER:
            if row["user_id"] is not None:
                member_users.append(row["user_id"])
            if posting.amount > 0:
                lots = posting.lots or (
                    (posting.amount, posting.lot_expires_at or now + timedelta(days=lot_expiry_days)),
                )
                for points, expires_at in lots:
                    await _POST_LOT.all(conn, {"account_id": posting.account_id, "entry_id": entry_id,
                                               "amount": points, "expires_at": expires_at, "created_at": now})
            else:
                await _consume_lots(conn, posting.account_id, entry_id, -posting.amount)
        posted.append(PostedEntry(entry_id, posting.account_id, posting.amount, row["balance"]))
    await events.emit(conn, "ledger.posted", transaction_id=tx_id, kind=kind,
                      amounts={p.account_id: p.amount for p in posted}, user_ids=sorted(set(member_users)))
    return PostedTransaction(id=tx_id, kind=kind, created_at=now, entries=tuple(posted))


_OPEN_LOTS = DriverStatement(
    select(L.c.id, L.c.remaining, L.c.expires_at).where(L.c.account_id == bindparam("account_id"), L.c.remaining > 0)
    .order_by(L.c.expires_at, L.c.id))
_TAKE_FROM_LOT = DriverStatement(
    update(L).where(L.c.id == bindparam("lot_id")).values(remaining=L.c.remaining - bindparam("take", type_=L.c.remaining.type)))


_CONSUMED = ("entry_id", "lot_id", "amount", "expires_at")
_CONSUMPTIONS = StatementCache()


def _consumption(n: int) -> DriverStatement:
    """``n`` ``lot_consumption`` rows (one per lot a debit took from): one statement per row count up to
    ``driver.MAX_ROWS``."""
    return _CONSUMPTIONS.get(n, lambda: DriverStatement(insert(LC).values(row_binds(LC, _CONSUMED, n))))


async def _consume_lots(conn: AsyncConnection, account_id: int, entry_id: int, amount: int) -> None:
    """Take ``amount`` from the account's lots, soonest-expiring first, and record in ``lot_consumption``
    how much the debit entry ``entry_id`` took from each lot (and that lot's expiry)."""
    lots = await _OPEN_LOTS.all(conn, {"account_id": account_id})
    left = amount
    consumed: list[dict] = []
    for lot in lots:
        if left == 0:
            break
        take = min(left, lot["remaining"])
        await _TAKE_FROM_LOT.all(conn, {"lot_id": lot["id"], "take": take})
        consumed.append(dict(entry_id=entry_id, lot_id=lot["id"], amount=take, expires_at=lot["expires_at"]))
        left -= take
    if left:
        # The balance check passed, so lots and balance disagree: refuse rather than corrupt the ledger.
        raise RuntimeError(f"account {account_id}: lots hold {amount - left} points, {amount} needed")
    for chunk in row_chunks(consumed):  # an expiry may consume thousands of lots
        await _consumption(len(chunk)).all(conn, row_params(chunk, _CONSUMED))


async def consumed_lots(conn: AsyncConnection, entry_id: int) -> list[tuple[int, datetime]]:
    """What the debit entry ``entry_id`` of a member account took from its lots, as ``(points,
    expires_at)`` per distinct original expiry, soonest first."""
    rows = await conn.execute(
        select(LC.c.expires_at, func.sum(LC.c.amount).label("points"))
        .where(LC.c.entry_id == entry_id)
        .group_by(LC.c.expires_at)
        .order_by(LC.c.expires_at)
    )
    return [(int(r.points), r.expires_at) for r in rows]


async def lock_accounts(conn: AsyncConnection, account_ids: Sequence[int]) -> None:
    """Take the row locks of these accounts now, in the ledger's lock order (descending id; PostgreSQL
    ``SELECT … FOR UPDATE``), one statement per row so the order is the order of acquisition.

    Needed when a transaction must read rows guarded by an account's lock (its lots) *before* its first
    balance UPDATE, or would otherwise lock accounts out of order. SQLite write transactions are
    already serialised by ``BEGIN IMMEDIATE``, so this is a no-op there."""
    if conn.dialect.name == "sqlite" or not account_ids:
        return
    for account_id in sorted(set(account_ids), reverse=True):
        await conn.execute(select(A.c.id).where(A.c.id == account_id).with_for_update())


_ANY_EXPIRED_LOT = DriverStatement(
    select(L.c.id).where(L.c.account_id == bindparam("account_id"), L.c.remaining > 0,
                         L.c.expires_at <= bindparam("now", type_=L.c.expires_at.type)).limit(1))


async def expire_account_lots(
    conn: AsyncConnection, account_id: int, *, now: datetime, lot_expiry_days: int
) -> int:
    """Move what is left of the account's expired lots to the platform EXPIRED account.

    The account row is locked before the lots are counted: on PostgreSQL (READ COMMITTED) a count taken
    before the lock can be stale when a concurrent expiry or spend commits first, and debiting that
    stale total would expire the same points twice (taking them from lots that have not expired) or
    fail with INSUFFICIENT_POINTS. Only the member row is locked here (EXPIRED is locked later by the
    posting), so an expiry never holds EXPIRED while waiting for a member account. When nothing has
    expired (the common case) no lock is taken at all."""
    if not await _ANY_EXPIRED_LOT.all(conn, {"account_id": account_id, "now": now}):  # every debit asks: driver path
        return 0
    expired_lot = (L.c.account_id == account_id) & (L.c.remaining > 0) & (L.c.expires_at <= now)
    await lock_accounts(conn, [account_id])
    lots = (await conn.execute(select(L.c.id, L.c.remaining).where(expired_lot))).all()
    total = sum(lot.remaining for lot in lots)
    if total == 0:
        return 0
    expired_id = await platform_account_id(conn, EXPIRED_CODE)
    # The posting's debit consumes soonest-expiring lots first, which are precisely the expired lots
    # counted above (under the account lock, so nobody changed them since).
    await post_transaction(
        conn,
        kind=EXPIRY,
        postings=[Posting(account_id, -total), Posting(expired_id, total)],
        now=now,
        lot_expiry_days=lot_expiry_days,
        memo="points expired / 积分过期",
    )
    return total


async def accounts_with_expired_lots(
    conn: AsyncConnection, now: datetime, limit: int = 1000, after: int = 0
) -> list[int]:
    """Accounts with points in expired lots, by id, after ``after`` (keyset batches)."""
    rows = await conn.execute(
        select(L.c.account_id)
        .where(L.c.remaining > 0, L.c.expires_at <= now, L.c.account_id > after)
        .group_by(L.c.account_id)
        .order_by(L.c.account_id)
        .limit(limit)
    )
    return [r.account_id for r in rows]


# --- reads -----------------------------------------------------------------------------------------


async def accounts_by_ids(conn: AsyncConnection, ids: Sequence[int]) -> dict[int, dict]:
    rows = await conn.execute(select(A).where(A.c.id.in_(list(ids))))
    return {r.id: dict(r._mapping) for r in rows}


_ACCOUNTS_BY_USER_IDS = DriverStatement(select(A).where(in_list(A.c.user_id, "user_ids"), A.c.kind == MEMBER))


async def accounts_by_user_ids(conn: AsyncConnection, user_ids: Sequence[int]) -> dict[int, dict]:
    return {r["user_id"]: r for r in await _ACCOUNTS_BY_USER_IDS.all(conn, {"user_ids": list(user_ids)})}


@dataclass(frozen=True)
class ExpiringPoints:
    points: int
    expires_at: datetime


async def expiring_soon(
    conn: AsyncConnection, account_id: int, *, now: datetime, horizon: timedelta
) -> list[ExpiringPoints]:
    rows = await conn.execute(
        select(L.c.expires_at, func.sum(L.c.remaining).label("points"))
        .where(
            L.c.account_id == account_id,
            L.c.remaining > 0,
            L.c.expires_at <= now + horizon,
        )
        .group_by(L.c.expires_at)
        .order_by(L.c.expires_at)
    )
    return [ExpiringPoints(points=int(r.points), expires_at=r.expires_at) for r in rows]


_ENTRY_PAGES = StatementCache()


def _entries_statement() -> Any:
    cols = [
        E.c.id,
        E.c.transaction_id,
        E.c.account_id,
        E.c.amount,
        E.c.balance_after,
        E.c.created_at,
        TX.c.kind,
        TX.c.memo,
    ]
    return (select(*cols).join(TX, TX.c.id == E.c.transaction_id)
            .where(E.c.account_id == bindparam("account_id", type_=E.c.account_id.type)))


async def entries_page(conn: AsyncConnection, account_id: int, args: PageArgs) -> Page:
    """Keyset page of an account's entries, newest first (keys: entry ids); built once per page shape."""
    return await keyset_page_cached(
        conn, _ENTRY_PAGES, "entries", _entries_statement, [(E.c.id, True)], args, {"account_id": account_id})


async def entries_for_transactions(conn: AsyncConnection, tx_ids: Sequence[int]) -> dict[int, list[dict]]:
    rows = await conn.execute(select(E).where(E.c.transaction_id.in_(list(tx_ids))).order_by(E.c.id))
    out: dict[int, list[dict]] = {}
    for r in rows:
        out.setdefault(r.transaction_id, []).append(dict(r._mapping))
    return out


_TRANSACTIONS_BY_IDS = DriverStatement(select(TX).where(in_list(TX.c.id, "ids")))


async def transactions_by_ids(conn: AsyncConnection, ids: Sequence[int]) -> dict[int, dict]:
    return {r["id"]: r for r in await _TRANSACTIONS_BY_IDS.all(conn, {"ids": list(ids)})}


# --- invariants ------------------------------------------------------------------------------------


async def check_invariants(conn: AsyncConnection) -> list[str]:
    """Return the violations of the ledger invariants of docs/ledger.md (an empty list when all hold)."""
    problems: list[str] = []
    unbalanced = await conn.execute(
        select(E.c.transaction_id, func.sum(E.c.amount).label("s"), func.count().label("n"))
        .group_by(E.c.transaction_id)
        .having((func.sum(E.c.amount) != 0) | (func.count() < 2))
    )
    problems += [f"transaction {r.transaction_id} sums to {r.s} over {r.n} entries" for r in unbalanced]
    sums = (
        select(E.c.account_id, func.coalesce(func.sum(E.c.amount), 0).label("s"))
        .group_by(E.c.account_id)
        .subquery()
    )
    mismatched = await conn.execute(
        select(A.c.id, A.c.balance, func.coalesce(sums.c.s, 0).label("s"))
        .select_from(A.outerjoin(sums, sums.c.account_id == A.c.id))
        .where(A.c.balance != func.coalesce(sums.c.s, 0))
    )
    problems += [f"account {r.id} caches {r.balance} but its entries sum to {r.s}" for r in mismatched]
    negative = await conn.execute(select(A.c.id, A.c.balance).where(A.c.allow_negative == False, A.c.balance < 0))  # noqa: E712
    problems += [f"account {r.id} is negative: {r.balance}" for r in negative]
    lot_sums = (
        select(L.c.account_id, func.sum(L.c.remaining).label("s")).group_by(L.c.account_id).subquery()
    )
    lot_mismatch = await conn.execute(
        select(A.c.id, A.c.balance, func.coalesce(lot_sums.c.s, 0).label("s"))
        .select_from(A.outerjoin(lot_sums, lot_sums.c.account_id == A.c.id))
        .where(A.c.kind == MEMBER, A.c.balance != func.coalesce(lot_sums.c.s, 0))
    )
    problems += [f"account {r.id} balance {r.balance} but lots hold {r.s}" for r in lot_mismatch]
    bad_lots = await conn.execute(select(L.c.id).where(and_(L.c.remaining < 0) | (L.c.remaining > L.c.amount)))
    problems += [f"lot {r.id} remaining out of range" for r in bad_lots]
    # Every debit of a member account records which lots it consumed, exactly its amount in total, and
    # only from lots of that account.
    consumption = (
        select(LC.c.entry_id, func.sum(LC.c.amount).label("s")).group_by(LC.c.entry_id).subquery()
    )
    unrecorded = await conn.execute(
        select(E.c.id, E.c.amount, func.coalesce(consumption.c.s, 0).label("s"))
        .select_from(E.join(A, A.c.id == E.c.account_id).outerjoin(consumption, consumption.c.entry_id == E.c.id))
        .where(A.c.kind == MEMBER, E.c.amount < 0, func.coalesce(consumption.c.s, 0) != -E.c.amount)
        .order_by(E.c.id)
    )
    problems += [f"member debit entry {r.id} of {r.amount} has lot consumption of {r.s}" for r in unrecorded]
    stray = await conn.execute(
        select(LC.c.id, LC.c.entry_id)
        .select_from(
            LC.join(E, E.c.id == LC.c.entry_id).join(A, A.c.id == E.c.account_id).join(L, L.c.id == LC.c.lot_id)
        )
        .where(
            (A.c.kind != MEMBER)
            | (E.c.amount >= 0)
            | (L.c.account_id != E.c.account_id)
            | (LC.c.amount <= 0)
            | (LC.c.expires_at != L.c.expires_at)
        )
        .order_by(LC.c.id)
    )
    problems += [f"lot consumption {r.id} does not match its entry {r.entry_id} or lot" for r in stray]
    # A committed key without a result means a request claimed it but never recorded its effect, so a
    # retry would replay nothing (claim and complete belong in the same transaction).
    IDEM = IdempotencyRecord.__table__
    unfinished = await conn.execute(
        select(IDEM.c.id, IDEM.c.scope, IDEM.c.key).where(IDEM.c.result_id.is_(None)).order_by(IDEM.c.id)
    )
    problems += [f"idempotency record {r.id} ({r.scope}/{r.key}) has no result" for r in unfinished]
    return problems



# --- admin operations: grant and revoke ------------------------------------------------------------


async def adjust_points(
    conn: AsyncConnection,
    *,
    direction: str,
    actor_user_id: int,
    user_id: int,
    amount: int,
    reason: str,
    idempotency_key: str,
    max_amount: int,
    lot_expiry_days: int,
    now: datetime,
    request_id: str | None = None,
) -> tuple[int, bool]:
    """Grant (issuance → member) or revoke (member → issuance) points, audit-logged and idempotent.

    Returns ``(transaction_id, replayed)``. Runs inside the caller's write transaction."""

    if direction not in (GRANT, REVOKE):
        raise ValueError(direction)
    amount = validate_amount(amount, max_amount=max_amount)
    reason = audit.validate_reason(reason)
    key = idempotency.validate_key(idempotency_key)
    req_hash = idempotency.request_hash({"op": direction, "userId": user_id, "amount": amount, "reason": reason})
    claim = await idempotency.claim(conn, f"admin:{actor_user_id}:points", key, req_hash)
    if claim.is_replay:
        return int(claim.result_id), True
    member_id = await member_account_id(conn, user_id)
    issuance_id = await platform_account_id(conn, ISSUANCE_CODE)
    if direction == GRANT:
        postings = [Posting(issuance_id, -amount), Posting(member_id, amount)]
    else:
        # Lock both accounts (member, then ISSUANCE) before the expiry sweep reads the member's lots.
        await lock_accounts(conn, [member_id, issuance_id])
        await expire_account_lots(conn, member_id, now=now, lot_expiry_days=lot_expiry_days)
        postings = [Posting(member_id, -amount), Posting(issuance_id, amount)]
    posted = await post_transaction(
        conn,
        kind=direction,
        postings=postings,
        now=now,
        lot_expiry_days=lot_expiry_days,
        memo=reason,
        actor_user_id=actor_user_id,
    )
    await audit.record(
        conn,
        actor_user_id=actor_user_id,
        action="points.grant" if direction == GRANT else "points.revoke",
        target_type="User",
        target_id=user_id,
        reason=reason,
        details={"amount": amount, "transactionId": posted.id, "idempotencyKey": key},
        request_id=request_id,
        now=now,
    )
    await idempotency.complete(conn, claim, "LedgerTransaction", posted.id)
    return posted.id, False


_COUNT_ENTRIES = DriverStatement(
    select(func.count().label("n")).select_from(E).where(E.c.account_id == bindparam("account_id")))


async def count_entries(conn: AsyncConnection, account_id: int) -> int:
    return int((await _COUNT_ENTRIES.all(conn, {"account_id": account_id}))[0]["n"])


async def entries_by_ids(conn: AsyncConnection, ids: Sequence[int]) -> dict[int, dict]:
    rows = await conn.execute(
        select(E, TX.c.kind, TX.c.memo, A.c.user_id)
        .join(TX, TX.c.id == E.c.transaction_id)
        .join(A, A.c.id == E.c.account_id)
        .where(E.c.id.in_(list(ids)))
    )
    return {r.id: dict(r._mapping) for r in rows}
