"""The server's periodic jobs: a registry every domain adds to, and the loop that runs them.

A domain declares its periodic work as :class:`Job` values in a ``JOBS`` tuple of its own ``jobs.py`` and
names that module in :data:`JOB_MODULES` (the analogue of ``CORE_DOMAINS``). A job's ``run(app, now)``
does one pass and returns counts for the log (``{"expired": 12}``); it must be safe to run twice or in
two processes at once (idempotent, one transaction per item — ``jingtan_api.db.run_batched``), because a
crash or a second worker may repeat it. Its interval comes from the settings; 0 turns it off.

The built-in job ``expiry`` runs overdue redemptions first (their refunds open lots), then expired points
lots, every ``points.expiry_interval_seconds``.

**One runner across workers** (:class:`JobRunner`, started by :func:`run_periodically`): every job has a
row in ``job_lease``. A worker runs a job only after claiming it with one conditional UPDATE — the run is
due (``next_due_at`` passed) and nobody holds an unexpired lease — so across processes and machines
sharing the database each due run is claimed by exactly one worker, and a job never runs in two workers
at once. The holder renews its lease every third of ``operations.jobs.lease_seconds`` while the job runs;
a worker that dies mid-run loses the lease when it expires and another worker takes the job over. The
same row works on PostgreSQL (row lock of the UPDATE) and SQLite (``BEGIN IMMEDIATE`` serialises the
claim across processes), so no advisory lock is needed. Lease times are the workers' wall clocks (keep
them in sync with NTP; a skew below the lease length is harmless). ``jingtan jobs run NAME`` claims the
same lease (refusing while another worker holds it) and ``jingtan jobs status`` reads the rows.
"""

import asyncio
import importlib
import json
import logging
import os
import socket
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from jingtan_api.accounts.jobs import expire_points
from jingtan_api.db import Database, dialect_insert, utcnow
from jingtan_api.futures import run_to_completion
from jingtan_api.job_models import JobLease
from jingtan_api.observability import metrics
from jingtan_api.identity.jobs import complete_due_deletions
from jingtan_api.redemptions.jobs import expire_redemptions

if TYPE_CHECKING:
    from jingtan_api.services import Services
    from jingtan_api.settings import Settings

log = logging.getLogger("jingtan.jobs")


@dataclass(frozen=True)
class Job:
    name: str
    description: str
    run: Callable[["Services", datetime], Awaitable[Mapping[str, int]]]
    interval_seconds: Callable[["Settings"], int]


# Modules with a ``JOBS: tuple[Job, ...]``, in the order their jobs run when due together.
JOB_MODULES: tuple[str, ...] = (
    "jingtan_api.jobs",
    "jingtan_api.volunteers.jobs",
    "jingtan_api.campaigns.jobs",
    "jingtan_api.methodologies.jobs",
    "jingtan_api.challenges.jobs",
    "jingtan_api.webhooks.jobs",
    "jingtan_api.notifications.jobs",
)


async def run_expiry_once(db: Database, *, now: datetime, settings: "Settings") -> dict[str, int]:
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


async def _expiry(app: "Services", now: datetime) -> Mapping[str, int]:
    return await run_expiry_once(app.db, now=now, settings=app.settings)


JOBS: tuple[Job, ...] = (
    Job(
        name="expiry",
        description="Expire overdue redemptions (refunding them), then expired points lots / 过期兑换退还与积分到期",
        run=_expiry,
        interval_seconds=lambda settings: settings.points.expiry_interval_seconds,
    ),
)


def registered_jobs() -> tuple[Job, ...]:
    """Every job of every module in JOB_MODULES; names are unique."""
    jobs: list[Job] = []
    for name in JOB_MODULES:
        jobs.extend(importlib.import_module(name).JOBS)
    names = [job.name for job in jobs]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise RuntimeError(f"job names registered twice: {', '.join(duplicates)}")
    return tuple(jobs)


async def run_job(app: "Services", job: Job, *, now: datetime | None = None) -> dict[str, Any]:
    """One pass of ``job``; a failure is logged and answered as ``{"failed": 1}`` (the next run retries).
    Counts ``jingtan_job_runs_total``, ``jingtan_job_items_total`` and the run's duration."""
    start = time.perf_counter()
    try:
        result = dict(await job.run(app, now or app.clock()))
    except Exception:  # noqa: BLE001 - one job's failure must not stop the others or the server
        log.exception("job failed", extra={"job": job.name})
        metrics.JOB_RUNS.labels(job=job.name, outcome="failed").inc()
        return {"failed": 1}
    finally:
        metrics.JOB_DURATION.labels(job=job.name).observe(time.perf_counter() - start)
    metrics.JOB_RUNS.labels(job=job.name, outcome="ok").inc()
    metrics.JOB_LAST_SUCCESS.labels(job=job.name).set(time.time())
    for kind, value in result.items():
        if isinstance(value, int) and value > 0:
            metrics.JOB_ITEMS.labels(job=job.name, kind=kind).inc(value)
    log.info("job ran", extra={"job": job.name, **{f"n_{k}": v for k, v in result.items()}})
    return result


