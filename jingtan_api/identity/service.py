"""Identity flows: contact verification, phone change, login by code, password reset, sessions, consent.
Knows nothing about GraphQL. Data export and account deletion are in ``privacy``.

No account enumeration: ``request_login_code`` and ``request_password_reset`` answer the same for an
unknown identifier as for a known one. A code row is recorded either way (with no user, never sent), so
the resend limits and the attempt counter behave identically; any code entered for it is wrong.
"""

from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import and_, func, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from jingtan_api.audit import service as audit
from jingtan_api.auth import tokens
from jingtan_api.auth.models import AuthSession
from jingtan_api.db import Page, PageArgs, keyset_page
from jingtan_api.errors import Conflict, DomainError, NotFound, ValidationFailed
from jingtan_api.identity import codes
from jingtan_api.identity.codes import CodeSent
from jingtan_api.identity.codes import CHANGE_PHONE, LOGIN, RESET_PASSWORD, VERIFY_EMAIL, VERIFY_PHONE
from jingtan_api.plugins.api import Channel
from jingtan_api.users import service as users
from jingtan_api.users.service import U, Session, address_bucket, normalize_identifier, normalize_phone, roles_of

if TYPE_CHECKING:
    from jingtan_api.services import Services

AS = AuthSession.__table__


def _channel_of(destination: str) -> Channel:
    return Channel.EMAIL if "@" in destination else Channel.SMS


def _sent(app: "Services", channel: Channel, issued: codes.IssuedCode) -> CodeSent:
    return CodeSent(channel, issued.expires_at, app.settings.identity.code_resend_interval_seconds)


async def _raise_after_commit(app: "Services", fn):
    """Run ``fn`` in a write transaction; it returns a result or a DomainError to raise after the commit
    (a wrong code's attempt is kept)."""
    result = await app.db.write(fn)
    if isinstance(result, DomainError):
        raise result
    return result


# --- contact verification ----------------------------------------------------------------------------


async def request_contact_verification(
    app: "Services", *, user_id: int, channel: Channel, address: str, now: datetime
) -> CodeSent:
    purpose = VERIFY_PHONE if channel == Channel.SMS else VERIFY_EMAIL
    column = "phone" if channel == Channel.SMS else "email"

    async def tx(conn: AsyncConnection):
        row = (await conn.execute(select(U).where(U.c.id == user_id))).one()
        destination = getattr(row, column)
        if destination is None:
            raise ValidationFailed("The account has no such contact / 账户未设置该联系方式", code="NO_CONTACT",
                                   field="channel")
        if getattr(row, f"{column}_verified_at") is not None:
            raise Conflict("Already verified / 已验证", code="ALREADY_VERIFIED", field="channel")
        issued = await codes.issue(app, conn, purpose=purpose, channel=channel, destination=destination,
                                   user_id=user_id, address=address_bucket(address), now=now)
        return destination, issued

    destination, issued = await app.db.write(tx)
    await codes.send(app, issued, purpose=purpose, channel=channel, destination=destination)
    return _sent(app, channel, issued)


async def verify_contact(
    app: "Services", *, user_id: int, channel: Channel, code: str, request_id: str | None, now: datetime
) -> None:
    purpose = VERIFY_PHONE if channel == Channel.SMS else VERIFY_EMAIL
    column = "phone" if channel == Channel.SMS else "email"
    code = codes.normalize_code(code)

    async def tx(conn: AsyncConnection):
        row = (await conn.execute(select(U).where(U.c.id == user_id))).one()
        destination = getattr(row, column)
        if destination is None:
            return ValidationFailed("The account has no such contact / 账户未设置该联系方式", code="NO_CONTACT",
                                    field="channel")
        checked = await codes.check(app, conn, purpose=purpose, destination=destination, code=code, now=now)
        if isinstance(checked, DomainError):
            return checked
        await conn.execute(update(U).where(U.c.id == user_id).values(**{f"{column}_verified_at": now}))
        await audit.record(conn, actor_user_id=user_id, action=f"identity.{column}_verified", target_type="User",
                           target_id=user_id, details={"channel": channel.value}, request_id=request_id, now=now)
        return None

    await _raise_after_commit(app, tx)


# --- phone change ----------------------------------------------------------------------------------------


async def _phone_holder(conn: AsyncConnection, phone: str, user_id: int):
    return (
        await conn.execute(select(U.c.id, U.c.phone_verified_at).where(U.c.phone == phone, U.c.id != user_id))
    ).one_or_none()


def _taken() -> Conflict:
    return Conflict("Another account already verified this number / 该手机号已被其他账户验证",
                    code="CONTACT_TAKEN", field="newPhone")


