"""Retiring verified reductions (碳中和/抵消): rules of the platform's pool of approved, un-retired CO2e and
of retirements against it (docs/community.md "Retiring reductions"). Knows nothing about GraphQL.

* **The pool** is the grams CO2e recorded on APPROVED actions (``action.grams_co2e``), less what is
  retired. Only actions carry grams: promotional points (grants, referral, volunteer tasks) have none, so
  they can never back a retirement — paying points buys grams, it does not make them.
* **A retirement** consumes exact ranges ``[gram_from, gram_to)`` of named actions (``retirement_item``);
  each action's ``action_retirement`` row is its allocation cursor, advanced by a conditional UPDATE that
  expects the cursor's current value, with a CHECK that it never passes the action's grams. Two
  retirements can therefore never be handed the same grams, whatever the interleaving: the loser's
  UPDATE matches no row and its whole transaction rolls back (ALREADY_RETIRED).
* Retirements are serialised on PostgreSQL by a transaction-level advisory lock (they are rare, and the
  automatic allocation reads the pool first); SQLite write transactions are serialised by BEGIN IMMEDIATE.
  The cursor's conditional UPDATE is the guard either way.
* Payment: POINTS (the company's organisation account pays ``[community] retirement_points_per_kg``,
  rounded up per gram, to the platform's issuance account — points return to the platform) or
  OFF_PLATFORM (a platform admin records a payment made outside, with its reference).

Lock order (PostgreSQL): the idempotency record, the retirements advisory lock, the organisation row
(``organisations.lock_open_account``), action cursors by ascending action id, then the organisation's
account and the issuance account (``post_transaction``, descending ids).
"""

import hashlib
import json
import math
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from jingtan_api import events, invite_codes
from jingtan_api.accounts import idempotency
from jingtan_api.accounts import service as ledger
from jingtan_api.actions.models import Action
from jingtan_api.audit import service as audit
from jingtan_api.db import Page, PageArgs, dialect_insert, keyset_page
from jingtan_api.errors import Conflict, NotFound, PermissionDenied, ValidationFailed
from jingtan_api.organisations import service as orgs
from jingtan_api.retirements.models import ActionRetirement, Retirement, RetirementItem

R = Retirement.__table__
RI = RetirementItem.__table__
AR = ActionRetirement.__table__
T = Action.__table__

POINTS, OFF_PLATFORM = "POINTS", "OFF_PLATFORM"
RETIREMENT = "RETIREMENT"
"""Ledger transaction kind of a retirement paid in points (organisation → issuance)."""
APPROVED = "APPROVED"
MAX_NAMED_ACTIONS = 500
MAX_ITEMS = 10_000
ADVISORY_KEY = "jingtan.retirements"


@dataclass(frozen=True)
class Want:
    """Grams wanted from one named action (None: all it has left)."""

    action_id: int
    grams: int | None = None


@dataclass(frozen=True)
class RetirementResult:
    retirement_id: int
    replayed: bool


# --- the pool ----------------------------------------------------------------------------------------


def _remaining() -> Any:
    return T.c.grams_co2e - func.coalesce(AR.c.retired_grams, 0)


def _pool_rows() -> Any:
    return (
        select(T.c.id, T.c.grams_co2e, T.c.plugin_code, T.c.plugin_version, T.c.occurred_from, T.c.occurred_to,
               func.coalesce(AR.c.retired_grams, 0).label("retired"))
        .select_from(T.outerjoin(AR, AR.c.action_id == T.c.id))
        .where(T.c.status == APPROVED, T.c.grams_co2e > 0)
    )


@dataclass(frozen=True)
class PoolByMethodology:
    code: str
    version: str
    approved_grams: int
    retired_grams: int

    @property
    def available_grams(self) -> int:
        return self.approved_grams - self.retired_grams


async def pool(conn: AsyncConnection) -> list[PoolByMethodology]:
    """The pool by methodology (plugin code and rules version): approved, retired and available grams."""
    rows = await conn.execute(
        select(T.c.plugin_code, T.c.plugin_version, func.sum(T.c.grams_co2e).label("approved"),
               func.sum(func.coalesce(AR.c.retired_grams, 0)).label("retired"))
        .select_from(T.outerjoin(AR, AR.c.action_id == T.c.id))
        .where(T.c.status == APPROVED, T.c.grams_co2e > 0)
        .group_by(T.c.plugin_code, T.c.plugin_version)
        .order_by(T.c.plugin_code, T.c.plugin_version)
    )
    return [PoolByMethodology(r.plugin_code, r.plugin_version, int(r.approved or 0), int(r.retired or 0)) for r in rows]


