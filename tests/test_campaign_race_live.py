"""Campaign budgets under real concurrency: two uvicorn processes on one PostgreSQL database, 28 clients
claiming bonuses (24 members once, one member four times in parallel) from a budget of five bonuses with a
per-member limit of one: exactly five bonuses to five different members, nothing overspent, every ledger
and campaign invariant intact. (SQLite's single writer is covered in-process by test_campaigns.py.)

Run alone: ``.venv/bin/python -m pytest -q tests/test_campaign_race_live.py``."""

import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy import select

from jingtan_api.campaigns import service as campaigns
from jingtan_api.campaigns.models import CampaignBonus
from jingtan_api.graphql.relay import decode_id
from jingtan_api.merchants import attribution
from jingtan_api.merchants import service as merchants
from jingtan_api.testing import FrozenClock
from live_server import LiveServer
from tests.growth_helpers import SUBMIT, fund_merchant, invariants
from tests.offers_helpers import make_member, make_merchant

B = CampaignBonus.__table__


@pytest.fixture
def clock() -> FrozenClock:
    # The live servers check tokens against the real clock, so the in-process setup issues them "now".
    return FrozenClock(datetime.now(UTC).replace(microsecond=0))


def _submit(url: str, token: str, now: datetime) -> dict:
    drop = {"material": "PAPER", "weightGrams": 1000, "stationId": "ST-RACE", "receiptId": uuid.uuid4().hex[:20],
            "droppedAt": (now - timedelta(minutes=10)).isoformat()}
    with httpx.Client(timeout=60) as http:
        r = http.post(url, json={"query": SUBMIT, "variables": {"input": {"action": {"recycling": drop},
                      "idempotencyKey": uuid.uuid4().hex}}}, headers={"Authorization": f"Bearer {token}"})
    r.raise_for_status()
    return r.json()["data"]["submitAction"]


async def test_two_processes_never_overspend_a_campaign_budget(gql, services, clock, admin, backend, db_url, tmp_path):
    if backend != "postgresql":
        pytest.skip("two server processes need PostgreSQL (SQLite is covered in-process)")
    shop = await make_merchant(gql, services, clock, admin)
    await fund_merchant(services, clock, shop["id"], 1000)
    merchant_id = decode_id(shop["id"], "Merchant")
    actor = merchants.Actor(user_id=shop["owner"]["pk"], is_admin=False, merchant_id=merchant_id)
    now = clock()
    await services.db.write(lambda conn: attribution.add_station(conn, actor=actor, merchant_id=merchant_id,
                                                                 code="ST-RACE", name_zh="站", name_en="S", now=now))
    campaign_id, _ = await services.db.write(lambda conn: campaigns.create_campaign(
        conn, actor=actor, merchant_id=merchant_id, idempotency_key=uuid.uuid4().hex, now=now, max_points=10**6,
        lot_expiry_days=365, budget=100,
        fields={"title_zh": "抢最后的奖励", "title_en": "Race for the bonus", "bonus_points": 20, "per_member_limit": 1,
                "starts_at": now - timedelta(hours=1), "ends_at": now + timedelta(days=1)},
    ))
    members = [await make_member(services, clock) for _ in range(25)]
    tokens = [m["token"] for m in members[:24]] + [members[24]["token"]] * 4
    env = {"JINGTAN_LIMITS__RATE_LIMITING": "false"}
    with LiveServer(db_url, tmp_path, env=env) as one, LiveServer(db_url, tmp_path, env=env) as two:
        urls = [one.url if i % 2 else two.url for i in range(len(tokens))]
        with ThreadPoolExecutor(len(tokens)) as pool:
            results = list(pool.map(lambda args: _submit(args[0], args[1], now), zip(urls, tokens, strict=True)))
    assert all(r["userErrors"] == [] and r["action"]["status"] == "APPROVED" for r in results), results
    async with services.db.read() as conn:
        bonuses = (await conn.execute(select(B.c.user_id, B.c.points).where(B.c.campaign_id == campaign_id))).all()
        left = (await campaigns.campaigns_by_ids(conn, [campaign_id]))[campaign_id]["budget_left"]
    assert len(bonuses) == 5 and len({b.user_id for b in bonuses}) == 5 and left == 0
    assert await invariants(services) == []
