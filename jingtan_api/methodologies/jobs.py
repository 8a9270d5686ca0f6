"""The safety net of methodology governance: credit actions still waiting for an approved version (an
approval whose crediting was interrupted — a crash, a deploy — finishes here). Idempotent and safe in
several processes at once, like the crediting it repeats (``actions.service.credit_waiting``)."""

from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import select

from jingtan_api.actions import service as actions
from jingtan_api.jobs import Job
from jingtan_api.methodologies import service

if TYPE_CHECKING:
    from jingtan_api.services import Services


async def credit_approved(app: "Services", now: datetime) -> Mapping[str, int]:
    async with app.db.read() as conn:
        waiting = await actions.versions_with_waiting_actions(conn)
        approved = list((await conn.execute(
            select(service.V.c.id).where(service.V.c.id.in_(waiting), service.V.c.status == service.APPROVED)
        )).scalars()) if waiting else []
    credited = 0
    for version_id in sorted(approved):
        done, _ = await actions.credit_waiting(app, version_id=version_id, now=now)
        credited += done
    return {"versions": len(approved), "actions_credited": credited}


JOBS = (
    Job(
        name="methodology_credits",
        description="Credit actions waiting for a methodology version that was approved. / 为已批准方法学的等待行为计入积分。",
        run=credit_approved,
        interval_seconds=lambda settings: settings.methodologies.credit_interval_seconds,
    ),
)
