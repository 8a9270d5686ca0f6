"""Mutation fields of redemptions, and the fields redemptions add to ``User``, ``Merchant`` and ``Offer``
(``User.redemptions``; ``Merchant.stats``, ``redemptions``, ``settlement``; ``Offer.redeemedCount``)."""

from collections.abc import AsyncGenerator
from datetime import date
from typing import Annotated

import strawberry
from strawberry.types import Info

from jingtan_api.accounts import service as ledger
from jingtan_api.accounts.types import Account, accounts_loader
from jingtan_api.graphql.domain import Domain, hookimpl
from jingtan_api.graphql.mutations import payload_mutation
from jingtan_api.errors import NotFound, PermissionDenied
from jingtan_api.graphql.relay import decode_id
from jingtan_api.live.transport import events as live_events
from jingtan_api.merchants.loaders import forget
from jingtan_api.merchants.types import Merchant, actor_of, can_manage, require_manage
from jingtan_api.offers import loaders as offer_loaders
from jingtan_api.offers.types import Offer
from jingtan_api.redemptions import loaders, service
from jingtan_api.redemptions.types import (
    CancelRedemptionInput,
    ConfirmRedemptionInput,
    MerchantSettlement,
    MerchantStats,
    RedeemOfferInput,
    RedeemOfferPayload,
    Redemption,
    RedemptionConnection,
    RedemptionPayload,
    RedemptionStatus,
    SettlementDay,
    SettlementStatusCount,
    redemption_connection,
    redemptions_of_user,
    visible_redemptions,
)
from jingtan_api.users.types import User, require_personal


def _member(info: Info) -> int:
    """A member acting for themselves; API tokens need the offers:redeem scope."""
    viewer = info.context.viewer
    user_id = viewer.require_user()
    if viewer.api_token_id is not None:
        viewer.require_scope("offers:redeem")
    return user_id


async def _redemption_payload(info: Info, redemption_id: int) -> RedemptionPayload:
    forget(loaders.redemptions(info), redemption_id)
    offer_loaders.offers(info).clear_all()
    return RedemptionPayload(redemption=Redemption.from_row(await loaders.redemptions(info).load(redemption_id)))


@strawberry.type
class RedemptionsMutation:
    @payload_mutation(description="Redeem an offer with points; returns a code to show at the counter (idempotent). / 兑换优惠。")
    async def redeem_offer(self, info: Info, input: RedeemOfferInput) -> RedeemOfferPayload:
        ctx = info.context
        user_id = _member(info)
        offer_id = decode_id(input.offer_id, "Offer", field="offerId")
        cfg = ctx.settings
        redemption_id, replayed = await ctx.db.write(
            lambda conn: service.redeem(
                conn, user_id=user_id, offer_id=offer_id, quantity=input.quantity,
                idempotency_key=input.idempotency_key, now=ctx.now(),
                lot_expiry_days=cfg.points.lot_expiry_days, valid_days=cfg.offers.redemption_valid_days,
                max_quantity=cfg.offers.max_quantity,
                require_verified_contact=cfg.identity.require_verified_contact,
            )
        )
        payload = await _redemption_payload(info, redemption_id)
        account = (await ctx.read(ledger.accounts_by_user_ids, [user_id]))[user_id]
        accounts_loader(info).prime(user_id, account)
        return RedeemOfferPayload(redemption=payload.redemption, account=Account.from_row(account), replayed=replayed)

    @payload_mutation(description="Confirm a redemption code at the counter (merchant staff or a merchant API token with redemptions:confirm). / 核销兑换码。")
    async def confirm_redemption(self, info: Info, input: ConfirmRedemptionInput) -> RedemptionPayload:
        ctx = info.context
        actor = await actor_of(info, "redemptions:confirm")
        redemption_id = await ctx.db.write(
            lambda conn: service.confirm(conn, actor=actor, code=input.code, now=ctx.now())
        )
        return await _redemption_payload(info, redemption_id)

    @payload_mutation(description="Cancel an unused redemption (the member, or an admin); points and stock come back. / 取消兑换。")
    async def cancel_redemption(self, info: Info, input: CancelRedemptionInput) -> RedemptionPayload:
        ctx = info.context
        user_id = _member(info)
        redemption_id = decode_id(input.redemption_id, "Redemption", field="redemptionId")
        cfg = ctx.settings
        await ctx.db.write(
            lambda conn: service.cancel(
                conn, user_id=user_id, is_admin=ctx.viewer.is_admin, redemption_id=redemption_id, now=ctx.now(),
                lot_expiry_days=cfg.points.lot_expiry_days, refund_min_valid_days=cfg.offers.refund_min_valid_days,
            )
        )
        return await _redemption_payload(info, redemption_id)


@strawberry.type
class UserRedemptions:
    """Fields of ``User`` from redemptions."""

    @strawberry.field(description="The user's redemptions, newest first (only the user and admins). / 我的兑换。")
    async def redemptions(
        self: User, info: Info, first: int | None = None, after: str | None = None, last: int | None = None,
        before: str | None = None,
    ) -> RedemptionConnection:
        require_personal(info, self)
        info.context.viewer.require_any_scope("offers:redeem", "account:read")
        return await redemptions_of_user(info, self.pk, first, after, last, before)


