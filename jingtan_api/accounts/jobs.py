"""Background jobs of the ledger: the expiry run (CLI ``jingtan expire-points`` and a periodic task)."""

import asyncio
import logging
from datetime import datetime

from jingtan_api.accounts import service
from jingtan_api.db import Database

log = logging.getLogger("jingtan.jobs")


async def expire_points(db: Database, *, now: datetime, lot_expiry_days: int) -> tuple[int, int]:
    """Expire what is left of every lot past its expiry; one transaction per account, so a crash
    midway leaves finished accounts finished and the rest for the next run. Returns (accounts, points)."""
    accounts = points = 0
    while True:
        async with db.read() as conn:
            batch = await service.accounts_with_expired_lots(conn, now)
        if not batch:
            break
        for account_id in batch:
            moved = await db.write(
                lambda conn, a=account_id: service.expire_account_lots(conn, a, now=now, lot_expiry_days=lot_expiry_days)
            )
            if moved:
                accounts += 1
                points += moved
        if len(batch) < 1000:
            break
    if points:
        log.info("points expired", extra={"accounts": accounts, "points": points})
    return accounts, points


async def run_periodically(db: Database, clock, *, interval_seconds: int, lot_expiry_days: int) -> None:
    while True:
        await asyncio.sleep(interval_seconds)
        try:
            await expire_points(db, now=clock(), lot_expiry_days=lot_expiry_days)
        except Exception:  # noqa: BLE001 - the next run retries; the server keeps serving
            log.exception("expiry run failed")
