"""Challenges (挑战): an organisation's goal for its members or a city, live progress, and settlement
(docs/impact.md "Challenges").

* Created, changed and cancelled by the organisation's admins (or platform admins) while the organisation
  is open; the reward budget (``reward_points × max_rewarded``) must be covered by the organisation's
  account when the challenge is created (REWARD_ABOVE_ACCOUNT).
* Progress is maintained by the ``action.approved`` listener (:func:`record_progress`), in the approving
  transaction: an approved action counts when it occurred in the window, is of a listed type (if any),
  and its member was a member of the organisation when submitting it (MEMBERS) or has the challenge's city
  on their impact profile (CITY).
* :func:`settle` runs once per challenge after it ended (the ``challenges`` job, or an admin's
  ``settleChallenge``): it locks the challenge row and proceeds only while it is ACTIVE, so a second run,
  in the same or another process, finds it SETTLED and does nothing. The first ``max_rewarded``
  qualifiers (in the order they qualified) get ``reward_points`` each, in one balanced CHALLENGE_REWARD
  transaction from the organisation's account — as many as the account holds at that moment, never more.
"""

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from jingtan_api import events
from jingtan_api.audit import service as audit
from jingtan_api.accounts import service as ledger
from jingtan_api.accounts.models import Account
from jingtan_api.challenges.models import Challenge, ChallengeParticipant
from jingtan_api.db import Page, PageArgs, dialect_insert, keyset_page
from jingtan_api.errors import Conflict, NotFound, ValidationFailed
from jingtan_api.impact import service as impact
from jingtan_api.organisations import service as orgs

C = Challenge.__table__
CP = ChallengeParticipant.__table__
ACC = Account.__table__

ACTIVE = "ACTIVE"
CANCELLED = "CANCELLED"
SETTLED = "SETTLED"
MEMBERS = "MEMBERS"
CITY = "CITY"
GRAMS = "GRAMS"
ACTIONS = "ACTIONS"
CHALLENGE_REWARD = "CHALLENGE_REWARD"
"""Ledger transaction kind of a challenge's rewards (organisation → qualifiers)."""

START_TOLERANCE = timedelta(minutes=5)
MAX_ACTION_TYPES = 20
MAX_REWARDED = 100_000
MAX_GOAL = 10**12


# --- validation ------------------------------------------------------------------------------------------


def _text(value: Any, field: str, *, max_len: int, required: bool = False) -> str:
    if value is None:
        value = ""
    if not isinstance(value, str):
        raise ValidationFailed("Must be text / 须为文本", field=field)
    text = value.strip()
    if required and not text:
        raise ValidationFailed("Required / 必填", field=field)
    if len(text) > max_len:
        raise ValidationFailed(f"At most {max_len} characters / 最多{max_len}个字符", field=field)
    if any(ord(ch) < 32 and ch not in "\n\t" for ch in text):
        raise ValidationFailed("Contains control characters / 含控制字符", field=field)
    return text


