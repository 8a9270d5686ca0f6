"""Tables of the auth domain: refresh tokens, API tokens, login attempts."""

from datetime import datetime

from sqlalchemy import Index
from sqlmodel import Field, SQLModel

from jingtan_api.db import utcnow


class RefreshToken(SQLModel, table=True):
    """One refresh token. Rotation marks it used and issues a successor in the same family; presenting a
    used token again revokes the whole family (RFC 6819 §5.2.2.3)."""

    __tablename__ = "refresh_token"

    id: int | None = Field(default=None, primary_key=True)
    user_id: int = Field(foreign_key="user_account.id", index=True)
    family_id: str = Field(max_length=36, index=True)
    token_hash: str = Field(max_length=64, unique=True)
    created_at: datetime = Field(default_factory=utcnow)
    expires_at: datetime
    used_at: datetime | None = None
    revoked_at: datetime | None = None
    revoked_reason: str | None = Field(default=None, max_length=64)


class ApiToken(SQLModel, table=True):
    """A hashed, scoped, revocable token for server-to-server clients. The secret is shown once."""

    __tablename__ = "api_token"

    id: int | None = Field(default=None, primary_key=True)
    user_id: int = Field(foreign_key="user_account.id", index=True)
    name: str = Field(max_length=100)
    prefix: str = Field(max_length=16, unique=True)
    token_hash: str = Field(max_length=64)
    scopes: str = Field(max_length=500)
    created_by_user_id: int | None = Field(default=None, foreign_key="user_account.id")
    created_at: datetime = Field(default_factory=utcnow)
    expires_at: datetime | None = None
    last_used_at: datetime | None = None
    revoked_at: datetime | None = None


class LoginAttempt(SQLModel, table=True):
    """Failed logins, counted per account identifier and per client address for rate limiting."""

    __tablename__ = "login_attempt"
    __table_args__ = (
        Index("ix_login_attempt_identifier_at", "identifier", "created_at"),
        Index("ix_login_attempt_address_at", "address", "created_at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    identifier: str = Field(max_length=254)
    address: str = Field(max_length=64)
    created_at: datetime = Field(default_factory=utcnow)


class AuthSession(SQLModel, table=True):
    """A login session as the member sees it: one refresh-token family (device, first and last use,
    client address). Whether it is still active is read from the family's refresh tokens."""

    __tablename__ = "auth_session"

    id: int | None = Field(default=None, primary_key=True)
    user_id: int = Field(foreign_key="user_account.id", index=True)
    family_id: str = Field(max_length=36, unique=True)
    device_name: str = Field(default="", max_length=100)
    address: str = Field(default="", max_length=64)
    created_at: datetime = Field(default_factory=utcnow)
    last_used_at: datetime = Field(default_factory=utcnow)
    expires_at: datetime  # expiry of the family's newest refresh token
    ended_at: datetime | None = None
    ended_reason: str | None = Field(default=None, max_length=64)
