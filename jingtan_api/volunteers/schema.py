"""Query and Mutation fields of the volunteer programme, and ``User.volunteer`` (the volunteer console)."""

import strawberry
from sqlalchemy.ext.asyncio import AsyncConnection
from strawberry.types import Info

from jingtan_api.auth.permissions import ADMIN
from jingtan_api.errors import PermissionDenied
from jingtan_api.graphql.domain import Domain, hookimpl
from jingtan_api.graphql.mutations import payload_mutation
from jingtan_api.graphql.relay import Connection, build_connection, decode_id, page_args
from jingtan_api.merchants.loaders import forget
from jingtan_api.users.schema import client_address
from jingtan_api.users.types import User, require_personal
from jingtan_api.volunteers import service
from jingtan_api.volunteers.types import (
    EV,
    FL,
    PO,
    V,
    ApplyReferralCodeInput,
    ApplyToVolunteerInput,
    CheckInToVolunteerEventInput,
    ConfirmVolunteerHoursInput,
    CreateVolunteerCourseInput,
    CreateVolunteerEventInput,
    MarkVolunteerPayoutPaidInput,
    PayoutStatus,
    RequestVolunteerPayoutInput,
    ResolveVolunteerFlagInput,
    ReviewVolunteerApplicationInput,
    SignUpForVolunteerEventInput,
    SubmitVolunteerCourseAttemptInput,
    Volunteer,
    VolunteerCourse,
    VolunteerCourseAttempt,
    VolunteerCourseAttemptPayload,
    VolunteerCoursePayload,
    VolunteerEarnings,
    VolunteerEvent,
    VolunteerEventPayload,
    VolunteerEventSignup,
    VolunteerFlag,
    VolunteerFlagPayload,
    VolunteerFlagStatus,
    VolunteerLevel,
    VolunteerPayload,
    VolunteerPayout,
    VolunteerPayoutPayload,
    VolunteerReferral,
    VolunteerReferralPayload,
    VolunteerSignupPayload,
    VolunteerStatus,
    courses_loader,
    events_loader,
    volunteer_of_user_loader,
    volunteers_loader,
)


def _interactive(info: Info) -> int:
    """Volunteer work is done in the app, by the member themself (API tokens have no volunteer scope)."""
    user_id = info.context.viewer.require_user()
    if info.context.viewer.api_token_id is not None:
        raise PermissionDenied("Use the app, not an API token / 请在应用内操作")
    return user_id


def _admin(info: Info) -> int:
    return info.context.viewer.require_role(ADMIN, scope="users:write")


async def _volunteer(info: Info, volunteer_id: int) -> Volunteer:
    forget(volunteers_loader(info), volunteer_id)
    return Volunteer.from_row(await volunteers_loader(info).load(volunteer_id))


async def _event(info: Info, event_id: int) -> VolunteerEvent:
    forget(events_loader(info), event_id)
    return VolunteerEvent.from_row(await events_loader(info).load(event_id))


async def _signup_payload(info: Info, event_id: int, user_id: int) -> VolunteerSignupPayload:
    row = await info.context.read(service.signup_of, event_id, user_id)
    return VolunteerSignupPayload(signup=VolunteerEventSignup.from_row(row), event=await _event(info, event_id))


async def volunteer_nodes(info: Info, pks: list[int]) -> dict[int, Volunteer]:
    rows = await volunteers_loader(info).load_many(pks)
    viewer = info.context.viewer
    # A volunteer's record (city, skills, motivation) is personal: the volunteer and admins only.
    return {r["id"]: Volunteer.from_row(r) for r in rows
            if r is not None and (viewer.is_admin or viewer.user_id == r["user_id"])}


async def event_nodes(info: Info, pks: list[int]) -> dict[int, VolunteerEvent]:
    rows = await events_loader(info).load_many(pks)
    return {r["id"]: VolunteerEvent.from_row(r) for r in rows if r is not None}


async def course_nodes(info: Info, pks: list[int]) -> dict[int, VolunteerCourse]:
    rows = await courses_loader(info).load_many(pks)
    return {r["id"]: VolunteerCourse.from_row(r) for r in rows if r is not None}