@strawberry.type
class MerchantRedemptions:
    """Fields of ``Merchant`` from redemptions."""

    @strawberry.field(description="Redemption totals (staff and admins). / 兑换统计（员工与管理员）。")
    async def stats(self: Merchant, info: Info) -> MerchantStats:
        await require_manage(info, self.pk, "merchant:read")
        s = await loaders.merchant_stats(info).load(self.pk)
        return MerchantStats(
            redeemed_count=s.redemptions, redeemed_quantity=s.redeemed_quantity, confirmed_count=s.confirmed,
            pending_count=s.pending, refunded_count=s.refunded, points_received=s.points_received,
            active_offers=s.active_offers,
        )

    @strawberry.field(description="Redemptions at this merchant, newest first (staff and admins). / 商户的兑换记录。")
    async def redemptions(
        self: Merchant, info: Info, first: int | None = None, after: str | None = None, last: int | None = None,
        before: str | None = None, status: RedemptionStatus | None = None,
    ) -> RedemptionConnection:
        await require_manage(info, self.pk, "merchant:read")
        return await redemption_connection(
            info, first, after, last, before, merchant_id=self.pk, status=status.value if status else None
        )

    @strawberry.field(description="Settlement for days `from`..`to` (inclusive, at most 92 days; staff and admins). / 结算对账。")
    async def settlement(
        self: Merchant,
        info: Info,
        from_: Annotated[date, strawberry.argument(name="from", description="First day (inclusive).")],
        to: Annotated[date, strawberry.argument(description="Last day (inclusive).")],
    ) -> MerchantSettlement:
        await require_manage(info, self.pk, "merchant:read")
        ctx = info.context
        s = await ctx.read(
            service.settlement, merchant_id=self.pk, start=from_, end=to,
            offset_minutes=ctx.settings.offers.settlement_utc_offset_minutes,
        )
        return MerchantSettlement(
            from_date=s.start, to_date=s.end, points_received=s.points_received, points_refunded=s.points_refunded,
            net_points=s.points_received - s.points_refunded, balance=s.balance,
            by_status=[SettlementStatusCount(status=RedemptionStatus(r.status), count=r.count, quantity=r.quantity, points=r.points) for r in s.by_status],
            by_day=[
                SettlementDay(
                    day=d.day, redemptions=d.redemptions, quantity=d.quantity, confirmed=d.confirmed,
                    points_redeemed=d.points_redeemed, points_refunded=d.points_refunded,
                    net_points=d.points_redeemed - d.points_refunded,
                )
                for d in s.by_day
            ],
        )


@strawberry.type
class OfferRedemptions:
    """Fields of ``Offer`` from redemptions."""

    @strawberry.field(description="Items in live redemptions (staff and admins). / 已兑换件数。")
    async def redeemed_count(self: Offer, info: Info) -> int:
        await require_manage(info, self.merchant_pk, "merchant:read")
        return (await loaders.offer_redeemed(info).load(self.pk)) or 0


REDEMPTION_EVENTS = ("redemption.created", "redemption.confirmed", "redemption.cancelled", "redemption.expired")


async def _fresh_redemption(info: Info, redemption_id: int) -> Redemption | None:
    row = await loaders.redemptions(info).load(redemption_id)
    return Redemption.from_row(row) if row is not None else None


@strawberry.type
class RedemptionsSubscription:
    @strawberry.subscription(description="The viewer's redemptions, each time one is created or its status changes "
                             "(confirmed at the counter, cancelled, expired); `redemptionId` follows one. / 我的兑换状态变化。")
    async def redemption_status_changed(
        self, info: Info,
        redemption_id: Annotated[strawberry.ID | None, strawberry.argument(description="Only this redemption (yours). / 仅此兑换。")] = None,
    ) -> AsyncGenerator[Redemption, None]:
        viewer = info.context.viewer
        user_id = viewer.require_user()
        viewer.require_any_scope("offers:redeem", "account:read")
        wanted: int | None = None
        if redemption_id is not None:
            wanted = decode_id(redemption_id, "Redemption", field="redemptionId")
            row = await loaders.redemptions(info).load(wanted)
            if row is None:
                raise NotFound("No such redemption / 兑换不存在", field="redemptionId")
            if row["member_user_id"] != user_id:
                raise PermissionDenied("That redemption is another member's / 该兑换属于其他会员")
        async for message in live_events(info, [f"user:{user_id}"], REDEMPTION_EVENTS):
            if message.get("member_user_id") != user_id or (wanted is not None and message.get("redemption_id") != wanted):
                continue
            redemption = await _fresh_redemption(info, int(message["redemption_id"]))
            if redemption is not None:
                yield redemption

    @strawberry.subscription(description="Redemptions at a merchant, each time one is created or its status changes "
                             "(the merchant's staff and admins; ends when the viewer stops being staff). / 商户兑换实时变化（员工）。")
    async def merchant_redemption_changed(
        self, info: Info,
        merchant_id: Annotated[strawberry.ID, strawberry.argument(description="The merchant. / 商户。")],
    ) -> AsyncGenerator[Redemption, None]:
        pk = decode_id(merchant_id, "Merchant", field="merchantId")
        await require_manage(info, pk, "merchant:read")
        async for message in live_events(info, [f"merchant:{pk}"], REDEMPTION_EVENTS):
            if message.get("merchant_id") != pk:
                continue
            if not await can_manage(info, pk, "merchant:read"):
                return  # no longer staff: the subscription completes
            redemption = await _fresh_redemption(info, int(message["redemption_id"]))
            if redemption is not None:
                yield redemption


@hookimpl
def jingtan_register_domain() -> Domain:
    return Domain(
        name="redemptions",
        mutation=[RedemptionsMutation],
        subscription=[RedemptionsSubscription],
        types=[Redemption],
        nodes={"Redemption": visible_redemptions},
        extends={"User": [UserRedemptions], "Merchant": [MerchantRedemptions], "Offer": [OfferRedemptions]},
    )
