"""The volunteer programme (低碳志愿者, issue #11): applications and levels, training, events with rotating
check-in codes, service hours, referrals, merchant commissions, earnings and payouts. Knows nothing about
GraphQL; see docs/volunteers.md for the rules and docs/ledger.md for the accounts.

Every write function takes an ``AsyncConnection`` inside ``Database.write``. Points move only through
``accounts.service.post_transaction``:

* promotional points (event attendance rewards ``EVENT_REWARD``, referral bonuses ``REFERRAL_BONUS``) go
  from ``platform:promotions`` to the member's account and carry no CO2e;
* commissions (``COMMISSION``) go from ``platform:volunteer-commission`` to the volunteer's earnings
  account, in the transaction of the redemption (listener on ``redemption.created``), and back
  (``COMMISSION_REVERSAL``) in the transaction of its refund (``redemption.cancelled``/``expired``);
* payout requests (``PAYOUT_REQUEST``) move earnings to ``platform:volunteer-payouts``; an admin marks them
  paid with the external reference of the transfer made outside the platform.
"""

import base64
import hashlib
import hmac
import json
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import and_, bindparam, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from jingtan_api.accounts import service as ledger
from jingtan_api.accounts.models import Account
from jingtan_api.actions.models import Action
from jingtan_api.audit import service as audit
from jingtan_api.db import Page, PageArgs, keyset_page
from jingtan_api.driver import DriverStatement
from jingtan_api.errors import Conflict, DomainError, InsufficientPoints, NotFound, PermissionDenied, ValidationFailed
from jingtan_api.merchants.service import bounded_int, clean_text, validate_coordinates
from jingtan_api.redemptions.models import Redemption
from jingtan_api.settings import VolunteersSettings
from jingtan_api.users.models import User
from jingtan_api.users.service import address_bucket
from jingtan_api.volunteers.models import (
    Volunteer,
    VolunteerCommission,
    VolunteerCourse,
    VolunteerCourseAttempt,
    VolunteerEvent,
    VolunteerEventSignup,
    VolunteerFlag,
    VolunteerMerchant,
    VolunteerPayout,
    VolunteerReferral,
    VolunteerSignal,
)

V = Volunteer.__table__
C = VolunteerCourse.__table__
CA = VolunteerCourseAttempt.__table__
EV = VolunteerEvent.__table__
SU = VolunteerEventSignup.__table__
SG = VolunteerSignal.__table__
RF = VolunteerReferral.__table__
FL = VolunteerFlag.__table__
VM = VolunteerMerchant.__table__
CM = VolunteerCommission.__table__
PO = VolunteerPayout.__table__
A = Account.__table__
R = Redemption.__table__
AC = Action.__table__
U = User.__table__

PENDING, ACTIVE, REJECTED = "PENDING", "ACTIVE", "REJECTED"
TRAINEE, CERTIFIED, LECTURER = "TRAINEE", "CERTIFIED", "LECTURER"
LEVELS = (TRAINEE, CERTIFIED, LECTURER)

PROMOTIONS_CODE = "platform:promotions"
COMMISSION_CODE = "platform:volunteer-commission"
PAYOUTS_CODE = "platform:volunteer-payouts"
PLATFORM_CODES = (PROMOTIONS_CODE, COMMISSION_CODE, PAYOUTS_CODE)  # opened by migration 20261202_5101
EARNINGS = "EARNINGS"  # account kind of a volunteer's earnings account

# Ledger transaction kinds written here.
EVENT_REWARD = "EVENT_REWARD"
REFERRAL_BONUS = "REFERRAL_BONUS"
COMMISSION = "COMMISSION"
COMMISSION_REVERSAL = "COMMISSION_REVERSAL"
PAYOUT_REQUEST = "PAYOUT_REQUEST"

HOURS_PENDING, HOURS_CONFIRMED, HOURS_AUTO = "PENDING", "CONFIRMED", "AUTO_CONFIRMED"
CREDITED, CAPPED = "CREDITED", "CAPPED"
ACCRUED, REVERSED = "ACCRUED", "REVERSED"
REQUESTED, PAID = "REQUESTED", "PAID"
SAME_ADDRESS, SAME_DEVICE, INACTIVE_REFERRALS = "SAME_ADDRESS", "SAME_DEVICE", "INACTIVE_REFERRALS"

CODE_ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"
LOCAL_OFFSET = timedelta(hours=8)  # caps and statements count days and months in China Standard Time
EVIDENCE_SOURCE = "jingtan:volunteer-event"


class VolunteerFailure(DomainError):
    code = "BAD_USER_INPUT"


# --- small helpers -----------------------------------------------------------------------------------


def _hash(secret: str, purpose: str, value: str) -> str:
    return hmac.new(f"{purpose}:{secret}".encode(), value.encode(), hashlib.sha256).hexdigest()


def normalize_code(code: Any, field: str) -> str:
    if not isinstance(code, str) or not (4 <= len(code.strip()) <= 16):
        raise VolunteerFailure("Unknown referral code / 推荐码无效", code="INVALID_REFERRAL_CODE", field=field)
    return code.strip().upper()


async def volunteer_by_user(conn: AsyncConnection, user_id: int) -> Any:
    return (await conn.execute(select(V).where(V.c.user_id == user_id))).first()


async def require_active_volunteer(conn: AsyncConnection, user_id: int, *, lock: bool = False) -> Any:
    stmt = select(V).where(V.c.user_id == user_id)
    row = (await conn.execute(stmt.with_for_update() if lock else stmt)).first()
    if row is None or row.status != ACTIVE:
        raise PermissionDenied("Only active volunteers may do this / 仅限已通过审核的志愿者", code="NOT_A_VOLUNTEER")
    return row


# --- programme: applications and levels ----------------------------------------------------------------


def validate_application(city: Any, skills: Any, motivation: Any) -> dict[str, Any]:
    city_v = clean_text(city, "city", max_len=64, required=True)
    if not isinstance(skills, list) or len(skills) > 10:
        raise ValidationFailed("Give at most 10 skills / 最多 10 项技能", field="skills")
    skills_v = [clean_text(s, "skills", max_len=40, required=True) for s in skills]
    motivation_v = clean_text(motivation, "motivation", max_len=500, required=True, multiline=True)
    if len(motivation_v) < 10:
        raise ValidationFailed("Tell us a little more (10+ characters) / 请至少写 10 个字", field="motivation")
    return {"city": city_v, "skills": json.dumps(skills_v, ensure_ascii=False), "motivation": motivation_v}