@strawberry.type
class VolunteersQuery:
    @strawberry.field(description="Volunteer events, by id; by default those not ended yet. / 志愿活动列表。")
    async def volunteer_events(
        self, info: Info, first: int | None = None, after: str | None = None, last: int | None = None,
        before: str | None = None, include_past: bool = False,
    ) -> Connection[VolunteerEvent]:
        ctx = info.context
        args = page_args(info, first, after, last, before)
        where = () if include_past else (EV.c.ends_at >= ctx.now(),)
        page = await ctx.read(service.page, EV, args, *where)
        return build_connection(page, VolunteerEvent.from_row, count=lambda: ctx.read(service.count, EV, *where))

    @strawberry.field(description="One event. / 单个活动。")
    async def volunteer_event(self, info: Info, id: strawberry.ID) -> VolunteerEvent | None:
        pk = decode_id(id, "VolunteerEvent")
        return (await event_nodes(info, [pk])).get(pk)

    @strawberry.field(description="Training courses (logged-in users). / 培训课程。")
    async def volunteer_courses(
        self, info: Info, first: int | None = None, after: str | None = None, last: int | None = None,
        before: str | None = None, level: VolunteerLevel | None = None,
    ) -> Connection[VolunteerCourse]:
        ctx = info.context
        ctx.viewer.require_user()
        args = page_args(info, first, after, last, before)
        where = (service.C.c.level == level.value,) if level else ()
        page = await ctx.read(service.page, service.C, args, *where)
        return build_connection(page, VolunteerCourse.from_row, count=lambda: ctx.read(service.count, service.C, *where))

    @strawberry.field(description="Volunteer applications by state (admin). / 志愿者申请（管理员）。")
    async def volunteer_applications(
        self, info: Info, first: int | None = None, after: str | None = None, last: int | None = None,
        before: str | None = None, status: VolunteerStatus = VolunteerStatus.PENDING,
    ) -> Connection[Volunteer]:
        ctx = info.context
        ctx.viewer.require_role(ADMIN, scope="users:read")
        args = page_args(info, first, after, last, before)
        page = await ctx.read(service.page, V, args, V.c.status == status.value)
        return build_connection(page, Volunteer.from_row, count=lambda: ctx.read(service.count, V, V.c.status == status.value))

    @strawberry.field(description="Referral farming queue (admin). / 推荐作弊嫌疑队列（管理员）。")
    async def volunteer_flags(
        self, info: Info, first: int | None = None, after: str | None = None, last: int | None = None,
        before: str | None = None, status: VolunteerFlagStatus = VolunteerFlagStatus.OPEN,
    ) -> Connection[VolunteerFlag]:
        ctx = info.context
        ctx.viewer.require_role(ADMIN, scope="users:read")
        args = page_args(info, first, after, last, before)
        page = await ctx.read(service.page, FL, args, FL.c.status == status.value)
        return build_connection(page, VolunteerFlag.from_row, count=lambda: ctx.read(service.count, FL, FL.c.status == status.value))

    @strawberry.field(description="Payout requests by state (admin). / 提现申请（管理员）。")
    async def volunteer_payouts(
        self, info: Info, first: int | None = None, after: str | None = None, last: int | None = None,
        before: str | None = None, status: PayoutStatus = PayoutStatus.REQUESTED,
    ) -> Connection[VolunteerPayout]:
        ctx = info.context
        ctx.viewer.require_role(ADMIN, scope="users:read")
        args = page_args(info, first, after, last, before)
        page = await ctx.read(service.page, PO, args, PO.c.status == status.value)
        return build_connection(page, VolunteerPayout.from_row, count=lambda: ctx.read(service.count, PO, PO.c.status == status.value))


