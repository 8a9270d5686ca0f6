"""Query and Mutation fields of offers and the catalogue, and ``Merchant.offers``."""

import strawberry
from strawberry.types import Info

from jingtan_api.accounts.types import accounts_loader
from jingtan_api.errors import PermissionDenied, ValidationFailed
from jingtan_api.graphql.domain import Domain, hookimpl
from jingtan_api.graphql.mutations import payload_mutation
from jingtan_api.graphql.relay import Connection, decode_id
from jingtan_api.merchants.loaders import forget
from jingtan_api.merchants.types import Merchant, actor_of, can_manage, decode_opt
from jingtan_api.offers import loaders, service
from jingtan_api.offers.types import (
    CreateOfferInput,
    Offer,
    OfferFilter,
    OfferOrder,
    OfferPayload,
    SetOfferStatusInput,
    UpdateOfferInput,
    ending_before,
    offer_connection,
    offer_dict,
    segment_viewer,
    visible_offers,
)


async def _offer_payload(info: Info, offer_id: int) -> OfferPayload:
    forget(loaders.offers(info), offer_id)
    return OfferPayload(offer=Offer.from_row(await loaders.offers(info).load(offer_id)))


@strawberry.type
class OffersQuery:
    @strawberry.field(description="The offer catalogue: redeemable offers (active, within their window, in stock) of active merchants. / 优惠目录。")
    async def offers(
        self,
        info: Info,
        first: int | None = None,
        after: str | None = None,
        last: int | None = None,
        before: str | None = None,
        filter: OfferFilter | None = None,
        order_by: OfferOrder = OfferOrder.NEWEST,
    ) -> Connection[Offer]:
        ctx = info.context
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
            # what the viewer may redeem: only offers whose segment admits them (staff listing all: every offer)
            segment=None if include else await segment_viewer(info),
        )
        return await offer_connection(info, order_by.value, flt, first, after, last, before)

    @strawberry.field(description="One offer; null when unknown or not visible to you. / 单个优惠。")
    async def offer(self, info: Info, id: strawberry.ID) -> Offer | None:
        pk = decode_id(id, "Offer")
        return (await visible_offers(info, [pk])).get(pk)


@strawberry.type
class OffersMutation:
    @payload_mutation(description="Create an offer (merchant staff or admin). / 创建优惠。")
    async def create_offer(self, info: Info, input: CreateOfferInput) -> OfferPayload:
        ctx = info.context
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
        return await _offer_payload(info, offer_id)

    @payload_mutation(description="Change an offer (its merchant's staff or an admin). / 修改优惠。")
    async def update_offer(self, info: Info, input: UpdateOfferInput) -> OfferPayload:
        ctx = info.context
        actor = await actor_of(info, "offers:write")
        offer_id = decode_id(input.offer_id, "Offer", field="offerId")
        await ctx.db.write(
            lambda conn: service.update_offer(conn, actor=actor, offer_id=offer_id, changes=offer_dict(input), now=ctx.now())
        )
        return await _offer_payload(info, offer_id)

    @payload_mutation(description="Publish, pause, resume or end an offer. / 更改优惠状态。")
    async def set_offer_status(self, info: Info, input: SetOfferStatusInput) -> OfferPayload:
        ctx = info.context
        actor = await actor_of(info, "offers:write")
        offer_id = decode_id(input.offer_id, "Offer", field="offerId")
        await ctx.db.write(
            lambda conn: service.set_offer_status(conn, actor=actor, offer_id=offer_id, status=input.status.value, now=ctx.now())
        )
        return await _offer_payload(info, offer_id)


@strawberry.type
class MerchantOffers:
    """Fields of ``Merchant`` from offers."""

    @strawberry.field(description="Offers of this merchant, newest first. Staff and admins see every offer (drafts, paused, sold out); others only redeemable ones. / 商户的优惠。")
    async def offers(
        self: Merchant, info: Info, first: int | None = None, after: str | None = None, last: int | None = None,
        before: str | None = None,
    ) -> Connection[Offer]:
        manager = await can_manage(info, self.pk, "merchant:read")
        flt = service.CatalogueFilter(merchant_id=self.pk, include_unavailable=manager,
                                      segment=None if manager else await segment_viewer(info))
        return await offer_connection(info, service.NEWEST, flt, first, after, last, before)


@hookimpl
def jingtan_register_domain() -> Domain:
    return Domain(
        name="offers",
        query=[OffersQuery],
        mutation=[OffersMutation],
        types=[Offer],
        nodes={"Offer": visible_offers},
        extends={"Merchant": [MerchantOffers]},
    )
