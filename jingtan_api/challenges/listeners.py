"""The ``action.approved`` listener that keeps challenge progress (inside the approving transaction)."""

from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import AsyncConnection

from jingtan_api.challenges import service
from jingtan_api.events import Event, EventBus
from jingtan_api.impact import service as impact

if TYPE_CHECKING:
    from jingtan_api.services import Services


def register_listeners(bus: EventBus, app: "Services") -> None:
    tz = ZoneInfo(app.settings.actions.timezone)

    async def on_approved(conn: AsyncConnection, event: Event) -> None:
        att = await impact.attribution_of(conn, int(event.data["action_id"]), tz)
        await service.record_progress(conn, att, now=app.clock())

    bus.listen("action.approved", on_approved)
