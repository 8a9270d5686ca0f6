"""Households (家庭): rules of creating, inviting, joining, leaving, removing, transferring ownership, and
the optional shared points pool (docs/community.md "Households"). Knows nothing about GraphQL.

Stable API for other domains (statistics, challenges, action plugins' scope); changes are additive only:

* :func:`member_intervals` — every stay of every member, ``[joined_at, left_at)`` (``left_at`` None while
  in): "impact while they were members" is the member's approved actions inside their intervals.
* :func:`household_of` / :func:`household_at` — the household a user is in now / was in at a moment.
* :func:`is_member`, :func:`is_owner`, :func:`current_member_ids`, :func:`household_row`,
  :func:`households_by_ids`, :func:`pool_account_id`.

Rules: one household per member (a unique column, ``active_user_id``, decides concurrent joins); an
invite is single-use and expires; the owner cannot leave while others remain (transfer first) and cannot
be removed; the last member leaving dissolves the household.

Lock order (PostgreSQL): the acting member's account row (``ledger.lock_member_account``) first, then the
household row (``SELECT … FOR UPDATE``), then membership rows; the pool account after the member's account
(see docs/ledger.md). SQLite write transactions are serialised by BEGIN IMMEDIATE.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from jingtan_api import events, invite_codes
from jingtan_api.accounts import idempotency
from jingtan_api.accounts import service as ledger
from jingtan_api.audit import service as audit
from jingtan_api.db import Page, PageArgs, keyset_page
from jingtan_api.driver import DriverStatement
from jingtan_api.errors import Conflict, NotFound, PermissionDenied, ValidationFailed
from jingtan_api.households.models import Household, HouseholdInvite, HouseholdMember, HouseholdPoolTransfer

H = Household.__table__
HM = HouseholdMember.__table__
HI = HouseholdInvite.__table__
HP = HouseholdPoolTransfer.__table__

ACTIVE, DISSOLVED = "ACTIVE", "DISSOLVED"
OWNER, MEMBER = "OWNER", "MEMBER"
LEFT, REMOVED = "LEFT", "REMOVED"
TO_POOL, FROM_POOL = "TO_POOL", "FROM_POOL"

HOUSEHOLD_ACCOUNT = "HOUSEHOLD"
"""Ledger account kind of a household's shared pool (no lots: lots belong to member accounts)."""
POOL_TRANSFER = "HOUSEHOLD_POOL_TRANSFER"
"""Ledger transaction kind of moves between a member's account and the pool."""

MAX_MEMBERS = 20
MAX_OPEN_INVITES = 20


@dataclass(frozen=True)
class MemberInterval:
    """One stay of a user in a household: ``[joined_at, left_at)``; ``left_at`` None while still in."""

    user_id: int
    role: str
    joined_at: datetime
    left_at: datetime | None

    def contains(self, moment: datetime) -> bool:
        return self.joined_at <= moment and (self.left_at is None or moment < self.left_at)


# --- reads (the stable API) ----------------------------------------------------------------------------


async def member_intervals(conn: AsyncConnection, household_id: int) -> list[MemberInterval]:
    """Every stay of every member of the household, oldest first (current members have ``left_at`` None).
    ``role`` is the role at the end of the stay (or now)."""
    rows = await conn.execute(
        select(HM.c.user_id, HM.c.role, HM.c.joined_at, HM.c.left_at)
        .where(HM.c.household_id == household_id)
        .order_by(HM.c.joined_at, HM.c.id)
    )
    return [MemberInterval(r.user_id, r.role, r.joined_at, r.left_at) for r in rows]


_HOUSEHOLD_OF = DriverStatement(select(HM.c.household_id).where(HM.c.active_user_id == bindparam("uid")))


def household_of_expression(user_id: Any) -> Any:
    """The household the user ``user_id`` (a bind parameter or column) is in now, as a scalar subquery
    (NULL: none) — for callers that fold this lookup into a statement of their own."""
    return select(HM.c.household_id).where(HM.c.active_user_id == user_id).scalar_subquery()