async def available_grams(conn: AsyncConnection) -> int:
    return sum(p.available_grams for p in await pool(conn))


# --- validation ------------------------------------------------------------------------------------


def _purpose(value: Any, field: str, *, required: bool) -> str:
    if value is None:
        value = ""
    if not isinstance(value, str):
        raise ValidationFailed(f"{field} must be text / {field} 须为文本", field=field)
    value = " ".join(value.split())
    if required and len(value) < 3 or len(value) > 300:
        raise ValidationFailed(f"{field}: 3-300 characters / {field} 须为 3-300 个字符", field=field)
    if not value.isprintable():
        raise ValidationFailed(f"{field} contains control characters / {field} 含有控制字符", field=field)
    return value


def validate_period(start: Any, end: Any) -> tuple[date, date]:
    for name, day in (("periodStart", start), ("periodEnd", end)):
        if not isinstance(day, date) or not 2000 <= day.year <= 2100:
            raise ValidationFailed(f"{name} must be a date in 2000-2100 / 日期须在 2000 到 2100 年之间", field=name)
    if end < start:
        raise ValidationFailed("The period ends before it starts / 结束日期早于开始日期", code="INVALID_PERIOD",
                               field="periodEnd")
    if (end - start).days > 366 * 5:
        raise ValidationFailed("A period is at most five years / 期间最长五年", code="INVALID_PERIOD", field="periodEnd")
    return start, end


def validate_request(grams: Any, wants: Sequence[Want] | None, *, max_grams: int) -> tuple[int | None, list[Want]]:
    """Either ``grams`` (allocated from the pool, oldest actions first) or named actions, not both."""
    wants = list(wants or [])
    if (grams is None) == (not wants):
        raise ValidationFailed("Give either grams or actions / 请提供克数或行为列表（二选一）", field="grams")
    if grams is not None:
        if isinstance(grams, bool) or not isinstance(grams, int) or not 1 <= grams <= max_grams:
            raise ValidationFailed(f"grams must be 1-{max_grams} / 克数须为 1-{max_grams}", field="grams")
        return grams, []
    if len(wants) > MAX_NAMED_ACTIONS:
        raise ValidationFailed(f"At most {MAX_NAMED_ACTIONS} actions / 最多 {MAX_NAMED_ACTIONS} 条行为", field="actions")
    seen: set[int] = set()
    for w in wants:
        if w.action_id in seen:
            raise ValidationFailed("An action is named twice / 行为重复", field="actions")
        seen.add(w.action_id)
        if w.grams is not None and (isinstance(w.grams, bool) or not isinstance(w.grams, int) or w.grams < 1):
            raise ValidationFailed("grams of an action must be positive / 行为克数须为正数", field="actions")
    if sum(w.grams or 0 for w in wants) > max_grams:
        raise ValidationFailed(f"At most {max_grams} grams in one retirement / 单次最多 {max_grams} 克", field="actions")
    return None, wants


def price_points(grams: int, points_per_kg: int) -> int:
    """Points charged for ``grams``: ``points_per_kg`` per 1,000 g, rounded up."""
    return math.ceil(grams * points_per_kg / 1000)


def canonical(record: dict[str, Any]) -> str:
    return json.dumps(record, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str)


def digest_of(*, code: str, organisation_id: int, grams: int, period_start: date, period_end: date, purpose_zh: str,
              purpose_en: str, items: Sequence[tuple[int, int, int]]) -> str:
    """SHA-256 of the canonical public record (docs/community.md shows how to recompute it)."""
    body = {
        "code": code, "organisationId": organisation_id, "grams": grams, "periodStart": period_start.isoformat(),
        "periodEnd": period_end.isoformat(), "purposeZh": purpose_zh, "purposeEn": purpose_en,
        "items": [[a, f, t] for a, f, t in items],
    }
    return hashlib.sha256(canonical(body).encode()).hexdigest()


def new_code(now: datetime) -> str:
    raw = "".join(secrets.choice(invite_codes.ALPHABET) for _ in range(10))
    return f"JTR-{now.year}-{raw}"


# --- the retirement ----------------------------------------------------------------------------------


async def _serialise(conn: AsyncConnection) -> None:
    if conn.dialect.name == "postgresql":
        await conn.execute(select(func.pg_advisory_xact_lock(func.hashtext(ADVISORY_KEY))))


