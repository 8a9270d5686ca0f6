"""Merchant-funded campaigns: funding, bonuses for actions done at the merchant, the close (no GraphQL).

Money (docs/merchants.md, "Campaigns"; docs/ledger.md):

* ``create_campaign`` opens a CAMPAIGN ledger account for the campaign and moves the budget into it from
  the merchant's account (CAMPAIGN_FUNDING); ``top_up`` moves more. A budget above the merchant's
  balance is refused by the ledger's conditional UPDATE (INSUFFICIENT_POINTS) and the whole transaction —
  campaign row and account included — rolls back.
* A bonus (CAMPAIGN_BONUS, campaign account → member) is paid by the listener of ``action.approved``,
  inside the approving transaction: never for a rejected or pending action, rolled back with it. The
  listener locks the campaign account row, then re-reads the campaign and the budget, so concurrent
  approvals queue on that row and the budget is never overspent: a bonus is paid whole or not at all.
  Promotional points carry no CO2e: nothing here touches grams.
* ``close_campaign`` (the merchant ending it early, or the ``campaign_close`` job at ``ends_at``) flips
  ACTIVE → ENDED under the same lock and returns the rest of the budget to the merchant
  (CAMPAIGN_REFUND); a second run finds nothing ACTIVE and does nothing.

Lock order: the member row (taken by the action's transaction) → the platform issuance row (its credit)
→ the campaign account. Funding and the close take the campaign account, then the merchant account
(``post_transaction`` locks in descending id order and a campaign account is always newer than its
merchant's), and never a member's, so no cycle exists.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from jingtan_api.accounts import idempotency
from jingtan_api.accounts import service as ledger
from jingtan_api.accounts.models import Account
from jingtan_api.actions.models import Action
from jingtan_api.audit import service as audit
from jingtan_api.campaigns.models import Campaign, CampaignBonus
from jingtan_api.db import Page, PageArgs, keyset_page
from jingtan_api.errors import Conflict, NotFound, ValidationFailed
from jingtan_api.events import Event, EventBus
from jingtan_api.merchants import attribution
from jingtan_api.merchants import service as merchants

if TYPE_CHECKING:
    from jingtan_api.services import Services

C = Campaign.__table__
B = CampaignBonus.__table__
A = Account.__table__
ACT = Action.__table__

CAMPAIGN_ACCOUNT = "CAMPAIGN"
CAMPAIGN_FUNDING = "CAMPAIGN_FUNDING"
CAMPAIGN_BONUS = "CAMPAIGN_BONUS"
CAMPAIGN_REFUND = "CAMPAIGN_REFUND"

ACTIVE, ENDED = "ACTIVE", "ENDED"
MAX_DAYS = 366
MAX_PERCENT = 1000
MAX_PER_MEMBER = 1000


# --- validation --------------------------------------------------------------------------------------


def validate_campaign(data: dict[str, Any], *, now: datetime, max_points: int) -> dict[str, Any]:
    """Fields of a new campaign → column values (the budget is validated by ``fund``)."""
    out: dict[str, Any] = {
        "title_zh": merchants.clean_text(data.get("title_zh"), "titleZh", max_len=100, required=True),
        "title_en": merchants.clean_text(data.get("title_en"), "titleEn", max_len=100),
        "description_zh": merchants.clean_text(data.get("description_zh"), "descriptionZh", max_len=1000, multiline=True),
        "description_en": merchants.clean_text(data.get("description_en"), "descriptionEn", max_len=1000, multiline=True),
    }
    points, percent = data.get("bonus_points"), data.get("bonus_percent")
    if (points is None) == (percent is None):
        raise ValidationFailed(
            "Give either bonusPoints or bonusPercent / 请在固定奖励积分与奖励百分比中二选一", field="bonusPoints"
        )
    if points is not None:
        out["bonus_points"] = merchants.bounded_int(
            points, "bonusPoints", low=1, high=max_points,
            message=f"bonusPoints must be 1-{max_points} / 奖励积分须在 1 到 {max_points} 之间",
        )
    else:
        out["bonus_percent"] = merchants.bounded_int(
            percent, "bonusPercent", low=1, high=MAX_PERCENT,
            message=f"bonusPercent must be 1-{MAX_PERCENT} (100 = double points) / 奖励百分比须在 1 到 {MAX_PERCENT} 之间",
        )
    out["per_member_limit"] = merchants.bounded_int(
        data.get("per_member_limit", 1), "perMemberLimit", low=1, high=MAX_PER_MEMBER,
        message=f"perMemberLimit must be 1-{MAX_PER_MEMBER} / 每人奖励次数须在 1 到 {MAX_PER_MEMBER} 之间",
    )
    starts_at, ends_at = data.get("starts_at") or now, data.get("ends_at")
    for name, value in (("startsAt", starts_at), ("endsAt", ends_at)):
        if not isinstance(value, datetime) or value.tzinfo is None:
            raise ValidationFailed(f"{name} needs a date and time with a time zone / {name} 须带时区", field=name)
    if ends_at <= starts_at or ends_at <= now:
        raise ValidationFailed("The campaign must end after it starts and in the future / 活动须在开始之后且在未来结束",
                               code="INVALID_WINDOW", field="endsAt")
    if ends_at - starts_at > timedelta(days=MAX_DAYS):
        raise ValidationFailed(f"A campaign lasts at most {MAX_DAYS} days / 活动最长 {MAX_DAYS} 天",
                               code="INVALID_WINDOW", field="endsAt")
    out["starts_at"], out["ends_at"] = starts_at, ends_at
    out["action_type_code"] = data.get("action_type_code")
    return out


# --- funding, closing ----------------------------------------------------------------------------------


async def campaign_row(conn: AsyncConnection, campaign_id: int) -> Any:
    row = (await conn.execute(select(C).where(C.c.id == campaign_id))).one_or_none()
    if row is None:
        raise NotFound("No such campaign / 活动不存在", field="campaignId")
    return row


async def _fund(conn: AsyncConnection, *, campaign: Any, merchant_account: int, amount: int, actor_user_id: int,
                now: datetime, lot_expiry_days: int) -> int:
    posted = await ledger.post_transaction(
        conn, kind=CAMPAIGN_FUNDING,
        postings=[ledger.Posting(merchant_account, -amount), ledger.Posting(campaign.account_id, amount)],
        now=now, lot_expiry_days=lot_expiry_days, actor_user_id=actor_user_id,
        memo=f"campaign budget / 活动预算: {campaign.title_zh}"[:200],
    )
    await conn.execute(update(C).where(C.c.id == campaign.id).values(funded_points=C.c.funded_points + amount))
    return posted.id


async def create_campaign(
    conn: AsyncConnection, *, actor: merchants.Actor, merchant_id: int, fields: dict[str, Any], budget: int,
    idempotency_key: str, now: datetime, max_points: int, lot_expiry_days: int, request_id: str | None = None,
) -> tuple[int, bool]:
    """A new ACTIVE campaign funded with ``budget`` points of the merchant. Returns (id, replayed)."""
    merchants.require_merchant_manager(actor, merchant_id)
    values = validate_campaign(fields, now=now, max_points=max_points)
    budget = ledger.validate_amount(budget, max_amount=max_points, field="budget")
    key = idempotency.validate_key(idempotency_key)
    req_hash = idempotency.request_hash({"op": "createCampaign", "merchantId": merchant_id, "budget": budget,
                                         **{k: str(v) for k, v in values.items()}})
    claim = await idempotency.claim(conn, f"campaign:{actor.user_id}", key, req_hash)
    if claim.is_replay:
        return int(claim.result_id), True
    merchant = await merchants.merchant_row(conn, merchant_id)
    if merchant.status != merchants.ACTIVE or merchant.account_id is None:
        raise Conflict("The merchant is not active / 商户未启用", code="MERCHANT_NOT_ACTIVE", field="merchantId")
    account_id = await ledger.create_account(conn, kind=CAMPAIGN_ACCOUNT)
    campaign_id = (
        await conn.execute(
            insert(C).values(**values, merchant_id=merchant_id, account_id=account_id, status=ACTIVE, funded_points=0,
                             refunded_points=0, created_by_user_id=actor.user_id, created_at=now).returning(C.c.id)
        )
    ).scalar_one()
    await conn.execute(update(A).where(A.c.id == account_id).values(code=f"campaign:{campaign_id}"))
    campaign = await campaign_row(conn, campaign_id)
    tx_id = await _fund(conn, campaign=campaign, merchant_account=merchant.account_id, amount=budget,
                        actor_user_id=actor.user_id, now=now, lot_expiry_days=lot_expiry_days)
    await audit.record(
        conn, actor_user_id=actor.user_id, action="campaign.create", target_type="Campaign", target_id=campaign_id,
        details={"merchantId": merchant_id, "budget": budget, "transactionId": tx_id}, request_id=request_id, now=now,
    )
    await idempotency.complete(conn, claim, "Campaign", campaign_id)
    return campaign_id, False


async def top_up(
    conn: AsyncConnection, *, actor: merchants.Actor, campaign_id: int, amount: int, idempotency_key: str,
    now: datetime, max_points: int, lot_expiry_days: int, request_id: str | None = None,
) -> tuple[int, bool]:
    """Add ``amount`` points of the merchant to an ACTIVE campaign's budget."""
    amount = ledger.validate_amount(amount, max_amount=max_points)
    key = idempotency.validate_key(idempotency_key)
    claim = await idempotency.claim(conn, f"campaign:{actor.user_id}", key,
                                    idempotency.request_hash({"op": "topUp", "campaignId": campaign_id, "amount": amount}))
    if claim.is_replay:
        return int(claim.result_id), True
    campaign = await campaign_row(conn, campaign_id)
    merchants.require_merchant_manager(actor, campaign.merchant_id)
    await ledger.lock_accounts(conn, [campaign.account_id])
    campaign = await campaign_row(conn, campaign_id)  # fresh, under the campaign account's lock
    if campaign.status != ACTIVE or campaign.ends_at <= now:
        raise Conflict("The campaign has ended / 活动已结束", code="CAMPAIGN_ENDED", field="campaignId")
    merchant = await merchants.merchant_row(conn, campaign.merchant_id)
    if merchant.status != merchants.ACTIVE or merchant.account_id is None:
        raise Conflict("The merchant is not active / 商户未启用", code="MERCHANT_NOT_ACTIVE", field="campaignId")
    tx_id = await _fund(conn, campaign=campaign, merchant_account=merchant.account_id, amount=amount,
                        actor_user_id=actor.user_id, now=now, lot_expiry_days=lot_expiry_days)
    await audit.record(
        conn, actor_user_id=actor.user_id, action="campaign.top_up", target_type="Campaign", target_id=campaign_id,
        details={"amount": amount, "transactionId": tx_id}, request_id=request_id, now=now,
    )
    await idempotency.complete(conn, claim, "Campaign", campaign_id)
    return campaign_id, False


