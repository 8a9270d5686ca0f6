"""Transit through GraphQL on SQLite and PostgreSQL: approve, reject, review, credit on the ledger."""

import asyncio
from datetime import timedelta

import pytest

from jingtan_api.plugins.api import sign_record
from jingtan_api.testing import GraphQLClient, register_member
from tests.actions_helpers import balance, count_actions, iso, ledger_ok, submit, trip

SECRET = "metro-secret-0123456789"


@pytest.fixture
def settings_overrides():
    return {"plugins": {"enabled": ["transit"], "transit": {"partners": {"sz-metro": SECRET}}}}


async def test_metro_trip_credits_points(gql, member, services, clock):
    data = trip(clock, meters=10_000)
    out = await submit(gql, member["token"], "transit", data, key="t1")
    assert out["userErrors"] == []
    action = out["action"]
    assert action["status"] == "APPROVED"
    calc = action["calculation"]
    # 10 km × 46.7 g/pkm = 467 g -> 46 points at 10 g/point
    assert calc["gramsCo2e"] == 467 and calc["points"] == 46
    assert calc["factors"][0]["id"] == "transit.metro" and calc["factors"][0]["value"] == "46.7"
    assert "10 km × 46.7" in calc["formula"]
    assert await balance(gql, member["token"]) == 46
    # replay: same key, same input -> first result, no second credit
    again = await submit(gql, member["token"], "transit", data, key="t1")
    assert again["replayed"] is True and again["action"]["id"] == action["id"]
    assert await balance(gql, member["token"]) == 46
    # member sees it in viewer.actions
    listed = await gql.ok("{ viewer { actions(first: 5) { totalCount nodes { id status } } } }", token=member["token"])
    assert listed["viewer"]["actions"]["totalCount"] == 1
    node = await gql.ok(
        "query($id: ID!) { node(id: $id) { ... on Action { status actionType { nameZh } transaction { id } } } }",
        {"id": action["id"]},
        token=member["token"],
    )
    assert node["node"]["status"] == "APPROVED" and node["node"]["actionType"]["nameZh"] == "绿色出行"
    assert node["node"]["transaction"] is None  # ledger transactions are for admins
    await ledger_ok(services)


async def test_replayed_key_with_other_input_is_refused(gql, member, services, clock):
    await submit(gql, member["token"], "transit", trip(clock, meters=5000), key="same")
    out = await submit(gql, member["token"], "transit", trip(clock, minutes_ago=200, meters=6000), key="same")
    assert out["action"] is None and out["userErrors"][0]["code"] == "IDEMPOTENCY_KEY_REUSED"
    assert await count_actions(services) == 1


@pytest.mark.parametrize(
    "data_kw, reason",
    [
        ({"mode": "WALK", "meters": 5000, "duration_min": 30}, "SPEED_IMPLAUSIBLE"),  # 10 km/h
        ({"mode": "BICYCLE", "meters": 20_000, "duration_min": 30}, "SPEED_IMPLAUSIBLE"),  # 40 km/h
        ({"mode": "METRO", "meters": 60_000, "duration_min": 30}, "SPEED_IMPLAUSIBLE"),  # 120 km/h
        ({"mode": "WALK", "meters": 31_000, "duration_min": 600}, "DISTANCE_IMPLAUSIBLE"),
        ({"mode": "BUS", "meters": 50, "duration_min": 5}, "DISTANCE_TOO_SHORT"),
        ({"mode": "METRO", "minutes_ago": 8 * 24 * 60}, "CLAIM_WINDOW_PASSED"),
    ],
)
async def test_implausible_trips_are_stored_rejected(gql, member, services, clock, data_kw, reason):
    out = await submit(gql, member["token"], "transit", trip(clock, **data_kw), key="r")
    assert out["userErrors"] == []
    assert out["action"]["status"] == "REJECTED"
    assert [r["code"] for r in out["action"]["reasons"]] == [reason]
    assert out["action"]["reasons"][0]["message"]
    assert await balance(gql, member["token"]) == 0
    await ledger_ok(services)


