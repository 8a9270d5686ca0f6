"""One worker process of the three-process job test: runs the job runner with a probe job for a while.

python tests/jobs_worker.py DATABASE_URL LOG_FILE SECONDS
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


async def main(url: str, log_file: str, seconds: float) -> None:
    settings = make_settings(url, operations={"jobs": {"poll_seconds": 0.05, "lease_seconds": 3}})
    services = Services.build(settings)

    async def probe(app: Services, now: datetime) -> Mapping[str, int]:
        start = time.time()
        await asyncio.sleep(0.3)  # long enough that a second runner would overlap
        with open(log_file, "a") as f:
            f.write(f"{os.getpid()} {start:.4f} {time.time():.4f}\n")
        return {"probed": 1}

    job = Job(name="probe", description="test probe", run=probe, interval_seconds=lambda s: 1)
    runner = JobRunner(services, (job,))
    task = asyncio.create_task(runner.run_forever())
    await asyncio.sleep(seconds)
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        pass
    await services.db.dispose()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], float(sys.argv[3])))
