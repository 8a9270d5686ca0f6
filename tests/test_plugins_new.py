"""``jingtan plugins new NAME`` writes a plugin distribution that works as generated: it is pip-installed
into a child virtual environment (which sees this venv's packages through a .pth file, so nothing is
downloaded and the project's venv is left alone), its own tests pass there, and a server app in that
environment enables it by entry point and accepts an action through GraphQL (SQLite and PostgreSQL)."""

import json
import subprocess
import sys
import sysconfig
import textwrap
from pathlib import Path

import pytest

from jingtan_api.cli import main
from jingtan_api.plugins import scaffold

CODE = "demo_refill"


@pytest.fixture(scope="module")
def child(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("plugins-new")
    target = root / "jingtan-demo-refill"
    assert main(["plugins", "new", "Demo-Refill", "--dir", str(target)]) == 0
    assert (target / "pyproject.toml").exists() and (target / "jingtan_demo_refill" / "__init__.py").exists()
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    purelib = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             check=True, capture_output=True, text=True).stdout.strip()
    parent = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    # addsitedir (not a plain path line) so the parent's own .pth files run too (the editable jingtan-api)
    Path(purelib, "_jingtan_parent.pth").write_text(
        "".join(f"import site; site.addsitedir({p!r})\n" for p in sorted(parent)))
    install = subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet", "--no-deps",
         "--no-build-isolation", "--no-index", str(target)],
        capture_output=True, text=True, check=False,
    )
    assert install.returncode == 0, install.stderr
    return {"target": target, "python": python}


def test_generated_plugin_passes_its_own_tests(child):
    result = subprocess.run([str(child["python"]), "-m", "pytest", "-q", "-p", "no:cacheprovider"],
                            cwd=child["target"], capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 passed" in result.stdout


def test_the_project_venv_does_not_see_it():
    import importlib.metadata

    assert CODE not in {ep.name for ep in importlib.metadata.entry_points(group="jingtan.plugins")}


SERVER_SCRIPT = textwrap.dedent('''
    import asyncio, json, sys
    from datetime import timedelta
    from jingtan_api.app import create_app
    from jingtan_api.migrate import upgrade
    from jingtan_api.testing import FrozenClock, GraphQLClient, make_settings, register_member

    async def main(url):
        clock = FrozenClock()
        app = create_app(make_settings(url, plugins={"enabled": ["demo_refill"]}), clock=clock)
        async with app.router.lifespan_context(app):
            gql = GraphQLClient(app)
            types = await gql.ok("{ actionTypes { code inputField description inputSchema } }")
            member = await register_member(gql)
            at = (clock() - timedelta(minutes=3)).isoformat()
            body = await gql(
                "mutation($i: SubmitActionInput!) { submitAction(input: $i) { action { status calculation "
                "{ gramsCo2e points } } userErrors { code } } }",
                {"i": {"action": {"demoRefill": {"referenceId": "R-9", "items": 3, "happenedAt": at}},
                       "idempotencyKey": "k-1"}}, token=member["token"])
            account = await gql.ok("{ viewer { account { balance } } }", token=member["token"])
            await gql.aclose()
        print(json.dumps({"types": types["actionTypes"], "submit": body, "balance": account["viewer"]["account"]["balance"]}))

    upgrade(sys.argv[1])
    asyncio.run(main(sys.argv[1]))
''')


def test_generated_plugin_is_enabled_by_entry_point_and_accepts_an_action(child, db_url):
    result = subprocess.run([str(child["python"]), "-c", SERVER_SCRIPT, db_url], capture_output=True, text=True,
                            timeout=300, check=False)
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout.strip().splitlines()[-1])
    (info,) = out["types"]
    assert info["code"] == CODE and info["inputField"] == "demoRefill" and info["description"]
    assert set(info["inputSchema"]["properties"]) == {"referenceId", "items", "happenedAt"}
    assert set(info["inputSchema"]["required"]) == {"referenceId", "items", "happenedAt"}
    submitted = out["submit"]["data"]["submitAction"]
    assert submitted["userErrors"] == [] and submitted["action"]["status"] == "APPROVED"
    assert submitted["action"]["calculation"] == {"gramsCo2e": 150, "points": 15}
    assert out["balance"] == 15


@pytest.mark.parametrize("name", ["", "1abc", "a", "x" * 41, "has.dot", "ümlaut"])
def test_invalid_names_are_refused_and_nothing_is_written(tmp_path, name, capsys):
    target = tmp_path / "out"
    assert main(["plugins", "new", name, "--dir", str(target)]) == 2
    assert not target.exists()
    assert "plugins new" in capsys.readouterr().err


def test_an_existing_folder_is_not_overwritten(tmp_path, capsys):
    target = tmp_path / "taken"
    target.mkdir()
    (target / "keep.txt").write_text("mine")
    assert main(["plugins", "new", "refill_two", "--dir", str(target)]) == 2
    assert sorted(p.name for p in target.iterdir()) == ["keep.txt"]
    assert "not empty" in capsys.readouterr().err


def test_normalise():
    assert scaffold.normalise("Bottle-Refill") == "bottle_refill"
    assert scaffold.normalise("  cup reuse ") == "cup_reuse"
