"""GraphQL types of the volunteer programme (低碳志愿者): volunteers and their console, courses, events,
signups, referrals, merchants brought, commissions, payouts and the admin's farming queue."""

import json
from datetime import datetime
from enum import Enum
from typing import Any

import strawberry
from strawberry.types import Info

from jingtan_api.errors import PermissionDenied
from jingtan_api.graphql.mutations import error_code_enum, user_error_type
from jingtan_api.graphql.relay import Connection, Node, UserError, build_connection, page_args
from jingtan_api.merchants import loaders as merchant_loaders
from jingtan_api.merchants.types import Merchant
from jingtan_api.users.types import User, users_loader
from jingtan_api.volunteers import service
from jingtan_api.volunteers.models import Volunteer as VolunteerRow
from jingtan_api.volunteers.models import VolunteerCourse as CourseRow
from jingtan_api.volunteers.models import VolunteerEvent as EventRow

V, C, EV, SU, RF, FL, VM, CM, PO = (
    service.V, service.C, service.EV, service.SU, service.RF, service.FL, service.VM, service.CM, service.PO,
)

# --- loaders -----------------------------------------------------------------------------------------


def _loader(info: Info, name: str, table: Any):
    ctx = info.context
    return ctx.loader(("volunteers", name), lambda keys: ctx.read(service.rows_by_ids, table, keys))


def volunteers_loader(info: Info):
    return _loader(info, "volunteer", VolunteerRow.__table__)


def events_loader(info: Info):
    return _loader(info, "event", EventRow.__table__)


def courses_loader(info: Info):
    return _loader(info, "course", CourseRow.__table__)


def volunteer_of_user_loader(info: Info):
    ctx = info.context
    return ctx.loader(("volunteers", "by_user"), lambda keys: ctx.read(service.volunteers_by_user_ids, keys))


def minutes_loader(info: Info):
    ctx = info.context
    return ctx.loader(("volunteers", "minutes"), lambda keys: ctx.read(service.service_minutes, keys))


# --- who may see what --------------------------------------------------------------------------------


def is_self_or_admin(info: Info, user_id: int) -> bool:
    viewer = info.context.viewer
    return viewer.user_id is not None and (viewer.user_id == user_id or viewer.is_admin)


def require_self_or_admin(info: Info, user_id: int) -> None:
    info.context.viewer.require_user()
    if not is_self_or_admin(info, user_id):
        raise PermissionDenied()


# --- enums -------------------------------------------------------------------------------------------


@strawberry.enum(description="State of a volunteer application. / 志愿者申请状态。")
class VolunteerStatus(Enum):
    PENDING = strawberry.enum_value("PENDING", description="Applied, waiting for review. / 待审核。")
    ACTIVE = strawberry.enum_value("ACTIVE", description="Approved volunteer. / 已通过。")
    REJECTED = strawberry.enum_value("REJECTED", description="Application rejected. / 已拒绝。")


@strawberry.enum(description="Volunteer level. / 志愿者等级。")
class VolunteerLevel(Enum):
    TRAINEE = strawberry.enum_value("TRAINEE", description="Trainee (见习). / 见习志愿者。")
    CERTIFIED = strawberry.enum_value("CERTIFIED", description="Certified: may run events (认证). / 认证志愿者。")
    LECTURER = strawberry.enum_value("LECTURER", description="Lecturer of the 宣讲导师团 (讲师). / 讲师。")


@strawberry.enum(description="State of an event's service hours. / 服务时长状态。")
class ServiceHoursStatus(Enum):
    PENDING = strawberry.enum_value("PENDING", description="Not confirmed yet. / 待确认。")
    CONFIRMED = strawberry.enum_value("CONFIRMED", description="Confirmed by an admin. / 管理员已确认。")
    AUTO_CONFIRMED = strawberry.enum_value("AUTO_CONFIRMED", description="Confirmed automatically after the event with attendance. / 自动确认。")


@strawberry.enum(description="State of a referral. / 推荐状态。")
class ReferralStatus(Enum):
    PENDING = strawberry.enum_value("PENDING", description="The member has no approved action yet. / 待激活。")
    CREDITED = strawberry.enum_value("CREDITED", description="Activated; the bonus was credited. / 已激活并奖励。")
    CAPPED = strawberry.enum_value("CAPPED", description="Activated over the daily or monthly cap: no bonus. / 已激活（超出上限，无奖励）。")


