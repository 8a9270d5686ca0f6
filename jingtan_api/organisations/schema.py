"""Query and Mutation fields of organisations, and ``User.organisations``."""

import strawberry
from strawberry.types import Info

from jingtan_api.auth.permissions import ADMIN
from jingtan_api.graphql.domain import Domain, hookimpl
from jingtan_api.households.service import validate_ttl
from jingtan_api.graphql.mutations import payload_mutation
from jingtan_api.graphql.relay import Connection, build_connection, decode_id, page_args
from jingtan_api.organisations import service
from jingtan_api.organisations.types import (
    ApplyForOrganisationInput,
    CloseOrganisationInput,
    CreateOrganisationInput,
    CreateOrganisationInviteInput,
    CreateOrganisationInvitePayload,
    DecideJoinRequestInput,
    DonateToOrganisationInput,
    DonationPayload,
    JoinOrganisationInput,
    JoinRequestPayload,
    LeaveOrganisationInput,
    Organisation,
    OrganisationDonation,
    OrganisationInvite,
    OrganisationJoinRequest,
    OrganisationKind,
    OrganisationPayload,
    OrganisationStatus,
    RemoveOrganisationMemberInput,
    RequestToJoinOrganisationInput,
    ReviewOrganisationApplicationInput,
    RevokeOrganisationInviteInput,
    SetOrganisationRoleInput,
    UpdateOrganisationInput,
    WithdrawJoinRequestInput,
    actor_of,
    balances_loader,
    forget,
    member_counts_loader,
    organisations_loader,
    profile_dict,
    viewer_roles_loader,
    visible_organisations,
)
from jingtan_api.users.types import User, require_personal


async def _org(info: Info, org_id: int) -> Organisation | None:
    for loader in (organisations_loader(info), member_counts_loader(info), balances_loader(info)):
        forget(loader, org_id)
    viewer_roles_loader(info).clear_all()
    row = await organisations_loader(info).load(org_id)
    return Organisation.from_row(row) if row else None


def _org_id(gid: strawberry.ID) -> int:
    return decode_id(gid, "Organisation", field="organisationId")


@strawberry.type
class OrganisationsQuery:
    @strawberry.field(description="One organisation; null when unknown or not visible. / 单个组织。")
    async def organisation(self, info: Info, id: strawberry.ID) -> Organisation | None:
        pk = decode_id(id, "Organisation")
        return (await visible_organisations(info, [pk])).get(pk)

    @strawberry.field(description="Organisations by id; status other than ACTIVE is for platform admins. / 组织列表。")
    async def organisations(
        self, info: Info, first: int | None = None, after: str | None = None, last: int | None = None,
        before: str | None = None, kind: OrganisationKind | None = None, city: str | None = None,
        status: OrganisationStatus = OrganisationStatus.ACTIVE,
    ) -> Connection[Organisation]:
        ctx = info.context
        if status != OrganisationStatus.ACTIVE:
            ctx.viewer.require_role(ADMIN, scope="users:read")
        args = page_args(info, first, after, last, before)
        filters = {"status": status.value, "kind": kind.value if kind else None, "city": city}
        page = await ctx.read(service.organisations_page, args, **filters)
        return build_connection(page, Organisation.from_row, count=lambda: ctx.read(service.organisations_count, **filters))


