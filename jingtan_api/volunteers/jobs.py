"""Periodic jobs of the volunteer programme (registered in ``jingtan_api.jobs.JOB_MODULES``)."""

from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy.ext.asyncio import AsyncConnection

from jingtan_api.db import run_batched
from jingtan_api.jobs import Job
from jingtan_api.volunteers import service

if TYPE_CHECKING:
    from jingtan_api.services import Services


async def confirm_hours(app: "Services", now: datetime) -> Mapping[str, int]:
    cfg = app.settings.volunteers

    async def one(conn: AsyncConnection, event_id: int) -> int:
        return int(await service.auto_confirm_hours(conn, event_id, cfg=cfg, now=now))

    done, _ = await run_batched(
        app.db, fetch=lambda conn, after: service.events_due_for_hours(conn, now, cfg, limit=200, after=after),
        process=one, batch_size=200, what="volunteer hours confirmation",
    )
    return {"confirmed": done}


async def flag_inactive(app: "Services", now: datetime) -> Mapping[str, int]:
    cfg = app.settings.volunteers

    async def one(conn: AsyncConnection, volunteer_id: int) -> int:
        return int(await service.flag_inactive_referrals(conn, volunteer_id, cfg=cfg, now=now))

    flagged, _ = await run_batched(
        app.db, fetch=lambda conn, after: service.volunteers_with_inactive_referrals(conn, now, cfg, limit=200, after=after),
        process=one, batch_size=200, what="volunteer referral review",
    )
    return {"flagged": flagged}


JOBS: tuple[Job, ...] = (
    Job(
        name="volunteer-hours",
        description="Confirm service hours of events that ended with attendance / 自动确认志愿服务时长",
        run=confirm_hours,
        interval_seconds=lambda settings: settings.volunteers.job_interval_seconds,
    ),
    Job(
        name="volunteer-referral-review",
        description="Flag volunteers whose referred accounts never act / 标记无行动的推荐账户",
        run=flag_inactive,
        interval_seconds=lambda settings: settings.volunteers.job_interval_seconds,
    ),
)
