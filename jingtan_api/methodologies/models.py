"""Tables of methodology governance: every methodology version seen, and its review history."""

from datetime import datetime

from sqlalchemy import Column, Index, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

from jingtan_api.db import utcnow


class MethodologyVersion(SQLModel, table=True):
    """One version of an action type's methodology: the factor table (values and sources) and formula text
    a server ran with. Identified by ``fingerprint`` (SHA-256 of title, reference, formula text and factors)
    within the action type: a factor override or a plugin upgrade that changes factors or formula is a new
    version; an upgrade that changes neither keeps the version (and its approval)."""

    __tablename__ = "methodology_version"
    __table_args__ = (
        UniqueConstraint("plugin_code", "fingerprint", name="uq_methodology_version_fingerprint"),
        UniqueConstraint("plugin_code", "version_no", name="uq_methodology_version_no"),
    )

    id: int | None = Field(default=None, primary_key=True)
    plugin_code: str = Field(max_length=40)
    version_no: int
    fingerprint: str = Field(max_length=64)
    plugin: str = Field(max_length=100)
    # The plugin's rules version (ActionType.version) and distribution version when first seen.
    plugin_version: str = Field(max_length=32)
    distribution_version: str = Field(default="", max_length=64)
    title: str = Field(sa_column=Column(Text, nullable=False))
    reference: str = Field(sa_column=Column(Text, nullable=False))
    text: str = Field(sa_column=Column(Text, nullable=False))
    factors: str = Field(default="[]", sa_column=Column(Text, nullable=False))
    # PENDING, APPROVED, REJECTED, RETIRED
    status: str = Field(default="PENDING", max_length=16)
    decided_by: int | None = Field(default=None, foreign_key="user_account.id")
    decided_at: datetime | None = None
    decision_note: str | None = Field(default=None, max_length=500)
    created_at: datetime = Field(default_factory=utcnow)


class MethodologyReview(SQLModel, table=True):
    """The review history of a version: SUBMITTED (first seen), APPROVED, REJECTED, RETIRED."""

    __tablename__ = "methodology_review"
    __table_args__ = (Index("ix_methodology_review_version_id", "version_id", "id"),)

    id: int | None = Field(default=None, primary_key=True)
    version_id: int = Field(foreign_key="methodology_version.id")
    event: str = Field(max_length=16)
    actor_user_id: int | None = Field(default=None, foreign_key="user_account.id")
    note: str = Field(default="", max_length=500)
    created_at: datetime = Field(default_factory=utcnow)
