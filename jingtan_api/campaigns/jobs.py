"""The ``campaign_close`` job: campaigns past their end date are closed and their unspent budget goes
back to the merchant. Idempotent (a closed campaign is not ACTIVE any more) and safe in two processes at
once (the close flips the status under the campaign account's lock)."""

from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING

from jingtan_api.campaigns import service
from jingtan_api.db import run_batched
from jingtan_api.jobs import Job

if TYPE_CHECKING:
    from jingtan_api.services import Services

BATCH = 200


async def close_due_campaigns(app: "Services", now: datetime) -> Mapping[str, int]:
    lot_days = app.settings.points.lot_expiry_days

    async def process(conn, campaign_id: int) -> int:
        # No side effect outside the transaction (db.write may re-run it): 1 + the points returned, so
        # that a close that returned nothing still counts as done (0 = nothing done).
        left = await service.close_campaign(conn, campaign_id, now=now, lot_expiry_days=lot_days)
        return 0 if left is None else 1 + left

    closed, total = await run_batched(
        app.db, fetch=lambda conn, after: service.due_campaigns(conn, now, after=after, limit=BATCH),
        process=process, batch_size=BATCH, what="campaign close",
    )
    return {"closed": closed, "returned": total - closed}


JOBS: tuple[Job, ...] = (
    Job(
        name="campaign_close",
        description="Close campaigns past their end and return unspent budgets / 结束到期活动并退回剩余预算",
        run=close_due_campaigns,
        interval_seconds=lambda settings: settings.merchants.campaign_close_interval_seconds,
    ),
)