async def _new_referral_code(conn: AsyncConnection) -> str:
    for _ in range(5):
        code = "V" + "".join(secrets.choice(CODE_ALPHABET) for _ in range(7))
        if (await conn.execute(select(V.c.id).where(V.c.referral_code == code))).first() is None:
            return code
    raise RuntimeError("could not draw a free referral code")  # pragma: no cover - 31^7 codes


async def apply(conn: AsyncConnection, *, user_id: int, city: Any, skills: Any, motivation: Any, now: datetime) -> int:
    values = validate_application(city, skills, motivation)
    await ledger.lock_member_account(conn, user_id)  # serialises this member's applications
    existing = await volunteer_by_user(conn, user_id)
    if existing is not None and existing.status != REJECTED:
        raise Conflict("You already applied / 您已提交过申请", code="ALREADY_VOLUNTEER")
    if existing is not None:
        await conn.execute(
            update(V).where(V.c.id == existing.id).values(
                **values, status=PENDING, created_at=now, reviewed_at=None, reviewed_by_user_id=None, review_reason=""
            )
        )
        return int(existing.id)
    code = await _new_referral_code(conn)
    return (
        await conn.execute(
            insert(V).values(**values, user_id=user_id, status=PENDING, level=TRAINEE, referral_code=code, created_at=now)
            .returning(V.c.id)
        )
    ).scalar_one()


async def review(
    conn: AsyncConnection, *, actor_user_id: int, volunteer_id: int, approve: bool, reason: Any, request_id: str | None,
    now: datetime,
) -> None:
    reason_v = clean_text(reason, "reason", max_len=500, required=True)
    row = (await conn.execute(select(V).where(V.c.id == volunteer_id).with_for_update())).first()
    if row is None:
        raise NotFound("No such application / 申请不存在", field="volunteerId")
    if row.user_id == actor_user_id:
        raise PermissionDenied("You cannot review your own application / 不能审核自己的申请", code="SELF_APPROVAL")
    if row.status != PENDING:
        raise Conflict("The application was already decided / 申请已审核", code="ALREADY_REVIEWED")
    values: dict[str, Any] = dict(status=ACTIVE if approve else REJECTED, reviewed_at=now,
                                  reviewed_by_user_id=actor_user_id, review_reason=reason_v)
    if approve and row.earnings_account_id is None:
        values["earnings_account_id"] = await ledger.create_account(conn, kind=EARNINGS)
    await conn.execute(update(V).where(V.c.id == volunteer_id).values(**values))
    await audit.record(conn, actor_user_id=actor_user_id, action="volunteer.approve" if approve else "volunteer.reject",
                       target_type="Volunteer", target_id=volunteer_id, reason=reason_v, request_id=request_id, now=now)


# --- training ------------------------------------------------------------------------------------------


def validate_course(data: dict[str, Any]) -> dict[str, Any]:
    level = data.get("level")
    if level not in (CERTIFIED, LECTURER):
        raise ValidationFailed("A course leads to CERTIFIED or LECTURER / 课程等级须为认证或讲师", field="level")
    lessons = data.get("lessons") or []
    if not 1 <= len(lessons) <= 30:
        raise ValidationFailed("Give 1-30 lessons / 课时数须为 1-30", field="lessons")
    questions = data.get("questions") or []
    if not 1 <= len(questions) <= 50:
        raise ValidationFailed("Give 1-50 quiz questions / 测验题数须为 1-50", field="questions")
    lessons_v = [
        {
            "titleZh": clean_text(lesson["title_zh"], "lessons.titleZh", max_len=100, required=True),
            "titleEn": clean_text(lesson["title_en"], "lessons.titleEn", max_len=100, required=True),
            "bodyZh": clean_text(lesson["body_zh"], "lessons.bodyZh", max_len=10000, required=True, multiline=True),
            "bodyEn": clean_text(lesson["body_en"], "lessons.bodyEn", max_len=10000, required=True, multiline=True),
        }
        for lesson in lessons
    ]
    questions_v = []
    for q in questions:
        options = q["options"]
        if not 2 <= len(options) <= 8:
            raise ValidationFailed("Each question needs 2-8 options / 每题须有 2-8 个选项", field="questions.options")
        answer = bounded_int(q["answer"], "questions.answer", low=0, high=len(options) - 1,
                             message="The answer must be the index of one option / 答案须为选项序号")
        questions_v.append({
            "promptZh": clean_text(q["prompt_zh"], "questions.promptZh", max_len=500, required=True),
            "promptEn": clean_text(q["prompt_en"], "questions.promptEn", max_len=500, required=True),
            "options": [clean_text(o, "questions.options", max_len=200, required=True) for o in options],
            "answer": answer,
        })
    return {
        "level": level,
        "required": bool(data.get("required", True)),
        "title_zh": clean_text(data.get("title_zh"), "titleZh", max_len=100, required=True),
        "title_en": clean_text(data.get("title_en"), "titleEn", max_len=100, required=True),
        "lessons": json.dumps(lessons_v, ensure_ascii=False),
        "questions": json.dumps(questions_v, ensure_ascii=False),
        "pass_mark_percent": bounded_int(data.get("pass_mark_percent"), "passMarkPercent", low=1, high=100,
                                         message="The pass mark is a percentage 1-100 / 及格线须为 1-100"),
    }


async def create_course(conn: AsyncConnection, *, actor_user_id: int, data: dict[str, Any], request_id: str | None,
                        now: datetime) -> int:
    values = validate_course(data)
    course_id = (
        await conn.execute(insert(C).values(**values, created_by_user_id=actor_user_id, created_at=now).returning(C.c.id))
    ).scalar_one()
    await audit.record(conn, actor_user_id=actor_user_id, action="volunteer.course.create", target_type="VolunteerCourse",
                       target_id=course_id, request_id=request_id, now=now)
    return course_id


@dataclass(frozen=True)
class AttemptResult:
    attempt_id: int
    score_percent: int
    passed: bool
    level: str


