"""Users: registration, login, sessions, password changes, roles. Knows nothing about GraphQL."""

import hashlib
import ipaddress
import math
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from email_validator import EmailNotValidError, validate_email
from sqlalchemy import bindparam, delete, func, insert, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from jingtan_api import events
from jingtan_api.accounts import service as ledger
from jingtan_api.audit import service as audit
from jingtan_api.auth import tokens
from jingtan_api.auth.models import LoginAttempt
from jingtan_api.auth.permissions import ADMIN, MEMBER, ROLES
from jingtan_api.driver import DriverStatement, in_list
from jingtan_api.errors import Conflict, NotFound, PermissionDenied, RateLimited, Unauthenticated, ValidationFailed
from jingtan_api.users.models import User, UserConsent

if TYPE_CHECKING:
    from jingtan_api.services import Services

U = User.__table__
LA = LoginAttempt.__table__
UC = UserConsent.__table__

# ASCII digits only: Python's \d also matches Arabic-Indic, Devanagari, ... digits, which would let the
# same number be stored under several spellings (and defeat the uniqueness check).
_CN_MOBILE = re.compile(r"^1[3-9][0-9]{9}$")
_E164 = re.compile(r"^\+[1-9][0-9]{6,14}$")


def normalize_phone(phone: str, *, field: str = "phone") -> str:
    """Mainland mobile numbers (with or without +86) and E.164 numbers, normalised to E.164.
    Full-width digits and separators (typed with a Chinese input method) are folded to ASCII first."""
    raw = re.sub(r"[\s\-()]", "", unicodedata.normalize("NFKC", phone or ""))
    if raw.startswith("0086"):
        raw = "+86" + raw[4:]
    if _CN_MOBILE.match(raw):
        return "+86" + raw
    if raw.startswith("+86") and not _CN_MOBILE.match(raw[3:]):
        raise ValidationFailed("Not a valid mainland mobile number / 手机号格式无效", code="INVALID_PHONE", field=field)
    if _E164.match(raw):
        return raw
    raise ValidationFailed("Not a valid phone number / 手机号格式无效", code="INVALID_PHONE", field=field)


def normalize_email(email: str, *, field: str = "email") -> str:
    try:
        result = validate_email((email or "").strip(), check_deliverability=False)
    except EmailNotValidError:
        raise ValidationFailed("Not a valid email address / 邮箱格式无效", code="INVALID_EMAIL", field=field) from None
    return result.normalized.lower()


def normalize_identifier(identifier: str) -> str:
    """An email if it has an @, a phone number otherwise; for login and rate limiting."""
    identifier = (identifier or "").strip()
    if "@" in identifier:
        return normalize_email(identifier, field="identifier")
    return normalize_phone(identifier, field="identifier")


def validate_display_name(name: str) -> str:
    name = " ".join((name or "").split())
    if not 1 <= len(name) <= 64 or not name.isprintable():
        raise ValidationFailed(
            "Display name must have 1-64 printable characters / 昵称须为 1-64 个可见字符",
            field="displayName",
        )
    return name


def roles_of_str(roles: str) -> frozenset[str]:
    return frozenset(r for r in roles.split(",") if r)


def roles_of(row) -> frozenset[str]:
    return roles_of_str(row.roles)


def address_bucket(address: str) -> str:
    """The unit that the per-address login limit counts: an IPv4 address, or the /64 network of an
    IPv6 address (one subscriber usually holds a whole /64, so single addresses are free to rotate)."""
    try:
        ip = ipaddress.ip_address((address or "").strip())
    except ValueError:
        return (address or "unknown")[:64]
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network(f"{ip}/64", strict=False))
    return str(ip)


def _attempt_key(user_id: int) -> str:
    return f"user:{user_id}"


def _known_key(key: str) -> str:
    """Successful logins are kept as ``ok:user:<id>`` rows (typed identifiers are ``id:…``, so no one
    can forge one)."""
    return "ok:" + key


