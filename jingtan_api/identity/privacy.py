"""Members' rights under PIPL: a copy of their data (art. 45) and deletion (art. 47). No GraphQL here.

Export: ``request_data_export`` builds a ZIP (``data.json`` with every section, ``statement.csv`` with the
ledger statement) and keeps it until it is downloaded once through a signed, expiring link
(``/privacy/exports/<id>?expires=…&signature=…``, HMAC-SHA256 with the server's secret key).

Deletion: ``request_account_deletion`` sends a code; ``confirm_account_deletion`` schedules the deletion
after ``[identity] deletion_cooling_off_days`` (refused while redemptions are pending: cancel or use them
first); ``cancel_account_deletion`` stops it; ``complete_deletion`` (the job, or an admin once due)
anonymises the account. Ledger entries and actions are never deleted: the balance leaves the account
through one more balanced transaction (expired, or donated to the configured donation target), so the
ledger stays balanced and carbon statistics keep every approved gram (docs/identity.md).
"""

import base64
import csv
import hashlib
import hmac
import io
import json
import zipfile
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from jingtan_api.accounts import service as ledger
from jingtan_api.accounts.models import Account, LedgerEntry, LedgerTransaction
from jingtan_api.actions.models import Action
from jingtan_api.audit import service as audit
from jingtan_api.auth import tokens
from jingtan_api.auth.models import ApiToken, AuthSession, LoginAttempt
from jingtan_api.db import Page, PageArgs, keyset_page
from jingtan_api.errors import Conflict, DomainError, NotFound, RateLimited, ValidationFailed
from jingtan_api.identity import codes
from jingtan_api.identity.codes import DELETE_ACCOUNT
from jingtan_api.identity.models import DataExport, DeletionRequest, VerificationCode
from jingtan_api.merchants.models import Merchant, MerchantStaff
from jingtan_api.plugins.api import Channel
from jingtan_api.redemptions import service as redemptions
from jingtan_api.redemptions.models import Redemption
from jingtan_api.settings import Settings
from jingtan_api.users.models import UserConsent
from jingtan_api.users.service import U, address_bucket

if TYPE_CHECKING:
    from jingtan_api.services import Services

DX = DataExport.__table__
DR = DeletionRequest.__table__
VC = VerificationCode.__table__
AS = AuthSession.__table__

EXPIRE = "EXPIRE"
DONATE = "DONATE"
BALANCE_CHOICES = (EXPIRE, DONATE)
ACCOUNT_DELETION = "ACCOUNT_DELETION"  # ledger transaction kind
PUBLIC_GOOD_CODE = "platform:public-good"
DELETED_NAME = "已注销用户 Deleted member"

# --- pluggable parts ------------------------------------------------------------------------------------

ExportSection = Callable[[AsyncConnection, int], Awaitable[Any]]
"""``async fn(conn, user_id) -> JSON-able``: one section of ``data.json``."""
EXPORT_SECTIONS: dict[str, ExportSection] = {}

DonationTarget = Callable[[AsyncConnection, int], Awaitable[int]]
"""``async fn(conn, user_id) -> account id`` that receives a deleted member's donated balance."""
DONATION_TARGETS: dict[str, DonationTarget] = {}


def register_export_section(name: str, fn: ExportSection) -> None:
    """Add a section to every data export (e.g. a domain's memberships). Names are unique."""
    if name in EXPORT_SECTIONS:
        raise ValueError(f"export section {name!r} is already registered")
    EXPORT_SECTIONS[name] = fn


def register_donation_target(name: str, fn: DonationTarget) -> None:
    """Add a donation target ``[identity] donation_target`` may name (e.g. an organisation's account)."""
    if name in DONATION_TARGETS:
        raise ValueError(f"donation target {name!r} is already registered")
    DONATION_TARGETS[name] = fn


def _iso(value: Any) -> Any:
    if isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=UTC)).isoformat()
    return value


def _plain(row: Any, *, skip: Sequence[str] = ()) -> dict:
    return {k: _iso(v) for k, v in row._mapping.items() if k not in skip}


