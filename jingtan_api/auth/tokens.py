"""Access tokens (JWT), rotating refresh tokens and hashed API tokens.

* Access token: HS256 JWT, algorithm, issuer, audience and expiry pinned on decode; claims ``sub``,
  ``roles``, ``iat``, ``exp``, ``jti``, ``typ=access``. Stateless: valid until it expires (default 15 min).
* Refresh token: 256 random bits, stored as SHA-256; each use rotates it (the old one is marked used and a
  successor is issued in the same family). Presenting a used token again means it leaked: the whole
  family is revoked.
* API token ``jt_<prefix>_<secret>``: looked up by prefix, secret compared by SHA-256 in constant time.
"""

import hashlib
import hmac
import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import jwt
from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from jingtan_api.auth.models import ApiToken, AuthSession, RefreshToken
from jingtan_api.auth.permissions import SCOPES, Viewer, scopes_for_roles
from jingtan_api.errors import NotFound, PermissionDenied, Unauthenticated, ValidationFailed
from jingtan_api.settings import Settings
from jingtan_api.users.models import User

RT = RefreshToken.__table__
AS = AuthSession.__table__
AT = ApiToken.__table__
ALGORITHM = "HS256"
API_TOKEN_PREFIX = "jt_"
VERIFIED_CACHE_SIZE = 10_000  # access tokens whose signature and claims were verified (AccessTokens.decode)


