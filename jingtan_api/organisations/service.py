"""Social organisations (社会组织): creation by an admin or application and approval, bilingual profile,
organisation admins, invites, join requests, leaving and removal, closing, the organisation's points
account and donations to it (docs/community.md "Organisations"). Knows nothing about GraphQL.

Stable API for other domains (challenges, statistics, retirements); changes are additive only:

* :func:`member_intervals` — every stay of every member, ``[joined_at, left_at)`` (None while in).
* :func:`account_id` — the organisation's ORGANISATION ledger account (None until it is ACTIVE);
  :func:`lock_open_account` locks it for a debit and refuses a closed or unapproved organisation.
* :func:`is_admin`, :func:`is_member`, :func:`is_open`, :func:`organisation_row`,
  :func:`organisations_by_ids`, :func:`organisation_ids_of_user`, :func:`current_member_ids`.

Statuses: PENDING (applied) → ACTIVE (open) or REJECTED; ACTIVE → CLOSED (final: open stays end, no
donations, no new members; the account keeps its balance and history).

Lock order (PostgreSQL): member account rows first (``ledger.lock_member_account``), then the
organisation row (``SELECT … FOR UPDATE``), then membership rows, then the organisation's account (its
balance UPDATE in ``post_transaction``), then platform accounts.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import bindparam, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from jingtan_api import events, invite_codes
from jingtan_api.accounts import idempotency
from jingtan_api.accounts import service as ledger
from jingtan_api.audit import service as audit
from jingtan_api.db import Page, PageArgs, keyset_page
from jingtan_api.driver import DriverStatement
from jingtan_api.errors import Conflict, NotFound, PermissionDenied, ValidationFailed
from jingtan_api.organisations.models import (
    Organisation,
    OrganisationDonation,
    OrganisationInvite,
    OrganisationJoinRequest,
    OrganisationMember,
)

O = Organisation.__table__  # noqa: E741 - the table, as elsewhere (M, S, A, …)
OM = OrganisationMember.__table__
OI = OrganisationInvite.__table__
OR = OrganisationJoinRequest.__table__
OD = OrganisationDonation.__table__

KINDS = ("COMPANY", "SCHOOL", "COMMUNITY", "NGO", "GOVERNMENT")
COMPANY, SCHOOL, COMMUNITY, NGO, GOVERNMENT = KINDS
PENDING, ACTIVE, REJECTED, CLOSED = "PENDING", "ACTIVE", "REJECTED", "CLOSED"
ADMIN, MEMBER = "ADMIN", "MEMBER"
LEFT, REMOVED = "LEFT", "REMOVED"
CREATED, INVITE, REQUEST = "CREATED", "INVITE", "REQUEST"
REQUEST_PENDING, REQUEST_APPROVED, REQUEST_DECLINED, REQUEST_WITHDRAWN = "PENDING", "APPROVED", "DECLINED", "WITHDRAWN"

ORGANISATION_ACCOUNT = "ORGANISATION"
"""Ledger account kind of an organisation's points account (no lots)."""
DONATION = "DONATION"
"""Ledger transaction kind of a member's donation (member → organisation)."""

MAX_INVITE_USES = 1000
MAX_OPEN_INVITES = 50


@dataclass(frozen=True)
class MemberInterval:
    """One stay of a user in an organisation: ``[joined_at, left_at)``; ``left_at`` None while still in."""

    user_id: int
    role: str
    joined_at: datetime
    left_at: datetime | None

    def contains(self, moment: datetime) -> bool:
        return self.joined_at <= moment and (self.left_at is None or moment < self.left_at)


@dataclass(frozen=True)
class Actor:
    """Who acts on an organisation: the user and whether they are a platform admin."""

    user_id: int
    is_platform_admin: bool = False


# --- reads (the stable API) ----------------------------------------------------------------------------


async def member_intervals(conn: AsyncConnection, org_id: int) -> list[MemberInterval]:
    """Every stay of every member, oldest first (current members have ``left_at`` None)."""
    rows = await conn.execute(
        select(OM.c.user_id, OM.c.role, OM.c.joined_at, OM.c.left_at)
        .where(OM.c.organisation_id == org_id)
        .order_by(OM.c.joined_at, OM.c.id)
    )
    return [MemberInterval(r.user_id, r.role, r.joined_at, r.left_at) for r in rows]


async def organisation_row(conn: AsyncConnection, org_id: int) -> Any:
    """The organisation's row; NOT_FOUND (field ``organisationId``) when there is none."""
    row = (await conn.execute(select(O).where(O.c.id == org_id))).one_or_none()
    if row is None:
        raise NotFound("No such organisation / 组织不存在", field="organisationId")
    return row


async def organisations_by_ids(conn: AsyncConnection, ids: Sequence[int]) -> dict[int, dict]:
    rows = await conn.execute(select(O).where(O.c.id.in_(list(ids))))
    return {r.id: dict(r._mapping) for r in rows}