async def _allocate_auto(conn: AsyncConnection, grams: int) -> list[tuple[Any, int]]:
    """(action row, grams to take) oldest actions first, until ``grams`` are covered."""
    out: list[tuple[Any, int]] = []
    need = grams
    last_id = 0
    while need > 0:
        rows = (await conn.execute(
            _pool_rows().where(_remaining() > 0, T.c.id > last_id).order_by(T.c.id).limit(500)
        )).all()
        if not rows:
            break
        for r in rows:
            take = min(need, int(r.grams_co2e) - int(r.retired))
            out.append((r, take))
            need -= take
            if need == 0:
                break
        last_id = rows[-1].id
        if len(out) > MAX_ITEMS:
            raise ValidationFailed(f"That needs more than {MAX_ITEMS} actions; retire less at once / 所需行为过多",
                                   field="grams")
    if need > 0:
        raise Conflict(
            f"The pool holds only {grams - need} un-retired grams / 可注销减排量不足（仅剩 {grams - need} 克）",
            code="INSUFFICIENT_POOL", field="grams",
        )
    return out


async def _allocate_named(conn: AsyncConnection, wants: Sequence[Want]) -> list[tuple[Any, int]]:
    ids = [w.action_id for w in wants]
    rows = {r.id: r for r in (await conn.execute(
        select(T.c.id, T.c.grams_co2e, T.c.status, T.c.plugin_code, T.c.plugin_version, T.c.occurred_from,
               T.c.occurred_to, func.coalesce(AR.c.retired_grams, 0).label("retired"))
        .select_from(T.outerjoin(AR, AR.c.action_id == T.c.id)).where(T.c.id.in_(ids))
    )).all()}
    out = []
    for w in wants:
        r = rows.get(w.action_id)
        if r is None or r.status != APPROVED or int(r.grams_co2e) <= 0:
            raise Conflict("Only approved actions with recorded CO2e can be retired / 仅已通过且有减排量的行为可注销",
                           code="ACTION_NOT_RETIRABLE", field="actions")
        left = int(r.grams_co2e) - int(r.retired)
        take = left if w.grams is None else w.grams
        if left <= 0 or take > left:
            raise Conflict(
                f"Action grams already retired ({left} g left) / 该行为的减排量已被注销（剩余 {left} 克）",
                code="ALREADY_RETIRED", field="actions",
            )
        out.append((r, take))
    return out


async def _take(conn: AsyncConnection, action: Any, grams: int) -> tuple[int, int]:
    """Advance the action's cursor by ``grams`` from the value read; the range taken. A cursor that moved
    meanwhile means the grams were retired by someone else: ALREADY_RETIRED (the transaction rolls back)."""
    await conn.execute(
        dialect_insert(conn, AR).values(action_id=action.id, total_grams=int(action.grams_co2e), retired_grams=0)
        .on_conflict_do_nothing(index_elements=["action_id"])
    )
    start = int(action.retired)
    done = await conn.execute(
        update(AR).where(AR.c.action_id == action.id, AR.c.retired_grams == start,
                         AR.c.retired_grams + grams <= AR.c.total_grams)
        .values(retired_grams=AR.c.retired_grams + grams)
    )
    if done.rowcount != 1:
        raise Conflict("These grams were just retired by another retirement / 该减排量刚被其他注销占用",
                       code="ALREADY_RETIRED", field="actions")
    return start, start + grams