async def request_phone_change(
    app: "Services", *, user_id: int, new_phone: str, address: str, now: datetime
) -> CodeSent:
    """A code to the new number. A number another account holds *verified* is refused; one held
    unverified (anybody can type any number at registration) is released when this change completes."""
    phone = normalize_phone(new_phone, field="newPhone")

    async def tx(conn: AsyncConnection):
        row = (await conn.execute(select(U.c.phone).where(U.c.id == user_id))).one()
        if row.phone == phone:
            raise ValidationFailed("That is already your number / 与当前手机号相同", code="SAME_PHONE", field="newPhone")
        holder = await _phone_holder(conn, phone, user_id)
        if holder is not None and holder.phone_verified_at is not None:
            raise _taken()
        return await codes.issue(app, conn, purpose=CHANGE_PHONE, channel=Channel.SMS, destination=phone,
                                 user_id=user_id, address=address_bucket(address), now=now)

    issued = await app.db.write(tx)
    await codes.send(app, issued, purpose=CHANGE_PHONE, channel=Channel.SMS, destination=phone)
    return _sent(app, Channel.SMS, issued)


async def confirm_phone_change(
    app: "Services", *, user_id: int, new_phone: str, code: str, request_id: str | None, now: datetime
) -> None:
    """Move the account to the new (now verified) number and notify the old one."""
    phone = normalize_phone(new_phone, field="newPhone")
    code = codes.normalize_code(code)

    async def tx(conn: AsyncConnection):
        old = (await conn.execute(select(U.c.phone).where(U.c.id == user_id).with_for_update())).scalar_one()
        holder = await _phone_holder(conn, phone, user_id)
        if holder is not None and holder.phone_verified_at is not None:
            return _taken()
        checked = await codes.check(app, conn, purpose=CHANGE_PHONE, destination=phone, code=code, now=now)
        if isinstance(checked, DomainError):
            return checked
        if holder is not None:
            await conn.execute(update(U).where(U.c.id == holder.id).values(phone=None, phone_verified_at=None))
            await audit.record(conn, actor_user_id=user_id, action="identity.unverified_phone_released",
                               target_type="User", target_id=holder.id, details={}, request_id=request_id, now=now)
        await conn.execute(update(U).where(U.c.id == user_id).values(phone=phone, phone_verified_at=now))
        await audit.record(conn, actor_user_id=user_id, action="identity.phone_changed", target_type="User",
                           target_id=user_id, details={"had_phone": old is not None}, request_id=request_id, now=now)
        return old

    old = await _raise_after_commit(app, tx)
    if old:
        await codes.deliver(app, codes.message(codes.PHONE_CHANGED, Channel.SMS, old, None, 0))


# --- login by code and password reset -------------------------------------------------------------------


async def _request_account_code(
    app: "Services", *, purpose: str, identifier: str, address: str, now: datetime
) -> CodeSent:
    destination = normalize_identifier(identifier)
    channel = _channel_of(destination)
    column = U.c.email if channel == Channel.EMAIL else U.c.phone

    async def tx(conn: AsyncConnection):
        row = (await conn.execute(select(U.c.id, U.c.status).where(column == destination))).one_or_none()
        user_id = row.id if row is not None and row.status == "ACTIVE" else None
        issued = await codes.issue(app, conn, purpose=purpose, channel=channel, destination=destination,
                                   user_id=user_id, address=address_bucket(address), now=now)
        return user_id, issued

    user_id, issued = await app.db.write(tx)
    if user_id is not None:
        await codes.send(app, issued, purpose=purpose, channel=channel, destination=destination)
    return _sent(app, channel, issued)


async def request_login_code(app: "Services", *, identifier: str, address: str, now: datetime) -> CodeSent:
    return await _request_account_code(app, purpose=LOGIN, identifier=identifier, address=address, now=now)


async def request_password_reset(app: "Services", *, identifier: str, address: str, now: datetime) -> CodeSent:
    return await _request_account_code(app, purpose=RESET_PASSWORD, identifier=identifier, address=address, now=now)


def _verified_column(destination: str) -> str:
    return "email_verified_at" if "@" in destination else "phone_verified_at"


async def login_with_code(
    app: "Services", *, identifier: str, code: str, address: str, device_name: str, request_id: str | None,
    now: datetime,
) -> Session:
    """A session for the holder of the code. Receiving the code proves the contact: it becomes verified."""
    destination = normalize_identifier(identifier)
    code = codes.normalize_code(code)

    async def tx(conn: AsyncConnection):
        checked = await codes.check(app, conn, purpose=LOGIN, destination=destination, code=code, now=now)
        if isinstance(checked, DomainError):
            return checked
        row = (await conn.execute(select(U).where(U.c.id == checked.user_id))).one()
        if row.status != "ACTIVE" or destination not in (row.email, row.phone):
            return codes._invalid()
        await conn.execute(
            update(U).where(U.c.id == row.id, getattr(U.c, _verified_column(destination)).is_(None))
            .values(**{_verified_column(destination): now})
        )
        pair = await users._issue_pair(app, conn, row.id, roles_of(row), family_id=None, now=now,
                                       device_name=device_name, address=address)
        await audit.record(conn, actor_user_id=row.id, action="identity.login_with_code", target_type="User",
                           target_id=row.id, details={}, request_id=request_id, now=now)
        return Session(user_id=row.id, roles=roles_of(row), pair=pair)

    return await _raise_after_commit(app, tx)