@strawberry.type
class VolunteersMutation:
    @payload_mutation(description="Apply to become a volunteer (低碳志愿者); an admin reviews it. / 申请成为志愿者。")
    async def apply_to_volunteer(self, info: Info, input: ApplyToVolunteerInput) -> VolunteerPayload:
        ctx = info.context
        user_id = _interactive(info)
        volunteer_id = await ctx.db.write(lambda conn: service.apply(
            conn, user_id=user_id, city=input.city, skills=input.skills, motivation=input.motivation, now=ctx.now()))
        return VolunteerPayload(volunteer=await _volunteer(info, volunteer_id))

    @payload_mutation(description="Approve or reject a volunteer application (admin; audit-logged). / 审核志愿者申请。")
    async def review_volunteer_application(self, info: Info, input: ReviewVolunteerApplicationInput) -> VolunteerPayload:
        ctx = info.context
        actor = _admin(info)
        volunteer_id = decode_id(input.volunteer_id, "Volunteer", field="volunteerId")
        await ctx.db.write(lambda conn: service.review(
            conn, actor_user_id=actor, volunteer_id=volunteer_id, approve=input.approve, reason=input.reason,
            request_id=ctx.request_id, now=ctx.now()))
        return VolunteerPayload(volunteer=await _volunteer(info, volunteer_id))

    @payload_mutation(description="Publish a training course (admin; audit-logged). / 发布培训课程。")
    async def create_volunteer_course(self, info: Info, input: CreateVolunteerCourseInput) -> VolunteerCoursePayload:
        ctx = info.context
        actor = _admin(info)
        data = {
            "level": input.level.value, "required": input.required, "title_zh": input.title_zh, "title_en": input.title_en,
            "pass_mark_percent": input.pass_mark_percent,
            "lessons": [vars(x) for x in input.lessons], "questions": [vars(q) for q in input.questions],
        }
        course_id = await ctx.db.write(lambda conn: service.create_course(
            conn, actor_user_id=actor, data=data, request_id=ctx.request_id, now=ctx.now()))
        return VolunteerCoursePayload(course=VolunteerCourse.from_row(await courses_loader(info).load(course_id)))

    @payload_mutation(description="Answer a course quiz; scored on the server. / 提交课程测验。")
    async def submit_volunteer_course_attempt(
        self, info: Info, input: SubmitVolunteerCourseAttemptInput
    ) -> VolunteerCourseAttemptPayload:
        ctx = info.context
        user_id = _interactive(info)
        course_id = decode_id(input.course_id, "VolunteerCourse", field="courseId")
        result = await ctx.db.write(lambda conn: service.attempt_course(
            conn, user_id=user_id, course_id=course_id, answers=input.answers, now=ctx.now()))
        row = await ctx.read(service.volunteer_by_user, user_id)
        return VolunteerCourseAttemptPayload(
            attempt=VolunteerCourseAttempt(score_percent=result.score_percent, passed=result.passed, created_at=ctx.now()),
            volunteer=await _volunteer(info, row.id),
        )

    @payload_mutation(description="Create an event (certified volunteers). / 发起志愿活动。")
    async def create_volunteer_event(self, info: Info, input: CreateVolunteerEventInput) -> VolunteerEventPayload:
        ctx = info.context
        user_id = _interactive(info)
        data = {k: getattr(input, k) for k in ("title_zh", "title_en", "description", "starts_at", "ends_at", "place",
                                               "latitude", "longitude", "capacity", "action_type", "reward_points")}
        enabled = [input.action_type] if input.action_type and ctx.services.plugins.get(input.action_type) else []
        event_id = await ctx.db.write(lambda conn: service.create_event(
            conn, user_id=user_id, data=data, enabled_action_types=enabled, cfg=ctx.settings.volunteers, now=ctx.now()))
        return VolunteerEventPayload(event=await _event(info, event_id))

    @payload_mutation(description="Sign up to an event (capacity enforced). / 报名活动。")
    async def sign_up_for_volunteer_event(self, info: Info, input: SignUpForVolunteerEventInput) -> VolunteerSignupPayload:
        ctx = info.context
        user_id = _interactive(info)
        event_id = decode_id(input.event_id, "VolunteerEvent", field="eventId")
        await ctx.db.write(lambda conn: service.sign_up(conn, user_id=user_id, event_id=event_id, now=ctx.now()))
        return await _signup_payload(info, event_id, user_id)

    @payload_mutation(description="Check in with the organiser's current code; may credit promotional points. / 活动签到。")
    async def check_in_to_volunteer_event(self, info: Info, input: CheckInToVolunteerEventInput) -> VolunteerSignupPayload:
        ctx = info.context
        user_id = _interactive(info)
        event_id = decode_id(input.event_id, "VolunteerEvent", field="eventId")
        await ctx.db.write(lambda conn: service.check_in(
            conn, user_id=user_id, event_id=event_id, code=input.code, secret=ctx.settings.secret_key,
            cfg=ctx.settings.volunteers, lot_expiry_days=ctx.settings.points.lot_expiry_days, now=ctx.now()))
        return await _signup_payload(info, event_id, user_id)

    @payload_mutation(description="Confirm an ended event's service hours (admin, not the organiser). / 确认服务时长。")
    async def confirm_volunteer_hours(self, info: Info, input: ConfirmVolunteerHoursInput) -> VolunteerEventPayload:
        ctx = info.context
        actor = _admin(info)
        event_id = decode_id(input.event_id, "VolunteerEvent", field="eventId")
        await ctx.db.write(lambda conn: service.confirm_hours(
            conn, actor_user_id=actor, event_id=event_id, request_id=ctx.request_id, now=ctx.now()))
        return VolunteerEventPayload(event=await _event(info, event_id))

    @payload_mutation(description="Enter a volunteer's referral code after registering (within the window). / 填写推荐码。")
    async def apply_referral_code(self, info: Info, input: ApplyReferralCodeInput) -> VolunteerReferralPayload:
        ctx = info.context
        user_id = _interactive(info)
        address = client_address(info)

        async def tx(conn: AsyncConnection) -> int:
            await service.record_signal(conn, user_id=user_id, address=address, device=input.device_id,
                                        secret=ctx.settings.secret_key, now=ctx.now())
            return await service.refer(conn, user_id=user_id, code=input.code, field="code", cfg=ctx.settings.volunteers,
                                       now=ctx.now(), at_registration=False)

        referral_id = await ctx.db.write(tx)
        rows = await ctx.read(service.rows_by_ids, service.RF, [referral_id])
        return VolunteerReferralPayload(referral=VolunteerReferral.from_row(rows[referral_id]))

    @payload_mutation(description="Resolve a referral farming flag (admin; audit-logged). / 处理推荐作弊标记。")
    async def resolve_volunteer_flag(self, info: Info, input: ResolveVolunteerFlagInput) -> VolunteerFlagPayload:
        ctx = info.context
        actor = _admin(info)
        flag_id = decode_id(input.flag_id, "VolunteerFlag", field="flagId")
        await ctx.db.write(lambda conn: service.resolve_flag(
            conn, actor_user_id=actor, flag_id=flag_id, resolution=input.resolution, request_id=ctx.request_id,
            now=ctx.now()))
        rows = await ctx.read(service.rows_by_ids, FL, [flag_id])
        return VolunteerFlagPayload(flag=VolunteerFlag.from_row(rows[flag_id]))

    @payload_mutation(description="Request a payout of available earnings. / 申请提现。")
    async def request_volunteer_payout(self, info: Info, input: RequestVolunteerPayoutInput) -> VolunteerPayoutPayload:
        ctx = info.context
        user_id = _interactive(info)
        payout_id = await ctx.db.write(lambda conn: service.request_payout(
            conn, user_id=user_id, points=input.points, cfg=ctx.settings.volunteers,
            lot_expiry_days=ctx.settings.points.lot_expiry_days, now=ctx.now()))
        return await _payout_payload(info, payout_id)

    @payload_mutation(description="Mark a payout paid with the transfer's reference (admin; audit-logged). / 标记提现已支付。")
    async def mark_volunteer_payout_paid(self, info: Info, input: MarkVolunteerPayoutPaidInput) -> VolunteerPayoutPayload:
        ctx = info.context
        actor = _admin(info)
        payout_id = decode_id(input.payout_id, "VolunteerPayout", field="payoutId")
        await ctx.db.write(lambda conn: service.mark_payout_paid(
            conn, actor_user_id=actor, payout_id=payout_id, reference=input.external_reference,
            request_id=ctx.request_id, now=ctx.now()))
        return await _payout_payload(info, payout_id)


