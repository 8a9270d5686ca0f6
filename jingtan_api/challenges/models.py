"""Tables of challenges (docs/impact.md "Challenges")."""

from datetime import datetime

from sqlalchemy import BigInteger, CheckConstraint, Column, Index, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

from jingtan_api.db import utcnow


class Challenge(SQLModel, table=True):
    """A goal an organisation sets its members (or every member in a city) for [starts_at, ends_at).

    A participant *qualifies* when their own approved actions in the window (of the listed action types,
    if any) reach ``goal_value`` (grams CO2e, or a number of actions). At settlement the first
    ``max_rewarded`` qualifiers (by who qualified first) receive ``reward_points`` each from the
    organisation's account, in one ledger transaction, as far as the account holds."""

    __tablename__ = "challenge"
    __table_args__ = (
        Index("ix_challenge_status_ends", "status", "ends_at"),
        Index("ix_challenge_org_id", "organisation_id", "id"),
        Index("ix_challenge_status_city", "status", "audience", "city"),
        CheckConstraint("ends_at > starts_at", name="window_ordered"),
        CheckConstraint("goal_value > 0 AND reward_points >= 0 AND max_rewarded >= 0", name="amounts_valid"),
    )

    id: int | None = Field(default=None, primary_key=True)
    organisation_id: int = Field(foreign_key="organisation.id")
    name_zh: str = Field(max_length=100)
    name_en: str = Field(default="", max_length=100)
    description_zh: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    description_en: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    # MEMBERS (the organisation's members) or CITY (every member whose city is ``city``)
    audience: str = Field(max_length=16)
    city: str = Field(default="", max_length=64)
    # GRAMS or ACTIONS
    goal_kind: str = Field(max_length=16)
    goal_value: int = Field(sa_column=Column(BigInteger, nullable=False))
    # JSON list of action type codes; [] = every type
    action_types: str = Field(default="[]", max_length=500)
    starts_at: datetime
    ends_at: datetime
    reward_points: int = Field(default=0, sa_column=Column(BigInteger, nullable=False, default=0))
    max_rewarded: int = 0
    # ACTIVE, CANCELLED, SETTLED
    status: str = Field(default="ACTIVE", max_length=16)
    created_by_user_id: int = Field(foreign_key="user_account.id")
    created_at: datetime = Field(default_factory=utcnow)
    cancelled_at: datetime | None = None
    settled_at: datetime | None = None
    # The result, written at settlement.
    participants: int = 0
    qualified: int = 0
    rewarded: int = 0
    paid_points: int = Field(default=0, sa_column=Column(BigInteger, nullable=False, default=0))
    total_grams: int = Field(default=0, sa_column=Column(BigInteger, nullable=False, default=0))
    transaction_id: int | None = Field(default=None, foreign_key="ledger_transaction.id", unique=True)


class ChallengeParticipant(SQLModel, table=True):
    """A member's progress in a challenge (maintained by the ``action.approved`` listener)."""

    __tablename__ = "challenge_participant"
    __table_args__ = (
        UniqueConstraint("challenge_id", "user_id", name="uq_challenge_participant"),
        Index("ix_challenge_participant_rank", "challenge_id", "progress", "id"),
    )

    id: int | None = Field(default=None, primary_key=True)
    challenge_id: int = Field(foreign_key="challenge.id")
    user_id: int = Field(foreign_key="user_account.id")
    grams: int = Field(default=0, sa_column=Column(BigInteger, nullable=False, default=0))
    actions: int = Field(default=0, sa_column=Column(BigInteger, nullable=False, default=0))
    # grams or actions, whichever the goal counts (the ranking column)
    progress: int = Field(default=0, sa_column=Column(BigInteger, nullable=False, default=0))
    qualified_at: datetime | None = None
    rewarded_points: int = Field(default=0, sa_column=Column(BigInteger, nullable=False, default=0))
