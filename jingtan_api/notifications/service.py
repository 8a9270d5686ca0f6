"""Notifications (通知): a member's list of notices with read/unread, so a frontend that was offline catches
up (docs/live.md "Notifications").

* Every notice is created through :func:`create`: one ``INSERT ... ON CONFLICT (user_id, dedupe_key) DO
  NOTHING``, so the same notice is never created twice, and a ``notification.created`` event for each
  row actually inserted (``notification_id, user_id, kind``).
* REVIEW_DECISION — by the ``action.reviewed`` listener (``listeners.py``), inside the reviewing
  transaction; dedupe ``review-decision:<action id>``.
* POINTS_EXPIRING and REDEMPTION_EXPIRING — by the ``notifications`` job (``jobs.py``): one notice per
  member and local expiry date for points lots expiring within ``points_expiring_days`` (dedupe
  ``points-expiring:<YYYY-MM-DD>``, the total of that day), one per PENDING redemption expiring within
  ``redemption_expiring_hours`` (dedupe ``redemption-expiring:<id>``).
* The text is rendered from ``kind`` and ``params`` in both languages (:func:`render`), never stored.
"""

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import String, cast, exists, func, literal, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from jingtan_api import events
from jingtan_api.accounts.models import Account, PointsLot
from jingtan_api.db import Page, PageArgs, dialect_insert, keyset_page
from jingtan_api.errors import NotFound, ValidationFailed
from jingtan_api.notifications.models import Notification
from jingtan_api.redemptions.models import Redemption

N = Notification.__table__
LOT = PointsLot.__table__
ACC = Account.__table__
R = Redemption.__table__

REVIEW_DECISION = "REVIEW_DECISION"
POINTS_EXPIRING = "POINTS_EXPIRING"
REDEMPTION_EXPIRING = "REDEMPTION_EXPIRING"
KINDS = (REVIEW_DECISION, POINTS_EXPIRING, REDEMPTION_EXPIRING)

MAX_MARK_IDS = 100
"""Most notifications one ``markNotificationsRead`` may name (TOO_MANY_IDS above)."""

CREATED = "notification.created"


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


# --- creating ----------------------------------------------------------------------------------------


async def create(
    conn: AsyncConnection, *, user_id: int, kind: str, params: Mapping[str, Any], dedupe_key: str, now: datetime,
    action_id: int | None = None, redemption_id: int | None = None,
) -> int | None:
    """Insert one notice unless the member already has one with ``dedupe_key`` (one statement); emits
    ``notification.created`` for a new row. Returns the new id, or None when it existed already."""
    if kind not in KINDS:
        raise ValueError(f"unknown notification kind {kind!r}")
    stmt = (
        dialect_insert(conn, N)
        .values(user_id=user_id, kind=kind, params=json.dumps(dict(params), sort_keys=True, separators=(",", ":")),
                action_id=action_id, redemption_id=redemption_id, dedupe_key=dedupe_key, created_at=now,
                read_at=None)
        .on_conflict_do_nothing(index_elements=["user_id", "dedupe_key"])
        .returning(N.c.id)
    )
    new_id = (await conn.execute(stmt)).scalar_one_or_none()
    if new_id is not None:
        await events.emit(conn, CREATED, notification_id=new_id, user_id=user_id, kind=kind)
    return new_id


async def notify_review_decision(conn: AsyncConnection, data: Mapping[str, Any], *, now: datetime) -> int | None:
    """The REVIEW_DECISION notice of an ``action.reviewed`` event (its data keys, jingtan_api.events)."""
    action_id = int(data["action_id"])
    params = {"action_id": action_id, "status": str(data["status"]), "points": int(data.get("points") or 0),
              "plugin_code": str(data.get("plugin_code") or "")}
    return await create(conn, user_id=int(data["user_id"]), kind=REVIEW_DECISION, params=params,
                        dedupe_key=f"review-decision:{action_id}", now=now, action_id=action_id)


# --- the job's queries -------------------------------------------------------------------------------


def points_horizon(now: datetime, *, days: int, tz: ZoneInfo) -> datetime:
    """End of the points window: the end of the local day ``days`` from now, so that each expiry date a
    notice is created for is counted whole."""
    last_day = (now + timedelta(days=days)).astimezone(tz).date()
    return datetime.combine(last_day + timedelta(days=1), time(0), tzinfo=tz).astimezone(UTC)


def _expiring_lots(now: datetime, until: datetime):
    return (LOT.c.remaining > 0, LOT.c.expires_at > now, LOT.c.expires_at < until)


