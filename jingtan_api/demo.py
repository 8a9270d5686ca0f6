"""Demo data for `make run`: bilingual members, a merchant, an admin and some ledger history."""

from datetime import timedelta

from jingtan_api.accounts import service as ledger
from jingtan_api.accounts.jobs import expire_points
from jingtan_api.challenges.demo import seed_challenges
from jingtan_api.auth.permissions import ADMIN, MEMBER, MERCHANT
from jingtan_api.identity.demo import seed_demo as seed_identity
from jingtan_api.campaigns.demo import seed_demo as seed_campaign_demo
from jingtan_api.methodologies.demo import seed_demo as seed_methodologies
from jingtan_api.offers.demo import seed_offers
from jingtan_api.progress import ProgressBar
from jingtan_api.organisations.demo import seed_community
from jingtan_api.services import Services
from jingtan_api.users import service as users_service
from jingtan_api.users.service import count_users
from jingtan_api.volunteers.demo import seed_demo as seed_volunteers

DEMO_PASSWORD = "Jingtan-demo-2026"

DEMO_USERS = [
    # (email, phone, display name, roles)
    ("admin@demo.jingtan.org", None, "平台管理员 Platform Admin", {MEMBER, ADMIN}),
    (None, "13800138001", "李小明 Li Xiaoming", {MEMBER}),
    ("wangfang@demo.jingtan.org", None, "王芳 Wang Fang", {MEMBER}),
    ("chen.jie@demo.jingtan.org", "13800138003", "陈杰 Chen Jie", {MEMBER}),
    ("cafe@demo.jingtan.org", None, "绿叶咖啡 店员 Green Leaf Café staff", {MEMBER, MERCHANT}),
]

# (user index, amount, reason, days ago)
DEMO_GRANTS = [
    (1, 500, "新用户欢迎积分 Welcome points", 40),
    (1, 120, "志愿者植树活动 Volunteer tree planting", 10),
    (2, 300, "新用户欢迎积分 Welcome points", 20),
    (2, 80, "低碳知识问答奖励 Low-carbon quiz reward", 2),
    (3, 200, "新用户欢迎积分 Welcome points", 400),  # older than a year: expires in the demo
    (3, 150, "社区回收日志愿服务 Recycling-day volunteer", 5),
]


async def seed_demo(services: Services, *, if_empty: bool) -> int:
    db = services.db
    async with db.read() as conn:
        existing = await count_users(conn)
    if existing and if_empty:
        print(f"demo data skipped: the database already has {existing} user(s)")
        return 0
    now = services.clock()
    bar = ProgressBar("seed-demo", total=len(DEMO_USERS) + len(DEMO_GRANTS) + 3)
    user_ids = []
    for email, phone, name, roles in DEMO_USERS:
        bar.advance(1, "members")
        user_ids.append(
            await users_service.register(
                services,
                email=email, phone=phone, password=DEMO_PASSWORD, display_name=name, roles=frozenset(roles), now=now
            )
        )
    admin_id = user_ids[0]
    cfg = services.settings.points
    for n, (index, amount, reason, days_ago) in enumerate(DEMO_GRANTS):
        bar.advance(1, "ledger history")
        await db.write(
            lambda conn, i=index, a=amount, r=reason, d=days_ago, k=n: ledger.adjust_points(
                conn,
                direction=ledger.GRANT,
                actor_user_id=admin_id,
                user_id=user_ids[i],
                amount=a,
                reason=r,
                idempotency_key=f"demo-grant-{k}",
                max_amount=cfg.max_single_amount,
                lot_expiry_days=cfg.lot_expiry_days,
                now=now - timedelta(days=d),
            )
        )
    await db.write(
        lambda conn: ledger.adjust_points(
            conn,
            direction=ledger.REVOKE,
            actor_user_id=admin_id,
            user_id=user_ids[2],
            amount=30,
            reason="重复发放更正 Correction of a duplicate grant",
            idempotency_key="demo-revoke-0",
            max_amount=cfg.max_single_amount,
            lot_expiry_days=cfg.lot_expiry_days,
            now=now - timedelta(days=1),
        )
    )
    bar.advance(1, "expiry")
    await expire_points(db, now=now, lot_expiry_days=cfg.lot_expiry_days)
    bar.advance(1, "offers")
    await seed_offers(services, admin_id=admin_id, owner_user_id=user_ids[4], now=now)
    # The other domains' demo data: contacts verified and methodologies approved first (both gate credits).
    await seed_identity(services, user_ids=user_ids, now=now)
    await seed_methodologies(services, password=DEMO_PASSWORD, now=now)
    await seed_volunteers(services, admin_id=admin_id, volunteer_user_id=user_ids[3], member_user_ids=user_ids[1:3], now=now)
    await seed_community(services, admin_id=admin_id, user_ids=user_ids, now=now)
    await seed_campaign_demo(services, admin_id=admin_id, now=now)
    await seed_challenges(services, admin_id=admin_id, user_ids=user_ids, now=now)
    bar.advance(1, "done")
    bar.close()
    print(f"demo data loaded. Logins (password for all: {DEMO_PASSWORD}):")
    for email, phone, name, roles in DEMO_USERS:
        print(f"  {email or phone:<28} {name}  [{', '.join(sorted(roles))}]")
    return 0
