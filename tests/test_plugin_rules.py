"""Table-driven unit tests of the built-in plugins' rules (no database: make_context + FakeHistory)."""

from datetime import UTC, date, datetime, timedelta

import pytest
from jingtan_energy_saving import EnergySavingActionType
from jingtan_recycling import RecyclingActionType
from jingtan_transit import TransitActionType
from pydantic import ValidationError

from jingtan_api.plugins.api import Evidence, Status, Verification, sign_record
from jingtan_api.plugins.testing import FakeHistory, make_context

NOW = datetime(2026, 6, 1, 8, 0, tzinfo=UTC)
TRANSIT, RECYCLING, ENERGY = TransitActionType(), RecyclingActionType(), EnergySavingActionType()


def run(coro):
    import asyncio

    return asyncio.run(coro)


# --- transit ----------------------------------------------------------------------------------------


def trip(mode="METRO", minutes=30, meters=10_000, ago=60, **kw):
    end = NOW - timedelta(minutes=ago)
    return TRANSIT.Input.model_validate(
        {"mode": mode, "started_at": end - timedelta(minutes=minutes), "ended_at": end, "distance_meters": meters, **kw}
    )


@pytest.mark.parametrize(
    "mode, minutes, meters, status, code",
    [
        ("WALK", 60, 7000, Status.APPROVED, None),              # exactly 7 km/h
        ("WALK", 60, 7001, Status.REJECTED, "SPEED_IMPLAUSIBLE"),
        ("WALK", 600, 30_000, Status.APPROVED, None),           # exactly 30 km; 296 g after the walking cap
        ("WALK", 600, 30_001, Status.REJECTED, "DISTANCE_IMPLAUSIBLE"),
        ("BICYCLE", 60, 30_000, Status.NEEDS_REVIEW, "UNSIGNED_HIGH_VALUE"),  # 30 km/h ok, 1461 g unsigned
        ("BICYCLE", 60, 30_001, Status.REJECTED, "SPEED_IMPLAUSIBLE"),
        ("EBIKE", 60, 25_000, Status.APPROVED, None),           # 0 g factor: never reviewed
        ("EBIKE", 60, 25_001, Status.REJECTED, "SPEED_IMPLAUSIBLE"),
        ("BUS", 60, 60_000, Status.NEEDS_REVIEW, "UNSIGNED_HIGH_VALUE"),
        ("BUS", 60, 60_001, Status.REJECTED, "SPEED_IMPLAUSIBLE"),
        ("METRO", 60, 100_000, Status.NEEDS_REVIEW, "UNSIGNED_HIGH_VALUE"),
        ("METRO", 60, 100_001, Status.REJECTED, "SPEED_IMPLAUSIBLE"),
        ("METRO", 10, 10_707, Status.APPROVED, None),           # 500 g: review only above 500 g
        ("METRO", 10, 10_729, Status.NEEDS_REVIEW, "UNSIGNED_HIGH_VALUE"),  # 501 g
        ("METRO", 1, 1000, Status.APPROVED, None),              # 60 s minimum duration
        ("BUS", 5, 99, Status.REJECTED, "DISTANCE_TOO_SHORT"),
        ("BUS", 5, 100, Status.APPROVED, None),
    ],
)
def test_transit_plausibility(mode, minutes, meters, status, code):
    ctx = make_context(TRANSIT, now=NOW)
    v = run(TRANSIT.verify(trip(mode, minutes, meters), Evidence(), ctx))
    assert v.status == status
    assert (v.reasons[0].code if v.reasons else None) == code


def test_transit_duration_under_a_minute_refused():
    ctx = make_context(TRANSIT, now=NOW)
    item = TRANSIT.Input.model_validate(
        {"mode": "WALK", "started_at": NOW - timedelta(seconds=100), "ended_at": NOW - timedelta(seconds=41),
         "distance_meters": 100}
    )
    assert run(TRANSIT.verify(item, Evidence(), ctx)).reasons[0].code == "DURATION_TOO_SHORT"


@pytest.mark.parametrize(
    "mode, meters, grams",
    [("METRO", 10_000, 467), ("BUS", 10_000, 269), ("BICYCLE", 1_000, 48), ("WALK", 999, 48), ("EBIKE", 20_000, 0),
     ("METRO", 1, 0)],
)
def test_transit_factors(mode, meters, grams):
    ctx = make_context(TRANSIT, now=NOW)
    calc = TRANSIT.calculate(trip(mode, 600, meters), Verification.approved(), ctx)
    assert calc.grams_co2e == grams and calc.factor_ids == [f"transit.{mode.lower()}"]


