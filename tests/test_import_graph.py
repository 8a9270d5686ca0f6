"""The package's import graph, deferred (function-local) imports included: no import cycle among
``jingtan_api``'s modules, few deferred imports (each with a reason), and the layer rules of
docs/architecture.md — services and models never import GraphQL, first-party plugins import only the
public plugin API. Imports under ``if TYPE_CHECKING:`` never run, so they are not edges.

Run alone: ``.venv/bin/python -m pytest -q tests/test_import_graph.py`` (it prints a cycle when it finds
one)."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "jingtan_api"
MAX_DEFERRED = 10


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in PACKAGE.rglob("*.py") if "migrations/versions" not in p.as_posix()}


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imports_of(path: Path, known: set[str]) -> list[tuple[str, int, bool, str]]:
    """(imported module, line, deferred?, source line) for every jingtan_api import that runs."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    lines = path.read_text(encoding="utf-8").splitlines()
    found: list[tuple[str, int, bool, str]] = []

    def resolve(name: str) -> str | None:
        while name and name not in known:
            name = name.rpartition(".")[0]
        return name or None

    def visit(node: ast.AST, deferred: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child):
                for other in child.orelse:
                    visit(other, deferred)
                continue
            inner = deferred or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda)
            targets: list[str] = []
            if isinstance(child, ast.Import):
                targets = [a.name for a in child.names]
            elif isinstance(child, ast.ImportFrom) and child.module and child.level == 0:
                targets = [f"{child.module}.{a.name}" for a in child.names]
            for t in targets:
                if t.startswith("jingtan_api"):
                    target = resolve(t)
                    if target:
                        found.append((target, child.lineno, deferred, lines[child.lineno - 1]))
            visit(child, inner)

    visit(tree, False)
    return found


def graph() -> tuple[dict[str, set[str]], list[tuple[str, int, str, str]]]:
    mods = modules()
    known = set(mods)
    edges: dict[str, set[str]] = {m: set() for m in mods}
    deferred: list[tuple[str, int, str, str]] = []
    for name, path in mods.items():
        for target, line, is_deferred, text in imports_of(path, known):
            if target != name:
                edges[name].add(target)
            if is_deferred:
                deferred.append((name, line, target, text.strip()))
    return edges, deferred


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def dfs(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (cycle := dfs(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(edges):
        if node not in state and (cycle := dfs(node)):
            return cycle
    return None


def test_the_graph_is_read():
    edges, _ = graph()
    assert "jingtan_api.accounts.service" in edges["jingtan_api.actions.service"]
    assert "jingtan_api.users.types" in edges["jingtan_api.accounts.types"]


def test_no_import_cycle():
    cycle = find_cycle(graph()[0])
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_the_cycle_finder_finds_cycles():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_few_deferred_imports_each_with_a_reason():
    _, deferred = graph()
    listing = "\n".join(f"{m}:{line}: {text}" for m, line, _, text in deferred)
    assert len(deferred) < MAX_DEFERRED, f"{len(deferred)} function-local imports of jingtan_api:\n{listing}"
    mods = modules()
    for module, line, _, text in deferred:
        source = mods[module].read_text(encoding="utf-8").splitlines()
        here_and_above = " ".join(source[max(0, line - 3):line])
        assert "deferred:" in here_and_above, f"{module}:{line}: say why it is deferred ('# deferred: ...'): {text}"


LOWER_LAYERS = ("service", "models", "loaders", "jobs", "idempotency", "passwords", "tokens", "permissions")


@pytest.mark.parametrize("name", sorted(m for m in modules() if m.rpartition(".")[2] in LOWER_LAYERS))
def test_services_and_models_never_import_graphql(name):
    path = modules()[name]
    tree = ast.parse(path.read_text(encoding="utf-8"))
    imported = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    imported |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    graphql = {m for m in imported if m.split(".")[0] in ("strawberry", "graphql") or m.startswith("jingtan_api.graphql")}
    graphql |= {m for m in imported if m.startswith("jingtan_api.") and m.rpartition(".")[2] in ("types", "schema")}
    if name.endswith(".loaders"):  # DataLoaders are per-request GraphQL helpers by design
        return
    assert not graphql, f"{name} imports the GraphQL layer: {sorted(graphql)}"


@pytest.mark.parametrize("path", sorted((ROOT / "plugins").rglob("*.py")) + sorted((ROOT / "examples").rglob("jingtan_*/*.py")))
def test_plugins_use_only_the_public_plugin_api(path):
    tree = ast.parse(path.read_text(encoding="utf-8"))
    imported = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    imported |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    core = {m for m in imported if m.startswith("jingtan_api")}
    assert core <= {"jingtan_api.plugins.api"}, f"{path.relative_to(ROOT)} imports {sorted(core)}"
