"""submitAction answers with the row its INSERT … RETURNING gave back (no read of its own): that row must
be exactly what a later read of the action gives — values and Python types, the credit's transaction id
included — for approved and rejected submissions, and a replay still reads."""

from datetime import timedelta

from actions_helpers import submit, trip

from jingtan_api.actions import service
from jingtan_api.graphql.relay import from_global_id


def pk(who: dict) -> int:
    return int(from_global_id(who["id"])[1])


def typed(row: dict) -> dict:
    return {k: (v, type(v), getattr(v, "tzinfo", None)) for k, v in row.items()}


def raw_trip(clock, *, minutes_ago: int, meters: int, mode: str = "METRO") -> dict:
    end = clock() - timedelta(minutes=minutes_ago)
    return {"mode": mode, "started_at": (end - timedelta(minutes=20)).isoformat(), "ended_at": end.isoformat(),
            "distance_meters": meters}


async def stored(services, action_id: int) -> dict:
    async with services.db.read() as conn:
        return (await service.actions_by_ids(conn, [action_id]))[action_id]


async def test_the_returned_row_is_the_stored_row(services, member, clock):
    cases = [
        ("approved", raw_trip(clock, minutes_ago=60, meters=5000), "APPROVED"),
        ("implausible", raw_trip(clock, minutes_ago=120, meters=900_000), "REJECTED"),  # the plugin refuses it
        ("late", raw_trip(clock, minutes_ago=60 * 24 * 40, meters=5000), "REJECTED"),  # claim window passed
    ]
    seen = set()
    for key, raw, status in cases:
        result = await service.submit(services, user_id=pk(member),
                                      code="transit", raw_input=raw, raw_evidence=None, idempotency_key=f"k-{key}",
                                      now=clock())
        assert result.row is not None and not result.replayed
        assert typed(result.row) == typed(await stored(services, result.action_id))
        if status is not None:
            assert result.row["status"] == status
        seen.add(result.row["status"])
        if result.row["status"] == "APPROVED":
            assert result.row["transaction_id"] is not None
    assert seen == {"APPROVED", "REJECTED"}, seen
    replay = await service.submit(services, user_id=pk(member),
                                  code="transit", raw_input=cases[0][1], raw_evidence=None, idempotency_key="k-approved",
                                  now=clock())
    assert replay.replayed and replay.row is None


async def test_the_payload_equals_a_later_read(gql, member, clock):
    fields = ("id actionTypeCode pluginVersion status reasons { code message } input occurredFrom occurredTo "
              "createdAt reviewedAt reviewReason evidence { source externalId } "
              "calculation { formula gramsCo2e points factors { id value unit source } }")
    payload = await submit(gql, member["token"], "transit", trip(clock, meters=7000), key="p-1")
    assert payload["userErrors"] == [] and payload["action"]["status"] == "APPROVED"
    data = await gql.ok(f"query($id: ID!) {{ node(id: $id) {{ ... on Action {{ {fields} }} }} }}",
                        {"id": payload["action"]["id"]}, token=member["token"])
    again = await gql.ok(
        f"mutation($i: SubmitActionInput!) {{ submitAction(input: $i) {{ action {{ {fields} }} }} }}",
        {"i": {"action": {"transit": trip(clock, minutes_ago=200, meters=7000)}, "idempotencyKey": "p-2"}},
        token=member["token"])
    fresh = await gql.ok(f"query($id: ID!) {{ node(id: $id) {{ ... on Action {{ {fields} }} }} }}",
                         {"id": again["submitAction"]["action"]["id"]}, token=member["token"])
    assert again["submitAction"]["action"] == fresh["node"]
    assert data["node"]["id"] == payload["action"]["id"]