async def _profile(conn: AsyncConnection, user_id: int) -> dict:
    row = (await conn.execute(select(U).where(U.c.id == user_id))).one()
    return _plain(row, skip=("password_hash",))


async def _consents(conn: AsyncConnection, user_id: int) -> list[dict]:
    UC = UserConsent.__table__
    return [_plain(r) for r in await conn.execute(select(UC).where(UC.c.user_id == user_id).order_by(UC.c.id))]


async def _sessions(conn: AsyncConnection, user_id: int) -> list[dict]:
    return [_plain(r, skip=("family_id",)) for r in await conn.execute(
        select(AS).where(AS.c.user_id == user_id).order_by(AS.c.id))]


async def _actions(conn: AsyncConnection, user_id: int) -> list[dict]:
    A = Action.__table__
    out = []
    for r in await conn.execute(select(A).where(A.c.user_id == user_id).order_by(A.c.id)):
        item = _plain(r, skip=("evidence_fingerprint_seen",))
        for key in ("input", "evidence", "reasons", "factor_ids", "factors"):
            try:
                item[key] = json.loads(item[key])
            except (TypeError, ValueError):
                pass
        out.append(item)
    return out


async def statement_rows(conn: AsyncConnection, user_id: int) -> list[dict]:
    A, E, TX = Account.__table__, LedgerEntry.__table__, LedgerTransaction.__table__
    rows = await conn.execute(
        select(E.c.id, E.c.created_at, TX.c.kind, TX.c.memo, E.c.amount, E.c.balance_after, TX.c.id.label("tx"))
        .select_from(E.join(A, A.c.id == E.c.account_id).join(TX, TX.c.id == E.c.transaction_id))
        .where(A.c.user_id == user_id, A.c.kind == ledger.MEMBER)
        .order_by(E.c.id)
    )
    return [{"entry_id": r.id, "transaction_id": r.tx, "created_at": _iso(r.created_at), "kind": r.kind,
             "memo": r.memo, "amount": r.amount, "balance_after": r.balance_after} for r in rows]


async def _redemptions(conn: AsyncConnection, user_id: int) -> list[dict]:
    R = Redemption.__table__
    return [_plain(r) for r in await conn.execute(
        select(R).where(R.c.member_user_id == user_id).order_by(R.c.id))]


async def _memberships(conn: AsyncConnection, user_id: int) -> list[dict]:
    S, M = MerchantStaff.__table__, Merchant.__table__
    out = [{"kind": "MERCHANT_STAFF", "merchant_id": r.merchant_id, "merchant": f"{r.name_zh} {r.name_en}".strip()}
           for r in await conn.execute(
               select(S.c.merchant_id, M.c.name_zh, M.c.name_en).join(M, M.c.id == S.c.merchant_id)
               .where(S.c.user_id == user_id))]
    out += [{"kind": "MERCHANT_OWNER", "merchant_id": r.id, "merchant": f"{r.name_zh} {r.name_en}".strip()}
            for r in await conn.execute(select(M.c.id, M.c.name_zh, M.c.name_en).where(M.c.owner_user_id == user_id))]
    return out


for _name, _fn in (("profile", _profile), ("consents", _consents), ("sessions", _sessions), ("actions", _actions),
                   ("ledger_statement", statement_rows), ("redemptions", _redemptions),
                   ("memberships", _memberships)):
    register_export_section(_name, _fn)


async def _public_good(conn: AsyncConnection, user_id: int) -> int:
    return await ledger.platform_account_id(conn, PUBLIC_GOOD_CODE)


register_donation_target("public_good", _public_good)

# --- export ---------------------------------------------------------------------------------------------


def sign_export(secret_key: str, export_id: int, expires: int) -> str:
    return hmac.new(secret_key.encode(), f"data-export:{export_id}:{expires}".encode(), hashlib.sha256).hexdigest()


def download_path(app: "Services", export_id: int, expires_at: datetime) -> str:
    expires = int(expires_at.timestamp())
    sig = sign_export(app.settings.secret_key, export_id, expires)
    return f"{app.settings.identity.public_base_url.rstrip('/')}/privacy/exports/{export_id}?expires={expires}&signature={sig}"


