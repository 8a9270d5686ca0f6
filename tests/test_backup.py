"""Backup and restore round trip: a seeded PostgreSQL database is dumped with pg_dump, restored into a new
database with pg_restore (scripts/restore-drill.sh), and the copy passes `jingtan ledger-check` with the
same totals and row counts as the source."""

import json
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from jingtan_api.testing import DatabaseProvider, postgres_admin_url

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "restore-drill.sh"
JINGTAN = Path(sys.executable).with_name("jingtan")


def _env(url: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("JINGTAN_")}
    env.update(JINGTAN_DATABASE_URL=url, JINGTAN_LOG__LEVEL="WARNING", JINGTAN=str(JINGTAN),
               JINGTAN_AUTH__ARGON2_TIME_COST="1", JINGTAN_AUTH__ARGON2_MEMORY_COST_KIB="64",
               JINGTAN_AUTH__ARGON2_PARALLELISM="1")
    return env


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
def test_dump_restore_round_trip_passes_ledger_check(backend, db_url, databases: DatabaseProvider, tmp_path):
    for tool in ("pg_dump", "pg_restore", "psql"):
        if shutil.which(tool) is None:
            if os.environ.get("CI") == "true":
                pytest.fail(f"{tool} is required")
            pytest.skip(f"{tool} not installed")
    seeded = subprocess.run([str(JINGTAN), "seed-demo"], env=_env(db_url), capture_output=True, text=True, timeout=300)
    assert seeded.returncode == 0, seeded.stderr[-2000:]
    # Not a terminal: progress as plain lines on stderr (stdout keeps the command's own output).
    assert "seed-demo: " in seeded.stderr and seeded.stderr.rstrip().endswith("done"), seeded.stderr[-500:]
    source = json.loads(
        [line for line in subprocess.run([str(JINGTAN), "ledger-check", "--totals"], env=_env(db_url),
                                         capture_output=True, text=True, check=True).stdout.splitlines()
         if line.startswith("{")][0]
    )
    assert source["transactions"] > 0 and source["issued"] > 0 and source["entries_sum"] == 0
    assert source["expired"] > 0  # the demo has an expired lot
    assert source["issued"] == source["outstanding"] + source["redeemed"] + source["expired"] + source["other"]

    target = f"jt_test_restore_{uuid.uuid4().hex[:8]}"
    plain = make_url(db_url).set(drivername="postgresql").render_as_string(hide_password=False)
    try:
        drill = subprocess.run(["bash", str(SCRIPT), plain, target, str(tmp_path / "backup.dump")], env=_env(db_url),
                               capture_output=True, text=True, timeout=300)
        assert drill.returncode == 0, drill.stdout + drill.stderr
        assert "restore drill ok" in drill.stdout
        restored_url = make_url(db_url).set(database=target).render_as_string(hide_password=False)
        check = subprocess.run([str(JINGTAN), "ledger-check", "--totals"], env=_env(restored_url),
                               capture_output=True, text=True)
        assert check.returncode == 0, check.stdout + check.stderr
        assert "ledger ok" in check.stdout
        restored = json.loads([line for line in check.stdout.splitlines() if line.startswith("{")][0])
        assert restored == source
        # The drill notices a difference: restoring over a changed copy must not pass silently.
        again = subprocess.run(["bash", str(SCRIPT), plain, target], env=_env(db_url), capture_output=True, text=True)
        assert again.returncode != 0  # the target exists: refused, nothing overwritten
    finally:
        databases._pg_created.append(target)
        databases.drop_postgresql(make_url(db_url).set(database=target).render_as_string(hide_password=False))
    assert postgres_admin_url()