async def account_id(conn: AsyncConnection, org_id: int) -> int | None:
    """The organisation's ledger account (None until it is approved)."""
    return (await conn.execute(select(O.c.account_id).where(O.c.id == org_id))).scalar_one_or_none()


def is_open(row: Any) -> bool:
    """An organisation is open (takes members and donations, runs challenges) when ACTIVE."""
    return row.status == ACTIVE if hasattr(row, "status") else row["status"] == ACTIVE


async def role_of(conn: AsyncConnection, org_id: int, user_id: int) -> str | None:
    """The user's current role in the organisation (ADMIN, MEMBER) or None when not a member."""
    return (
        await conn.execute(select(OM.c.role).where(OM.c.active_organisation_id == org_id, OM.c.user_id == user_id))
    ).scalar_one_or_none()


async def is_member(conn: AsyncConnection, org_id: int, user_id: int) -> bool:
    """Whether the user is a current member (admins are members)."""
    return await role_of(conn, org_id, user_id) is not None


async def is_admin(conn: AsyncConnection, org_id: int, user_id: int) -> bool:
    """Whether the user is a current admin of the organisation."""
    return await role_of(conn, org_id, user_id) == ADMIN


async def roles_of_user(conn: AsyncConnection, user_id: int, org_ids: Sequence[int]) -> dict[int, str]:
    """{organisation_id: role} of the user's current stays among ``org_ids``."""
    rows = await conn.execute(
        select(OM.c.active_organisation_id, OM.c.role).where(
            OM.c.user_id == user_id, OM.c.active_organisation_id.in_(list(org_ids))
        )
    )
    return {r.active_organisation_id: r.role for r in rows}


async def organisation_ids_of_user(conn: AsyncConnection, user_id: int) -> list[int]:
    """The organisations the user is a current member of, by id."""
    rows = await conn.execute(
        select(OM.c.active_organisation_id).where(OM.c.user_id == user_id, OM.c.active_organisation_id.is_not(None))
        .order_by(OM.c.active_organisation_id)
    )
    return [r.active_organisation_id for r in rows]


async def organisation_ids_at(conn: AsyncConnection, user_id: int, moment: datetime) -> list[int]:
    """The organisations the user was a member of at ``moment`` (stays are ``[joined_at, left_at)``), by id.
    (Added for impact: an action counts for the organisations its member belonged to when submitting it.)"""
    rows = await _ORGANISATIONS_AT.all(conn, {"uid": user_id, "moment": moment})
    return sorted({r["organisation_id"] for r in rows})


_moment = bindparam("moment", type_=OM.c.joined_at.type)
_ORGANISATIONS_AT = DriverStatement(
    select(OM.c.organisation_id)
    .where(OM.c.user_id == bindparam("uid"), OM.c.joined_at <= _moment, (OM.c.left_at.is_(None)) | (OM.c.left_at > _moment))
    .order_by(OM.c.organisation_id))


async def current_member_ids(conn: AsyncConnection, org_id: int) -> list[int]:
    rows = await conn.execute(
        select(OM.c.user_id).where(OM.c.active_organisation_id == org_id).order_by(OM.c.joined_at, OM.c.id)
    )
    return [r.user_id for r in rows]


async def member_counts(conn: AsyncConnection, org_ids: Sequence[int]) -> dict[int, int]:
    rows = await conn.execute(
        select(OM.c.active_organisation_id, func.count().label("n"))
        .where(OM.c.active_organisation_id.in_(list(org_ids)))
        .group_by(OM.c.active_organisation_id)
    )
    return {r.active_organisation_id: int(r.n) for r in rows}


async def balances(conn: AsyncConnection, org_ids: Sequence[int]) -> dict[int, int]:
    A = ledger.A
    rows = await conn.execute(select(O.c.id, A.c.balance).join(A, A.c.id == O.c.account_id).where(O.c.id.in_(list(org_ids))))
    return {r.id: int(r.balance) for r in rows}


def _orgs_where(stmt: Any, *, status: str, kind: str | None, city: str | None) -> Any:
    stmt = stmt.where(O.c.status == status)
    if kind:
        stmt = stmt.where(O.c.kind == kind)
    if city:
        stmt = stmt.where(O.c.city == city)
    return stmt


async def organisations_page(conn: AsyncConnection, args: PageArgs, *, status: str, kind: str | None, city: str | None) -> Page:
    """Oldest first (ascending ids)."""
    return await keyset_page(conn, _orgs_where(select(O), status=status, kind=kind, city=city), [(O.c.id, False)], args)


async def organisations_count(conn: AsyncConnection, *, status: str, kind: str | None, city: str | None) -> int:
    stmt = _orgs_where(select(func.count()).select_from(O), status=status, kind=kind, city=city)
    return int((await conn.execute(stmt)).scalar_one())


