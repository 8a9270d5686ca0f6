"""What the platform brings a merchant, per local day or month (docs/merchants.md, "Analytics").

Per period (every day or month of the range, those without activity included, with zeros):

* ``redemptions`` / ``points_received``: redemptions created at the merchant (not cancelled or expired)
  and their points;
* ``new_members`` / ``returning_members``: distinct members who redeemed or acted at the merchant in the
  period, split by whether their first contact with the merchant (first redemption or attributed action,
  ever) falls in this period;
* ``actions`` / ``grams_co2e``: approved actions attributed to the merchant (``merchant_action``) and their
  CO2e — the actions' own grams, counted once;
* ``campaign_spend``: bonus points paid by the merchant's campaigns.

Per campaign (``campaign_report``): the bonuses (count, points, members), the actions and grams they
rewarded, and what came after: redemptions at the merchant by rewarded members after their first bonus
and until 30 days after the campaign ended.

Days are calendar days in ``offers.settlement_utc_offset_minutes`` (UTC+8 by default), like settlement.
Three grouped statements for a range, whatever its length (at most 92 days, or 24 months).
"""

from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

from sqlalchemy import func, select, union_all
from sqlalchemy.ext.asyncio import AsyncConnection

from jingtan_api.campaigns.models import Campaign, CampaignBonus
from jingtan_api.errors import ValidationFailed
from jingtan_api.merchants.models import MerchantAction
from jingtan_api.merchants.service import SettlementPeriod, as_date, local_day, settlement_period
from jingtan_api.redemptions.models import Redemption

R = Redemption.__table__
MA = MerchantAction.__table__
B = CampaignBonus.__table__
C = Campaign.__table__

DAY, MONTH = "DAY", "MONTH"
MAX_MONTHS = 24
AFTER_DAYS = 30
COUNTED = ("PENDING", "CONFIRMED")


@dataclass
class PeriodStats:
    start: date
    redemptions: int = 0
    points_received: int = 0
    new_members: int = 0
    returning_members: int = 0
    actions: int = 0
    grams_co2e: int = 0
    campaign_spend: int = 0
    members: set[int] = field(default_factory=set)


def _month_start(d: date) -> date:
    return d.replace(day=1)


def _next_month(d: date) -> date:
    return (d.replace(day=28) + timedelta(days=4)).replace(day=1)


def analytics_period(start: date, end: date, granularity: str, offset_minutes: int) -> SettlementPeriod:
    if granularity == MONTH:
        start, end = _month_start(start), _next_month(end) - timedelta(days=1)
        months = (end.year - start.year) * 12 + end.month - start.month + 1
        if months > MAX_MONTHS:
            raise ValidationFailed(f"At most {MAX_MONTHS} months / 最多查询 {MAX_MONTHS} 个月",
                                   code="RANGE_TOO_LONG", field="to")
        if end < start:
            raise ValidationFailed("`to` must not be before `from` / 结束日期不能早于开始日期", field="to")
        # settlement_period bounds days to 92; months use the same UTC bounds without that limit
        base = settlement_period(start, start, offset_minutes)
        hi = settlement_period(end, end, offset_minutes).hi
        return SettlementPeriod(start=start, end=end, offset_minutes=offset_minutes, lo=base.lo, hi=hi)
    return settlement_period(start, end, offset_minutes)


def _buckets(period: SettlementPeriod, granularity: str) -> list[date]:
    out, d = [], period.start
    while d <= period.end:
        out.append(d)
        d = _next_month(d) if granularity == MONTH else d + timedelta(days=1)
    return out