async def retire(
    conn: AsyncConnection,
    *,
    actor: orgs.Actor,
    org_id: int,
    grams: Any = None,
    wants: Sequence[Want] | None = None,
    purpose_zh: Any,
    purpose_en: Any = "",
    period_start: Any,
    period_end: Any,
    payment_method: str,
    payment_reference: Any = "",
    payment_amount_fen: Any = None,
    idempotency_key: Any,
    points_per_kg: int,
    max_grams: int,
    lot_expiry_days: int,
    request_id: str | None,
    now: datetime,
) -> RetirementResult:
    """Retire grams from the pool for a company organisation, against a stated purpose and period.

    POINTS: an organisation admin (or platform admin) retires and the organisation's account pays.
    OFF_PLATFORM: only a platform admin, who records the outside payment's reference."""
    amount, named = validate_request(grams, wants, max_grams=max_grams)
    purpose_zh = _purpose(purpose_zh, "purposeZh", required=True)
    purpose_en = _purpose(purpose_en, "purposeEn", required=False)
    start, end = validate_period(period_start, period_end)
    if payment_method not in (POINTS, OFF_PLATFORM):
        raise ValidationFailed("Unknown payment method / 未知的支付方式", field="paymentMethod")
    reference = ""
    fen: int | None = None
    if payment_method == OFF_PLATFORM:
        if not actor.is_platform_admin:
            raise PermissionDenied("Only platform admins record off-platform payments / 仅平台管理员可登记线下支付")
        reference = _purpose(payment_reference, "paymentReference", required=True)[:100]
        if payment_amount_fen is not None and (
            isinstance(payment_amount_fen, bool) or not isinstance(payment_amount_fen, int) or payment_amount_fen < 0
        ):
            raise ValidationFailed("paymentAmountFen must be a whole number ≥ 0 / 金额无效", field="paymentAmountFen")
        fen = payment_amount_fen
    elif points_per_kg == 0:
        raise Conflict("Retirements are not sold for points here; ask the platform / 本平台不支持积分购买减排量",
                       code="RETIREMENT_NOT_PAYABLE", field="paymentMethod")
    key = idempotency.validate_key(idempotency_key)
    req_hash = idempotency.request_hash({
        "org": org_id, "grams": amount, "actions": [[w.action_id, w.grams] for w in named], "purposeZh": purpose_zh,
        "purposeEn": purpose_en, "start": start, "end": end, "method": payment_method, "ref": reference, "fen": fen,
    })
    claim = await idempotency.claim(conn, f"retire:{org_id}", key, req_hash)
    if claim.is_replay:
        return RetirementResult(int(claim.result_id or 0), True)
    await _serialise(conn)
    org = await orgs.organisation_row(conn, org_id)
    await orgs.require_admin(conn, actor, org_id)
    org_account = await orgs.lock_open_account(conn, org_id)
    if org.kind != orgs.COMPANY:
        raise Conflict("Only company organisations retire reductions / 仅企业组织可注销减排量", code="NOT_A_COMPANY",
                       field="organisationId")
    picks = await _allocate_auto(conn, amount) if amount is not None else await _allocate_named(conn, named)
    total = sum(g for _, g in picks)
    if total > max_grams:
        raise ValidationFailed(f"At most {max_grams} grams in one retirement / 单次最多 {max_grams} 克", field="actions")
    items: list[tuple[int, int, int]] = []
    by_method: dict[tuple[str, str], int] = {}
    for action, take in sorted(picks, key=lambda p: p[0].id):  # cursors in ascending action id
        gram_from, gram_to = await _take(conn, action, take)
        items.append((int(action.id), gram_from, gram_to))
        k = (action.plugin_code, action.plugin_version)
        by_method[k] = by_method.get(k, 0) + take
    tx_id = None
    points = 0
    if payment_method == POINTS:
        points = price_points(total, points_per_kg)
        issuance = await ledger.platform_account_id(conn, ledger.ISSUANCE_CODE)
        tx = await ledger.post_transaction(
            conn, kind=RETIREMENT, postings=[ledger.Posting(org_account, -points), ledger.Posting(issuance, points)],
            now=now, lot_expiry_days=lot_expiry_days, memo=f"retirement of {total} g CO2e / 注销减排量",
            actor_user_id=actor.user_id,
        )
        tx_id = tx.id
    code = new_code(now)
    digest = digest_of(code=code, organisation_id=org_id, grams=total, period_start=start, period_end=end,
                       purpose_zh=purpose_zh, purpose_en=purpose_en, items=items)
    methodologies = [{"code": c, "version": v, "grams": g} for (c, v), g in sorted(by_method.items())]
    retirement_id = (await conn.execute(
        insert(R).values(
            code=code, organisation_id=org_id, grams=total, purpose_zh=purpose_zh, purpose_en=purpose_en,
            period_start=start, period_end=end,
            reductions_from=min(p[0].occurred_from for p in picks), reductions_to=max(p[0].occurred_to for p in picks),
            methodologies=canonical(methodologies), payment_method=payment_method, points_paid=points,
            transaction_id=tx_id, payment_reference=reference, payment_amount_fen=fen, digest=digest,
            created_by_user_id=actor.user_id, created_at=now,
        ).returning(R.c.id)
    )).scalar_one()
    await conn.execute(insert(RI), [dict(retirement_id=retirement_id, action_id=a, gram_from=f, gram_to=t) for a, f, t in items])
    await audit.record(
        conn, actor_user_id=actor.user_id, action="retirement.create", target_type="Retirement", target_id=retirement_id,
        details={"organisationId": org_id, "grams": total, "paymentMethod": payment_method, "points": points,
                 "code": code, "paymentReference": reference},
        request_id=request_id, now=now,
    )
    await idempotency.complete(conn, claim, "Retirement", retirement_id)
    await events.emit(conn, "retirement.created", retirement_id=retirement_id, organisation_id=org_id, grams=total,
                      payment_method=payment_method, points=points, code=code)
    return RetirementResult(retirement_id, False)


# --- reads ------------------------------------------------------------------------------------------


