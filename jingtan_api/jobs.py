"""The server's periodic jobs (``points.expiry_interval_seconds``; 0 turns them off) and one run of
them. Each domain keeps its own job functions (``accounts/jobs.py``, ``redemptions/jobs.py``); this module
only orders and schedules them. Item-by-item batching is ``jingtan_api.db.run_batched``."""

import asyncio
import logging
from datetime import datetime

from jingtan_api.accounts.jobs import expire_points
from jingtan_api.db import Database
from jingtan_api.identity.jobs import complete_due_deletions
from jingtan_api.redemptions.jobs import expire_redemptions
from jingtan_api.services import Clock
from jingtan_api.settings import Settings

log = logging.getLogger("jingtan.jobs")


async def run_expiry_once(db: Database, *, now: datetime, settings: Settings) -> dict[str, int]:
    """One run of the server's expiry task: overdue redemptions first (their refunds open lots), then
    expired points lots. A failure of one part is logged and does not stop the other."""
    out = {"redemptions": 0, "refunded": 0, "accounts": 0, "expired": 0, "deletions": 0}
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
    try:
        out["deletions"] = await complete_due_deletions(db, now=now, settings=settings)
    except Exception:  # logged; due deletions are completed by the next run
        log.exception("account deletion run failed")
    return out


async def run_periodically(db: Database, clock: Clock, *, interval_seconds: int, settings: Settings) -> None:
    """The server's periodic expiry task (``points.expiry_interval_seconds``; 0 turns it off)."""
    while True:
        await asyncio.sleep(interval_seconds)
        await run_expiry_once(db, now=clock(), settings=settings)
