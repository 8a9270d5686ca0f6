"""Demo data of impact and challenges: the demo members' cities, and a challenge of the demo community."""

from datetime import datetime, timedelta

from sqlalchemy import select

from jingtan_api.challenges import service
from jingtan_api.impact import service as impact
from jingtan_api.organisations import service as orgs
from jingtan_api.services import Services


async def seed_challenges(services: Services, *, admin_id: int, user_ids: list[int], now: datetime) -> None:
    db = services.db
    for uid in user_ids[1:4]:
        await db.write(lambda conn, u=uid: impact.set_profile(conn, user_id=u, city="上海", change_city=True, now=now))
    async with db.read() as conn:
        org_id = (await conn.execute(
            select(orgs.O.c.id).where(orgs.O.c.kind == "COMMUNITY", orgs.O.c.status == orgs.ACTIVE).order_by(orgs.O.c.id)
        )).scalar()
    if org_id is None:
        return
    values = service.validate(
        {"name_zh": "绿色出行周", "name_en": "Green commute week", "description_zh": "一周内绿色出行减排2千克即达标。",
         "description_en": "Avoid 2 kg CO2e by green travel within a week.", "audience": service.MEMBERS,
         "goal_kind": service.GRAMS, "goal_value": 2_000, "action_types": ["transit"], "starts_at": now,
         "ends_at": now + timedelta(days=7), "reward_points": 0, "max_rewarded": 0},
        now=now, known_types=list(services.plugins.action_types) or ["transit"], max_days=366, max_reward=1_000_000,
    )
    actor = orgs.Actor(user_id=admin_id, is_platform_admin=True)
    await db.write(lambda conn: service.create_challenge(conn, actor=actor, org_id=org_id, values=values, now=now))
