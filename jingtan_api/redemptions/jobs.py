"""Background job of the redemptions domain: expire overdue redemptions and refund them.

Run by ``jingtan expire-redemptions`` and, together with points expiry, by the server's periodic expiry
task (``jingtan_api.jobs``).
"""

import logging
from datetime import datetime

from jingtan_api.db import Database, run_batched
from jingtan_api.redemptions import service

log = logging.getLogger("jingtan.jobs")


async def expire_redemptions(
    db: Database, *, now: datetime, lot_expiry_days: int, refund_min_valid_days: int
) -> tuple[int, int]:
    """Expire every PENDING redemption past its expiry, one transaction each (a crash midway leaves the
    rest for the next run). Returns (redemptions, points refunded)."""
    count, points = await run_batched(
        db,
        fetch=lambda conn, after: service.overdue_redemption_ids(conn, now, limit=500, after=after),
        process=lambda conn, redemption_id: service.expire_redemption(
            conn, redemption_id, now=now, lot_expiry_days=lot_expiry_days, refund_min_valid_days=refund_min_valid_days
        ),
        batch_size=500,
        what="expiring a redemption",
    )
    if count:
        log.info("redemptions expired", extra={"redemptions": count, "points": points})
    return count, points
