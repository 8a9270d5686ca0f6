"""Executes every operation of schema/operations/committee/ and the admin operations of user search and
suspension, as the consoles would, on SQLite and PostgreSQL."""

import re
from pathlib import Path

import pytest

from tests.actions_helpers import submit, trip
from tests.test_methodologies import GATED, make_expert

OPS = Path(__file__).resolve().parent.parent / "schema" / "operations"
ADMIN_OPS = ("FindUsers", "SuspendUser", "ReactivateUser")


def _ops(folder: str, names: tuple[str, ...] | None = None) -> dict[str, str]:
    out = {}
    for path in sorted((OPS / folder).glob("*.graphql")):
        if names is not None and path.stem not in names:
            continue
        text = path.read_text(encoding="utf-8")
        found = re.findall(r"^(?:query|mutation|subscription)\s+(\w+)", text, flags=re.MULTILINE)
        assert found == [path.stem], f"{path.name} must hold one operation named {path.stem}"
        out[path.stem] = text
    return out


@pytest.fixture
def settings_overrides():
    return GATED


async def test_committee_operations_run(gql, member, admin, clock):
    ops = _ops("committee")
    done = set()

    async def run(name, variables=None, token=None):
        done.add(name)
        return await gql.ok(ops[name], variables or {}, token=token)

    await submit(gql, member["token"], "transit", trip(clock, meters=10_000), key="op-m1")
    listed = await run("Methodologies", {"actionType": "transit", "first": 10})
    (version,) = listed["methodologies"]["nodes"]
    assert version["status"] == "PENDING" and version["totals"]["actionsWaiting"] == 1
    expert = await make_expert(gql, admin)
    decided = await run("ReviewMethodologyVersion", {"input": {"versionId": version["id"], "decision": "APPROVE",
                                                               "note": "factor and source verified"}}, expert["token"])
    out = decided["reviewMethodologyVersion"]
    assert out["userErrors"] == [] and out["actionsCredited"] == 1 and out["version"]["status"] == "APPROVED"
    assert done == set(ops)


async def test_admin_user_operations_run(gql, member, admin):
    ops = _ops("admin", ADMIN_OPS)
    assert set(ops) == set(ADMIN_OPS)
    found = await gql.ok(ops["FindUsers"], {"search": "member@", "first": 5}, token=admin["token"])
    assert [n["id"] for n in found["users"]["nodes"]] == [member["id"]]
    off = await gql.ok(ops["SuspendUser"], {"input": {"userId": member["id"], "reason": "suspicious activity"}},
                       token=admin["token"])
    assert off["suspendUser"]["user"]["status"] == "SUSPENDED"
    on = await gql.ok(ops["ReactivateUser"], {"input": {"userId": member["id"], "reason": "cleared after review"}},
                      token=admin["token"])
    assert on["reactivateUser"]["user"]["status"] == "ACTIVE"
