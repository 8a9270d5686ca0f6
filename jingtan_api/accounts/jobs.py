"""Background jobs of the ledger: the expiry run (CLI ``jingtan expire-points`` and a periodic task)."""

import logging
from datetime import datetime

from jingtan_api.accounts import service
from jingtan_api.db import Database

log = logging.getLogger("jingtan.jobs")


async def expire_points(db: Database, *, now: datetime, lot_expiry_days: int) -> tuple[int, int]:
    """Expire what is left of every lot past its expiry; one transaction per account, so a crash
    midway leaves finished accounts finished and the rest for the next run. An account that fails is
    logged and skipped (the run goes on; the next run tries it again). Returns (accounts, points)."""
    accounts = points = 0
    after = 0
    while True:
        async with db.read() as conn:
            batch = await service.accounts_with_expired_lots(conn, now, after=after)
        for account_id in batch:
            try:
                moved = await db.write(
                    lambda conn, a=account_id: service.expire_account_lots(
                        conn, a, now=now, lot_expiry_days=lot_expiry_days
                    )
                )
            except Exception:  # noqa: BLE001 - one bad account must not stall expiry for all others
                log.exception("expiring an account's points failed", extra={"account_id": account_id})
                continue
            if moved:
                accounts += 1
                points += moved
        if len(batch) < 1000:
            break
        after = batch[-1]
    if points:
        log.info("points expired", extra={"accounts": accounts, "points": points})
    return accounts, points
