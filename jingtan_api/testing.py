"""Test helpers shipped with the package (used by our tests and by plugin authors' tests).

* :func:`make_settings` — settings from defaults plus overrides only (no environment, no jingtan.toml),
  with cheap argon2 parameters so tests can register many users.
* :class:`DatabaseProvider` — fresh, migrated databases per test: SQLite files copied from a migrated
  template, PostgreSQL databases ``jt_test_<random>`` cloned from a migrated template database (ahead of
  need, in the background) and dropped afterwards (in the background).
* :class:`GraphQLClient` — posts operations to an app over HTTP (httpx ASGI transport).
* :class:`FrozenClock` — a settable clock for expiry and claim-window tests.
"""

import asyncio
import collections
import concurrent.futures
import os
import shutil
import socket
import subprocess
import threading
import time
import urllib.request
import uuid
from collections.abc import Coroutine
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import httpx

import jingtan_api.models  # noqa: F401 - registers every table (row_counts)
from jingtan_api.migrate import upgrade
from jingtan_api.settings import Settings

T = TypeVar("T")

DEFAULT_PG_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


def make_settings(database_url: str, **overrides: Any) -> Settings:
    class _TestSettings(Settings):
        @classmethod
        def settings_customise_sources(cls, settings_cls, init_settings, *args: Any, **kwargs: Any):
            return (init_settings,)

    auth = {"argon2_time_cost": 1, "argon2_memory_cost_kib": 64, "argon2_parallelism": 1}
    auth.update(overrides.pop("auth", {}))
    points = {"expiry_interval_seconds": 0}
    points.update(overrides.pop("points", {}))
    log = {"level": "WARNING"}
    log.update(overrides.pop("log", {}))
    limits = {"rate_limiting": False}
    limits.update(overrides.pop("limits", {}))
    # Tests of other domains earn and redeem with unverified members; tests of the gate turn it on.
    identity = {"require_verified_contact": False}
    identity.update(overrides.pop("identity", {}))
    # Test apps run no periodic jobs unless a test asks (operations.jobs.enabled): tests call jobs directly.
    # Plugins' verify/calculate run on a thread with a deadline (5 s by default); on a loaded CI machine
    # a first call has been seen to take longer. Tests of the deadline set their own.
    plugins = {"timeout_seconds": 30.0}
    plugins.update(overrides.pop("plugins", {}))
    operations = dict(overrides.pop("operations", {}))
    operations["jobs"] = {"enabled": False, **operations.get("jobs", {})}
    return _TestSettings(
        database_url=database_url, auth=auth, points=points, log=log, limits=limits, identity=identity,
        operations=operations, plugins=plugins, **overrides,
    )


