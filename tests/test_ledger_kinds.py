"""Every ledger transaction kind the code posts is a value of the GraphQL enum ``LedgerTransactionKind``:
otherwise reading such a transaction (``viewer.account.entries { transaction { kind } }``) fails with an
internal error. The kinds are found in the source: the ``kind=`` of every ``post_transaction`` call."""

import ast
import importlib
from pathlib import Path

from jingtan_api.accounts.types import LedgerTransactionKind

ROOT = Path(__file__).resolve().parent.parent / "jingtan_api"


def posted_kinds() -> dict[str, str]:
    found: dict[str, str] = {}
    for path in ROOT.rglob("*.py"):
        if "migrations" in path.parts:
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        module = None
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", None)) == "post_transaction"):
                continue
            for kw in node.keywords:
                if kw.arg != "kind":
                    continue
                if isinstance(kw.value, ast.Constant):
                    found[kw.value.value] = str(path)
                elif isinstance(kw.value, ast.Name | ast.Attribute):
                    if module is None:
                        name = ".".join(path.relative_to(ROOT.parent).with_suffix("").parts)
                        module = importlib.import_module(name)
                    value = module
                    parts = ast.unparse(kw.value).split(".")
                    for part in parts:
                        value = getattr(value, part, None)
                    if isinstance(value, str):
                        found[value] = f"{path}:{kw.value.lineno}"
    return found


def test_every_posted_kind_is_in_the_graphql_enum():
    kinds = posted_kinds()
    assert len(kinds) >= 15  # the scan finds the kinds (it would pass vacuously otherwise)
    enum_values = {k.value for k in LedgerTransactionKind}
    missing = {k: where for k, where in kinds.items() if k not in enum_values}
    assert missing == {}, missing
