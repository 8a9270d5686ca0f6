"""The ``challenges`` job: settle every challenge that has ended (docs/impact.md "Challenges").

Safe to run twice or in two processes at once: each challenge is settled in its own transaction that
locks the challenge row and does nothing unless it is still ACTIVE (``service.settle``)."""

from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING

from jingtan_api.challenges import service
from jingtan_api.db import run_batched
from jingtan_api.jobs import Job

if TYPE_CHECKING:
    from jingtan_api.services import Services

BATCH = 100


async def settle_due(app: "Services", now: datetime) -> Mapping[str, int]:
    async def fetch(conn, after: int) -> list[int]:
        return await service.due_challenge_ids(conn, now=now, after=after, limit=BATCH)

    async def process(conn, challenge_id: int) -> int:
        result = await service.settle(conn, challenge_id, now=now, lot_expiry_days=app.settings.points.lot_expiry_days)
        return 1 if result.settled_now else 0

    settled, _ = await run_batched(app.db, fetch=fetch, process=process, batch_size=BATCH, what="challenge settlement")
    return {"settled": settled}


JOBS: tuple[Job, ...] = (
    Job(
        name="challenges",
        description="Settle challenges that ended: results and rewards / 结算已结束的挑战",
        run=settle_due,
        interval_seconds=lambda settings: settings.impact.challenge_settle_interval_seconds,
    ),
)