def test_transit_factor_override_and_ebike_enabled():
    ctx = make_context(TRANSIT, now=NOW, settings={"factors": {"transit.ebike": {"value": "61.8", "source": "Meituan"}}})
    calc = TRANSIT.calculate(trip("EBIKE", 60, 10_000), Verification.approved(), ctx)
    assert calc.grams_co2e == 618 and calc.factors[0].source == "Meituan"


@pytest.mark.parametrize("used, meters, grams", [(0, 4000, 194), (194, 4000, 102), (290, 4000, 6), (0, 7000, 296)])
def test_walking_cap(used, meters, grams):
    ctx = make_context(TRANSIT, now=NOW)
    calc = TRANSIT.calculate(trip("WALK", 60, meters), Verification.approved(data={"mode_used_today_grams": used}), ctx)
    assert calc.grams_co2e == grams


def test_walking_cap_reached_and_overlap_from_history():
    history = FakeHistory()
    history.add(input={"mode": "WALK"}, occurred_from=NOW - timedelta(hours=5), occurred_to=NOW - timedelta(hours=4),
                grams_co2e=296)
    ctx = make_context(TRANSIT, now=NOW, history=history)
    assert run(TRANSIT.verify(trip("WALK", 30, 2000), Evidence(), ctx)).reasons[0].code == "MODE_DAILY_CAP_REACHED"
    assert run(TRANSIT.verify(trip("METRO", 30, 5000, ago=250), Evidence(), ctx)).reasons[0].code == "TRIP_OVERLAP"
    # touching end-to-start is not an overlap
    assert run(TRANSIT.verify(trip("METRO", 30, 5000, ago=300), Evidence(), ctx)).status == Status.APPROVED


@pytest.mark.parametrize("meters", [0, -1, 1_000_001])
def test_transit_input_bounds(meters):
    with pytest.raises(ValidationError):
        trip(meters=meters)


@pytest.mark.parametrize(
    "secret, signed_delta, code",
    [("k" * 20, timedelta(0), None), ("wrong" * 4, timedelta(0), "SIGNATURE_INVALID"),
     ("k" * 20, timedelta(days=2), "SIGNATURE_STALE"), ("k" * 20, timedelta(minutes=-30), "SIGNATURE_STALE")],
)
def test_transit_signatures(secret, signed_delta, code):
    ctx = make_context(TRANSIT, now=NOW, settings={"partners": {"p1": "k" * 20}})
    item = trip("METRO", 60, 40_000, partner_trip_id="T1")
    signed_at = NOW - signed_delta
    record = TRANSIT.signed_record(item, Evidence(source="p1"))
    ev = Evidence(source="p1", signature=sign_record(secret, record, signed_at), signed_at=signed_at)
    v = run(TRANSIT.verify(item, ev, ctx))
    assert (v.reasons[0].code if v.reasons else None) == code
    assert v.status == (Status.APPROVED if code is None else Status.REJECTED)


# --- recycling ----------------------------------------------------------------------------------------


def drop(material="PAPER", grams=1000, **kw):
    return RECYCLING.Input.model_validate(
        {"material": material, "weight_grams": grams, "station_id": "S", "receipt_id": "R", "dropped_at": NOW, **kw}
    )


@pytest.mark.parametrize(
    "material, grams, co2e",
    [("PAPER", 1000, 3500), ("PET", 1000, 950), ("GLASS", 1000, 300), ("ALUMINIUM", 1000, 9150),
     ("STEEL", 1000, 2000), ("TEXTILES", 1000, 3600), ("GLASS", 3, 0), ("PET", 1, 0)],
)
def test_recycling_factors(material, grams, co2e):
    ctx = make_context(RECYCLING, now=NOW)
    assert RECYCLING.calculate(drop(material, grams), Verification.approved(), ctx).grams_co2e == co2e


