"""The server's periodic jobs: a registry every domain adds to, and the loop that runs them.

A domain declares its periodic work as :class:`Job` values in a ``JOBS`` tuple of its own ``jobs.py`` and
names that module in :data:`JOB_MODULES` (the analogue of ``CORE_DOMAINS``). A job's ``run(app, now)``
does one pass and returns counts for the log (``{"expired": 12}``); it must be safe to run twice or in
two processes at once (idempotent, one transaction per item — ``jingtan_api.db.run_batched``), because a
crash or a second worker may repeat it. Its interval comes from the settings; 0 turns it off.

The built-in job ``expiry`` runs overdue redemptions first (their refunds open lots), then expired points
lots, every ``points.expiry_interval_seconds``.
"""

import asyncio
import importlib
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from jingtan_api.accounts.jobs import expire_points
from jingtan_api.db import Database
from jingtan_api.redemptions.jobs import expire_redemptions

if TYPE_CHECKING:
    from jingtan_api.services import Services
    from jingtan_api.settings import Settings

log = logging.getLogger("jingtan.jobs")


@dataclass(frozen=True)
class Job:
    name: str
    description: str
    run: Callable[["Services", datetime], Awaitable[Mapping[str, int]]]
    interval_seconds: Callable[["Settings"], int]


# Modules with a ``JOBS: tuple[Job, ...]``, in the order their jobs run when due together.
JOB_MODULES: tuple[str, ...] = ("jingtan_api.jobs", "jingtan_api.challenges.jobs")


async def run_expiry_once(db: Database, *, now: datetime, settings: "Settings") -> dict[str, int]:
    """One run of the server's expiry task: overdue redemptions first (their refunds open lots), then
    expired points lots. A failure of one part is logged and does not stop the other."""
    out = {"redemptions": 0, "refunded": 0, "accounts": 0, "expired": 0}
    try:
        out["redemptions"], out["refunded"] = await expire_redemptions(
            db, now=now, lot_expiry_days=settings.points.lot_expiry_days,
            refund_min_valid_days=settings.offers.refund_min_valid_days,
        )
    except Exception:  # the next run retries; the server keeps serving
        log.exception("redemption expiry run failed")
    try:
        out["accounts"], out["expired"] = await expire_points(db, now=now, lot_expiry_days=settings.points.lot_expiry_days)
    except Exception:  # logged; points expiry still runs next time
        log.exception("expiry run failed")
    return out


async def _expiry(app: "Services", now: datetime) -> Mapping[str, int]:
    return await run_expiry_once(app.db, now=now, settings=app.settings)


JOBS: tuple[Job, ...] = (
    Job(
        name="expiry",
        description="Expire overdue redemptions (refunding them), then expired points lots / 过期兑换退还与积分到期",
        run=_expiry,
        interval_seconds=lambda settings: settings.points.expiry_interval_seconds,
    ),
)


def registered_jobs() -> tuple[Job, ...]:
    """Every job of every module in JOB_MODULES; names are unique."""
    jobs: list[Job] = []
    for name in JOB_MODULES:
        jobs.extend(importlib.import_module(name).JOBS)
    names = [job.name for job in jobs]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise RuntimeError(f"job names registered twice: {', '.join(duplicates)}")
    return tuple(jobs)


async def run_job(app: "Services", job: Job, *, now: datetime | None = None) -> dict[str, Any]:
    """One pass of ``job``; a failure is logged and answered as ``{"failed": 1}`` (the next run retries)."""
    try:
        result = dict(await job.run(app, now or app.clock()))
    except Exception:  # noqa: BLE001 - one job's failure must not stop the others or the server
        log.exception("job failed", extra={"job": job.name})
        return {"failed": 1}
    log.info("job ran", extra={"job": job.name, **{f"n_{k}": v for k, v in result.items()}})
    return result


async def run_periodically(app: "Services") -> None:
    """Run every enabled job every ``interval_seconds(settings)`` (each on its own timer) until cancelled."""
    jobs = [(job, job.interval_seconds(app.settings)) for job in registered_jobs()]

    async def loop(job: Job, interval: int) -> None:
        while True:
            await asyncio.sleep(interval)
            await run_job(app, job)

    enabled = [loop(job, interval) for job, interval in jobs if interval > 0]
    if enabled:
        await asyncio.gather(*enabled)