async def attempt_course(conn: AsyncConnection, *, user_id: int, course_id: int, answers: Any, now: datetime) -> AttemptResult:
    """Score the answers on the server; keep the attempt; when every required course of the next level is
    passed, the volunteer is certified at that level."""
    volunteer = await require_active_volunteer(conn, user_id, lock=True)
    course = (await conn.execute(select(C).where(C.c.id == course_id))).first()
    if course is None:
        raise NotFound("No such course / 课程不存在", field="courseId")
    questions = json.loads(course.questions)
    if not isinstance(answers, list) or len(answers) != len(questions) or any(
        isinstance(a, bool) or not isinstance(a, int) for a in answers
    ):
        raise ValidationFailed(f"Answer all {len(questions)} questions, each with an option index / 请回答全部题目",
                               field="answers")
    right = sum(1 for q, a in zip(questions, answers, strict=True) if q["answer"] == a)
    score = right * 100 // len(questions)
    passed = score >= course.pass_mark_percent
    attempt_id = (
        await conn.execute(
            insert(CA).values(course_id=course_id, volunteer_id=volunteer.id, answers=json.dumps(answers),
                              score_percent=score, passed=passed, created_at=now).returning(CA.c.id)
        )
    ).scalar_one()
    level = volunteer.level
    next_level = LEVELS[min(LEVELS.index(level) + 1, len(LEVELS) - 1)]
    if passed and next_level != level and course.level == next_level:
        required = {r.id for r in await conn.execute(select(C.c.id).where(C.c.level == next_level, C.c.required == True))}  # noqa: E712
        done = {r.course_id for r in await conn.execute(
            select(CA.c.course_id).where(CA.c.volunteer_id == volunteer.id, CA.c.passed == True).distinct()  # noqa: E712
        )}
        if required <= done:
            level = next_level
            await conn.execute(update(V).where(V.c.id == volunteer.id).values(level=level))
    return AttemptResult(attempt_id, score, passed, level)


# --- events --------------------------------------------------------------------------------------------


def validate_event(data: dict[str, Any], cfg: VolunteersSettings, now: datetime) -> dict[str, Any]:
    starts, ends = data.get("starts_at"), data.get("ends_at")
    if starts is None or ends is None or starts.tzinfo is None or ends.tzinfo is None:
        raise ValidationFailed("Give start and end with a time zone / 请提供带时区的起止时间", field="startsAt")
    if starts <= now:
        raise VolunteerFailure("An event must start in the future / 活动须在未来开始", code="EVENT_IN_PAST", field="startsAt")
    if ends <= starts or ends - starts > timedelta(days=7):
        raise ValidationFailed("An event ends after it starts, within 7 days / 活动须在开始后 7 天内结束", field="endsAt")
    lat, lng = validate_coordinates(data.get("latitude"), data.get("longitude"))
    if lat is None or lng is None:
        raise ValidationFailed("An event needs coordinates / 活动须提供坐标", code="INVALID_COORDINATES", field="latitude")
    action_type = data.get("action_type")
    if action_type is not None:
        action_type = clean_text(action_type, "actionType", max_len=64, required=True)
    return {
        "title_zh": clean_text(data.get("title_zh"), "titleZh", max_len=100, required=True),
        "title_en": clean_text(data.get("title_en"), "titleEn", max_len=100, required=True),
        "description": clean_text(data.get("description"), "description", max_len=2000, multiline=True),
        "place": clean_text(data.get("place"), "place", max_len=200, required=True),
        "starts_at": starts, "ends_at": ends, "latitude": lat, "longitude": lng,
        "capacity": bounded_int(data.get("capacity"), "capacity", low=1, high=cfg.max_event_capacity,
                                message=f"Capacity is 1-{cfg.max_event_capacity} / 名额须为 1-{cfg.max_event_capacity}"),
        "reward_points": bounded_int(data.get("reward_points", 0), "rewardPoints", low=0, high=cfg.max_event_reward_points,
                                     message=f"The reward is 0-{cfg.max_event_reward_points} points / 奖励积分须为 0-{cfg.max_event_reward_points}"),
        "action_type": action_type,
    }


async def create_event(conn: AsyncConnection, *, user_id: int, data: dict[str, Any], enabled_action_types: Sequence[str],
                       cfg: VolunteersSettings, now: datetime) -> int:
    volunteer = await require_active_volunteer(conn, user_id)
    if volunteer.level == TRAINEE:
        raise PermissionDenied("Only certified volunteers run events / 仅认证志愿者可发起活动", code="NOT_CERTIFIED")
    values = validate_event(data, cfg, now)
    if values["action_type"] is not None and values["action_type"] not in enabled_action_types:
        raise VolunteerFailure("That action type is not enabled / 该行为类别未启用", code="ACTION_TYPE_DISABLED",
                               field="actionType")
    return (
        await conn.execute(insert(EV).values(**values, volunteer_id=volunteer.id, created_at=now).returning(EV.c.id))
    ).scalar_one()


async def sign_up(conn: AsyncConnection, *, user_id: int, event_id: int, now: datetime) -> int:
    """Take one place: a conditional UPDATE of the count (never read-then-write), then the signup row under
    a unique (event, member) constraint, in one transaction."""
    event = (await conn.execute(select(EV).where(EV.c.id == event_id))).first()
    if event is None:
        raise NotFound("No such event / 活动不存在", field="eventId")
    if event.starts_at <= now:
        raise VolunteerFailure("The event has already started / 活动已开始", code="EVENT_STARTED", field="eventId")
    organiser = (await conn.execute(select(V.c.user_id).where(V.c.id == event.volunteer_id))).scalar_one()
    if organiser == user_id:
        raise VolunteerFailure("You run this event / 您是活动组织者", code="OWN_EVENT", field="eventId")
    await ledger.lock_member_account(conn, user_id)  # one signup at a time per member (lock order: member first)
    if (await conn.execute(select(SU.c.id).where(SU.c.event_id == event_id, SU.c.user_id == user_id))).first():
        raise VolunteerFailure("You already signed up / 您已报名", code="ALREADY_SIGNED_UP", field="eventId")
    taken = (
        await conn.execute(
            update(EV).where(EV.c.id == event_id, EV.c.signed_up < EV.c.capacity)
            .values(signed_up=EV.c.signed_up + 1).returning(EV.c.id)
        )
    ).first()
    if taken is None:
        raise VolunteerFailure("The event is full / 活动名额已满", code="EVENT_FULL", field="eventId")
    return (
        await conn.execute(insert(SU).values(event_id=event_id, user_id=user_id, created_at=now).returning(SU.c.id))
    ).scalar_one()


