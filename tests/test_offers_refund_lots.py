"""Refunds restore points with the expiries of the lots the redemption consumed (ledger lot_consumption),
one lot per original expiry, with a floor of now + refund_min_valid_days: redeem-and-cancel cannot extend
the life of points beyond that floor."""

from datetime import datetime, timedelta

import pytest
from offers_helpers import CANCEL, balance, db_state, grant, make_admin, make_member, make_merchant, make_offer, redeem, reissue
from sqlalchemy import select, text

from jingtan_api.accounts import service as ledger
from jingtan_api.accounts.models import LotConsumption, PointsLot
from jingtan_api.auth.permissions import ADMIN, MEMBER
from jingtan_api.redemptions.jobs import expire_redemptions

EXPIRING = """query($days: Int) { viewer { account { balance expiringSoon(days: $days) { points expiresAt } } } }"""


@pytest.fixture
async def setup(gql, services, clock, admin_user):
    """A member with 100 points expiring on day 365 and 100 expiring on day 665 (granted on day 300)."""
    start = clock()
    member = await make_member(services, clock, points=100)
    clock.advance(days=300)
    await grant(services, clock, member["pk"], 100)
    reissue(services, clock, member)
    merchant = await make_merchant(gql, services, clock, reissue(services, clock, admin_user, MEMBER, ADMIN))
    offer = await make_offer(gql, clock, merchant, pointsPrice=150, totalStock=10, perMemberLimit=5)
    return {
        "member": member, "merchant": merchant, "offer": offer,
        "soon": start + timedelta(days=365), "late": start + timedelta(days=665),
    }


@pytest.fixture
async def admin_user(services, clock):
    return await make_admin(services, clock)


async def expiring(gql, member: dict, days: int) -> list[tuple[int, datetime]]:
    body = await gql.ok(EXPIRING, {"days": days}, token=member["token"])
    return [(e["points"], datetime.fromisoformat(e["expiresAt"])) for e in body["viewer"]["account"]["expiringSoon"]]


async def fresh_offer(gql, services, clock, setup) -> str:
    """An offer open now (after the test clock moved past the fixture offer's window)."""
    owner = reissue(services, clock, setup["merchant"]["owner"])
    return (await make_offer(gql, clock, {"token": owner["token"]}, pointsPrice=150))["id"]


async def member_lots(services, user_pk: int) -> list[tuple[int, int, object]]:
    L = PointsLot.__table__
    async with services.db.read() as conn:
        account_id = await ledger.member_account_id(conn, user_pk)
        rows = await conn.execute(
            select(L.c.amount, L.c.remaining, L.c.expires_at).where(L.c.account_id == account_id).order_by(L.c.id)
        )
        return [tuple(r) for r in rows]


async def consumption_rows(services) -> list[tuple[int, object]]:
    LC = LotConsumption.__table__
    async with services.db.read() as conn:
        return [tuple(r) for r in await conn.execute(select(LC.c.amount, LC.c.expires_at).order_by(LC.c.id))]


async def test_cancel_restores_each_original_expiry(gql, services, clock, setup):
    member = setup["member"]
    r = (await redeem(gql, member, setup["offer"]["id"]))["redemption"]
    assert await balance(services, member["pk"]) == 50
    # The debit recorded what it took from each lot: all of the soon lot, 50 of the late one.
    assert await consumption_rows(services) == [(100, setup["soon"]), (50, setup["late"])]
    assert await expiring(gql, member, 90) == []

    data = await gql.ok(CANCEL, {"input": {"redemptionId": r["id"]}}, token=member["token"])
    assert data["cancelRedemption"]["userErrors"] == []
    assert await balance(services, member["pk"]) == 200
    lots = await member_lots(services, member["pk"])
    # Two refund lots with the original expiries — not one 150-point lot expiring on day 665.
    assert lots[2:] == [(100, 100, setup["soon"]), (50, 50, setup["late"])]
    # The 100 points expiring on day 365 show in expiringSoon again (65 days ahead).
    assert await expiring(gql, member, 90) == [(100, setup["soon"])]
    assert (await db_state(services, setup["offer"]["id"]))["problems"] == []

    # Redeem-and-cancel again: still nothing gained. The soon points expire on day 365 as they would have.
    r = (await redeem(gql, member, setup["offer"]["id"]))["redemption"]
    await gql.ok(CANCEL, {"input": {"redemptionId": r["id"]}}, token=member["token"])
    held = {}
    for _, remaining, expires_at in await member_lots(services, member["pk"]):
        held[expires_at] = held.get(expires_at, 0) + remaining
    assert {k: v for k, v in held.items() if v} == {setup["soon"]: 100, setup["late"]: 100}
    assert (await db_state(services, setup["offer"]["id"]))["problems"] == []


async def test_cancel_after_the_original_expiry_gets_the_floor(gql, services, clock, setup):
    member = setup["member"]
    clock.advance(days=62)  # day 362: the soon lot expires in 3 days
    reissue(services, clock, member)
    r = (await redeem(gql, member, await fresh_offer(gql, services, clock, setup)))["redemption"]
    clock.advance(days=4)  # day 366: the soon lot's expiry has passed, the code is still valid
    reissue(services, clock, member)
    data = await gql.ok(CANCEL, {"input": {"redemptionId": r["id"]}}, token=member["token"])
    assert data["cancelRedemption"]["userErrors"] == []
    floor = clock() + timedelta(days=services.settings.offers.refund_min_valid_days)
    assert (await member_lots(services, member["pk"]))[2:] == [(100, 100, floor), (50, 50, setup["late"])]
    assert (await db_state(services))["problems"] == []


