"""The volunteer programme's reactions to other domains' events, inside their transactions
(``jingtan_api.events``): a registration's signals and referral code, a merchant application's volunteer
code, a referred member's first approved action, a redemption's commission and its reversal on refund."""

from typing import TYPE_CHECKING

from sqlalchemy.ext.asyncio import AsyncConnection

from jingtan_api.errors import ValidationFailed
from jingtan_api.events import Event, EventBus
from jingtan_api.volunteers import service

if TYPE_CHECKING:
    from jingtan_api.services import Services


def register_listeners(bus: EventBus, app: "Services") -> None:
    settings = app.settings

    async def registered(conn: AsyncConnection, event: Event) -> None:
        now = app.clock()
        code = event.data.get("referral_code")
        if code:
            # Only referred accounts keep their (hashed) address and device: what farming checks compare.
            await service.record_signal(conn, user_id=event.data["user_id"], address=event.data.get("client_address") or "",
                                        device=event.data.get("device_id"), secret=settings.secret_key, now=now)
            try:
                await service.refer(conn, user_id=event.data["user_id"], code=code, field="referralCode",
                                    cfg=settings.volunteers, now=now, at_registration=True)
            except service.VolunteerFailure as exc:  # the register payload's codes: BAD_USER_INPUT with the field
                raise ValidationFailed(exc.message, field=exc.field) from None

    async def merchant_applied(conn: AsyncConnection, event: Event) -> None:
        code = event.data.get("volunteer_code")
        if code:
            try:
                await service.link_merchant(conn, merchant_id=event.data["merchant_id"],
                                            applicant_user_id=event.data["user_id"], code=code, cfg=settings.volunteers,
                                            now=app.clock())
            except service.VolunteerFailure as exc:  # the merchant payload's codes: BAD_USER_INPUT with the field
                raise ValidationFailed(exc.message, field=exc.field) from None

    async def approved(conn: AsyncConnection, event: Event) -> None:
        await service.credit_referral(conn, user_id=event.data["user_id"], cfg=settings.volunteers,
                                      lot_expiry_days=settings.points.lot_expiry_days, now=app.clock())

    async def redeemed(conn: AsyncConnection, event: Event) -> None:
        await service.accrue_commission(conn, redemption_id=event.data["redemption_id"], merchant_id=event.data["merchant_id"],
                                        points=event.data["points"], lot_expiry_days=settings.points.lot_expiry_days)

    async def refunded(conn: AsyncConnection, event: Event) -> None:
        await service.reverse_commission(conn, redemption_id=event.data["redemption_id"],
                                         lot_expiry_days=settings.points.lot_expiry_days, now=app.clock())

    bus.listen("user.registered", registered)
    bus.listen("merchant.applied", merchant_applied)
    bus.listen("action.approved", approved)
    bus.listen("redemption.created", redeemed)
    bus.listen("redemption.cancelled", refunded)
    bus.listen("redemption.expired", refunded)