async def members_page(conn: AsyncConnection, org_id: int, args: PageArgs, *, role: str | None = None) -> Page:
    """Current members, in order of joining (keys: membership row ids)."""
    stmt = select(OM).where(OM.c.active_organisation_id == org_id)
    if role:
        stmt = stmt.where(OM.c.role == role)
    return await keyset_page(conn, stmt, [(OM.c.id, False)], args)


async def members_count(conn: AsyncConnection, org_id: int, *, role: str | None = None) -> int:
    stmt = select(func.count()).select_from(OM).where(OM.c.active_organisation_id == org_id)
    if role:
        stmt = stmt.where(OM.c.role == role)
    return int((await conn.execute(stmt)).scalar_one())


async def join_requests_page(conn: AsyncConnection, org_id: int, args: PageArgs, *, status: str) -> Page:
    stmt = select(OR).where(OR.c.organisation_id == org_id, OR.c.status == status)
    return await keyset_page(conn, stmt, [(OR.c.id, False)], args)


async def join_requests_count(conn: AsyncConnection, org_id: int, *, status: str) -> int:
    stmt = select(func.count()).select_from(OR).where(OR.c.organisation_id == org_id, OR.c.status == status)
    return int((await conn.execute(stmt)).scalar_one())


async def join_requests_by_ids(conn: AsyncConnection, ids: Sequence[int]) -> dict[int, dict]:
    rows = await conn.execute(select(OR).where(OR.c.id.in_(list(ids))))
    return {r.id: dict(r._mapping) for r in rows}


async def donations_page(conn: AsyncConnection, org_id: int, args: PageArgs) -> Page:
    """Donations, newest first."""
    return await keyset_page(conn, select(OD).where(OD.c.organisation_id == org_id), [(OD.c.id, True)], args)


async def donations_count(conn: AsyncConnection, org_id: int) -> int:
    stmt = select(func.count()).select_from(OD).where(OD.c.organisation_id == org_id)
    return int((await conn.execute(stmt)).scalar_one())


async def donations_by_ids(conn: AsyncConnection, ids: Sequence[int]) -> dict[int, dict]:
    rows = await conn.execute(select(OD).where(OD.c.id.in_(list(ids))))
    return {r.id: dict(r._mapping) for r in rows}


async def invites_page(conn: AsyncConnection, org_id: int, args: PageArgs, *, now: datetime) -> Page:
    stmt = select(OI).where(
        OI.c.organisation_id == org_id, OI.c.revoked_at.is_(None), OI.c.expires_at > now, OI.c.uses < OI.c.max_uses
    )
    return await keyset_page(conn, stmt, [(OI.c.id, True)], args)


async def invites_count(conn: AsyncConnection, org_id: int, *, now: datetime) -> int:
    stmt = select(func.count()).select_from(OI).where(
        OI.c.organisation_id == org_id, OI.c.revoked_at.is_(None), OI.c.expires_at > now, OI.c.uses < OI.c.max_uses
    )
    return int((await conn.execute(stmt)).scalar_one())


# --- validation ------------------------------------------------------------------------------------


def _text(value: Any, field: str, *, max_len: int, required: bool = False, multiline: bool = False) -> str:
    if value is None:
        value = ""
    if not isinstance(value, str):
        raise ValidationFailed(f"{field} must be text / {field} 须为文本", field=field)
    value = value.strip() if multiline else " ".join(value.split())
    if required and not value:
        raise ValidationFailed(f"{field} is required / {field} 为必填项", field=field)
    if len(value) > max_len:
        raise ValidationFailed(f"{field} must have at most {max_len} characters / {field} 最多 {max_len} 个字符", field=field)
    if any(not (ch.isprintable() or (multiline and ch in "\n\t")) for ch in value):
        raise ValidationFailed(f"{field} contains control characters / {field} 含有控制字符", field=field)
    return value


PROFILE_FIELDS = ("kind", "name_zh", "name_en", "description_zh", "description_en", "city", "district", "website",
                  "registration_number")


