"""The webhook delivery job (``jingtan_api.jobs.JOB_MODULES``)."""

from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING

from jingtan_api.jobs import Job
from jingtan_api.webhooks.service import deliver_due

if TYPE_CHECKING:
    from jingtan_api.services import Services


async def _deliver(app: "Services", now: datetime) -> Mapping[str, int]:
    return await deliver_due(app)


JOBS: tuple[Job, ...] = (
    Job(
        name="webhooks",
        description="Deliver due signed webhooks / 投递待发送的 Webhook",
        run=_deliver,
        interval_seconds=lambda settings: settings.webhooks.interval_seconds,
    ),
)