async def household_of(conn: AsyncConnection, user_id: int) -> int | None:
    """The household the user is in now (None: none)."""
    rows = await _HOUSEHOLD_OF.all(conn, {"uid": user_id})
    return rows[0]["household_id"] if rows else None


async def households_of_users(conn: AsyncConnection, user_ids: Sequence[int]) -> dict[int, int]:
    """{user_id: household_id} for those of ``user_ids`` who are in a household now."""
    rows = await conn.execute(select(HM.c.active_user_id, HM.c.household_id).where(HM.c.active_user_id.in_(list(user_ids))))
    return {r.active_user_id: r.household_id for r in rows}


async def household_at(conn: AsyncConnection, user_id: int, moment: datetime) -> int | None:
    """The household the user was in at ``moment`` (stays are ``[joined_at, left_at)``)."""
    return (
        await conn.execute(
            select(HM.c.household_id)
            .where(
                HM.c.user_id == user_id,
                HM.c.joined_at <= moment,
                (HM.c.left_at.is_(None)) | (HM.c.left_at > moment),
            )
            .limit(1)
        )
    ).scalar_one_or_none()


async def is_member(conn: AsyncConnection, household_id: int, user_id: int) -> bool:
    """Whether the user is in this household now."""
    return await household_of(conn, user_id) == household_id


async def is_owner(conn: AsyncConnection, household_id: int, user_id: int) -> bool:
    row = await conn.execute(
        select(HM.c.role).where(HM.c.active_user_id == user_id, HM.c.household_id == household_id)
    )
    return row.scalar_one_or_none() == OWNER


async def current_member_ids(conn: AsyncConnection, household_id: int) -> list[int]:
    rows = await conn.execute(
        select(HM.c.user_id).where(HM.c.household_id == household_id, HM.c.left_at.is_(None)).order_by(HM.c.joined_at, HM.c.id)
    )
    return [r.user_id for r in rows]


async def household_row(conn: AsyncConnection, household_id: int) -> Any:
    """The household's row; NOT_FOUND (field ``householdId``) when there is none."""
    row = (await conn.execute(select(H).where(H.c.id == household_id))).one_or_none()
    if row is None:
        raise NotFound("No such household / 家庭不存在", field="householdId")
    return row


async def households_by_ids(conn: AsyncConnection, ids: Sequence[int]) -> dict[int, dict]:
    rows = await conn.execute(select(H).where(H.c.id.in_(list(ids))))
    return {r.id: dict(r._mapping) for r in rows}


async def pool_account_id(conn: AsyncConnection, household_id: int) -> int | None:
    """The household pool's ledger account (None until the pool is opened)."""
    return (await conn.execute(select(H.c.pool_account_id).where(H.c.id == household_id))).scalar_one_or_none()


async def member_counts(conn: AsyncConnection, household_ids: Sequence[int]) -> dict[int, int]:
    rows = await conn.execute(
        select(HM.c.household_id, func.count().label("n"))
        .where(HM.c.household_id.in_(list(household_ids)), HM.c.left_at.is_(None))
        .group_by(HM.c.household_id)
    )
    return {r.household_id: int(r.n) for r in rows}


async def members_page(conn: AsyncConnection, household_id: int, args: PageArgs, *, current_only: bool = True) -> Page:
    """Stays of the household's members, oldest first (keys: membership row ids)."""
    stmt = select(HM).where(HM.c.household_id == household_id)
    if current_only:
        stmt = stmt.where(HM.c.left_at.is_(None))
    return await keyset_page(conn, stmt, [(HM.c.id, False)], args)


async def members_count(conn: AsyncConnection, household_id: int, *, current_only: bool = True) -> int:
    stmt = select(func.count()).select_from(HM).where(HM.c.household_id == household_id)
    if current_only:
        stmt = stmt.where(HM.c.left_at.is_(None))
    return int((await conn.execute(stmt)).scalar_one())


