"""The ``action`` table: every submission that reached a plugin's verdict (approved, rejected, pending)."""

from datetime import datetime

from sqlalchemy import BigInteger, Column, Index, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

from jingtan_api.db import utcnow


class Action(SQLModel, table=True):
    __tablename__ = "action"
    __table_args__ = (
        # One approved/pending action per piece of evidence and category. Rejected duplicates keep the
        # fingerprint in `evidence_fingerprint_seen` only, so this constraint decides concurrent twins.
        UniqueConstraint("plugin_code", "evidence_fingerprint", name="uq_action_plugin_fingerprint"),
        Index("ix_action_user_plugin_from", "user_id", "plugin_code", "occurred_from"),
        Index("ix_action_user_id_id", "user_id", "id"),
        Index("ix_action_status_id", "status", "id"),
        Index("ix_action_plugin_subject", "plugin_code", "subject"),
    )

    id: int | None = Field(default=None, primary_key=True)
    user_id: int = Field(foreign_key="user_account.id")
    plugin_code: str = Field(max_length=40)
    plugin_version: str = Field(max_length=32)
    input: str = Field(sa_column=Column(Text, nullable=False))
    evidence: str = Field(sa_column=Column(Text, nullable=False))
    evidence_fingerprint: str | None = Field(default=None, max_length=200)
    evidence_fingerprint_seen: str | None = Field(default=None, max_length=200)
    subject: str | None = Field(default=None, max_length=200)
    occurred_from: datetime
    occurred_to: datetime
    # APPROVED, REJECTED, NEEDS_REVIEW
    status: str = Field(max_length=16)
    reasons: str = Field(default="[]", sa_column=Column(Text, nullable=False))
    grams_co2e: int = Field(default=0, sa_column=Column(BigInteger, nullable=False))
    points: int = Field(default=0, sa_column=Column(BigInteger, nullable=False))
    factor_ids: str = Field(default="[]", sa_column=Column(Text, nullable=False))
    factors: str = Field(default="[]", sa_column=Column(Text, nullable=False))
    formula: str = Field(default="", sa_column=Column(Text, nullable=False))
    cap_group: str | None = Field(default=None, max_length=64)
    cap_group_daily_grams: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))
    transaction_id: int | None = Field(default=None, foreign_key="ledger_transaction.id")
    reviewed_by: int | None = Field(default=None, foreign_key="user_account.id")
    reviewed_at: datetime | None = None
    review_reason: str | None = Field(default=None, max_length=500)
    created_at: datetime = Field(default_factory=utcnow)
    # The submitter's household when the action was submitted (None: none), so that a household's claims
    # (an energy-saving meter) are recognised as one household's whoever submits (docs/community.md).
    household_id: int | None = Field(default=None, foreign_key="household.id", index=True)
