"""Audit log query (admins)."""

import strawberry
from strawberry.types import Info

from jingtan_api.audit import service
from jingtan_api.audit.types import AuditLogEntry
from jingtan_api.auth.permissions import ADMIN
from jingtan_api.graphql.domain import Domain, hookimpl
from jingtan_api.graphql.relay import Connection, build_connection, decode_id, from_global_id, page_args


@strawberry.type
class AuditQuery:
    @strawberry.field(description="Audit log, newest first (admins). / 审计日志（管理员）。")
    async def audit_log(
        self,
        info: Info,
        first: int | None = None,
        after: str | None = None,
        last: int | None = None,
        before: str | None = None,
        action: str | None = None,
        actor_id: strawberry.ID | None = None,
        target_id: strawberry.ID | None = None,
    ) -> Connection[AuditLogEntry]:
        ctx = info.context
        ctx.viewer.require_role(ADMIN, scope="audit:read")
        args = page_args(info, first, after, last, before)
        target_type = target_pk = None
        if target_id is not None:
            target_type, _ = from_global_id(target_id, field="targetId")
            target_pk = decode_id(target_id, target_type, field="targetId")
        filters = {
            "action": action,
            "actor_user_id": decode_id(actor_id, "User", field="actorId") if actor_id else None,
            "target_type": target_type,
            "target_id": target_pk,
        }
        page = await ctx.read(service.page, args, **filters)
        return build_connection(page, AuditLogEntry.from_row, count=lambda: ctx.read(service.count, **filters))


async def _audit_nodes(info: Info, pks: list[int]) -> dict[int, AuditLogEntry]:
    viewer = info.context.viewer
    if not (viewer.is_admin and "audit:read" in viewer.scopes):
        return {}
    rows = await info.context.read(service.by_ids, pks)
    return {pk: AuditLogEntry.from_row(r) for pk, r in rows.items()}


@hookimpl
def jingtan_register_domain() -> Domain:
    return Domain(name="audit", query=[AuditQuery], types=[AuditLogEntry], nodes={"AuditLogEntry": _audit_nodes})