@pytest.mark.parametrize(
    "material, grams, settings, status, code",
    [
        ("PAPER", 50_000, {}, Status.NEEDS_REVIEW, "UNSIGNED_HIGH_VALUE"),  # 175 kg CO2e unsigned
        ("GLASS", 50_000, {}, Status.NEEDS_REVIEW, "UNSIGNED_HIGH_VALUE"),
        ("GLASS", 30_000, {}, Status.APPROVED, None),                       # 9,000 g
        ("GLASS", 50_001, {}, Status.REJECTED, "WEIGHT_IMPLAUSIBLE"),
        ("PET", 6_000, {"max_weight_grams": {"PET": 5_000}}, Status.REJECTED, "WEIGHT_IMPLAUSIBLE"),
        ("E_WASTE", 1_000, {}, Status.REJECTED, "MATERIAL_DISABLED"),
        ("E_WASTE", 1_000, {"e_waste_factor": {"value": "1.5", "source": "operator study"}}, Status.APPROVED, None),
    ],
)
def test_recycling_verify(material, grams, settings, status, code):
    ctx = make_context(RECYCLING, now=NOW, settings=settings)
    v = run(RECYCLING.verify(drop(material, grams), Evidence(), ctx))
    assert v.status == status and (v.reasons[0].code if v.reasons else None) == code


def test_recycling_e_waste_configured_factor_and_fingerprint():
    ctx = make_context(RECYCLING, now=NOW, settings={"e_waste_factor": {"value": "1.5", "source": "operator study"}})
    calc = RECYCLING.calculate(drop("E_WASTE", 2000), Verification.approved(), ctx)
    assert calc.grams_co2e == 3000 and calc.factor_ids == ["recycling.e_waste"]
    assert RECYCLING.evidence_fingerprint(drop(), Evidence()) == "S:R"


@pytest.mark.parametrize("patch", [{"weight_grams": 0}, {"weight_grams": -5}, {"receipt_id": "has space"},
                                   {"material": "WOOD"}, {"dropped_at": "2026-06-01T08:00:00"}])
def test_recycling_input_bounds(patch):
    with pytest.raises(ValidationError):
        drop(**patch)


# --- energy saving ------------------------------------------------------------------------------------


def period(start="2026-04-01", end="2026-05-01", r0=1000, r1=1200, **kw):
    return ENERGY.Input.model_validate(
        {"meter_id": "M-1", "period_start": start, "period_end": end, "start_reading_kwh": r0, "end_reading_kwh": r1, **kw}
    )


def history_with(*periods):
    h = FakeHistory()
    for p in periods:
        f, t = ENERGY.period(p)
        h.add(input=p.model_dump(mode="json"), occurred_from=f, occurred_to=t, subject=p.meter_id)
    return h


@pytest.mark.parametrize(
    "hist, item, baseline_month, source",
    [
        ((), period(household_size=2), "160", "per-capita"),
        ((), period(), "209.60", "per-capita"),
        ((period("2026-02-01", "2026-04-01", 600, 1000),), period(), "200", "last 2 recorded months"),
        ((period("2025-04-01", "2025-05-01", 100, 350), period("2026-03-01", "2026-04-01", 900, 1000)),
         period(household_size=4), "250", "one year earlier"),
        # an own baseline above the per-capita one (80 × 2.62) is limited to it
        ((period("2025-04-01", "2025-05-01", 100, 350),), period(), "209.60", "limited to the per-capita"),
    ],
)
def test_energy_baselines(hist, item, baseline_month, source):
    ctx = make_context(ENERGY, now=NOW, history=history_with(*hist), settings={"review_unsigned_above_grams": 10**6})
    v = run(ENERGY.verify(item, Evidence(), ctx))
    assert v.status == Status.APPROVED
    from decimal import Decimal

    assert Decimal(v.data["baseline_kwh_per_month"]) == Decimal(baseline_month)
    assert source in v.data["baseline_source"]


@pytest.mark.parametrize(
    "region, baseline, used, grams",
    [(None, "250", "200", 26530), ("SOUTH", "250", "200", 19345), ("NORTH", "250", "200", 33880),
     (None, "200", "200", 0), (None, "150", "200", 0), ("SOUTHWEST", "200.5", "200", 113)],
)
def test_energy_calculation(region, baseline, used, grams):
    item = period(r0=1000, r1=1000 + float(used), grid_region=region)
    ctx = make_context(ENERGY, now=NOW, settings={"meter_monthly_cap_grams": 10**6})
    calc = ENERGY.calculate(item, Verification.approved(data={"baseline_kwh_per_month": baseline, "baseline_source": "x"}), ctx)
    assert calc.grams_co2e == grams