async def build_archive(conn: AsyncConnection, user_id: int, *, now: datetime) -> bytes:
    data: dict[str, Any] = {"format": "jingtan-data-export/1", "generated_at": _iso(now)}
    for name, fn in EXPORT_SECTIONS.items():
        data[name] = await fn(conn, user_id)
    text = io.StringIO()
    writer = csv.writer(text)
    columns = ["entry_id", "transaction_id", "created_at", "kind", "memo", "amount", "balance_after"]
    writer.writerow(columns)
    for row in data.get("ledger_statement") or await statement_rows(conn, user_id):
        writer.writerow([row[c] for c in columns])
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("data.json", json.dumps(data, ensure_ascii=False, indent=2, default=str))
        archive.writestr("statement.csv", "\ufeff" + text.getvalue())  # BOM: spreadsheet apps read UTF-8
    return buffer.getvalue()


async def request_data_export(
    app: "Services", conn: AsyncConnection, *, user_id: int, request_id: str | None, now: datetime
) -> tuple[dict, str]:
    """Build the member's archive; returns (export row, download link shown once). At most
    ``exports_per_day`` per 24 hours; a new export voids the previous undownloaded one."""
    cfg = app.settings.identity
    # Serialise per member (the member's account row), so the daily limit holds under concurrency.
    await ledger.lock_member_account(conn, user_id)
    recent = (
        await conn.execute(select(func.count()).where(DX.c.user_id == user_id, DX.c.created_at > now - timedelta(days=1)))
    ).scalar_one()
    if recent >= cfg.exports_per_day:
        raise RateLimited(f"At most {cfg.exports_per_day} exports per day / 每天最多导出 {cfg.exports_per_day} 次",
                          retry_after=3600)
    await conn.execute(
        update(DX).where(DX.c.user_id == user_id, DX.c.status == "READY").values(status="EXPIRED", archive=None)
    )
    blob = await build_archive(conn, user_id, now=now)
    expires = (now + timedelta(seconds=cfg.export_link_ttl_seconds)).replace(microsecond=0)
    export_id = (
        await conn.execute(
            DX.insert().values(user_id=user_id, status="READY", created_at=now, expires_at=expires,
                               size_bytes=len(blob), archive=base64.b64encode(blob).decode()).returning(DX.c.id)
        )
    ).scalar_one()
    await audit.record(conn, actor_user_id=user_id, action="privacy.export_requested", target_type="DataExport",
                       target_id=export_id, details={"size_bytes": len(blob)}, request_id=request_id, now=now)
    row = (await conn.execute(select(DX).where(DX.c.id == export_id))).one()
    return _export_dict(row), download_path(app, export_id, expires)


def _export_dict(row: Any) -> dict:
    return {k: v for k, v in row._mapping.items() if k != "archive"}


async def exports_of_users(conn: AsyncConnection, user_ids: Sequence[int]) -> dict[int, list[dict]]:
    cols = [c for c in DX.c if c.name != "archive"]
    out: dict[int, list[dict]] = {}
    for r in await conn.execute(select(*cols).where(DX.c.user_id.in_(list(user_ids))).order_by(DX.c.id.desc())):
        out.setdefault(r.user_id, []).append(dict(r._mapping))
    return out


class LinkRefused(DomainError):
    """A download link that cannot be used: ``status`` is the HTTP status to answer."""

    def __init__(self, message: str, *, code: str, status: int) -> None:
        super().__init__(message, code=code)
        self.status = status


