"""Demo merchants and offers for `make run` (called by ``jingtan_api.demo.seed_demo``)."""

from datetime import datetime, timedelta

from jingtan_api.merchants import service as merchants
from jingtan_api.offers import service
from jingtan_api.services import Services

DEMO_MERCHANTS = [
    # (profile, offers: (title zh, title en, price, stock, per member, days valid))
    (
        {
            "name_zh": "绿叶咖啡", "name_en": "Green Leaf Café", "category": "CAFE", "city": "上海", "district": "徐汇区",
            "address": "衡山路 1 号", "latitude": 31.2049, "longitude": 121.4423,
            "commitments": ["自带杯立减 2 元 / 2 yuan off with your own cup", "100% 可降解包装 / Compostable packaging"],
        },
        [("燕麦拿铁一杯", "One oat latte", 120, 50, 2, 30), ("自带杯升杯券", "Free size-up with your own cup", 30, 200, 5, 60)],
    ),
    (
        {
            "name_zh": "轻骑单车工坊", "name_en": "Easy Ride Bike Workshop", "category": "BIKE_SHOP", "city": "上海",
            "district": "静安区", "address": "愚园路 88 号",
            "commitments": ["旧车零件回收 / Old parts recycled"],
        },
        [("免费单车保养", "Free bike tune-up", 300, 20, 1, 45)],
    ),
    (
        {
            "name_zh": "城市地铁", "name_en": "City Metro", "category": "TRANSIT", "city": "北京", "district": "东城区",
            "address": "东直门交通枢纽", "commitments": ["100% 绿电运营 / Runs on green power"],
        },
        [("地铁一日票", "Metro day pass", 200, 100, 2, 90)],
    ),
]


async def seed_offers(services: Services, *, admin_id: int, owner_user_id: int, now: datetime) -> list[int]:
    """Create the demo merchants (the first one owned by ``owner_user_id``) and their ACTIVE offers.
    Returns the offer ids."""
    offer_ids: list[int] = []
    for index, (profile, offers) in enumerate(DEMO_MERCHANTS):

        async def tx(conn, profile=profile, offers=offers, owner=owner_user_id if index == 0 else None) -> list[int]:
            merchant_id = await merchants.create_merchant(
                conn, actor_user_id=admin_id, profile=profile, owner_user_id=owner, request_id=None, now=now
            )
            actor = merchants.Actor(user_id=admin_id, is_admin=True, merchant_id=None)
            return [
                await service.create_offer(
                    conn, actor=actor, merchant_id=merchant_id, status=service.ACTIVE, now=now,
                    fields={
                        "title_zh": zh, "title_en": en, "points_price": price, "total_stock": stock,
                        "per_member_limit": limit, "starts_at": now - timedelta(days=1),
                        "ends_at": now + timedelta(days=days),
                    },
                )
                for zh, en, price, stock, limit, days in offers
            ]

        offer_ids += await services.db.write(tx)
    return offer_ids