async def invites_page(conn: AsyncConnection, household_id: int, args: PageArgs, *, now: datetime) -> Page:
    """Invites that can still be used (not used, revoked or expired), newest first."""
    stmt = select(HI).where(
        HI.c.household_id == household_id, HI.c.used_at.is_(None), HI.c.revoked_at.is_(None), HI.c.expires_at > now
    )
    return await keyset_page(conn, stmt, [(HI.c.id, True)], args)


async def invites_count(conn: AsyncConnection, household_id: int, *, now: datetime) -> int:
    stmt = select(func.count()).select_from(HI).where(
        HI.c.household_id == household_id, HI.c.used_at.is_(None), HI.c.revoked_at.is_(None), HI.c.expires_at > now
    )
    return int((await conn.execute(stmt)).scalar_one())


async def pool_transfers_page(conn: AsyncConnection, household_id: int, args: PageArgs) -> Page:
    return await keyset_page(conn, select(HP).where(HP.c.household_id == household_id), [(HP.c.id, True)], args)


async def pool_transfers_by_ids(conn: AsyncConnection, ids: Sequence[int]) -> dict[int, dict]:
    rows = await conn.execute(select(HP).where(HP.c.id.in_(list(ids))))
    return {r.id: dict(r._mapping) for r in rows}


async def pool_transfers_count(conn: AsyncConnection, household_id: int) -> int:
    stmt = select(func.count()).select_from(HP).where(HP.c.household_id == household_id)
    return int((await conn.execute(stmt)).scalar_one())


# --- validation ------------------------------------------------------------------------------------


def validate_name(name: Any) -> str:
    if not isinstance(name, str):
        raise ValidationFailed("The name must be text / 名称须为文本", field="name")
    name = " ".join(name.split())
    if not 1 <= len(name) <= 60:
        raise ValidationFailed("The name must have 1-60 characters / 名称须为 1-60 个字符", field="name")
    if not name.isprintable():
        raise ValidationFailed("The name contains control characters / 名称含有控制字符", field="name")
    return name


def validate_ttl(hours: Any, *, max_hours: int) -> timedelta:
    if isinstance(hours, bool) or not isinstance(hours, int) or not 1 <= hours <= max_hours:
        raise ValidationFailed(
            f"An invite is valid for 1 to {max_hours} hours / 邀请有效期须为 1 到 {max_hours} 小时", field="validForHours"
        )
    return timedelta(hours=hours)


# --- writes ----------------------------------------------------------------------------------------


async def lock_household(conn: AsyncConnection, household_id: int) -> Any:
    """Lock the household's row (``SELECT … FOR UPDATE``; a no-op lock on SQLite, whose writers are
    serialised) and return it: serialises what a household's members do together (household-wide caps).
    Take it after the member's account row (lock order, module docstring)."""
    return await _lock_household(conn, household_id)


async def _lock_household(conn: AsyncConnection, household_id: int) -> Any:
    row = (await conn.execute(select(H).where(H.c.id == household_id).with_for_update())).one_or_none()
    if row is None:
        raise NotFound("No such household / 家庭不存在", field="householdId")
    return row


async def _open_stay(conn: AsyncConnection, user_id: int) -> Any:
    return (await conn.execute(select(HM).where(HM.c.active_user_id == user_id))).one_or_none()


def _already_in_household() -> Conflict:
    return Conflict(
        "You already belong to a household; leave it first / 您已加入一个家庭，请先退出",
        code="ALREADY_IN_HOUSEHOLD",
    )


async def create_household(conn: AsyncConnection, *, user_id: int, name: Any, now: datetime) -> int:
    """A new household owned by ``user_id``, who must not be in one."""
    name = validate_name(name)
    await ledger.lock_member_account(conn, user_id)
    if await _open_stay(conn, user_id) is not None:
        raise _already_in_household()
    household_id = (
        await conn.execute(
            insert(H)
            .values(name=name, status=ACTIVE, owner_user_id=user_id, created_by_user_id=user_id, created_at=now)
            .returning(H.c.id)
        )
    ).scalar_one()
    await conn.execute(
        insert(HM).values(household_id=household_id, user_id=user_id, active_user_id=user_id, role=OWNER, joined_at=now)
    )
    await audit.record(conn, actor_user_id=user_id, action="household.create", target_type="Household",
                       target_id=household_id, details={"name": name}, now=now)
    await events.emit(conn, "household.member_joined", household_id=household_id, user_id=user_id, role=OWNER)
    return household_id