async def download_export(
    app: "Services", conn: AsyncConnection, *, export_id: int, expires: str, signature: str, now: datetime
) -> bytes:
    """The archive, once: the row is locked, checked and marked DOWNLOADED (archive dropped) in one
    transaction. Refusals write nothing."""
    if not (expires.isascii() and expires.isdigit() and len(expires) <= 12) or not signature:
        raise LinkRefused("Invalid download link / 下载链接无效", code="EXPORT_LINK_INVALID", status=403)
    expected = sign_export(app.settings.secret_key, export_id, int(expires))
    if not hmac.compare_digest(expected, signature.lower()):
        raise LinkRefused("Invalid download link / 下载链接无效", code="EXPORT_LINK_INVALID", status=403)
    row = (await conn.execute(select(DX).where(DX.c.id == export_id).with_for_update())).one_or_none()
    if row is None or int(row.expires_at.replace(tzinfo=row.expires_at.tzinfo or UTC).timestamp()) != int(expires):
        raise LinkRefused("Invalid download link / 下载链接无效", code="EXPORT_LINK_INVALID", status=403)
    if row.status == "DOWNLOADED":
        raise LinkRefused("This link was already used / 下载链接已使用", code="EXPORT_LINK_USED", status=410)
    if row.status != "READY" or int(expires) <= now.timestamp() or row.archive is None:
        raise LinkRefused("This link expired / 下载链接已过期", code="EXPORT_LINK_EXPIRED", status=410)
    done = await conn.execute(
        update(DX).where(DX.c.id == export_id, DX.c.status == "READY")
        .values(status="DOWNLOADED", downloaded_at=now, archive=None)
    )
    if done.rowcount != 1:
        raise LinkRefused("This link was already used / 下载链接已使用", code="EXPORT_LINK_USED", status=410)
    await audit.record(conn, actor_user_id=row.user_id, action="privacy.export_downloaded", target_type="DataExport",
                       target_id=export_id, details={}, now=now)
    return base64.b64decode(row.archive)


# --- deletion -------------------------------------------------------------------------------------------


def _deletion_destination(row: Any) -> tuple[Channel, str]:
    """Where the deletion code goes: a verified phone, a verified email, else whichever the account has."""
    if row.phone and row.phone_verified_at:
        return Channel.SMS, row.phone
    if row.email and row.email_verified_at:
        return Channel.EMAIL, row.email
    if row.phone:
        return Channel.SMS, row.phone
    return Channel.EMAIL, row.email


async def _scheduled(conn: AsyncConnection, user_id: int):
    return (await conn.execute(select(DR).where(DR.c.user_id == user_id, DR.c.status == "SCHEDULED"))).one_or_none()


async def _pending_redemptions(conn: AsyncConnection, user_id: int) -> int:
    R = Redemption.__table__
    return (await conn.execute(
        select(func.count()).where(R.c.member_user_id == user_id, R.c.status == redemptions.PENDING))).scalar_one()


def _pending_error(n: int) -> Conflict:
    return Conflict(f"{n} redemption(s) are pending: cancel or use them first / 有 {n} 个未使用的兑换，请先取消或使用",
                    code="PENDING_REDEMPTIONS")


async def request_account_deletion(app: "Services", *, user_id: int, address: str, now: datetime) -> codes.CodeSent:
    async def tx(conn: AsyncConnection):
        if await _scheduled(conn, user_id) is not None:
            raise Conflict("A deletion is already scheduled / 已申请注销", code="DELETION_PENDING")
        pending = await _pending_redemptions(conn, user_id)
        if pending:
            raise _pending_error(pending)
        row = (await conn.execute(select(U).where(U.c.id == user_id))).one()
        channel, destination = _deletion_destination(row)
        issued = await codes.issue(app, conn, purpose=DELETE_ACCOUNT, channel=channel, destination=destination,
                                   user_id=user_id, address=address_bucket(address), now=now)
        return channel, destination, issued

    channel, destination, issued = await app.db.write(tx)
    await codes.send(app, issued, purpose=DELETE_ACCOUNT, channel=channel, destination=destination)
    return codes.CodeSent(channel, issued.expires_at, app.settings.identity.code_resend_interval_seconds)


