"""The expiry jobs go on past an item that fails, and pick it up again on the next run."""

from offers_helpers import make_member

from jingtan_api.accounts import service as ledger
from jingtan_api.accounts.jobs import expire_points


async def test_one_failing_account_does_not_stall_points_expiry(services, clock, monkeypatch):
    members = [await make_member(services, clock, points=50) for _ in range(3)]
    async with services.db.read() as conn:
        accounts = [await ledger.member_account_id(conn, m["pk"]) for m in members]
    clock.advance(days=services.settings.points.lot_expiry_days + 1)
    original = ledger.expire_account_lots
    broken = accounts[0]

    async def flaky(conn, account_id, **kwargs):
        if account_id == broken:
            raise RuntimeError("simulated corruption")
        return await original(conn, account_id, **kwargs)

    monkeypatch.setattr(ledger, "expire_account_lots", flaky)
    cfg = services.settings.points
    assert await expire_points(services.db, now=clock(), lot_expiry_days=cfg.lot_expiry_days) == (2, 100)
    monkeypatch.setattr(ledger, "expire_account_lots", original)
    assert await expire_points(services.db, now=clock(), lot_expiry_days=cfg.lot_expiry_days) == (1, 50)
    async with services.db.read() as conn:
        assert await ledger.check_invariants(conn) == []
