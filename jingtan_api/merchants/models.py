"""Tables of merchants and their staff (issue #4).

A merchant's points balance is its ledger account's (``account_id``); these tables hold no cached totals.
"""

from datetime import datetime

from sqlalchemy import Column, Index, Text
from sqlmodel import Field, SQLModel

from jingtan_api.db import utcnow


class Merchant(SQLModel, table=True):
    """A low-carbon merchant (café, bike shop, transit operator, …) with its points account."""

    __tablename__ = "merchant"
    __table_args__ = (Index("ix_merchant_status_city", "status", "city"),)

    id: int | None = Field(default=None, primary_key=True)
    name_zh: str = Field(max_length=100)
    name_en: str = Field(default="", max_length=100)
    category: str = Field(max_length=16)
    city: str = Field(max_length=64)
    district: str = Field(default="", max_length=64)
    address: str = Field(default="", max_length=200)
    # Coordinates are not money: plain floats (WGS-84 degrees), both or neither.
    latitude: float | None = None
    longitude: float | None = None
    # JSON list of strings.
    commitments: str = Field(default="[]", sa_column=Column(Text, nullable=False, default="[]"))
    # PENDING (applied), ACTIVE, REJECTED, SUSPENDED
    status: str = Field(default="ACTIVE", max_length=16)
    owner_user_id: int | None = Field(default=None, foreign_key="user_account.id", index=True)
    account_id: int | None = Field(default=None, foreign_key="account.id", unique=True)
    created_at: datetime = Field(default_factory=utcnow)
    reviewed_at: datetime | None = None
    reviewed_by_user_id: int | None = Field(default=None, foreign_key="user_account.id")
    review_reason: str = Field(default="", max_length=500)


class MerchantStaff(SQLModel, table=True):
    """A user working for a merchant (one merchant per user)."""

    __tablename__ = "merchant_staff"

    id: int | None = Field(default=None, primary_key=True)
    user_id: int = Field(foreign_key="user_account.id", unique=True)
    merchant_id: int = Field(foreign_key="merchant.id", index=True)
    is_owner: bool = False
    added_by_user_id: int | None = Field(default=None, foreign_key="user_account.id")
    created_at: datetime = Field(default_factory=utcnow)