# --- one runner across workers ---------------------------------------------------------------------

JL = JobLease.__table__


def worker_id() -> str:
    """Who holds a lease: host, process and a random part (a restarted process is a new holder)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


class LeaseHeld(Exception):
    """``jingtan jobs run`` found the job running in another worker."""

    def __init__(self, name: str, holder: str | None, until: datetime | None) -> None:
        super().__init__(f"job {name} is running in {holder} (lease until {until:%Y-%m-%d %H:%M:%S} UTC)" if until else name)
        self.holder = holder
        self.until = until


async def ensure_rows(conn: AsyncConnection, jobs: tuple[Job, ...], *, first_due: Mapping[str, datetime]) -> None:
    """One row per job; an existing row (and so its schedule) is kept."""
    for job in jobs:
        await conn.execute(
            dialect_insert(conn, JL)
            .values(name=job.name, next_due_at=first_due.get(job.name), last_result="{}", runs=0)
            .on_conflict_do_nothing(index_elements=["name"])
        )


async def claim(conn: AsyncConnection, name: str, holder: str, *, now: datetime, lease: float, due_only: bool) -> bool:
    """Take the job's lease when nobody holds it (and, with ``due_only``, when the run is due)."""
    stmt = (
        update(JL)
        .where(JL.c.name == name)
        .where((JL.c.lease_until.is_(None)) | (JL.c.lease_until < now))
        .values(holder=holder, lease_until=now + timedelta(seconds=lease), last_started_at=now,
                last_status="running", runs=JL.c.runs + 1)
    )
    if due_only:
        stmt = stmt.where((JL.c.next_due_at.is_(None)) | (JL.c.next_due_at <= now))
    return (await conn.execute(stmt)).rowcount == 1


async def renew(conn: AsyncConnection, name: str, holder: str, *, now: datetime, lease: float) -> bool:
    stmt = update(JL).where(JL.c.name == name, JL.c.holder == holder).values(lease_until=now + timedelta(seconds=lease))
    return (await conn.execute(stmt)).rowcount == 1


async def release(
    conn: AsyncConnection, name: str, holder: str, *, now: datetime, status: str, result: Mapping[str, Any],
    next_due: datetime | None,
) -> bool:
    values: dict[str, Any] = dict(holder=None, lease_until=None, last_finished_at=now, last_status=status,
                                  last_result=json.dumps(dict(result), default=str)[:2000], last_holder=holder)
    if next_due is not None:
        values["next_due_at"] = next_due
    stmt = update(JL).where(JL.c.name == name, JL.c.holder == holder).values(**values)
    return (await conn.execute(stmt)).rowcount == 1


async def job_status(db: Database) -> list[dict[str, Any]]:
    """Every job's row, for ``jingtan jobs status`` (registered jobs without a row yet included)."""
    async with db.read() as conn:
        rows = {r.name: dict(r._mapping) for r in await conn.execute(select(JL).order_by(JL.c.name))}
    out = []
    for job in registered_jobs():
        row = rows.pop(job.name, None) or {"name": job.name, "runs": 0, "last_result": "{}"}
        out.append({**row, "description": job.description, "registered": True})
    out.extend({**row, "description": "", "registered": False} for row in rows.values())
    return out