async def _require_owner(conn: AsyncConnection, household_id: int, user_id: int) -> None:
    if not await is_owner(conn, household_id, user_id):
        raise PermissionDenied("Only the household's owner can do this / 仅家庭户主可以操作")


async def rename_household(conn: AsyncConnection, *, actor_user_id: int, household_id: int, name: Any, now: datetime) -> None:
    name = validate_name(name)
    await _lock_household(conn, household_id)
    await _require_owner(conn, household_id, actor_user_id)
    await conn.execute(update(H).where(H.c.id == household_id).values(name=name))


async def create_invite(
    conn: AsyncConnection, *, actor_user_id: int, household_id: int, valid_for: timedelta, now: datetime
) -> tuple[int, str]:
    """A single-use invite code valid for ``valid_for`` (owner only). Returns (invite id, code); the code is
    not stored and cannot be shown again."""
    row = await _lock_household(conn, household_id)
    await _require_owner(conn, household_id, actor_user_id)
    if row.status != ACTIVE:
        raise Conflict("The household is dissolved / 家庭已解散", code="HOUSEHOLD_DISSOLVED", field="householdId")
    if await invites_count(conn, household_id, now=now) >= MAX_OPEN_INVITES:
        raise Conflict(
            f"At most {MAX_OPEN_INVITES} open invites; revoke some first / 最多 {MAX_OPEN_INVITES} 个有效邀请",
            code="TOO_MANY_INVITES",
        )
    code = invite_codes.new_code()
    invite_id = (
        await conn.execute(
            insert(HI)
            .values(household_id=household_id, code_hash=invite_codes.code_hash(code), created_by_user_id=actor_user_id,
                    created_at=now, expires_at=now + valid_for)
            .returning(HI.c.id)
        )
    ).scalar_one()
    return invite_id, code


async def revoke_invite(conn: AsyncConnection, *, actor_user_id: int, invite_id: int, now: datetime) -> int:
    """Revoke an unused invite (owner only); returns the household id."""
    household_id = (await conn.execute(select(HI.c.household_id).where(HI.c.id == invite_id))).scalar_one_or_none()
    if household_id is None:
        raise NotFound("No such invite / 邀请不存在", field="inviteId")
    await _lock_household(conn, household_id)
    await _require_owner(conn, household_id, actor_user_id)
    done = await conn.execute(
        update(HI).where(HI.c.id == invite_id, HI.c.used_at.is_(None), HI.c.revoked_at.is_(None)).values(revoked_at=now)
    )
    if done.rowcount != 1:
        raise Conflict("The invite was already used or revoked / 邀请已使用或已撤销", code="INVITE_USED", field="inviteId")
    return household_id


