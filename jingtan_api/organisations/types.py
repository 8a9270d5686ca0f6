"""GraphQL types of organisations: the public profile, the member list (members of the organisation and
platform admins only), join requests, invites and donations (its admins), inputs, payloads and
``OrganisationErrorCode``."""

from datetime import datetime
from enum import Enum
from typing import Any

import strawberry
from strawberry.types import Info

from jingtan_api.errors import PermissionDenied
from jingtan_api.graphql.mutations import error_code_enum, user_error_type
from jingtan_api.graphql.relay import Connection, Node, UserError, build_connection, page_args
from jingtan_api.organisations import service
from jingtan_api.users.types import User, user_by_id


def _loader(info: Info, name: str, fn):
    ctx = info.context
    return ctx.loader(name, lambda keys: ctx.read(fn, keys))


def organisations_loader(info: Info):
    return _loader(info, "organisations", service.organisations_by_ids)


def member_counts_loader(info: Info):
    return _loader(info, "organisation_member_counts", service.member_counts)


def balances_loader(info: Info):
    return _loader(info, "organisation_balances", service.balances)


def viewer_roles_loader(info: Info):
    """organisation id -> the viewer's role there (None)."""
    ctx = info.context
    user_id = ctx.viewer.user_id

    async def load(ids):
        if user_id is None:
            return {}
        return await ctx.read(service.roles_of_user, user_id, ids)

    return ctx.loader(("organisation_roles", user_id), load)


def forget(loader, key) -> None:
    try:
        loader.clear(key)
    except KeyError:
        pass


def actor_of(info: Info) -> service.Actor:
    viewer = info.context.viewer
    user_id = viewer.require_user()
    if viewer.api_token_id is not None:
        viewer.require_scope("community:write")
    return service.Actor(user_id=user_id, is_platform_admin=viewer.is_admin)


async def viewer_role(info: Info, org_id: int) -> str | None:
    return await viewer_roles_loader(info).load(org_id)


async def require_org_admin(info: Info, org_id: int) -> None:
    info.context.viewer.require_user()
    if not info.context.viewer.is_admin and await viewer_role(info, org_id) != service.ADMIN:
        raise PermissionDenied("Only the organisation's admins can see this / 仅组织管理员可见")


async def require_org_member(info: Info, org_id: int) -> None:
    """The member list: members of this organisation and platform admins (not members of others)."""
    info.context.viewer.require_user()
    if not info.context.viewer.is_admin and await viewer_role(info, org_id) is None:
        raise PermissionDenied("Only the organisation's members can see its members / 仅组织成员可查看成员列表")


@strawberry.enum(description="Kind of organisation. / 组织类型。")
class OrganisationKind(Enum):
    COMPANY = strawberry.enum_value("COMPANY", description="Company. / 企业。")
    SCHOOL = strawberry.enum_value("SCHOOL", description="School or university. / 学校。")
    COMMUNITY = strawberry.enum_value("COMMUNITY", description="Residential community. / 社区。")
    NGO = strawberry.enum_value("NGO", description="Non-governmental organisation. / 公益组织。")
    GOVERNMENT = strawberry.enum_value("GOVERNMENT", description="Government body. / 政府机构。")


@strawberry.enum(description="Lifecycle of an organisation. / 组织状态。")
class OrganisationStatus(Enum):
    PENDING = strawberry.enum_value("PENDING", description="Applied, waiting for review. / 待审核。")
    ACTIVE = strawberry.enum_value("ACTIVE", description="Open. / 已启用。")
    REJECTED = strawberry.enum_value("REJECTED", description="Application rejected. / 已拒绝。")
    CLOSED = strawberry.enum_value("CLOSED", description="Closed; no members or donations. / 已关闭。")


@strawberry.enum(description="Role in an organisation. / 组织角色。")
class OrganisationRole(Enum):
    ADMIN = strawberry.enum_value("ADMIN", description="Manages the organisation. / 管理员。")
    MEMBER = strawberry.enum_value("MEMBER", description="A member. / 成员。")


@strawberry.enum(description="State of a join request. / 入会申请状态。")
class JoinRequestStatus(Enum):
    PENDING = strawberry.enum_value("PENDING", description="Waiting. / 待处理。")
    APPROVED = strawberry.enum_value("APPROVED", description="Approved. / 已通过。")
    DECLINED = strawberry.enum_value("DECLINED", description="Declined. / 已拒绝。")
    WITHDRAWN = strawberry.enum_value("WITHDRAWN", description="Withdrawn by the member. / 已撤回。")