def validate_profile(data: dict[str, Any], *, partial: bool = False) -> dict[str, Any]:
    """Organisation profile fields → column values; ``partial`` validates only the keys present."""
    out: dict[str, Any] = {}

    def has(key: str) -> bool:
        return not partial or key in data

    if has("kind"):
        if data.get("kind") not in KINDS:
            raise ValidationFailed("Unknown kind of organisation / 未知的组织类型", field="kind")
        out["kind"] = data["kind"]
    if has("name_zh"):
        out["name_zh"] = _text(data.get("name_zh"), "nameZh", max_len=100, required=True)
    if has("name_en"):
        out["name_en"] = _text(data.get("name_en"), "nameEn", max_len=100)
    if has("description_zh"):
        out["description_zh"] = _text(data.get("description_zh"), "descriptionZh", max_len=2000, multiline=True)
    if has("description_en"):
        out["description_en"] = _text(data.get("description_en"), "descriptionEn", max_len=2000, multiline=True)
    if has("city"):
        out["city"] = _text(data.get("city"), "city", max_len=64, required=True)
    if has("district"):
        out["district"] = _text(data.get("district"), "district", max_len=64)
    if has("website"):
        website = _text(data.get("website"), "website", max_len=200)
        if website:
            parts = urlsplit(website)
            if parts.scheme != "https" or not parts.netloc:
                raise ValidationFailed("The website must be an https URL / 网址须为 https 链接", code="INVALID_URL",
                                       field="website")
        out["website"] = website
    if has("registration_number"):
        reg = _text(data.get("registration_number"), "registrationNumber", max_len=32)
        if reg and not reg.replace("-", "").isalnum():
            raise ValidationFailed("The registration number has letters and digits only / 登记号只能包含字母和数字",
                                   field="registrationNumber")
        out["registration_number"] = reg.upper()
    return out


def validate_reason(reason: Any, *, required: bool = False) -> str:
    return audit.validate_reason(reason) if required or reason else ""


# --- authorisation helpers -------------------------------------------------------------------------


async def require_admin(conn: AsyncConnection, actor: Actor, org_id: int) -> None:
    """Organisation admins and platform admins manage an organisation."""
    if actor.is_platform_admin:
        return
    if not await is_admin(conn, org_id, actor.user_id):
        raise PermissionDenied("Only the organisation's admins can do this / 仅组织管理员可以操作")


async def can_see_members(conn: AsyncConnection, actor: Actor | None, org_id: int) -> bool:
    """Members of the organisation and platform admins see its member list; nobody else (a member of
    another organisation neither)."""
    if actor is None:
        return False
    return actor.is_platform_admin or await is_member(conn, org_id, actor.user_id)


async def _lock_org(conn: AsyncConnection, org_id: int) -> Any:
    row = (await conn.execute(select(O).where(O.c.id == org_id).with_for_update())).one_or_none()
    if row is None:
        raise NotFound("No such organisation / 组织不存在", field="organisationId")
    return row


def _not_open(row: Any) -> Conflict:
    if row.status == CLOSED:
        return Conflict("The organisation is closed / 该组织已关闭", code="ORGANISATION_CLOSED", field="organisationId")
    return Conflict("The organisation is not active / 该组织未启用", code="ORGANISATION_NOT_ACTIVE", field="organisationId")


async def lock_open_account(conn: AsyncConnection, org_id: int) -> int:
    """Lock the organisation's row and return its account id, refusing a closed or unapproved
    organisation (ORGANISATION_CLOSED / ORGANISATION_NOT_ACTIVE). For debits of the organisation's account
    (challenge rewards, retirements): call it after locking any member accounts of the same transaction."""
    row = await _lock_org(conn, org_id)
    if row.status != ACTIVE or row.account_id is None:
        raise _not_open(row)
    return int(row.account_id)


# --- writes: lifecycle -------------------------------------------------------------------------------


async def _open_account(conn: AsyncConnection, org_id: int) -> int:
    acc = await ledger.create_account(conn, kind=ORGANISATION_ACCOUNT, code=f"organisation:{org_id}")
    await conn.execute(update(O).where(O.c.id == org_id).values(account_id=acc))
    return acc


async def _add_member(
    conn: AsyncConnection, *, org_id: int, user_id: int, role: str, via: str, added_by: int | None, now: datetime
) -> None:
    if await role_of(conn, org_id, user_id) is not None:
        raise Conflict("Already a member of this organisation / 已是该组织成员", code="ALREADY_ORGANISATION_MEMBER",
                       field="userId")
    await conn.execute(
        insert(OM).values(organisation_id=org_id, user_id=user_id, active_organisation_id=org_id, role=role,
                          joined_at=now, joined_via=via, added_by_user_id=added_by)
    )
    await events.emit(conn, "organisation.member_joined", organisation_id=org_id, user_id=user_id, role=role, via=via)
    # A pending request of this user is settled by the join.
    await conn.execute(
        update(OR).where(OR.c.pending_organisation_id == org_id, OR.c.user_id == user_id)
        .values(status=REQUEST_APPROVED, pending_organisation_id=None, decided_at=now, decided_by_user_id=added_by)
    )