async def retirements_by_ids(conn: AsyncConnection, ids: Sequence[int]) -> dict[int, dict]:
    rows = await conn.execute(select(R).where(R.c.id.in_(list(ids))))
    return {r.id: dict(r._mapping) for r in rows}


async def retirement_by_code(conn: AsyncConnection, code: Any) -> dict | None:
    if not isinstance(code, str) or len(code) > 32:
        return None
    row = (await conn.execute(select(R).where(R.c.code == code.strip().upper()))).one_or_none()
    return dict(row._mapping) if row else None


async def retirements_page(conn: AsyncConnection, args: PageArgs, *, org_id: int | None = None) -> Page:
    """Newest first."""
    stmt = select(R)
    if org_id is not None:
        stmt = stmt.where(R.c.organisation_id == org_id)
    return await keyset_page(conn, stmt, [(R.c.id, True)], args)


async def retirements_count(conn: AsyncConnection, *, org_id: int | None = None) -> int:
    stmt = select(func.count()).select_from(R)
    if org_id is not None:
        stmt = stmt.where(R.c.organisation_id == org_id)
    return int((await conn.execute(stmt)).scalar_one())


async def items_page(conn: AsyncConnection, retirement_id: int, args: PageArgs) -> Page:
    stmt = (
        select(RI.c.id, RI.c.action_id, RI.c.gram_from, RI.c.gram_to, T.c.plugin_code, T.c.plugin_version,
               T.c.occurred_from, T.c.occurred_to)
        .join(T, T.c.id == RI.c.action_id)
        .where(RI.c.retirement_id == retirement_id)
    )
    return await keyset_page(conn, stmt, [(RI.c.id, False)], args)


async def items_count(conn: AsyncConnection, retirement_id: int) -> int:
    stmt = select(func.count()).select_from(RI).where(RI.c.retirement_id == retirement_id)
    return int((await conn.execute(stmt)).scalar_one())


async def all_items(conn: AsyncConnection, retirement_id: int) -> list[tuple[int, int, int]]:
    rows = await conn.execute(
        select(RI.c.action_id, RI.c.gram_from, RI.c.gram_to).where(RI.c.retirement_id == retirement_id)
        .order_by(RI.c.action_id, RI.c.gram_from)
    )
    return [(r.action_id, int(r.gram_from), int(r.gram_to)) for r in rows]


async def check_invariants(conn: AsyncConnection) -> list[str]:
    """No gram retired twice: items of an action are disjoint, within its grams, sum to its cursor; every
    retirement's grams are the sum of its items; only approved actions are retired."""
    problems: list[str] = []
    rows = (await conn.execute(
        select(RI.c.action_id, RI.c.gram_from, RI.c.gram_to, T.c.grams_co2e, T.c.status)
        .join(T, T.c.id == RI.c.action_id).order_by(RI.c.action_id, RI.c.gram_from)
    )).all()
    last: dict[int, int] = {}
    sums: dict[int, int] = {}
    for r in rows:
        if r.gram_from < last.get(r.action_id, 0):
            problems.append(f"action {r.action_id}: gram {r.gram_from} retired twice")
        if r.gram_to > r.grams_co2e:
            problems.append(f"action {r.action_id}: retired beyond its {r.grams_co2e} g")
        if r.status != APPROVED:
            problems.append(f"action {r.action_id} is retired but {r.status}")
        last[r.action_id] = r.gram_to
        sums[r.action_id] = sums.get(r.action_id, 0) + r.gram_to - r.gram_from
    cursors = {r.action_id: int(r.retired_grams) for r in await conn.execute(select(AR.c.action_id, AR.c.retired_grams))}
    for action_id in set(cursors) | set(sums):
        if cursors.get(action_id, 0) != sums.get(action_id, 0):
            problems.append(f"action {action_id}: cursor {cursors.get(action_id, 0)} but items sum to {sums.get(action_id, 0)}")
    mismatched = await conn.execute(
        select(R.c.id, R.c.grams, func.coalesce(func.sum(RI.c.gram_to - RI.c.gram_from), 0).label("s"))
        .select_from(R.outerjoin(RI, RI.c.retirement_id == R.c.id)).group_by(R.c.id, R.c.grams)
    )
    problems += [f"retirement {r.id} says {r.grams} g but its items hold {r.s}" for r in mismatched if int(r.s) != int(r.grams)]
    return problems


async def require_found(conn: AsyncConnection, retirement_id: int) -> dict:
    row = (await retirements_by_ids(conn, [retirement_id])).get(retirement_id)
    if row is None:
        raise NotFound("No such retirement / 注销记录不存在", field="retirementId")
    return row