@strawberry.enum(description="State of a commission. / 佣金状态。")
class CommissionStatus(Enum):
    ACCRUED = strawberry.enum_value("ACCRUED", description="Earned with the redemption. / 已计入。")
    REVERSED = strawberry.enum_value("REVERSED", description="The redemption was refunded. / 已冲回。")


@strawberry.enum(description="State of a payout request. / 提现状态。")
class PayoutStatus(Enum):
    REQUESTED = strawberry.enum_value("REQUESTED", description="Waiting for the transfer. / 待支付。")
    PAID = strawberry.enum_value("PAID", description="Paid outside the platform. / 已支付。")


@strawberry.enum(description="Why a volunteer was flagged. / 标记原因。")
class VolunteerFlagKind(Enum):
    SAME_ADDRESS = strawberry.enum_value("SAME_ADDRESS", description="Many referred accounts from one address. / 同一地址多个账户。")
    SAME_DEVICE = strawberry.enum_value("SAME_DEVICE", description="Many referred accounts from one device. / 同一设备多个账户。")
    INACTIVE_REFERRALS = strawberry.enum_value("INACTIVE_REFERRALS", description="Referred accounts that never act. / 被推荐账户从不行动。")


@strawberry.enum(description="State of a flag. / 标记状态。")
class VolunteerFlagStatus(Enum):
    OPEN = strawberry.enum_value("OPEN", description="Waiting for an admin. / 待处理。")
    RESOLVED = strawberry.enum_value("RESOLVED", description="Resolved by an admin. / 已处理。")


# --- object types ------------------------------------------------------------------------------------


@strawberry.type(description="A lesson of a course. / 课时。")
class VolunteerLesson:
    title_zh: str = strawberry.field(description="Chinese title. / 中文标题。")
    title_en: str = strawberry.field(description="English title. / 英文标题。")
    body_zh: str = strawberry.field(description="Chinese text. / 中文内容。")
    body_en: str = strawberry.field(description="English text. / 英文内容。")


@strawberry.type(description="A quiz question (the answer stays on the server). / 测验题（不含答案）。")
class VolunteerQuestion:
    prompt_zh: str = strawberry.field(description="Chinese prompt. / 中文题干。")
    prompt_en: str = strawberry.field(description="English prompt. / 英文题干。")
    options: list[str] = strawberry.field(description="Options; answer with the index. / 选项（按序号作答）。")


@strawberry.type(description="One attempt at a course quiz. / 一次测验。")
class VolunteerCourseAttempt:
    score_percent: int = strawberry.field(description="Score, 0-100. / 得分。")
    passed: bool = strawberry.field(description="At or above the pass mark. / 是否通过。")
    created_at: datetime = strawberry.field(description="When. / 时间。")


@strawberry.type(description="A training course (bilingual lessons and a quiz). / 培训课程。")
class VolunteerCourse(Node):
    level: VolunteerLevel = strawberry.field(description="The level passing it leads to. / 对应等级。")
    required: bool = strawberry.field(description="Required for that level. / 是否必修。")
    title_zh: str = strawberry.field(description="Chinese title. / 中文标题。")
    title_en: str = strawberry.field(description="English title. / 英文标题。")
    lessons: list[VolunteerLesson] = strawberry.field(description="Lessons. / 课时。")
    questions: list[VolunteerQuestion] = strawberry.field(description="Quiz questions (no answers). / 测验题。")
    pass_mark_percent: int = strawberry.field(description="Pass mark, percent. / 及格线（百分比）。")

    @classmethod
    def from_row(cls, row: dict) -> "VolunteerCourse":
        lessons = json.loads(row["lessons"])
        questions = json.loads(row["questions"])
        return cls(
            pk=row["id"], level=VolunteerLevel(row["level"]), required=row["required"], title_zh=row["title_zh"],
            title_en=row["title_en"], pass_mark_percent=row["pass_mark_percent"],
            lessons=[VolunteerLesson(title_zh=x["titleZh"], title_en=x["titleEn"], body_zh=x["bodyZh"], body_en=x["bodyEn"])
                     for x in lessons],
            questions=[VolunteerQuestion(prompt_zh=q["promptZh"], prompt_en=q["promptEn"], options=q["options"])
                       for q in questions],
        )

    @strawberry.field(description="Your attempts, newest first (volunteers). / 我的测验记录。")
    async def my_attempts(self, info: Info) -> list[VolunteerCourseAttempt]:
        user_id = info.context.viewer.require_user()
        rows = await info.context.read(service.attempts_of, user_id, self.pk)
        return [VolunteerCourseAttempt(score_percent=r["score_percent"], passed=r["passed"], created_at=r["created_at"])
                for r in rows]


