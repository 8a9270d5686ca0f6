"""Admin work on users (no GraphQL here): find a user by phone, e-mail or name; suspend and reactivate.

Search (``users(search:)``): ``EXACT`` compares the normalised e-mail (lower case), the phone in E.164
(``13800138001`` finds ``+8613800138001``) and the display name; ``PREFIX`` (the default) matches the
beginning of any of them — e-mail and name case-insensitively, a phone with or without ``+`` / ``+86``.
Wildcards typed by the admin (``%``, ``_``) are matched literally.

Suspension: status ``ACTIVE`` -> ``SUSPENDED`` and back, each with a reason (audited: ``user.suspend`` /
``user.reactivate``). A suspended user cannot log in (``INVALID_CREDENTIALS``, as for a wrong password),
their refresh tokens are revoked at suspension (after reactivation they log in again), their API tokens
and an admin's access tokens are refused on the next request (``REVOKED_TOKEN``), a member's stateless
access token (at most 15 minutes) is refused by every mutation (``graphql.mutations`` reads the status
first) and by ``viewer``, and their points and history stay untouched.
"""

from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from jingtan_api.audit import service as audit
from jingtan_api.auth import tokens
from jingtan_api.db import Page, PageArgs, keyset_page
from jingtan_api.errors import Conflict, NotFound, ValidationFailed
from jingtan_api.users.models import User

if TYPE_CHECKING:
    from jingtan_api.services import Services

U = User.__table__
ACTIVE, SUSPENDED = "ACTIVE", "SUSPENDED"
MAX_SEARCH = 100


def _like_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _search_clause(search: str, match: str) -> Any:
    q = " ".join(search.split())
    if not 1 <= len(q) <= MAX_SEARCH:
        raise ValidationFailed(f"search must have 1-{MAX_SEARCH} characters / 搜索词须为 1-{MAX_SEARCH} 个字符", field="search")
    lower = q.lower()
    digits = q.lstrip("+")
    phones = {q} | ({"+" + digits, "+86" + digits} if digits.isdigit() else set())
    if match == "EXACT":
        return or_(func.lower(U.c.email) == lower, U.c.phone.in_(sorted(phones)), U.c.display_name == q)
    if match != "PREFIX":
        raise ValidationFailed("match must be EXACT or PREFIX / 匹配方式无效", field="match")
    prefix = _like_escape(lower) + "%"
    return or_(
        func.lower(U.c.email).like(prefix, escape="\\"),
        *(U.c.phone.like(_like_escape(p) + "%", escape="\\") for p in sorted(phones)),
        func.lower(U.c.display_name).like(prefix, escape="\\"),
    )


def _where(stmt: Any, *, search: str | None, match: str, role: str | None, status: str | None) -> Any:
    if search is not None:
        stmt = stmt.where(_search_clause(search, match))
    if role is not None:
        # roles are stored comma-separated and sorted: match a whole name
        stmt = stmt.where(("," + U.c.roles + ",").like(f"%,{role},%"))
    if status is not None:
        stmt = stmt.where(U.c.status == status)
    return stmt


async def search_page(conn: AsyncConnection, args: PageArgs, *, search: str | None, match: str = "PREFIX",
                      role: str | None = None, status: str | None = None) -> Page:
    """Users matching, newest first (keyset on id)."""
    return await keyset_page(conn, _where(select(U), search=search, match=match, role=role, status=status),
                             [(U.c.id, True)], args)


async def search_count(conn: AsyncConnection, *, search: str | None, match: str = "PREFIX", role: str | None = None,
                       status: str | None = None) -> int:
    stmt = _where(select(func.count()).select_from(U), search=search, match=match, role=role, status=status)
    return int((await conn.execute(stmt)).scalar_one())


async def set_status(app: "Services", *, actor_user_id: int, user_id: int, suspend: bool, reason: str,
                     now: datetime, request_id: str | None) -> None:
    """Suspend (ACTIVE -> SUSPENDED) or reactivate (SUSPENDED -> ACTIVE) a user; audited, one transaction."""
    reason = audit.validate_reason(reason)
    if suspend and user_id == actor_user_id:
        raise Conflict("You cannot suspend yourself / 不能停用自己的账户", code="INVALID_STATUS_TRANSITION", field="userId")
    source, target = (ACTIVE, SUSPENDED) if suspend else (SUSPENDED, ACTIVE)

    async def work(conn: AsyncConnection) -> None:
        row = (await conn.execute(select(U.c.id, U.c.status).where(U.c.id == user_id))).first()
        if row is None:
            raise NotFound("No such user / 用户不存在", field="userId")
        done = (await conn.execute(
            update(U).where(U.c.id == user_id, U.c.status == source).values(status=target).returning(U.c.id)
        )).scalar_one_or_none()
        if done is None:
            raise Conflict(
                f"The user is {row.status}, not {source} / 用户状态为 {row.status}，无法{'停用' if suspend else '恢复'}",
                code="INVALID_STATUS_TRANSITION", field="userId",
            )
        if suspend:
            await tokens.revoke_user_refresh_tokens(conn, user_id, now=now, reason="user-suspended")
        await audit.record(
            conn, actor_user_id=actor_user_id, action="user.suspend" if suspend else "user.reactivate",
            target_type="User", target_id=user_id, reason=reason, details={"from": row.status, "to": target},
            request_id=request_id, now=now,
        )

    await app.db.write(work)