@strawberry.type(description="A member of an organisation. / 组织成员。")
class OrganisationMember(Node):
    role: OrganisationRole = strawberry.field(description="Role. / 角色。")
    joined_at: datetime = strawberry.field(description="When they joined. / 加入时间。")
    _user_id: strawberry.Private[int]

    @classmethod
    def from_row(cls, row: dict) -> "OrganisationMember":
        return cls(pk=row["id"], role=OrganisationRole(row["role"]), joined_at=row["joined_at"], _user_id=row["user_id"])

    @strawberry.field(description="The member. / 成员。")
    async def user(self, info: Info) -> User | None:
        return await user_by_id(info, self._user_id)


@strawberry.type(description="A request to join an organisation. / 入会申请。")
class OrganisationJoinRequest(Node):
    status: JoinRequestStatus = strawberry.field(description="State. / 状态。")
    message: str = strawberry.field(description="What the member wrote. / 留言。")
    created_at: datetime = strawberry.field(description="When it was sent. / 申请时间。")
    decided_at: datetime | None = strawberry.field(description="When it was decided. / 处理时间。")
    _user_id: strawberry.Private[int]
    _organisation_id: strawberry.Private[int]

    @classmethod
    def from_row(cls, row: dict) -> "OrganisationJoinRequest":
        return cls(pk=row["id"], status=JoinRequestStatus(row["status"]), message=row["message"],
                   created_at=row["created_at"], decided_at=row["decided_at"], _user_id=row["user_id"],
                   _organisation_id=row["organisation_id"])

    @strawberry.field(description="Who asked. / 申请人。")
    async def user(self, info: Info) -> User | None:
        return await user_by_id(info, self._user_id)


@strawberry.type(description="An open invite code (the code is shown only once). / 组织邀请。")
class OrganisationInvite(Node):
    created_at: datetime = strawberry.field(description="When it was made. / 创建时间。")
    expires_at: datetime = strawberry.field(description="When it stops working. / 过期时间。")
    max_uses: int = strawberry.field(description="How many may join with it. / 可用次数。")
    uses: int = strawberry.field(description="How many joined with it. / 已用次数。")

    @classmethod
    def from_row(cls, row: dict) -> "OrganisationInvite":
        return cls(pk=row["id"], created_at=row["created_at"], expires_at=row["expires_at"], max_uses=row["max_uses"],
                   uses=row["uses"])


@strawberry.type(description="Points a member gave to an organisation. / 积分捐赠。")
class OrganisationDonation(Node):
    points: int = strawberry.field(description="Points given. / 积分。")
    created_at: datetime = strawberry.field(description="When. / 时间。")
    _user_id: strawberry.Private[int]

    @classmethod
    def from_row(cls, row: dict) -> "OrganisationDonation":
        return cls(pk=row["id"], points=int(row["points"]), created_at=row["created_at"], _user_id=row["user_id"])

    @strawberry.field(description="The donor. / 捐赠人。")
    async def user(self, info: Info) -> User | None:
        return await user_by_id(info, self._user_id)


