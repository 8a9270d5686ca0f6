"""Targeted offers: an offer's segment decides who may see and redeem it (docs/merchants.md, "Segments").

An offer has zero or more rules; a member is in the segment when they meet **every** rule (no rule:
everyone, anonymous visitors included; with rules, only logged-in members who meet them):

=========================  ====================================================================
``CITY``                   acted (an approved action attributed to a merchant) in that city — the
                           platform keeps no home city, so a member's cities are where they act
``MIN_GRAMS_AVOIDED``      at least ``minGrams`` g CO2e avoided in approved actions
``PAST_CUSTOMERS``         acted at this offer's merchant before (``merchant_action``)
``NEW_MEMBERS``            registered at most ``maxMemberDays`` days ago
``ORGANISATION_MEMBERS``   a current member of the organisation ``organisationId``
``HOUSEHOLD_MEMBERS``      a current member of a household
=========================  ====================================================================

The rule is one SQL predicate (:func:`visible_to_bound`) used by the catalogue, ``offer(id:)`` and the
redemption check, so what a member sees is exactly what they may redeem. It adds no statement to a
catalogue page: the viewer's facts are correlated subqueries of the page's own SELECT (the registration
time is a bound parameter the caller already holds). Redeeming outside the segment is refused by the
listener of ``redemption.created`` (NOT_IN_SEGMENT), which rolls the redemption back.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import Integer, and_, bindparam, delete, exists, func, insert, not_, or_, select, true
from sqlalchemy.ext.asyncio import AsyncConnection

from jingtan_api.actions.models import Action
from jingtan_api.errors import DomainError, NotFound, ValidationFailed
from jingtan_api.driver import DriverStatement
from jingtan_api.events import Event, EventBus
from jingtan_api.households.models import HouseholdMember
from jingtan_api.merchants import service as merchants
from jingtan_api.merchants.models import Merchant, MerchantAction
from jingtan_api.offers.models import Offer, OfferSegmentRule
from jingtan_api.organisations.models import Organisation, OrganisationMember
from jingtan_api.users.models import User

if TYPE_CHECKING:
    from jingtan_api.services import Services

O = Offer.__table__
R = OfferSegmentRule.__table__
M2 = Merchant.__table__.alias("segment_merchant")
MA = MerchantAction.__table__
ACT = Action.__table__
U = User.__table__
OM = OrganisationMember.__table__
ORG = Organisation.__table__
HM = HouseholdMember.__table__

CITY = "CITY"
MIN_GRAMS_AVOIDED = "MIN_GRAMS_AVOIDED"
PAST_CUSTOMERS = "PAST_CUSTOMERS"
NEW_MEMBERS = "NEW_MEMBERS"
ORGANISATION_MEMBERS = "ORGANISATION_MEMBERS"
HOUSEHOLD_MEMBERS = "HOUSEHOLD_MEMBERS"
KINDS = (CITY, MIN_GRAMS_AVOIDED, PAST_CUSTOMERS, NEW_MEMBERS, ORGANISATION_MEMBERS, HOUSEHOLD_MEMBERS)
MAX_RULES = 10
MAX_GRAMS = 10**12
MAX_DAYS = 3650


class OutsideSegment(DomainError):
    code = "NOT_IN_SEGMENT"


@dataclass(frozen=True)
class Viewer:
    """Who asks: a member (id and registration time) or nobody (``user_id`` None)."""

    user_id: int | None
    registered_at: datetime | None = None
    bypass: bool = False  # the offer's staff and admins see every offer of the merchant


def member_days(viewer: Viewer, now: datetime) -> int:
    """Whole days since the viewer registered (unknown: older than any NEW_MEMBERS rule admits)."""
    return max(0, (now - viewer.registered_at).days) if viewer.registered_at is not None else MAX_DAYS + 1


def _rule_met(uid: Any, age_days: Any) -> Any:
    """A rule of the offer admits the member ``uid`` registered ``age_days`` ago (bind parameters)."""
    grams = (
        select(func.coalesce(func.sum(ACT.c.grams_co2e), 0))
        .where(ACT.c.user_id == uid, ACT.c.status == "APPROVED").scalar_subquery()
    )
    return or_(
        and_(R.c.kind == CITY, exists().where(
            MA.c.user_id == uid, MA.c.merchant_id == M2.c.id, M2.c.city == R.c.city)),
        and_(R.c.kind == MIN_GRAMS_AVOIDED, R.c.min_grams <= grams),
        # `offer` is the catalogue's row two levels up: correlate it explicitly (auto-correlation only reaches
        # the enclosing SELECT, and would read the merchant of ANY offer from a fresh scan of the table).
        and_(R.c.kind == PAST_CUSTOMERS, exists().where(
            MA.c.user_id == uid, MA.c.merchant_id == O.c.merchant_id).correlate_except(MA)),
        and_(R.c.kind == NEW_MEMBERS, R.c.max_member_days >= age_days),
        and_(R.c.kind == ORGANISATION_MEMBERS, exists().where(
            OM.c.active_organisation_id == R.c.organisation_id, OM.c.user_id == uid)),
        and_(R.c.kind == HOUSEHOLD_MEMBERS, exists().where(HM.c.active_user_id == uid)),
    )


def viewer_shape(viewer: Viewer) -> str:
    """How the segment predicate treats the viewer: ``bypass``, ``anonymous`` or ``member``."""
    return "bypass" if viewer.bypass else "anonymous" if viewer.user_id is None else "member"


def visible_to_bound(shape: str) -> Any:
    """SQL predicate on ``offer``: a viewer of ``shape`` is in the offer's segment (true for an offer
    without rules). The member's values are the bind parameters ``segment_user_id`` and
    ``segment_member_days``, given at execution (:func:`bound_values`), so callers may build their
    statement once."""
    if shape == "bypass":
        return true()
    has_rules = exists().where(R.c.offer_id == O.c.id)
    if shape == "anonymous":
        return not_(has_rules)
    uid = bindparam("segment_user_id", type_=ACT.c.user_id.type)
    age_days = bindparam("segment_member_days", type_=Integer)
    return not_(exists().where(R.c.offer_id == O.c.id, not_(_rule_met(uid, age_days))))


def bound_values(viewer: Viewer, now: datetime) -> dict[str, Any]:
    if viewer_shape(viewer) != "member":
        return {}
    return {"segment_user_id": viewer.user_id, "segment_member_days": member_days(viewer, now)}


async def eligible_offer_ids(conn: AsyncConnection, viewer: Viewer, offer_ids: Sequence[int], now: datetime) -> set[int]:
    stmt = select(O.c.id).where(O.c.id.in_(list(offer_ids)), visible_to_bound(viewer_shape(viewer)))
    rows = await conn.execute(stmt, bound_values(viewer, now))
    return {r.id for r in rows}


async def rules_of(conn: AsyncConnection, offer_ids: Sequence[int]) -> dict[int, list[dict]]:
    rows = await conn.execute(select(R).where(R.c.offer_id.in_(list(offer_ids))).order_by(R.c.id))
    out: dict[int, list[dict]] = {}
    for r in rows:
        out.setdefault(r.offer_id, []).append(dict(r._mapping))
    return out


def validate_rules(rules: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    if len(rules) > MAX_RULES:
        raise ValidationFailed(f"At most {MAX_RULES} rules / 最多 {MAX_RULES} 条规则", field="rules")
    out = []
    for i, rule in enumerate(rules):
        kind = rule.get("kind")
        if kind not in KINDS:
            raise ValidationFailed("Unknown segment kind / 未知的人群类型", field="rules")
        values: dict[str, Any] = {"kind": kind, "city": None, "min_grams": None, "max_member_days": None,
                                  "organisation_id": None}
        if kind == CITY:
            values["city"] = merchants.clean_text(rule.get("city"), f"rules[{i}].city", max_len=64, required=True)
        elif kind == MIN_GRAMS_AVOIDED:
            values["min_grams"] = merchants.bounded_int(
                rule.get("min_grams"), f"rules[{i}].minGrams", low=1, high=MAX_GRAMS,
                message="minGrams must be a whole number of grams above 0 / 最低减排量须为正整数（克）")
        elif kind == NEW_MEMBERS:
            values["max_member_days"] = merchants.bounded_int(
                rule.get("max_member_days"), f"rules[{i}].maxMemberDays", low=1, high=MAX_DAYS,
                message=f"maxMemberDays must be 1-{MAX_DAYS} / 注册天数须在 1 到 {MAX_DAYS} 之间")
        elif kind == ORGANISATION_MEMBERS:
            if not isinstance(rule.get("organisation_id"), int):
                raise ValidationFailed("Give organisationId / 请指定组织", field=f"rules[{i}].organisationId")
            values["organisation_id"] = rule["organisation_id"]
        out.append(values)
    return out


async def set_segment(conn: AsyncConnection, *, actor: merchants.Actor, offer_id: int, rules: Sequence[dict[str, Any]],
                      now: datetime) -> None:
    """Replace the offer's rules (an empty list opens the offer to everyone)."""
    offer = (await conn.execute(select(O.c.merchant_id).where(O.c.id == offer_id))).one_or_none()
    if offer is None:
        raise NotFound("No such offer / 优惠不存在", field="offerId")
    merchants.require_merchant_manager(actor, offer.merchant_id)
    values = validate_rules(rules)
    for v in values:
        if v["organisation_id"] is not None:
            found = (await conn.execute(select(ORG.c.id).where(ORG.c.id == v["organisation_id"]))).scalar_one_or_none()
            if found is None:
                raise ValidationFailed("No such organisation / 组织不存在", code="NOT_FOUND", field="organisationId")
    await conn.execute(delete(R).where(R.c.offer_id == offer_id))
    if values:
        await conn.execute(insert(R), [dict(v, offer_id=offer_id, created_at=now) for v in values])


_HAS_RULES = DriverStatement(select(R.c.id).where(R.c.offer_id == bindparam("offer_id")).limit(1))


async def check_redeemable(conn: AsyncConnection, *, user_id: int, offer_id: int, now: datetime) -> None:
    # Most offers are open to everyone: one statement on the driver path says so (every redemption).
    if not await _HAS_RULES.all(conn, {"offer_id": offer_id}):
        return
    registered_at = (await conn.execute(select(U.c.created_at).where(U.c.id == user_id))).scalar_one_or_none()
    viewer = Viewer(user_id, registered_at)
    if not await eligible_offer_ids(conn, viewer, [offer_id], now):
        raise OutsideSegment(
            "This offer is for a group of members you are not in / 该优惠仅面向特定会员，您不在其中", field="offerId"
        )


def register_listeners(bus: EventBus, app: "Services") -> None:
    async def on_redemption(conn: AsyncConnection, event: Event) -> None:
        # The redemption's own time is not in the event; the rules only need days, so the clock will do.
        await check_redeemable(conn, user_id=event.data["member_user_id"], offer_id=event.data["offer_id"], now=app.clock())

    bus.listen("redemption.created", on_redemption)


