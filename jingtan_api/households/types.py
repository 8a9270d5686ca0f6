"""GraphQL types of households: the household (its members, invites and pool are for its members and
platform admins), inputs, payloads and ``HouseholdErrorCode``."""

from datetime import datetime
from enum import Enum

import strawberry
from strawberry.types import Info

from jingtan_api.accounts import service as ledger
from jingtan_api.errors import PermissionDenied
from jingtan_api.graphql.mutations import error_code_enum, user_error_type
from jingtan_api.graphql.relay import Connection, Node, UserError, build_connection, page_args
from jingtan_api.households import service
from jingtan_api.users.types import User, user_by_id


def households_loader(info: Info):
    ctx = info.context
    return ctx.loader("households", lambda ids: ctx.read(service.households_by_ids, ids))


def household_of_user_loader(info: Info):
    """user id -> the household id the user is in now (None)."""
    ctx = info.context
    return ctx.loader("household_of_user", lambda ids: ctx.read(service.households_of_users, ids))


def member_counts_loader(info: Info):
    ctx = info.context
    return ctx.loader("household_member_counts", lambda ids: ctx.read(service.member_counts, ids))


def forget(loader, key) -> None:
    try:
        loader.clear(key)
    except KeyError:
        pass


async def viewer_household_id(info: Info) -> int | None:
    user_id = info.context.viewer.user_id
    return None if user_id is None else await household_of_user_loader(info).load(user_id)


async def can_see(info: Info, household_id: int) -> bool:
    """A household is visible to its current members and to platform admins."""
    viewer = info.context.viewer
    if viewer.user_id is None:
        return False
    return viewer.is_admin or await viewer_household_id(info) == household_id


async def require_member(info: Info, household_id: int) -> None:
    info.context.viewer.require_user()
    if not await can_see(info, household_id):
        raise PermissionDenied("Only the household's members can see this / 仅家庭成员可见")


@strawberry.enum(description="Lifecycle of a household. / 家庭状态。")
class HouseholdStatus(Enum):
    ACTIVE = strawberry.enum_value("ACTIVE", description="Has members. / 正常。")
    DISSOLVED = strawberry.enum_value("DISSOLVED", description="Its last member left. / 已解散。")


@strawberry.enum(description="Role in a household. / 家庭角色。")
class HouseholdRole(Enum):
    OWNER = strawberry.enum_value("OWNER", description="Manages the household and spends its pool. / 户主。")
    MEMBER = strawberry.enum_value("MEMBER", description="A member. / 成员。")


@strawberry.enum(description="Direction of a household pool transfer. / 积分池转账方向。")
class PoolTransferDirection(Enum):
    TO_POOL = strawberry.enum_value("TO_POOL", description="A member's points into the pool. / 转入积分池。")
    FROM_POOL = strawberry.enum_value("FROM_POOL", description="The owner took points out to redeem. / 户主转出。")


@strawberry.type(description="One stay of a member in a household. / 家庭成员。")
class HouseholdMember(Node):
    role: HouseholdRole = strawberry.field(description="Role (now, or when the stay ended). / 角色。")
    joined_at: datetime = strawberry.field(description="When the member joined. / 加入时间。")
    left_at: datetime | None = strawberry.field(description="When the member left (null: still in). / 退出时间。")
    _user_id: strawberry.Private[int]

    @classmethod
    def from_row(cls, row: dict) -> "HouseholdMember":
        return cls(pk=row["id"], role=HouseholdRole(row["role"]), joined_at=row["joined_at"], left_at=row["left_at"],
                   _user_id=row["user_id"])

    @strawberry.field(description="The member. / 成员。")
    async def user(self, info: Info) -> User | None:
        return await user_by_id(info, self._user_id)


@strawberry.type(description="An open single-use invite (the code itself is shown only once). / 家庭邀请。")
class HouseholdInvite(Node):
    created_at: datetime = strawberry.field(description="When it was made. / 创建时间。")
    expires_at: datetime = strawberry.field(description="When it stops working. / 过期时间。")

    @classmethod
    def from_row(cls, row: dict) -> "HouseholdInvite":
        return cls(pk=row["id"], created_at=row["created_at"], expires_at=row["expires_at"])


