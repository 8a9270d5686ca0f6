"""A real API server process for the audits: ``python -m uvicorn --factory jingtan_api.app:create_app``
on a free loopback port, configured only through JINGTAN_* environment variables (as an operator would),
started on a database that the test owns. Stopped (or killed) by its own pid only.
"""

import os
import signal
import subprocess
import sys
from pathlib import Path

from jingtan_api.testing import free_port, wait_until_healthy

# cheap argon2 so that the tests can register users; log warnings only
BASE_ENV = {
    "JINGTAN_AUTH__ARGON2_TIME_COST": "1",
    "JINGTAN_AUTH__ARGON2_MEMORY_COST_KIB": "64",
    "JINGTAN_AUTH__ARGON2_PARALLELISM": "1",
    "JINGTAN_POINTS__EXPIRY_INTERVAL_SECONDS": "0",
    "JINGTAN_LOG__LEVEL": "WARNING",
    "JINGTAN_IDENTITY__REQUIRE_VERIFIED_CONTACT": "false",
    # No readiness drain on SIGTERM (5 s by default): each server's stop waited for it. tests/test_shutdown.py
    # sets its own drain and checks /readyz during it.
    "JINGTAN_OPERATIONS__SHUTDOWN_DRAIN_SECONDS": "0",
}



class LiveServer:
    """``with LiveServer(db_url, workdir) as server: server.url`` — waits for /healthz before returning."""

    def __init__(self, database_url: str, workdir: Path, *, env: dict[str, str] | None = None, port: int | None = None) -> None:
        self.database_url = database_url
        self.workdir = workdir
        self.extra_env = env or {}
        self.port = port or free_port()
        self.proc: subprocess.Popen | None = None
        self.log_path = workdir / f"server-{self.port}.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/graphql"

    def environment(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("JINGTAN_")}
        env.update(BASE_ENV)
        env["JINGTAN_DATABASE_URL"] = self.database_url  # cwd is the test's directory: no jingtan.toml
        env.update(self.extra_env)
        return env

    def start(self) -> "LiveServer":
        cmd = [
            sys.executable, "-m", "uvicorn", "--factory", "jingtan_api.app:create_app",
            "--host", "127.0.0.1", "--port", str(self.port), "--workers", "1",
            "--no-access-log", "--log-level", "warning",
        ]
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(cmd, env=self.environment(), cwd=self.workdir, stdout=log, stderr=log)
        log.close()
        try:
            wait_until_healthy(self.proc, self.port, timeout=90, describe=lambda: "\n" + self.log())
        except RuntimeError:
            self.stop()
            raise
        return self

    def kill(self) -> None:
        """SIGKILL: no shutdown handler runs, open transactions are cut off."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-4000:]
        except OSError:
            return ""

    def __enter__(self) -> "LiveServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