@strawberry.type
class OrganisationsMutation:
    @payload_mutation(description="Create an organisation with its account (platform admin; audit-logged). / 创建组织。")
    async def create_organisation(self, info: Info, input: CreateOrganisationInput) -> OrganisationPayload:
        ctx = info.context
        actor = ctx.viewer.require_role(ADMIN, scope="users:write")
        admin_id = None if input.admin_user_id is None else decode_id(input.admin_user_id, "User", field="adminUserId")
        org_id = await ctx.db.write(lambda conn: service.create_organisation(
            conn, actor_user_id=actor, profile=profile_dict(input.profile), admin_user_id=admin_id,
            request_id=ctx.request_id, now=ctx.now()))
        return OrganisationPayload(organisation=await _org(info, org_id))

    @payload_mutation(description="Apply to register an organisation; you become its admin when approved. / 申请注册组织。")
    async def apply_for_organisation(self, info: Info, input: ApplyForOrganisationInput) -> OrganisationPayload:
        ctx = info.context
        actor = actor_of(info)
        org_id = await ctx.db.write(lambda conn: service.apply_for_organisation(
            conn, user_id=actor.user_id, profile=profile_dict(input.profile), now=ctx.now()))
        return OrganisationPayload(organisation=await _org(info, org_id))

    @payload_mutation(description="Approve or reject an organisation application (platform admin). / 审核组织申请。")
    async def review_organisation_application(self, info: Info, input: ReviewOrganisationApplicationInput) -> OrganisationPayload:
        ctx = info.context
        actor = ctx.viewer.require_role(ADMIN, scope="users:write")
        org_id = _org_id(input.organisation_id)
        await ctx.db.write(lambda conn: service.review_application(
            conn, actor_user_id=actor, org_id=org_id, approve=input.approve, reason=input.reason,
            request_id=ctx.request_id, now=ctx.now()))
        return OrganisationPayload(organisation=await _org(info, org_id))

    @payload_mutation(description="Close an organisation (its admins or a platform admin; audit-logged). / 关闭组织。")
    async def close_organisation(self, info: Info, input: CloseOrganisationInput) -> OrganisationPayload:
        ctx = info.context
        actor = actor_of(info)
        org_id = _org_id(input.organisation_id)
        await ctx.db.write(lambda conn: service.close_organisation(
            conn, actor=actor, org_id=org_id, reason=input.reason, request_id=ctx.request_id, now=ctx.now()))
        return OrganisationPayload(organisation=await _org(info, org_id))

    @payload_mutation(description="Change the bilingual profile (its admins; the kind only platform admins). / 修改组织资料。")
    async def update_organisation(self, info: Info, input: UpdateOrganisationInput) -> OrganisationPayload:
        ctx = info.context
        actor = actor_of(info)
        org_id = _org_id(input.organisation_id)
        changes = profile_dict(input)
        await ctx.db.write(lambda conn: service.update_profile(conn, actor=actor, org_id=org_id, changes=changes, now=ctx.now()))
        return OrganisationPayload(organisation=await _org(info, org_id))

    @payload_mutation(description="Revoke an invite code (its admins). / 撤销组织邀请。")
    async def revoke_organisation_invite(self, info: Info, input: RevokeOrganisationInviteInput) -> OrganisationPayload:
        ctx = info.context
        actor = actor_of(info)
        invite_id = decode_id(input.invite_id, "OrganisationInvite", field="inviteId")
        org_id = await ctx.db.write(lambda conn: service.revoke_invite(conn, actor=actor, invite_id=invite_id, now=ctx.now()))
        return OrganisationPayload(organisation=await _org(info, org_id))

    @payload_mutation(description="Withdraw your pending join request. / 撤回入会申请。")
    async def withdraw_join_request(self, info: Info, input: WithdrawJoinRequestInput) -> JoinRequestPayload:
        ctx = info.context
        actor = actor_of(info)
        request_id = decode_id(input.request_id, "OrganisationJoinRequest", field="requestId")
        await ctx.db.write(lambda conn: service.withdraw_join_request(conn, user_id=actor.user_id, request_id=request_id,
                                                                      now=ctx.now()))
        return await _request_payload(info, request_id)

    @payload_mutation(description="Make an invite code (its admins). / 生成组织邀请码。")
    async def create_organisation_invite(self, info: Info, input: CreateOrganisationInviteInput) -> CreateOrganisationInvitePayload:
        ctx = info.context
        actor = actor_of(info)
        org_id = _org_id(input.organisation_id)
        valid_for = validate_ttl(input.valid_for_hours, max_hours=ctx.settings.community.organisation_invite_max_hours)
        invite_id, code = await ctx.db.write(lambda conn: service.create_invite(
            conn, actor=actor, org_id=org_id, valid_for=valid_for, max_uses=input.max_uses, now=ctx.now()))
        now = ctx.now()
        return CreateOrganisationInvitePayload(
            invite=OrganisationInvite(pk=invite_id, created_at=now, expires_at=now + valid_for, max_uses=input.max_uses, uses=0),
            code=code,
        )

    @payload_mutation(description="Join an organisation with an invite code. / 凭邀请码加入组织。")
    async def join_organisation(self, info: Info, input: JoinOrganisationInput) -> OrganisationPayload:
        ctx = info.context
        actor = actor_of(info)
        org_id = await ctx.db.write(lambda conn: service.join_by_invite(conn, user_id=actor.user_id, code=input.code, now=ctx.now()))
        return OrganisationPayload(organisation=await _org(info, org_id))

    @payload_mutation(description="Ask to join an organisation; its admins decide. / 申请加入组织。")
    async def request_to_join_organisation(self, info: Info, input: RequestToJoinOrganisationInput) -> JoinRequestPayload:
        ctx = info.context
        actor = actor_of(info)
        org_id = _org_id(input.organisation_id)
        request_id = await ctx.db.write(lambda conn: service.request_to_join(
            conn, user_id=actor.user_id, org_id=org_id, message=input.message, now=ctx.now()))
        return await _request_payload(info, request_id)

    @payload_mutation(description="Approve or decline a join request (its admins). / 处理入会申请。")
    async def decide_join_request(self, info: Info, input: DecideJoinRequestInput) -> JoinRequestPayload:
        ctx = info.context
        actor = actor_of(info)
        request_id = decode_id(input.request_id, "OrganisationJoinRequest", field="requestId")
        await ctx.db.write(lambda conn: service.decide_join_request(
            conn, actor=actor, request_id=request_id, approve=input.approve, reason=input.reason, now=ctx.now()))
        return await _request_payload(info, request_id)

    @payload_mutation(description="Leave an organisation (not as its last admin). / 退出组织。")
    async def leave_organisation(self, info: Info, input: LeaveOrganisationInput) -> OrganisationPayload:
        ctx = info.context
        actor = actor_of(info)
        org_id = _org_id(input.organisation_id)
        await ctx.db.write(lambda conn: service.leave_organisation(conn, user_id=actor.user_id, org_id=org_id, now=ctx.now()))
        return OrganisationPayload(organisation=await _org(info, org_id))

    @payload_mutation(description="Remove a member (its admins; never the last admin). / 移除组织成员。")
    async def remove_organisation_member(self, info: Info, input: RemoveOrganisationMemberInput) -> OrganisationPayload:
        ctx = info.context
        actor = actor_of(info)
        org_id = _org_id(input.organisation_id)
        user_id = decode_id(input.user_id, "User", field="userId")
        await ctx.db.write(lambda conn: service.remove_member(
            conn, actor=actor, org_id=org_id, user_id=user_id, reason=input.reason, now=ctx.now()))
        return OrganisationPayload(organisation=await _org(info, org_id))

    @payload_mutation(description="Appoint or step down an organisation admin (its admins). / 设置组织角色。")
    async def set_organisation_role(self, info: Info, input: SetOrganisationRoleInput) -> OrganisationPayload:
        ctx = info.context
        actor = actor_of(info)
        org_id = _org_id(input.organisation_id)
        user_id = decode_id(input.user_id, "User", field="userId")
        await ctx.db.write(lambda conn: service.set_member_role(
            conn, actor=actor, org_id=org_id, user_id=user_id, role=input.role.value, now=ctx.now()))
        return OrganisationPayload(organisation=await _org(info, org_id))

    @payload_mutation(description="Give points to an open organisation (idempotent; never more than you hold). / 向组织捐赠积分。")
    async def donate_to_organisation(self, info: Info, input: DonateToOrganisationInput) -> DonationPayload:
        ctx = info.context
        actor = actor_of(info)
        org_id = _org_id(input.organisation_id)
        s = ctx.settings
        result = await ctx.db.write(lambda conn: service.donate(
            conn, user_id=actor.user_id, org_id=org_id, points=input.points, idempotency_key=input.idempotency_key,
            max_amount=s.points.max_single_amount, lot_expiry_days=s.points.lot_expiry_days, now=ctx.now()))
        row = (await ctx.read(service.donations_by_ids, [result.donation_id]))[result.donation_id]
        return DonationPayload(donation=OrganisationDonation.from_row(row), organisation=await _org(info, row["organisation_id"]),
                               replayed=result.replayed)


async def _request_payload(info: Info, request_id: int) -> JoinRequestPayload:
    row = (await info.context.read(service.join_requests_by_ids, [request_id]))[request_id]
    return JoinRequestPayload(request=OrganisationJoinRequest.from_row(row))


@strawberry.type
class UserOrganisations:
    """Fields of ``User`` from organisations."""

    @strawberry.field(description="Organisations the user is a member of (only the user and admins). / 所属组织。")
    async def organisations(self: User, info: Info) -> list[Organisation]:
        require_personal(info, self)
        ids = await info.context.read(service.organisation_ids_of_user, self.pk)
        rows = await organisations_loader(info).load_many(ids)
        return [Organisation.from_row(r) for r in rows if r is not None]


@hookimpl
def jingtan_register_domain() -> Domain:
    return Domain(
        name="organisations",
        query=[OrganisationsQuery],
        mutation=[OrganisationsMutation],
        types=[Organisation],
        nodes={"Organisation": visible_organisations},
        extends={"User": [UserOrganisations]},
    )