def sha256(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


@dataclass(frozen=True)
class TokenPair:
    access_token: str
    access_expires_at: datetime
    refresh_token: str
    refresh_expires_at: datetime


class AccessTokens:
    def __init__(self, settings: Settings, clock) -> None:
        self.clock = clock
        self.key = settings.secret_key
        self.issuer = settings.auth.jwt_issuer
        self.audience = settings.auth.jwt_audience
        self.ttl = timedelta(seconds=settings.auth.access_token_ttl_seconds)
        self._verified: dict[str, dict] = {}  # token text -> claims that passed jwt.decode (see decode)

    def issue(self, user_id: int, roles: frozenset[str], now: datetime) -> tuple[str, datetime]:
        expires = now + self.ttl
        claims = {
            "sub": str(user_id),
            "roles": sorted(roles),
            "iss": self.issuer,
            "aud": self.audience,
            "iat": int(now.replace(tzinfo=UTC).timestamp()),
            "exp": int(expires.replace(tzinfo=UTC).timestamp()),
            "jti": uuid.uuid4().hex,
            "typ": "access",
        }
        return jwt.encode(claims, self.key, algorithm=ALGORITHM), expires

    def decode(self, token: str) -> Viewer:
        """Return the viewer for a valid token; a Viewer with ``auth_error`` set otherwise.

        The claims of a token that passed PyJWT's checks are remembered (a bounded cache, by the token's
        text): those checks (signature, algorithm, issuer, audience, required claims) give the same answer
        for the same text every time, and they were about a sixth of a small request's CPU. Only tokens
        without ``nbf`` are remembered (PyJWT checks ``nbf`` against the current time); the expiry and
        everything after it are checked on every request, as before. Refused tokens are not remembered."""
        claims = self._verified.get(token)
        if claims is None:
            try:
                claims = jwt.decode(
                    token,
                    self.key,
                    algorithms=[ALGORITHM],
                    audience=self.audience,
                    issuer=self.issuer,
                    # Expiry is checked below against the app's clock (tests freeze it).
                    options={"require": ["exp", "iat", "iss", "aud", "sub"], "verify_exp": False, "verify_iat": False},
                )
            except jwt.PyJWTError:
                return Viewer(auth_error="INVALID_TOKEN")
            if "nbf" not in claims:
                if len(self._verified) >= VERIFIED_CACHE_SIZE:
                    self._verified.pop(next(iter(self._verified)))  # the oldest entry
                self._verified[token] = claims
        exp = claims.get("exp")
        if not isinstance(exp, int | float) or exp <= self.clock().timestamp():
            return Viewer(auth_error="TOKEN_EXPIRED")
        sub = str(claims.get("sub", ""))
        if claims.get("typ") != "access" or not (sub.isascii() and sub.isdigit() and len(sub) <= 18):
            return Viewer(auth_error="INVALID_TOKEN")
        roles = frozenset(r for r in claims.get("roles", []) if isinstance(r, str))
        return Viewer(user_id=int(claims["sub"]), roles=roles, scopes=scopes_for_roles(roles),
                      expires_at=datetime.fromtimestamp(float(exp), UTC))


# --- refresh tokens --------------------------------------------------------------------------------


async def issue_refresh_token(
    conn: AsyncConnection, user_id: int, *, family_id: str | None, now: datetime, ttl_days: int,
    device_name: str = "", address: str = "",
) -> tuple[str, datetime]:
    """Issue a refresh token: the first of a new family (a new session, ``auth_session`` row) when
    ``family_id`` is None, else the successor in that family (the session's last use moves on)."""
    token = secrets.token_urlsafe(32)
    expires = now + timedelta(days=ttl_days)
    new_family = family_id is None
    family = family_id or str(uuid.uuid4())
    await conn.execute(
        insert(RT).values(
            user_id=user_id,
            family_id=family,
            token_hash=sha256(token),
            created_at=now,
            expires_at=expires,
        )
    )
    if new_family:
        await conn.execute(
            insert(AS).values(
                user_id=user_id, family_id=family, device_name=clean_device_name(device_name), address=address[:64],
                created_at=now, last_used_at=now, expires_at=expires,
            )
        )
    else:
        values: dict = {"last_used_at": now, "expires_at": expires}
        if address:
            values["address"] = address[:64]
        await conn.execute(update(AS).where(AS.c.family_id == family).values(**values))
    return token, expires


def clean_device_name(name: str | None) -> str:
    """What the member sees for a session: the client's name for itself (or its User-Agent), printable,
    at most 100 characters."""
    text = " ".join("".join(ch for ch in (name or "") if ch.isprintable()).split())
    return text[:100]


async def session_id_of_family(conn: AsyncConnection, family_id: str) -> int | None:
    return (await conn.execute(select(AS.c.id).where(AS.c.family_id == family_id))).scalar_one_or_none()


async def rotate_refresh_token(conn: AsyncConnection, token: str, *, now: datetime, ttl_days: int) -> tuple[int, str]:
    """Mark ``token`` used and return (user_id, family_id) to issue its successor. Reuse of a used
    token revokes the family (and raises)."""
    row = (
        await conn.execute(select(RT).where(RT.c.token_hash == sha256(token or "")))
    ).one_or_none()
    if row is None:
        raise Unauthenticated("Invalid refresh token / 刷新令牌无效", code="INVALID_REFRESH_TOKEN")
    if row.revoked_at is not None:
        raise Unauthenticated("Refresh token revoked / 刷新令牌已吊销", code="INVALID_REFRESH_TOKEN")
    if row.used_at is not None:
        await revoke_family(conn, row.family_id, now=now, reason="reuse-detected")
        raise Unauthenticated(
            "Refresh token already used: all sessions of this login were signed out / "
            "刷新令牌已被使用，该登录的所有会话已注销",
            code="REFRESH_TOKEN_REUSED",
        )
    if row.expires_at <= now:
        raise Unauthenticated("Refresh token expired: log in again / 刷新令牌已过期，请重新登录", code="INVALID_REFRESH_TOKEN")
    used = await conn.execute(
        update(RT).where(RT.c.id == row.id, RT.c.used_at.is_(None)).values(used_at=now)
    )
    if used.rowcount != 1:  # a concurrent refresh won the race: treat as reuse
        await revoke_family(conn, row.family_id, now=now, reason="reuse-detected")
        raise Unauthenticated("Refresh token already used / 刷新令牌已被使用", code="REFRESH_TOKEN_REUSED")
    return row.user_id, row.family_id


async def revoke_family(conn: AsyncConnection, family_id: str, *, now: datetime, reason: str) -> None:
    await conn.execute(
        update(RT)
        .where(RT.c.family_id == family_id, RT.c.revoked_at.is_(None))
        .values(revoked_at=now, revoked_reason=reason)
    )
    await conn.execute(
        update(AS).where(AS.c.family_id == family_id, AS.c.ended_at.is_(None)).values(ended_at=now, ended_reason=reason)
    )


async def revoke_user_refresh_tokens(
    conn: AsyncConnection, user_id: int, *, now: datetime, reason: str, keep_family: str | None = None
) -> None:
    """End every session of the user (but the family ``keep_family``, when given)."""
    rt_where = [RT.c.user_id == user_id, RT.c.revoked_at.is_(None)]
    as_where = [AS.c.user_id == user_id, AS.c.ended_at.is_(None)]
    if keep_family is not None:
        rt_where.append(RT.c.family_id != keep_family)
        as_where.append(AS.c.family_id != keep_family)
    await conn.execute(update(RT).where(*rt_where).values(revoked_at=now, revoked_reason=reason))
    await conn.execute(update(AS).where(*as_where).values(ended_at=now, ended_reason=reason))


async def family_of(conn: AsyncConnection, token: str) -> tuple[int, str] | None:
    row = (
        await conn.execute(select(RT.c.user_id, RT.c.family_id).where(RT.c.token_hash == sha256(token or "")))
    ).one_or_none()
    return (row.user_id, row.family_id) if row else None


# --- API tokens ------------------------------------------------------------------------------------


def validate_scopes(scopes: list[str], owner_roles: frozenset[str]) -> frozenset[str]:
    if not scopes:
        raise ValidationFailed("Give at least one scope / 至少需要一个权限范围", field="scopes")
    unknown = sorted(set(scopes) - set(SCOPES))
    if unknown:
        raise ValidationFailed(f"Unknown scopes: {', '.join(unknown)} / 未知的权限范围", field="scopes")
    allowed = scopes_for_roles(owner_roles)
    excess = sorted(set(scopes) - allowed)
    if excess:
        raise PermissionDenied(
            f"The token owner's roles do not allow: {', '.join(excess)} / 令牌所有者的角色不允许这些权限",
            field="scopes",
        )
    return frozenset(scopes)


async def create_api_token(
    conn: AsyncConnection,
    *,
    user_id: int,
    name: str,
    scopes: frozenset[str],
    created_by: int | None,
    expires_at: datetime | None,
    now: datetime,
) -> tuple[int, str]:
    name = (name or "").strip()
    if not 1 <= len(name) <= 100:
        raise ValidationFailed("Token name must have 1-100 characters / 令牌名称须为 1-100 个字符", field="name")
    if expires_at is not None and expires_at.utcoffset() is None:
        raise ValidationFailed(
            "Give the expiry with a time zone, e.g. 2026-07-01T00:00:00+08:00 / 过期时间须带时区", field="expiresAt"
        )
    if expires_at is not None and expires_at <= now:
        raise ValidationFailed("Expiry must be in the future / 过期时间必须在未来", field="expiresAt")
    prefix = secrets.token_hex(6)
    secret = secrets.token_urlsafe(32)
    token = f"{API_TOKEN_PREFIX}{prefix}_{secret}"
    token_id = (
        await conn.execute(
            insert(AT)
            .values(
                user_id=user_id,
                name=name,
                prefix=prefix,
                token_hash=sha256(secret),
                scopes=" ".join(sorted(scopes)),
                created_by_user_id=created_by,
                created_at=now,
                expires_at=expires_at,
            )
            .returning(AT.c.id)
        )
    ).scalar_one()
    return token_id, token


def parse_api_token(token: str) -> tuple[str, str] | None:
    if not token.startswith(API_TOKEN_PREFIX):
        return None
    body = token[len(API_TOKEN_PREFIX):]
    prefix, sep, secret = body.partition("_")
    if not sep or len(prefix) != 12 or not secret:
        return None
    return prefix, secret


TOUCH_INTERVAL = timedelta(minutes=1)


async def authenticate_api_token(conn: AsyncConnection, token: str, *, now: datetime) -> tuple[Viewer, bool]:
    """(viewer, touch_due): touch_due says whether ``last_used_at`` is older than TOUCH_INTERVAL, so the
    caller opens a write transaction only then (a write per request would serialise API reads)."""
    U = User.__table__
    parsed = parse_api_token(token)
    if parsed is None:
        return Viewer(auth_error="INVALID_TOKEN"), False
    prefix, secret = parsed
    row = (
        await conn.execute(
            select(AT, U.c.roles, U.c.status)
            .join(U, U.c.id == AT.c.user_id)
            .where(AT.c.prefix == prefix)
        )
    ).one_or_none()
    if row is None or not hmac.compare_digest(row.token_hash, sha256(secret)):
        return Viewer(auth_error="INVALID_TOKEN"), False
    if row.revoked_at is not None or row.status != "ACTIVE":
        return Viewer(auth_error="REVOKED_TOKEN"), False
    if row.expires_at is not None and row.expires_at <= now:
        return Viewer(auth_error="TOKEN_EXPIRED"), False
    roles = frozenset(row.roles.split(","))
    # A token never holds more than its owner's roles allow today.
    scopes = frozenset(row.scopes.split()) & scopes_for_roles(roles)
    touch_due = row.last_used_at is None or row.last_used_at < now - TOUCH_INTERVAL
    created_by = row.created_by_user_id
    acting = created_by if created_by is not None and created_by != row.user_id else None
    return Viewer(user_id=row.user_id, roles=roles, scopes=scopes, api_token_id=row.id, acting_admin_id=acting,
                  expires_at=row.expires_at), touch_due


async def touch_api_token(conn: AsyncConnection, token_id: int, *, now: datetime) -> None:
    """Record last use, at most once a minute per token (a write per request would serialise reads)."""
    await conn.execute(
        update(AT)
        .where(
            AT.c.id == token_id,
            (AT.c.last_used_at.is_(None)) | (AT.c.last_used_at < now - TOUCH_INTERVAL),
        )
        .values(last_used_at=now)
    )


async def revoke_api_token(conn: AsyncConnection, token_id: int, *, viewer: Viewer, now: datetime) -> dict:
    """Owners revoke their tokens, admins (with users:write) anyone's. An API token may revoke only
    itself (e.g. when it leaked): it cannot manage its owner's other tokens."""
    row = (await conn.execute(select(AT).where(AT.c.id == token_id))).one_or_none()
    manages = row is not None and (
        row.user_id == viewer.user_id or (viewer.is_admin and "users:write" in viewer.scopes)
    )
    if not manages:
        raise NotFound("API token not found / 未找到该 API 令牌", field="id")
    if viewer.api_token_id is not None and viewer.api_token_id != token_id:
        raise PermissionDenied("An API token can only revoke itself / API 令牌只能吊销自身", field="id")
    if row.revoked_at is None:
        await conn.execute(update(AT).where(AT.c.id == token_id).values(revoked_at=now))
    return dict((await conn.execute(select(AT).where(AT.c.id == token_id))).one()._mapping)