@strawberry.type(description="The current check-in code of an event (show it as a QR code). / 当前签到码。")
class VolunteerCheckInCode:
    code: str = strawberry.field(description="The code (A-Z, 2-7 and a dash). / 签到码。")
    expires_at: datetime = strawberry.field(description="When it rotates. / 过期时间。")


@strawberry.type(description="Evidence to send with the event's action (the `evidence` of the action submission). / 行为凭证。")
class VolunteerActionEvidence:
    source: str = strawberry.field(description="evidence.source")
    external_id: str = strawberry.field(description="evidence.externalId")
    signature: str = strawberry.field(description="evidence.signature (HMAC of the server). / 签名。")
    signed_at: datetime = strawberry.field(description="evidence.signedAt (check-in time). / 签到时间。")


@strawberry.type(description="A member's signup to an event. / 活动报名。")
class VolunteerEventSignup(Node):
    event_pk: strawberry.Private[int]
    user_pk: strawberry.Private[int]
    created_at: datetime = strawberry.field(description="When they signed up. / 报名时间。")
    checked_in_at: datetime | None = strawberry.field(description="When they checked in. / 签到时间。")

    @classmethod
    def from_row(cls, row: dict) -> "VolunteerEventSignup":
        return cls(pk=row["id"], event_pk=row["event_id"], user_pk=row["user_id"], created_at=row["created_at"],
                   checked_in_at=row["checked_in_at"])

    @strawberry.field(description="The member (the organiser, the member and admins). / 报名会员。")
    async def user(self, info: Info) -> User | None:
        row = await users_loader(info).load(self.user_pk)
        return User.from_row(row) if row else None

    @strawberry.field(description="The event. / 活动。")
    async def event(self, info: Info) -> "VolunteerEvent":
        return VolunteerEvent.from_row(await events_loader(info).load(self.event_pk))

    @strawberry.field(description="Evidence for the event's action type, once checked in (the member only). / 行为凭证。")
    async def action_evidence(self, info: Info) -> VolunteerActionEvidence | None:
        if info.context.viewer.user_id != self.user_pk or self.checked_in_at is None:
            return None
        event = await events_loader(info).load(self.event_pk)
        if event["action_type"] is None:
            return None
        ev = service.attendance_evidence(info.context.settings.secret_key, event_id=self.event_pk, user_id=self.user_pk,
                                         checked_in_at=self.checked_in_at)
        return VolunteerActionEvidence(source=ev["source"], external_id=ev["external_id"], signature=ev["signature"],
                                       signed_at=ev["signed_at"])