def test_energy_meter_cap_and_baseline_only_credit():
    item = period(r0=1000, r1=1200, grid_region="NORTH")  # 250 − 200 = 50 kWh × 0.6776 = 33880 g
    data = {"baseline_kwh_per_month": "250", "baseline_source": "x"}
    calc = ENERGY.calculate(item, Verification.approved(data=data), make_context(ENERGY, now=NOW))
    assert calc.grams_co2e == 20000 and "capped to 20000 g" in calc.formula
    two_months = period("2026-03-01", "2026-05-01", 1000, 1400, grid_region="NORTH")  # 100 kWh = 67760 g
    assert ENERGY.calculate(two_months, Verification.approved(data=data), make_context(ENERGY, now=NOW)).grams_co2e == 40000
    only = ENERGY.calculate(item, Verification.approved(data={**data, "baseline_only": True}), make_context(ENERGY, now=NOW))
    assert only.grams_co2e == 0 and "baseline only" in only.formula


UTILITY = "utility-secret-0123456789"


def utility_evidence(item, secret=UTILITY, at=NOW - timedelta(hours=1), source="grid-co"):
    record = ENERGY.signed_record(item, Evidence(source=source))
    return Evidence(source=source, signature=sign_record(secret, record, at), signed_at=at)


@pytest.mark.parametrize(
    "hist, item, signed, status, codes",
    [
        # first period: unsigned establishes the baseline only, signed credits against the per-capita baseline
        ((), period(r0=1000, r1=1150), False, Status.APPROVED, ["BASELINE_PERIOD"]),
        ((), period(r0=1000, r1=1150), True, Status.APPROVED, []),
        # the reported request: invented meter, 0 kWh in 12 months, 15 people
        ((), period("2025-05-01", "2026-05-01", 0, 0, household_size=15, grid_region="NORTH"), False,
         Status.NEEDS_REVIEW, ["CONSUMPTION_IMPLAUSIBLY_LOW", "BASELINE_PERIOD"]),
        ((), period("2025-05-01", "2026-05-01", 0, 0, household_size=15), True, Status.NEEDS_REVIEW,
         ["CONSUMPTION_IMPLAUSIBLY_LOW"]),
        # later periods: unsigned above 5000 g goes to review (200 − 150 = 50 kWh = 26530 g)
        ((period("2026-03-01", "2026-04-01", 800, 1000),), period(r0=1000, r1=1150), False, Status.NEEDS_REVIEW,
         ["UNSIGNED_HIGH_VALUE"]),
        ((period("2026-03-01", "2026-04-01", 800, 1000),), period(r0=1000, r1=1150), True, Status.APPROVED, []),
        ((period("2026-03-01", "2026-04-01", 800, 1000),), period(r0=1000, r1=1195), False, Status.APPROVED, []),
        ((period("2026-03-01", "2026-04-01", 800, 1000),), period(r0=1000, r1=1099), True, Status.NEEDS_REVIEW,
         ["CONSUMPTION_IMPLAUSIBLY_LOW"]),
    ],
)
def test_energy_integrity_rules(hist, item, signed, status, codes):
    ctx = make_context(ENERGY, now=NOW, history=history_with(*hist), settings={"partners": {"grid-co": UTILITY}})
    v = run(ENERGY.verify(item, utility_evidence(item) if signed else Evidence(), ctx))
    assert v.status == status and [r.code for r in v.reasons] == codes, v


def test_energy_meter_of_another_member_goes_to_review():
    h = FakeHistory()
    earlier = period("2026-03-01", "2026-04-01", 800, 1000)
    f, t = ENERGY.period(earlier)
    h.add(member_id=2, input=earlier.model_dump(mode="json"), occurred_from=f, occurred_to=t, subject="M-1")
    ctx = make_context(ENERGY, now=NOW, history=h, member_id=1, settings={"partners": {"grid-co": UTILITY}})
    item = period(r0=1000, r1=1190)
    v = run(ENERGY.verify(item, utility_evidence(item), ctx))
    assert v.status == Status.NEEDS_REVIEW and v.reasons[0].code == "METER_CLAIMED_BY_OTHER"
    # the other member's periods are not this member's baseline: first period for member 1
    assert v.data["baseline_only"] is False and "per-capita" in v.data["baseline_source"]