def _checkin_window(now: datetime, cfg: VolunteersSettings) -> int:
    return int(now.timestamp()) // cfg.checkin_code_seconds


def checkin_code(secret: str, event_id: int, window: int) -> str:
    """The code of one event in one time window: HMAC-SHA256 of the server key (derived per purpose) over
    the event id and the window, 10 base32 characters. Nothing is stored; QR-friendly (A-Z, 2-7, one dash)."""
    digest = hmac.new(f"volunteer-checkin:{secret}".encode(), f"{event_id}:{window}".encode(), hashlib.sha256).digest()
    raw = base64.b32encode(digest[:10]).decode()[:10]
    return f"{raw[:5]}-{raw[5:]}"


@dataclass(frozen=True)
class CheckInCode:
    code: str
    expires_at: datetime


def current_checkin_code(secret: str, event_id: int, cfg: VolunteersSettings, now: datetime) -> CheckInCode:
    window = _checkin_window(now, cfg)
    expires = datetime.fromtimestamp((window + 1) * cfg.checkin_code_seconds, tz=now.tzinfo)
    return CheckInCode(checkin_code(secret, event_id, window), expires)


def _match_window(secret: str, event_id: int, code: str, now_window: int, look_back: int) -> int | None:
    for back in range(look_back + 1):
        if hmac.compare_digest(checkin_code(secret, event_id, now_window - back), code):
            return back
    return None


