"""One-time codes: issue (with resend limits), check (attempts shared by every server process), send.

* 6 random digits; only ``HMAC-SHA256(secret_key, purpose|destination|code)`` is stored, so a copy of the
  database does not give the codes away (a plain hash of 10⁶ values would).
* One active code per (purpose, destination): a new one supersedes the previous.
* Limits, counted in ``verification_code`` itself (so all processes share them): a code to one
  destination at most every ``code_resend_interval_seconds`` and ``codes_per_destination`` per window;
  ``codes_per_address`` per client address per window. Counting and inserting happen in one serialised
  transaction (BEGIN IMMEDIATE on SQLite, advisory locks on PostgreSQL).
* Checking: the active code's row is locked (``FOR UPDATE``); a wrong code adds one attempt in the same
  transaction, which commits even though the answer is an error: attempts spread over processes or
  connections add up, and after ``code_max_attempts`` the code is void.
"""

import asyncio
import hashlib
import hmac
import logging
import math
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy import func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from jingtan_api.errors import DomainError, RateLimited, ValidationFailed
from jingtan_api.identity.models import VerificationCode
from jingtan_api.plugins.api import Channel, OutgoingMessage

if TYPE_CHECKING:
    from jingtan_api.services import Services

log = logging.getLogger("jingtan.identity")
VC = VerificationCode.__table__

LOGIN = "LOGIN"
RESET_PASSWORD = "RESET_PASSWORD"
VERIFY_PHONE = "VERIFY_PHONE"
VERIFY_EMAIL = "VERIFY_EMAIL"
CHANGE_PHONE = "CHANGE_PHONE"
DELETE_ACCOUNT = "DELETE_ACCOUNT"
PHONE_CHANGED = "PHONE_CHANGED"  # notice to the old number: no code

_TEXT = {
    LOGIN: "您的登录验证码是 {code}，{minutes} 分钟内有效。Your Jingtan login code is {code} (valid {minutes} min).",
    RESET_PASSWORD: "您正在重置密码，验证码 {code}，{minutes} 分钟内有效。Your password reset code is {code} (valid {minutes} min).",
    VERIFY_PHONE: "您的手机验证码是 {code}，{minutes} 分钟内有效。Your phone verification code is {code} (valid {minutes} min).",
    VERIFY_EMAIL: "您的邮箱验证码是 {code}，{minutes} 分钟内有效。Your email verification code is {code} (valid {minutes} min).",
    CHANGE_PHONE: "您正在更换绑定手机，验证码 {code}，{minutes} 分钟内有效。Your code to change your phone number is {code} (valid {minutes} min).",
    DELETE_ACCOUNT: "您正在申请注销账户，验证码 {code}，{minutes} 分钟内有效。如非本人操作请忽略。Your account deletion code is {code} (valid {minutes} min). Ignore this if it was not you.",
    PHONE_CHANGED: "您的鲸碳账户已更换绑定手机，此号码不再用于登录。如非本人操作请联系客服。The phone number of your Jingtan account was changed; this number no longer signs in. Contact support if it was not you.",
}


def code_hash(secret_key: str, purpose: str, destination: str, code: str) -> str:
    message = f"{purpose}|{destination}|{code}".encode()
    return hmac.new(secret_key.encode(), message, hashlib.sha256).hexdigest()


