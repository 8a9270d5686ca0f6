"""Energy saving through GraphQL on SQLite and PostgreSQL."""

from datetime import UTC, datetime

import pytest

from tests.actions_helpers import balance, count_actions, ledger_ok, submit


@pytest.fixture
def clock():
    from jingtan_api.testing import FrozenClock

    return FrozenClock(datetime(2026, 7, 10, 8, 0, tzinfo=UTC))


@pytest.fixture
def settings_overrides():
    return {"plugins": {"enabled": ["energy_saving"]}}


def period(start, end, r0, r1, **kw):
    return {"meterId": "M-0001", "periodStart": start, "periodEnd": end, "startReadingKwh": r0, "endReadingKwh": r1, **kw}


async def test_first_period_against_regional_baseline_then_own_history(gql, member, services, clock):
    # first period: baseline 80 kWh × 3 people = 240 kWh; used 200 -> 40 kWh × 0.5306 = 21224 g
    out = await submit(gql, member["token"], "energySaving", period("2026-05-01", "2026-06-01", 1000, 1200, householdSize=3), key="e1")
    a = out["action"]
    assert a["status"] == "APPROVED", out
    assert a["calculation"]["gramsCo2e"] == 21224 and a["calculation"]["points"] == 2122
    assert a["calculation"]["factors"][0]["id"] == "energy.grid.national.2023"
    assert await balance(gql, member["token"]) == 2122
    # next month, own baseline 200 kWh/month, used 150, South grid: 50 × 0.3869 = 19345 g
    out = await submit(gql, member["token"], "energySaving", period("2026-06-01", "2026-07-01", 1200, 1350, gridRegion="SOUTH"), key="e2")
    assert out["action"] and out["action"]["status"] == "APPROVED", out
    assert out["action"]["calculation"]["gramsCo2e"] == 19345
    assert "average of the last 1 recorded months" in out["action"]["calculation"]["formula"]
    await ledger_ok(services)


async def test_no_saving_is_approved_with_zero_points(gql, member, services, clock):
    out = await submit(gql, member["token"], "energySaving", period("2026-05-01", "2026-06-01", 0, 500, householdSize=1), key="n")
    a = out["action"]
    assert a["status"] == "APPROVED" and a["calculation"]["points"] == 0
    assert a["reasons"][0]["code"] == "NO_SAVING"
    assert await balance(gql, member["token"]) == 0
    await ledger_ok(services)


async def test_same_period_twice_and_non_monotonic_and_pv(gql, member, services, clock):
    await submit(gql, member["token"], "energySaving", period("2026-05-01", "2026-06-01", 1000, 1100), key="a")
    twice = await submit(gql, member["token"], "energySaving", period("2026-05-01", "2026-06-01", 1000, 1050), key="b")
    assert twice["action"]["status"] == "REJECTED"
    assert twice["action"]["reasons"][0]["code"] in ("DUPLICATE_EVIDENCE", "PERIOD_OVERLAP")
    lower = await submit(gql, member["token"], "energySaving", period("2026-06-01", "2026-07-01", 900, 950), key="c")
    assert lower["action"]["reasons"][0]["code"] == "METER_NOT_MONOTONIC"
    pv = await submit(gql, member["token"], "energySaving", period("2026-06-01", "2026-07-01", 1100, 1150, hasRooftopPv=True), key="d")
    assert pv["action"]["reasons"][0]["code"] == "PV_EXCLUDED"
    # 80 kWh × 2.62 people = 209.6 kWh baseline, used 100: 109.6 kWh × 0.5306 = 58153 g, credited once only
    assert await balance(gql, member["token"]) == 5815


@pytest.mark.parametrize(
    "data",
    [
        period("2026-05-01", "2026-06-01", 1200, 1100),  # end reading below start
        period("2026-05-15", "2026-06-01", 1000, 1100),  # not a month start
        period("2026-06-01", "2026-05-01", 1000, 1100),  # end before start
        period("2026-05-01", "2026-06-01", -1, 100),
        period("2026-05-01", "2026-06-01", 0, 1e12),  # absurd
    ],
)
async def test_bad_periods_are_user_errors(gql, member, services, clock, data):
    out = await submit(gql, member["token"], "energySaving", data, key="bad")
    assert out["action"] is None and out["userErrors"][0]["code"] == "BAD_USER_INPUT", out
    assert await count_actions(services) == 0


async def test_nan_reading_is_refused(gql, member, services, clock):
    body = '{"query": "mutation($i: SubmitActionInput!) { submitAction(input: $i) { action { id } userErrors { code } } }", ' \
           '"variables": {"i": {"idempotencyKey": "nan", "action": {"energySaving": {"meterId": "M-0001", ' \
           '"periodStart": "2026-05-01", "periodEnd": "2026-06-01", "startReadingKwh": NaN, "endReadingKwh": 10}}}}}'
    resp = await gql.http.post("/graphql", content=body, headers={
        "content-type": "application/json", "authorization": f"Bearer {member['token']}"})
    data = resp.json()
    codes = [e.get("extensions", {}).get("code") for e in data.get("errors") or []]
    user_codes = [e["code"] for e in ((data.get("data") or {}).get("submitAction") or {}).get("userErrors", [])]
    assert "INTERNAL_SERVER_ERROR" not in codes, data
    assert codes or user_codes, data
    assert await count_actions(services) == 0


async def test_future_period_and_review_for_pending(gql, member, services, clock):
    out = await submit(gql, member["token"], "energySaving", period("2026-07-01", "2026-08-01", 1000, 1100), key="f")
    assert out["userErrors"][0]["code"] == "FUTURE_TIMESTAMP"
    assert await count_actions(services) == 0
