"""Demo data of methodology governance: an expert of the committee who approved the demo's versions, so
the demo credits actions also with ``require_methodology_approval`` on."""

from datetime import datetime

from jingtan_api.auth.permissions import EXPERT, MEMBER
from jingtan_api.methodologies import service
from jingtan_api.plugins.manager import load_plugins
from jingtan_api.services import Services
from jingtan_api.users import service as users_service

DEMO_EXPERT = ("expert@demo.jingtan.org", "专家委员会 周教授 Prof. Zhou (expert committee)")


async def seed_demo(services: Services, *, password: str, now: datetime) -> int:
    """Create the demo expert and approve every enabled action type's current methodology version."""
    email, name = DEMO_EXPERT
    expert_id = await users_service.register(
        services, email=email, phone=None, password=password, display_name=name,
        roles=frozenset({MEMBER, EXPERT}), now=now,
    )
    if services.plugins.action_types:
        versions = await service.ensure_versions(services, now=now)
    else:  # the CLI's services carry no plugins: load the configured ones to register their versions
        versions = await service.register_host(services.db, load_plugins(services.settings), now=now)
    for version_id in versions.values():
        await service.decide(services, actor_user_id=expert_id, version_id=version_id, decision="APPROVE",
                             note="演示数据：因子与来源已核对 Demo: factors and sources checked", now=now,
                             request_id=None)
    print(f"  {email:<28} {name}  [EXPERT, MEMBER] approved {len(versions)} methodology version(s)")
    return expert_id