async def accounts_with_expiring_lots(
    conn: AsyncConnection, *, now: datetime, until: datetime, after: int, limit: int
) -> list[int]:
    """Member account ids (ascending, above ``after``) holding points that expire in (now, until)."""
    stmt = (
        select(LOT.c.account_id)
        .join(ACC, ACC.c.id == LOT.c.account_id)
        .where(*_expiring_lots(now, until), ACC.c.user_id.is_not(None), LOT.c.account_id > after)
        .group_by(LOT.c.account_id)
        .order_by(LOT.c.account_id)
        .limit(limit)
    )
    return list((await conn.execute(stmt)).scalars())


async def notify_points_expiring(
    conn: AsyncConnection, account_id: int, *, now: datetime, until: datetime, tz: ZoneInfo
) -> int:
    """One POINTS_EXPIRING notice per local expiry date of the account's lots expiring in (now, until),
    with the day's total; dates already noticed are skipped. Returns the notices created."""
    user_id = (await conn.execute(select(ACC.c.user_id).where(ACC.c.id == account_id))).scalar_one_or_none()
    if user_id is None:
        return 0
    rows = (await conn.execute(
        select(LOT.c.expires_at, LOT.c.remaining).where(LOT.c.account_id == account_id, *_expiring_lots(now, until))
    )).all()
    by_day: dict[date, int] = {}
    first: dict[date, datetime] = {}
    for expires_at, remaining in rows:
        moment = _aware(expires_at)
        day = moment.astimezone(tz).date()
        by_day[day] = by_day.get(day, 0) + int(remaining)
        first[day] = min(first.get(day, moment), moment)
    created = 0
    for day in sorted(by_day):
        params = {"points": by_day[day], "date": day.isoformat(), "expires_at": first[day].isoformat()}
        if await create(conn, user_id=user_id, kind=POINTS_EXPIRING, params=params,
                        dedupe_key=f"points-expiring:{day.isoformat()}", now=now) is not None:
            created += 1
    return created


def _redemption_key(redemption_id: Any) -> Any:
    return literal("redemption-expiring:") + cast(redemption_id, String)


async def redemptions_expiring(
    conn: AsyncConnection, *, now: datetime, until: datetime, after: int, limit: int
) -> list[int]:
    """PENDING redemptions (ids ascending, above ``after``) expiring in (now, until] whose member has no
    REDEMPTION_EXPIRING notice for them yet."""
    noticed = exists().where(N.c.user_id == R.c.member_user_id, N.c.dedupe_key == _redemption_key(R.c.id))
    stmt = (
        select(R.c.id)
        .where(R.c.status == "PENDING", R.c.expires_at > now, R.c.expires_at <= until, R.c.id > after, ~noticed)
        .order_by(R.c.id)
        .limit(limit)
    )
    return list((await conn.execute(stmt)).scalars())


async def notify_redemption_expiring(conn: AsyncConnection, redemption_id: int, *, now: datetime, until: datetime) -> int:
    """The REDEMPTION_EXPIRING notice of one redemption, if it is still PENDING and expiring in (now, until]."""
    row = (await conn.execute(select(R).where(R.c.id == redemption_id))).first()
    if row is None:
        return 0
    r = row._mapping
    expires_at = _aware(r["expires_at"])
    if r["status"] != "PENDING" or not (now < expires_at <= until):
        return 0
    params = {"redemption_id": redemption_id, "offer_id": r["offer_id"], "points": int(r["points"]),
              "quantity": int(r["quantity"]), "expires_at": expires_at.isoformat()}
    new_id = await create(conn, user_id=r["member_user_id"], kind=REDEMPTION_EXPIRING, params=params,
                          dedupe_key=f"redemption-expiring:{redemption_id}", now=now, redemption_id=redemption_id)
    return 1 if new_id is not None else 0


# --- reading -----------------------------------------------------------------------------------------


def _of_user(stmt: Any, user_id: int, unread_only: bool) -> Any:
    stmt = stmt.where(N.c.user_id == user_id)
    return stmt.where(N.c.read_at.is_(None)) if unread_only else stmt


async def notifications_page(conn: AsyncConnection, user_id: int, args: PageArgs, *, unread_only: bool = False) -> Page:
    """The member's notices, newest first (keyset on id)."""
    return await keyset_page(conn, _of_user(select(N), user_id, unread_only), [(N.c.id, True)], args)


async def notifications_count(conn: AsyncConnection, user_id: int, *, unread_only: bool = False) -> int:
    stmt = _of_user(select(func.count()).select_from(N), user_id, unread_only)
    return int((await conn.execute(stmt)).scalar_one())


