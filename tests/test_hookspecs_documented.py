"""Every hook specification of jingtan_api/plugins/hookspecs.py is documented in the "Hooks" section of
docs/plugins.md and has a test named ``test_hook_<name>`` under tests/ (as datasette does); the section
lists no hook that does not exist. Hooks are read from the module, so a new hookspec is picked up here
without editing this file."""

import ast
import re
from pathlib import Path

import pluggy
import pytest

from jingtan_api.plugins import hookspecs
from jingtan_api.plugins.api import PROJECT_NAME

ROOT = Path(__file__).resolve().parent.parent
TESTS = ROOT / "tests"


def hook_names() -> list[str]:
    pm = pluggy.PluginManager(PROJECT_NAME)
    pm.add_hookspecs(hookspecs)
    return sorted(name for name, caller in vars(pm.hook).items() if not name.startswith("_") and caller.has_spec())


def hooks_section() -> str:
    text = (ROOT / "docs" / "plugins.md").read_text(encoding="utf-8")
    match = re.search(r"^## Hooks\n(.*?)(?=^## |\Z)", text, flags=re.MULTILINE | re.DOTALL)
    assert match, "docs/plugins.md has no '## Hooks' section"
    return match.group(1)


def defined_test_names() -> set[str]:
    names = set()
    for path in TESTS.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name.startswith("test_"):
                names.add(node.name)
    return names



def test_the_hookspecs_are_found():
    assert "jingtan_register_action_types" in hook_names()


@pytest.mark.parametrize("hook", hook_names())
def test_hookspec_is_documented(hook):
    assert re.search(rf"^\| `{hook}\(", hooks_section(), flags=re.MULTILINE), (
        f"add a row for {hook} to the table of the 'Hooks' section of docs/plugins.md"
    )


@pytest.mark.parametrize("hook", hook_names())
def test_hookspec_has_a_test(hook):
    names = defined_test_names()
    assert any(n == f"test_hook_{hook}" or n.startswith(f"test_hook_{hook}_") for n in names), (
        f"write a test named test_hook_{hook} under tests/ that exercises the hook"
    )


def test_documented_hooks_exist():
    documented = re.findall(r"^\| `(\w+)\(", hooks_section(), flags=re.MULTILINE)
    assert documented and set(documented) <= set(hook_names()), documented