@pytest.mark.parametrize(
    "evidence, code",
    [
        (lambda item: utility_evidence(item, secret="wrong"), "SIGNATURE_INVALID"),
        (lambda item: utility_evidence(item, source="unknown-co"), "SIGNATURE_INVALID"),
        (lambda item: utility_evidence(item, at=NOW - timedelta(days=8)), "SIGNATURE_STALE"),
        (lambda item: utility_evidence(period(r0=1000, r1=1100)), "SIGNATURE_INVALID"),  # signed other readings
    ],
)
def test_energy_bad_signatures_are_rejected(evidence, code):
    ctx = make_context(ENERGY, now=NOW, settings={"partners": {"grid-co": UTILITY}})
    item = period(r0=1000, r1=1150)
    v = run(ENERGY.verify(item, evidence(item), ctx))
    assert v.status == Status.REJECTED and v.reasons[0].code == code


@pytest.mark.parametrize(
    "hist, item, code",
    [
        ((period(),), period(r0=1200, r1=1300), "PERIOD_OVERLAP"),
        ((period("2026-03-01", "2026-05-01"),), period(), "PERIOD_OVERLAP"),
        ((period("2026-03-01", "2026-04-01", 1000, 1300),), period(r0=1200, r1=1400), "METER_NOT_MONOTONIC"),
        ((period("2026-05-01", "2026-06-01", 1100, 1300),), period(r0=1000, r1=1200), "METER_NOT_MONOTONIC"),
        ((), period(has_rooftop_pv=True), "PV_EXCLUDED"),
        ((), period(r0=0, r1=20_001), "READING_IMPLAUSIBLE"),
    ],
)
def test_energy_rejections(hist, item, code):
    ctx = make_context(ENERGY, now=NOW, history=history_with(*hist))
    v = run(ENERGY.verify(item, Evidence(), ctx))
    assert v.status == Status.REJECTED and v.reasons[0].code == code


def test_energy_pv_allowed_when_configured_and_no_saving_reason():
    ctx = make_context(ENERGY, now=NOW, settings={"exclude_pv_households": False},
                       history=history_with(period("2026-03-01", "2026-04-01", 0, 100)))
    v = run(ENERGY.verify(period(r0=100, r1=600, has_rooftop_pv=True), Evidence(), ctx))
    assert v.status == Status.APPROVED and v.reasons[0].code == "NO_SAVING"


@pytest.mark.parametrize(
    "kw",
    [{"start": "2026-04-02"}, {"end": "2026-04-01"}, {"start": "2026-01-01", "end": "2027-02-01"},
     {"r0": 10, "r1": 5}, {"r0": float("nan")}, {"r1": float("inf")}, {"r0": -1}],
)
def test_energy_input_bounds(kw):
    with pytest.raises(ValidationError):
        period(**kw)


def test_energy_period_dates():
    f, t = ENERGY.period(period())
    assert f.date() == date(2026, 4, 1) and t.date() == date(2026, 5, 1) and f.utcoffset() == timedelta(hours=8)


@pytest.mark.parametrize(
    "trace_m, status, code",
    [(10_000, Status.APPROVED, None), (7_500, Status.APPROVED, None), (7_499, Status.NEEDS_REVIEW, "GPS_MISMATCH"),
     (12_501, Status.NEEDS_REVIEW, "GPS_MISMATCH")],
)
def test_transit_gps_trace_must_match_distance(trace_m, status, code):
    ctx = make_context(TRANSIT, now=NOW, settings={"review_above_grams": 10_000})
    item = trip("METRO", 30, 10_000, gps_trace={"point_count": 120, "distance_meters": trace_m})
    v = run(TRANSIT.verify(item, Evidence(), ctx))
    assert v.status == status and (v.reasons[0].code if v.reasons else None) == code


def test_transit_signature_from_unknown_partner():
    ctx = make_context(TRANSIT, now=NOW, settings={"partners": {"p1": "k" * 20}})
    item = trip("METRO", 60, 40_000, partner_trip_id="T1")
    ev = Evidence(source="p2", signature="00" * 32, signed_at=NOW)
    assert run(TRANSIT.verify(item, ev, ctx)).reasons[0].code == "SIGNATURE_INVALID"