async def close_campaign(conn: AsyncConnection, campaign_id: int, *, now: datetime, lot_expiry_days: int,
                         actor_user_id: int | None = None) -> int | None:
    """ACTIVE → ENDED and the unspent budget back to the merchant; returns the points returned, or None
    when the campaign was already closed (so running it twice returns nothing twice)."""
    campaign = await campaign_row(conn, campaign_id)
    await ledger.lock_accounts(conn, [campaign.account_id])
    done = (
        await conn.execute(
            update(C).where(C.c.id == campaign_id, C.c.status == ACTIVE).values(status=ENDED, ended_at=now)
            .returning(C.c.id)
        )
    ).scalar_one_or_none()
    if done is None:
        return None
    left = int((await conn.execute(select(A.c.balance).where(A.c.id == campaign.account_id))).scalar_one())
    if left > 0:
        merchant_account = await merchants.merchant_account_id(conn, campaign.merchant_id)
        assert merchant_account is not None  # a campaign is funded from it
        await ledger.post_transaction(
            conn, kind=CAMPAIGN_REFUND,
            postings=[ledger.Posting(campaign.account_id, -left), ledger.Posting(merchant_account, left)],
            now=now, lot_expiry_days=lot_expiry_days, actor_user_id=actor_user_id,
            memo=f"unspent campaign budget / 活动剩余预算: {campaign.title_zh}"[:200],
        )
        await conn.execute(update(C).where(C.c.id == campaign_id).values(refunded_points=left))
    return left