def _lock_key(kind: str, value: str) -> int:
    digest = hashlib.sha256(f"otp:{kind}:{value}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def _aware(moment: datetime, now: datetime) -> datetime:
    return moment.replace(tzinfo=now.tzinfo) if moment.tzinfo is None else moment


def normalize_code(code: str | None) -> str:
    """Digits as typed (full-width digits folded, spaces dropped); anything else is INVALID_CODE."""
    import unicodedata  # deferred: only for this rarely-hit normalisation

    text = "".join(unicodedata.normalize("NFKC", code or "").split())
    if not (len(text) == 6 and text.isascii() and text.isdigit()):
        raise ValidationFailed("The code has 6 digits / 验证码为 6 位数字", code="INVALID_CODE", field="code")
    return text


@dataclass(frozen=True)
class CodeSent:
    """What a code request answers (the same for unknown accounts)."""

    channel: Channel
    expires_at: datetime
    resend_after_seconds: int


@dataclass(frozen=True)
class IssuedCode:
    id: int
    code: str
    expires_at: datetime


async def issue(
    app: "Services", conn: AsyncConnection, *, purpose: str, channel: Channel, destination: str,
    user_id: int | None, address: str, now: datetime,
) -> IssuedCode:
    """Record a new code inside the caller's write transaction, after the resend limits (RateLimited,
    nothing written). The caller sends it with :func:`send` after the commit."""
    cfg = app.settings.identity
    if conn.dialect.name == "postgresql":
        for key in sorted({_lock_key("dest", destination), _lock_key("addr", address)}):
            await conn.execute(select(func.pg_advisory_xact_lock(key)))
    window_start = now - timedelta(seconds=cfg.code_window_seconds)
    count, last = (
        await conn.execute(
            select(func.count(), func.max(VC.c.created_at)).where(
                VC.c.destination == destination, VC.c.created_at > window_start
            )
        )
    ).one()
    if last is not None:
        wait = (_aware(last, now) + timedelta(seconds=cfg.code_resend_interval_seconds) - now).total_seconds()
        if wait > 0:
            raise _limited(math.ceil(wait))
    if count >= cfg.codes_per_destination:
        oldest = (
            await conn.execute(
                select(func.min(VC.c.created_at)).where(VC.c.destination == destination, VC.c.created_at > window_start)
            )
        ).scalar_one()
        raise _limited(max(1, math.ceil((_aware(oldest, now) - window_start).total_seconds())))
    by_address = (
        await conn.execute(select(func.count()).where(VC.c.address == address, VC.c.created_at > window_start))
    ).scalar_one()
    if by_address >= cfg.codes_per_address:
        raise _limited(cfg.code_window_seconds)
    await conn.execute(
        update(VC)
        .where(VC.c.purpose == purpose, VC.c.destination == destination,
               VC.c.consumed_at.is_(None), VC.c.superseded_at.is_(None))
        .values(superseded_at=now)
    )
    code = f"{secrets.randbelow(10**6):06d}"
    expires = now + timedelta(seconds=cfg.code_ttl_seconds)
    code_id = (
        await conn.execute(
            insert(VC).values(
                purpose=purpose, channel=channel.value, destination=destination, user_id=user_id,
                code_hash=code_hash(app.settings.secret_key, purpose, destination, code), address=address[:64],
                created_at=now, expires_at=expires, attempts=0,
            ).returning(VC.c.id)
        )
    ).scalar_one()
    return IssuedCode(code_id, code, expires)


def _limited(retry_after: int) -> RateLimited:
    return RateLimited(
        f"Too many codes requested: retry in {retry_after} s / 验证码请求过于频繁，请 {retry_after} 秒后再试",
        retry_after=retry_after,
    )


@dataclass(frozen=True)
class CheckedCode:
    id: int
    user_id: int | None


async def check(
    app: "Services", conn: AsyncConnection, *, purpose: str, destination: str, code: str, now: datetime
) -> CheckedCode | DomainError:
    """Check and consume the active code of (purpose, destination) inside the caller's write transaction.

    Returns the consumed code, or the error to raise *after* committing (a wrong code's attempt must be
    kept, so the caller commits and then raises). Only the attempt counter is written on failure."""
    row = (
        await conn.execute(
            select(VC).where(VC.c.purpose == purpose, VC.c.destination == destination)
            .order_by(VC.c.id.desc()).limit(1).with_for_update()
        )
    ).one_or_none()
    if row is None or row.superseded_at is not None:
        return _invalid()
    if row.consumed_at is not None:
        return DomainError("This code was already used: request a new one / 验证码已使用，请重新获取",
                           code="CODE_ALREADY_USED", field="code")
    if _aware(row.expires_at, now) <= now:
        return DomainError("This code expired: request a new one / 验证码已过期，请重新获取",
                           code="CODE_EXPIRED", field="code")
    if row.attempts >= app.settings.identity.code_max_attempts:
        return _too_many()
    expected = code_hash(app.settings.secret_key, purpose, destination, code)
    if not hmac.compare_digest(expected, row.code_hash) or row.user_id is None:
        await conn.execute(update(VC).where(VC.c.id == row.id).values(attempts=VC.c.attempts + 1))
        if row.attempts + 1 >= app.settings.identity.code_max_attempts:
            return _too_many()
        return _invalid()
    done = await conn.execute(
        update(VC).where(VC.c.id == row.id, VC.c.consumed_at.is_(None)).values(consumed_at=now)
    )
    if done.rowcount != 1:
        return _invalid()
    return CheckedCode(row.id, row.user_id)


def _invalid() -> DomainError:
    return DomainError("Wrong code / 验证码错误", code="INVALID_CODE", field="code")


def _too_many() -> DomainError:
    return DomainError(
        "Too many wrong codes: request a new one / 验证码错误次数过多，请重新获取", code="TOO_MANY_ATTEMPTS", field="code"
    )


def message(purpose: str, channel: Channel, destination: str, code: str | None, ttl_seconds: int) -> OutgoingMessage:
    minutes = max(1, ttl_seconds // 60)
    return OutgoingMessage(
        channel=channel, destination=destination, purpose=purpose,
        text=_TEXT[purpose].format(code=code or "", minutes=minutes), code=code, ttl_minutes=minutes,
    )


async def deliver(app: "Services", msg: OutgoingMessage) -> bool:
    """Hand a message to the configured sender of its channel, with the plugin timeout. False (logged)
    when the sender failed."""
    sender = app.plugins.sender_for(msg.channel, app.settings)
    try:
        await asyncio.wait_for(sender.send(msg), timeout=app.settings.plugins.timeout_seconds)
    except Exception as exc:  # noqa: BLE001 - a sender's failure (SendFailed or a bug) is one outcome
        log.warning("message sender failed", extra={"sender": sender.name, "purpose": msg.purpose,
                                                     "error": f"{type(exc).__name__}: {exc}"[:300]})
        return False
    return True


async def send(app: "Services", issued: IssuedCode, *, purpose: str, channel: Channel, destination: str) -> None:
    """Send a committed code; when the sender fails the code is withdrawn and SEND_FAILED raised."""
    ok = await deliver(app, message(purpose, channel, destination, issued.code, app.settings.identity.code_ttl_seconds))
    if not ok:
        await app.db.write(
            lambda conn: conn.execute(update(VC).where(VC.c.id == issued.id).values(superseded_at=app.clock()))
        )
        raise DomainError("The message could not be sent: try again later / 消息发送失败，请稍后重试", code="SEND_FAILED")