async def unread_count(conn: AsyncConnection, user_id: int) -> int:
    return await notifications_count(conn, user_id, unread_only=True)


async def notifications_by_ids(conn: AsyncConnection, ids: Sequence[int], *, user_id: int) -> dict[int, dict]:
    """The member's own notices among ``ids`` (another member's are absent)."""
    if not ids:
        return {}
    rows = (await conn.execute(select(N).where(N.c.id.in_(list(ids)), N.c.user_id == user_id))).all()
    return {r.id: dict(r._mapping) for r in rows}


# --- marking read ------------------------------------------------------------------------------------


def check_mark_input(ids: Sequence[int] | None, all_: bool | None) -> None:
    """Exactly one of ``ids`` (1..100 of them) and ``all: true``; BAD_USER_INPUT or TOO_MANY_IDS otherwise."""
    if ids is not None and all_:
        raise ValidationFailed("Give either ids or all, not both / ids 与 all 只能选一个", field="all")
    if not ids and not all_:
        raise ValidationFailed("Give the ids to mark read, or all: true / 请提供 ids 或 all: true", field="ids")
    if ids is not None and len(ids) > MAX_MARK_IDS:
        raise ValidationFailed(f"At most {MAX_MARK_IDS} ids at a time / 一次最多 {MAX_MARK_IDS} 个",
                               code="TOO_MANY_IDS", field="ids")


@dataclass(frozen=True)
class Marked:
    marked: int
    unread: int


async def mark_read(
    conn: AsyncConnection, *, user_id: int, ids: Sequence[int] | None, all_: bool | None, now: datetime
) -> Marked:
    """Mark the member's notices ``ids`` (or all of them) read. Every id must be the member's own
    (NOT_FOUND otherwise, and nothing is marked); already read ones stay as they were."""
    check_mark_input(ids, all_)
    stmt = update(N).where(N.c.user_id == user_id, N.c.read_at.is_(None)).values(read_at=now)
    if ids is not None:
        wanted = sorted(set(ids))
        own = (await conn.execute(
            select(func.count()).select_from(N).where(N.c.user_id == user_id, N.c.id.in_(wanted))
        )).scalar_one()
        if own != len(wanted):
            raise NotFound("No such notification / 通知不存在", field="ids")
        stmt = stmt.where(N.c.id.in_(wanted))
    marked = (await conn.execute(stmt)).rowcount or 0
    return Marked(marked=marked, unread=await unread_count(conn, user_id))


# --- text --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Text:
    title_zh: str
    title_en: str
    body_zh: str
    body_en: str


def _when(iso: str, tz: ZoneInfo) -> str:
    return _aware(datetime.fromisoformat(iso)).astimezone(tz).strftime("%Y-%m-%d %H:%M")


def render(kind: str, params: Mapping[str, Any], tz: ZoneInfo) -> Text:
    """Title and body of a notice in Chinese and English (times in the platform's time zone)."""
    points = int(params.get("points") or 0)
    if kind == REVIEW_DECISION:
        status = params.get("status")
        if status == "APPROVED":
            return Text("行为已通过审核", "Action approved",
                        f"你提交的行为已通过人工审核，获得 {points} 积分。",
                        f"Your action was approved after review: {points} points were credited.")
        if status == "PENDING_METHODOLOGY":
            return Text("行为已通过审核，积分待发放", "Action approved, points pending",
                        f"你提交的行为已通过人工审核，方法学版本获批后将发放 {points} 积分。",
                        f"Your action passed review; its {points} points are credited once its methodology "
                        "version is approved.")
        return Text("行为未通过审核", "Action not approved",
                    "你提交的行为未通过人工审核，未获得积分。",
                    "Your action was not approved after review; no points were credited.")
    if kind == POINTS_EXPIRING:
        day = str(params.get("date", ""))
        return Text("积分即将过期", "Points expiring soon",
                    f"你有 {points} 积分将于 {day} 过期，请尽快使用。",
                    f"{points} of your points expire on {day}; use them before then.")
    if kind == REDEMPTION_EXPIRING:
        when = _when(str(params["expires_at"]), tz) if params.get("expires_at") else ""
        return Text("兑换码即将过期", "Redemption code expiring",
                    f"你的兑换码（{points} 积分）将于 {when} 过期，请在此前到店使用；过期后积分将退回。",
                    f"Your redemption code ({points} points) expires at {when}; use it at the counter before "
                    "then. After that it expires and the points are refunded.")
    return Text("通知", "Notification", "", "")