async def join_by_invite(conn: AsyncConnection, *, user_id: int, code: Any, now: datetime) -> int:
    """Join the household of an invite code; the code is used up. Returns the household id.

    Refused: a malformed code (INVALID_INVITE), an unknown or revoked one (INVALID_INVITE), an expired one
    (INVITE_EXPIRED), a used one (INVITE_USED), a member already in a household (ALREADY_IN_HOUSEHOLD),
    a full household (HOUSEHOLD_FULL)."""
    digest = invite_codes.code_hash(code)
    await ledger.lock_member_account(conn, user_id)
    invite = (await conn.execute(select(HI).where(HI.c.code_hash == digest))).one_or_none()
    if invite is None or invite.revoked_at is not None:
        raise Conflict("Unknown or revoked invite code / 邀请码无效或已撤销", code="INVALID_INVITE", field="code")
    household = await _lock_household(conn, invite.household_id)
    stay = await _open_stay(conn, user_id)
    if stay is not None:
        raise _already_in_household()
    if invite.used_at is not None:
        raise Conflict("This invite code was already used / 该邀请码已被使用", code="INVITE_USED", field="code")
    if invite.expires_at <= now:
        raise Conflict("This invite code has expired / 该邀请码已过期", code="INVITE_EXPIRED", field="code")
    if household.status != ACTIVE:
        raise Conflict("The household is dissolved / 家庭已解散", code="HOUSEHOLD_DISSOLVED", field="code")
    if await members_count(conn, invite.household_id) >= MAX_MEMBERS:
        raise Conflict(f"A household has at most {MAX_MEMBERS} members / 家庭成员已满", code="HOUSEHOLD_FULL", field="code")
    used = await conn.execute(
        update(HI).where(HI.c.id == invite.id, HI.c.used_at.is_(None)).values(used_at=now, used_by_user_id=user_id)
    )
    if used.rowcount != 1:
        raise Conflict("This invite code was already used / 该邀请码已被使用", code="INVITE_USED", field="code")
    await conn.execute(
        insert(HM).values(household_id=invite.household_id, user_id=user_id, active_user_id=user_id, role=MEMBER,
                          joined_at=now, invite_id=invite.id)
    )
    await audit.record(conn, actor_user_id=user_id, action="household.join", target_type="Household",
                       target_id=invite.household_id, details={"inviteId": invite.id}, now=now)
    await events.emit(conn, "household.member_joined", household_id=invite.household_id, user_id=user_id, role=MEMBER)
    return invite.household_id


async def _end_stay(conn: AsyncConnection, household_id: int, user_id: int, reason: str, now: datetime) -> None:
    done = await conn.execute(
        update(HM)
        .where(HM.c.household_id == household_id, HM.c.active_user_id == user_id)
        .values(left_at=now, active_user_id=None, end_reason=reason)
    )
    if done.rowcount != 1:
        raise Conflict("Not a member of this household / 不是该家庭成员", code="NOT_HOUSEHOLD_MEMBER", field="userId")
    await events.emit(conn, "household.member_left", household_id=household_id, user_id=user_id, reason=reason)


async def leave_household(conn: AsyncConnection, *, user_id: int, now: datetime) -> int:
    """Leave one's household. The owner may leave only as its last member (the household is then
    dissolved and its open invites revoked); otherwise OWNER_MUST_TRANSFER. Returns the household id."""
    await ledger.lock_member_account(conn, user_id)
    stay = await _open_stay(conn, user_id)
    if stay is None:
        raise Conflict("You are not in a household / 您未加入家庭", code="NOT_HOUSEHOLD_MEMBER")
    household_id = stay.household_id
    await _lock_household(conn, household_id)
    stay = await _open_stay(conn, user_id)  # re-read under the household lock
    if stay is None or stay.household_id != household_id:
        raise Conflict("You are not in a household / 您未加入家庭", code="NOT_HOUSEHOLD_MEMBER")
    others = [u for u in await current_member_ids(conn, household_id) if u != user_id]
    if stay.role == OWNER and others:
        raise Conflict(
            "Transfer ownership to another member before leaving / 户主须先转让家庭后才能退出",
            code="OWNER_MUST_TRANSFER",
        )
    if not others:
        pool = await pool_account_id(conn, household_id)
        if pool is not None and (await ledger.accounts_by_ids(conn, [pool]))[pool]["balance"] > 0:
            raise Conflict(
                "Spend or withdraw the household pool's points before dissolving / 请先用完或取回家庭积分池",
                code="POOL_NOT_EMPTY",
            )
    await _end_stay(conn, household_id, user_id, LEFT, now)
    if not others:
        await conn.execute(update(H).where(H.c.id == household_id).values(status=DISSOLVED, dissolved_at=now, owner_user_id=None))
        await conn.execute(
            update(HI).where(HI.c.household_id == household_id, HI.c.used_at.is_(None), HI.c.revoked_at.is_(None))
            .values(revoked_at=now)
        )
    await audit.record(conn, actor_user_id=user_id, action="household.leave", target_type="Household",
                       target_id=household_id, details={"dissolved": not others}, now=now)
    return household_id