@pytest.mark.parametrize("days_before_redeeming", [0, 62])
async def test_expiry_job_refunds_restore_original_expiries(gql, services, clock, setup, days_before_redeeming):
    member = setup["member"]
    clock.advance(days=days_before_redeeming)
    reissue(services, clock, member)
    redeemed = await redeem(gql, member, await fresh_offer(gql, services, clock, setup))
    assert redeemed["userErrors"] == []
    clock.advance(days=services.settings.offers.redemption_valid_days, seconds=1)
    cfg = services.settings
    assert await expire_redemptions(
        services.db, now=clock(), lot_expiry_days=cfg.points.lot_expiry_days,
        refund_min_valid_days=cfg.offers.refund_min_valid_days,
    ) == (1, 150)
    floor = clock() + timedelta(days=cfg.offers.refund_min_valid_days)
    # Day 307: both expiries are still ahead and kept. Day 369: the soon lot's expiry (365) has passed,
    # so its points get the floor; the late lot keeps day 665.
    soon = setup["soon"] if days_before_redeeming == 0 else floor
    assert (await member_lots(services, member["pk"]))[2:] == [(100, 100, soon), (50, 50, setup["late"])]
    assert await balance(services, member["pk"]) == 200
    assert (await db_state(services))["problems"] == []


async def test_refund_merges_expiries_that_fall_under_the_floor(gql, services, clock, admin_user):
    """Two consumed lots whose expiries both passed by the refund become one lot at the floor."""
    member = await make_member(services, clock, points=100)
    clock.advance(hours=1)
    await grant(services, clock, member["pk"], 100)
    clock.advance(days=364)  # the lots expire in 1 day and 1 day + 1 hour
    reissue(services, clock, member)
    merchant = await make_merchant(gql, services, clock, reissue(services, clock, admin_user, MEMBER, ADMIN))
    offer = await make_offer(gql, clock, merchant, pointsPrice=150)
    r = (await redeem(gql, member, offer["id"]))["redemption"]
    clock.advance(days=2)
    reissue(services, clock, member)
    await gql.ok(CANCEL, {"input": {"redemptionId": r["id"]}}, token=member["token"])
    floor = clock() + timedelta(days=services.settings.offers.refund_min_valid_days)
    assert (await member_lots(services, member["pk"]))[2:] == [(150, 150, floor)]
    assert (await db_state(services, offer["id"]))["problems"] == []


async def sql(db, statement: str, **params):
    async def run(conn):
        result = await conn.execute(text(statement), params)
        return result.all() if result.returns_rows else None

    return await db.write(run)


async def test_invariant_checker_reports_missing_or_wrong_lot_consumption(gql, services, clock, setup):
    await redeem(gql, setup["member"], setup["offer"]["id"])
    db = services.db
    assert (await db_state(services))["problems"] == []
    first, second = [r[0] for r in await sql(db, "SELECT id FROM lot_consumption ORDER BY id")]
    entry = (await sql(db, "SELECT entry_id FROM lot_consumption WHERE id = :i", i=first))[0][0]

    await sql(db, "UPDATE lot_consumption SET amount = 99 WHERE id = :i", i=first)
    assert (await db_state(services))["problems"] == [f"member debit entry {entry} of -150 has lot consumption of 149"]

    # Right amount, but the expiry of the other (later) lot: a refund would extend those points.
    await sql(
        db, "UPDATE lot_consumption SET amount = 100, expires_at = (SELECT max(expires_at) FROM points_lot) WHERE id = :i",
        i=first,
    )
    assert (await db_state(services))["problems"] == [f"lot consumption {first} does not match its entry {entry} or lot"]

    await sql(
        db, "UPDATE lot_consumption SET expires_at = (SELECT expires_at FROM points_lot WHERE id = lot_id) WHERE id = :i",
        i=first,
    )
    assert (await db_state(services))["problems"] == []
    await sql(db, "DELETE FROM lot_consumption WHERE id = :i", i=second)
    assert (await db_state(services))["problems"] == [f"member debit entry {entry} of -150 has lot consumption of 100"]
    await sql(db, "DELETE FROM lot_consumption")
    assert (await db_state(services))["problems"] == [f"member debit entry {entry} of -150 has lot consumption of 0"]


async def test_lots_of_a_posting_must_split_its_credit(services, clock):
    member = await make_member(services, clock)
    now = clock()

    async def post(lots, **kw):
        async def run(conn):
            account = await ledger.member_account_id(conn, member["pk"])
            issuance = await ledger.platform_account_id(conn, ledger.ISSUANCE_CODE)
            await ledger.post_transaction(
                conn, kind="GRANT", now=now, lot_expiry_days=365,
                postings=[ledger.Posting(issuance, -10), ledger.Posting(account, 10, lots=lots, **kw)],
            )

        await services.db.write(run)

    later = now + timedelta(days=3)
    for bad, kw in [
        (((5, later), (4, later)), {}),
        (((10, later), (0, later)), {}),
        ((), {}),
        (((10, later),), {"lot_expires_at": later}),
    ]:
        with pytest.raises(ValueError):
            await post(bad, **kw)
    assert await balance(services, member["pk"]) == 0
    await post(((4, later), (6, now + timedelta(days=9))))
    assert [(a, e) for a, _, e in await member_lots(services, member["pk"])] == [
        (4, later), (6, now + timedelta(days=9))
    ]
    assert (await db_state(services))["problems"] == []