async def reset_password(
    app: "Services", *, identifier: str, code: str, new_password: str, address: str, device_name: str,
    request_id: str | None, now: datetime,
) -> Session:
    """Set a new password with a RESET_PASSWORD code; every other session of the account ends (their
    refresh tokens are revoked) and a new one starts."""
    destination = normalize_identifier(identifier)
    code = codes.normalize_code(code)
    app.passwords.check_policy(new_password, identifiers=(destination,), field="newPassword")
    new_hash = await app.passwords.hash(new_password)

    async def tx(conn: AsyncConnection):
        checked = await codes.check(app, conn, purpose=RESET_PASSWORD, destination=destination, code=code, now=now)
        if isinstance(checked, DomainError):
            return checked
        row = (await conn.execute(select(U).where(U.c.id == checked.user_id))).one()
        if row.status != "ACTIVE" or destination not in (row.email, row.phone):
            return codes._invalid()
        await conn.execute(
            update(U).where(U.c.id == row.id).values(
                password_hash=new_hash, password_changed_at=now, **{_verified_column(destination): now}
            )
        )
        await tokens.revoke_user_refresh_tokens(conn, row.id, now=now, reason="password-reset")
        pair = await users._issue_pair(app, conn, row.id, roles_of(row), family_id=None, now=now,
                                       device_name=device_name, address=address)
        await audit.record(conn, actor_user_id=row.id, action="identity.password_reset", target_type="User",
                           target_id=row.id, details={}, request_id=request_id, now=now)
        return Session(user_id=row.id, roles=roles_of(row), pair=pair)

    return await _raise_after_commit(app, tx)


# --- sessions -------------------------------------------------------------------------------------------


def _active(now: datetime):
    return and_(AS.c.ended_at.is_(None), AS.c.expires_at > now)


async def sessions_page(conn: AsyncConnection, user_id: int, args: PageArgs, *, now: datetime) -> Page:
    stmt = select(AS).where(AS.c.user_id == user_id, _active(now))
    return await keyset_page(conn, stmt, [(AS.c.id, True)], args)


async def count_sessions(conn: AsyncConnection, user_id: int, *, now: datetime) -> int:
    return (await conn.execute(select(func.count()).where(AS.c.user_id == user_id, _active(now)))).scalar_one()


async def sessions_by_ids(conn: AsyncConnection, ids: Sequence[int]) -> dict[int, dict]:
    return {r.id: dict(r._mapping) for r in await conn.execute(select(AS).where(AS.c.id.in_(list(ids))))}


async def end_session(
    conn: AsyncConnection, *, user_id: int, session_id: int, request_id: str | None, now: datetime
) -> dict:
    """End one of the member's sessions: its refresh tokens are revoked at once; access tokens already
    issued to it expire within ``auth.access_token_ttl_seconds`` (docs/identity.md, "Sessions")."""
    row = (await conn.execute(select(AS).where(AS.c.id == session_id))).one_or_none()
    if row is None or row.user_id != user_id or row.ended_at is not None or row.expires_at <= now:
        raise NotFound("No such active session / 会话不存在或已结束", field="id")
    await tokens.revoke_family(conn, row.family_id, now=now, reason="ended-by-member")
    await audit.record(conn, actor_user_id=user_id, action="identity.session_ended", target_type="AuthSession",
                       target_id=session_id, details={"device": row.device_name}, request_id=request_id, now=now)
    return dict((await conn.execute(select(AS).where(AS.c.id == session_id))).one()._mapping)


# --- consent -------------------------------------------------------------------------------------------


async def accept_consent(
    app: "Services", conn: AsyncConnection, *, user_id: int, terms_version: str, privacy_version: str,
    request_id: str | None, now: datetime,
) -> None:
    cfg = app.settings.identity
    if terms_version != cfg.terms_version:
        raise ValidationFailed(f"The current terms are version {cfg.terms_version} / 当前服务协议版本为 {cfg.terms_version}",
                               code="CONSENT_VERSION_OUTDATED", field="termsVersion")
    if privacy_version != cfg.privacy_version:
        raise ValidationFailed(
            f"The current privacy notice is version {cfg.privacy_version} / 当前隐私政策版本为 {cfg.privacy_version}",
            code="CONSENT_VERSION_OUTDATED", field="privacyVersion",
        )
    await users.record_consent(conn, user_id, terms=terms_version, privacy=privacy_version, now=now)
    await audit.record(conn, actor_user_id=user_id, action="identity.consent_accepted", target_type="User",
                       target_id=user_id, details={"terms": terms_version, "privacy": privacy_version},
                       request_id=request_id, now=now)
