"""Demo data of the identity domain: the demo accounts' contacts are verified (so they can earn and
redeem with ``[identity] require_verified_contact`` on)."""

from collections.abc import Sequence
from datetime import datetime

from jingtan_api.services import Services
from jingtan_api.users.service import mark_contacts_verified


async def seed_demo(services: Services, *, user_ids: Sequence[int], now: datetime) -> None:
    for user_id in user_ids:
        await services.db.write(lambda conn, u=user_id: mark_contacts_verified(conn, u, now=now))