class JobRunner:
    """Runs the due jobs of ``jobs`` in this worker, each only while holding its lease (module docstring)."""

    def __init__(self, app: "Services", jobs: tuple[Job, ...] | None = None, *, holder: str | None = None) -> None:
        self.app = app
        cfg = app.settings.operations.jobs
        self.lease = cfg.lease_seconds
        self.poll = cfg.poll_seconds
        self.holder = holder or worker_id()
        all_jobs = registered_jobs() if jobs is None else jobs
        self.jobs = tuple(job for job in all_jobs if job.interval_seconds(app.settings) > 0)
        self._running: dict[str, asyncio.Task] = {}

    async def run_forever(self) -> None:
        if not self.jobs:
            return
        ready = False
        try:
            while True:
                try:
                    if not ready:
                        await self._ensure_rows()
                        ready = True
                    await self.tick()
                except asyncio.CancelledError:
                    raise
                except Exception:  # noqa: BLE001 - the database may be away for a while; try again later
                    log.exception("job runner tick failed")
                await asyncio.sleep(self.poll)
        finally:
            await self.stop()

    async def _ensure_rows(self) -> None:
        now = utcnow()
        first_due = {job.name: now + timedelta(seconds=job.interval_seconds(self.app.settings)) for job in self.jobs}
        await self.app.db.write(lambda conn: ensure_rows(conn, self.jobs, first_due=first_due))

    async def tick(self) -> None:
        """Claim and start every due job not already running here. One read finds the candidates, so an
        idle tick takes no write lock (SQLite has one writer)."""
        now = utcnow()
        async with self.app.db.read() as conn:
            rows = {r.name: r for r in await conn.execute(select(JL.c.name, JL.c.next_due_at, JL.c.lease_until))}
        for job in self.jobs:
            row = rows.get(job.name)
            if job.name in self._running or row is None:
                continue
            if (row.next_due_at is not None and row.next_due_at > now) or (row.lease_until is not None and row.lease_until >= now):
                continue
            now = utcnow()
            claimed = await self.app.db.write(
                lambda conn, n=job.name, t=now: claim(conn, n, self.holder, now=t, lease=self.lease, due_only=True)
            )
            if claimed:
                self._running[job.name] = asyncio.create_task(self._run_claimed(job, now), name=f"job:{job.name}")

    async def run_now(self, job: Job) -> dict[str, Any]:
        """Run ``job`` at once under its lease (``jingtan jobs run``); LeaseHeld when another worker has it."""
        now = utcnow()
        await self.app.db.write(lambda conn: ensure_rows(conn, (job,), first_due={}))
        if not await self.app.db.write(lambda conn: claim(conn, job.name, self.holder, now=now, lease=self.lease, due_only=False)):
            async with self.app.db.read() as conn:
                row = (await conn.execute(select(JL.c.holder, JL.c.lease_until).where(JL.c.name == job.name))).one()
            raise LeaseHeld(job.name, row.holder, row.lease_until)
        return await self._run_claimed(job, now)

    async def _run_claimed(self, job: Job, started: datetime) -> dict[str, Any]:
        heartbeat = asyncio.create_task(self._heartbeat(job.name))
        result: dict[str, Any] = {"cancelled": 1}
        cancelled = True
        try:
            result = await run_job(self.app, job)
            cancelled = False
        finally:
            heartbeat.cancel()
            interval = job.interval_seconds(self.app.settings)
            # A run cut short by a shutdown stays due: another worker takes it at once.
            next_due = started + timedelta(seconds=interval) if interval > 0 and not cancelled else None
            status = "cancelled" if cancelled else ("failed" if result.get("failed") else "ok")
            try:
                # Released even when this worker stops meanwhile (a shutdown right after the run ended):
                # otherwise the run would stay "running" until the lease expired and then run again.
                kept = await run_to_completion(self.app.db.write(
                    lambda conn: release(conn, job.name, self.holder, now=utcnow(), status=status, result=result,
                                         next_due=next_due)
                ))
                if not kept:
                    log.warning("job lease was lost while running", extra={"job": job.name, "holder": self.holder})
            except Exception:  # noqa: BLE001 - the lease expires by itself
                log.exception("could not release job lease", extra={"job": job.name})
            finally:
                self._running.pop(job.name, None)
        return result

    async def _heartbeat(self, name: str) -> None:
        while True:
            await asyncio.sleep(self.lease / 3)
            try:
                await self.app.db.write(lambda conn: renew(conn, name, self.holder, now=utcnow(), lease=self.lease))
            except Exception:  # noqa: BLE001 - try again on the next beat
                log.exception("could not renew job lease", extra={"job": name})

    async def stop(self) -> None:
        """Cancel this worker's running jobs (their leases are released by _run_claimed)."""
        tasks = list(self._running.values())
        for task in tasks:
            task.cancel()
        for task in tasks:
            try:
                await task
            except BaseException:  # noqa: BLE001 - cancelled or failed: already logged
                pass


async def run_periodically(app: "Services", jobs: tuple[Job, ...] | None = None) -> None:
    """Run every enabled job every ``interval_seconds(settings)`` until cancelled, in one worker at a time
    across all processes sharing the database (:class:`JobRunner`). ``operations.jobs.enabled = false``
    keeps this process out of it."""
    if not app.settings.operations.jobs.enabled:
        return
    await JobRunner(app, jobs).run_forever()
