"""Tables of social organisations (issue #10, docs/community.md "Organisations").

Membership is a history of intervals, as for households: a row per stay ([joined_at, left_at)); while
the stay is open ``active_organisation_id`` equals ``organisation_id`` (NULL after), and the unique pair
(``active_organisation_id``, ``user_id``) keeps one open stay per member and organisation under
concurrency. A member may belong to several organisations (their company and their community).
Join requests are their own table: a request is not a stay.
"""

from datetime import datetime

from sqlalchemy import BigInteger, CheckConstraint, Column, Index, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

from jingtan_api.db import utcnow


class Organisation(SQLModel, table=True):
    """A company, school, community, NGO or government body with its points account."""

    __tablename__ = "organisation"
    __table_args__ = (Index("ix_organisation_status_kind_city", "status", "kind", "city"),)

    id: int | None = Field(default=None, primary_key=True)
    # COMPANY, SCHOOL, COMMUNITY, NGO, GOVERNMENT
    kind: str = Field(max_length=16)
    name_zh: str = Field(max_length=100)
    name_en: str = Field(default="", max_length=100)
    description_zh: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    description_en: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    city: str = Field(default="", max_length=64)
    district: str = Field(default="", max_length=64)
    website: str = Field(default="", max_length=200)
    # Unified social credit code (统一社会信用代码) or other registration number, as given.
    registration_number: str = Field(default="", max_length=32)
    # PENDING (applied), ACTIVE (open), REJECTED, CLOSED
    status: str = Field(default="ACTIVE", max_length=16)
    applicant_user_id: int | None = Field(default=None, foreign_key="user_account.id", index=True)
    # The ORGANISATION ledger account, opened when the organisation becomes ACTIVE.
    account_id: int | None = Field(default=None, foreign_key="account.id", unique=True)
    created_at: datetime = Field(default_factory=utcnow)
    reviewed_at: datetime | None = None
    reviewed_by_user_id: int | None = Field(default=None, foreign_key="user_account.id")
    review_reason: str = Field(default="", max_length=500)
    closed_at: datetime | None = None


class OrganisationMember(SQLModel, table=True):
    """One stay of a user in an organisation: [joined_at, left_at); ``role`` ADMIN or MEMBER."""

    __tablename__ = "organisation_member"
    __table_args__ = (
        UniqueConstraint("active_organisation_id", "user_id", name="uq_organisation_member_active"),
        Index("ix_organisation_member_org_joined", "organisation_id", "joined_at"),
        Index("ix_organisation_member_user_joined", "user_id", "joined_at"),
        CheckConstraint("left_at IS NULL OR left_at >= joined_at", name="interval_ordered"),
        CheckConstraint(
            "(left_at IS NULL AND active_organisation_id = organisation_id)"
            " OR (left_at IS NOT NULL AND active_organisation_id IS NULL)",
            name="active_matches",
        ),
    )

    id: int | None = Field(default=None, primary_key=True)
    organisation_id: int = Field(foreign_key="organisation.id")
    user_id: int = Field(foreign_key="user_account.id")
    active_organisation_id: int | None = Field(default=None, foreign_key="organisation.id")
    # ADMIN, MEMBER
    role: str = Field(default="MEMBER", max_length=16)
    joined_at: datetime
    left_at: datetime | None = None
    # How the stay ended: LEFT, REMOVED, CLOSED (None while open).
    end_reason: str | None = Field(default=None, max_length=16)
    # How it began: CREATED (founder/admin appointed), INVITE, REQUEST
    joined_via: str = Field(default="REQUEST", max_length=16)
    added_by_user_id: int | None = Field(default=None, foreign_key="user_account.id")


class OrganisationInvite(SQLModel, table=True):
    """An invite code (only its SHA-256 stored), valid until ``expires_at`` for ``max_uses`` joins."""

    __tablename__ = "organisation_invite"
    __table_args__ = (CheckConstraint("uses >= 0 AND uses <= max_uses", name="uses_in_range"),)

    id: int | None = Field(default=None, primary_key=True)
    organisation_id: int = Field(foreign_key="organisation.id", index=True)
    code_hash: str = Field(max_length=64, unique=True)
    created_by_user_id: int = Field(foreign_key="user_account.id")
    created_at: datetime = Field(default_factory=utcnow)
    expires_at: datetime
    max_uses: int = 1
    uses: int = 0
    revoked_at: datetime | None = None


class OrganisationJoinRequest(SQLModel, table=True):
    """A member asks to join; an organisation admin approves or declines. One pending request per member
    and organisation (``pending_organisation_id`` is set only while PENDING)."""

    __tablename__ = "organisation_join_request"
    __table_args__ = (
        UniqueConstraint("pending_organisation_id", "user_id", name="uq_organisation_join_request_pending"),
        Index("ix_organisation_join_request_org_status", "organisation_id", "status", "id"),
    )

    id: int | None = Field(default=None, primary_key=True)
    organisation_id: int = Field(foreign_key="organisation.id")
    user_id: int = Field(foreign_key="user_account.id", index=True)
    pending_organisation_id: int | None = Field(default=None, foreign_key="organisation.id")
    message: str = Field(default="", max_length=500)
    # PENDING, APPROVED, DECLINED, WITHDRAWN
    status: str = Field(default="PENDING", max_length=16)
    created_at: datetime = Field(default_factory=utcnow)
    decided_at: datetime | None = None
    decided_by_user_id: int | None = Field(default=None, foreign_key="user_account.id")
    decision_reason: str = Field(default="", max_length=500)


class OrganisationDonation(SQLModel, table=True):
    """Points a member gave to an organisation (the ledger transaction holds the amounts)."""

    __tablename__ = "organisation_donation"
    __table_args__ = (Index("ix_organisation_donation_org_id", "organisation_id", "id"),)

    id: int | None = Field(default=None, primary_key=True)
    organisation_id: int = Field(foreign_key="organisation.id")
    user_id: int = Field(foreign_key="user_account.id", index=True)
    points: int = Field(sa_column=Column(BigInteger, nullable=False))
    transaction_id: int = Field(foreign_key="ledger_transaction.id", unique=True)
    created_at: datetime = Field(default_factory=utcnow)
