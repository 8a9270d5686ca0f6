"""Energy saving through GraphQL on SQLite and PostgreSQL."""

from datetime import UTC, datetime, timedelta

import pytest
from jingtan_energy_saving import kwh_text
from sqlalchemy import func, select

from jingtan_api.accounts.models import LedgerTransaction
from jingtan_api.plugins.api import sign_record
from jingtan_api.testing import FrozenClock, register_member
from tests.actions_helpers import balance, count_actions, iso, ledger_ok, submit


@pytest.fixture
def clock():
    return FrozenClock(datetime(2026, 7, 10, 8, 0, tzinfo=UTC))


UTILITY_SECRET = "grid-utility-secret-0123456789"


@pytest.fixture
def settings_overrides():
    return {"plugins": {"enabled": ["energy_saving"], "energy_saving": {"partners": {"sgcc-bj": UTILITY_SECRET}}}}


def period(start, end, r0, r1, meter="M-0001", **kw):
    return {"meterId": meter, "periodStart": start, "periodEnd": end, "startReadingKwh": r0, "endReadingKwh": r1, **kw}


def signed(data: dict, clock, secret: str = UTILITY_SECRET) -> dict:
    """Evidence as the partner utility signs a meter's readings."""
    at = clock() - timedelta(hours=1)
    record = {"partner": "sgcc-bj", "meter_id": data["meterId"], "period_start": data["periodStart"],
              "period_end": data["periodEnd"], "start_reading_kwh": kwh_text(data["startReadingKwh"]),
              "end_reading_kwh": kwh_text(data["endReadingKwh"])}
    return {"source": "sgcc-bj", "signature": sign_record(secret, record, at), "signedAt": iso(at)}


def codes(out: dict) -> list[str]:
    return [r["code"] for r in out["action"]["reasons"]]


async def credit_count(services) -> int:
    async with services.db.read() as conn:
        return (await conn.execute(select(func.count()).select_from(LedgerTransaction.__table__)
                                   .where(LedgerTransaction.__table__.c.kind == "ACTION_CREDIT"))).scalar_one()


EXACT_REQUEST = {"meterId": "ANY-METER-2", "periodStart": "2025-12-01", "periodEnd": "2026-12-01",
                 "startReadingKwh": 0, "endReadingKwh": 0, "householdSize": 15, "gridRegion": "NORTH"}


@pytest.mark.parametrize("clock", [FrozenClock(datetime(2026, 12, 2, 3, 0, tzinfo=UTC))])
async def test_the_reported_request_is_not_approved_and_credits_nothing(gql, member, services, clock):
    # Before the fix: APPROVED with 975,744 points from invented readings of an invented meter.
    out = await submit(gql, member["token"], "energySaving", EXACT_REQUEST, key="issue-8")
    a = out["action"]
    assert a["status"] != "APPROVED", out
    assert a["status"] == "NEEDS_REVIEW"
    assert {"BASELINE_PERIOD", "CONSUMPTION_IMPLAUSIBLY_LOW"} <= set(codes(out))
    assert a["calculation"]["points"] == 0 and a["calculation"]["gramsCo2e"] == 0
    assert await balance(gql, member["token"]) == 0 and await credit_count(services) == 0
    await ledger_ok(services)


async def test_first_unsigned_period_is_baseline_only_then_saving_against_it(gql, member, services, clock):
    first = await submit(gql, member["token"], "energySaving", period("2026-05-01", "2026-06-01", 1000, 1200, householdSize=3), key="e1")
    assert first["action"]["status"] == "APPROVED" and codes(first) == ["BASELINE_PERIOD"], first
    assert first["action"]["calculation"]["points"] == 0
    assert "baseline only" in first["action"]["calculation"]["formula"]
    # next month against the own baseline of 200 kWh/month, used 150, South grid: 50 × 0.3869 = 19345 g, signed
    data = period("2026-06-01", "2026-07-01", 1200, 1350, gridRegion="SOUTH")
    out = await submit(gql, member["token"], "energySaving", data, key="e2", evidence=signed(data, clock))
    assert out["action"]["status"] == "APPROVED", out
    assert out["action"]["calculation"]["gramsCo2e"] == 19345 and out["action"]["calculation"]["points"] == 1934
    assert "average of the last 1 recorded months" in out["action"]["calculation"]["formula"]
    assert await balance(gql, member["token"]) == 1934
    await ledger_ok(services)


async def test_signed_first_period_credits_against_the_per_capita_baseline(gql, member, services, clock):
    # baseline 80 kWh × 3 people = 240 kWh; used 210 -> 30 kWh × 0.5306 = 15918 g
    data = period("2026-05-01", "2026-06-01", 1000, 1210, householdSize=3)
    out = await submit(gql, member["token"], "energySaving", data, key="s1", evidence=signed(data, clock))
    a = out["action"]
    assert a["status"] == "APPROVED" and codes(out) == [], out
    assert a["calculation"]["gramsCo2e"] == 15918 and a["calculation"]["points"] == 1591
    assert a["calculation"]["factors"][0]["id"] == "energy.grid.national.2023"
    assert await balance(gql, member["token"]) == 1591
    await ledger_ok(services)


