"""Background job of the offers domain: expire overdue redemptions and refund them.

Run by ``jingtan expire-redemptions`` and, together with points expiry, by the server's periodic expiry
task (``run_periodically``): redemptions first, so refunds land before lots are expired.
"""

import asyncio
import logging
from datetime import datetime

from jingtan_api.accounts.jobs import expire_points
from jingtan_api.db import Database
from jingtan_api.jobs import run_batched
from jingtan_api.offers import service

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


async def run_expiry_once(db: Database, *, now: datetime, settings) -> dict[str, int]:
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


async def run_periodically(db: Database, clock, *, interval_seconds: int, settings) -> None:
    """The server's periodic expiry task (``points.expiry_interval_seconds``; 0 turns it off)."""
    while True:
        await asyncio.sleep(interval_seconds)
        await run_expiry_once(db, now=clock(), settings=settings)
