"""Ledger totals for the gauges and for ``jingtan ledger-check --totals``: one grouped read of the cached
account balances (no scan of entries), refreshed at most every ``metrics.ledger_refresh_seconds``."""

import time

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from jingtan_api.accounts.models import Account, LedgerEntry, LedgerTransaction
from jingtan_api.accounts.service import EXPIRED, ISSUANCE, MEMBER, MERCHANT
from jingtan_api.db import Database
from jingtan_api.observability import metrics

A = Account.__table__


async def ledger_totals(conn: AsyncConnection) -> dict[str, int]:
    """issued (net of revokes: minus the issuance account), redeemed (merchant balances), expired,
    outstanding (member balances), other (accounts of any other kind). In a balanced ledger
    issued = outstanding + redeemed + expired + other."""
    rows = (await conn.execute(select(A.c.kind, func.coalesce(func.sum(A.c.balance), 0)).group_by(A.c.kind))).all()
    by_kind = {kind: int(total) for kind, total in rows}
    return {
        "issued": -by_kind.get(ISSUANCE, 0),
        "redeemed": by_kind.get(MERCHANT, 0),
        "expired": by_kind.get(EXPIRED, 0),
        "outstanding": by_kind.get(MEMBER, 0),
        "other": sum(v for k, v in by_kind.items() if k not in (ISSUANCE, MERCHANT, EXPIRED, MEMBER)),
    }


async def ledger_counts(conn: AsyncConnection) -> dict[str, int]:
    """Row counts and the sum of all entries (0 in a balanced ledger), for comparing two copies."""
    tx = LedgerTransaction.__table__
    e = LedgerEntry.__table__
    return {
        "accounts": (await conn.execute(select(func.count()).select_from(A))).scalar_one(),
        "transactions": (await conn.execute(select(func.count()).select_from(tx))).scalar_one(),
        "entries": (await conn.execute(select(func.count()).select_from(e))).scalar_one(),
        "entries_sum": int((await conn.execute(select(func.coalesce(func.sum(e.c.amount), 0)))).scalar_one()),
    }


class LedgerGauges:
    """Sets ``jingtan_ledger_points{total=...}`` when a scrape finds the values older than ``max_age``."""

    def __init__(self, db: Database, *, max_age: float) -> None:
        self.db = db
        self.max_age = max_age
        self._read_at: float | None = None

    async def refresh(self, *, force: bool = False) -> None:
        now = time.monotonic()
        if not force and self._read_at is not None and now - self._read_at < self.max_age:
            return
        async with self.db.read() as conn:
            totals = await ledger_totals(conn)
        for name, value in totals.items():
            metrics.LEDGER_POINTS.labels(total=name).set(value)
        metrics.LEDGER_REFRESHED.set(time.time())
        self._read_at = now