@pytest.mark.parametrize(
    "patch, code",
    [
        ({"distanceMeters": -5}, "BAD_USER_INPUT"),
        ({"distanceMeters": 0}, "BAD_USER_INPUT"),
        ({"distanceMeters": 2_000_000}, "BAD_USER_INPUT"),
        ({"startedAt": "2026-06-01T07:00:00"}, "BAD_USER_INPUT"),  # no time zone
    ],
)
async def test_bad_input_is_a_user_error_and_stores_nothing(gql, member, services, clock, patch, code):
    out = await submit(gql, member["token"], "transit", {**trip(clock), **patch}, key="b")
    assert out["action"] is None
    assert out["userErrors"][0]["code"] == code
    assert out["userErrors"][0]["field"][:3] == ["input", "action", "transit"]
    assert await count_actions(services) == 0


async def test_end_before_start_and_future(gql, member, services, clock):
    t = trip(clock)
    out = await submit(gql, member["token"], "transit", {**t, "startedAt": t["endedAt"], "endedAt": t["startedAt"]}, key="e")
    assert out["userErrors"][0]["code"] == "END_BEFORE_START"
    future = trip(clock, minutes_ago=-120)
    out = await submit(gql, member["token"], "transit", future, key="f")
    assert out["userErrors"][0]["code"] == "FUTURE_TIMESTAMP"
    assert await count_actions(services) == 0


async def test_unknown_mode_and_two_keys_are_graphql_errors(gql, member, services, clock):
    from jingtan_api.plugins.testing import SUBMIT

    body = await gql(SUBMIT, {"input": {"action": {"transit": {**trip(clock), "mode": "CAR"}}, "idempotencyKey": "u"}},
                     token=member["token"])
    assert body["errors"] and "CAR" in body["errors"][0]["message"]
    body = await gql(SUBMIT, {"input": {"action": {"transit": trip(clock), "recycling": {}}, "idempotencyKey": "u2"}},
                     token=member["token"])
    assert body["errors"]
    assert await count_actions(services) == 0


async def test_overlapping_trips_rejected(gql, member, services, clock):
    first = await submit(gql, member["token"], "transit", trip(clock, minutes_ago=60, meters=5000), key="o1")
    assert first["action"]["status"] == "APPROVED"
    second = await submit(gql, member["token"], "transit", trip(clock, mode="BUS", minutes_ago=50, meters=5000), key="o2")
    assert second["action"]["status"] == "REJECTED"
    assert second["action"]["reasons"][0]["code"] == "TRIP_OVERLAP"
    assert await balance(gql, member["token"]) == 23  # 5 km × 46.7 = 233 g -> 23 points


async def test_walking_daily_cap(gql, member, services, clock):
    # 4 km in 50 min = 4.8 km/h -> 194 g; second walk capped at 296 - 194 = 102 g; third refused
    a = await submit(gql, member["token"], "transit", trip(clock, mode="WALK", minutes_ago=300, duration_min=50, meters=4000), key="w1")
    b = await submit(gql, member["token"], "transit", trip(clock, mode="WALK", minutes_ago=200, duration_min=50, meters=4000), key="w2")
    c = await submit(gql, member["token"], "transit", trip(clock, mode="WALK", minutes_ago=100, duration_min=50, meters=4000), key="w3")
    assert a["action"]["calculation"]["gramsCo2e"] == 194
    assert b["action"]["calculation"]["gramsCo2e"] == 102 and "capped" in b["action"]["calculation"]["formula"]
    assert c["action"]["status"] == "REJECTED" and c["action"]["reasons"][0]["code"] == "MODE_DAILY_CAP_REACHED"
    assert await balance(gql, member["token"]) == 19 + 10


def _signed_evidence(data, clock, *, secret=SECRET, signed_at=None, trip_id="trip-1"):
    signed_at = signed_at or clock()
    record = {
        "partner": "sz-metro", "trip_id": trip_id, "mode": data["mode"], "started_at": data["startedAt"],
        "ended_at": data["endedAt"], "distance_meters": data["distanceMeters"],
    }
    from datetime import datetime

    def norm(v):
        return datetime.fromisoformat(v).isoformat()

    record["started_at"], record["ended_at"] = norm(record["started_at"]), norm(record["ended_at"])
    return {"source": "sz-metro", "externalId": trip_id, "signature": sign_record(secret, record, signed_at),
            "signedAt": iso(signed_at)}