def _int(value: Any, field: str, *, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValidationFailed("Must be a whole number / 须为整数", field=field)
    if value < lo or value > hi:
        raise ValidationFailed(f"Must be between {lo} and {hi} / 须在{lo}到{hi}之间", field=field)
    return value


def validate(data: dict[str, Any], *, now: datetime, known_types: Sequence[str], max_days: int,
             max_reward: int) -> dict[str, Any]:
    """The challenge's columns from a creation input (keys as in the table), or a typed error."""
    out: dict[str, Any] = {
        "name_zh": _text(data.get("name_zh"), "nameZh", max_len=100, required=True),
        "name_en": _text(data.get("name_en"), "nameEn", max_len=100),
        "description_zh": _text(data.get("description_zh"), "descriptionZh", max_len=2000),
        "description_en": _text(data.get("description_en"), "descriptionEn", max_len=2000),
    }
    audience = data.get("audience")
    if audience not in (MEMBERS, CITY):
        raise ValidationFailed("Audience is MEMBERS or CITY / 参与范围无效", field="audience")
    out["audience"] = audience
    if audience == CITY:
        city = impact.validate_city(data.get("city"))
        if not city:
            raise ValidationFailed("A city challenge names its city / 城市挑战须指定城市", field="city")
        out["city"] = city
    else:
        out["city"] = ""
    goal_kind = data.get("goal_kind")
    if goal_kind not in (GRAMS, ACTIONS):
        raise ValidationFailed("Goal is GRAMS or ACTIONS / 目标类型无效", field="goalKind")
    out["goal_kind"] = goal_kind
    out["goal_value"] = _int(data.get("goal_value"), "goalValue", lo=1, hi=MAX_GOAL)
    types = data.get("action_types") or []
    if len(types) > MAX_ACTION_TYPES or any(t not in known_types for t in types):
        raise ValidationFailed("Unknown action type / 未知的行为类别", code="UNKNOWN_ACTION_TYPE", field="actionTypes")
    out["action_types"] = json.dumps(sorted(set(types)))
    starts, ends = data.get("starts_at"), data.get("ends_at")
    if not isinstance(starts, datetime) or not isinstance(ends, datetime):
        raise ValidationFailed("Give the start and end / 请提供起止时间", field="startsAt")
    starts, ends = impact.aware(starts), impact.aware(ends)
    if ends <= starts:
        raise ValidationFailed("The challenge ends before it starts / 挑战结束时间早于开始时间",
                               code="CHALLENGE_ENDS_BEFORE_START", field="endsAt")
    if starts < now - START_TOLERANCE:
        raise ValidationFailed("The challenge cannot start in the past / 挑战不能从过去开始",
                               code="CHALLENGE_STARTS_IN_PAST", field="startsAt")
    if ends - starts > timedelta(days=max_days):
        raise ValidationFailed(f"A challenge lasts at most {max_days} days / 挑战最长{max_days}天",
                               code="CHALLENGE_TOO_LONG", field="endsAt")
    out["starts_at"], out["ends_at"] = starts, ends
    out["reward_points"] = _int(data.get("reward_points") or 0, "rewardPoints", lo=0, hi=max_reward)
    out["max_rewarded"] = _int(data.get("max_rewarded") or 0, "maxRewarded", lo=0, hi=MAX_REWARDED)
    if (out["reward_points"] == 0) != (out["max_rewarded"] == 0):
        raise ValidationFailed("Give both the reward and how many are rewarded, or neither / 奖励与名额须同时设置",
                               field="maxRewarded")
    return out


# --- reads -----------------------------------------------------------------------------------------------


async def challenge_row(conn: AsyncConnection, challenge_id: int) -> dict:
    row = (await conn.execute(select(C).where(C.c.id == challenge_id))).one_or_none()
    if row is None:
        raise NotFound("No such challenge / 挑战不存在", field="challengeId")
    return dict(row._mapping)


async def challenges_by_ids(conn: AsyncConnection, ids: Sequence[int]) -> dict[int, dict]:
    rows = await conn.execute(select(C).where(C.c.id.in_(list(ids))))
    return {r.id: dict(r._mapping) for r in rows}


def _challenges_where(stmt: Any, *, org_id: int | None, city: str | None, status: str | None) -> Any:
    if org_id is not None:
        stmt = stmt.where(C.c.organisation_id == org_id)
    if city is not None:
        stmt = stmt.where(C.c.audience == CITY, C.c.city == city)
    if status is not None:
        stmt = stmt.where(C.c.status == status)
    return stmt


async def challenges_page(conn: AsyncConnection, args: PageArgs, *, org_id: int | None = None,
                          city: str | None = None, status: str | None = None) -> Page:
    stmt = _challenges_where(select(C), org_id=org_id, city=city, status=status)
    return await keyset_page(conn, stmt, [(C.c.id, True)], args)


async def challenges_count(conn: AsyncConnection, *, org_id: int | None = None, city: str | None = None,
                           status: str | None = None) -> int:
    stmt = _challenges_where(select(func.count()).select_from(C), org_id=org_id, city=city, status=status)
    return int((await conn.execute(stmt)).scalar_one())


async def participants_page(conn: AsyncConnection, challenge_id: int, args: PageArgs) -> Page:
    """Participants, most progress first (then the later entry): the challenge's live leaderboard."""
    stmt = select(CP).where(CP.c.challenge_id == challenge_id)
    return await keyset_page(conn, stmt, [(CP.c.progress, True), (CP.c.id, True)], args)


async def participants_count(conn: AsyncConnection, challenge_id: int) -> int:
    return int((await conn.execute(select(func.count()).where(CP.c.challenge_id == challenge_id))).scalar_one())


@dataclass(frozen=True)
class Progress:
    participants: int
    qualified: int
    grams: int
    actions: int


async def progress(conn: AsyncConnection, challenge_ids: Sequence[int]) -> dict[int, Progress]:
    """Live totals of several challenges in one statement."""
    rows = await conn.execute(
        select(CP.c.challenge_id, func.count(), func.count(CP.c.qualified_at), func.coalesce(func.sum(CP.c.grams), 0),
               func.coalesce(func.sum(CP.c.actions), 0))
        .where(CP.c.challenge_id.in_(list(challenge_ids))).group_by(CP.c.challenge_id)
    )
    found = {r[0]: Progress(int(r[1]), int(r[2]), int(r[3]), int(r[4])) for r in rows}
    return {cid: found.get(cid, Progress(0, 0, 0, 0)) for cid in challenge_ids}


async def participant(conn: AsyncConnection, challenge_id: int, user_id: int) -> dict | None:
    row = (await conn.execute(select(CP).where(CP.c.challenge_id == challenge_id, CP.c.user_id == user_id))).one_or_none()
    return None if row is None else dict(row._mapping)


async def can_manage(conn: AsyncConnection, actor: orgs.Actor, org_id: int) -> bool:
    return actor.is_platform_admin or await orgs.is_admin(conn, org_id, actor.user_id)


# --- writes ----------------------------------------------------------------------------------------------


async def _balance(conn: AsyncConnection, account_id: int) -> int:
    return int((await conn.execute(select(ACC.c.balance).where(ACC.c.id == account_id))).scalar_one())


async def create_challenge(conn: AsyncConnection, *, actor: orgs.Actor, org_id: int, values: dict[str, Any],
                           now: datetime) -> int:
    """``values`` from :func:`validate`. Only the organisation's admins (or platform admins), only while it
    is open, and only with a reward budget its account covers now."""
    await orgs.organisation_row(conn, org_id)  # NOT_FOUND first
    await orgs.require_admin(conn, actor, org_id)
    account_id = await orgs.lock_open_account(conn, org_id)
    budget = values["reward_points"] * values["max_rewarded"]
    held = await _balance(conn, account_id)
    if budget > held:
        raise Conflict(
            f"Rewards of {budget} points exceed the organisation's {held} points / 奖励总额超过组织积分余额",
            code="REWARD_ABOVE_ACCOUNT", field="rewardPoints",
        )
    challenge_id = (
        await conn.execute(
            C.insert().values(organisation_id=org_id, created_by_user_id=actor.user_id, created_at=now,
                              status=ACTIVE, **values).returning(C.c.id)
        )
    ).scalar_one()
    await audit.record(conn, actor_user_id=actor.user_id, action="challenge.create", target_type="Challenge",
                       target_id=challenge_id, details={"organisationId": org_id, "budget": budget}, now=now)
    return int(challenge_id)


async def _lock(conn: AsyncConnection, challenge_id: int) -> dict:
    row = (await conn.execute(select(C).where(C.c.id == challenge_id).with_for_update())).one_or_none()
    if row is None:
        raise NotFound("No such challenge / 挑战不存在", field="challengeId")
    return dict(row._mapping)


async def cancel_challenge(conn: AsyncConnection, *, actor: orgs.Actor, challenge_id: int, reason: Any,
                           now: datetime) -> None:
    """Cancel an ACTIVE challenge before it ends (nobody is rewarded)."""
    row = await _lock(conn, challenge_id)
    await orgs.require_admin(conn, actor, row["organisation_id"])
    reason_text = _text(reason, "reason", max_len=500, required=True)
    if row["status"] != ACTIVE:
        raise Conflict("The challenge is no longer active / 挑战已结束或已取消", code="CHALLENGE_NOT_ACTIVE",
                       field="challengeId")
    if impact.aware(row["ends_at"]) <= now:
        raise Conflict("The challenge has ended; it can only be settled / 挑战已结束，只能结算",
                       code="CHALLENGE_ENDED", field="challengeId")
    await conn.execute(update(C).where(C.c.id == challenge_id).values(status=CANCELLED, cancelled_at=now))
    await audit.record(conn, actor_user_id=actor.user_id, action="challenge.cancel", target_type="Challenge",
                       target_id=challenge_id, reason=reason_text, now=now)


@dataclass(frozen=True)
class Settlement:
    challenge_id: int
    settled_now: bool
    rewarded: int
    paid_points: int


async def settle(conn: AsyncConnection, challenge_id: int, *, now: datetime, lot_expiry_days: int,
                 actor_user_id: int | None = None) -> Settlement:
    """Settle an ended ACTIVE challenge once; an already settled (or cancelled) one is left as it is
    (``settled_now`` False). Lock order: challenge row, qualifiers' member accounts (ascending id), then
    the organisation's row (``lock_open_account``), as the ledger's lock order requires."""
    row = await _lock(conn, challenge_id)
    if row["status"] != ACTIVE:
        return Settlement(challenge_id, False, int(row["rewarded"]), int(row["paid_points"]))
    if impact.aware(row["ends_at"]) > now:
        raise Conflict("The challenge has not ended yet / 挑战尚未结束", code="CHALLENGE_NOT_ENDED", field="challengeId")
    parts = (await conn.execute(
        select(CP.c.id, CP.c.user_id, CP.c.grams, CP.c.qualified_at).where(CP.c.challenge_id == challenge_id)
    )).all()
    qualifiers = sorted((p for p in parts if p.qualified_at is not None), key=lambda p: (impact.aware(p.qualified_at), p.id))
    reward = int(row["reward_points"])
    winners = qualifiers[: int(row["max_rewarded"])] if reward > 0 else []
    tx_id = None
    if winners:
        accounts = {
            r.user_id: r.id for r in await conn.execute(
                select(ACC.c.id, ACC.c.user_id)
                .where(ACC.c.user_id.in_([w.user_id for w in winners]), ACC.c.kind == ledger.MEMBER)
                .order_by(ACC.c.id).with_for_update()
            )
        }
        org = await orgs.organisation_row(conn, row["organisation_id"])
        if orgs.is_open(org) and org.account_id is not None:
            org_account = await orgs.lock_open_account(conn, row["organisation_id"])
            affordable = await _balance(conn, org_account) // reward
            winners = [w for w in winners if w.user_id in accounts][:affordable]
        else:  # a closed organisation pays nothing; the result says so (rewarded 0)
            winners = []
        if winners:
            total = reward * len(winners)
            tx = await ledger.post_transaction(
                conn, kind=CHALLENGE_REWARD,
                postings=[ledger.Posting(org_account, -total)]
                + [ledger.Posting(accounts[w.user_id], reward) for w in winners],
                now=now, lot_expiry_days=lot_expiry_days, actor_user_id=actor_user_id,
                memo=f"challenge #{challenge_id} rewards / 挑战奖励",
            )
            tx_id = tx.id
            await conn.execute(update(CP).where(CP.c.id.in_([w.id for w in winners])).values(rewarded_points=reward))
    paid = reward * len(winners)
    await conn.execute(
        update(C).where(C.c.id == challenge_id).values(
            status=SETTLED, settled_at=now, participants=len(parts), qualified=len(qualifiers), rewarded=len(winners),
            paid_points=paid, total_grams=sum(int(p.grams) for p in parts), transaction_id=tx_id,
        )
    )
    await audit.record(conn, actor_user_id=actor_user_id, action="challenge.settle", target_type="Challenge",
                       target_id=challenge_id, details={"rewarded": len(winners), "paidPoints": paid,
                                                        "qualified": len(qualifiers)}, now=now)
    return Settlement(challenge_id, True, len(winners), paid)


async def due_challenge_ids(conn: AsyncConnection, *, now: datetime, after: int, limit: int) -> list[int]:
    rows = await conn.execute(
        select(C.c.id).where(C.c.status == ACTIVE, C.c.ends_at <= now, C.c.id > after).order_by(C.c.id).limit(limit)
    )
    return [r.id for r in rows]


# --- writes: the approval listener -----------------------------------------------------------------------


async def record_progress(conn: AsyncConnection, att: impact.Attribution, *, now: datetime) -> int:
    """Add one newly approved action to every open challenge it counts for; returns how many. One
    statement to find them (indexed by status), one upsert per matching challenge."""
    audience = C.c.audience == MEMBERS
    if att.organisation_ids:
        audience = (audience & C.c.organisation_id.in_(list(att.organisation_ids)))
    else:
        audience = None
    city = (C.c.audience == CITY) & (C.c.city == att.city) if att.city else None
    cond = [c for c in (audience, city) if c is not None]
    if not cond or att.grams < 0:
        return 0
    where = cond[0] if len(cond) == 1 else cond[0] | cond[1]
    found = (await conn.execute(
        select(C.c.id, C.c.goal_kind, C.c.goal_value, C.c.action_types)
        .where(C.c.status == ACTIVE, C.c.starts_at <= att.occurred_from, C.c.ends_at > att.occurred_from, where)
        .order_by(C.c.id)
    )).all()
    counted = 0
    for ch in found:
        types = json.loads(ch.action_types or "[]")
        if types and att.plugin_code not in types:
            continue
        step = att.grams if ch.goal_kind == GRAMS else 1
        stmt = dialect_insert(conn, CP).values(challenge_id=ch.id, user_id=att.user_id, grams=att.grams, actions=1,
                                               progress=step)
        stmt = stmt.on_conflict_do_update(
            index_elements=["challenge_id", "user_id"],
            set_={"grams": CP.c.grams + att.grams, "actions": CP.c.actions + 1, "progress": CP.c.progress + step},
        ).returning(CP.c.id, CP.c.progress, CP.c.qualified_at)
        got = (await conn.execute(stmt)).one()
        qualified = got.qualified_at is not None
        if not qualified and int(got.progress) >= int(ch.goal_value):
            await conn.execute(update(CP).where(CP.c.id == got.id).values(qualified_at=now))
            qualified = True
        await events.emit(conn, "challenge.progressed", challenge_id=ch.id, user_id=att.user_id,
                          progress=int(got.progress), qualified=qualified)
        counted += 1
    return counted
