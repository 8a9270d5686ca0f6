"""The ``action.reviewed`` listener that tells the member the review's decision (inside the reviewing
transaction: one INSERT, rolled back with the review)."""

from typing import TYPE_CHECKING

from sqlalchemy.ext.asyncio import AsyncConnection

from jingtan_api.events import Event, EventBus
from jingtan_api.notifications import service

if TYPE_CHECKING:
    from jingtan_api.services import Services


def register_listeners(bus: EventBus, app: "Services") -> None:
    async def on_reviewed(conn: AsyncConnection, event: Event) -> None:
        await service.notify_review_decision(conn, event.data, now=app.clock())

    bus.listen("action.reviewed", on_reviewed)
