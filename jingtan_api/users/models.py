"""Tables of the users domain."""

from datetime import datetime

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
