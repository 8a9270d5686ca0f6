"""Query and Mutation fields of merchants, offers and redemptions."""

import strawberry
from strawberry.types import Info

from jingtan_api.accounts import service as ledger
from jingtan_api.accounts.types import Account, accounts_loader
from jingtan_api.auth.permissions import ADMIN
from jingtan_api.errors import DomainError, PermissionDenied, ValidationFailed
from jingtan_api.graphql.domain import Domain, hookimpl
from jingtan_api.graphql.relay import Connection, build_connection, decode_id, page_args, user_errors_from
from jingtan_api.offers import loaders, service
from jingtan_api.offers.types import (
    AddMerchantStaffInput,
    AddMerchantStaffPayload,
    ApplyForMerchantInput,
    CancelRedemptionInput,
    ConfirmRedemptionInput,
    CreateMerchantInput,
    CreateOfferInput,
    Merchant,
    MerchantCategory,
    MerchantPayload,
    MerchantStatus,
    Offer,
    OfferFilter,
    OfferOrder,
    OfferPayload,
    RedeemOfferInput,
    RedeemOfferPayload,
    Redemption,
    RedemptionConnection,
    RedemptionPayload,
    ReviewMerchantApplicationInput,
    SetMerchantStatusInput,
    SetOfferStatusInput,
    UpdateMerchantInput,
    UpdateOfferInput,
    actor_of,
    can_manage,
    check_first,
    decode_offer_cursor,
    decode_opt,
    ending_before,
    offer_connection,
    offer_dict,
    profile_dict,
    visible_merchants,
    visible_offers,
    visible_redemptions,
    merchant_of_user,
    redemptions_of_user,
)
from jingtan_api.users.types import User, require_personal, users_loader


def _member(info: Info) -> int:
    """A member acting for themselves; API tokens need the offers:redeem scope."""
    viewer = info.context.viewer
    user_id = viewer.require_user()
    if viewer.api_token_id is not None:
        viewer.require_scope("offers:redeem")
    return user_id


async def _merchant_payload(info: Info, merchant_id: int) -> MerchantPayload:
    loaders.forget(loaders.merchants(info), merchant_id)
    loaders.staff_merchant(info).clear_all()
    row = await loaders.merchants(info).load(merchant_id)
    return MerchantPayload(merchant=Merchant.from_row(row))


async def _offer_payload(info: Info, offer_id: int) -> OfferPayload:
    loaders.forget(loaders.offers(info), offer_id)
    return OfferPayload(offer=Offer.from_row(await loaders.offers(info).load(offer_id)))


async def _redemption_payload(info: Info, redemption_id: int) -> RedemptionPayload:
    loaders.forget(loaders.redemptions(info), redemption_id)
    loaders.offers(info).clear_all()
    return RedemptionPayload(redemption=Redemption.from_row(await loaders.redemptions(info).load(redemption_id)))