@strawberry.type(description="A social organisation (社会组织): company, school, community, NGO or government body. / 社会组织。")
class Organisation(Node):
    kind: OrganisationKind = strawberry.field(description="Kind. / 类型。")
    name_zh: str = strawberry.field(description="Chinese name. / 中文名称。")
    name_en: str = strawberry.field(description="English name (may be empty). / 英文名称。")
    description_zh: str = strawberry.field(description="Chinese description. / 中文简介。")
    description_en: str = strawberry.field(description="English description. / 英文简介。")
    city: str = strawberry.field(description="City. / 城市。")
    district: str = strawberry.field(description="District. / 区。")
    website: str = strawberry.field(description="https website (may be empty). / 网址。")
    status: OrganisationStatus = strawberry.field(description="Lifecycle state. / 状态。")
    created_at: datetime = strawberry.field(description="When it was created or applied. / 创建时间。")
    _applicant_user_id: strawberry.Private[int | None]

    @classmethod
    def from_row(cls, row: dict) -> "Organisation":
        return cls(pk=row["id"], kind=OrganisationKind(row["kind"]), name_zh=row["name_zh"], name_en=row["name_en"],
                   description_zh=row["description_zh"], description_en=row["description_en"], city=row["city"],
                   district=row["district"], website=row["website"], status=OrganisationStatus(row["status"]),
                   created_at=row["created_at"], _applicant_user_id=row["applicant_user_id"])

    @strawberry.field(description="Current members. / 成员数。")
    async def member_count(self, info: Info) -> int:
        return await member_counts_loader(info).load(self.pk) or 0

    @strawberry.field(description="Your role here (null: not a member). / 我的角色。")
    async def viewer_role(self, info: Info) -> OrganisationRole | None:
        role = await viewer_role(info, self.pk)
        return OrganisationRole(role) if role else None

    @strawberry.field(description="Points in the organisation's account (its admins and platform admins). / 组织积分余额。")
    async def points_balance(self, info: Info) -> int | None:
        await require_org_admin(info, self.pk)
        return await balances_loader(info).load(self.pk)

    @strawberry.field(description="Current members in order of joining (members of this organisation and platform admins). / 成员列表。")
    async def members(
        self, info: Info, first: int | None = None, after: str | None = None, last: int | None = None,
        before: str | None = None, role: OrganisationRole | None = None,
    ) -> Connection[OrganisationMember]:
        await require_org_member(info, self.pk)
        ctx = info.context
        args = page_args(info, first, after, last, before)
        r = role.value if role else None
        page = await ctx.read(service.members_page, self.pk, args, role=r)
        return build_connection(page, OrganisationMember.from_row, count=lambda: ctx.read(service.members_count, self.pk, role=r))

    @strawberry.field(description="Join requests (its admins). / 入会申请。")
    async def join_requests(
        self, info: Info, first: int | None = None, after: str | None = None, last: int | None = None,
        before: str | None = None, status: JoinRequestStatus = JoinRequestStatus.PENDING,
    ) -> Connection[OrganisationJoinRequest]:
        await require_org_admin(info, self.pk)
        ctx = info.context
        args = page_args(info, first, after, last, before)
        page = await ctx.read(service.join_requests_page, self.pk, args, status=status.value)
        return build_connection(page, OrganisationJoinRequest.from_row,
                                count=lambda: ctx.read(service.join_requests_count, self.pk, status=status.value))

    @strawberry.field(description="Open invites (its admins). / 有效邀请。")
    async def invites(
        self, info: Info, first: int | None = None, after: str | None = None, last: int | None = None,
        before: str | None = None,
    ) -> Connection[OrganisationInvite]:
        await require_org_admin(info, self.pk)
        ctx = info.context
        args = page_args(info, first, after, last, before)
        now = ctx.now()
        page = await ctx.read(service.invites_page, self.pk, args, now=now)
        return build_connection(page, OrganisationInvite.from_row, count=lambda: ctx.read(service.invites_count, self.pk, now=now))

    @strawberry.field(description="Donations, newest first (its admins). / 捐赠记录。")
    async def donations(
        self, info: Info, first: int | None = None, after: str | None = None, last: int | None = None,
        before: str | None = None,
    ) -> Connection[OrganisationDonation]:
        await require_org_admin(info, self.pk)
        ctx = info.context
        args = page_args(info, first, after, last, before)
        page = await ctx.read(service.donations_page, self.pk, args)
        return build_connection(page, OrganisationDonation.from_row, count=lambda: ctx.read(service.donations_count, self.pk))


def visible(info: Info, row: dict, role: str | None) -> bool:
    viewer = info.context.viewer
    return row["status"] in (service.ACTIVE, service.CLOSED) or viewer.is_admin or role is not None or (
        viewer.user_id is not None and row["applicant_user_id"] == viewer.user_id
    )


async def visible_organisations(info: Info, pks: list[int]) -> dict[int, Organisation]:
    rows = await organisations_loader(info).load_many(pks)
    out = {}
    for r in rows:
        if r is not None and visible(info, r, await viewer_role(info, r["id"])):
            out[r["id"]] = Organisation.from_row(r)
    return out


# --- inputs and payloads -----------------------------------------------------------------------------


@strawberry.input(description="Organisation profile (bilingual). / 组织资料。")
class OrganisationProfileInput:
    kind: OrganisationKind = strawberry.field(description="Kind. / 类型。")
    name_zh: str = strawberry.field(description="Chinese name, 1-100 characters. / 中文名称。")
    name_en: str = strawberry.field(default="", description="English name. / 英文名称。")
    description_zh: str = strawberry.field(default="", description="Chinese description, up to 2000 characters. / 中文简介。")
    description_en: str = strawberry.field(default="", description="English description, up to 2000 characters. / 英文简介。")
    city: str = strawberry.field(description="City. / 城市。")
    district: str = strawberry.field(default="", description="District. / 区。")
    website: str = strawberry.field(default="", description="https website. / 网址。")
    registration_number: str = strawberry.field(default="", description="Unified social credit code or registration number. / 统一社会信用代码。")


