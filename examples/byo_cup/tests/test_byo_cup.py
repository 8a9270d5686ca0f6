"""Tests of the byo_cup plugin, using only the fixtures and helpers of jingtan_api.plugins.testing."""

from datetime import timedelta

import jingtan_byo_cup
import pytest

from jingtan_api.plugins.api import Status, sign_record
from jingtan_api.plugins.testing import make_context

CUP = jingtan_byo_cup.ByoCupActionType()


def order(now, **kw):
    data = {"cafe_id": "C1", "order_id": "O-1", "cups": 2, "served_at": now - timedelta(minutes=10)}
    data.update(kw)
    return CUP.Input.model_validate(data)


@pytest.mark.parametrize("cups, grams", [(1, 30), (2, 60), (10, 300)])
def test_calculation(cups, grams):
    ctx = make_context(CUP)
    calc = CUP.calculate(order(ctx.now, cups=cups), None, ctx)
    assert calc.grams_co2e == grams and calc.factor_ids == ["byo_cup.paper_cup"]


@pytest.mark.parametrize("cups", [0, 11, -1])
def test_cups_bounds(cups):
    with pytest.raises(ValueError):
        order(make_context(CUP).now, cups=cups)


@pytest.mark.parametrize(
    "settings, evidence_kw, status",
    [
        ({}, None, Status.APPROVED),
        ({"require_signature": True}, None, Status.REJECTED),
        ({"cafes": {"C1": "s3cret-value"}}, {"secret": "s3cret-value"}, Status.APPROVED),
        ({"cafes": {"C1": "s3cret-value"}}, {"secret": "forged"}, Status.REJECTED),
    ],
)
async def test_verify(settings, evidence_kw, status):
    from jingtan_api.plugins.api import Evidence

    ctx = make_context(CUP, settings=settings)
    item = order(ctx.now)
    evidence = Evidence()
    if evidence_kw:
        record = {"cafe_id": "C1", "order_id": "O-1", "cups": 2}
        evidence = Evidence(signature=sign_record(evidence_kw["secret"], record, ctx.now), signed_at=ctx.now)
    assert (await CUP.verify(item, evidence, ctx)).status == status


async def test_end_to_end(plugin_harness):
    async with plugin_harness([("byo_cup", jingtan_byo_cup)]) as h:
        served = (h.clock() - timedelta(minutes=5)).isoformat()
        data = {"cafeId": "C1", "orderId": "O-9", "cups": 3, "servedAt": served}
        out = await h.submit("byoCup", data)
        assert out["action"]["status"] == "APPROVED"
        assert out["action"]["calculation"]["gramsCo2e"] == 90
        assert await h.balance() == 9
        again = await h.submit("byoCup", data)
        assert again["action"]["status"] == "REJECTED"
        assert again["action"]["reasons"][0]["code"] == "DUPLICATE_EVIDENCE"
        # daily cap 150 g: 90 used, next 3 cups credit 60 g
        capped = await h.submit("byoCup", {**data, "orderId": "O-10"})
        assert capped["action"]["calculation"]["gramsCo2e"] == 60
