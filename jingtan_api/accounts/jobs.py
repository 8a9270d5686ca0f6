"""Background jobs of the ledger: the expiry run (CLI ``jingtan expire-points`` and a periodic task)."""

import logging
from datetime import datetime

from jingtan_api.accounts import service
from jingtan_api.db import Database, run_batched

log = logging.getLogger("jingtan.jobs")


async def expire_points(db: Database, *, now: datetime, lot_expiry_days: int) -> tuple[int, int]:
    """Expire what is left of every lot past its expiry; one transaction per account, so a crash
    midway leaves finished accounts finished and the rest for the next run. An account that fails is
    logged and skipped (the next run tries it again). Returns (accounts, points)."""
    accounts, points = await run_batched(
        db,
        fetch=lambda conn, after: service.accounts_with_expired_lots(conn, now, limit=1000, after=after),
        process=lambda conn, account_id: service.expire_account_lots(
            conn, account_id, now=now, lot_expiry_days=lot_expiry_days
        ),
        batch_size=1000,
        what="expiring an account's points",
    )
    if points:
        log.info("points expired", extra={"accounts": accounts, "points": points})
    return accounts, points