async def remove_member(
    conn: AsyncConnection, *, actor_user_id: int, household_id: int, user_id: int, now: datetime
) -> None:
    """The owner removes another member (never the owner: CANNOT_REMOVE_OWNER)."""
    await _lock_household(conn, household_id)
    await _require_owner(conn, household_id, actor_user_id)
    if user_id == actor_user_id:
        raise Conflict(
            "The owner cannot be removed; transfer ownership or leave / 不能移除户主", code="CANNOT_REMOVE_OWNER",
            field="userId",
        )
    await _end_stay(conn, household_id, user_id, REMOVED, now)
    await audit.record(conn, actor_user_id=actor_user_id, action="household.remove_member", target_type="Household",
                       target_id=household_id, details={"userId": user_id}, now=now)


async def transfer_ownership(
    conn: AsyncConnection, *, actor_user_id: int, household_id: int, new_owner_user_id: int, now: datetime
) -> None:
    """The owner hands the household to another current member."""
    await _lock_household(conn, household_id)
    await _require_owner(conn, household_id, actor_user_id)
    if new_owner_user_id == actor_user_id:
        raise ValidationFailed("You already own this household / 您已是户主", field="userId")
    if not await is_member(conn, household_id, new_owner_user_id):
        raise Conflict("The new owner must be a member of the household / 新户主须为家庭成员",
                       code="NOT_HOUSEHOLD_MEMBER", field="userId")
    await conn.execute(update(HM).where(HM.c.active_user_id == actor_user_id).values(role=MEMBER))
    await conn.execute(update(HM).where(HM.c.active_user_id == new_owner_user_id).values(role=OWNER))
    await conn.execute(update(H).where(H.c.id == household_id).values(owner_user_id=new_owner_user_id))
    await audit.record(conn, actor_user_id=actor_user_id, action="household.transfer_ownership",
                       target_type="Household", target_id=household_id, details={"newOwnerUserId": new_owner_user_id},
                       now=now)


# --- the shared points pool ------------------------------------------------------------------------


async def open_pool(conn: AsyncConnection, *, actor_user_id: int, household_id: int, now: datetime) -> int:
    """Open the household's shared points pool (owner only; once). Returns its account id."""
    row = await _lock_household(conn, household_id)
    await _require_owner(conn, household_id, actor_user_id)
    if row.pool_account_id is not None:
        raise Conflict("The household pool is already open / 家庭积分池已开通", code="POOL_ALREADY_OPEN")
    account_id = await ledger.create_account(conn, kind=HOUSEHOLD_ACCOUNT, code=f"household:{household_id}")
    await conn.execute(update(H).where(H.c.id == household_id).values(pool_account_id=account_id))
    await audit.record(conn, actor_user_id=actor_user_id, action="household.open_pool", target_type="Household",
                       target_id=household_id, details={"accountId": account_id}, now=now)
    return account_id


@dataclass(frozen=True)
class PoolTransferResult:
    transfer_id: int
    household_id: int
    replayed: bool


