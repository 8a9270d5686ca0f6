"""graphql-http's ``serverAudits`` (the GraphQL-over-HTTP spec's conformance audits, npm package
``graphql-http``) against a live uvicorn server on a fresh migrated SQLite database.

The npm packages of tests/audits/package-lock.json are installed once with ``npm ci`` into a cache
directory keyed by the lockfile's hash (``.venv/audits-node/<hash>``, or $JINGTAN_AUDITS_NODE_CACHE);
without npm/node the test skips with the reason, except under CI=true where it fails.

Run alone: ``.venv/bin/python -m pytest -q -s tests/test_audit_graphql_http.py`` (-s shows the table).
"""

import hashlib
import json
import os
import shutil
import subprocess
import sys
import uuid
from collections import Counter
from pathlib import Path

import pytest

from live_server import LiveServer

AUDITS_DIR = Path(__file__).resolve().parent / "audits"

# Warnings (SHOULD-level audits) accepted, by audit id: none. A warning not in this set fails the test,
# and so does an entry of this set that no longer warns.
KNOWN_WARNINGS: dict[str, str] = {}


def node_modules() -> Path:
    """The directory holding node_modules for the committed lockfile; installs it once."""
    missing = [tool for tool in ("node", "npm") if shutil.which(tool) is None]
    if missing:
        reason = f"{' and '.join(missing)} not found on PATH: the graphql-http audit needs Node 18+ and npm"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    lock = (AUDITS_DIR / "package-lock.json").read_bytes()
    digest = hashlib.sha256(lock + (AUDITS_DIR / "package.json").read_bytes()).hexdigest()[:16]
    root = Path(os.environ.get("JINGTAN_AUDITS_NODE_CACHE") or Path(sys.prefix) / "audits-node")
    target = root / digest
    if (target / "node_modules" / "graphql-http" / "package.json").exists():
        return target
    staging = root / f".{digest}-{uuid.uuid4().hex[:8]}"
    staging.mkdir(parents=True)
    for name in ("package.json", "package-lock.json"):
        shutil.copyfile(AUDITS_DIR / name, staging / name)
    result = subprocess.run(
        ["npm", "ci", "--ignore-scripts", "--no-audit", "--no-fund"],
        cwd=staging, capture_output=True, text=True, timeout=300,
    )
    if result.returncode != 0:
        shutil.rmtree(staging, ignore_errors=True)
        pytest.fail(f"npm ci failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    try:
        staging.rename(target)
    except OSError:  # another run installed it meanwhile
        shutil.rmtree(staging, ignore_errors=True)
    return target


def run_audits(cwd: Path, url: str) -> list[dict]:
    shutil.copyfile(AUDITS_DIR / "run.mjs", cwd / "run.mjs")
    result = subprocess.run(["node", "run.mjs", url], cwd=cwd, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"run.mjs failed ({result.returncode}):\n{result.stderr}"
    return json.loads(result.stdout)


def table(results: list[dict]) -> str:
    counts = Counter(r["status"] for r in results)
    lines = [f"graphql-http serverAudits: {len(results)} audits — "
             + ", ".join(f"{status} {counts.get(status, 0)}" for status in ("ok", "notice", "warn", "error"))]
    for r in results:
        if r["status"] != "ok":
            lines.append(f"  {r['status']:6} {r['id']}  {r['name']}  — {r.get('reason', '')} (HTTP {r.get('responseStatus')})")
    return "\n".join(lines)


@pytest.fixture
def audits_node() -> Path:
    return node_modules()  # before the server starts: skips (or fails under CI) without npm


@pytest.fixture
def server(databases, tmp_path):
    with LiveServer(databases.sqlite_url(), tmp_path) as live:
        yield live


def test_graphql_over_http_server_audits(audits_node, server):
    results = run_audits(audits_node, server.url)
    report = table(results)
    print("\n" + report)
    assert len(results) > 30, report  # serverAudits ran for real (graphql-http 1.22.4 has 60)
    errors = [r for r in results if r["status"] == "error"]
    assert errors == [], report
    warnings = {r["id"]: r["name"] for r in results if r["status"] == "warn"}
    new = {k: v for k, v in warnings.items() if k not in KNOWN_WARNINGS}
    gone = {k: v for k, v in KNOWN_WARNINGS.items() if k not in warnings}
    assert not new, f"new warnings: {new}\n{report}"
    assert not gone, f"no longer warned (remove from KNOWN_WARNINGS): {gone}\n{report}"
