"""Query and Mutation fields of households, and ``User.household``."""

import strawberry
from strawberry.types import Info

from jingtan_api.errors import Conflict
from jingtan_api.graphql.domain import Domain, hookimpl
from jingtan_api.graphql.mutations import payload_mutation
from jingtan_api.graphql.relay import decode_id
from jingtan_api.households import service
from jingtan_api.households.types import (
    CreateHouseholdInput,
    CreateHouseholdInvitePayload,
    CreateHouseholdInviteInput,
    Household,
    HouseholdInvite,
    HouseholdPayload,
    HouseholdPoolTransfer,
    HouseholdPoolTransferInput,
    HouseholdPoolTransferPayload,
    JoinHouseholdInput,
    RemoveHouseholdMemberInput,
    RenameHouseholdInput,
    RevokeHouseholdInviteInput,
    TransferHouseholdOwnershipInput,
    forget,
    household_of_user_loader,
    households_loader,
    member_counts_loader,
    viewer_household_id,
    visible_households,
)
from jingtan_api.users.types import User, require_personal

SCOPE = "community:write"


def _member(info: Info) -> int:
    viewer = info.context.viewer
    user_id = viewer.require_user()
    if viewer.api_token_id is not None:
        viewer.require_scope(SCOPE)
    return user_id


async def _household(info: Info, household_id: int | None) -> Household | None:
    household_of_user_loader(info).clear_all()
    member_counts_loader(info).clear_all()
    if household_id is None:
        return None
    forget(households_loader(info), household_id)
    row = await households_loader(info).load(household_id)
    return Household.from_row(row) if row else None


async def _my_household_id(info: Info, user_id: int) -> int:
    household_id = await info.context.read(service.household_of, user_id)
    if household_id is None:
        raise Conflict("You are not in a household / 您未加入家庭", code="NOT_HOUSEHOLD_MEMBER")
    return household_id


@strawberry.type
class HouseholdsQuery:
    @strawberry.field(description="Your household (null when you are in none). / 我的家庭。")
    async def my_household(self, info: Info) -> Household | None:
        info.context.viewer.require_user()
        household_id = await viewer_household_id(info)
        if household_id is None:
            return None
        return (await visible_households(info, [household_id])).get(household_id)


