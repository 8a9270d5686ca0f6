"""Several workers, one /metrics: `jingtan serve --workers 2` writes through prometheus multiprocess mode,
so whichever worker answers a scrape reports the requests of both."""

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from jingtan_api.testing import free_port, wait_until_healthy

JINGTAN = Path(sys.executable).with_name("jingtan")


def _count(text: str, operation: str) -> float:
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "jingtan_graphql_requests_total" and sample.labels.get("operation") == operation:
                return sample.value
    return 0.0


def test_two_workers_report_one_sum(db_url, tmp_path):
    port = free_port()
    metrics_dir = tmp_path / "metrics"
    env = {k: v for k, v in os.environ.items() if not k.startswith("JINGTAN_")}
    env.update(JINGTAN_DATABASE_URL=db_url, JINGTAN_LOG__LEVEL="WARNING", JINGTAN_POINTS__EXPIRY_INTERVAL_SECONDS="0",
               JINGTAN_OPERATIONS__SHUTDOWN_DRAIN_SECONDS="0", PROMETHEUS_MULTIPROC_DIR=str(metrics_dir))
    log = (tmp_path / "serve.log").open("wb")
    proc = subprocess.Popen([str(JINGTAN), "serve", "--host", "127.0.0.1", "--port", str(port), "--workers", "2"],
                            env=env, cwd=tmp_path, stdout=log, stderr=log)
    try:
        wait_until_healthy(proc, port, timeout=90, describe=lambda: (tmp_path / "serve.log").read_text()[-3000:])
        body = json.dumps({"query": "query CountMe { __typename }"}).encode()
        sent = 40
        for _ in range(sent):
            request = urllib.request.Request(f"http://127.0.0.1:{port}/graphql", data=body,
                                             headers={"Content-Type": "application/json", "Connection": "close"})
            with urllib.request.urlopen(request, timeout=20) as r:
                assert r.status == 200
        # Both workers wrote values (one file per process and metric kind)...
        writers = {p.name.rsplit("_", 1)[-1] for p in metrics_dir.glob("counter_*.db")}
        assert len(writers) >= 2, sorted(p.name for p in metrics_dir.iterdir())
        # ...and every scrape, whichever worker answers it, reports the sum.
        for _ in range(6):
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=20) as r:
                assert _count(r.read().decode(), "CountMe") == sent
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        log.close()
    time.sleep(0)
