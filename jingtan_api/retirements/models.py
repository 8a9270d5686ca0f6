"""Tables of retirements (issue #10, docs/community.md "Retiring reductions").

``action_retirement`` is the guard of "no gram is ever retired twice": one row per action that has had
grams retired, holding how many of the action's ``total_grams`` are retired (a CHECK keeps it within
0..total). Each retirement item takes the next range ``[gram_from, gram_to)`` of one action by a
conditional UPDATE of that row, so two retirements can never be handed the same grams, whatever the
concurrency; items of one action are contiguous and never overlap (unique ``(action_id, gram_from)``).
"""

from datetime import date, datetime

from sqlalchemy import BigInteger, CheckConstraint, Column, Index, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

from jingtan_api.db import utcnow


class Retirement(SQLModel, table=True):
    """A public, verifiable retirement record (退役/注销记录)."""

    __tablename__ = "retirement"
    __table_args__ = (
        CheckConstraint("grams > 0", name="grams_positive"),
        Index("ix_retirement_org_id", "organisation_id", "id"),
    )

    id: int | None = Field(default=None, primary_key=True)
    # Public reference, e.g. "JTR-2026-7K3F9Q2M" (unique, not guessable from the id).
    code: str = Field(max_length=32, unique=True)
    organisation_id: int = Field(foreign_key="organisation.id")
    grams: int = Field(sa_column=Column(BigInteger, nullable=False))
    purpose_zh: str = Field(max_length=300)
    purpose_en: str = Field(default="", max_length=300)
    # The reporting period the retirement is claimed against (e.g. 2026-01-01 .. 2026-12-31).
    period_start: date
    period_end: date
    # When the consumed reductions happened (earliest start, latest end of the actions).
    reductions_from: datetime
    reductions_to: datetime
    # JSON list of {"code", "version", "grams"} per methodology (plugin code and rule version).
    methodologies: str = Field(default="[]", sa_column=Column(Text, nullable=False, default="[]"))
    # POINTS (paid from the organisation's account) or OFF_PLATFORM (recorded by an admin)
    payment_method: str = Field(max_length=16)
    points_paid: int = Field(default=0, sa_column=Column(BigInteger, nullable=False, default=0))
    transaction_id: int | None = Field(default=None, foreign_key="ledger_transaction.id", unique=True)
    # Off-platform payment: the admin's reference (invoice / transfer number) and amount in fen (分).
    payment_reference: str = Field(default="", max_length=100)
    payment_amount_fen: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))
    # SHA-256 of the canonical record (code, organisation, grams, period, purpose, items): anyone can
    # recompute it from the public record.
    digest: str = Field(max_length=64)
    created_by_user_id: int = Field(foreign_key="user_account.id")
    created_at: datetime = Field(default_factory=utcnow)


class RetirementItem(SQLModel, table=True):
    """Grams ``[gram_from, gram_to)`` of one approved action, consumed by one retirement."""

    __tablename__ = "retirement_item"
    __table_args__ = (
        UniqueConstraint("action_id", "gram_from", name="uq_retirement_item_action_from"),
        CheckConstraint("gram_from >= 0 AND gram_to > gram_from", name="range_ordered"),
    )

    id: int | None = Field(default=None, primary_key=True)
    retirement_id: int = Field(foreign_key="retirement.id", index=True)
    action_id: int = Field(foreign_key="action.id")
    gram_from: int = Field(sa_column=Column(BigInteger, nullable=False))
    gram_to: int = Field(sa_column=Column(BigInteger, nullable=False))


class ActionRetirement(SQLModel, table=True):
    """How many grams of an approved action are retired (the allocation cursor of its grams)."""

    __tablename__ = "action_retirement"
    __table_args__ = (
        CheckConstraint("retired_grams >= 0 AND retired_grams <= total_grams", name="retired_within_total"),
    )

    action_id: int = Field(foreign_key="action.id", primary_key=True, sa_column_kwargs={"autoincrement": False})
    total_grams: int = Field(sa_column=Column(BigInteger, nullable=False))
    retired_grams: int = Field(default=0, sa_column=Column(BigInteger, nullable=False, default=0))
