"""Query and Mutation fields of merchants, and ``User.merchant``."""

import strawberry
from strawberry.types import Info

from jingtan_api.auth.permissions import ADMIN
from jingtan_api.errors import PermissionDenied
from jingtan_api.graphql.domain import Domain, hookimpl
from jingtan_api.graphql.mutations import payload_mutation
from jingtan_api.graphql.relay import Connection, build_connection, decode_id, page_args
from jingtan_api.merchants import loaders, service
from jingtan_api.merchants.types import (
    AddMerchantStaffInput,
    AddMerchantStaffPayload,
    ApplyForMerchantInput,
    CreateMerchantInput,
    Merchant,
    MerchantCategory,
    MerchantPayload,
    MerchantStatus,
    ReviewMerchantApplicationInput,
    SetMerchantStatusInput,
    UpdateMerchantInput,
    actor_of,
    decode_opt,
    merchant_of_user,
    profile_dict,
    visible_merchants,
)
from jingtan_api.users.types import User, require_personal, users_loader


async def _merchant_payload(info: Info, merchant_id: int) -> MerchantPayload:
    loaders.forget(loaders.merchants(info), merchant_id)
    loaders.staff_merchant(info).clear_all()
    row = await loaders.merchants(info).load(merchant_id)
    return MerchantPayload(merchant=Merchant.from_row(row))


@strawberry.type
class MerchantsQuery:
    @strawberry.field(description="One merchant; null when unknown or not visible to you. / 单个商户。")
    async def merchant(self, info: Info, id: strawberry.ID) -> Merchant | None:
        pk = decode_id(id, "Merchant")
        return (await visible_merchants(info, [pk])).get(pk)

    @strawberry.field(description="Merchants by id; status other than ACTIVE is for admins (e.g. PENDING applications). / 商户列表。")
    async def merchants(
        self,
        info: Info,
        first: int | None = None,
        after: str | None = None,
        last: int | None = None,
        before: str | None = None,
        city: str | None = None,
        category: MerchantCategory | None = None,
        status: MerchantStatus = MerchantStatus.ACTIVE,
    ) -> Connection[Merchant]:
        ctx = info.context
        if status != MerchantStatus.ACTIVE:
            ctx.viewer.require_role(ADMIN, scope="users:read")
        args = page_args(info, first, after, last, before)
        filters = {"city": city, "category": category.value if category else None, "status": status.value}
        page = await ctx.read(service.merchants_page, args, **filters)
        return build_connection(page, Merchant.from_row, count=lambda: ctx.read(service.merchants_count, **filters))


@strawberry.type
class MerchantsMutation:
    @payload_mutation(description="Onboard a merchant (admin; audit-logged). / 创建商户（管理员）。")
    async def create_merchant(self, info: Info, input: CreateMerchantInput) -> MerchantPayload:
        ctx = info.context
        actor = ctx.viewer.require_role(ADMIN, scope="merchants:write")
        owner = decode_opt(input.owner_user_id, "User", "ownerUserId")
        merchant_id = await ctx.db.write(
            lambda conn: service.create_merchant(
                conn, actor_user_id=actor, profile=profile_dict(input.profile), owner_user_id=owner,
                request_id=ctx.request_id, now=ctx.now(),
            )
        )
        return await _merchant_payload(info, merchant_id)

    @payload_mutation(description="Apply to become a merchant; an admin reviews it. / 申请成为商户。")
    async def apply_for_merchant(self, info: Info, input: ApplyForMerchantInput) -> MerchantPayload:
        ctx = info.context
        user_id = ctx.viewer.require_user()
        if ctx.viewer.api_token_id is not None:
            raise PermissionDenied("Apply in the app, not with an API token / 请在应用内申请")
        merchant_id = await ctx.db.write(
            lambda conn: service.apply_for_merchant(
                conn, user_id=user_id, profile=profile_dict(input.profile), now=ctx.now(), volunteer_code=input.volunteer_code
            )
        )
        return await _merchant_payload(info, merchant_id)

    @payload_mutation(description="Approve or reject a merchant application (admin; audit-logged). / 审核商户申请。")
    async def review_merchant_application(self, info: Info, input: ReviewMerchantApplicationInput) -> MerchantPayload:
        ctx = info.context
        actor = ctx.viewer.require_role(ADMIN, scope="merchants:write")
        merchant_id = decode_id(input.merchant_id, "Merchant", field="merchantId")
        await ctx.db.write(
            lambda conn: service.review_application(
                conn, actor_user_id=actor, merchant_id=merchant_id, approve=input.approve, reason=input.reason,
                request_id=ctx.request_id, now=ctx.now(),
            )
        )
        return await _merchant_payload(info, merchant_id)

    @payload_mutation(description="Suspend or reactivate a merchant (admin; audit-logged). / 暂停或恢复商户。")
    async def set_merchant_status(self, info: Info, input: SetMerchantStatusInput) -> MerchantPayload:
        ctx = info.context
        actor = ctx.viewer.require_role(ADMIN, scope="merchants:write")
        merchant_id = decode_id(input.merchant_id, "Merchant", field="merchantId")
        await ctx.db.write(
            lambda conn: service.set_merchant_status(
                conn, actor_user_id=actor, merchant_id=merchant_id, status=input.status.value, reason=input.reason,
                request_id=ctx.request_id, now=ctx.now(),
            )
        )
        return await _merchant_payload(info, merchant_id)

    @payload_mutation(description="Change a merchant's profile (its staff or an admin). / 修改商户资料。")
    async def update_merchant(self, info: Info, input: UpdateMerchantInput) -> MerchantPayload:
        ctx = info.context
        actor = await actor_of(info, "offers:write")
        merchant_id = decode_id(input.merchant_id, "Merchant", field="merchantId")
        await ctx.db.write(
            lambda conn: service.update_merchant(conn, actor=actor, merchant_id=merchant_id, changes=profile_dict(input))
        )
        return await _merchant_payload(info, merchant_id)

    @payload_mutation(description="Add a staff member (admin or the merchant's owner; audit-logged). / 添加商户员工。")
    async def add_merchant_staff(self, info: Info, input: AddMerchantStaffInput) -> AddMerchantStaffPayload:
        ctx = info.context
        actor = await actor_of(info, "offers:write")
        merchant_id = decode_id(input.merchant_id, "Merchant", field="merchantId")
        user_id = decode_id(input.user_id, "User", field="userId")
        await ctx.db.write(
            lambda conn: service.add_merchant_staff(
                conn, actor=actor, merchant_id=merchant_id, user_id=user_id, request_id=ctx.request_id, now=ctx.now()
            )
        )
        loaders.forget(users_loader(info), user_id)
        payload = await _merchant_payload(info, merchant_id)
        return AddMerchantStaffPayload(merchant=payload.merchant, user=User.from_row(await users_loader(info).load(user_id)))


@strawberry.type
class UserMerchant:
    """Fields of ``User`` from merchants."""

    @strawberry.field(description="The merchant the user works for (only the user and admins). / 所属商户。")
    async def merchant(self: User, info: Info) -> Merchant | None:
        require_personal(info, self)
        return await merchant_of_user(info, self.pk)


@hookimpl
def jingtan_register_domain() -> Domain:
    return Domain(
        name="merchants",
        query=[MerchantsQuery],
        mutation=[MerchantsMutation],
        types=[Merchant],
        nodes={"Merchant": visible_merchants},
        extends={"User": [UserMerchant]},
    )
