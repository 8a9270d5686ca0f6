"""API token management (creation rules and listing); token mechanics live in ``tokens``."""

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from jingtan_api.audit import service as audit
from jingtan_api.auth import tokens
from jingtan_api.auth.models import ApiToken
from jingtan_api.auth.permissions import Viewer
from jingtan_api.errors import NotFound, PermissionDenied
from jingtan_api.users.service import U, roles_of

AT = ApiToken.__table__


async def create_api_token(
    conn: AsyncConnection,
    *,
    viewer: Viewer,
    owner_user_id: int | None,
    name: str,
    scopes: list[str],
    expires_at: datetime | None,
    now: datetime,
    request_id: str | None = None,
) -> tuple[dict, str]:
    """Users create tokens for themselves; admins for anyone. Scopes must be allowed by the owner's
    roles. API tokens cannot mint further tokens. Returns (token row, secret shown once)."""
    actor = viewer.require_user()
    if viewer.api_token_id is not None:
        raise PermissionDenied("API tokens cannot create API tokens / API 令牌不能创建令牌")
    owner = owner_user_id if owner_user_id is not None else actor
    if owner != actor and not viewer.is_admin:
        raise PermissionDenied()
    row = (await conn.execute(select(U).where(U.c.id == owner))).one_or_none()
    if row is None:
        raise NotFound("User not found / 用户不存在", field="userId")
    valid_scopes = tokens.validate_scopes(scopes, roles_of(row))
    token_id, secret = await tokens.create_api_token(
        conn, user_id=owner, name=name, scopes=valid_scopes, created_by=actor, expires_at=expires_at, now=now
    )
    if owner != actor:
        # An admin now holds a credential of another user: the trail starts here, and everything done with
        # the token records this admin (``Viewer.acting_admin_id``).
        await audit.record(
            conn, actor_user_id=actor, action="api_token.create_for_user", target_type="User", target_id=owner,
            details=token_audit_details(token_id, name, valid_scopes, expires_at), request_id=request_id, now=now,
        )
    return (await api_tokens_by_ids(conn, [token_id]))[token_id], secret


def token_audit_details(token_id: int, name: str, scopes: frozenset[str], expires_at: datetime | None) -> dict:
    return {"api_token_id": token_id, "name": name.strip(), "scopes": sorted(scopes),
            "expires_at": expires_at.isoformat() if expires_at else None}


async def api_tokens_by_ids(conn: AsyncConnection, ids: Sequence[int]) -> dict[int, dict]:
    return {r.id: dict(r._mapping) for r in await conn.execute(select(AT).where(AT.c.id.in_(list(ids))))}


async def tokens_of_users(conn: AsyncConnection, user_ids: Sequence[int]) -> dict[int, list[dict]]:
    rows = await conn.execute(select(AT).where(AT.c.user_id.in_(list(user_ids))).order_by(AT.c.id.desc()))
    out: dict[int, list[dict]] = {}
    for r in rows:
        out.setdefault(r.user_id, []).append(dict(r._mapping))
    return out