async def create_organisation(
    conn: AsyncConnection,
    *,
    actor_user_id: int,
    profile: dict[str, Any],
    admin_user_id: int | None,
    request_id: str | None,
    now: datetime,
) -> int:
    """Platform admin: an ACTIVE organisation with its account (and its first admin, if given)."""
    values = validate_profile(profile)
    if admin_user_id is not None:
        await ledger.lock_member_account(conn, admin_user_id)
    org_id = (
        await conn.execute(
            insert(O).values(**values, status=ACTIVE, applicant_user_id=None, created_at=now, reviewed_at=now,
                             reviewed_by_user_id=actor_user_id).returning(O.c.id)
        )
    ).scalar_one()
    account = await _open_account(conn, org_id)
    if admin_user_id is not None:
        await _add_member(conn, org_id=org_id, user_id=admin_user_id, role=ADMIN, via=CREATED, added_by=actor_user_id, now=now)
    await audit.record(
        conn, actor_user_id=actor_user_id, action="organisation.create", target_type="Organisation", target_id=org_id,
        details={"adminUserId": admin_user_id, "accountId": account, "kind": values["kind"], "nameZh": values["name_zh"]},
        request_id=request_id, now=now,
    )
    return org_id


async def apply_for_organisation(conn: AsyncConnection, *, user_id: int, profile: dict[str, Any], now: datetime) -> int:
    """A member applies to register an organisation (PENDING until a platform admin reviews it); one
    pending application per member."""
    values = validate_profile(profile)
    await ledger.lock_member_account(conn, user_id)
    pending = (
        await conn.execute(select(O.c.id).where(O.c.applicant_user_id == user_id, O.c.status == PENDING).limit(1))
    ).scalar_one_or_none()
    if pending is not None:
        raise Conflict("You already have a pending application / 您已有待审核的申请", code="APPLICATION_PENDING")
    org_id = (
        await conn.execute(insert(O).values(**values, status=PENDING, applicant_user_id=user_id, created_at=now).returning(O.c.id))
    ).scalar_one()
    await audit.record(conn, actor_user_id=user_id, action="organisation.apply", target_type="Organisation",
                       target_id=org_id, details={"kind": values["kind"], "nameZh": values["name_zh"]}, now=now)
    return org_id


async def review_application(
    conn: AsyncConnection, *, actor_user_id: int, org_id: int, approve: bool, reason: Any, request_id: str | None,
    now: datetime,
) -> None:
    """Platform admin approves (ACTIVE, account opened, applicant becomes its first admin) or rejects."""
    reason = audit.validate_reason(reason)
    row = await organisation_row(conn, org_id)
    if approve and row.applicant_user_id is not None:
        # Lock order: the member's account before the organisation row.
        await ledger.lock_member_account(conn, row.applicant_user_id)
    row = await _lock_org(conn, org_id)
    if row.status != PENDING:
        raise Conflict("This application was already reviewed / 该申请已审核", code="ALREADY_REVIEWED", field="organisationId")
    await conn.execute(
        update(O).where(O.c.id == org_id).values(status=ACTIVE if approve else REJECTED, reviewed_at=now,
                                                  reviewed_by_user_id=actor_user_id, review_reason=reason)
    )
    if approve:
        await _open_account(conn, org_id)
        if row.applicant_user_id is not None:
            await _add_member(conn, org_id=org_id, user_id=row.applicant_user_id, role=ADMIN, via=CREATED,
                              added_by=actor_user_id, now=now)
    await audit.record(
        conn, actor_user_id=actor_user_id, action="organisation.approve" if approve else "organisation.reject",
        target_type="Organisation", target_id=org_id, reason=reason, details={"applicantUserId": row.applicant_user_id},
        request_id=request_id, now=now,
    )


async def close_organisation(
    conn: AsyncConnection, *, actor: Actor, org_id: int, reason: Any, request_id: str | None, now: datetime
) -> None:
    """Close an ACTIVE organisation (its admins or a platform admin): open stays end (CLOSED), pending
    requests are declined, invites revoked; no donations or members any more. Its account keeps its
    balance (the platform decides what happens to it; docs/community.md)."""
    reason = audit.validate_reason(reason)
    row = await _lock_org(conn, org_id)
    await require_admin(conn, actor, org_id)
    if row.status != ACTIVE:
        raise _not_open(row)
    await conn.execute(update(O).where(O.c.id == org_id).values(status=CLOSED, closed_at=now))
    leaving = await current_member_ids(conn, org_id)
    await conn.execute(
        update(OM).where(OM.c.active_organisation_id == org_id).values(left_at=now, active_organisation_id=None, end_reason=CLOSED)
    )
    for user_id in leaving:
        await events.emit(conn, "organisation.member_left", organisation_id=org_id, user_id=user_id, reason=CLOSED)
    await conn.execute(
        update(OR).where(OR.c.pending_organisation_id == org_id)
        .values(status=REQUEST_DECLINED, pending_organisation_id=None, decided_at=now, decided_by_user_id=actor.user_id,
                decision_reason="organisation closed / 组织已关闭")
    )
    await conn.execute(update(OI).where(OI.c.organisation_id == org_id, OI.c.revoked_at.is_(None)).values(revoked_at=now))
    await events.emit(conn, "organisation.closed", organisation_id=org_id)
    await audit.record(conn, actor_user_id=actor.user_id, action="organisation.close", target_type="Organisation",
                       target_id=org_id, reason=reason, request_id=request_id, now=now)