async def merchant_analytics(conn: AsyncConnection, *, merchant_id: int, period: SettlementPeriod,
                             granularity: str) -> list[PeriodStats]:
    def bucket(day_value: Any) -> date:
        d = as_date(day_value)
        return _month_start(d) if granularity == MONTH else d

    stats = {b: PeriodStats(b) for b in _buckets(period, granularity)}
    off = period.offset_minutes
    # 1. redemptions per day
    rday = local_day(conn, R.c.created_at, off).label("day")
    for r in await conn.execute(
        select(rday, func.count().label("n"), func.coalesce(func.sum(R.c.points), 0).label("points"))
        .where(R.c.merchant_id == merchant_id, R.c.status.in_(COUNTED), R.c.created_at >= period.lo,
               R.c.created_at < period.hi).group_by(rday)
    ):
        s = stats[bucket(r.day)]
        s.redemptions += int(r.n)
        s.points_received += int(r.points)
    # 2. actions at the merchant and campaign spend per day
    aday = local_day(conn, MA.c.approved_at, off).label("day")
    for r in await conn.execute(
        select(aday, func.count().label("n"), func.coalesce(func.sum(MA.c.grams_co2e), 0).label("grams"))
        .where(MA.c.merchant_id == merchant_id, MA.c.approved_at >= period.lo, MA.c.approved_at < period.hi)
        .group_by(aday)
    ):
        s = stats[bucket(r.day)]
        s.actions += int(r.n)
        s.grams_co2e += int(r.grams)
    bday = local_day(conn, B.c.created_at, off).label("day")
    for r in await conn.execute(
        select(bday, func.coalesce(func.sum(B.c.points), 0).label("points"))
        .join(C, C.c.id == B.c.campaign_id)
        .where(C.c.merchant_id == merchant_id, B.c.created_at >= period.lo, B.c.created_at < period.hi)
        .group_by(bday)
    ):
        stats[bucket(r.day)].campaign_spend += int(r.points)
    # 3. members in contact per day, with their first contact ever
    contacts = union_all(
        select(R.c.member_user_id.label("user_id"), R.c.created_at.label("at"))
        .where(R.c.merchant_id == merchant_id, R.c.status.in_(COUNTED)),
        select(MA.c.user_id.label("user_id"), MA.c.approved_at.label("at")).where(MA.c.merchant_id == merchant_id),
    ).subquery()
    first = select(contacts.c.user_id, func.min(contacts.c.at).label("first_at")).group_by(contacts.c.user_id).subquery()
    cday = local_day(conn, contacts.c.at, off).label("day")
    fday = local_day(conn, first.c.first_at, off).label("first_day")
    rows = await conn.execute(
        select(cday, contacts.c.user_id, fday).distinct()
        .join(first, first.c.user_id == contacts.c.user_id)
        .where(contacts.c.at >= period.lo, contacts.c.at < period.hi)
    )
    seen: set[tuple[date, int]] = set()
    for r in rows:
        b = bucket(r.day)
        if (b, r.user_id) in seen:
            continue
        seen.add((b, r.user_id))
        if bucket(r.first_day) == b:
            stats[b].new_members += 1
        else:
            stats[b].returning_members += 1
    return [stats[b] for b in sorted(stats)]


@dataclass(frozen=True)
class CampaignReport:
    bonuses: int
    bonus_points: int
    members: int
    actions: int
    grams_co2e: int
    redemptions_after: int
    points_after: int


async def campaign_report(conn: AsyncConnection, campaign_id: int) -> CampaignReport:
    """What a campaign cost and brought (see the module docstring)."""
    campaign = (await conn.execute(select(C).where(C.c.id == campaign_id))).one()
    totals = (
        await conn.execute(
            select(func.count().label("n"), func.coalesce(func.sum(B.c.points), 0).label("points"),
                   func.count(func.distinct(B.c.user_id)).label("members"),
                   func.count(func.distinct(MA.c.action_id)).label("actions"),
                   func.coalesce(func.sum(MA.c.grams_co2e), 0).label("grams"))
            .select_from(B.outerjoin(MA, MA.c.action_id == B.c.action_id))
            .where(B.c.campaign_id == campaign_id)
        )
    ).one()
    first_bonus = (
        select(B.c.user_id, func.min(B.c.created_at).label("first_at"))
        .where(B.c.campaign_id == campaign_id).group_by(B.c.user_id).subquery()
    )
    horizon = (campaign.ended_at or campaign.ends_at) + timedelta(days=AFTER_DAYS)
    after = (
        await conn.execute(
            select(func.count().label("n"), func.coalesce(func.sum(R.c.points), 0).label("points"))
            .select_from(R.join(first_bonus, first_bonus.c.user_id == R.c.member_user_id))
            .where(R.c.merchant_id == campaign.merchant_id, R.c.status.in_(COUNTED),
                   R.c.created_at > first_bonus.c.first_at, R.c.created_at < horizon)
        )
    ).one()
    return CampaignReport(
        bonuses=int(totals.n), bonus_points=int(totals.points), members=int(totals.members),
        actions=int(totals.actions), grams_co2e=int(totals.grams),
        redemptions_after=int(after.n), points_after=int(after.points),
    )
