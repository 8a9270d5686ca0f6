"""Executes every example operation in schema/operations/actions/ with sensible variables, as a frontend
would, on SQLite and PostgreSQL."""

import re
from datetime import timedelta
from pathlib import Path

from tests.actions_helpers import iso

OPS = Path(__file__).resolve().parent.parent / "schema" / "operations" / "actions"


def _ops() -> dict[str, str]:
    out = {}
    for path in sorted(OPS.glob("*.graphql")):
        text = path.read_text(encoding="utf-8")
        names = re.findall(r"^(?:query|mutation|subscription)\s+(\w+)", text, flags=re.MULTILINE)
        assert names == [path.stem], f"{path.name} must hold one operation named {path.stem}"
        out[path.stem] = text
    return out


async def test_every_action_operation_runs(gql, member, admin, clock):
    ops = _ops()
    now = clock()
    done = set()

    async def run(name, variables=None, token=None):
        done.add(name)
        return await gql.ok(ops[name], variables or {}, token=token)

    types = await run("ActionTypes")
    assert {t["code"] for t in types["actionTypes"]} == {"transit", "recycling", "energy_saving"}

    trip = {"mode": "METRO", "startedAt": iso(now - timedelta(minutes=40)), "endedAt": iso(now - timedelta(minutes=10)),
            "distanceMeters": 8200}
    out = await run("SubmitTransitTrip", {"input": {"action": {"transit": trip}, "idempotencyKey": "op-1"}}, member["token"])
    assert out["submitAction"]["action"]["status"] == "APPROVED"

    out = await run("SubmitRecyclingDropOff", {
        "material": "PET", "weightGrams": 30_000, "stationId": "ST-9", "receiptId": "R-77",
        "droppedAt": iso(now - timedelta(hours=2)), "idempotencyKey": "op-2",
        "evidence": {"source": "ST-9", "externalId": "R-77"},
    }, member["token"])
    assert out["submitAction"]["action"]["status"] == "NEEDS_REVIEW"  # 28,500 g unsigned
    pending_id = out["submitAction"]["action"]["id"]

    period = {"meterId": "M-42", "periodStart": "2026-04-01", "periodEnd": "2026-05-01",
              "startReadingKwh": 3120.5, "endReadingKwh": 3290.0, "householdSize": 3, "gridRegion": "EAST"}
    out = await run("SubmitEnergySaving", {"input": {"action": {"energySaving": period}, "idempotencyKey": "op-3"}},
                    member["token"])
    assert out["submitAction"]["userErrors"] == [] and out["submitAction"]["action"]["status"] == "APPROVED"

    mine = await run("MyActions", {"first": 2}, member["token"])
    assert mine["viewer"]["actions"]["totalCount"] == 3
    assert mine["viewer"]["actions"]["pageInfo"]["hasNextPage"] is True
    rest = await run("MyActions", {"first": 2, "after": mine["viewer"]["actions"]["pageInfo"]["endCursor"]}, member["token"])
    assert len(rest["viewer"]["actions"]["edges"]) == 1

    queue = await run("ReviewQueue", {}, admin["token"])
    assert [n["id"] for n in queue["reviewQueue"]["nodes"]] == [pending_id]
    decided = await run("ReviewAction", {"input": {"actionId": pending_id, "decision": "APPROVE",
                                                   "reason": "receipt photo checked"}}, admin["token"])
    assert decided["reviewAction"]["action"]["status"] == "APPROVED"
    assert decided["reviewAction"]["action"]["transaction"]["kind"] == "ACTION_CREDIT"
    assert done == set(ops)