@strawberry.type(description="An event run by a certified volunteer (活动). / 志愿活动。")
class VolunteerEvent(Node):
    volunteer_pk: strawberry.Private[int]
    title_zh: str = strawberry.field(description="Chinese title. / 中文标题。")
    title_en: str = strawberry.field(description="English title. / 英文标题。")
    description: str = strawberry.field(description="Description. / 简介。")
    starts_at: datetime = strawberry.field(description="Start. / 开始时间。")
    ends_at: datetime = strawberry.field(description="End. / 结束时间。")
    place: str = strawberry.field(description="Where. / 地点。")
    latitude: float = strawberry.field(description="WGS-84 latitude. / 纬度。")
    longitude: float = strawberry.field(description="WGS-84 longitude. / 经度。")
    capacity: int = strawberry.field(description="Places. / 名额。")
    signed_up: int = strawberry.field(description="Places taken. / 已报名。")
    action_type: str | None = strawberry.field(description="Action type attendees may submit. / 行为类别。")
    reward_points: int = strawberry.field(description="Promotional points for attending (no CO2e). / 签到奖励积分。")
    hours_status: ServiceHoursStatus = strawberry.field(description="Service hours state. / 服务时长状态。")
    hours_minutes: int = strawberry.field(description="Confirmed service minutes. / 已确认服务分钟数。")

    @classmethod
    def from_row(cls, row: dict) -> "VolunteerEvent":
        return cls(
            pk=row["id"], volunteer_pk=row["volunteer_id"], title_zh=row["title_zh"], title_en=row["title_en"],
            description=row["description"], starts_at=row["starts_at"], ends_at=row["ends_at"], place=row["place"],
            latitude=row["latitude"], longitude=row["longitude"], capacity=row["capacity"], signed_up=row["signed_up"],
            action_type=row["action_type"], reward_points=row["reward_points"],
            hours_status=ServiceHoursStatus(row["hours_status"]), hours_minutes=row["hours_minutes"],
        )

    @strawberry.field(description="Places left. / 剩余名额。")
    def places_left(self) -> int:
        return max(0, self.capacity - self.signed_up)

    @strawberry.field(description="The organiser's name. / 组织者。")
    async def organiser_name(self, info: Info) -> str:
        volunteer = await volunteers_loader(info).load(self.volunteer_pk)
        user = await users_loader(info).load(volunteer["user_id"])
        return user["display_name"] if user else ""

    async def _organiser_user(self, info: Info) -> int:
        return int((await volunteers_loader(info).load(self.volunteer_pk))["user_id"])

    @strawberry.field(description="Your signup, if any. / 我的报名。")
    async def my_signup(self, info: Info) -> VolunteerEventSignup | None:
        user_id = info.context.viewer.user_id
        if user_id is None:
            return None
        ctx = info.context
        loader = ctx.loader(("volunteers", "my_signup", user_id),
                            lambda ids: ctx.read(service.signups_of_user, user_id, ids))
        row = await loader.load(self.pk)
        return VolunteerEventSignup.from_row(row) if row else None

    @strawberry.field(description="Attendees (the organiser and admins). / 报名名单。")
    async def attendees(self, info: Info, first: int | None = None, after: str | None = None,
                        last: int | None = None, before: str | None = None) -> Connection[VolunteerEventSignup]:
        require_self_or_admin(info, await self._organiser_user(info))
        args = page_args(info, first, after, last, before)
        ctx = info.context
        page = await ctx.read(service.page, SU, args, SU.c.event_id == self.pk)
        return build_connection(page, VolunteerEventSignup.from_row,
                                count=lambda: ctx.read(service.count, SU, SU.c.event_id == self.pk))

    @strawberry.field(description="The rotating check-in code to show attendees (the organiser only). / 签到码。")
    async def check_in_code(self, info: Info) -> VolunteerCheckInCode:
        info.context.viewer.require_user()
        if info.context.viewer.user_id != await self._organiser_user(info):
            raise PermissionDenied("Only the organiser shows the check-in code / 仅组织者可查看签到码")
        code = service.current_checkin_code(info.context.settings.secret_key, self.pk, info.context.settings.volunteers,
                                            info.context.now())
        return VolunteerCheckInCode(code=code.code, expires_at=code.expires_at)


@strawberry.type(description="A member a volunteer referred. / 推荐的会员。")
class VolunteerReferral(Node):
    status: ReferralStatus = strawberry.field(description="Activation state. / 状态。")
    points: int = strawberry.field(description="Bonus credited. / 奖励积分。")
    created_at: datetime = strawberry.field(description="When referred. / 推荐时间。")
    activated_at: datetime | None = strawberry.field(description="First approved action. / 激活时间。")
    user_pk: strawberry.Private[int]

    @classmethod
    def from_row(cls, row: dict) -> "VolunteerReferral":
        return cls(pk=row["id"], status=ReferralStatus(row["status"]), points=row["points"], created_at=row["created_at"],
                   activated_at=row["activated_at"], user_pk=row["referred_user_id"])

    @strawberry.field(description="The referred member's display name. / 会员昵称。")
    async def display_name(self, info: Info) -> str:
        row = await users_loader(info).load(self.user_pk)
        return row["display_name"] if row else ""


@strawberry.type(description="A merchant the volunteer brought and its commission terms. / 引入的商户。")
class VolunteerMerchant:
    merchant_pk: strawberry.Private[int]
    share_basis_points: int = strawberry.field(description="Commission share, 1/10000 of points redeemed. / 佣金比例（万分比）。")
    starts_at: datetime = strawberry.field(description="Commission runs from. / 开始。")
    ends_at: datetime = strawberry.field(description="Commission runs until. / 结束。")
    commission_points: int = strawberry.field(description="Commission earned, net of reversals. / 已得佣金。")

    @strawberry.field(description="The merchant. / 商户。")
    async def merchant(self, info: Info) -> Merchant | None:
        row = await merchant_loaders.merchants(info).load(self.merchant_pk)
        return Merchant.from_row(row) if row else None