@strawberry.type
class OffersQuery:
    @strawberry.field(description="The offer catalogue: redeemable offers (active, within their window, in stock) of active merchants. / 优惠目录。")
    async def offers(
        self,
        info: Info,
        first: int | None = None,
        after: str | None = None,
        filter: OfferFilter | None = None,
        order_by: OfferOrder = OfferOrder.NEWEST,
    ) -> Connection[Offer]:
        ctx = info.context
        n = check_first(info, first)
        order = order_by.value
        after_key = decode_offer_cursor(after, order)
        f = filter or OfferFilter()
        merchant_id = decode_opt(f.merchant_id, "Merchant", "merchantId")
        include = False
        if f.include_unavailable:
            if not ctx.viewer.is_admin and (merchant_id is None or not await can_manage(info, merchant_id, "merchant:read")):
                raise PermissionDenied(
                    "includeUnavailable is for the merchant's staff and admins / 仅商户员工与管理员可查看全部优惠"
                )
            include = True
        max_price = None
        if f.affordable:
            user_id = ctx.viewer.require_user()
            account = await accounts_loader(info).load(user_id)  # the request's loader: no extra query
            max_price = account["balance"] if account else 0
        flt = service.CatalogueFilter(
            city=f.city.strip() if f.city else None,
            category=f.category.value if f.category else None,
            merchant_id=merchant_id,
            max_price=max_price,
            ends_before=ending_before(info, f.ending_within_days),
            include_unavailable=include,
        )
        rows, has_next = await ctx.read(service.catalogue_page, now=ctx.now(), order=order, first=n, after=after_key, flt=flt)
        loaders.offers(info).prime_many({r["id"]: r for r in rows})
        return offer_connection(info, rows, order, has_next=has_next, has_previous=after is not None, flt=flt)

    @strawberry.field(description="One offer; null when unknown or not visible to you. / 单个优惠。")
    async def offer(self, info: Info, id: strawberry.ID) -> Offer | None:
        pk = decode_id(id, "Offer")
        return (await visible_offers(info, [pk])).get(pk)

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
        city: str | None = None,
        category: MerchantCategory | None = None,
        status: MerchantStatus = MerchantStatus.ACTIVE,
    ) -> Connection[Merchant]:
        ctx = info.context
        if status != MerchantStatus.ACTIVE:
            ctx.viewer.require_role(ADMIN, scope="users:read")
        first_n, after_key, _, _ = page_args(info, first, after, None, None)
        rows, has_next = await ctx.read(
            service.merchants_page, first=first_n, after=after_key, city=city,
            category=category.value if category else None, status=status.value,
        )
        # Ascending ids: the cursor key is the last id seen.
        return build_connection(
            [Merchant.from_row(r) for r in rows], [r["id"] for r in rows], has_next=has_next, has_previous=after is not None
        )


