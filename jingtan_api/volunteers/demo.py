"""Demo data of the volunteer programme: a certified volunteer (with a training course), an upcoming
bilingual event with a signup, and a referral."""

from datetime import datetime, timedelta

from jingtan_api.services import Services
from jingtan_api.volunteers import service

DEMO_COURSE = {
    "level": service.CERTIFIED, "required": True, "pass_mark_percent": 80,
    "title_zh": "低碳志愿者基础培训", "title_en": "Low-carbon volunteer basics",
    "lessons": [
        {"title_zh": "碳普惠是什么", "title_en": "What carbon inclusion is",
         "body_zh": "碳普惠把个人的低碳行为量化并给予激励。", "body_en": "Carbon inclusion measures and rewards individual low-carbon actions."},
        {"title_zh": "如何组织社区活动", "title_en": "Running a community event",
         "body_zh": "提前报备、控制人数、现场签到。", "body_en": "Announce early, keep to the capacity, check attendees in."},
    ],
    "questions": [
        {"prompt_zh": "推广积分含有碳减排量吗？", "prompt_en": "Do promotional points carry CO2e?",
         "options": ["含有 Yes", "不含 No"], "answer": 1},
    ],
}


async def seed_demo(services: Services, *, admin_id: int, volunteer_user_id: int, member_user_ids: list[int],
                    now: datetime) -> int:
    """Returns the demo event's id."""
    cfg = services.settings.volunteers

    async def tx(conn) -> int:
        volunteer_id = await service.apply(
            conn, user_id=volunteer_user_id, city="深圳 Shenzhen", skills=["垃圾分类 Waste sorting", "骑行 Cycling"],
            motivation="希望带动邻居一起低碳生活 I want my neighbours to live low-carbon too", now=now,
        )
        await service.review(conn, actor_user_id=admin_id, volunteer_id=volunteer_id, approve=True,
                             reason="培训资料齐全 Complete application", request_id=None, now=now)
        course_id = await service.create_course(conn, actor_user_id=admin_id, data=DEMO_COURSE, request_id=None, now=now)
        await service.attempt_course(conn, user_id=volunteer_user_id, course_id=course_id, answers=[1], now=now)
        start = (now + timedelta(days=3)).replace(hour=2, minute=0, second=0, microsecond=0)  # 10:00 UTC+8
        event_id = await service.create_event(conn, user_id=volunteer_user_id, enabled_action_types=[], cfg=cfg, now=now, data={
            "title_zh": "社区回收日", "title_en": "Community recycling day",
            "description": "带上家里的可回收物，志愿者现场讲解分类。 Bring your recyclables; volunteers explain the sorting.",
            "starts_at": start, "ends_at": start + timedelta(hours=3), "place": "深圳市福田区莲花山公园 Lianhuashan Park, Futian",
            "latitude": 22.5535, "longitude": 114.0583, "capacity": 30, "reward_points": 20, "action_type": None,
        })
        await service.sign_up(conn, user_id=member_user_ids[0], event_id=event_id, now=now)
        code = (await service.volunteer_by_user(conn, volunteer_user_id)).referral_code
        await service.refer(conn, user_id=member_user_ids[1], code=code, field="code", cfg=cfg, now=now, at_registration=False)
        return event_id

    return await services.db.write(tx)