@strawberry.type(description="Commission on one redemption. / 一笔佣金。")
class VolunteerCommission(Node):
    redeemed_points: int = strawberry.field(description="Points redeemed. / 兑换积分。")
    points: int = strawberry.field(description="Commission. / 佣金。")
    status: CommissionStatus = strawberry.field(description="State. / 状态。")
    created_at: datetime = strawberry.field(description="When earned. / 时间。")
    reversed_at: datetime | None = strawberry.field(description="When reversed. / 冲回时间。")

    @classmethod
    def from_row(cls, row: dict) -> "VolunteerCommission":
        return cls(pk=row["id"], redeemed_points=row["redeemed_points"], points=row["points"],
                   status=CommissionStatus(row["status"]), created_at=row["created_at"], reversed_at=row["reversed_at"])


@strawberry.type(description="A payout request. / 提现申请。")
class VolunteerPayout(Node):
    points: int = strawberry.field(description="Points paid out. / 提现积分。")
    status: PayoutStatus = strawberry.field(description="State. / 状态。")
    external_reference: str = strawberry.field(description="Reference of the transfer. / 外部支付凭证号。")
    requested_at: datetime = strawberry.field(description="Requested. / 申请时间。")
    paid_at: datetime | None = strawberry.field(description="Marked paid. / 支付时间。")
    volunteer_pk: strawberry.Private[int]

    @classmethod
    def from_row(cls, row: dict) -> "VolunteerPayout":
        return cls(pk=row["id"], points=row["points"], status=PayoutStatus(row["status"]),
                   external_reference=row["external_reference"], requested_at=row["requested_at"],
                   paid_at=row["paid_at"], volunteer_pk=row["volunteer_id"])

    @strawberry.field(description="The volunteer. / 志愿者。")
    async def volunteer(self, info: Info) -> "Volunteer":
        return Volunteer.from_row(await volunteers_loader(info).load(self.volunteer_pk))


@strawberry.type(description="Earnings (佣金收入) in points. / 收入。")
class VolunteerEarnings:
    balance: int = strawberry.field(description="Balance of the earnings account. / 收入余额。")
    pending: int = strawberry.field(description="Commissions on redemptions that can still be refunded. / 待确认。")
    available: int = strawberry.field(description="What a payout may request now. / 可提现。")


@strawberry.type(description="A month's earnings statement (months in UTC+8). / 月度收入报表。")
class VolunteerEarningsStatement:
    month: str = strawberry.field(description="YYYY-MM.")
    commissions: int = strawberry.field(description="Commissions earned. / 佣金。")
    reversals: int = strawberry.field(description="Commissions reversed by refunds. / 冲回。")
    net_commissions: int = strawberry.field(description="commissions - reversals. / 净佣金。")
    referral_bonuses: int = strawberry.field(description="Referral bonuses (promotional points, to the member account). / 推荐奖励。")
    payouts_requested: int = strawberry.field(description="Payouts requested. / 提现。")


