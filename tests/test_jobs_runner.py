"""One job runner across workers: each due run of a job happens in exactly one process, never two at once;
`jingtan jobs run` / `jingtan jobs status`; a dead holder's lease is taken over when it expires."""

import asyncio
import json
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

from sqlalchemy import select

from jingtan_api import cli, jobs
from jingtan_api.db import utcnow
from jingtan_api.jobs import JL, Job, JobRunner, LeaseHeld

WORKER = Path(__file__).with_name("jobs_worker.py")


def test_three_processes_run_each_due_run_once(db_url, tmp_path):
    log_file = tmp_path / "runs.log"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    wanted = 5
    procs = [
        subprocess.Popen([sys.executable, str(WORKER), db_url, str(log_file), str(wanted)], env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        for _ in range(3)
    ]
    outputs = [p.communicate(timeout=120)[0].decode(errors="replace") for p in procs]
    assert all(p.returncode == 0 for p in procs), outputs
    lines = [line.split() for line in log_file.read_text().splitlines()]
    open_runs: dict[str, float] = {}
    runs: list[tuple[float, float, str]] = []
    for kind, pid, t, *rest in lines:
        if kind == "start":
            assert pid not in open_runs
            open_runs[pid] = float(t)
        else:
            runs.append((open_runs.pop(pid), float(t), rest[0]))
    assert not open_runs
    runs.sort()
    done = [r for r in runs if r[2] == "ok"]
    # The workers stop once 5 runs completed (one more may complete while they notice). Three
    # independent timers would have run the job three times a second, overlapping.
    assert wanted <= len(done) <= wanted + 1, runs
    for (_, end_a, _), (start_b, _, _) in zip(runs, runs[1:], strict=False):
        assert start_b >= end_a, f"two runs overlapped: {runs}"
    for (start_a, _, _), (start_b, _, _) in zip(done, done[1:], strict=False):
        assert start_b - start_a >= 0.9, f"a due run was repeated: {runs}"

    async def lease_row():
        from jingtan_api.db import Database

        db = Database(db_url)
        try:
            async with db.read() as conn:
                return (await conn.execute(select(JL).where(JL.c.name == "probe"))).one()
        finally:
            await db.dispose()

    from jingtan_api.testing import run_sync

    row = run_sync(lease_row())
    # Every claim ran exactly once. A run cut short by a worker's exit stays due (the next worker takes
    # it over at once) and is recorded as cancelled.
    assert row.runs == len(runs), (row, runs, outputs)
    assert row.holder is None and row.last_status == ("ok" if runs[-1][2] == "ok" else "cancelled"), (row, runs, outputs)


def _counting_job(calls: list) -> Job:
    async def run(app, now):
        calls.append(now)
        return {"counted": 1}

    return Job(name="counting", description="counts", run=run, interval_seconds=lambda s: 60)


async def test_run_now_refuses_while_another_worker_holds_the_lease(services):
    calls: list = []
    job = _counting_job(calls)
    other = JobRunner(services, (job,), holder="other-host:1:abc")
    now = utcnow()
    await services.db.write(lambda conn: jobs.ensure_rows(conn, (job,), first_due={}))
    assert await services.db.write(lambda conn: jobs.claim(conn, "counting", other.holder, now=now, lease=60, due_only=False))
    mine = JobRunner(services, (job,), holder="me:2:def")
    try:
        await mine.run_now(job)
        raise AssertionError("expected LeaseHeld")
    except LeaseHeld as exc:
        assert exc.holder == "other-host:1:abc"
    assert calls == []  # nothing ran
    # The holder died: once its lease has expired another worker takes the job over.
    later = now + timedelta(seconds=61)
    assert await services.db.write(lambda conn: jobs.claim(conn, "counting", mine.holder, now=later, lease=60, due_only=True))


async def test_runner_claims_a_due_job_once_and_schedules_the_next(services):
    calls: list = []
    job = _counting_job(calls)
    a = JobRunner(services, (job,), holder="a")
    b = JobRunner(services, (job,), holder="b")
    await services.db.write(lambda conn: jobs.ensure_rows(conn, (job,), first_due={"counting": utcnow() - timedelta(seconds=1)}))
    await a.tick()
    await b.tick()  # a holds the lease (or already finished and moved next_due_at 60 s on)
    for task in [*a._running.values(), *b._running.values()]:
        await task
    assert len(calls) == 1
    async with services.db.read() as conn:
        row = (await conn.execute(select(JL).where(JL.c.name == "counting"))).one()
    assert row.runs == 1 and row.holder is None and row.last_holder == "a"
    assert row.next_due_at > utcnow() + timedelta(seconds=50)
    await b.tick()
    assert not b._running and len(calls) == 1


async def test_a_stop_right_after_a_run_still_releases_its_lease(services, monkeypatch):
    # The worker is told to stop while the finished run's release is on its way to the database: the
    # release completes (status, next due time, no holder) before the stop does, instead of leaving the
    # run "running" until its lease expires and then running it again.
    calls: list = []
    job = _counting_job(calls)
    runner = JobRunner(services, (job,), holder="stopping")
    await services.db.write(lambda conn: jobs.ensure_rows(conn, (job,), first_due={"counting": utcnow() - timedelta(seconds=1)}))
    releasing, gate = asyncio.Event(), asyncio.Event()
    real_release = jobs.release

    async def slow_release(conn, *args, **kwargs):
        releasing.set()
        await gate.wait()
        return await real_release(conn, *args, **kwargs)

    monkeypatch.setattr(jobs, "release", slow_release)
    await runner.tick()
    await asyncio.wait_for(releasing.wait(), 10)
    stopping = asyncio.ensure_future(runner.stop())
    await asyncio.sleep(0.05)
    assert not stopping.done()  # waits for the release
    gate.set()
    await asyncio.wait_for(stopping, 10)
    async with services.db.read() as conn:
        row = (await conn.execute(select(JL).where(JL.c.name == "counting"))).one()
    assert len(calls) == 1 and row.runs == 1
    assert row.holder is None and row.last_status == "ok" and row.last_holder == "stopping"
    assert row.next_due_at > utcnow() + timedelta(seconds=50) and not runner._running


def test_cli_jobs_run_and_status(db_url, monkeypatch, capsys):
    monkeypatch.setenv("JINGTAN_DATABASE_URL", db_url)
    monkeypatch.setenv("JINGTAN_LOG__LEVEL", "WARNING")
    assert cli.main(["jobs", "run", "expiry"]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["job"] == "expiry" and out["expired"] == 0 and out["redemptions"] == 0
    assert cli.main(["jobs", "status", "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out.strip().splitlines()[-1])}
    expiry = rows["expiry"]
    assert expiry["last_status"] == "ok" and expiry["runs"] == 1 and expiry["holder"] is None
    assert json.loads(expiry["last_result"])["expired"] == 0
    assert expiry["next_due_at"] is not None and expiry["interval_seconds"] == 3600
    assert cli.main(["jobs", "status"]) == 0
    table = capsys.readouterr().out
    assert "expiry" in table and "ok" in table and "lease holder" in table
    assert cli.main(["jobs", "run", "no-such-job"]) == 2
    assert "no job 'no-such-job'" in capsys.readouterr().err


def test_progress_helper_plain_lines_when_not_a_terminal():
    import io

    from jingtan_api.progress import progress

    out = io.StringIO()  # not a TTY
    with progress("seeding", total=4, stream=out, every_seconds=0) as bar:
        for _ in range(4):
            bar.advance(1)
    lines = out.getvalue().splitlines()
    assert lines[0] == "seeding: 1/4 (25%)" and lines[-1] == "seeding: 4/4 (100%) done"

    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    tty = Tty()
    with progress("seeding", total=2, stream=tty) as bar:
        bar.advance(2, "members")
    assert "seeding" in tty.getvalue() and "2/2" in tty.getvalue()