class FrozenClock:
    def __init__(self, now: datetime | None = None) -> None:
        self.now = now or datetime(2026, 6, 1, 8, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **kwargs: float) -> datetime:
        self.now += timedelta(**kwargs)
        return self.now


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to completion from sync code, even when an event loop is running."""
    result: dict[str, Any] = {}

    def target() -> None:
        try:
            result["value"] = asyncio.run(coro)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
            result["error"] = exc

    thread = threading.Thread(target=target)
    thread.start()
    thread.join()
    if "error" in result:
        raise result["error"]
    return result["value"]


def postgres_admin_url() -> str:
    return os.environ.get("JINGTAN_TEST_POSTGRES_URL") or DEFAULT_PG_ADMIN_URL


async def _pg_available(url: str) -> str | None:
    import asyncpg

    try:
        conn = await asyncio.wait_for(asyncpg.connect(url), timeout=3)
    except Exception as exc:  # noqa: BLE001 - any failure means unavailable
        return f"{type(exc).__name__}: {exc}"
    await conn.close()
    return None


def postgres_unavailable_reason() -> str | None:
    """None when a PostgreSQL server answers at JINGTAN_TEST_POSTGRES_URL (or 127.0.0.1:5432)."""
    reason = run_sync(_pg_available(postgres_admin_url()))
    return None if reason is None else f"PostgreSQL not reachable at {postgres_admin_url()}: {reason}"


def _asyncpg_url(url: str, database: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).set(drivername="postgresql+asyncpg", database=database).render_as_string(hide_password=False)


def _plain_url(url: str, database: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).set(drivername="postgresql", database=database).render_as_string(hide_password=False)


class DatabaseProvider:
    """Hands out fresh migrated databases; call :meth:`close` at the end of the session.

    PostgreSQL databases are cloned from the template and dropped in background threads: a clone or a
    drop takes the server a few hundred milliseconds (it writes and syncs the copy), so ``postgresql_url``
    hands out a clone made while the previous test ran (``PG_READY`` are kept ahead) and
    ``drop_postgresql`` returns at once. Every test still gets a database of its own."""

    PG_READY = 2

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.run_id = uuid.uuid4().hex[:8]
        self._sqlite_template: Path | None = None
        self._pg_template: str | None = None
        self._pg_created: list[str] = []
        self._pg_ready: collections.deque[concurrent.futures.Future[str]] = collections.deque()
        self._pg_pool: concurrent.futures.ThreadPoolExecutor | None = None
        self._lock = threading.Lock()

    # --- SQLite -----------------------------------------------------------------------------------

    def sqlite_url(self) -> str:
        with self._lock:
            if self._sqlite_template is None:
                template = self.workdir / "template.db"
                upgrade(f"sqlite+aiosqlite:///{template}")
                self._sqlite_template = template
        target = self.workdir / f"db-{uuid.uuid4().hex[:10]}.db"
        shutil.copyfile(self._sqlite_template, target)
        return f"sqlite+aiosqlite:///{target}"

    # --- PostgreSQL -------------------------------------------------------------------------------

    def postgresql_url(self) -> str:
        admin = postgres_admin_url()
        with self._lock:
            if self._pg_template is None:
                name = f"jt_test_{self.run_id}_tpl"
                run_sync(self._execute(admin, f'CREATE DATABASE "{name}"'))
                self._pg_created.append(name)
                upgrade(_asyncpg_url(admin, name))
                self._pg_template = name
                self._pg_pool = concurrent.futures.ThreadPoolExecutor(max_workers=2, thread_name_prefix="jt-test-db")
            if not self._pg_ready:
                self._pg_ready.append(self._submit_clone(admin))
            ready = self._pg_ready.popleft()
            while len(self._pg_ready) < self.PG_READY:
                self._pg_ready.append(self._submit_clone(admin))
        return _asyncpg_url(admin, ready.result())

    def _submit_clone(self, admin: str) -> "concurrent.futures.Future[str]":
        assert self._pg_pool is not None and self._pg_template is not None
        name = f"jt_test_{self.run_id}_{uuid.uuid4().hex[:8]}"
        self._pg_created.append(name)
        sql = f'CREATE DATABASE "{name}" TEMPLATE "{self._pg_template}"'
        return self._pg_pool.submit(lambda: (asyncio.run(self._execute(admin, sql)), name)[1])

    def drop_postgresql(self, url: str) -> None:
        """Drop a database this provider made (in the background) or another one of the test's (now)."""
        from sqlalchemy.engine import make_url

        name = make_url(url).database
        sql = f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'
        with self._lock:
            mine = name in self._pg_created
            if mine:
                self._pg_created.remove(name)
            pool = self._pg_pool
        if mine and pool is not None:
            pool.submit(lambda: asyncio.run(self._execute(postgres_admin_url(), sql)))
            return
        run_sync(self._execute(postgres_admin_url(), sql))

    @staticmethod
    async def _execute(url: str, sql: str) -> None:
        import asyncpg

        from sqlalchemy.engine import make_url

        conn = await asyncpg.connect(_plain_url(url, make_url(url).database or "postgres"))
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    def close(self) -> None:
        """Wait for the background clones and drops, then drop what is left (the clones made ahead and
        the template)."""
        with self._lock:
            pool, self._pg_pool = self._pg_pool, None
            self._pg_ready.clear()
        if pool is not None:
            pool.shutdown(wait=True)
        admin = postgres_admin_url()
        for name in reversed(self._pg_created):
            run_sync(self._execute(admin, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        self._pg_created.clear()


class GraphQLClient:
    """POSTs GraphQL operations to an ASGI app, as a frontend would."""

    def __init__(self, app: Any, *, token: str | None = None, client_address: str = "127.0.0.1") -> None:
        self.app = app
        self.token = token
        self.http = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app, client=(client_address, 50000)),
            base_url="http://testserver",
            timeout=60,
        )

    async def __call__(
        self, query: str, variables: dict | None = None, *, token: str | None = None, headers: dict | None = None
    ) -> dict:
        hdrs = dict(headers or {})
        bearer = token if token is not None else self.token
        if bearer:
            hdrs["Authorization"] = f"Bearer {bearer}"
        response = await self.http.post("/graphql", json={"query": query, "variables": variables or {}}, headers=hdrs)
        assert response.status_code == 200, response.text
        return response.json()

    async def ok(self, query: str, variables: dict | None = None, **kwargs: Any) -> dict:
        """Execute and assert there are no GraphQL errors; returns ``data``."""
        body = await self(query, variables, **kwargs)
        assert not body.get("errors"), body["errors"]
        return body["data"]

    def as_user(self, token: str) -> "GraphQLClient":
        clone = GraphQLClient.__new__(GraphQLClient)
        clone.app, clone.token, clone.http = self.app, token, self.http
        return clone

    async def aclose(self) -> None:
        await self.http.aclose()


REGISTER = """
mutation Register($input: RegisterInput!) {
  register(input: $input) {
    user { id displayName }
    tokens { accessToken refreshToken }
    userErrors { code message field }
  }
}
"""


async def register_member(
    client: GraphQLClient, *, email: str | None = None, phone: str | None = None,
    password: str = "Green-leaf-2026", display_name: str = "测试用户 Test User",
) -> dict:
    """Register through GraphQL; returns {"id", "token", "refresh"}."""
    if email is None and phone is None:
        email = f"user-{uuid.uuid4().hex[:10]}@example.cn"
    data = await client.ok(
        REGISTER,
        {"input": {"email": email, "phone": phone, "password": password, "displayName": display_name}},
    )
    payload = data["register"]
    assert payload["userErrors"] == [], payload["userErrors"]
    return {
        "id": payload["user"]["id"],
        "token": payload["tokens"]["accessToken"],
        "refresh": payload["tokens"]["refreshToken"],
        "email": email,
        "phone": phone,
        "password": password,
    }


async def row_counts(db: Any) -> dict[str, int]:
    """Number of rows in every table, to check that a refused operation wrote nothing."""
    from sqlalchemy import func, select
    from sqlmodel import SQLModel

    async with db.read() as conn:
        return {
            name: (await conn.execute(select(func.count()).select_from(table))).scalar_one()
            for name, table in sorted(SQLModel.metadata.tables.items())
        }


# --- real server processes -------------------------------------------------------------------------------


def free_port() -> int:
    """A loopback port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until_healthy(proc: subprocess.Popen, port: int, *, timeout: float = 60, describe=lambda: "") -> None:
    """Poll ``/healthz`` of a server process until it answers 200; RuntimeError (with ``describe()``, e.g.
    the server's log) when the process exits or ``timeout`` seconds pass."""
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} during startup: {describe()}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"server did not answer /healthz within {timeout:.0f} s: {describe()}")
        time.sleep(0.1)