async def update_profile(conn: AsyncConnection, *, actor: Actor, org_id: int, changes: dict[str, Any], now: datetime) -> None:
    """Change the profile (its admins or a platform admin; the kind only by a platform admin)."""
    row = await _lock_org(conn, org_id)
    await require_admin(conn, actor, org_id)
    if row.status not in (ACTIVE, PENDING):
        raise _not_open(row)
    if "kind" in changes and not actor.is_platform_admin:
        raise PermissionDenied("Only platform admins change an organisation's kind / 仅平台管理员可修改组织类型")
    values = validate_profile(changes, partial=True)
    if values:
        await conn.execute(update(O).where(O.c.id == org_id).values(**values))
        await audit.record(conn, actor_user_id=actor.user_id, action="organisation.update", target_type="Organisation",
                           target_id=org_id, details={"fields": sorted(values)}, now=now)


# --- writes: membership -----------------------------------------------------------------------------


async def create_invite(
    conn: AsyncConnection, *, actor: Actor, org_id: int, valid_for: timedelta, max_uses: Any, now: datetime
) -> tuple[int, str]:
    """An invite code for ``max_uses`` joins within ``valid_for`` (organisation admins). Returns (id, code);
    only the code's hash is stored."""
    if isinstance(max_uses, bool) or not isinstance(max_uses, int) or not 1 <= max_uses <= MAX_INVITE_USES:
        raise ValidationFailed(f"maxUses must be 1-{MAX_INVITE_USES} / 使用次数须为 1-{MAX_INVITE_USES}", field="maxUses")
    row = await _lock_org(conn, org_id)
    await require_admin(conn, actor, org_id)
    if row.status != ACTIVE:
        raise _not_open(row)
    if await invites_count(conn, org_id, now=now) >= MAX_OPEN_INVITES:
        raise Conflict(f"At most {MAX_OPEN_INVITES} open invites; revoke some first / 最多 {MAX_OPEN_INVITES} 个有效邀请",
                       code="TOO_MANY_INVITES")
    code = invite_codes.new_code()
    invite_id = (
        await conn.execute(
            insert(OI).values(organisation_id=org_id, code_hash=invite_codes.code_hash(code), created_by_user_id=actor.user_id,
                              created_at=now, expires_at=now + valid_for, max_uses=max_uses, uses=0).returning(OI.c.id)
        )
    ).scalar_one()
    return invite_id, code


async def revoke_invite(conn: AsyncConnection, *, actor: Actor, invite_id: int, now: datetime) -> int:
    org_id = (await conn.execute(select(OI.c.organisation_id).where(OI.c.id == invite_id))).scalar_one_or_none()
    if org_id is None:
        raise NotFound("No such invite / 邀请不存在", field="inviteId")
    await _lock_org(conn, org_id)
    await require_admin(conn, actor, org_id)
    done = await conn.execute(update(OI).where(OI.c.id == invite_id, OI.c.revoked_at.is_(None)).values(revoked_at=now))
    if done.rowcount != 1:
        raise Conflict("The invite was already revoked / 邀请已撤销", code="INVALID_INVITE", field="inviteId")
    return org_id


async def join_by_invite(conn: AsyncConnection, *, user_id: int, code: Any, now: datetime) -> int:
    """Join the organisation of an invite code (one use of it). Returns the organisation id."""
    digest = invite_codes.code_hash(code)
    await ledger.lock_member_account(conn, user_id)
    invite = (await conn.execute(select(OI).where(OI.c.code_hash == digest))).one_or_none()
    if invite is None or invite.revoked_at is not None:
        raise Conflict("Unknown or revoked invite code / 邀请码无效或已撤销", code="INVALID_INVITE", field="code")
    row = await _lock_org(conn, invite.organisation_id)
    if row.status != ACTIVE:
        raise _not_open(row)
    if await role_of(conn, invite.organisation_id, user_id) is not None:
        raise Conflict("Already a member of this organisation / 已是该组织成员", code="ALREADY_ORGANISATION_MEMBER", field="code")
    if invite.expires_at <= now:
        raise Conflict("This invite code has expired / 该邀请码已过期", code="INVITE_EXPIRED", field="code")
    used = await conn.execute(
        update(OI).where(OI.c.id == invite.id, OI.c.uses < OI.c.max_uses).values(uses=OI.c.uses + 1)
    )
    if used.rowcount != 1:
        raise Conflict("This invite code was used up / 该邀请码已用完", code="INVITE_USED", field="code")
    await _add_member(conn, org_id=invite.organisation_id, user_id=user_id, role=MEMBER, via=INVITE, added_by=None, now=now)
    await audit.record(conn, actor_user_id=user_id, action="organisation.join", target_type="Organisation",
                       target_id=invite.organisation_id, details={"inviteId": invite.id}, now=now)
    return int(invite.organisation_id)