@strawberry.type
class OffersMutation:
    @strawberry.mutation(description="Onboard a merchant (admin; audit-logged). / 创建商户（管理员）。")
    async def create_merchant(self, info: Info, input: CreateMerchantInput) -> MerchantPayload:
        ctx = info.context
        try:
            actor = ctx.viewer.require_role(ADMIN, scope="merchants:write")
            owner = decode_opt(input.owner_user_id, "User", "ownerUserId")
            merchant_id = await ctx.db.write(
                lambda conn: service.create_merchant(
                    conn, actor_user_id=actor, profile=profile_dict(input.profile), owner_user_id=owner,
                    request_id=ctx.request_id, now=ctx.now(),
                )
            )
        except DomainError as exc:
            return MerchantPayload(user_errors=user_errors_from(exc))
        return await _merchant_payload(info, merchant_id)

    @strawberry.mutation(description="Apply to become a merchant; an admin reviews it. / 申请成为商户。")
    async def apply_for_merchant(self, info: Info, input: ApplyForMerchantInput) -> MerchantPayload:
        ctx = info.context
        try:
            user_id = ctx.viewer.require_user()
            if ctx.viewer.api_token_id is not None:
                raise PermissionDenied("Apply in the app, not with an API token / 请在应用内申请")
            merchant_id = await ctx.db.write(
                lambda conn: service.apply_for_merchant(conn, user_id=user_id, profile=profile_dict(input.profile), now=ctx.now())
            )
        except DomainError as exc:
            return MerchantPayload(user_errors=user_errors_from(exc))
        return await _merchant_payload(info, merchant_id)

    @strawberry.mutation(description="Approve or reject a merchant application (admin; audit-logged). / 审核商户申请。")
    async def review_merchant_application(self, info: Info, input: ReviewMerchantApplicationInput) -> MerchantPayload:
        ctx = info.context
        try:
            actor = ctx.viewer.require_role(ADMIN, scope="merchants:write")
            merchant_id = decode_id(input.merchant_id, "Merchant", field="merchantId")
            await ctx.db.write(
                lambda conn: service.review_application(
                    conn, actor_user_id=actor, merchant_id=merchant_id, approve=input.approve, reason=input.reason,
                    request_id=ctx.request_id, now=ctx.now(),
                )
            )
        except DomainError as exc:
            return MerchantPayload(user_errors=user_errors_from(exc))
        return await _merchant_payload(info, merchant_id)

    @strawberry.mutation(description="Suspend or reactivate a merchant (admin; audit-logged). / 暂停或恢复商户。")
    async def set_merchant_status(self, info: Info, input: SetMerchantStatusInput) -> MerchantPayload:
        ctx = info.context
        try:
            actor = ctx.viewer.require_role(ADMIN, scope="merchants:write")
            merchant_id = decode_id(input.merchant_id, "Merchant", field="merchantId")
            await ctx.db.write(
                lambda conn: service.set_merchant_status(
                    conn, actor_user_id=actor, merchant_id=merchant_id, status=input.status.value, reason=input.reason,
                    request_id=ctx.request_id, now=ctx.now(),
                )
            )
        except DomainError as exc:
            return MerchantPayload(user_errors=user_errors_from(exc))
        return await _merchant_payload(info, merchant_id)

    @strawberry.mutation(description="Change a merchant's profile (its staff or an admin). / 修改商户资料。")
    async def update_merchant(self, info: Info, input: UpdateMerchantInput) -> MerchantPayload:
        ctx = info.context
        try:
            actor = await actor_of(info, "offers:write")
            merchant_id = decode_id(input.merchant_id, "Merchant", field="merchantId")
            await ctx.db.write(
                lambda conn: service.update_merchant(conn, actor=actor, merchant_id=merchant_id, changes=profile_dict(input))
            )
        except DomainError as exc:
            return MerchantPayload(user_errors=user_errors_from(exc))
        return await _merchant_payload(info, merchant_id)

    @strawberry.mutation(description="Add a staff member (admin or the merchant's owner; audit-logged). / 添加商户员工。")
    async def add_merchant_staff(self, info: Info, input: AddMerchantStaffInput) -> AddMerchantStaffPayload:
        ctx = info.context
        try:
            actor = await actor_of(info, "offers:write")
            merchant_id = decode_id(input.merchant_id, "Merchant", field="merchantId")
            user_id = decode_id(input.user_id, "User", field="userId")
            await ctx.db.write(
                lambda conn: service.add_merchant_staff(
                    conn, actor=actor, merchant_id=merchant_id, user_id=user_id, request_id=ctx.request_id, now=ctx.now()
                )
            )
        except DomainError as exc:
            return AddMerchantStaffPayload(user_errors=user_errors_from(exc))
        loaders.forget(users_loader(info), user_id)
        payload = await _merchant_payload(info, merchant_id)
        return AddMerchantStaffPayload(merchant=payload.merchant, user=User.from_row(await users_loader(info).load(user_id)))

    @strawberry.mutation(description="Create an offer (merchant staff or admin). / 创建优惠。")
    async def create_offer(self, info: Info, input: CreateOfferInput) -> OfferPayload:
        ctx = info.context
        try:
            actor = await actor_of(info, "offers:write")
            merchant_id = decode_opt(input.merchant_id, "Merchant", "merchantId") or actor.merchant_id
            if merchant_id is None:
                raise ValidationFailed("Give merchantId / 请指定商户", field="merchantId")
            offer_id = await ctx.db.write(
                lambda conn: service.create_offer(
                    conn, actor=actor, merchant_id=merchant_id, fields=offer_dict(input), status=input.status.value,
                    now=ctx.now(),
                )
            )
        except DomainError as exc:
            return OfferPayload(user_errors=user_errors_from(exc))
        return await _offer_payload(info, offer_id)

    @strawberry.mutation(description="Change an offer (its merchant's staff or an admin). / 修改优惠。")
    async def update_offer(self, info: Info, input: UpdateOfferInput) -> OfferPayload:
        ctx = info.context
        try:
            actor = await actor_of(info, "offers:write")
            offer_id = decode_id(input.offer_id, "Offer", field="offerId")
            await ctx.db.write(
                lambda conn: service.update_offer(conn, actor=actor, offer_id=offer_id, changes=offer_dict(input), now=ctx.now())
            )
        except DomainError as exc:
            return OfferPayload(user_errors=user_errors_from(exc))
        return await _offer_payload(info, offer_id)

    @strawberry.mutation(description="Publish, pause, resume or end an offer. / 更改优惠状态。")
    async def set_offer_status(self, info: Info, input: SetOfferStatusInput) -> OfferPayload:
        ctx = info.context
        try:
            actor = await actor_of(info, "offers:write")
            offer_id = decode_id(input.offer_id, "Offer", field="offerId")
            await ctx.db.write(
                lambda conn: service.set_offer_status(conn, actor=actor, offer_id=offer_id, status=input.status.value, now=ctx.now())
            )
        except DomainError as exc:
            return OfferPayload(user_errors=user_errors_from(exc))
        return await _offer_payload(info, offer_id)

    @strawberry.mutation(description="Redeem an offer with points; returns a code to show at the counter (idempotent). / 兑换优惠。")
    async def redeem_offer(self, info: Info, input: RedeemOfferInput) -> RedeemOfferPayload:
        ctx = info.context
        try:
            user_id = _member(info)
            offer_id = decode_id(input.offer_id, "Offer", field="offerId")
            cfg = ctx.settings
            redemption_id, replayed = await ctx.db.write(
                lambda conn: service.redeem(
                    conn, user_id=user_id, offer_id=offer_id, quantity=input.quantity,
                    idempotency_key=input.idempotency_key, now=ctx.now(),
                    lot_expiry_days=cfg.points.lot_expiry_days, valid_days=cfg.offers.redemption_valid_days,
                    max_quantity=cfg.offers.max_quantity,
                )
            )
        except DomainError as exc:
            return RedeemOfferPayload(user_errors=user_errors_from(exc))
        payload = await _redemption_payload(info, redemption_id)
        account = (await ctx.read(ledger.accounts_by_user_ids, [user_id]))[user_id]
        accounts_loader(info).prime(user_id, account)
        return RedeemOfferPayload(redemption=payload.redemption, account=Account.from_row(account), replayed=replayed)

    @strawberry.mutation(description="Confirm a redemption code at the counter (merchant staff or a merchant API token with redemptions:confirm). / 核销兑换码。")
    async def confirm_redemption(self, info: Info, input: ConfirmRedemptionInput) -> RedemptionPayload:
        ctx = info.context
        try:
            actor = await actor_of(info, "redemptions:confirm")
            redemption_id = await ctx.db.write(
                lambda conn: service.confirm(conn, actor=actor, code=input.code, now=ctx.now())
            )
        except DomainError as exc:
            return RedemptionPayload(user_errors=user_errors_from(exc))
        return await _redemption_payload(info, redemption_id)

    @strawberry.mutation(description="Cancel an unused redemption (the member, or an admin); points and stock come back. / 取消兑换。")
    async def cancel_redemption(self, info: Info, input: CancelRedemptionInput) -> RedemptionPayload:
        ctx = info.context
        try:
            user_id = _member(info)
            redemption_id = decode_id(input.redemption_id, "Redemption", field="redemptionId")
            cfg = ctx.settings
            await ctx.db.write(
                lambda conn: service.cancel(
                    conn, user_id=user_id, is_admin=ctx.viewer.is_admin, redemption_id=redemption_id, now=ctx.now(),
                    lot_expiry_days=cfg.points.lot_expiry_days, refund_min_valid_days=cfg.offers.refund_min_valid_days,
                )
            )
        except DomainError as exc:
            return RedemptionPayload(user_errors=user_errors_from(exc))
        return await _redemption_payload(info, redemption_id)


@strawberry.type
class UserMerchantFields:
    """Fields of ``User`` from merchants, offers and redemptions."""

    @strawberry.field(description="The merchant the user works for (only the user and admins). / 所属商户。")
    async def merchant(self: User, info: Info) -> Merchant | None:
        require_personal(info, self)
        return await merchant_of_user(info, self.pk)

    @strawberry.field(description="The user's redemptions, newest first (only the user and admins). / 我的兑换。")
    async def redemptions(
        self: User, info: Info, first: int | None = None, after: str | None = None
    ) -> RedemptionConnection:
        require_personal(info, self)
        info.context.viewer.require_any_scope("offers:redeem", "account:read")
        return await redemptions_of_user(info, self.pk, first, after)


@hookimpl
def jingtan_register_domain() -> Domain:
    return Domain(
        name="offers",
        query=[OffersQuery],
        mutation=[OffersMutation],
        types=[Merchant, Offer, Redemption],
        nodes={"Merchant": visible_merchants, "Offer": visible_offers, "Redemption": visible_redemptions},
        extends={"User": [UserMerchantFields]},
    )
