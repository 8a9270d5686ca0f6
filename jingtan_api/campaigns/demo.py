"""Demo data of merchants' growth for `make run` (called by ``jingtan_api.demo.seed_demo``): Green Leaf
Café gets launch points, a recycling station, a running "double points" campaign and a GOLD-level
green certification."""

from datetime import datetime, timedelta

from sqlalchemy import select

from jingtan_api.accounts import service as ledger
from jingtan_api.campaigns import service
from jingtan_api.merchants import attribution, certification
from jingtan_api.merchants import service as merchants
from jingtan_api.merchants.models import Merchant
from jingtan_api.services import Services

M = Merchant.__table__
DEMO_STATION = "SH-XH-001"


async def seed_demo(services: Services, *, admin_id: int, now: datetime) -> int:
    """Returns the campaign's id."""
    cfg = services.settings.points

    async def tx(conn) -> int:
        row = (await conn.execute(select(M.c.id, M.c.account_id).where(M.c.name_en == "Green Leaf Café"))).one()
        issuance = await ledger.platform_account_id(conn, ledger.ISSUANCE_CODE)
        await ledger.post_transaction(
            conn, kind=ledger.GRANT, postings=[ledger.Posting(issuance, -1000), ledger.Posting(row.account_id, 1000)],
            now=now, lot_expiry_days=cfg.lot_expiry_days, actor_user_id=admin_id,
            memo="平台启动扶持积分 Launch support points",
        )
        actor = merchants.Actor(user_id=admin_id, is_admin=True, merchant_id=None)
        await attribution.add_station(conn, actor=actor, merchant_id=row.id, code=DEMO_STATION,
                                      name_zh="绿叶咖啡回收站", name_en="Green Leaf Café recycling station", now=now)
        campaign_id, _ = await service.create_campaign(
            conn, actor=actor, merchant_id=row.id, budget=600, idempotency_key="demo-campaign-1", now=now,
            max_points=cfg.max_single_amount, lot_expiry_days=cfg.lot_expiry_days,
            fields={
                "title_zh": "本店回收，积分翻倍", "title_en": "Recycle at our station: double points",
                "description_zh": f"在绿叶咖啡回收站（{DEMO_STATION}）投递可回收物，本周积分翻倍，每人最多 3 次。",
                "description_en": f"Drop recyclables at the Green Leaf Café station ({DEMO_STATION}) this week: "
                                  "double points, up to 3 times each.",
                "action_type_code": "recycling", "bonus_percent": 100, "per_member_limit": 3,
                "starts_at": now - timedelta(hours=1), "ends_at": now + timedelta(days=7),
            },
        )
        await certification.certify(conn, auditor_user_id=admin_id, merchant_id=row.id, level="GOLD",
                                    notes="现场审核：无一次性杯具，可降解包装 / On-site audit: no single-use cups, compostable packaging",
                                    valid_days=365, now=now)
        return campaign_id

    return await services.db.write(tx)