def _rate_limited(field: str, retry_after: int) -> RateLimited:
    return RateLimited(
        f"Too many failed attempts: retry in {retry_after} s / 失败次数过多，请 {retry_after} 秒后再试",
        field=field,
        retry_after=retry_after,
    )


def _lock_key(kind: str, value: str) -> int:
    """A signed 64-bit key for pg_advisory_xact_lock."""
    digest = hashlib.sha256(f"{kind}:{value}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


@dataclass(frozen=True)
class Session:
    user_id: int
    roles: frozenset[str]
    pair: tokens.TokenPair


# --- registration ------------------------------------------------------------------------------

async def register(app: "Services",
    *,
    email: str | None,
    phone: str | None,
    password: str,
    display_name: str,
    roles: frozenset[str] = frozenset({MEMBER}),
    now: datetime,
) -> int:
    """Create a user (and their points account); returns the user id."""
    user_id, _ = await _register(app,
        email=email, phone=phone, password=password, display_name=display_name, roles=roles,
        now=now, start_session=False,
    )
    return user_id

async def register_session(app: "Services", *, email: str | None, phone: str | None, password: str, display_name: str, now: datetime,
    signals: dict[str, str | None] | None = None,
    device_name: str = "", address: str = "",
) -> Session:
    """Register a member and start their first session in the same transaction. This is not a
    login: it is not subject to the failed-login limits, and if anything fails nothing is written."""
    roles = frozenset({MEMBER})
    user_id, pair = await _register(app,
        email=email, phone=phone, password=password, display_name=display_name, roles=roles,
        now=now, start_session=True, signals=signals, device_name=device_name, address=address,
    )
    assert pair is not None
    return Session(user_id=user_id, roles=roles, pair=pair)

async def _register(app: "Services",
    *,
    email: str | None,
    phone: str | None,
    password: str,
    display_name: str,
    roles: frozenset[str],
    now: datetime,
    start_session: bool,
    signals: dict[str, str | None] | None = None,
    device_name: str = "",
    address: str = "",
) -> tuple[int, tokens.TokenPair | None]:
    if not email and not phone:
        raise ValidationFailed("Give an email or a phone number / 请提供邮箱或手机号", field="email")
    email_n = normalize_email(email) if email else None
    phone_n = normalize_phone(phone) if phone else None
    name = validate_display_name(display_name)
    app.passwords.check_policy(password, identifiers=(email_n, phone_n))
    if not roles or not roles <= set(ROLES):
        raise ValidationFailed("Unknown role / 未知角色", field="roles")
    password_hash = await app.passwords.hash(password)

    async def tx(conn: AsyncConnection) -> tuple[int, tokens.TokenPair | None]:
        conditions = [U.c.email == email_n] if email_n else []
        conditions += [U.c.phone == phone_n] if phone_n else []
        taken = (await conn.execute(select(U.c.email, U.c.phone).where(or_(*conditions)).limit(1))).first()
        if taken is not None:
            _raise_taken(taken.email == email_n and email_n is not None)
        user_id = (
            await conn.execute(
                insert(U)
                .values(
                    email=email_n,
                    phone=phone_n,
                    display_name=name,
                    password_hash=password_hash,
                    roles=",".join(sorted(roles)),
                    status="ACTIVE",
                    created_at=now,
                    password_changed_at=now,
                )
                .returning(U.c.id)
            )
        ).scalar_one()
        await ledger.create_account(conn, kind=ledger.MEMBER, user_id=user_id)
        # ``signals``: what the request said about itself (client_address, device_id, referral_code), for the
        # domains that listen (the volunteer programme's referrals and farming checks).
        await events.emit(conn, "user.registered", user_id=user_id, **(signals or {}))
        # Registering is accepting the current terms and privacy notice (docs/identity.md, "Consent").
        await record_consent(conn, user_id, terms=app.settings.identity.terms_version,
                             privacy=app.settings.identity.privacy_version, now=now)
        pair = await _issue_pair(
            app, conn, user_id, roles, family_id=None, now=now, device_name=device_name, address=address
        ) if start_session else None
        return user_id, pair

    try:
        return await app.db.write(tx)
    except IntegrityError:
        # A concurrent registration took the address between our check and insert.
        if email_n:
            async with app.db.read() as conn:
                email_taken = (await conn.execute(select(U.c.id).where(U.c.email == email_n))).first()
            _raise_taken(email_taken is not None)
        _raise_taken(False)

def _raise_taken(is_email: bool):
    if is_email:
        raise Conflict("This email is already registered / 该邮箱已注册", code="ALREADY_REGISTERED", field="email")
    raise Conflict("This phone number is already registered / 该手机号已注册", code="ALREADY_REGISTERED", field="phone")

async def set_roles(app: "Services", *, actor_user_id: int | None, user_id: int, roles: frozenset[str], reason: str,
    request_id: str | None, now: datetime,
) -> None:
    """Replace a user's roles; audit-logged."""
    if not roles or not roles <= set(ROLES):
        raise ValidationFailed("Give at least one known role / 至少需要一个有效角色", field="roles")
    reason = audit.validate_reason(reason)

    async def tx(conn: AsyncConnection) -> None:
        result = await conn.execute(update(U).where(U.c.id == user_id).values(roles=",".join(sorted(roles))))
        if result.rowcount != 1:
            raise NotFound("User not found / 用户不存在", field="userId")
        await audit.record(
            conn, actor_user_id=actor_user_id, action="user.set_roles", target_type="User",
            target_id=user_id, reason=reason, details={"roles": sorted(roles)}, request_id=request_id, now=now,
        )

    await app.db.write(tx)

async def add_role(conn: AsyncConnection, user_id: int, role: str) -> None:
    """Give the user ``role`` on top of the roles they have, inside the caller's write transaction.

    The user's row is locked (``SELECT … FOR UPDATE``; SQLite write transactions are serialised anyway)
    until the transaction ends, so a concurrent role change is not lost and callers can rely on the lock
    to serialise their own changes concerning this user. Unknown user: NOT_FOUND (field ``userId``)."""
    if role not in ROLES:
        raise ValidationFailed("Unknown role / 未知角色", field="roles")
    current = (
        await conn.execute(select(U.c.roles).where(U.c.id == user_id).with_for_update())
    ).scalar_one_or_none()
    if current is None:
        raise NotFound("User not found / 用户不存在", field="userId")
    roles = roles_of_str(current)
    if role not in roles:
        await conn.execute(update(U).where(U.c.id == user_id).values(roles=",".join(sorted(roles | {role}))))

async def create_admin(app: "Services", *, email: str | None, phone: str | None, password: str, display_name: str, now: datetime) -> int:
    return await register(app,
        email=email, phone=phone, password=password, display_name=display_name,
        roles=frozenset({MEMBER, ADMIN}), now=now,
    )

# --- login and sessions ------------------------------------------------------------------------

async def login(app: "Services", *, identifier: str, password: str, address: str, now: datetime, device_name: str = "") -> Session:
    generic = Unauthenticated(
        "Wrong account or password / 账号或密码错误", code="INVALID_CREDENTIALS", field="password"
    )
    try:
        ident = normalize_identifier(identifier)
    except ValidationFailed:
        ident = None
    client_address = address
    address = address_bucket(address)
    # Unknown accounts are counted by what was typed ("id:" keeps these apart from "user:<id>" keys).
    raw_key = "id:" + (ident or (identifier or "").strip().lower())[:250]

    async def claim(conn: AsyncConnection):
        row = None
        if ident:
            column = U.c.email if "@" in ident else U.c.phone
            row = (await conn.execute(select(U).where(column == ident))).one_or_none()
        # Failures count per user, whichever of their identifiers (email, phone) was typed.
        key = _attempt_key(row.id) if row is not None else raw_key
        wait = await _claim_attempt(app, conn, key=key, address=address, now=now)
        return row, key, wait

    row, key, wait = await app.db.write(claim)
    if wait:
        raise _rate_limited("identifier", wait)
    ok = await app.passwords.verify(row.password_hash if row else None, password or "")
    if not ok or row is None or row.status != "ACTIVE":
        raise generic
    rehash = await app.passwords.hash(password) if app.passwords.needs_rehash(row.password_hash) else None

    async def start(conn: AsyncConnection) -> tokens.TokenPair:
        await _record_success(conn, key=key, address=address, now=now)
        if rehash:
            await conn.execute(update(U).where(U.c.id == row.id).values(password_hash=rehash))
        return await _issue_pair(
            app, conn, row.id, roles_of(row), family_id=None, now=now, device_name=device_name, address=client_address
        )

    pair = await app.db.write(start)
    return Session(user_id=row.id, roles=roles_of(row), pair=pair)

def _delay(failures: int, last: datetime | None, free: int, cfg, now: datetime) -> float:
    """Seconds still to wait in one scope: none for the first ``free`` failures, then the base delay
    doubling with each further failure (capped), counted from the scope's last failure."""
    if failures < free or last is None:
        return 0.0
    if last.tzinfo is None:
        last = last.replace(tzinfo=now.tzinfo)
    delay = min(cfg.login_base_delay_seconds * 2 ** min(failures - free, 40), cfg.login_max_delay_seconds)
    return max(0.0, (last - now).total_seconds() + delay)


async def _claim_attempt(app: "Services", conn: AsyncConnection, *, key: str, address: str, now: datetime) -> int:
    """Throttle, never lock out: failures in the window are counted per (account, client address), per
    client address, and per account; past each scope's free failures, the next attempt in that scope
    must wait a delay that doubles with each failure. The per-account scope does not apply to an address
    that logged in to the account successfully before (``auth.login_known_client_days``), so an
    attacker elsewhere can slow down strangers but never the owner's own devices. Below the delays this
    attempt is recorded as a failure before the password is checked (a success deletes it). Counting
    and recording happen in one serialised write transaction (BEGIN IMMEDIATE on SQLite, advisory locks
    on PostgreSQL), so parallel guesses cannot all slip through. Returns the seconds to wait (0: go)."""
    cfg = app.settings.auth
    window_start = now - timedelta(seconds=cfg.login_window_seconds)
    if conn.dialect.name == "postgresql":
        for lock_key in sorted({_lock_key("login-id", key), _lock_key("login-addr", address)}):
            await conn.execute(select(func.pg_advisory_xact_lock(lock_key)))

    async def scope(*conditions) -> tuple[int, datetime | None]:
        row = (
            await conn.execute(
                select(func.count(), func.max(LA.c.created_at)).where(
                    *conditions, LA.c.created_at > window_start, LA.c.identifier.not_like("ok:%")
                )
            )
        ).one()
        return row[0], row[1]

    known_since = now - timedelta(days=cfg.login_known_client_days)
    known = (
        await conn.execute(
            select(LA.c.id)
            .where(LA.c.identifier == _known_key(key), LA.c.address == address, LA.c.created_at > known_since)
            .limit(1)
        )
    ).first() is not None
    waits = [
        _delay(*await scope(LA.c.identifier == key, LA.c.address == address), cfg.login_free_failures_per_client, cfg, now),
        _delay(*await scope(LA.c.address == address), cfg.login_free_failures_per_address, cfg, now),
    ]
    if not known:
        waits.append(_delay(*await scope(LA.c.identifier == key), cfg.login_free_failures_per_account, cfg, now))
    wait = max(waits)
    if wait > 0:
        return max(1, math.ceil(wait))
    await conn.execute(insert(LA).values(identifier=key, address=address, created_at=now))
    # Keep the table small: failures older than the window no longer count, known clients expire.
    await conn.execute(
        delete(LA).where(
            or_(
                (LA.c.created_at < window_start - timedelta(days=1)) & LA.c.identifier.not_like("ok:%"),
                LA.c.created_at < known_since,
            )
        )
    )
    return 0


async def _record_success(conn: AsyncConnection, *, key: str, address: str, now: datetime) -> None:
    """The failures of this account from this address are forgiven (those from elsewhere are not) and
    the address becomes known to the account."""
    await conn.execute(delete(LA).where(LA.c.identifier.in_([key, _known_key(key)]), LA.c.address == address))
    await conn.execute(insert(LA).values(identifier=_known_key(key), address=address, created_at=now))


async def _issue_pair(app: "Services", conn: AsyncConnection, user_id: int, roles: frozenset[str], *, family_id: str | None, now: datetime,
    device_name: str = "", address: str = "",
) -> tokens.TokenPair:
    access, access_exp = app.access_tokens.issue(user_id, roles, now)
    refresh, refresh_exp = await tokens.issue_refresh_token(
        conn, user_id, family_id=family_id, now=now, ttl_days=app.settings.auth.refresh_token_ttl_days,
        device_name=device_name, address=address,
    )
    return tokens.TokenPair(access, access_exp, refresh, refresh_exp)

async def refresh(app: "Services", *, refresh_token: str, now: datetime, address: str = "") -> Session:
    async def tx(conn: AsyncConnection) -> Session | Unauthenticated:
        try:
            user_id, family_id = await tokens.rotate_refresh_token(
                conn, refresh_token, now=now, ttl_days=app.settings.auth.refresh_token_ttl_days
            )
        except Unauthenticated as exc:
            # Commit the family revocation, then report the failure.
            return exc
        row = (await conn.execute(select(U).where(U.c.id == user_id))).one()
        if row.status != "ACTIVE":
            await tokens.revoke_family(conn, family_id, now=now, reason="user-disabled")
            return Unauthenticated("Account disabled / 账户已停用", code="ACCOUNT_DISABLED")
        pair = await _issue_pair(app, conn, user_id, roles_of(row), family_id=family_id, now=now, address=address)
        return Session(user_id=user_id, roles=roles_of(row), pair=pair)

    result = await app.db.write(tx)
    if isinstance(result, Unauthenticated):
        raise result
    return result

async def logout(app: "Services", *, user_id: int | None, refresh_token: str | None, all_sessions: bool, now: datetime) -> None:
    async def tx(conn: AsyncConnection) -> None:
        if all_sessions:
            if user_id is None:
                raise Unauthenticated()
            await tokens.revoke_user_refresh_tokens(conn, user_id, now=now, reason="logout-all")
            return
        found = await tokens.family_of(conn, refresh_token or "")
        if found is None or (user_id is not None and found[0] != user_id):
            raise Unauthenticated("Invalid refresh token / 刷新令牌无效", code="INVALID_REFRESH_TOKEN", field="refreshToken")
        await tokens.revoke_family(conn, found[1], now=now, reason="logout")

    await app.db.write(tx)

async def change_password(app: "Services", *, user_id: int, current: str, new: str, address: str, now: datetime
) -> Session:
    """Wrong current passwords count as failed logins of the account (same limits), so a stolen
    access token cannot be used to guess the password."""
    async with app.db.read() as conn:
        row = (await conn.execute(select(U).where(U.c.id == user_id))).one_or_none()
    if row is None:
        raise NotFound("User not found / 用户不存在")
    if new == current:
        raise ValidationFailed("New password must differ / 新密码不能与旧密码相同", code="WEAK_PASSWORD", field="newPassword")
    app.passwords.check_policy(new, identifiers=(row.email, row.phone), field="newPassword")
    key = _attempt_key(user_id)
    address = address_bucket(address)
    wait = await app.db.write(lambda conn: _claim_attempt(app, conn, key=key, address=address, now=now))
    if wait:
        raise _rate_limited("currentPassword", wait)
    if not await app.passwords.verify(row.password_hash, current or ""):
        raise Unauthenticated("Current password is wrong / 当前密码错误", code="INVALID_CREDENTIALS", field="currentPassword")
    new_hash = await app.passwords.hash(new)

    async def tx(conn: AsyncConnection) -> tokens.TokenPair:
        await _record_success(conn, key=key, address=address, now=now)
        await conn.execute(
            update(U).where(U.c.id == user_id).values(password_hash=new_hash, password_changed_at=now)
        )
        await tokens.revoke_user_refresh_tokens(conn, user_id, now=now, reason="password-changed")
        return await _issue_pair(app, conn, user_id, roles_of(row), family_id=None, now=now)

    pair = await app.db.write(tx)
    return Session(user_id=user_id, roles=roles_of(row), pair=pair)


# --- verified contacts and consent (the rest of identity is jingtan_api.identity) ------------------

TERMS = "TERMS"
PRIVACY = "PRIVACY"


async def record_consent(conn: AsyncConnection, user_id: int, *, terms: str, privacy: str, now: datetime) -> None:
    await conn.execute(
        insert(UC),
        [dict(user_id=user_id, document=TERMS, version=terms, accepted_at=now),
         dict(user_id=user_id, document=PRIVACY, version=privacy, accepted_at=now)],
    )


async def consents_of_users(conn: AsyncConnection, user_ids: Sequence[int]) -> dict[int, dict[str, dict]]:
    """The newest acceptance of each document per user: {user_id: {"TERMS": row, "PRIVACY": row}}."""
    rows = await conn.execute(select(UC).where(UC.c.user_id.in_(list(user_ids))).order_by(UC.c.id))
    out: dict[int, dict[str, dict]] = {}
    for r in rows:
        out.setdefault(r.user_id, {})[r.document] = dict(r._mapping)
    return out


def has_verified_contact(row) -> bool:
    m = row._mapping if hasattr(row, "_mapping") else row
    return (m["phone"] is not None and m["phone_verified_at"] is not None) or (
        m["email"] is not None and m["email_verified_at"] is not None
    )


_CONTACT = DriverStatement(
    select(U.c.phone, U.c.email, U.c.phone_verified_at, U.c.email_verified_at).where(U.c.id == bindparam("uid")))


async def require_verified_contact(conn: AsyncConnection, user_id: int) -> None:
    """The gate of earning and redeeming (``[identity] require_verified_contact``): the member holds a
    verified phone or email. One primary-key read."""
    rows = await _CONTACT.all(conn, {"uid": user_id})
    if not rows or not has_verified_contact(rows[0]):
        raise PermissionDenied(
            "Verify your phone number or email first / 请先验证手机号或邮箱", code="CONTACT_NOT_VERIFIED"
        )


async def mark_contacts_verified(conn: AsyncConnection, user_id: int, *, now: datetime) -> None:
    """Mark the user's current phone and email verified (demo data, admin tools)."""
    await conn.execute(
        update(U).where(U.c.id == user_id, U.c.phone.is_not(None)).values(phone_verified_at=now)
    )
    await conn.execute(
        update(U).where(U.c.id == user_id, U.c.email.is_not(None)).values(email_verified_at=now)
    )


_USERS_BY_IDS = DriverStatement(select(U).where(in_list(U.c.id, "ids")))


async def users_by_ids(conn: AsyncConnection, ids: Sequence[int]) -> dict[int, dict]:
    return {r["id"]: r for r in await _USERS_BY_IDS.all(conn, {"ids": list(ids)})}


async def roles_and_status(conn: AsyncConnection, user_id: int) -> tuple[frozenset[str], str] | None:
    rows = await _ROLES_STATUS.all(conn, {"uid": user_id})
    return (roles_of_str(rows[0]["roles"]), rows[0]["status"]) if rows else None


_ROLES_STATUS = DriverStatement(select(U.c.roles, U.c.status).where(U.c.id == bindparam("uid")))


async def find_user_id(conn: AsyncConnection, identifier: str) -> int | None:
    ident = normalize_identifier(identifier)
    column = U.c.email if "@" in ident else U.c.phone
    return (await conn.execute(select(U.c.id).where(column == ident))).scalar_one_or_none()


async def count_users(conn: AsyncConnection) -> int:
    return (await conn.execute(select(func.count()).select_from(U))).scalar_one()
