"""Append-only audit log: who did what, to what, when and why."""

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import func, insert, select
from sqlalchemy.ext.asyncio import AsyncConnection

from jingtan_api.audit.models import AuditLogEntry
from jingtan_api.auth.permissions import acting_admin_var
from jingtan_api.db import Page, PageArgs, keyset_page
from jingtan_api.driver import DriverStatement, column_binds
from jingtan_api.errors import ValidationFailed

T = AuditLogEntry.__table__


def validate_reason(reason: str | None) -> str:
    """The reason an admin gives for an audited action: 3-500 characters, whitespace folded."""
    reason = " ".join((reason or "").split())
    if not 3 <= len(reason) <= 500:
        raise ValidationFailed("Give a reason of 3-500 characters / 请填写 3-500 字的原因", field="reason")
    return reason


async def record(
    conn: AsyncConnection,
    *,
    actor_user_id: int | None,
    action: str,
    target_type: str,
    target_id: int | None,
    reason: str = "",
    details: dict | None = None,
    request_id: str | None = None,
    now: datetime,
) -> int:
    """Append one entry. The admin acting through an API token made for the actor (``acting_admin_var``,
    set per request) is recorded as ``acting_admin_id``."""
    return (await _INSERT.all(conn, {
        "actor_user_id": actor_user_id,
        "acting_admin_id": acting_admin_var.get(),
        "action": action,
        "target_type": target_type,
        "target_id": target_id,
        "reason": reason,
        "details": json.dumps(details or {}, ensure_ascii=False, sort_keys=True, default=str),
        "request_id": request_id,
        "created_at": now,
    }))[0]["id"]


# Every admin write appends one (grantPoints among them): on the driver path.
_INSERT = DriverStatement(insert(T).values(column_binds(T, (
    "actor_user_id", "acting_admin_id", "action", "target_type", "target_id", "reason", "details", "request_id",
    "created_at"))).returning(T.c.id))


def _where(
    stmt: Any, *, action: str | None, actor_user_id: int | None, target_type: str | None, target_id: int | None
) -> Any:
    if action:
        stmt = stmt.where(T.c.action == action)
    if actor_user_id is not None:
        stmt = stmt.where(T.c.actor_user_id == actor_user_id)
    if target_type:
        stmt = stmt.where(T.c.target_type == target_type)
    if target_id is not None:
        stmt = stmt.where(T.c.target_id == target_id)
    return stmt


async def page(
    conn: AsyncConnection,
    args: PageArgs,
    *,
    action: str | None = None,
    actor_user_id: int | None = None,
    target_type: str | None = None,
    target_id: int | None = None,
) -> Page:
    """Newest first, keyset on the audit entry id."""
    stmt = _where(select(T), action=action, actor_user_id=actor_user_id, target_type=target_type, target_id=target_id)
    return await keyset_page(conn, stmt, [(T.c.id, True)], args)


async def count(
    conn: AsyncConnection,
    *,
    action: str | None = None,
    actor_user_id: int | None = None,
    target_type: str | None = None,
    target_id: int | None = None,
) -> int:
    """Entries matching the same filters as :func:`page`."""
    stmt = _where(
        select(func.count()).select_from(T),
        action=action, actor_user_id=actor_user_id, target_type=target_type, target_id=target_id,
    )
    return int((await conn.execute(stmt)).scalar_one())


async def by_ids(conn: AsyncConnection, ids: Sequence[int]) -> dict[int, dict]:
    rows = await conn.execute(select(T).where(T.c.id.in_(list(ids))))
    return {r.id: dict(r._mapping) for r in rows}