async def test_unsigned_saving_above_the_threshold_goes_to_review(gql, member, services, clock):
    await submit(gql, member["token"], "energySaving", period("2026-05-01", "2026-06-01", 1000, 1200), key="u1")
    out = await submit(gql, member["token"], "energySaving", period("2026-06-01", "2026-07-01", 1200, 1350), key="u2")
    assert out["action"]["status"] == "NEEDS_REVIEW" and codes(out) == ["UNSIGNED_HIGH_VALUE"], out
    assert await balance(gql, member["token"]) == 0 and await credit_count(services) == 0
    # a small unsigned saving is approved: another meter, baseline 200, used 195: 5 kWh × 0.5306 = 2653 g
    await submit(gql, member["token"], "energySaving", period("2026-05-01", "2026-06-01", 0, 200, meter="M-2"), key="u3")
    small = await submit(gql, member["token"], "energySaving", period("2026-06-01", "2026-07-01", 200, 395, meter="M-2"), key="u4")
    assert small["action"]["status"] == "APPROVED" and small["action"]["calculation"]["gramsCo2e"] == 2653, small
    assert await balance(gql, member["token"]) == 265


async def test_bad_or_unknown_signatures_are_rejected_and_credit_nothing(gql, member, services, clock):
    data = period("2026-05-01", "2026-06-01", 1000, 1210, householdSize=3)
    forged = await submit(gql, member["token"], "energySaving", data, key="f1", evidence=signed(data, clock, "guessed"))
    assert forged["action"]["status"] == "REJECTED" and codes(forged) == ["SIGNATURE_INVALID"]
    tampered = {**data, "endReadingKwh": 1100}
    other = await submit(gql, member["token"], "energySaving", tampered, key="f2", evidence=signed(data, clock))
    assert other["action"]["status"] == "REJECTED" and codes(other) == ["SIGNATURE_INVALID"]
    unknown = {**signed(data, clock), "source": "not-a-utility"}
    out = await submit(gql, member["token"], "energySaving", data, key="f3", evidence=unknown)
    assert out["action"]["status"] == "REJECTED" and codes(out) == ["SIGNATURE_INVALID"]
    assert await balance(gql, member["token"]) == 0 and await credit_count(services) == 0
    await ledger_ok(services)


async def test_a_meter_claimed_by_another_member_goes_to_review(gql, member, services, clock):
    await submit(gql, member["token"], "energySaving", period("2026-05-01", "2026-06-01", 1000, 1200), key="o1")
    other = await register_member(gql, email="neighbour@example.cn")
    data = period("2026-06-01", "2026-07-01", 1200, 1380, householdSize=3)
    out = await submit(gql, other["token"], "energySaving", data, key="o2", evidence=signed(data, clock))
    assert out["action"]["status"] == "NEEDS_REVIEW" and "METER_CLAIMED_BY_OTHER" in codes(out), out
    assert await balance(gql, other["token"]) == 0 and await credit_count(services) == 0


async def test_meter_and_household_monthly_caps(gql, member, services, clock):
    # signed, 3 people, North grid: 240 − 200 = 40 kWh × 0.6776 = 27104 g -> 20000 g (meter cap per month)
    first = period("2026-05-01", "2026-06-01", 1000, 1200, householdSize=3, gridRegion="NORTH")
    out = await submit(gql, member["token"], "energySaving", first, key="c1", evidence=signed(first, clock))
    assert out["action"]["status"] == "APPROVED" and out["action"]["calculation"]["gramsCo2e"] == 20000, out
    assert "capped to 20000 g" in out["action"]["calculation"]["formula"]
    # a second meter of the same member in the same month: the household's 30 kg per month leaves 10 kg
    second = period("2026-05-01", "2026-06-01", 500, 700, meter="M-0002", householdSize=3, gridRegion="NORTH")
    out = await submit(gql, member["token"], "energySaving", second, key="c2", evidence=signed(second, clock))
    assert out["action"]["status"] == "APPROVED" and codes(out) == ["CAPPED"], out
    assert out["action"]["calculation"]["gramsCo2e"] == 10000
    assert await balance(gql, member["token"]) == 3000
    await ledger_ok(services)


async def test_no_saving_is_approved_with_zero_points(gql, member, services, clock):
    data = period("2026-05-01", "2026-06-01", 0, 500, householdSize=1)
    out = await submit(gql, member["token"], "energySaving", data, key="n", evidence=signed(data, clock))
    a = out["action"]
    assert a["status"] == "APPROVED" and a["calculation"]["points"] == 0
    assert codes(out) == ["NO_SAVING"]
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
    # the first (unsigned) period only established the meter's baseline
    assert await balance(gql, member["token"]) == 0


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
