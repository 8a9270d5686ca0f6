"""Tables of the users domain."""

from datetime import datetime

from sqlalchemy import Index
from sqlmodel import Field, SQLModel

from jingtan_api.db import utcnow


class User(SQLModel, table=True):
    """A person with a login: a member, merchant staff, or an admin (roles may combine)."""

    __tablename__ = "user_account"

    id: int | None = Field(default=None, primary_key=True)
    email: str | None = Field(default=None, max_length=254, unique=True)
    phone: str | None = Field(default=None, max_length=20, unique=True)
    display_name: str = Field(max_length=64)
    password_hash: str = Field(max_length=255)
    # Comma-separated, sorted role names (MEMBER, MERCHANT, ADMIN): one row read gives the whole viewer.
    roles: str = Field(default="MEMBER", max_length=64)
    status: str = Field(default="ACTIVE", max_length=16)
    created_at: datetime = Field(default_factory=utcnow)
    password_changed_at: datetime = Field(default_factory=utcnow)
    # When the current phone / email was proven by a one-time code (None: not verified; docs/identity.md).
    phone_verified_at: datetime | None = None
    email_verified_at: datetime | None = None


class UserConsent(SQLModel, table=True):
    """One acceptance of a version of the terms of service or the privacy notice (append-only)."""

    __tablename__ = "user_consent"
    __table_args__ = (Index("ix_user_consent_user_document", "user_id", "document", "id"),)

    id: int | None = Field(default=None, primary_key=True)
    user_id: int = Field(foreign_key="user_account.id")
    document: str = Field(max_length=16)  # TERMS or PRIVACY
    version: str = Field(max_length=32)
    accepted_at: datetime = Field(default_factory=utcnow)
