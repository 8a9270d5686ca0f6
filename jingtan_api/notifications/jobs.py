"""The ``notifications`` job: POINTS_EXPIRING and REDEMPTION_EXPIRING notices (docs/live.md "Notifications").

Idempotent: every notice has a dedupe key unique per member, so a second run (or a second worker, or a run
repeated after a crash) creates nothing new. Bounded: each run creates at most
``notifications.batch_size`` notices of each kind and reads candidates in batches of that size, one write
transaction per member account or redemption; what is left is picked up by the next run."""

from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime, timedelta
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import AsyncConnection

from jingtan_api.db import jobs_log
from jingtan_api.jobs import Job
from jingtan_api.notifications import service

if TYPE_CHECKING:
    from jingtan_api.services import Services


async def _bounded(
    app: "Services", *, fetch: Callable[[AsyncConnection, int, int], Awaitable[list[int]]],
    process: Callable[[AsyncConnection, int], Awaitable[int]], limit: int, what: str,
) -> int:
    """Walk candidate ids in keyset batches of ``limit``, one write transaction each, until ``limit``
    notices were created or no candidate is left; a failing item is logged and skipped."""
    created = 0
    after = 0
    while created < limit:
        async with app.db.read() as conn:
            batch = await fetch(conn, after, limit)
        if not batch:
            break
        for item in batch:
            try:
                created += await app.db.write(lambda conn, i=item: process(conn, i))
            except Exception:  # noqa: BLE001 - one bad item must not stall the job for all others
                jobs_log.exception(f"{what} failed", extra={"item_id": item})
            if created >= limit:
                break
        after = batch[-1]
    return created


async def notify_expiring(app: "Services", now: datetime) -> Mapping[str, int]:
    cfg = app.settings.notifications
    tz = ZoneInfo(app.settings.actions.timezone)
    points_until = service.points_horizon(now, days=cfg.points_expiring_days, tz=tz)
    redemptions_until = now + timedelta(hours=cfg.redemption_expiring_hours)

    points = await _bounded(
        app,
        fetch=lambda conn, after, limit: service.accounts_with_expiring_lots(
            conn, now=now, until=points_until, after=after, limit=limit),
        process=lambda conn, account_id: service.notify_points_expiring(
            conn, account_id, now=now, until=points_until, tz=tz),
        limit=cfg.batch_size, what="points expiring notice",
    )
    redemptions = await _bounded(
        app,
        fetch=lambda conn, after, limit: service.redemptions_expiring(
            conn, now=now, until=redemptions_until, after=after, limit=limit),
        process=lambda conn, redemption_id: service.notify_redemption_expiring(
            conn, redemption_id, now=now, until=redemptions_until),
        limit=cfg.batch_size, what="redemption expiring notice",
    )
    return {"points_expiring": points, "redemption_expiring": redemptions}


JOBS: tuple[Job, ...] = (
    Job(
        name="notifications",
        description="Notify members of points and redemption codes about to expire / 积分与兑换码即将过期提醒",
        run=notify_expiring,
        interval_seconds=lambda settings: settings.notifications.interval_seconds,
    ),
)