@strawberry.type(description="A move of points between a member and the household pool. / 积分池转账。")
class HouseholdPoolTransfer(Node):
    direction: PoolTransferDirection = strawberry.field(description="Into or out of the pool. / 方向。")
    points: int = strawberry.field(description="Points moved. / 积分。")
    created_at: datetime = strawberry.field(description="When. / 时间。")
    _user_id: strawberry.Private[int]

    @classmethod
    def from_row(cls, row: dict) -> "HouseholdPoolTransfer":
        return cls(pk=row["id"], direction=PoolTransferDirection(row["direction"]), points=int(row["points"]),
                   created_at=row["created_at"], _user_id=row["user_id"])

    @strawberry.field(description="Who moved the points. / 操作成员。")
    async def user(self, info: Info) -> User | None:
        return await user_by_id(info, self._user_id)


@strawberry.type(description="A household (家庭): members living together. / 家庭。")
class Household(Node):
    name: str = strawberry.field(description="Name chosen by the owner. / 家庭名称。")
    status: HouseholdStatus = strawberry.field(description="Lifecycle state. / 状态。")
    created_at: datetime = strawberry.field(description="When it was created. / 创建时间。")
    has_pool: bool = strawberry.field(description="Whether the shared points pool is open. / 是否开通积分池。")
    _owner_user_id: strawberry.Private[int | None]
    _pool_account_id: strawberry.Private[int | None]

    @classmethod
    def from_row(cls, row: dict) -> "Household":
        return cls(pk=row["id"], name=row["name"], status=HouseholdStatus(row["status"]), created_at=row["created_at"],
                   has_pool=row["pool_account_id"] is not None, _owner_user_id=row["owner_user_id"],
                   _pool_account_id=row["pool_account_id"])

    @strawberry.field(description="The owner (户主). / 户主。")
    async def owner(self, info: Info) -> User | None:
        return await user_by_id(info, self._owner_user_id)

    @strawberry.field(description="Current members. / 当前成员数。")
    async def member_count(self, info: Info) -> int:
        return await member_counts_loader(info).load(self.pk) or 0

    @strawberry.field(description="Members, in order of joining; includeFormer adds those who left (members and admins). / 成员。")
    async def members(
        self, info: Info, first: int | None = None, after: str | None = None, last: int | None = None,
        before: str | None = None, include_former: bool = False,
    ) -> Connection[HouseholdMember]:
        await require_member(info, self.pk)
        ctx = info.context
        args = page_args(info, first, after, last, before)
        page = await ctx.read(service.members_page, self.pk, args, current_only=not include_former)
        return build_connection(page, HouseholdMember.from_row,
                                count=lambda: ctx.read(service.members_count, self.pk, current_only=not include_former))

    @strawberry.field(description="Open invites (the owner and admins). / 有效邀请。")
    async def invites(
        self, info: Info, first: int | None = None, after: str | None = None, last: int | None = None,
        before: str | None = None,
    ) -> Connection[HouseholdInvite]:
        ctx = info.context
        await require_member(info, self.pk)
        if not ctx.viewer.is_admin and ctx.viewer.user_id != self._owner_user_id:
            raise PermissionDenied("Only the owner sees the invites / 仅户主可见")
        args = page_args(info, first, after, last, before)
        now = ctx.now()
        page = await ctx.read(service.invites_page, self.pk, args, now=now)
        return build_connection(page, HouseholdInvite.from_row, count=lambda: ctx.read(service.invites_count, self.pk, now=now))

    @strawberry.field(description="Points in the shared pool (members; null when no pool). / 积分池余额。")
    async def pool_balance(self, info: Info) -> int | None:
        await require_member(info, self.pk)
        if self._pool_account_id is None:
            return None
        accounts = await info.context.read(ledger.accounts_by_ids, [self._pool_account_id])
        return int(accounts[self._pool_account_id]["balance"])

    @strawberry.field(description="Moves into and out of the pool, newest first (members). / 积分池记录。")
    async def pool_transfers(
        self, info: Info, first: int | None = None, after: str | None = None, last: int | None = None,
        before: str | None = None,
    ) -> Connection[HouseholdPoolTransfer]:
        await require_member(info, self.pk)
        ctx = info.context
        args = page_args(info, first, after, last, before)
        page = await ctx.read(service.pool_transfers_page, self.pk, args)
        return build_connection(page, HouseholdPoolTransfer.from_row,
                                count=lambda: ctx.read(service.pool_transfers_count, self.pk))


async def visible_households(info: Info, pks: list[int]) -> dict[int, Household]:
    rows = await households_loader(info).load_many(pks)
    out = {}
    for r in rows:
        if r is not None and await can_see(info, r["id"]):
            out[r["id"]] = Household.from_row(r)
    return out


# --- inputs and payloads -----------------------------------------------------------------------------


