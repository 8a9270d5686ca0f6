"""Shared fixtures.

Database-facing tests take the ``db_url`` fixture (or anything built on it) and run once on SQLite and
once on PostgreSQL. PostgreSQL runs when JINGTAN_TEST_POSTGRES_URL is set or a server answers on
127.0.0.1:5432; otherwise those tests skip with the reason. With JINGTAN_TEST_REQUIRE_POSTGRES=1 (set by
.ci/run) a missing server fails the run instead. When JINGTAN_TEST_PG_REPORT names a file, the number
of PostgreSQL tests that passed is written there at the end (.ci/run checks it is not zero).
"""

import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from jingtan_api.users import service as users_service
from jingtan_api.app import create_app
from jingtan_api.testing import (
    DatabaseProvider,
    FrozenClock,
    GraphQLClient,
    make_settings,
    postgres_unavailable_reason,
    register_member,
)

BACKENDS = ["sqlite", "postgresql"]
_pg_passed = 0
_pg_reason: str | None = None
_pg_checked = False


def _postgres_reason() -> str | None:
    global _pg_checked, _pg_reason
    if not _pg_checked:
        _pg_reason = postgres_unavailable_reason()
        _pg_checked = True
    return _pg_reason


@pytest.fixture(scope="session")
def databases(tmp_path_factory) -> DatabaseProvider:
    provider = DatabaseProvider(tmp_path_factory.mktemp("databases"))
    yield provider
    provider.close()


@pytest.fixture(params=BACKENDS)
def backend(request) -> str:
    if request.param == "postgresql":
        reason = _postgres_reason()
        if reason:
            if os.environ.get("JINGTAN_TEST_REQUIRE_POSTGRES") == "1":
                pytest.fail(f"PostgreSQL is required (JINGTAN_TEST_REQUIRE_POSTGRES=1): {reason}")
            pytest.skip(reason)
    return request.param


@pytest.fixture
def db_url(backend: str, databases: DatabaseProvider) -> str:
    if backend == "sqlite":
        yield databases.sqlite_url()
        return
    url = databases.postgresql_url()
    yield url
    databases.drop_postgresql(url)


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock()


@pytest.fixture
def settings_overrides() -> dict:
    """Override in a test module to change settings for its app."""
    return {}


@pytest.fixture
def settings(db_url: str, settings_overrides: dict):
    return make_settings(db_url, **settings_overrides)


@pytest.fixture
async def app(settings, clock):
    application = create_app(settings, clock=clock)
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
async def services(app):
    return app.state.services


@pytest.fixture
async def gql(app) -> AsyncIterator[GraphQLClient]:
    client = GraphQLClient(app)
    yield client
    await client.aclose()


@pytest.fixture
async def member(gql) -> dict:
    return await register_member(gql, email="member@example.cn", display_name="李雷 Li Lei")


ADMIN_EMAIL = "ops-lead@example.cn"
ADMIN_PASSWORD = "Sturdy-oak-2026"


@pytest.fixture
async def admin(gql, services, clock) -> dict:
    user_id = await users_service.create_admin(
        services,
        email=ADMIN_EMAIL, phone=None, password=ADMIN_PASSWORD, display_name="管理员 Admin", now=clock()
    )
    data = await gql.ok(
        "mutation($i: LoginInput!) { login(input: $i) { tokens { accessToken } user { id } userErrors { code } } }",
        {"i": {"identifier": ADMIN_EMAIL, "password": ADMIN_PASSWORD}},
    )
    return {
        "pk": user_id,
        "id": data["login"]["user"]["id"],
        "token": data["login"]["tokens"]["accessToken"],
        "email": ADMIN_EMAIL,
        "password": ADMIN_PASSWORD,
    }


def pytest_runtest_logreport(report) -> None:
    global _pg_passed
    if report.when == "call" and report.passed and "[postgresql" in report.nodeid:
        _pg_passed += 1


def pytest_sessionfinish(session, exitstatus) -> None:
    target = os.environ.get("JINGTAN_TEST_PG_REPORT")
    if target:
        Path(target).write_text(f"{_pg_passed}\n")


def pytest_terminal_summary(terminalreporter) -> None:
    terminalreporter.write_line(f"PostgreSQL tests passed: {_pg_passed}")


OPERATIONS_DIR = Path(__file__).resolve().parent.parent / "schema" / "operations"


@pytest.fixture(scope="session")
def operation():
    """``operation("account/Login")`` -> the text of schema/operations/account/Login.graphql."""

    def load(name: str) -> str:
        return (OPERATIONS_DIR / f"{name}.graphql").read_text(encoding="utf-8")

    return load