def profile_dict(p: Any) -> dict[str, Any]:
    out = {}
    for name in service.PROFILE_FIELDS:
        value = getattr(p, name, strawberry.UNSET)
        if value is strawberry.UNSET:
            continue
        out[name] = value.value if isinstance(value, Enum) else value
    return out


@strawberry.input(description="Create an organisation (platform admin). / 创建组织（管理员）。")
class CreateOrganisationInput:
    profile: OrganisationProfileInput = strawberry.field(description="Profile. / 资料。")
    admin_user_id: strawberry.ID | None = strawberry.field(default=None, description="Its first admin. / 首位管理员。")


@strawberry.input(description="Apply to register an organisation; a platform admin reviews it. / 申请注册组织。")
class ApplyForOrganisationInput:
    profile: OrganisationProfileInput = strawberry.field(description="Profile. / 资料。")


@strawberry.input(description="Approve or reject an organisation application (platform admin). / 审核组织申请。")
class ReviewOrganisationApplicationInput:
    organisation_id: strawberry.ID = strawberry.field(description="The pending organisation. / 待审核组织。")
    approve: bool = strawberry.field(description="True to approve. / 是否通过。")
    reason: str = strawberry.field(description="Why, 3-500 characters (audit log). / 原因。")


@strawberry.input(description="Close an organisation (its admins or a platform admin). / 关闭组织。")
class CloseOrganisationInput:
    organisation_id: strawberry.ID = strawberry.field(description="The organisation. / 组织。")
    reason: str = strawberry.field(description="Why, 3-500 characters (audit log). / 原因。")


@strawberry.input(description="Make an invite code (its admins). / 生成组织邀请码。")
class CreateOrganisationInviteInput:
    organisation_id: strawberry.ID = strawberry.field(description="The organisation. / 组织。")
    valid_for_hours: int = strawberry.field(default=168, description="Hours until it expires. / 有效小时数。")
    max_uses: int = strawberry.field(default=1, description="How many may join with it (1-1000). / 可用次数。")


@strawberry.input(description="Change an organisation's profile (its admins; the kind only platform admins); omitted fields stay. / 修改组织资料。")
class UpdateOrganisationInput:
    organisation_id: strawberry.ID = strawberry.field(description="The organisation. / 组织。")
    kind: OrganisationKind | None = strawberry.field(default=strawberry.UNSET, description="Kind (platform admins). / 类型。")
    name_zh: str | None = strawberry.field(default=strawberry.UNSET, description="Chinese name. / 中文名称。")
    name_en: str | None = strawberry.field(default=strawberry.UNSET, description="English name. / 英文名称。")
    description_zh: str | None = strawberry.field(default=strawberry.UNSET, description="Chinese description. / 中文简介。")
    description_en: str | None = strawberry.field(default=strawberry.UNSET, description="English description. / 英文简介。")
    city: str | None = strawberry.field(default=strawberry.UNSET, description="City. / 城市。")
    district: str | None = strawberry.field(default=strawberry.UNSET, description="District. / 区。")
    website: str | None = strawberry.field(default=strawberry.UNSET, description="https website. / 网址。")
    registration_number: str | None = strawberry.field(default=strawberry.UNSET, description="Registration number. / 登记号。")


@strawberry.input(description="Revoke an invite code (its admins). / 撤销组织邀请。")
class RevokeOrganisationInviteInput:
    invite_id: strawberry.ID = strawberry.field(description="The invite. / 邀请。")


@strawberry.input(description="Withdraw your pending join request. / 撤回入会申请。")
class WithdrawJoinRequestInput:
    request_id: strawberry.ID = strawberry.field(description="The request. / 申请。")


@strawberry.input(description="Join an organisation with an invite code. / 凭邀请码加入组织。")
class JoinOrganisationInput:
    code: str = strawberry.field(description="The invite code. / 邀请码。")


@strawberry.input(description="Ask to join an organisation. / 申请加入组织。")
class RequestToJoinOrganisationInput:
    organisation_id: strawberry.ID = strawberry.field(description="The organisation. / 组织。")
    message: str = strawberry.field(default="", description="A note to its admins, up to 500 characters. / 留言。")


@strawberry.input(description="Approve or decline a join request (its admins). / 处理入会申请。")
class DecideJoinRequestInput:
    request_id: strawberry.ID = strawberry.field(description="The request. / 申请。")
    approve: bool = strawberry.field(description="True to approve. / 是否通过。")
    reason: str = strawberry.field(default="", description="Why (optional). / 原因。")