async def confirm_account_deletion(
    app: "Services", *, user_id: int, code: str, balance_choice: str, request_id: str | None, now: datetime
) -> dict:
    if balance_choice not in BALANCE_CHOICES:
        raise ValidationFailed("Choose EXPIRE or DONATE / 请选择 EXPIRE 或 DONATE", field="balanceChoice")
    if balance_choice == DONATE and app.settings.identity.donation_target not in DONATION_TARGETS:
        raise ValidationFailed("Donation is not available / 暂不支持捐赠", field="balanceChoice")
    code = codes.normalize_code(code)
    cfg = app.settings.identity

    async def tx(conn: AsyncConnection):
        await ledger.lock_member_account(conn, user_id)  # serialises against redeeming meanwhile
        if await _scheduled(conn, user_id) is not None:
            return Conflict("A deletion is already scheduled / 已申请注销", code="DELETION_PENDING")
        pending = await _pending_redemptions(conn, user_id)
        if pending:
            return _pending_error(pending)
        row = (await conn.execute(select(U).where(U.c.id == user_id))).one()
        _, destination = _deletion_destination(row)
        checked = await codes.check(app, conn, purpose=DELETE_ACCOUNT, destination=destination, code=code, now=now)
        if isinstance(checked, DomainError):
            return checked
        due = now + timedelta(days=cfg.deletion_cooling_off_days)
        request_pk = (await conn.execute(
            DR.insert().values(user_id=user_id, status="SCHEDULED", balance_choice=balance_choice, created_at=now,
                               due_at=due).returning(DR.c.id))).scalar_one()
        await audit.record(conn, actor_user_id=user_id, action="privacy.deletion_scheduled",
                           target_type="DeletionRequest", target_id=request_pk,
                           details={"balance_choice": balance_choice, "due_at": due.isoformat()},
                           request_id=request_id, now=now)
        return dict((await conn.execute(select(DR).where(DR.c.id == request_pk))).one()._mapping)

    result = await app.db.write(tx)
    if isinstance(result, DomainError):
        raise result
    return result


async def cancel_account_deletion(
    conn: AsyncConnection, *, user_id: int, request_id: str | None, now: datetime
) -> dict:
    row = await _scheduled(conn, user_id)
    if row is None:
        raise Conflict("No deletion is scheduled / 没有待处理的注销申请", code="NO_DELETION_PENDING")
    await conn.execute(update(DR).where(DR.c.id == row.id).values(status="CANCELLED", cancelled_at=now))
    await audit.record(conn, actor_user_id=user_id, action="privacy.deletion_cancelled", target_type="DeletionRequest",
                       target_id=row.id, details={}, request_id=request_id, now=now)
    return dict((await conn.execute(select(DR).where(DR.c.id == row.id))).one()._mapping)


