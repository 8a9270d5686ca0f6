"""The core's guard on every action type, whatever the plugin decides (docs/actions.md, "Core guard"):
``[actions] review_above_points`` (per type: ``review_above_points_by_type``) and the per-member daily and
monthly point caps across all types. Through GraphQL over HTTP, on SQLite and PostgreSQL."""

import asyncio
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from jingtan_api.accounts.models import LedgerTransaction
from jingtan_api.app import create_app
from jingtan_api.testing import GraphQLClient, register_member
from tests import fake_plugins
from tests.actions_helpers import balance, count_actions, ledger_ok, submit

REVIEW = """mutation($i: ReviewActionInput!) {
  reviewAction(input: $i) { action { status calculation { points } reasons { code } } userErrors { code } } }"""


class Pong(fake_plugins.Ping):
    """A second action type, to check that the member caps count all types together."""

    code = "pong"


@pytest.fixture
def settings_overrides():
    # 1 g = 1 point, so the test plugin's grams are points
    return {"plugins": {"enabled": []}, "points": {"grams_per_point": 1},
            "actions": {"review_above_points_by_type": {"pong": 100}}}


@pytest.fixture
async def app(settings, clock):
    application = create_app(settings, clock=clock, plugins=[("ping", fake_plugins.Plugin(fake_plugins.Ping, Pong))])
    async with application.router.lifespan_context(application):
        yield application


def ping(clock, grams: int) -> dict:
    return {"at": (clock() - timedelta(minutes=5)).isoformat(), "grams": grams}


async def credits(services) -> int:
    async with services.db.read() as conn:
        return (await conn.execute(select(func.count()).select_from(LedgerTransaction.__table__)
                                   .where(LedgerTransaction.__table__.c.kind == "ACTION_CREDIT"))).scalar_one()


LOGIN = "mutation($i: LoginInput!) { login(input: $i) { tokens { accessToken } } }"


async def later(gql, clock, *people: dict, days: int = 1) -> None:
    """Move the clock on and log the people in again (access tokens live 15 minutes)."""
    clock.advance(days=days)
    for p in people:
        out = await gql.ok(LOGIN, {"i": {"identifier": p["email"], "password": p["password"]}})
        p["token"] = out["login"]["tokens"]["accessToken"]


def codes(out: dict) -> list[str]:
    return [r["code"] for r in out["action"]["reasons"]]


async def test_more_than_the_threshold_goes_to_review_and_credits_nothing(gql, member, admin, services, clock):
    at_limit = await submit(gql, member["token"], "ping", ping(clock, 2000), key="g1")
    assert at_limit["action"]["status"] == "APPROVED" and at_limit["action"]["calculation"]["points"] == 2000
    above = await submit(gql, member["token"], "ping", ping(clock, 2001), key="g2")
    assert above["action"]["status"] == "NEEDS_REVIEW" and codes(above) == ["ABOVE_REVIEW_THRESHOLD"]
    assert await balance(gql, member["token"]) == 2000 and await credits(services) == 1
    # the per-type threshold of pong is 100
    pong = await submit(gql, member["token"], "pong", ping(clock, 101), key="g3")
    assert pong["action"]["status"] == "NEEDS_REVIEW" and codes(pong) == ["ABOVE_REVIEW_THRESHOLD"]
    assert (await submit(gql, member["token"], "pong", ping(clock, 100), key="g4"))["action"]["status"] == "APPROVED"
    assert await balance(gql, member["token"]) == 2100 and await credits(services) == 2
    # a reviewer's approval credits it (the threshold asks for a person, it does not refuse)
    out = await gql.ok(REVIEW, {"i": {"actionId": above["action"]["id"], "decision": "APPROVE", "reason": "receipt checked"}},
                       token=admin["token"])
    assert out["reviewAction"]["action"]["status"] == "APPROVED", out
    assert await balance(gql, member["token"]) == 4101
    await ledger_ok(services)