async def request_to_join(conn: AsyncConnection, *, user_id: int, org_id: int, message: Any, now: datetime) -> int:
    """Ask to join (one pending request per member and organisation). Returns the request id."""
    message = _text(message, "message", max_len=500, multiline=True)
    await ledger.lock_member_account(conn, user_id)
    row = await _lock_org(conn, org_id)
    if row.status != ACTIVE:
        raise _not_open(row)
    if await role_of(conn, org_id, user_id) is not None:
        raise Conflict("Already a member of this organisation / 已是该组织成员", code="ALREADY_ORGANISATION_MEMBER",
                       field="organisationId")
    pending = (
        await conn.execute(select(OR.c.id).where(OR.c.pending_organisation_id == org_id, OR.c.user_id == user_id))
    ).scalar_one_or_none()
    if pending is not None:
        raise Conflict("You already asked to join; wait for the decision / 已提交申请，请等待审核",
                       code="JOIN_REQUEST_PENDING", field="organisationId")
    return (
        await conn.execute(
            insert(OR).values(organisation_id=org_id, user_id=user_id, pending_organisation_id=org_id, message=message,
                              status=REQUEST_PENDING, created_at=now).returning(OR.c.id)
        )
    ).scalar_one()


async def decide_join_request(
    conn: AsyncConnection, *, actor: Actor, request_id: int, approve: bool, reason: Any, now: datetime
) -> tuple[int, int]:
    """An organisation admin approves (the member joins) or declines a pending request. Returns
    (organisation id, user id)."""
    reason = _text(reason, "reason", max_len=500)
    req = (await conn.execute(select(OR).where(OR.c.id == request_id))).one_or_none()
    if req is None:
        raise NotFound("No such join request / 入会申请不存在", field="requestId")
    # Lock order: the member's account first, then the organisation.
    if approve:
        await ledger.lock_member_account(conn, req.user_id)
    row = await _lock_org(conn, req.organisation_id)
    await require_admin(conn, actor, req.organisation_id)
    if approve and row.status != ACTIVE:
        raise _not_open(row)
    done = await conn.execute(
        update(OR).where(OR.c.id == request_id, OR.c.status == REQUEST_PENDING)
        .values(status=REQUEST_APPROVED if approve else REQUEST_DECLINED, pending_organisation_id=None, decided_at=now,
                decided_by_user_id=actor.user_id, decision_reason=reason)
    )
    if done.rowcount != 1:
        raise Conflict("This request was already decided / 该申请已处理", code="ALREADY_REVIEWED", field="requestId")
    if approve:
        await _add_member(conn, org_id=req.organisation_id, user_id=req.user_id, role=MEMBER, via=REQUEST,
                          added_by=actor.user_id, now=now)
    await audit.record(conn, actor_user_id=actor.user_id,
                       action="organisation.approve_member" if approve else "organisation.decline_member",
                       target_type="Organisation", target_id=req.organisation_id, reason=reason,
                       details={"userId": req.user_id, "requestId": request_id}, now=now)
    return int(req.organisation_id), int(req.user_id)


async def withdraw_join_request(conn: AsyncConnection, *, user_id: int, request_id: int, now: datetime) -> int:
    done = await conn.execute(
        update(OR).where(OR.c.id == request_id, OR.c.user_id == user_id, OR.c.status == REQUEST_PENDING)
        .values(status=REQUEST_WITHDRAWN, pending_organisation_id=None, decided_at=now)
        .returning(OR.c.organisation_id)
    )
    org_id = done.scalar_one_or_none()
    if org_id is None:
        raise NotFound("No pending request of yours with this id / 没有该待处理申请", field="requestId")
    return int(org_id)


async def _admin_count(conn: AsyncConnection, org_id: int) -> int:
    return await members_count(conn, org_id, role=ADMIN)


async def _end_stay(conn: AsyncConnection, org_id: int, user_id: int, reason: str, now: datetime) -> None:
    done = await conn.execute(
        update(OM).where(OM.c.active_organisation_id == org_id, OM.c.user_id == user_id)
        .values(left_at=now, active_organisation_id=None, end_reason=reason)
    )
    if done.rowcount != 1:
        raise Conflict("Not a member of this organisation / 不是该组织成员", code="NOT_ORGANISATION_MEMBER", field="userId")
    await events.emit(conn, "organisation.member_left", organisation_id=org_id, user_id=user_id, reason=reason)