@strawberry.type(description="A low-carbon volunteer (低碳志愿者) and their console. / 志愿者。")
class Volunteer(Node):
    user_pk: strawberry.Private[int]
    account_pk: strawberry.Private[int | None]
    status: VolunteerStatus = strawberry.field(description="Application state. / 申请状态。")
    level: VolunteerLevel = strawberry.field(description="Level. / 等级。")
    city: str = strawberry.field(description="City. / 城市。")
    skills: list[str] = strawberry.field(description="Skills. / 技能。")
    motivation: str = strawberry.field(description="Motivation. / 申请理由。")
    created_at: datetime = strawberry.field(description="Applied. / 申请时间。")
    review_reason: str = strawberry.field(description="Reviewer's reason. / 审核意见。")
    code: strawberry.Private[str]

    @classmethod
    def from_row(cls, row: dict) -> "Volunteer":
        return cls(pk=row["id"], user_pk=row["user_id"], account_pk=row["earnings_account_id"],
                   status=VolunteerStatus(row["status"]), level=VolunteerLevel(row["level"]), city=row["city"],
                   skills=json.loads(row["skills"]), motivation=row["motivation"], created_at=row["created_at"],
                   review_reason=row["review_reason"], code=row["referral_code"])

    @strawberry.field(description="The member. / 会员。")
    async def user(self, info: Info) -> User | None:
        row = await users_loader(info).load(self.user_pk)
        return User.from_row(row) if row else None

    @strawberry.field(description="Referral code (also for merchants' applications; active volunteers). / 推荐码。")
    def referral_code(self, info: Info) -> str | None:
        require_self_or_admin(info, self.user_pk)
        return self.code if self.status == VolunteerStatus.ACTIVE else None

    @strawberry.field(description="Confirmed service minutes (志愿服务时长). / 已确认服务分钟数。")
    async def service_minutes(self, info: Info) -> int:
        return await minutes_loader(info).load(self.pk) or 0

    @strawberry.field(description="Events I run, soonest start first (the volunteer and admins). / 我的活动。")
    async def events(self, info: Info, first: int | None = None, after: str | None = None,
                     last: int | None = None, before: str | None = None) -> Connection[VolunteerEvent]:
        require_self_or_admin(info, self.user_pk)
        args = page_args(info, first, after, last, before)
        ctx = info.context
        page = await ctx.read(service.page, EV, args, EV.c.volunteer_id == self.pk)
        return build_connection(page, VolunteerEvent.from_row,
                                count=lambda: ctx.read(service.count, EV, EV.c.volunteer_id == self.pk))

    @strawberry.field(description="Members I referred and their activation. / 我的推荐。")
    async def referrals(self, info: Info, first: int | None = None, after: str | None = None,
                        last: int | None = None, before: str | None = None) -> Connection[VolunteerReferral]:
        require_self_or_admin(info, self.user_pk)
        args = page_args(info, first, after, last, before)
        ctx = info.context
        page = await ctx.read(service.page, RF, args, RF.c.volunteer_id == self.pk)
        return build_connection(page, VolunteerReferral.from_row,
                                count=lambda: ctx.read(service.count, RF, RF.c.volunteer_id == self.pk))

    @strawberry.field(description="Merchants I brought. / 我引入的商户。")
    async def merchants_brought(self, info: Info) -> list[VolunteerMerchant]:
        require_self_or_admin(info, self.user_pk)
        rows = await info.context.read(service.merchants_brought, self.pk)
        return [VolunteerMerchant(merchant_pk=r["merchant_id"], share_basis_points=r["share_basis_points"],
                                  starts_at=r["starts_at"], ends_at=r["ends_at"], commission_points=r["earned"])
                for r in rows]

    @strawberry.field(description="Commissions, oldest first. / 佣金明细。")
    async def commissions(self, info: Info, first: int | None = None, after: str | None = None,
                          last: int | None = None, before: str | None = None) -> Connection[VolunteerCommission]:
        require_self_or_admin(info, self.user_pk)
        args = page_args(info, first, after, last, before)
        ctx = info.context
        page = await ctx.read(service.page, CM, args, CM.c.volunteer_id == self.pk)
        return build_connection(page, VolunteerCommission.from_row,
                                count=lambda: ctx.read(service.count, CM, CM.c.volunteer_id == self.pk))

    @strawberry.field(description="Earnings now. / 收入。")
    async def earnings(self, info: Info) -> VolunteerEarnings:
        require_self_or_admin(info, self.user_pk)
        e = await info.context.read(service.earnings_of, self.pk)
        return VolunteerEarnings(balance=e.balance, pending=e.pending, available=e.available)

    @strawberry.field(description="Earnings statement of one month (YYYY-MM, UTC+8). / 月度收入报表。")
    async def earnings_statement(self, info: Info, month: str) -> VolunteerEarningsStatement:
        require_self_or_admin(info, self.user_pk)
        s = await info.context.read(service.monthly_statement, self.pk, month)
        return VolunteerEarningsStatement(month=s.month, commissions=s.commissions, reversals=s.reversals,
                                          net_commissions=s.commissions - s.reversals,
                                          referral_bonuses=s.referral_bonuses, payouts_requested=s.payouts_requested)

    @strawberry.field(description="Payout requests, oldest first. / 提现记录。")
    async def payouts(self, info: Info, first: int | None = None, after: str | None = None,
                      last: int | None = None, before: str | None = None) -> Connection[VolunteerPayout]:
        require_self_or_admin(info, self.user_pk)
        args = page_args(info, first, after, last, before)
        ctx = info.context
        page = await ctx.read(service.page, PO, args, PO.c.volunteer_id == self.pk)
        return build_connection(page, VolunteerPayout.from_row,
                                count=lambda: ctx.read(service.count, PO, PO.c.volunteer_id == self.pk))


