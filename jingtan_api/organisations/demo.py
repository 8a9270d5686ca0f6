"""Demo data of the community (issue #10): a household with a shared pool, a company and a residential
community with members, and a donation — bilingual, for `jingtan seed-demo`."""

from datetime import datetime, timedelta

from jingtan_api.households import service as households
from jingtan_api.organisations import service as orgs
from jingtan_api.services import Services

COMPANY = {
    "kind": orgs.COMPANY, "name_zh": "绿源科技有限公司", "name_en": "Lvyuan Technology Co., Ltd.",
    "description_zh": "深圳南山的一家节能科技公司，员工绿色出行、节约用电。",
    "description_en": "An energy-saving technology company in Nanshan, Shenzhen; its staff travel green and save power.",
    "city": "深圳", "district": "南山区", "website": "https://lvyuan.demo.jingtan.org",
}
COMMUNITY = {
    "kind": orgs.COMMUNITY, "name_zh": "阳光花园社区", "name_en": "Sunshine Garden Community",
    "description_zh": "上海徐汇的住宅社区，开展垃圾分类与回收日活动。",
    "description_en": "A residential community in Xuhui, Shanghai, running waste sorting and recycling days.",
    "city": "上海", "district": "徐汇区",
}


async def seed_community(services: Services, *, admin_id: int, user_ids: list[int], now: datetime) -> None:
    """``user_ids``: the demo users in DEMO_USERS order (1 Li Xiaoming, 2 Wang Fang, 3 Chen Jie)."""
    db = services.db
    li, wang, chen = user_ids[1], user_ids[2], user_ids[3]
    cfg = services.settings
    then = now - timedelta(days=7)
    household = await db.write(lambda conn: households.create_household(conn, user_id=wang, name="王家 The Wang family", now=then))
    _, code = await db.write(lambda conn: households.create_invite(
        conn, actor_user_id=wang, household_id=household, valid_for=timedelta(days=1), now=then))
    await db.write(lambda conn: households.join_by_invite(conn, user_id=li, code=code, now=then))
    await db.write(lambda conn: households.open_pool(conn, actor_user_id=wang, household_id=household, now=then))
    await db.write(lambda conn: households.transfer_to_pool(
        conn, user_id=li, points=50, idempotency_key="demo-pool-0", max_amount=cfg.points.max_single_amount,
        lot_expiry_days=cfg.points.lot_expiry_days, now=now))
    company = await db.write(lambda conn: orgs.create_organisation(
        conn, actor_user_id=admin_id, profile=COMPANY, admin_user_id=chen, request_id=None, now=then))
    community = await db.write(lambda conn: orgs.create_organisation(
        conn, actor_user_id=admin_id, profile=COMMUNITY, admin_user_id=wang, request_id=None, now=then))
    _, org_code = await db.write(lambda conn: orgs.create_invite(
        conn, actor=orgs.Actor(chen), org_id=company, valid_for=timedelta(days=30), max_uses=20, now=then))
    await db.write(lambda conn: orgs.join_by_invite(conn, user_id=li, code=org_code, now=then))
    await db.write(lambda conn: orgs.request_to_join(conn, user_id=li, org_id=community,
                                                     message="我住在3号楼 I live in building 3", now=then))
    await db.write(lambda conn: orgs.donate(
        conn, user_id=chen, org_id=company, points=100, idempotency_key="demo-donation-0",
        max_amount=cfg.points.max_single_amount, lot_expiry_days=cfg.points.lot_expiry_days, now=now))
