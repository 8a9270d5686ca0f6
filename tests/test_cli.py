"""The `jingtan` command line against a test database, checked through GraphQL."""

import asyncio

import pytest

from jingtan_api import cli
from jingtan_api.testing import row_counts

LOGIN = """
mutation($i: LoginInput!) {
  login(input: $i) { tokens { accessToken } user { roles displayName } userErrors { code } }
}
"""


@pytest.fixture
def cli_env(db_url, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # no jingtan.toml from the working directory
    monkeypatch.delenv("JINGTAN_CONFIG", raising=False)
    monkeypatch.delenv("JINGTAN_ADMIN_PASSWORD", raising=False)
    monkeypatch.setenv("JINGTAN_DATABASE_URL", db_url)
    monkeypatch.setenv("JINGTAN_AUTH__ARGON2_TIME_COST", "1")
    monkeypatch.setenv("JINGTAN_AUTH__ARGON2_MEMORY_COST_KIB", "64")
    monkeypatch.setenv("JINGTAN_AUTH__ARGON2_PARALLELISM", "1")
    monkeypatch.setenv("JINGTAN_LOG__LEVEL", "WARNING")
    return monkeypatch


async def run(*argv: str) -> int:
    # The CLI runs its own event loop (asyncio.run), so it runs in a thread here.
    return await asyncio.to_thread(cli.main, list(argv))


async def test_create_admin_then_log_in_as_admin(cli_env, gql, capsys):
    code = await run("create-admin", "--email", "Root@Example.CN", "--password", "Sturdy-oak-2026", "--name", "运维 Ops")
    assert code == 0
    assert "admin created" in capsys.readouterr().out
    data = await gql.ok(LOGIN, {"i": {"identifier": "root@example.cn", "password": "Sturdy-oak-2026"}})
    assert data["login"]["user"] == {"roles": ["ADMIN", "MEMBER"], "displayName": "运维 Ops"}
    token = data["login"]["tokens"]["accessToken"]
    assert "errors" not in await gql("{ auditLog(first: 1) { totalCount } }", token=token)


async def test_create_admin_with_phone_and_password_from_environment(cli_env, gql):
    cli_env.setenv("JINGTAN_ADMIN_PASSWORD", "Sturdy-oak-2026")
    assert await run("create-admin", "--phone", "+86 139 1234 5678") == 0
    data = await gql.ok(LOGIN, {"i": {"identifier": "13912345678", "password": "Sturdy-oak-2026"}})
    assert "ADMIN" in data["login"]["user"]["roles"]


@pytest.mark.parametrize(
    "argv, code, message",
    [
        (["--email", "root@example.cn", "--password", "weakweak"], 1, "WEAK_PASSWORD"),
        (["--email", "not-an-email", "--password", "Sturdy-oak-2026"], 1, "INVALID_EMAIL"),
        (["--password", "Sturdy-oak-2026"], 1, "BAD_USER_INPUT"),
        (["--email", "root@example.cn"], 2, "JINGTAN_ADMIN_PASSWORD"),  # no password, stdin is not a terminal
    ],
)
async def test_create_admin_refusals_write_nothing(cli_env, services, capsys, monkeypatch, argv, code, message):
    import io

    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    before = await row_counts(services.db)
    assert await run("create-admin", *argv) == code
    assert message in capsys.readouterr().err
    assert await row_counts(services.db) == before


async def test_create_admin_twice_is_refused(cli_env, services, capsys):
    assert await run("create-admin", "--email", "root@example.cn", "--password", "Sturdy-oak-2026") == 0
    before = await row_counts(services.db)
    assert await run("create-admin", "--email", "ROOT@example.cn", "--password", "Sturdy-oak-2026") == 1
    assert "ALREADY_REGISTERED" in capsys.readouterr().err
    assert await row_counts(services.db) == before


async def test_create_api_token_for_a_member(cli_env, gql, member, capsys, services):
    capsys.readouterr()
    assert await run("create-api-token", "--user", "MEMBER@example.cn", "--name", "erp", "--scopes", "account:read") == 0
    secret = capsys.readouterr().out.strip()
    assert secret.startswith("jt_")
    data = await gql.ok("{ viewer { id account { balance } apiTokens { name scopes } } }", token=secret)
    assert data["viewer"]["id"] == member["id"]
    assert data["viewer"]["apiTokens"] == [{"name": "erp", "scopes": ["account:read"]}]
    before = await row_counts(services.db)
    assert await run("create-api-token", "--user", "member@example.cn", "--name", "x", "--scopes", "audit:read") == 1
    assert "FORBIDDEN" in capsys.readouterr().err
    assert await run("create-api-token", "--user", "ghost@example.cn", "--name", "x", "--scopes", "account:read") == 1
    assert "NOT_FOUND" in capsys.readouterr().err
    assert await run("create-api-token", "--user", "member@example.cn", "--name", "x", "--scopes", "root") == 1
    assert "BAD_USER_INPUT" in capsys.readouterr().err
    assert await row_counts(services.db) == before


async def test_seed_demo_if_empty_loads_once_and_the_ledger_checks_out(cli_env, services, gql, capsys):
    assert await run("seed-demo", "--if-empty") == 0
    first = await row_counts(services.db)
    assert first["user_account"] == 6 and first["methodology_version"] == 3 and first["ledger_entry"] > 0
    assert await run("seed-demo", "--if-empty") == 0
    assert "skipped" in capsys.readouterr().out
    assert await row_counts(services.db) == first
    assert await run("ledger-check") == 0
    assert "ledger ok" in capsys.readouterr().out
    # A demo member can log in with the documented demo password.
    from jingtan_api.demo import DEMO_PASSWORD

    data = await gql.ok(LOGIN, {"i": {"identifier": "13800138001", "password": DEMO_PASSWORD}})
    assert data["login"]["userErrors"] == []


async def test_ledger_check_on_an_empty_database(cli_env, capsys, services):
    assert await run("ledger-check") == 0
    assert "ledger ok" in capsys.readouterr().out