@strawberry.type
class HouseholdsMutation:
    @payload_mutation(description="Create a household and become its owner (one household per member). / 创建家庭。")
    async def create_household(self, info: Info, input: CreateHouseholdInput) -> HouseholdPayload:
        ctx = info.context
        user_id = _member(info)
        household_id = await ctx.db.write(
            lambda conn: service.create_household(conn, user_id=user_id, name=input.name, now=ctx.now())
        )
        return HouseholdPayload(household=await _household(info, household_id))

    @payload_mutation(description="Rename your household (owner). / 修改家庭名称。")
    async def rename_household(self, info: Info, input: RenameHouseholdInput) -> HouseholdPayload:
        ctx = info.context
        user_id = _member(info)
        household_id = await _my_household_id(info, user_id)
        await ctx.db.write(lambda conn: service.rename_household(
            conn, actor_user_id=user_id, household_id=household_id, name=input.name, now=ctx.now()))
        return HouseholdPayload(household=await _household(info, household_id))

    @payload_mutation(description="Make a single-use, expiring invite code for your household (owner). / 生成家庭邀请码。")
    async def create_household_invite(self, info: Info, input: CreateHouseholdInviteInput) -> CreateHouseholdInvitePayload:
        ctx = info.context
        user_id = _member(info)
        valid_for = service.validate_ttl(input.valid_for_hours, max_hours=ctx.settings.community.household_invite_max_hours)
        household_id = await _my_household_id(info, user_id)
        invite_id, code = await ctx.db.write(lambda conn: service.create_invite(
            conn, actor_user_id=user_id, household_id=household_id, valid_for=valid_for, now=ctx.now()))
        now = ctx.now()
        return CreateHouseholdInvitePayload(
            invite=HouseholdInvite(pk=invite_id, created_at=now, expires_at=now + valid_for), code=code
        )

    @payload_mutation(description="Revoke an unused invite (owner). / 撤销家庭邀请。")
    async def revoke_household_invite(self, info: Info, input: RevokeHouseholdInviteInput) -> HouseholdPayload:
        ctx = info.context
        user_id = _member(info)
        invite_id = decode_id(input.invite_id, "HouseholdInvite", field="inviteId")
        household_id = await ctx.db.write(
            lambda conn: service.revoke_invite(conn, actor_user_id=user_id, invite_id=invite_id, now=ctx.now()))
        return HouseholdPayload(household=await _household(info, household_id))

    @payload_mutation(description="Join a household with an invite code (not while in another). / 凭邀请码加入家庭。")
    async def join_household(self, info: Info, input: JoinHouseholdInput) -> HouseholdPayload:
        ctx = info.context
        user_id = _member(info)
        household_id = await ctx.db.write(
            lambda conn: service.join_by_invite(conn, user_id=user_id, code=input.code, now=ctx.now()))
        return HouseholdPayload(household=await _household(info, household_id))

    @payload_mutation(description="Leave your household (the owner only as its last member; transfer first). / 退出家庭。")
    async def leave_household(self, info: Info) -> HouseholdPayload:
        ctx = info.context
        user_id = _member(info)
        await ctx.db.write(lambda conn: service.leave_household(conn, user_id=user_id, now=ctx.now()))
        await _household(info, None)
        return HouseholdPayload(household=None)

    @payload_mutation(description="Remove a member from your household (owner; not the owner). / 移除家庭成员。")
    async def remove_household_member(self, info: Info, input: RemoveHouseholdMemberInput) -> HouseholdPayload:
        ctx = info.context
        user_id = _member(info)
        target = decode_id(input.user_id, "User", field="userId")
        household_id = await _my_household_id(info, user_id)
        await ctx.db.write(lambda conn: service.remove_member(
            conn, actor_user_id=user_id, household_id=household_id, user_id=target, now=ctx.now()))
        return HouseholdPayload(household=await _household(info, household_id))

    @payload_mutation(description="Hand your household to another member (owner). / 转让户主。")
    async def transfer_household_ownership(self, info: Info, input: TransferHouseholdOwnershipInput) -> HouseholdPayload:
        ctx = info.context
        user_id = _member(info)
        target = decode_id(input.user_id, "User", field="userId")
        household_id = await _my_household_id(info, user_id)
        await ctx.db.write(lambda conn: service.transfer_ownership(
            conn, actor_user_id=user_id, household_id=household_id, new_owner_user_id=target, now=ctx.now()))
        return HouseholdPayload(household=await _household(info, household_id))

    @payload_mutation(description="Open the household's shared points pool (owner). / 开通家庭积分池。")
    async def open_household_pool(self, info: Info) -> HouseholdPayload:
        ctx = info.context
        user_id = _member(info)
        household_id = await _my_household_id(info, user_id)
        await ctx.db.write(lambda conn: service.open_pool(conn, actor_user_id=user_id, household_id=household_id, now=ctx.now()))
        return HouseholdPayload(household=await _household(info, household_id))

    @payload_mutation(description="Move points from your account into your household's pool (idempotent). / 转入家庭积分池。")
    async def transfer_to_household_pool(self, info: Info, input: HouseholdPoolTransferInput) -> HouseholdPoolTransferPayload:
        ctx = info.context
        user_id = _member(info)
        s = ctx.settings
        result = await ctx.db.write(lambda conn: service.transfer_to_pool(
            conn, user_id=user_id, points=input.points, idempotency_key=input.idempotency_key,
            max_amount=s.points.max_single_amount, lot_expiry_days=s.points.lot_expiry_days, now=ctx.now()))
        return await _transfer_payload(info, result)

    @payload_mutation(description="Take points from the pool into your account to redeem them (owner; idempotent). / 户主从积分池转出。")
    async def withdraw_from_household_pool(self, info: Info, input: HouseholdPoolTransferInput) -> HouseholdPoolTransferPayload:
        ctx = info.context
        user_id = _member(info)
        s = ctx.settings
        result = await ctx.db.write(lambda conn: service.withdraw_from_pool(
            conn, user_id=user_id, points=input.points, idempotency_key=input.idempotency_key,
            max_amount=s.points.max_single_amount, lot_expiry_days=s.points.lot_expiry_days,
            withdrawal_expiry_days=s.community.pool_withdrawal_expiry_days, now=ctx.now()))
        return await _transfer_payload(info, result)


async def _transfer_payload(info: Info, result: service.PoolTransferResult) -> HouseholdPoolTransferPayload:
    row = (await info.context.read(service.pool_transfers_by_ids, [result.transfer_id]))[result.transfer_id]
    return HouseholdPoolTransferPayload(
        transfer=HouseholdPoolTransfer.from_row(row), household=await _household(info, result.household_id),
        replayed=result.replayed,
    )


@strawberry.type
class UserHousehold:
    """Fields of ``User`` from households."""

    @strawberry.field(description="The household the user is in (only the user and admins). / 所在家庭。")
    async def household(self: User, info: Info) -> Household | None:
        require_personal(info, self)
        household_id = await household_of_user_loader(info).load(self.pk)
        if household_id is None:
            return None
        row = await households_loader(info).load(household_id)
        return Household.from_row(row) if row else None


@hookimpl
def jingtan_register_domain() -> Domain:
    return Domain(
        name="households",
        query=[HouseholdsQuery],
        mutation=[HouseholdsMutation],
        types=[Household],
        nodes={"Household": visible_households},
        extends={"User": [UserHousehold]},
    )