async def check_in(conn: AsyncConnection, *, user_id: int, event_id: int, code: Any, secret: str,
                   cfg: VolunteersSettings, lot_expiry_days: int, now: datetime) -> int:
    if not isinstance(code, str) or len(code) > 32:
        raise VolunteerFailure("Invalid check-in code / 签到码无效", code="INVALID_CHECKIN_CODE", field="code")
    code = code.strip().upper()
    event = (await conn.execute(select(EV).where(EV.c.id == event_id))).first()
    if event is None:
        raise NotFound("No such event / 活动不存在", field="eventId")
    if not (event.starts_at - timedelta(minutes=cfg.checkin_opens_minutes) <= now <= event.ends_at):
        raise VolunteerFailure("Check-in is closed for this event / 当前不在签到时间", code="CHECKIN_CLOSED", field="eventId")
    window = _checkin_window(now, cfg)
    # Look back over the whole check-in period (bounded) only to tell an expired code from a wrong one.
    period = (event.ends_at - event.starts_at).total_seconds() + cfg.checkin_opens_minutes * 60
    back = _match_window(secret, event_id, code, window, min(2000, int(period // cfg.checkin_code_seconds) + 1))
    if back is None:
        raise VolunteerFailure("This is not a check-in code of this event / 签到码与活动不符", code="INVALID_CHECKIN_CODE",
                               field="code")
    if back > cfg.checkin_grace_codes:
        raise VolunteerFailure("The check-in code expired; scan the current one / 签到码已过期，请扫描最新签到码",
                               code="CHECKIN_CODE_EXPIRED", field="code")
    member_account = await ledger.lock_member_account(conn, user_id)
    signup = (await conn.execute(select(SU).where(SU.c.event_id == event_id, SU.c.user_id == user_id))).first()
    if signup is None:
        raise VolunteerFailure("Sign up first / 请先报名", code="NOT_SIGNED_UP", field="eventId")
    if signup.checked_in_at is not None:
        raise VolunteerFailure("You already checked in / 您已签到", code="ALREADY_CHECKED_IN", field="eventId")
    tx_id = None
    if event.reward_points > 0:
        promotions = await ledger.platform_account_id(conn, PROMOTIONS_CODE)
        posted = await ledger.post_transaction(
            conn, kind=EVENT_REWARD, now=now, lot_expiry_days=lot_expiry_days,
            postings=[ledger.Posting(member_account, event.reward_points), ledger.Posting(promotions, -event.reward_points)],
            memo=f"活动签到奖励 Event attendance: {event.title_zh} / {event.title_en}"[:500],
        )
        tx_id = posted.id
    await conn.execute(update(SU).where(SU.c.id == signup.id).values(checked_in_at=now, reward_transaction_id=tx_id))
    return int(signup.id)


def attendance_evidence(secret: str, *, event_id: int, user_id: int, checked_in_at: datetime) -> dict[str, Any]:
    """Evidence an attendee sends with the event's action: filled by the core, signed with the server key, so
    a plugin (or reviewer) sees ordinary ``Evidence`` fields it can check without knowing volunteers."""
    external_id = f"VolunteerEvent:{event_id}:User:{user_id}"
    signature = _hash(secret, "volunteer-evidence", f"{external_id}:{checked_in_at.isoformat()}")
    return {"source": EVIDENCE_SOURCE, "external_id": external_id, "signature": signature, "signed_at": checked_in_at}


async def confirm_hours(conn: AsyncConnection, *, actor_user_id: int, event_id: int, request_id: str | None,
                        now: datetime) -> int:
    event = (await conn.execute(select(EV).where(EV.c.id == event_id).with_for_update())).first()
    if event is None:
        raise NotFound("No such event / 活动不存在", field="eventId")
    organiser = (await conn.execute(select(V.c.user_id).where(V.c.id == event.volunteer_id))).scalar_one()
    if organiser == actor_user_id:
        raise PermissionDenied("You cannot approve your own service hours / 不能审核自己的服务时长", code="SELF_APPROVAL")
    if event.ends_at > now:
        raise VolunteerFailure("The event has not ended yet / 活动尚未结束", code="EVENT_NOT_ENDED", field="eventId")
    if event.hours_status != HOURS_PENDING:
        raise Conflict("The hours were already confirmed / 服务时长已确认", code="ALREADY_REVIEWED")
    minutes = int((event.ends_at - event.starts_at).total_seconds() // 60)
    await conn.execute(update(EV).where(EV.c.id == event_id).values(
        hours_status=HOURS_CONFIRMED, hours_minutes=minutes, hours_confirmed_by_user_id=actor_user_id, hours_confirmed_at=now
    ))
    await audit.record(conn, actor_user_id=actor_user_id, action="volunteer.hours.confirm", target_type="VolunteerEvent",
                       target_id=event_id, details={"minutes": minutes}, request_id=request_id, now=now)
    return minutes


async def events_due_for_hours(conn: AsyncConnection, now: datetime, cfg: VolunteersSettings, limit: int = 500,
                               after: int = 0) -> list[int]:
    cutoff = now - timedelta(hours=cfg.hours_auto_confirm_after_hours)
    rows = await conn.execute(
        select(EV.c.id).where(EV.c.hours_status == HOURS_PENDING, EV.c.ends_at <= cutoff, EV.c.id > after)
        .order_by(EV.c.id).limit(limit)
    )
    return [r.id for r in rows]


async def auto_confirm_hours(conn: AsyncConnection, event_id: int, *, cfg: VolunteersSettings, now: datetime) -> bool:
    """Confirm the hours of one event that ended long enough ago and had attendance (a conditional UPDATE:
    safe to run twice or in two processes)."""
    event = (await conn.execute(select(EV).where(EV.c.id == event_id))).first()
    if event is None or event.ends_at > now - timedelta(hours=cfg.hours_auto_confirm_after_hours):
        return False
    attended = (await conn.execute(
        select(func.count()).select_from(SU).where(SU.c.event_id == event_id, SU.c.checked_in_at.is_not(None))
    )).scalar_one()
    if not attended:
        return False
    minutes = int((event.ends_at - event.starts_at).total_seconds() // 60)
    done = await conn.execute(
        update(EV).where(EV.c.id == event_id, EV.c.hours_status == HOURS_PENDING)
        .values(hours_status=HOURS_AUTO, hours_minutes=minutes, hours_confirmed_at=now).returning(EV.c.id)
    )
    return done.first() is not None


# --- referrals -----------------------------------------------------------------------------------------


async def record_signal(conn: AsyncConnection, *, user_id: int, address: str, device: str | None, secret: str,
                        now: datetime) -> None:
    """A referred member's hashed client address (IPv4, or IPv6 /64) and device, as seen when they registered
    with a code (or entered one later); kept once per member."""
    if device is not None and (not isinstance(device, str) or len(device) > 64 or not device.isprintable()):
        raise ValidationFailed("deviceId is up to 64 printable characters / 设备标识无效", field="deviceId")
    if (await conn.execute(select(SG.c.id).where(SG.c.user_id == user_id))).first() is not None:
        return
    await conn.execute(insert(SG).values(
        user_id=user_id, address_hash=_hash(secret, "volunteer-address", address_bucket(address)),
        device_hash=_hash(secret, "volunteer-device", device) if device else None, created_at=now,
    ))


async def refer(conn: AsyncConnection, *, user_id: int, code: Any, field: str, cfg: VolunteersSettings, now: datetime,
                at_registration: bool) -> int:
    """Record that ``user_id`` was referred by the volunteer owning ``code``: refused for one's own code, a
    member already referred, a member who already acted, or after the window; flags farming patterns."""
    code_v = normalize_code(code, field)
    volunteer = (await conn.execute(select(V).where(V.c.referral_code == code_v))).first()
    if volunteer is None or volunteer.status != ACTIVE:
        raise VolunteerFailure("Unknown referral code / 推荐码无效", code="INVALID_REFERRAL_CODE", field=field)
    if volunteer.user_id == user_id:
        raise VolunteerFailure("You cannot use your own referral code / 不能使用自己的推荐码", code="SELF_REFERRAL", field=field)
    if not at_registration:
        await ledger.lock_member_account(conn, user_id)  # one referral at a time per member
        registered = (await conn.execute(select(U.c.created_at).where(U.c.id == user_id))).scalar_one()
        if now - registered > timedelta(days=cfg.referral_window_days):
            raise VolunteerFailure(
                f"Referral codes are accepted within {cfg.referral_window_days} days of registration / 推荐码须在注册后 {cfg.referral_window_days} 天内填写",
                code="REFERRAL_WINDOW_CLOSED", field=field,
            )
    if (await conn.execute(select(RF.c.id).where(RF.c.referred_user_id == user_id))).first() is not None:
        raise VolunteerFailure("You were already referred / 您已填写过推荐码", code="ALREADY_REFERRED", field=field)
    acted = (await conn.execute(select(AC.c.id).where(AC.c.user_id == user_id, AC.c.status == "APPROVED").limit(1))).first()
    if acted is not None:
        raise VolunteerFailure("Only members who have not acted yet can be referred / 已有行为记录的会员不能再填推荐码",
                               code="ALREADY_ACTIVE", field=field)
    referral_id = (
        await conn.execute(insert(RF).values(volunteer_id=volunteer.id, referred_user_id=user_id, created_at=now)
                           .returning(RF.c.id))
    ).scalar_one()
    await _flag_shared_signals(conn, volunteer.id, user_id, cfg, now)
    return referral_id


async def _flag(conn: AsyncConnection, volunteer_id: int, kind: str, subject: str, detail: str, now: datetime) -> None:
    exists = (await conn.execute(select(FL.c.id).where(FL.c.volunteer_id == volunteer_id, FL.c.kind == kind,
                                                       FL.c.subject == subject))).first()
    if exists is None:
        await conn.execute(insert(FL).values(volunteer_id=volunteer_id, kind=kind, subject=subject, detail=detail,
                                             status="OPEN", created_at=now))


async def _flag_shared_signals(conn: AsyncConnection, volunteer_id: int, user_id: int, cfg: VolunteersSettings,
                               now: datetime) -> None:
    signal = (await conn.execute(select(SG).where(SG.c.user_id == user_id))).first()
    if signal is None:
        return
    for kind, column, value in ((SAME_ADDRESS, SG.c.address_hash, signal.address_hash),
                                (SAME_DEVICE, SG.c.device_hash, signal.device_hash)):
        if value is None:
            continue
        n = (await conn.execute(
            select(func.count()).select_from(RF.join(SG, SG.c.user_id == RF.c.referred_user_id))
            .where(RF.c.volunteer_id == volunteer_id, column == value)
        )).scalar_one()
        if n >= cfg.farming_threshold:
            what = "address" if kind == SAME_ADDRESS else "device"
            await _flag(conn, volunteer_id, kind, value[:16],
                        f"{n} referred accounts registered from one {what} / {n} 个被推荐账户来自同一{'地址' if kind == SAME_ADDRESS else '设备'}",
                        now)


def _local_start(now: datetime, monthly: bool) -> datetime:
    local = now + LOCAL_OFFSET
    start = local.replace(hour=0, minute=0, second=0, microsecond=0)
    if monthly:
        start = start.replace(day=1)
    return start - LOCAL_OFFSET


_PENDING_REFERRAL = DriverStatement(
    select(RF.c.id, RF.c.volunteer_id).where(RF.c.referred_user_id == bindparam("uid"), RF.c.status == PENDING).limit(1))


async def credit_referral(conn: AsyncConnection, *, user_id: int, cfg: VolunteersSettings, lot_expiry_days: int,
                          now: datetime) -> int | None:
    """Listener of ``action.approved``: the referred member's first approved action activates the referral and
    credits the volunteer's bonus, unless the volunteer's daily or monthly cap is reached (then CAPPED)."""
    pending = await _PENDING_REFERRAL.all(conn, {"uid": user_id})  # every approval asks: on the driver path
    if not pending:
        return None
    referral_id, volunteer_id = pending[0]["id"], pending[0]["volunteer_id"]
    volunteer = (await conn.execute(select(V).where(V.c.id == volunteer_id))).first()
    volunteer_account = await ledger.lock_member_account(conn, volunteer.user_id)  # serialises this volunteer's caps

    async def credited_since(start: datetime) -> int:
        return (await conn.execute(select(func.count()).select_from(RF).where(
            RF.c.volunteer_id == volunteer.id, RF.c.status == CREDITED, RF.c.activated_at >= start
        ))).scalar_one()

    capped = cfg.referral_points == 0 or (
        await credited_since(_local_start(now, False)) >= cfg.referral_daily_cap
        or await credited_since(_local_start(now, True)) >= cfg.referral_monthly_cap
    )
    values: dict[str, Any] = {"status": CAPPED if capped else CREDITED, "activated_at": now}
    if not capped:
        promotions = await ledger.platform_account_id(conn, PROMOTIONS_CODE)
        posted = await ledger.post_transaction(
            conn, kind=REFERRAL_BONUS, now=now, lot_expiry_days=lot_expiry_days,
            postings=[ledger.Posting(volunteer_account, cfg.referral_points), ledger.Posting(promotions, -cfg.referral_points)],
            memo="推荐奖励 Referral bonus",
        )
        values.update(points=cfg.referral_points, transaction_id=posted.id)
    done = await conn.execute(update(RF).where(RF.c.id == referral_id, RF.c.status == PENDING).values(**values)
                              .returning(RF.c.id))
    if done.first() is None:  # pragma: no cover - the member's account lock serialises this
        raise Conflict("The referral was already credited / 推荐已计入")
    return int(referral_id)


async def volunteers_with_inactive_referrals(conn: AsyncConnection, now: datetime, cfg: VolunteersSettings,
                                             limit: int = 500, after: int = 0) -> list[int]:
    cutoff = now - timedelta(days=cfg.inactive_referral_days)
    rows = await conn.execute(
        select(RF.c.volunteer_id).where(RF.c.status == PENDING, RF.c.created_at <= cutoff, RF.c.volunteer_id > after)
        .group_by(RF.c.volunteer_id).having(func.count() >= cfg.farming_threshold)
        .order_by(RF.c.volunteer_id).limit(limit)
    )
    return [r.volunteer_id for r in rows]


async def flag_inactive_referrals(conn: AsyncConnection, volunteer_id: int, *, cfg: VolunteersSettings, now: datetime) -> bool:
    cutoff = now - timedelta(days=cfg.inactive_referral_days)
    n = (await conn.execute(select(func.count()).select_from(RF).where(
        RF.c.volunteer_id == volunteer_id, RF.c.status == PENDING, RF.c.created_at <= cutoff))).scalar_one()
    if n < cfg.farming_threshold:
        return False
    month = (now + LOCAL_OFFSET).strftime("%Y-%m")
    await _flag(conn, volunteer_id, INACTIVE_REFERRALS, month,
                f"{n} referred accounts never acted within {cfg.inactive_referral_days} days / {n} 个被推荐账户从未行动", now)
    return True


async def resolve_flag(conn: AsyncConnection, *, actor_user_id: int, flag_id: int, resolution: Any,
                       request_id: str | None, now: datetime) -> None:
    text = clean_text(resolution, "resolution", max_len=500, required=True)
    done = await conn.execute(update(FL).where(FL.c.id == flag_id, FL.c.status == "OPEN").values(
        status="RESOLVED", resolved_by_user_id=actor_user_id, resolved_at=now, resolution=text).returning(FL.c.id))
    if done.first() is None:
        if (await conn.execute(select(FL.c.id).where(FL.c.id == flag_id))).first() is None:
            raise NotFound("No such flag / 标记不存在", field="flagId")
        raise Conflict("The flag was already resolved / 已处理", code="ALREADY_REVIEWED")
    await audit.record(conn, actor_user_id=actor_user_id, action="volunteer.flag.resolve", target_type="VolunteerFlag",
                       target_id=flag_id, reason=text, request_id=request_id, now=now)


# --- merchants brought and commissions ----------------------------------------------------------------


async def link_merchant(conn: AsyncConnection, *, merchant_id: int, applicant_user_id: int, code: Any,
                        cfg: VolunteersSettings, now: datetime) -> int:
    """Listener of ``merchant.applied`` with a volunteer code: the volunteer brought this merchant."""
    code_v = normalize_code(code, "volunteerCode")
    volunteer = (await conn.execute(select(V).where(V.c.referral_code == code_v))).first()
    if volunteer is None or volunteer.status != ACTIVE:
        raise VolunteerFailure("Unknown volunteer code / 志愿者推荐码无效", code="INVALID_REFERRAL_CODE", field="volunteerCode")
    if volunteer.user_id == applicant_user_id:
        raise VolunteerFailure("You cannot use your own volunteer code / 不能使用自己的推荐码", code="SELF_REFERRAL",
                               field="volunteerCode")
    return (
        await conn.execute(insert(VM).values(
            volunteer_id=volunteer.id, merchant_id=merchant_id, share_basis_points=cfg.commission_basis_points,
            starts_at=now, ends_at=now + timedelta(days=cfg.commission_days), created_at=now,
        ).returning(VM.c.id))
    ).scalar_one()


_COMMISSION_LINK = DriverStatement(
    select(R.c.created_at, VM.c.volunteer_id, VM.c.share_basis_points, V.c.earnings_account_id)
    .select_from(R.join(VM, and_(VM.c.merchant_id == bindparam("merchant_id"), VM.c.starts_at <= R.c.created_at,
                                 VM.c.ends_at > R.c.created_at))
                 .join(V, V.c.id == VM.c.volunteer_id))
    .where(R.c.id == bindparam("redemption_id")).order_by(VM.c.id).limit(1))


async def accrue_commission(conn: AsyncConnection, *, redemption_id: int, merchant_id: int, points: int,
                            lot_expiry_days: int) -> int | None:
    """Listener of ``redemption.created``: the commission of the volunteer who brought the merchant, funded
    by the platform commission account, in the redemption's own transaction."""
    # One statement on the driver path (every redemption asks it): the volunteer link of the merchant
    # live at the redemption's time, with the volunteer's earnings account; no row when there is none.
    found = await _COMMISSION_LINK.all(conn, {"redemption_id": redemption_id, "merchant_id": merchant_id})
    if not found:
        return None
    link = found[0]
    created_at = link["created_at"]
    share = points * link["share_basis_points"] // 10_000
    if share <= 0:
        return None
    earnings = link["earnings_account_id"]
    if earnings is None:  # pragma: no cover - an ACTIVE volunteer always has one; a code needs ACTIVE
        return None
    source = await ledger.platform_account_id(conn, COMMISSION_CODE)
    posted = await ledger.post_transaction(
        conn, kind=COMMISSION, now=created_at, lot_expiry_days=lot_expiry_days,
        postings=[ledger.Posting(earnings, share), ledger.Posting(source, -share)],
        memo=f"志愿者佣金 Volunteer commission: redemption {redemption_id}",
    )
    return (await conn.execute(insert(CM).values(
        volunteer_id=link["volunteer_id"], merchant_id=merchant_id, redemption_id=redemption_id, redeemed_points=points,
        points=share, status=ACCRUED, transaction_id=posted.id, created_at=created_at,
    ).returning(CM.c.id))).scalar_one()


async def reverse_commission(conn: AsyncConnection, *, redemption_id: int, lot_expiry_days: int, now: datetime) -> bool:
    """Listener of ``redemption.cancelled``/``expired``: a refunded redemption earns no commission. The
    earnings cannot be short: points of commissions on still-pending redemptions cannot be paid out."""
    row = (await conn.execute(select(CM).where(CM.c.redemption_id == redemption_id, CM.c.status == ACCRUED))).first()
    if row is None:
        return False
    earnings = (await conn.execute(select(V.c.earnings_account_id).where(V.c.id == row.volunteer_id))).scalar_one()
    source = await ledger.platform_account_id(conn, COMMISSION_CODE)
    posted = await ledger.post_transaction(
        conn, kind=COMMISSION_REVERSAL, now=now, lot_expiry_days=lot_expiry_days, reverses_id=row.transaction_id,
        postings=[ledger.Posting(earnings, -row.points), ledger.Posting(source, row.points)],
        memo=f"佣金冲回 Commission reversed: redemption {redemption_id} refunded",
    )
    done = await conn.execute(update(CM).where(CM.c.id == row.id, CM.c.status == ACCRUED).values(
        status=REVERSED, reversal_transaction_id=posted.id, reversed_at=now).returning(CM.c.id))
    if done.first() is None:  # pragma: no cover - the redemption's state transition happens once
        raise Conflict("The commission was already reversed / 佣金已冲回")
    return True


@dataclass(frozen=True)
class Earnings:
    balance: int
    pending: int  # commissions on redemptions that can still be refunded

    @property
    def available(self) -> int:
        return max(0, self.balance - self.pending)


async def earnings_of(conn: AsyncConnection, volunteer_id: int) -> Earnings:
    row = (await conn.execute(select(A.c.balance).select_from(V.join(A, A.c.id == V.c.earnings_account_id))
                              .where(V.c.id == volunteer_id))).first()
    pending = (await conn.execute(
        select(func.coalesce(func.sum(CM.c.points), 0)).select_from(CM.join(R, R.c.id == CM.c.redemption_id))
        .where(CM.c.volunteer_id == volunteer_id, CM.c.status == ACCRUED, R.c.status == "PENDING")
    )).scalar_one()
    return Earnings(int(row.balance) if row else 0, int(pending))


async def request_payout(conn: AsyncConnection, *, user_id: int, points: Any, cfg: VolunteersSettings,
                         lot_expiry_days: int, now: datetime) -> int:
    volunteer = await require_active_volunteer(conn, user_id, lock=True)
    amount = bounded_int(points, "points", low=cfg.min_payout_points, high=ledger.HARD_MAX_AMOUNT,
                         message=f"A payout is at least {cfg.min_payout_points} points / 提现至少 {cfg.min_payout_points} 积分")
    await ledger.lock_accounts(conn, [volunteer.earnings_account_id])
    earnings = await earnings_of(conn, volunteer.id)
    if amount > earnings.available:
        raise InsufficientPoints(
            f"Only {earnings.available} points can be paid out (commissions on unconfirmed redemptions wait) / 可提现 {earnings.available} 积分",
            field="points",
        )
    payouts = await ledger.platform_account_id(conn, PAYOUTS_CODE)
    posted = await ledger.post_transaction(
        conn, kind=PAYOUT_REQUEST, now=now, lot_expiry_days=lot_expiry_days, actor_user_id=user_id,
        postings=[ledger.Posting(volunteer.earnings_account_id, -amount), ledger.Posting(payouts, amount)],
        memo="志愿者提现申请 Volunteer payout request",
    )
    return (await conn.execute(insert(PO).values(volunteer_id=volunteer.id, points=amount, status=REQUESTED,
                                                 transaction_id=posted.id, requested_at=now).returning(PO.c.id))).scalar_one()


async def mark_payout_paid(conn: AsyncConnection, *, actor_user_id: int, payout_id: int, reference: Any,
                           request_id: str | None, now: datetime) -> None:
    ref = clean_text(reference, "externalReference", max_len=100, required=True)
    payout = (await conn.execute(select(PO).where(PO.c.id == payout_id))).first()
    if payout is None:
        raise NotFound("No such payout / 提现申请不存在", field="payoutId")
    owner = (await conn.execute(select(V.c.user_id).where(V.c.id == payout.volunteer_id))).scalar_one()
    if owner == actor_user_id:
        raise PermissionDenied("You cannot mark your own payout paid / 不能处理自己的提现", code="SELF_APPROVAL")
    done = await conn.execute(update(PO).where(PO.c.id == payout_id, PO.c.status == REQUESTED).values(
        status=PAID, external_reference=ref, paid_at=now, paid_by_user_id=actor_user_id).returning(PO.c.id))
    if done.first() is None:
        raise Conflict("The payout was already marked paid / 提现已处理", code="ALREADY_REVIEWED")
    await audit.record(conn, actor_user_id=actor_user_id, action="volunteer.payout.paid", target_type="VolunteerPayout",
                       target_id=payout_id, details={"externalReference": ref, "points": payout.points},
                       request_id=request_id, now=now)


@dataclass(frozen=True)
class Statement:
    month: str
    commissions: int
    reversals: int
    referral_bonuses: int
    payouts_requested: int


async def monthly_statement(conn: AsyncConnection, volunteer_id: int, month: str) -> Statement:
    try:
        start_local = datetime.strptime(month, "%Y-%m")
    except (TypeError, ValueError):
        raise ValidationFailed("month is YYYY-MM / 月份格式为 YYYY-MM", field="month") from None
    if not 2000 <= start_local.year <= 2999:
        raise ValidationFailed("month is YYYY-MM / 月份格式为 YYYY-MM", field="month")
    start = start_local.replace(tzinfo=UTC) - LOCAL_OFFSET
    nxt = (start_local.replace(day=28) + timedelta(days=4)).replace(day=1).replace(tzinfo=UTC) - LOCAL_OFFSET

    async def total(stmt: Any) -> int:
        return int((await conn.execute(stmt)).scalar_one())

    in_month_c = and_(CM.c.volunteer_id == volunteer_id, CM.c.created_at >= start, CM.c.created_at < nxt)
    return Statement(
        month=month,
        commissions=await total(select(func.coalesce(func.sum(CM.c.points), 0)).where(in_month_c)),
        reversals=await total(select(func.coalesce(func.sum(CM.c.points), 0)).where(
            CM.c.volunteer_id == volunteer_id, CM.c.status == REVERSED, CM.c.reversed_at >= start, CM.c.reversed_at < nxt)),
        referral_bonuses=await total(select(func.coalesce(func.sum(RF.c.points), 0)).where(
            RF.c.volunteer_id == volunteer_id, RF.c.activated_at >= start, RF.c.activated_at < nxt)),
        payouts_requested=await total(select(func.coalesce(func.sum(PO.c.points), 0)).where(
            PO.c.volunteer_id == volunteer_id, PO.c.requested_at >= start, PO.c.requested_at < nxt)),
    )


# --- reads ---------------------------------------------------------------------------------------------


async def rows_by_ids(conn: AsyncConnection, table: Any, ids: Sequence[int]) -> dict[int, dict]:
    rows = await conn.execute(select(table).where(table.c.id.in_(list(ids))))
    return {r.id: dict(r._mapping) for r in rows}


async def volunteers_by_user_ids(conn: AsyncConnection, user_ids: Sequence[int]) -> dict[int, dict]:
    rows = await conn.execute(select(V).where(V.c.user_id.in_(list(user_ids))))
    return {r.user_id: dict(r._mapping) for r in rows}


async def service_minutes(conn: AsyncConnection, volunteer_ids: Sequence[int]) -> dict[int, int]:
    rows = await conn.execute(
        select(EV.c.volunteer_id, func.coalesce(func.sum(EV.c.hours_minutes), 0).label("m"))
        .where(EV.c.volunteer_id.in_(list(volunteer_ids)), EV.c.hours_status != HOURS_PENDING)
        .group_by(EV.c.volunteer_id)
    )
    return {r.volunteer_id: int(r.m) for r in rows}


async def signup_of(conn: AsyncConnection, event_id: int, user_id: int) -> dict | None:
    row = (await conn.execute(select(SU).where(SU.c.event_id == event_id, SU.c.user_id == user_id))).first()
    return dict(row._mapping) if row else None


async def signups_of_user(conn: AsyncConnection, user_id: int, event_ids: Sequence[int]) -> dict[int, dict]:
    rows = await conn.execute(select(SU).where(SU.c.user_id == user_id, SU.c.event_id.in_(list(event_ids))))
    return {r.event_id: dict(r._mapping) for r in rows}


async def page(conn: AsyncConnection, table: Any, args: PageArgs, *where: Any) -> Page:
    return await keyset_page(conn, select(table).where(*where), [(table.c.id, False)], args)


async def count(conn: AsyncConnection, table: Any, *where: Any) -> int:
    return int((await conn.execute(select(func.count()).select_from(table).where(*where))).scalar_one())


async def attempts_of(conn: AsyncConnection, user_id: int, course_id: int) -> list[dict]:
    rows = await conn.execute(
        select(CA).join(V, V.c.id == CA.c.volunteer_id)
        .where(V.c.user_id == user_id, CA.c.course_id == course_id).order_by(CA.c.id.desc()).limit(50)
    )
    return [dict(r._mapping) for r in rows]


async def merchants_brought(conn: AsyncConnection, volunteer_id: int) -> list[dict]:
    earned = (
        select(func.coalesce(func.sum(CM.c.points), 0))
        .where(CM.c.merchant_id == VM.c.merchant_id, CM.c.volunteer_id == volunteer_id, CM.c.status == ACCRUED)
        .scalar_subquery()
    )
    rows = await conn.execute(select(VM, earned.label("earned")).where(VM.c.volunteer_id == volunteer_id).order_by(VM.c.id))
    return [dict(r._mapping) for r in rows]