async def leave_organisation(conn: AsyncConnection, *, user_id: int, org_id: int, now: datetime) -> None:
    """Leave an organisation; its last admin cannot (LAST_ADMIN: appoint another admin first)."""
    await _lock_org(conn, org_id)
    role = await role_of(conn, org_id, user_id)
    if role is None:
        raise Conflict("You are not a member of this organisation / 您不是该组织成员", code="NOT_ORGANISATION_MEMBER",
                       field="organisationId")
    if role == ADMIN and await _admin_count(conn, org_id) == 1:
        raise Conflict("Appoint another admin before leaving / 请先任命其他管理员再退出", code="LAST_ADMIN",
                       field="organisationId")
    await _end_stay(conn, org_id, user_id, LEFT, now)
    await audit.record(conn, actor_user_id=user_id, action="organisation.leave", target_type="Organisation",
                       target_id=org_id, now=now)


async def remove_member(conn: AsyncConnection, *, actor: Actor, org_id: int, user_id: int, reason: Any, now: datetime) -> None:
    """An organisation admin (or platform admin) removes a member; never the last admin (LAST_ADMIN)."""
    reason = _text(reason, "reason", max_len=500)
    await _lock_org(conn, org_id)
    await require_admin(conn, actor, org_id)
    role = await role_of(conn, org_id, user_id)
    if role is None:
        raise Conflict("Not a member of this organisation / 不是该组织成员", code="NOT_ORGANISATION_MEMBER", field="userId")
    if role == ADMIN and await _admin_count(conn, org_id) == 1:
        raise Conflict("The last admin cannot be removed / 不能移除最后一位管理员", code="LAST_ADMIN", field="userId")
    await _end_stay(conn, org_id, user_id, REMOVED, now)
    await audit.record(conn, actor_user_id=actor.user_id, action="organisation.remove_member", target_type="Organisation",
                       target_id=org_id, reason=reason, details={"userId": user_id}, now=now)


async def set_member_role(conn: AsyncConnection, *, actor: Actor, org_id: int, user_id: int, role: str, now: datetime) -> None:
    """Appoint (ADMIN) or step down (MEMBER) an organisation admin; never leave it without an admin."""
    if role not in (ADMIN, MEMBER):
        raise ValidationFailed("Unknown role / 未知角色", field="role")
    row = await _lock_org(conn, org_id)
    await require_admin(conn, actor, org_id)
    if row.status != ACTIVE:
        raise _not_open(row)
    current = await role_of(conn, org_id, user_id)
    if current is None:
        raise Conflict("Not a member of this organisation / 不是该组织成员", code="NOT_ORGANISATION_MEMBER", field="userId")
    if current == role:
        return
    if current == ADMIN and await _admin_count(conn, org_id) == 1:
        raise Conflict("The organisation needs at least one admin / 组织至少需要一位管理员", code="LAST_ADMIN", field="userId")
    await conn.execute(update(OM).where(OM.c.active_organisation_id == org_id, OM.c.user_id == user_id).values(role=role))
    await audit.record(conn, actor_user_id=actor.user_id, action="organisation.set_role", target_type="Organisation",
                       target_id=org_id, details={"userId": user_id, "role": role}, now=now)


# --- writes: donations -------------------------------------------------------------------------------


@dataclass(frozen=True)
class DonationResult:
    donation_id: int
    organisation_id: int
    replayed: bool


async def donate(
    conn: AsyncConnection,
    *,
    user_id: int,
    org_id: int,
    points: Any,
    idempotency_key: Any,
    max_amount: int,
    lot_expiry_days: int,
    now: datetime,
) -> DonationResult:
    """A member gives points to an open organisation: one DONATION transaction member → organisation,
    idempotent per member and key; never more than the member holds (INSUFFICIENT_POINTS, after their
    expired lots are swept), never to a closed or unapproved organisation."""
    points = ledger.validate_amount(points, max_amount=max_amount, field="points")
    key = idempotency.validate_key(idempotency_key)
    claim = await idempotency.claim(
        conn, f"donate:{user_id}", key, idempotency.request_hash({"organisationId": org_id, "points": points})
    )
    if claim.is_replay:
        return DonationResult(int(claim.result_id or 0), org_id, True)
    member_account = await ledger.lock_member_account(conn, user_id)
    org_account = await lock_open_account(conn, org_id)
    await ledger.expire_account_lots(conn, member_account, now=now, lot_expiry_days=lot_expiry_days)
    tx = await ledger.post_transaction(
        conn, kind=DONATION,
        postings=[ledger.Posting(member_account, -points), ledger.Posting(org_account, points)],
        now=now, lot_expiry_days=lot_expiry_days, memo=f"donation to organisation #{org_id} / 捐赠积分",
        actor_user_id=user_id,
    )
    donation_id = (
        await conn.execute(
            insert(OD).values(organisation_id=org_id, user_id=user_id, points=points, transaction_id=tx.id,
                              created_at=now).returning(OD.c.id)
        )
    ).scalar_one()
    await idempotency.complete(conn, claim, "OrganisationDonation", donation_id)
    await events.emit(conn, "organisation.donation", donation_id=donation_id, organisation_id=org_id, user_id=user_id,
                      points=points, transaction_id=tx.id)
    return DonationResult(donation_id, org_id, False)