async def transfer_to_pool(
    conn: AsyncConnection,
    *,
    user_id: int,
    points: Any,
    idempotency_key: Any,
    max_amount: int,
    lot_expiry_days: int,
    now: datetime,
) -> PoolTransferResult:
    """A member moves points from their account to their household's pool (idempotent per member and key;
    never more than they hold: INSUFFICIENT_POINTS)."""
    points = ledger.validate_amount(points, max_amount=max_amount, field="points")
    key = idempotency.validate_key(idempotency_key)
    claim = await idempotency.claim(
        conn, f"householdPool:{user_id}", key, idempotency.request_hash({"op": TO_POOL, "points": points})
    )
    if claim.is_replay:
        row = (await conn.execute(select(HP.c.household_id).where(HP.c.id == claim.result_id))).scalar_one()
        return PoolTransferResult(int(claim.result_id or 0), row, True)
    member_account = await ledger.lock_member_account(conn, user_id)
    stay = await _open_stay(conn, user_id)
    if stay is None:
        raise Conflict("You are not in a household / 您未加入家庭", code="NOT_HOUSEHOLD_MEMBER")
    pool = await pool_account_id(conn, stay.household_id)
    if pool is None:
        raise Conflict("The household has no points pool / 家庭未开通积分池", code="POOL_NOT_OPEN")
    await ledger.expire_account_lots(conn, member_account, now=now, lot_expiry_days=lot_expiry_days)
    tx = await ledger.post_transaction(
        conn, kind=POOL_TRANSFER,
        postings=[ledger.Posting(member_account, -points), ledger.Posting(pool, points)],
        now=now, lot_expiry_days=lot_expiry_days, memo=f"to household pool #{stay.household_id} / 转入家庭积分池",
        actor_user_id=user_id,
    )
    transfer_id = (
        await conn.execute(
            insert(HP).values(household_id=stay.household_id, user_id=user_id, direction=TO_POOL, points=points,
                              transaction_id=tx.id, created_at=now).returning(HP.c.id)
        )
    ).scalar_one()
    await idempotency.complete(conn, claim, "HouseholdPoolTransfer", transfer_id)
    await events.emit(conn, "household.pool_transfer", transfer_id=transfer_id, household_id=stay.household_id,
                      user_id=user_id, direction=TO_POOL, points=points)
    return PoolTransferResult(transfer_id, stay.household_id, False)


async def withdraw_from_pool(
    conn: AsyncConnection,
    *,
    user_id: int,
    points: Any,
    idempotency_key: Any,
    max_amount: int,
    lot_expiry_days: int,
    withdrawal_expiry_days: int,
    now: datetime,
) -> PoolTransferResult:
    """The owner takes points from the pool into their own account to redeem them (idempotent; never more
    than the pool holds). They expire after ``withdrawal_expiry_days`` (``[community]
    pool_withdrawal_expiry_days``), so moving points through the pool cannot renew their expiry for long."""
    points = ledger.validate_amount(points, max_amount=max_amount, field="points")
    key = idempotency.validate_key(idempotency_key)
    claim = await idempotency.claim(
        conn, f"householdPool:{user_id}", key, idempotency.request_hash({"op": FROM_POOL, "points": points})
    )
    if claim.is_replay:
        row = (await conn.execute(select(HP.c.household_id).where(HP.c.id == claim.result_id))).scalar_one()
        return PoolTransferResult(int(claim.result_id or 0), row, True)
    member_account = await ledger.lock_member_account(conn, user_id)
    stay = await _open_stay(conn, user_id)
    if stay is None:
        raise Conflict("You are not in a household / 您未加入家庭", code="NOT_HOUSEHOLD_MEMBER")
    if stay.role != OWNER:
        raise PermissionDenied("Only the household's owner can spend the pool / 仅户主可使用家庭积分池")
    pool = await pool_account_id(conn, stay.household_id)
    if pool is None:
        raise Conflict("The household has no points pool / 家庭未开通积分池", code="POOL_NOT_OPEN")
    tx = await ledger.post_transaction(
        conn, kind=POOL_TRANSFER,
        postings=[ledger.Posting(pool, -points),
                  ledger.Posting(member_account, points, lot_expires_at=now + timedelta(days=withdrawal_expiry_days))],
        now=now, lot_expiry_days=lot_expiry_days, memo=f"from household pool #{stay.household_id} / 家庭积分池转出",
        actor_user_id=user_id,
    )
    transfer_id = (
        await conn.execute(
            insert(HP).values(household_id=stay.household_id, user_id=user_id, direction=FROM_POOL, points=points,
                              transaction_id=tx.id, created_at=now).returning(HP.c.id)
        )
    ).scalar_one()
    await idempotency.complete(conn, claim, "HouseholdPoolTransfer", transfer_id)
    await events.emit(conn, "household.pool_transfer", transfer_id=transfer_id, household_id=stay.household_id,
                      user_id=user_id, direction=FROM_POOL, points=points)
    return PoolTransferResult(transfer_id, stay.household_id, False)