async def complete_deletion(
    settings: Settings, conn: AsyncConnection, *, request_pk: int, actor_user_id: int | None,
    request_id: str | None, now: datetime,
) -> dict:
    """Carry out a due deletion request in one transaction (see the module docstring)."""
    req = (await conn.execute(select(DR).where(DR.c.id == request_pk).with_for_update())).one_or_none()
    if req is None:
        raise NotFound("No such deletion request / 注销申请不存在", field="id")
    if req.status != "SCHEDULED":
        raise Conflict("This request is not scheduled / 该申请不在待处理状态", code="NO_DELETION_PENDING", field="id")
    due = req.due_at if req.due_at.tzinfo else req.due_at.replace(tzinfo=UTC)
    if due > now:
        raise Conflict("The cooling-off period has not ended / 冷静期未结束", code="NOT_DUE", field="id")
    user_id = req.user_id
    points = settings.points
    # Redemptions made during the cooling-off period are cancelled (points and stock back) first.
    R = Redemption.__table__
    for (rid,) in (await conn.execute(
            select(R.c.id).where(R.c.member_user_id == user_id, R.c.status == redemptions.PENDING))).all():
        await redemptions.cancel(conn, user_id=user_id, is_admin=True, redemption_id=rid, now=now,
                                 lot_expiry_days=points.lot_expiry_days,
                                 refund_min_valid_days=settings.offers.refund_min_valid_days)
    account_id = await ledger.lock_member_account(conn, user_id)
    balance = (await conn.execute(select(Account.__table__.c.balance)
                                  .where(Account.__table__.c.id == account_id))).scalar_one()
    tx_id = None
    if balance > 0:
        if req.balance_choice == DONATE and settings.identity.donation_target in DONATION_TARGETS:
            target = await DONATION_TARGETS[settings.identity.donation_target](conn, user_id)
            memo = "account deleted: balance donated / 账户注销：余额捐赠"
        else:
            target = await ledger.platform_account_id(conn, ledger.EXPIRED_CODE)
            memo = "account deleted: balance expired / 账户注销：余额作废"
        posted = await ledger.post_transaction(
            conn, kind=ACCOUNT_DELETION, postings=[ledger.Posting(account_id, -balance), ledger.Posting(target, balance)],
            now=now, lot_expiry_days=points.lot_expiry_days, memo=memo, actor_user_id=actor_user_id,
        )
        tx_id = posted.id
    old = (await conn.execute(select(U.c.email, U.c.phone).where(U.c.id == user_id))).one()
    await conn.execute(update(U).where(U.c.id == user_id).values(
        email=None, phone=None, email_verified_at=None, phone_verified_at=None, display_name=DELETED_NAME,
        password_hash="!deleted", status="DELETED"))
    await tokens.revoke_user_refresh_tokens(conn, user_id, now=now, reason="account-deleted")
    await conn.execute(update(AS).where(AS.c.user_id == user_id).values(device_name="", address=""))
    AT = ApiToken.__table__
    await conn.execute(update(AT).where(AT.c.user_id == user_id, AT.c.revoked_at.is_(None)).values(revoked_at=now))
    LA = LoginAttempt.__table__
    await conn.execute(delete(LA).where(LA.c.identifier.in_([f"user:{user_id}", f"ok:user:{user_id}"])))
    destinations = [d for d in (old.email, old.phone) if d]
    await conn.execute(delete(VC).where(or_(VC.c.user_id == user_id, VC.c.destination.in_(destinations))))
    await conn.execute(update(DX).where(DX.c.user_id == user_id).values(archive=None))
    A = Action.__table__
    for r in (await conn.execute(select(A.c.id, A.c.evidence).where(A.c.user_id == user_id))).all():
        try:
            evidence = json.loads(r.evidence)
        except ValueError:
            evidence = {}
        if isinstance(evidence, dict) and evidence.get("attachments"):
            evidence["attachments"] = []
            await conn.execute(update(A).where(A.c.id == r.id).values(evidence=json.dumps(evidence)))
    await conn.execute(update(DR).where(DR.c.id == request_pk).values(
        status="COMPLETED", completed_at=now, points_disposed=max(balance, 0), ledger_transaction_id=tx_id))
    await audit.record(conn, actor_user_id=actor_user_id, action="privacy.deletion_completed",
                       target_type="DeletionRequest", target_id=request_pk,
                       details={"user_id": user_id, "balance_choice": req.balance_choice, "points": max(balance, 0),
                                "ledger_transaction_id": tx_id}, request_id=request_id, now=now)
    return dict((await conn.execute(select(DR).where(DR.c.id == request_pk))).one()._mapping)


async def due_deletion_ids(conn: AsyncConnection, now: datetime, limit: int = 100, after: int = 0) -> list[int]:
    rows = await conn.execute(select(DR.c.id).where(DR.c.status == "SCHEDULED", DR.c.due_at <= now, DR.c.id > after)
                              .order_by(DR.c.id).limit(limit))
    return [r.id for r in rows]


async def deletion_requests_page(conn: AsyncConnection, args: PageArgs, *, status: str | None) -> Page:
    stmt = select(DR)
    if status:
        stmt = stmt.where(DR.c.status == status)
    return await keyset_page(conn, stmt, [(DR.c.id, True)], args)


async def count_deletion_requests(conn: AsyncConnection, *, status: str | None) -> int:
    stmt = select(func.count()).select_from(DR)
    if status:
        stmt = stmt.where(DR.c.status == status)
    return (await conn.execute(stmt)).scalar_one()


async def deletion_requests_of_users(conn: AsyncConnection, user_ids: Sequence[int]) -> dict[int, dict]:
    """The newest deletion request per user."""
    out: dict[int, dict] = {}
    for r in await conn.execute(select(DR).where(DR.c.user_id.in_(list(user_ids))).order_by(DR.c.id)):
        out[r.user_id] = dict(r._mapping)
    return out


async def deletion_requests_by_ids(conn: AsyncConnection, ids: Sequence[int]) -> dict[int, dict]:
    return {r.id: dict(r._mapping) for r in await conn.execute(select(DR).where(DR.c.id.in_(list(ids))))}