async def end_campaign(conn: AsyncConnection, *, actor: merchants.Actor, campaign_id: int, now: datetime,
                       lot_expiry_days: int, request_id: str | None = None) -> int:
    """The merchant (or an admin) ends a campaign early; the rest of the budget comes back at once."""
    campaign = await campaign_row(conn, campaign_id)
    merchants.require_merchant_manager(actor, campaign.merchant_id)
    returned = await close_campaign(conn, campaign_id, now=now, lot_expiry_days=lot_expiry_days,
                                    actor_user_id=actor.user_id)
    if returned is None:
        raise Conflict("The campaign has ended / 活动已结束", code="CAMPAIGN_ENDED", field="campaignId")
    await audit.record(
        conn, actor_user_id=actor.user_id, action="campaign.end", target_type="Campaign", target_id=campaign_id,
        details={"returned": returned}, request_id=request_id, now=now,
    )
    return campaign_id


async def due_campaigns(conn: AsyncConnection, now: datetime, *, after: int, limit: int) -> list[int]:
    rows = await conn.execute(
        select(C.c.id).where(C.c.status == ACTIVE, C.c.ends_at <= now, C.c.id > after).order_by(C.c.id).limit(limit)
    )
    return [r.id for r in rows]


# --- bonuses -------------------------------------------------------------------------------------------


