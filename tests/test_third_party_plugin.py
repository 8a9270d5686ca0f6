"""The third-party path: examples/byo_cup is pip-installed as its own distribution, found through its entry
point, listed in actionTypes and accepted only when enabled; its own tests pass."""

import importlib
import importlib.metadata
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest

from jingtan_api.app import create_app
from jingtan_api.testing import GraphQLClient, make_settings, register_member
from tests.actions_helpers import balance, submit

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "byo_cup"


def _installed() -> bool:
    try:
        importlib.metadata.distribution("jingtan-byo-cup")
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


@pytest.fixture(scope="module")
def byo_cup_installed():
    if not _installed():
        base = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps"]
        result = subprocess.run([*base, "--no-build-isolation", "-e", str(EXAMPLE)], check=False, capture_output=True, text=True)
        if result.returncode != 0:  # old setuptools without bdist_wheel in the venv: let pip build it isolated
            result = subprocess.run([*base, "-e", str(EXAMPLE)], check=False, capture_output=True, text=True)
        assert result.returncode == 0, result.stderr
        importlib.invalidate_caches()
    assert _installed()
    try:
        importlib.import_module("jingtan_byo_cup")
    except ImportError:  # an editable install made during this process: its path hook starts next process
        sys.path.insert(0, str(EXAMPLE))
        importlib.invalidate_caches()
    eps = importlib.metadata.entry_points(group="jingtan.plugins")
    assert "byo_cup" in {ep.name for ep in eps}


QUERY = "{ actionTypes { code nameZh methodology { factors { id } } } }"


async def _app(db_url, clock, enabled):
    return create_app(make_settings(db_url, plugins={"enabled": enabled}), clock=clock)


async def test_listed_and_accepted_only_when_enabled(byo_cup_installed, db_url, clock):
    served = (clock() - timedelta(minutes=5)).isoformat()
    data = {"cafeId": "C1", "orderId": "O-1", "cups": 2, "servedAt": served}

    off = await _app(db_url, clock, ["transit"])
    async with off.router.lifespan_context(off):
        client = GraphQLClient(off)
        codes = [t["code"] for t in (await client.ok(QUERY))["actionTypes"]]
        assert codes == ["transit"]
        user = await register_member(client, email="cup@example.cn")
        body = await client("mutation($i: SubmitActionInput!) { submitAction(input: $i) { action { id } } }",
                            {"i": {"action": {"byoCup": data}, "idempotencyKey": "c1"}}, token=user["token"])
        assert body["errors"] and "byoCup" in body["errors"][0]["message"]
        await client.aclose()

    on = await _app(db_url, clock, ["transit", "byo_cup"])
    async with on.router.lifespan_context(on):
        client = GraphQLClient(on)
        types = {t["code"]: t for t in (await client.ok(QUERY))["actionTypes"]}
        assert set(types) == {"transit", "byo_cup"} and types["byo_cup"]["nameZh"] == "自带杯"
        login = await client.ok("mutation($i: LoginInput!) { login(input: $i) { tokens { accessToken } } }",
                                {"i": {"identifier": "cup@example.cn", "password": "Green-leaf-2026"}})
        token = login["login"]["tokens"]["accessToken"]
        out = await submit(client, token, "byoCup", data, key="c2")
        assert out["action"]["status"] == "APPROVED" and out["action"]["calculation"]["gramsCo2e"] == 60
        assert await balance(client, token) == 6
        await client.aclose()


def test_example_plugin_own_tests_pass(byo_cup_installed):
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(EXAMPLE / "tests")],
        check=False, capture_output=True, text=True, cwd=EXAMPLE, env={**__import__("os").environ, "PYTHONPATH": str(EXAMPLE)},
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert " passed" in result.stdout
