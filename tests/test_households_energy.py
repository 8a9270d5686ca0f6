"""Energy-saving meters belong to the household (plugin API 1.2, docs/community.md "Households"): a meter
period is credited once per household whoever of its members submits it, the household's earlier periods
are its baseline, and another household's claim on the meter goes to review (SQLite and PostgreSQL)."""

import asyncio
from datetime import UTC, datetime

import pytest
from community_helpers import household_with_members, member
from jingtan_energy_saving import EnergySavingActionType
from sqlalchemy import select

from jingtan_api.actions.models import Action
from jingtan_api.graphql.relay import from_global_id
from jingtan_api.plugins.api import Status
from jingtan_api.plugins.testing import FakeHistory, make_context
from jingtan_api.testing import FrozenClock
from tests.actions_helpers import balance, ledger_ok, submit
from tests.test_actions_energy_saving import UTILITY_SECRET, codes, period, signed


@pytest.fixture
def clock():
    return FrozenClock(datetime(2026, 7, 10, 8, 0, tzinfo=UTC))


@pytest.fixture
def settings_overrides():
    return {"plugins": {"enabled": ["energy_saving"], "energy_saving": {"partners": {"sgcc-bj": UTILITY_SECRET}}}}


async def test_a_household_meter_is_credited_once_whoever_submits(gql, services, clock):
    mum, dad = await member(gql, "妈妈 Mum"), await member(gql, "爸爸 Dad")
    hid = await household_with_members(gql, mum, dad, name="张家 The Zhangs")
    first = await submit(gql, mum["token"], "energySaving", period("2026-05-01", "2026-06-01", 1000, 1200, householdSize=3), key="m1")
    assert first["action"]["status"] == "APPROVED" and codes(first) == ["BASELINE_PERIOD"]
    # Dad claims the next month of the same meter: the household's own baseline, no "claimed by another".
    data = period("2026-06-01", "2026-07-01", 1200, 1350, gridRegion="SOUTH")
    out = await submit(gql, dad["token"], "energySaving", data, key="d1", evidence=signed(data, clock))
    assert out["action"]["status"] == "APPROVED", out
    assert "METER_CLAIMED_BY_OTHER" not in codes(out)
    assert "average of the last 1 recorded months" in out["action"]["calculation"]["formula"]
    assert out["action"]["calculation"]["gramsCo2e"] == 19345
    # Mum submits the same period again: credited once per household.
    again = await submit(gql, mum["token"], "energySaving", data, key="m2", evidence=signed(data, clock))
    assert again["action"]["status"] == "REJECTED" and codes(again) == ["DUPLICATE_EVIDENCE"]
    assert await balance(gql, dad["token"]) == 1934 and await balance(gql, mum["token"]) == 0
    async with services.db.read() as conn:
        rows = (await conn.execute(select(Action.__table__.c.household_id))).scalars().all()
    assert set(rows) == {int(from_global_id(hid)[1])}
    await ledger_ok(services)


async def test_another_households_claim_on_the_meter_goes_to_review(gql, services, clock):
    a, b = await member(gql), await member(gql)
    await household_with_members(gql, a)
    await household_with_members(gql, b)
    await submit(gql, a["token"], "energySaving", period("2026-05-01", "2026-06-01", 1000, 1200, householdSize=3), key="a1")
    data = period("2026-06-01", "2026-07-01", 1200, 1350, gridRegion="SOUTH")
    out = await submit(gql, b["token"], "energySaving", data, key="b1", evidence=signed(data, clock))
    assert out["action"]["status"] == "NEEDS_REVIEW" and "METER_CLAIMED_BY_OTHER" in codes(out)
    assert await balance(gql, b["token"]) == 0


async def test_plugin_context_scope_unit():
    at = EnergySavingActionType()
    history = FakeHistory()
    rec = history.add(member_id=1, household_id=7, subject="M-1", status=Status.APPROVED,
                      occurred_from=datetime(2026, 5, 1, tzinfo=UTC), input={})
    mine = make_context(at, member_id=2, household_id=7, history=history)
    alone = make_context(at, member_id=2, history=history)
    assert (mine.scope, alone.scope, rec.scope) == ("household:7", "member:2", "household:7")
    assert mine.same_scope(rec) and not alone.same_scope(rec)


async def test_the_monthly_cap_is_shared_by_the_household(gql, services, clock):
    # Two meters of one household, one signed month each: 20 kg (the meter cap) + 20 kg, but the
    # household's monthly cap is 30 kg, so the second is credited only up to 10 kg.
    mum, dad = await member(gql), await member(gql)
    await household_with_members(gql, mum, dad)
    credited = []
    for who, meter in ((mum, "M-A"), (dad, "M-B")):
        data = period("2026-06-01", "2026-07-01", 1000, 1150, meter=meter, householdSize=3, gridRegion="SOUTH")
        out = await submit(gql, who["token"], "energySaving", data, key=f"{meter}-1", evidence=signed(data, clock))
        assert out["action"]["status"] == "APPROVED", out
        credited.append(out["action"]["calculation"]["gramsCo2e"])
    assert credited == [20000, 10000], credited
    assert "CAPPED" in codes(out)
    # A member outside the household still has a cap of their own.
    alone = await member(gql)
    data = period("2026-06-01", "2026-07-01", 1000, 1150, meter="M-C", householdSize=3, gridRegion="SOUTH")
    out = await submit(gql, alone["token"], "energySaving", data, key="M-C-1", evidence=signed(data, clock))
    assert out["action"]["calculation"]["gramsCo2e"] == 20000
    await ledger_ok(services)


async def test_concurrent_household_submissions_never_pass_the_shared_cap(gql, services, clock):
    people = [await member(gql) for _ in range(20)]
    await household_with_members(gql, people[0], *people[1:])
    datas = [period("2026-06-01", "2026-07-01", 1000, 1150, meter=f"M-{i}", householdSize=3, gridRegion="SOUTH")
             for i in range(20)]
    outs = await asyncio.gather(*(submit(gql, p["token"], "energySaving", d, key=f"race-{i}", evidence=signed(d, clock))
                                  for i, (p, d) in enumerate(zip(people, datas, strict=True))))
    grams = sorted(o["action"]["calculation"]["gramsCo2e"] for o in outs if o["action"]["status"] == "APPROVED")
    assert sum(grams) == 30000 and grams[-2:] == [10000, 20000], grams
    await ledger_ok(services)