def bonus_amount(campaign: Any, action_points: int) -> int:
    if campaign.bonus_points is not None:
        return int(campaign.bonus_points)
    return action_points * int(campaign.bonus_percent) // 100


@dataclass(frozen=True)
class PaidBonus:
    campaign_id: int
    points: int


async def pay_bonuses(conn: AsyncConnection, action_id: int, *, lot_expiry_days: int) -> list[PaidBonus]:
    """Bonuses of every ACTIVE campaign of the merchant where this approved action was done (called in
    the approving transaction). Skips — never raises for — a campaign whose budget, per-member limit or
    window stops it: the action's own approval must not fail because of a campaign."""
    place = await attribution.attribute(conn, action_id)
    if place is None:
        return []
    action = (await conn.execute(select(ACT).where(ACT.c.id == action_id))).one()
    at = action.reviewed_at or action.created_at
    candidates = (
        await conn.execute(
            select(C.c.id).where(
                C.c.merchant_id == place.merchant_id, C.c.status == ACTIVE, C.c.starts_at <= at, C.c.ends_at > at,
                (C.c.action_type_code.is_(None)) | (C.c.action_type_code == action.plugin_code),
            ).order_by(C.c.id)
        )
    ).scalars().all()
    paid: list[PaidBonus] = []
    member_account: int | None = None
    for campaign_id in candidates:
        campaign = await campaign_row(conn, campaign_id)
        await ledger.lock_accounts(conn, [campaign.account_id])
        campaign = await campaign_row(conn, campaign_id)  # fresh, under the lock
        if campaign.status != ACTIVE or not campaign.starts_at <= at < campaign.ends_at:
            continue
        if action.occurred_from < campaign.starts_at:
            continue  # done before the campaign started
        taken = (
            await conn.execute(select(func.count()).select_from(B).where(B.c.campaign_id == campaign_id,
                                                                       B.c.user_id == action.user_id))
        ).scalar_one()
        if taken >= campaign.per_member_limit:
            continue
        amount = bonus_amount(campaign, int(action.points))
        budget = int((await conn.execute(select(A.c.balance).where(A.c.id == campaign.account_id))).scalar_one())
        if amount <= 0 or amount > budget:
            continue
        if member_account is None:
            member_account = await ledger.member_account_id(conn, action.user_id)
        posted = await ledger.post_transaction(
            conn, kind=CAMPAIGN_BONUS,
            postings=[ledger.Posting(campaign.account_id, -amount), ledger.Posting(member_account, amount)],
            now=at, lot_expiry_days=lot_expiry_days,
            memo=f"{campaign.title_zh} {campaign.title_en}".strip()[:200],
        )
        await conn.execute(insert(B).values(campaign_id=campaign_id, action_id=action_id, user_id=action.user_id,
                                            points=amount, transaction_id=posted.id, created_at=at))
        paid.append(PaidBonus(campaign_id, amount))
    return paid


