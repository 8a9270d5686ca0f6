"""One worker process of the three-process job test: runs the job runner with a probe job for a while.

python tests/jobs_worker.py DATABASE_URL LOG_FILE RUNS   (stops once RUNS runs completed, or after 90 s)

The probe job writes ``start <pid> <t>`` when it begins and ``end <pid> <t> <ok|cancelled>`` when it ends.
"""

import asyncio
import os
import sys
import time
from collections.abc import Mapping
from datetime import datetime

from jingtan_api.jobs import Job, JobRunner
from jingtan_api.services import Services
from jingtan_api.testing import make_settings


async def main(url: str, log_file: str, runs: int) -> None:
    settings = make_settings(url, operations={"jobs": {"poll_seconds": 0.05, "lease_seconds": 3}})
    services = Services.build(settings)

    def note(line: str) -> None:
        with open(log_file, "a") as f:
            f.write(line + "\n")

    async def probe(app: Services, now: datetime) -> Mapping[str, int]:
        note(f"start {os.getpid()} {time.time():.4f}")
        outcome = "cancelled"
        try:
            await asyncio.sleep(0.3)  # long enough that a second runner would overlap
            outcome = "ok"
        finally:
            note(f"end {os.getpid()} {time.time():.4f} {outcome}")
        return {"probed": 1}

    job = Job(name="probe", description="test probe", run=probe, interval_seconds=lambda s: 1)
    runner = JobRunner(services, (job,))
    task = asyncio.create_task(runner.run_forever())
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        await asyncio.sleep(0.05)
        if os.path.exists(log_file):
            with open(log_file) as f:
                if sum(1 for line in f if line.startswith("end ") and line.rstrip().endswith(" ok")) >= runs:
                    break
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        pass
    await services.db.dispose()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
