"""Tables of households (issue #10, docs/community.md "Households").

Membership is a history of intervals: a row per stay (``joined_at`` .. ``left_at``; ``left_at`` NULL while
the member is in). ``active_user_id`` equals ``user_id`` while the stay is open and is NULL once it ends;
its unique constraint is what makes "one household per member" hold under concurrency on both databases
(NULLs never collide), without a partial index.
"""

from datetime import datetime

from sqlalchemy import BigInteger, CheckConstraint, Column, Index
from sqlmodel import Field, SQLModel

from jingtan_api.db import utcnow


class Household(SQLModel, table=True):
    """A household (家庭). ACTIVE while it has members; DISSOLVED when its last member left."""

    __tablename__ = "household"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=60)
    # ACTIVE, DISSOLVED
    status: str = Field(default="ACTIVE", max_length=16)
    owner_user_id: int | None = Field(default=None, foreign_key="user_account.id", index=True)
    # The shared points pool (a HOUSEHOLD ledger account), opened on demand; None until then.
    pool_account_id: int | None = Field(default=None, foreign_key="account.id", unique=True)
    created_by_user_id: int | None = Field(default=None, foreign_key="user_account.id")
    created_at: datetime = Field(default_factory=utcnow)
    dissolved_at: datetime | None = None


class HouseholdMember(SQLModel, table=True):
    """One stay of a user in a household: [joined_at, left_at)."""

    __tablename__ = "household_member"
    __table_args__ = (
        Index("ix_household_member_household_joined", "household_id", "joined_at"),
        Index("ix_household_member_user_joined", "user_id", "joined_at"),
        CheckConstraint("left_at IS NULL OR left_at >= joined_at", name="interval_ordered"),
        CheckConstraint(
            "(left_at IS NULL AND active_user_id = user_id) OR (left_at IS NOT NULL AND active_user_id IS NULL)",
            name="active_user_matches",
        ),
    )

    id: int | None = Field(default=None, primary_key=True)
    household_id: int = Field(foreign_key="household.id")
    user_id: int = Field(foreign_key="user_account.id")
    # = user_id while the stay is open, NULL after: unique, so a user is in at most one household.
    active_user_id: int | None = Field(default=None, foreign_key="user_account.id", unique=True)
    # OWNER, MEMBER
    role: str = Field(default="MEMBER", max_length=16)
    joined_at: datetime
    left_at: datetime | None = None
    # How the stay ended: LEFT, REMOVED, DISSOLVED (None while open).
    end_reason: str | None = Field(default=None, max_length=16)
    invite_id: int | None = Field(default=None, foreign_key="household_invite.id")


class HouseholdInvite(SQLModel, table=True):
    """A single-use invite code. Only its SHA-256 is stored; the code is shown once, to its creator."""

    __tablename__ = "household_invite"

    id: int | None = Field(default=None, primary_key=True)
    household_id: int = Field(foreign_key="household.id", index=True)
    code_hash: str = Field(max_length=64, unique=True)
    created_by_user_id: int = Field(foreign_key="user_account.id")
    created_at: datetime = Field(default_factory=utcnow)
    expires_at: datetime
    used_at: datetime | None = None
    used_by_user_id: int | None = Field(default=None, foreign_key="user_account.id")
    revoked_at: datetime | None = None


class HouseholdPoolTransfer(SQLModel, table=True):
    """A move of points between a member's account and the household pool (the ledger transaction holds
    the amounts; this row says who and which household, for the pool's history)."""

    __tablename__ = "household_pool_transfer"

    id: int | None = Field(default=None, primary_key=True)
    household_id: int = Field(foreign_key="household.id", index=True)
    user_id: int = Field(foreign_key="user_account.id", index=True)
    # TO_POOL (member → pool), FROM_POOL (pool → owner, for redeeming)
    direction: str = Field(max_length=16)
    points: int = Field(sa_column=Column(BigInteger, nullable=False))
    transaction_id: int = Field(foreign_key="ledger_transaction.id", unique=True)
    created_at: datetime = Field(default_factory=utcnow)
