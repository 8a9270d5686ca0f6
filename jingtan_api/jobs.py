"""The shape every background job shares: walk items in keyset batches, one write transaction per item,
log and skip an item that fails (the next run tries it again) instead of stalling every later item."""

import logging
from collections.abc import Awaitable, Callable

from sqlalchemy.ext.asyncio import AsyncConnection

from jingtan_api.db import Database

log = logging.getLogger("jingtan.jobs")


async def run_batched(
    db: Database,
    *,
    fetch: Callable[[AsyncConnection, int], Awaitable[list[int]]],
    process: Callable[[AsyncConnection, int], Awaitable[int]],
    batch_size: int,
    what: str,
) -> tuple[int, int]:
    """``fetch(conn, after)`` returns up to ``batch_size`` ids greater than ``after``, ascending;
    ``process(conn, id)`` handles one in its own write transaction and returns an amount (0 = nothing
    done). Returns (items that did something, total amount)."""
    done = total = 0
    after = 0
    while True:
        async with db.read() as conn:
            batch = await fetch(conn, after)
        for item in batch:
            try:
                amount = await db.write(lambda conn, i=item: process(conn, i))
            except Exception:  # noqa: BLE001 - one bad item must not stall the job for all others
                log.exception(f"{what} failed", extra={"item_id": item})
                continue
            if amount:
                done += 1
                total += amount
        if len(batch) < batch_size:
            return done, total
        after = batch[-1]
