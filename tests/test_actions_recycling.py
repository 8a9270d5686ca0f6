"""Recycling through GraphQL on SQLite and PostgreSQL."""

from datetime import timedelta

import pytest

from jingtan_api.plugins.api import sign_record
from jingtan_api.testing import register_member
from tests.actions_helpers import balance, count_actions, iso, ledger_ok, submit

STATION_SECRET = "station-secret-abcdef123"


@pytest.fixture
def settings_overrides():
    return {"plugins": {"enabled": ["recycling"], "recycling": {"stations": {"ST-1": STATION_SECRET}}}}


def drop(clock, **kw):
    return {"material": "PAPER", "weightGrams": 2000, "stationId": "ST-1", "receiptId": "R-1",
            "droppedAt": iso(clock() - timedelta(hours=1)), **kw}


async def test_paper_drop_off_credits(gql, member, services, clock):
    out = await submit(gql, member["token"], "recycling", drop(clock), key="p1")
    action = out["action"]
    assert action["status"] == "APPROVED"
    # 2 kg × 3.5 kg/kg = 7000 g -> 700 points
    assert action["calculation"]["gramsCo2e"] == 7000 and action["calculation"]["points"] == 700
    assert action["calculation"]["factors"][0]["source"].startswith("US EPA WARM")
    assert await balance(gql, member["token"]) == 700
    await ledger_ok(services)


async def test_duplicate_receipt_same_and_other_member(gql, member, services, clock):
    await submit(gql, member["token"], "recycling", drop(clock), key="d1")
    same = await submit(gql, member["token"], "recycling", drop(clock, weightGrams=1000), key="d2")
    assert same["action"]["status"] == "REJECTED" and same["action"]["reasons"][0]["code"] == "DUPLICATE_EVIDENCE"
    other = await register_member(gql, email="other@example.cn")
    theirs = await submit(gql, other["token"], "recycling", drop(clock), key="d3")
    assert theirs["action"]["status"] == "REJECTED" and theirs["action"]["reasons"][0]["code"] == "DUPLICATE_EVIDENCE"
    assert await balance(gql, other["token"]) == 0
    assert await balance(gql, member["token"]) == 700
    # the same receipt id at another station is another receipt
    elsewhere = await submit(gql, other["token"], "recycling", drop(clock, stationId="ST-2", weightGrams=1000), key="d4")
    assert elsewhere["action"]["status"] == "APPROVED"


@pytest.mark.parametrize(
    "patch, reason",
    [
        ({"weightGrams": 50_001}, "WEIGHT_IMPLAUSIBLE"),
        ({"material": "E_WASTE"}, "MATERIAL_DISABLED"),
    ],
)
async def test_rejections(gql, member, services, clock, patch, reason):
    out = await submit(gql, member["token"], "recycling", drop(clock, **patch), key="x")
    assert out["action"]["status"] == "REJECTED" and out["action"]["reasons"][0]["code"] == reason
    assert await balance(gql, member["token"]) == 0


@pytest.mark.parametrize("patch", [{"weightGrams": 0}, {"weightGrams": -1}, {"weightGrams": 5_000_000}, {"receiptId": ""}])
async def test_bad_weight_is_user_error(gql, member, services, clock, patch):
    out = await submit(gql, member["token"], "recycling", drop(clock, **patch), key="bw")
    assert out["action"] is None and out["userErrors"][0]["code"] == "BAD_USER_INPUT"
    assert await count_actions(services) == 0


async def test_unknown_material_is_graphql_error(gql, member, services, clock):
    from jingtan_api.plugins.testing import SUBMIT

    body = await gql(SUBMIT, {"input": {"action": {"recycling": drop(clock, material="WOOD")}, "idempotencyKey": "m"}},
                     token=member["token"])
    assert body["errors"]
    assert await count_actions(services) == 0


def _evidence(data, secret, signed_at):
    from datetime import datetime

    record = {"station_id": data["stationId"], "receipt_id": data["receiptId"], "material": data["material"],
              "weight_grams": data["weightGrams"], "dropped_at": datetime.fromisoformat(data["droppedAt"]).isoformat()}
    return {"source": data["stationId"], "signature": sign_record(secret, record, signed_at), "signedAt": iso(signed_at)}


async def test_signed_big_drop_approved_unsigned_reviewed_and_rejected_by_admin(gql, member, admin, services, clock):
    big = drop(clock, material="ALUMINIUM", weightGrams=5000, receiptId="R-big")  # 45,750 g
    signed = await submit(gql, member["token"], "recycling", big, key="s1", evidence=_evidence(big, STATION_SECRET, clock()))
    assert signed["action"]["status"] == "APPROVED"
    assert signed["action"]["calculation"]["gramsCo2e"] == 20_000  # daily cap of 20 kg CO2e
    unsigned = drop(clock, material="ALUMINIUM", weightGrams=5000, receiptId="R-big2")
    pending = await submit(gql, member["token"], "recycling", unsigned, key="s2")
    assert pending["action"]["status"] == "NEEDS_REVIEW"
    review = """mutation($i: ReviewActionInput!) { reviewAction(input: $i) { action { status reasons { code } } userErrors { code } } }"""
    out = await gql.ok(review, {"i": {"actionId": pending["action"]["id"], "decision": "REJECT", "reason": "scale not calibrated"}},
                       token=admin["token"])
    assert out["reviewAction"]["action"]["status"] == "REJECTED"
    assert "REJECTED_BY_REVIEW" in [r["code"] for r in out["reviewAction"]["action"]["reasons"]]
    assert await balance(gql, member["token"]) == 2000
    audit = await gql.ok("{ auditLog(first: 5) { nodes { action targetType } } }", token=admin["token"])
    assert any(n["action"] == "action.review.reject" for n in audit["auditLog"]["nodes"])
    forged = drop(clock, receiptId="R-f")
    out = await submit(gql, member["token"], "recycling", forged, key="s3", evidence=_evidence(forged, "nope-secret", clock()))
    assert out["action"]["status"] == "REJECTED" and out["action"]["reasons"][0]["code"] == "SIGNATURE_INVALID"
    await ledger_ok(services)


async def test_twenty_concurrent_submissions_of_one_receipt_credit_once(app, gql, services, clock):
    import asyncio

    from jingtan_api.testing import GraphQLClient

    members = [await register_member(gql, email=f"r{i}@example.cn") for i in range(20)]

    async def one(i):
        client = GraphQLClient(app)
        try:
            return await submit(client, members[i]["token"], "recycling", drop(clock, receiptId="R-shared"), key=f"k{i}")
        finally:
            await client.aclose()

    results = await asyncio.gather(*(one(i) for i in range(20)))
    assert sorted(r["action"]["status"] for r in results).count("APPROVED") == 1
    assert sum([await balance(gql, m["token"]) for m in members]) == 700
    await ledger_ok(services)


async def test_concurrent_retries_with_one_key_make_one_action(app, gql, member, services, clock):
    import asyncio

    from jingtan_api.testing import GraphQLClient

    async def one():
        client = GraphQLClient(app)
        try:
            return await submit(client, member["token"], "recycling", drop(clock, receiptId="R-retry"), key="same-key")
        finally:
            await client.aclose()

    results = await asyncio.gather(*(one() for _ in range(10)))
    assert len({r["action"]["id"] for r in results}) == 1
    assert sum(1 for r in results if not r["replayed"]) == 1
    assert await balance(gql, member["token"]) == 700
    assert await count_actions(services) == 1
