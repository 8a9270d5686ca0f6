"""Background job of the identity domain: carry out account deletions whose cooling-off period ended.
Run by the server's periodic task (``jingtan_api.jobs``); admins can also complete one due request
(``completeAccountDeletion``)."""

import logging
from datetime import datetime

from jingtan_api.db import Database, run_batched
from jingtan_api.identity import privacy
from jingtan_api.settings import Settings

log = logging.getLogger("jingtan.jobs")


async def complete_due_deletions(db: Database, *, now: datetime, settings: Settings) -> int:
    """Complete every SCHEDULED deletion request that is due, one transaction each. Returns how many."""

    async def process(conn, request_pk: int) -> int:
        await privacy.complete_deletion(settings, conn, request_pk=request_pk, actor_user_id=None,
                                        request_id=None, now=now)
        return 1

    count, _ = await run_batched(
        db,
        fetch=lambda conn, after: privacy.due_deletion_ids(conn, now, limit=100, after=after),
        process=process,
        batch_size=100,
        what="completing an account deletion",
    )
    if count:
        log.info("account deletions completed", extra={"deletions": count})
    return count