@strawberry.type(description="An admin queue entry: possible referral farming. / 推荐作弊嫌疑。")
class VolunteerFlag(Node):
    volunteer_pk: strawberry.Private[int]
    kind: VolunteerFlagKind = strawberry.field(description="Why. / 原因。")
    detail: str = strawberry.field(description="Details. / 详情。")
    status: VolunteerFlagStatus = strawberry.field(description="State. / 状态。")
    created_at: datetime = strawberry.field(description="When. / 时间。")
    resolution: str = strawberry.field(description="The admin's resolution. / 处理意见。")

    @classmethod
    def from_row(cls, row: dict) -> "VolunteerFlag":
        return cls(pk=row["id"], volunteer_pk=row["volunteer_id"], kind=VolunteerFlagKind(row["kind"]), detail=row["detail"],
                   status=VolunteerFlagStatus(row["status"]), created_at=row["created_at"], resolution=row["resolution"])

    @strawberry.field(description="The volunteer. / 志愿者。")
    async def volunteer(self, info: Info) -> Volunteer:
        return Volunteer.from_row(await volunteers_loader(info).load(self.volunteer_pk))


# --- inputs and payloads -----------------------------------------------------------------------------


@strawberry.input(description="Apply to become a volunteer. / 申请成为志愿者。")
class ApplyToVolunteerInput:
    city: str = strawberry.field(description="City. / 城市。")
    skills: list[str] = strawberry.field(default_factory=list, description="Up to 10 skills. / 技能。")
    motivation: str = strawberry.field(description="Why, 10-500 characters. / 申请理由。")


@strawberry.input(description="Approve or reject a volunteer application (admin). / 审核志愿者申请。")
class ReviewVolunteerApplicationInput:
    volunteer_id: strawberry.ID = strawberry.field(description="The application. / 申请。")
    approve: bool = strawberry.field(description="Approve? / 是否通过。")
    reason: str = strawberry.field(description="Why (audit log). / 原因。")


@strawberry.input(description="A lesson. / 课时。")
class VolunteerLessonInput:
    title_zh: str
    title_en: str
    body_zh: str
    body_en: str


@strawberry.input(description="A quiz question with the index of the right option. / 测验题。")
class VolunteerQuestionInput:
    prompt_zh: str
    prompt_en: str
    options: list[str]
    answer: int


@strawberry.input(description="Publish a course (admin). / 发布课程。")
class CreateVolunteerCourseInput:
    level: VolunteerLevel = strawberry.field(description="CERTIFIED or LECTURER. / 对应等级。")
    required: bool = strawberry.field(default=True, description="Required for the level. / 必修。")
    title_zh: str = strawberry.field(description="Chinese title. / 中文标题。")
    title_en: str = strawberry.field(description="English title. / 英文标题。")
    lessons: list[VolunteerLessonInput] = strawberry.field(description="1-30 lessons. / 课时。")
    questions: list[VolunteerQuestionInput] = strawberry.field(description="1-50 questions. / 测验题。")
    pass_mark_percent: int = strawberry.field(default=80, description="1-100. / 及格线。")


@strawberry.input(description="Answer a course quiz. / 提交测验。")
class SubmitVolunteerCourseAttemptInput:
    course_id: strawberry.ID = strawberry.field(description="The course. / 课程。")
    answers: list[int] = strawberry.field(description="Option index per question, in order. / 答案序号。")


@strawberry.input(description="Create an event (certified volunteers). / 发起活动。")
class CreateVolunteerEventInput:
    title_zh: str
    title_en: str
    description: str = ""
    starts_at: datetime
    ends_at: datetime
    place: str
    latitude: float
    longitude: float
    capacity: int
    action_type: str | None = strawberry.field(default=None, description="Action type code (plugin). / 行为类别。")
    reward_points: int = strawberry.field(default=0, description="Promotional points per attendee. / 签到奖励。")


@strawberry.input(description="Sign up to an event. / 报名活动。")
class SignUpForVolunteerEventInput:
    event_id: strawberry.ID


@strawberry.input(description="Check in with the code the organiser shows. / 签到。")
class CheckInToVolunteerEventInput:
    event_id: strawberry.ID
    code: str