async def _payout_payload(info: Info, payout_id: int) -> VolunteerPayoutPayload:
    ctx = info.context
    row = (await ctx.read(service.rows_by_ids, PO, [payout_id]))[payout_id]
    e = await ctx.read(service.earnings_of, row["volunteer_id"])
    return VolunteerPayoutPayload(payout=VolunteerPayout.from_row(row),
                                  earnings=VolunteerEarnings(balance=e.balance, pending=e.pending, available=e.available))


@strawberry.type
class UserVolunteer:
    """Fields of ``User`` from the volunteer programme."""

    @strawberry.field(description="The user's volunteer record and console (the user and admins). / 志愿者信息。")
    async def volunteer(self: User, info: Info) -> Volunteer | None:
        require_personal(info, self)
        row = await volunteer_of_user_loader(info).load(self.pk)
        return Volunteer.from_row(row) if row else None


@hookimpl
def jingtan_register_domain() -> Domain:
    return Domain(
        name="volunteers",
        query=[VolunteersQuery],
        mutation=[VolunteersMutation],
        types=[Volunteer, VolunteerEvent, VolunteerCourse, VolunteerEventSignup, VolunteerReferral, VolunteerFlag,
               VolunteerPayout],
        nodes={"Volunteer": volunteer_nodes, "VolunteerEvent": event_nodes, "VolunteerCourse": course_nodes},
        extends={"User": [UserVolunteer]},
    )