async def test_high_value_unsigned_goes_to_review_signed_is_approved(gql, member, admin, services, clock):
    long_trip = trip(clock, meters=30_000, duration_min=40, partnerTripId="trip-1")  # 1401 g
    signed = await submit(gql, member["token"], "transit", long_trip, key="s1", evidence=_signed_evidence(long_trip, clock))
    assert signed["action"]["status"] == "APPROVED", signed
    assert await balance(gql, member["token"]) == 140

    unsigned = trip(clock, minutes_ago=300, meters=30_000, duration_min=40)
    pending = await submit(gql, member["token"], "transit", unsigned, key="s2")
    assert pending["action"]["status"] == "NEEDS_REVIEW"
    assert pending["action"]["reasons"][0]["code"] == "UNSIGNED_HIGH_VALUE"
    assert await balance(gql, member["token"]) == 140
    queue = await gql.ok("{ reviewQueue(first: 10) { totalCount nodes { id status } } }", token=admin["token"])
    assert queue["reviewQueue"]["totalCount"] == 1

    review = """mutation($i: ReviewActionInput!) { reviewAction(input: $i) {
        action { status calculation { points } } userErrors { code } } }"""
    ok = await gql.ok(review, {"i": {"actionId": pending["action"]["id"], "decision": "APPROVE", "reason": "checked"}},
                      token=admin["token"])
    assert ok["reviewAction"]["action"]["status"] == "APPROVED"
    again = await gql.ok(review, {"i": {"actionId": pending["action"]["id"], "decision": "APPROVE", "reason": "twice"}},
                         token=admin["token"])
    assert again["reviewAction"]["userErrors"][0]["code"] == "NOT_PENDING_REVIEW"
    assert await balance(gql, member["token"]) == 280
    denied = await gql.ok(review, {"i": {"actionId": pending["action"]["id"], "decision": "REJECT", "reason": "member"}},
                          token=member["token"])
    assert denied["reviewAction"]["userErrors"][0]["code"] == "FORBIDDEN"
    await ledger_ok(services)


async def test_forged_and_stale_signatures_rejected(gql, member, services, clock):
    t = trip(clock, meters=30_000, duration_min=40, partnerTripId="trip-9")
    forged = await submit(gql, member["token"], "transit", t, key="g1",
                          evidence=_signed_evidence(t, clock, secret="wrong-secret", trip_id="trip-9"))
    assert forged["action"]["status"] == "REJECTED" and forged["action"]["reasons"][0]["code"] == "SIGNATURE_INVALID"
    t2 = trip(clock, minutes_ago=300, meters=30_000, duration_min=40, partnerTripId="trip-10")
    stale = await submit(gql, member["token"], "transit", t2, key="g2",
                         evidence=_signed_evidence(t2, clock, trip_id="trip-10", signed_at=clock() - timedelta(days=3)))
    assert stale["action"]["status"] == "REJECTED" and stale["action"]["reasons"][0]["code"] == "SIGNATURE_STALE"
    assert await balance(gql, member["token"]) == 0


async def test_concurrent_duplicate_partner_trip_credits_once(app, gql, services, clock):
    members = [await register_member(gql, email=f"dup{i}@example.cn") for i in range(20)]
    data = trip(clock, meters=5000, partnerTripId="shared-trip")
    evidence = {"source": "sz-metro", "externalId": "shared-trip"}

    async def one(i):
        client = GraphQLClient(app)
        try:
            return await submit(client, members[i]["token"], "transit", data, key=f"c{i}", evidence=evidence)
        finally:
            await client.aclose()

    results = await asyncio.gather(*(one(i) for i in range(20)))
    statuses = sorted(r["action"]["status"] for r in results)
    assert statuses.count("APPROVED") == 1 and statuses.count("REJECTED") == 19
    assert all(r["action"]["reasons"][0]["code"] == "DUPLICATE_EVIDENCE" for r in results if r["action"]["status"] == "REJECTED")
    total = sum([await balance(gql, m["token"]) for m in members])
    assert total == 23
    await ledger_ok(services)


async def test_anonymous_cannot_submit(gql, services, clock):
    out = await submit(gql, None, "transit", trip(clock), key="anon")
    assert out["userErrors"][0]["code"] == "UNAUTHENTICATED"
    assert await count_actions(services) == 0