@strawberry.input(description="Confirm an event's service hours (admin, not the organiser). / 确认服务时长。")
class ConfirmVolunteerHoursInput:
    event_id: strawberry.ID


@strawberry.input(description="Enter a volunteer's referral code after registration. / 填写推荐码。")
class ApplyReferralCodeInput:
    code: str
    device_id: str | None = strawberry.field(default=None, description="The app's device identifier (kept hashed). / 设备标识。")


@strawberry.input(description="Resolve a farming flag (admin). / 处理标记。")
class ResolveVolunteerFlagInput:
    flag_id: strawberry.ID
    resolution: str


@strawberry.input(description="Request a payout of earnings. / 申请提现。")
class RequestVolunteerPayoutInput:
    points: int


@strawberry.input(description="Mark a payout paid (admin). / 标记已支付。")
class MarkVolunteerPayoutPaidInput:
    payout_id: strawberry.ID
    external_reference: str = strawberry.field(description="Reference of the transfer, 1-100 characters. / 支付凭证号。")


VolunteerErrorCode = error_code_enum(
    "VolunteerErrorCode",
    ("ALREADY_VOLUNTEER", "ALREADY_REVIEWED", "SELF_APPROVAL", "NOT_A_VOLUNTEER", "NOT_CERTIFIED", "EVENT_IN_PAST",
     "INVALID_COORDINATES", "ACTION_TYPE_DISABLED", "EVENT_STARTED", "EVENT_FULL", "ALREADY_SIGNED_UP", "OWN_EVENT",
     "NOT_SIGNED_UP", "CHECKIN_CLOSED", "INVALID_CHECKIN_CODE", "CHECKIN_CODE_EXPIRED", "ALREADY_CHECKED_IN",
     "EVENT_NOT_ENDED", "INVALID_REFERRAL_CODE", "SELF_REFERRAL", "ALREADY_REFERRED", "ALREADY_ACTIVE",
     "REFERRAL_WINDOW_CLOSED", "INSUFFICIENT_POINTS"),
    description="Codes of the volunteer mutations' errors. / 志愿者错误代码。",
)
VolunteerError = user_error_type("VolunteerError", VolunteerErrorCode,
                                 description="Why a volunteer mutation failed. / 志愿者操作错误。")


def _payload(name: str, fields: dict[str, Any], description: str) -> type:
    annotations = {k: v | None for k, v in fields.items()}
    annotations |= {"user_errors": list[UserError], "errors": list[VolunteerError]}
    namespace: dict[str, Any] = {k: strawberry.field(default=None, description=f"The {k}.") for k in fields}
    namespace |= {
        "__annotations__": annotations, "__module__": __name__,
        "user_errors": strawberry.field(default_factory=list, description="Why it failed."),
        "errors": strawberry.field(default_factory=list, description="The same errors with typed codes. / 错误（类型化代码）。"),
    }
    return strawberry.type(type(name, (), namespace), name=name, description=description)


VolunteerPayload = _payload("VolunteerPayload", {"volunteer": Volunteer}, "Result of volunteer programme mutations.")
VolunteerCoursePayload = _payload("VolunteerCoursePayload", {"course": VolunteerCourse}, "Result of `createVolunteerCourse`.")
VolunteerCourseAttemptPayload = _payload("VolunteerCourseAttemptPayload",
                                         {"attempt": VolunteerCourseAttempt, "volunteer": Volunteer},
                                         "Result of `submitVolunteerCourseAttempt`.")
VolunteerEventPayload = _payload("VolunteerEventPayload", {"event": VolunteerEvent}, "Result of event mutations.")
VolunteerSignupPayload = _payload("VolunteerSignupPayload", {"signup": VolunteerEventSignup, "event": VolunteerEvent},
                                  "Result of `signUpForVolunteerEvent` and `checkInToVolunteerEvent`.")
VolunteerReferralPayload = _payload("VolunteerReferralPayload", {"referral": VolunteerReferral}, "Result of `applyReferralCode`.")
VolunteerFlagPayload = _payload("VolunteerFlagPayload", {"flag": VolunteerFlag}, "Result of `resolveVolunteerFlag`.")
VolunteerPayoutPayload = _payload("VolunteerPayoutPayload", {"payout": VolunteerPayout, "earnings": VolunteerEarnings},
                                  "Result of payout mutations.")