@strawberry.input(description="Create a household; you become its owner. / 创建家庭。")
class CreateHouseholdInput:
    name: str = strawberry.field(description="Name, 1-60 characters. / 名称。")


@strawberry.input(description="Rename your household (owner). / 修改家庭名称。")
class RenameHouseholdInput:
    name: str = strawberry.field(description="Name, 1-60 characters. / 名称。")


@strawberry.input(description="Make a single-use invite code (owner). / 生成邀请码。")
class CreateHouseholdInviteInput:
    valid_for_hours: int = strawberry.field(default=72, description="Hours until it expires (1 to [community] household_invite_max_hours). / 有效小时数。")


@strawberry.input(description="Revoke an unused invite (owner). / 撤销邀请。")
class RevokeHouseholdInviteInput:
    invite_id: strawberry.ID = strawberry.field(description="The invite. / 邀请。")


@strawberry.input(description="Join a household with an invite code. / 凭邀请码加入家庭。")
class JoinHouseholdInput:
    code: str = strawberry.field(description="The invite code, e.g. HK7F-9Q2M-XW3T. / 邀请码。")


@strawberry.input(description="Remove a member (owner). / 移除成员。")
class RemoveHouseholdMemberInput:
    user_id: strawberry.ID = strawberry.field(description="The member to remove. / 成员。")


@strawberry.input(description="Hand the household to another member (owner). / 转让户主。")
class TransferHouseholdOwnershipInput:
    user_id: strawberry.ID = strawberry.field(description="The new owner, a current member. / 新户主。")


@strawberry.input(description="Move points between your account and the household pool. / 积分池转账。")
class HouseholdPoolTransferInput:
    points: int = strawberry.field(description="Points to move (> 0). / 积分。")
    idempotency_key: str = strawberry.field(description="Same key, same input: the first result again. / 幂等键。")


HouseholdErrorCode = error_code_enum(
    "HouseholdErrorCode",
    ("INVALID_INVITE", "INVITE_EXPIRED", "INVITE_USED", "TOO_MANY_INVITES", "ALREADY_IN_HOUSEHOLD",
     "NOT_HOUSEHOLD_MEMBER", "HOUSEHOLD_FULL", "HOUSEHOLD_DISSOLVED", "OWNER_MUST_TRANSFER", "CANNOT_REMOVE_OWNER",
     "POOL_ALREADY_OPEN", "POOL_NOT_OPEN", "POOL_NOT_EMPTY", "INSUFFICIENT_POINTS", "IDEMPOTENCY_KEY_REUSED",
     "PAGE_SIZE_EXCEEDED"),
    description="Codes of the household mutations' errors. / 家庭错误代码。",
)
HouseholdError = user_error_type("HouseholdError", HouseholdErrorCode, description="Why a household mutation failed. / 家庭错误。")


@strawberry.type(description="Result of household mutations. / 家庭操作结果。")
class HouseholdPayload:
    household: Household | None = strawberry.field(default=None, description="The household (null after leaving). / 家庭。")
    user_errors: list[UserError] = strawberry.field(default_factory=list, description="Why it failed. / 错误。")
    errors: list[HouseholdError] = strawberry.field(default_factory=list, description="The same errors with typed codes. / 错误（类型化代码）。")


@strawberry.type(description="Result of `createHouseholdInvite`: the code is shown only here. / 邀请码结果。")
class CreateHouseholdInvitePayload:
    invite: HouseholdInvite | None = strawberry.field(default=None, description="The invite. / 邀请。")
    code: str | None = strawberry.field(default=None, description="The code to give to the invitee (shown once). / 邀请码（仅显示一次）。")
    user_errors: list[UserError] = strawberry.field(default_factory=list, description="Why it failed. / 错误。")
    errors: list[HouseholdError] = strawberry.field(default_factory=list, description="The same errors with typed codes. / 错误（类型化代码）。")


@strawberry.type(description="Result of pool transfers. / 积分池转账结果。")
class HouseholdPoolTransferPayload:
    transfer: HouseholdPoolTransfer | None = strawberry.field(default=None, description="The transfer. / 转账。")
    household: Household | None = strawberry.field(default=None, description="The household. / 家庭。")
    replayed: bool = strawberry.field(default=False, description="True when the key was seen: nothing moved again. / 是否重放。")
    user_errors: list[UserError] = strawberry.field(default_factory=list, description="Why it failed. / 错误。")
    errors: list[HouseholdError] = strawberry.field(default_factory=list, description="The same errors with typed codes. / 错误（类型化代码）。")