def register_listeners(bus: EventBus, app: "Services") -> None:
    lot_days = app.settings.points.lot_expiry_days

    async def on_approved(conn: AsyncConnection, event: Event) -> None:
        await pay_bonuses(conn, event.data["action_id"], lot_expiry_days=lot_days)

    bus.listen("action.approved", on_approved)


# --- reads ---------------------------------------------------------------------------------------------


async def campaigns_by_ids(conn: AsyncConnection, ids: Sequence[int]) -> dict[int, dict]:
    rows = await conn.execute(
        select(C, A.c.balance.label("budget_left")).join(A, A.c.id == C.c.account_id).where(C.c.id.in_(list(ids)))
    )
    return {r.id: dict(r._mapping) for r in rows}


def _campaigns_where(stmt: Any, *, merchant_id: int | None, status: str | None, now: datetime | None) -> Any:
    if merchant_id is not None:
        stmt = stmt.where(C.c.merchant_id == merchant_id)
    if status is not None:
        stmt = stmt.where(C.c.status == status)
    if now is not None:  # running right now
        stmt = stmt.where(C.c.starts_at <= now, C.c.ends_at > now)
    return stmt


async def campaigns_page(conn: AsyncConnection, args: PageArgs, *, merchant_id: int | None, status: str | None,
                         now: datetime | None = None) -> Page:
    stmt = _campaigns_where(
        select(C, A.c.balance.label("budget_left")).join(A, A.c.id == C.c.account_id),
        merchant_id=merchant_id, status=status, now=now,
    )
    return await keyset_page(conn, stmt, [(C.c.id, True)], args)


async def campaigns_count(conn: AsyncConnection, *, merchant_id: int | None, status: str | None,
                          now: datetime | None = None) -> int:
    stmt = _campaigns_where(select(func.count()).select_from(C), merchant_id=merchant_id, status=status, now=now)
    return int((await conn.execute(stmt)).scalar_one())


async def bonus_totals(conn: AsyncConnection, campaign_ids: Sequence[int]) -> dict[int, tuple[int, int, int]]:
    """{campaign: (bonuses paid, points paid, members rewarded)}."""
    rows = await conn.execute(
        select(B.c.campaign_id, func.count().label("n"), func.coalesce(func.sum(B.c.points), 0).label("points"),
               func.count(func.distinct(B.c.user_id)).label("members"))
        .where(B.c.campaign_id.in_(list(campaign_ids))).group_by(B.c.campaign_id)
    )
    return {r.campaign_id: (int(r.n), int(r.points), int(r.members)) for r in rows}


async def check_invariants(conn: AsyncConnection) -> list[str]:
    """Campaign money adds up: budget left = funded − bonuses paid − refunded, never negative."""
    paid = select(B.c.campaign_id, func.sum(B.c.points).label("s")).group_by(B.c.campaign_id).subquery()
    rows = await conn.execute(
        select(C.c.id, C.c.funded_points, C.c.refunded_points, C.c.status, A.c.balance,
               func.coalesce(paid.c.s, 0).label("paid"))
        .join(A, A.c.id == C.c.account_id).outerjoin(paid, paid.c.campaign_id == C.c.id)
    )
    problems = []
    for r in rows:
        if r.balance != r.funded_points - int(r.paid) - r.refunded_points:
            problems.append(f"campaign {r.id}: balance {r.balance} != funded {r.funded_points} - paid {r.paid} - refunded {r.refunded_points}")
        if r.status == ENDED and r.balance != 0:
            problems.append(f"campaign {r.id} ended with {r.balance} points left")
    return problems