async def test_member_daily_cap_across_types_credits_up_to_the_cap(gql, member, services, clock):
    for i in range(2):
        out = await submit(gql, member["token"], "ping", ping(clock, 2000), key=f"d{i}")
        assert out["action"]["status"] == "APPROVED"
    out = await submit(gql, member["token"], "ping", ping(clock, 1000), key="d2")
    assert out["action"]["status"] == "APPROVED" and await balance(gql, member["token"]) == 5000
    capped = await submit(gql, member["token"], "pong", ping(clock, 50), key="d3")  # another type, same member
    assert capped["action"]["status"] == "REJECTED" and codes(capped) == ["CAP_REACHED"]
    assert capped["action"]["calculation"]["points"] == 0
    assert await balance(gql, member["token"]) == 5000 and await credits(services) == 3
    # the next local day has room again; the member's monthly cap (30,000) is far
    await later(gql, clock, member)
    assert (await submit(gql, member["token"], "pong", ping(clock, 50), key="d4"))["action"]["status"] == "APPROVED"
    assert await balance(gql, member["token"]) == 5050
    await ledger_ok(services)


async def test_partly_over_the_daily_cap_is_credited_up_to_it(gql, member, services, clock):
    for i in range(2):
        await submit(gql, member["token"], "ping", ping(clock, 2000), key=f"p{i}")
    out = await submit(gql, member["token"], "ping", ping(clock, 1500), key="p2")
    assert out["action"]["status"] == "APPROVED" and codes(out) == ["CAPPED"]
    assert out["action"]["calculation"]["points"] == 1000
    assert await balance(gql, member["token"]) == 5000
    await ledger_ok(services)


@pytest.mark.parametrize("settings_overrides", [
    {"plugins": {"enabled": []}, "points": {"grams_per_point": 1},
     "actions": {"member_daily_cap_points": 100_000, "member_monthly_cap_points": 3000}},
])
async def test_member_monthly_cap_spans_days_and_reviewed_credits_count(gql, member, admin, services, clock):
    await later(gql, clock, member, admin, days=9)  # June 10th
    pending = await submit(gql, member["token"], "ping", ping(clock, 2500), key="m2")
    assert pending["action"]["status"] == "NEEDS_REVIEW"
    assert (await submit(gql, member["token"], "ping", ping(clock, 2000), key="m1"))["action"]["status"] == "APPROVED"
    await later(gql, clock, member, admin)
    # approved a day later: credited up to the month's remaining 1,000 points
    out = await gql.ok(REVIEW, {"i": {"actionId": pending["action"]["id"], "decision": "APPROVE", "reason": "photo of the receipt checked"}},
                       token=admin["token"])
    assert out["reviewAction"]["action"]["status"] == "APPROVED", out
    assert out["reviewAction"]["action"]["calculation"]["points"] == 1000
    assert "CAPPED" in [r["code"] for r in out["reviewAction"]["action"]["reasons"]]
    await later(gql, clock, member)
    late = await submit(gql, member["token"], "ping", ping(clock, 10), key="m3")
    assert late["action"]["status"] == "REJECTED" and codes(late) == ["CAP_REACHED"]
    assert await balance(gql, member["token"]) == 3000
    await ledger_ok(services)


async def test_twenty_parallel_submissions_never_exceed_the_daily_cap(app, gql, member, services, clock):
    async def one(i: int) -> dict:
        client = GraphQLClient(app)
        try:
            return await submit(client, member["token"], "ping" if i % 2 else "pong", ping(clock, 100 if i % 2 == 0 else 1000),
                                key=f"c{i}")
        finally:
            await client.aclose()

    # 10 × 1000 (ping) + 10 × 100 (pong) = 11,000 points asked; the daily cap is 5,000
    results = await asyncio.gather(*(one(i) for i in range(20)))
    credited = sum(r["action"]["calculation"]["points"] for r in results if r["action"]["status"] == "APPROVED")
    assert credited == 5000
    assert await balance(gql, member["token"]) == 5000
    assert all(r["action"]["status"] in ("APPROVED", "REJECTED") for r in results)
    assert {c for r in results for c in codes(r)} <= {"CAPPED", "CAP_REACHED"}
    assert await count_actions(services) == 20
    await ledger_ok(services)


async def test_other_members_are_not_limited_by_one_members_cap(gql, member, services, clock):
    other = await register_member(gql, email="other@example.cn")
    for i in range(3):
        await submit(gql, member["token"], "ping", ping(clock, 2000), key=f"o{i}")
    out = await submit(gql, other["token"], "ping", ping(clock, 2000), key="o")
    assert out["action"]["status"] == "APPROVED" and codes(out) == []
    assert await balance(gql, other["token"]) == 2000
