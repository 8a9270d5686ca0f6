"""Domain-event listeners that keep the impact aggregates (jingtan_api.events): they run inside the
emitting transaction, so an aggregate is committed (or rolled back, or retried) with its cause."""

from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import AsyncConnection

from jingtan_api.events import Event, EventBus
from jingtan_api.impact import service

if TYPE_CHECKING:
    from jingtan_api.services import Services


def register_listeners(bus: EventBus, app: "Services") -> None:
    tz = ZoneInfo(app.settings.actions.timezone)

    def today():
        return service.local_day(app.clock(), tz)

    async def on_approved(conn: AsyncConnection, event: Event) -> None:
        att = await service.attribution(conn, int(event.data["action_id"]), tz)
        await service.record_approval(conn, att, now=app.clock())
        service.remember_attribution(conn, att)

    async def on_recorded(conn: AsyncConnection, event: Event) -> None:
        d = event.data
        await service.bump_stats(conn, [("actions", today(), f"{d['status']}:{d['plugin_code']}", 1)])

    async def on_reviewed(conn: AsyncConnection, event: Event) -> None:
        d = event.data
        await service.bump_stats(conn, [("reviews", today(), f"{d['status']}:{d['plugin_code']}", 1)])

    async def on_registered(conn: AsyncConnection, event: Event) -> None:
        await service.bump_stats(conn, [("members_new", today(), "", 1)])

    async def on_posted(conn: AsyncConnection, event: Event) -> None:
        moved = sum(v for v in event.data["amounts"].values() if v > 0)
        if moved:
            await service.bump_stats(conn, [("points", today(), str(event.data["kind"]), int(moved))])

    async def on_confirmed(conn: AsyncConnection, event: Event) -> None:
        merchant = str(event.data["merchant_id"])
        await service.bump_stats(conn, [("merchant_redemptions", today(), merchant, 1),
                                        ("merchant_points", today(), merchant, int(event.data["points"]))])

    bus.listen("action.approved", on_approved)
    bus.listen("action.recorded", on_recorded)
    bus.listen("action.reviewed", on_reviewed)
    bus.listen("user.registered", on_registered)
    bus.listen("ledger.posted", on_posted)
    bus.listen("redemption.confirmed", on_confirmed)