@strawberry.input(description="Leave an organisation. / 退出组织。")
class LeaveOrganisationInput:
    organisation_id: strawberry.ID = strawberry.field(description="The organisation. / 组织。")


@strawberry.input(description="Remove a member (its admins). / 移除组织成员。")
class RemoveOrganisationMemberInput:
    organisation_id: strawberry.ID = strawberry.field(description="The organisation. / 组织。")
    user_id: strawberry.ID = strawberry.field(description="The member. / 成员。")
    reason: str = strawberry.field(default="", description="Why (optional). / 原因。")


@strawberry.input(description="Appoint or step down an admin (its admins). / 设置组织角色。")
class SetOrganisationRoleInput:
    organisation_id: strawberry.ID = strawberry.field(description="The organisation. / 组织。")
    user_id: strawberry.ID = strawberry.field(description="The member. / 成员。")
    role: OrganisationRole = strawberry.field(description="New role. / 新角色。")


@strawberry.input(description="Give points to an organisation (idempotent). / 向组织捐赠积分。")
class DonateToOrganisationInput:
    organisation_id: strawberry.ID = strawberry.field(description="The organisation. / 组织。")
    points: int = strawberry.field(description="Points to give (> 0, at most what you hold). / 积分。")
    idempotency_key: str = strawberry.field(description="Same key, same input: the first result again. / 幂等键。")


OrganisationErrorCode = error_code_enum(
    "OrganisationErrorCode",
    ("APPLICATION_PENDING", "ALREADY_REVIEWED", "INVALID_URL", "INVALID_INVITE", "INVITE_EXPIRED", "INVITE_USED",
     "TOO_MANY_INVITES", "ORGANISATION_CLOSED", "ORGANISATION_NOT_ACTIVE", "ALREADY_ORGANISATION_MEMBER",
     "NOT_ORGANISATION_MEMBER", "JOIN_REQUEST_PENDING", "LAST_ADMIN", "INSUFFICIENT_POINTS",
     "IDEMPOTENCY_KEY_REUSED"),
    description="Codes of the organisation mutations' errors. / 组织错误代码。",
)
OrganisationError = user_error_type("OrganisationError", OrganisationErrorCode,
                                    description="Why an organisation mutation failed. / 组织错误。")


@strawberry.type(description="Result of organisation mutations. / 组织操作结果。")
class OrganisationPayload:
    organisation: Organisation | None = strawberry.field(default=None, description="The organisation. / 组织。")
    user_errors: list[UserError] = strawberry.field(default_factory=list, description="Why it failed. / 错误。")
    errors: list[OrganisationError] = strawberry.field(default_factory=list, description="The same errors with typed codes. / 错误（类型化代码）。")


@strawberry.type(description="Result of `createOrganisationInvite`: the code is shown only here. / 邀请码结果。")
class CreateOrganisationInvitePayload:
    invite: OrganisationInvite | None = strawberry.field(default=None, description="The invite. / 邀请。")
    code: str | None = strawberry.field(default=None, description="The code (shown once). / 邀请码（仅显示一次）。")
    user_errors: list[UserError] = strawberry.field(default_factory=list, description="Why it failed. / 错误。")
    errors: list[OrganisationError] = strawberry.field(default_factory=list, description="The same errors with typed codes. / 错误（类型化代码）。")


@strawberry.type(description="Result of join requests. / 入会申请结果。")
class JoinRequestPayload:
    request: OrganisationJoinRequest | None = strawberry.field(default=None, description="The request. / 申请。")
    user_errors: list[UserError] = strawberry.field(default_factory=list, description="Why it failed. / 错误。")
    errors: list[OrganisationError] = strawberry.field(default_factory=list, description="The same errors with typed codes. / 错误（类型化代码）。")


@strawberry.type(description="Result of `donateToOrganisation`. / 捐赠结果。")
class DonationPayload:
    donation: OrganisationDonation | None = strawberry.field(default=None, description="The donation. / 捐赠。")
    organisation: Organisation | None = strawberry.field(default=None, description="The organisation. / 组织。")
    replayed: bool = strawberry.field(default=False, description="True when the key was seen: nothing moved again. / 是否重放。")
    user_errors: list[UserError] = strawberry.field(default_factory=list, description="Why it failed. / 错误。")
    errors: list[OrganisationError] = strawberry.field(default_factory=list, description="The same errors with typed codes. / 错误（类型化代码）。")
