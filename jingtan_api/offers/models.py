"""Tables of merchants, offers and redemptions (issue #4).

Stock and balances change only through conditional UPDATEs inside one write transaction (see
``service.redeem``); these tables hold no cached totals that could drift from the ledger.
"""

from datetime import datetime

from sqlalchemy import BigInteger, Column, Index, Text
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


class Offer(SQLModel, table=True):
    """Something a member can get for points. ``stock`` is what is left of ``total_stock``."""

    __tablename__ = "offer"
    __table_args__ = (
        Index("ix_offer_status_created", "status", "created_at", "id"),
        Index("ix_offer_status_price", "status", "points_price", "id"),
        Index("ix_offer_status_ends", "status", "ends_at", "id"),
        Index("ix_offer_merchant_id", "merchant_id", "id"),
    )

    id: int | None = Field(default=None, primary_key=True)
    merchant_id: int = Field(foreign_key="merchant.id")
    title_zh: str = Field(max_length=100)
    title_en: str = Field(default="", max_length=100)
    description_zh: str = Field(default="", max_length=2000)
    description_en: str = Field(default="", max_length=2000)
    terms: str = Field(default="", max_length=2000)
    image_url: str | None = Field(default=None, max_length=500)
    points_price: int = Field(sa_column=Column(BigInteger, nullable=False))
    total_stock: int = Field(sa_column=Column(BigInteger, nullable=False))
    stock: int = Field(sa_column=Column(BigInteger, nullable=False))
    per_member_limit: int = 1
    starts_at: datetime
    ends_at: datetime
    # DRAFT, ACTIVE, PAUSED, ENDED
    status: str = Field(default="DRAFT", max_length=16)
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)


class Redemption(SQLModel, table=True):
    """A member's redemption of an offer: the points moved, the code to show at the counter."""

    __tablename__ = "redemption"
    __table_args__ = (
        Index("ix_redemption_member", "member_user_id", "id"),
        Index("ix_redemption_offer_member", "offer_id", "member_user_id"),
        Index("ix_redemption_merchant_created", "merchant_id", "created_at"),
        Index("ix_redemption_status_expires", "status", "expires_at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    offer_id: int = Field(foreign_key="offer.id")
    merchant_id: int = Field(foreign_key="merchant.id")
    member_user_id: int = Field(foreign_key="user_account.id")
    quantity: int
    points: int = Field(sa_column=Column(BigInteger, nullable=False))
    code: str = Field(max_length=16, unique=True)
    # PENDING, CONFIRMED, CANCELLED, EXPIRED
    status: str = Field(default="PENDING", max_length=16)
    created_at: datetime = Field(default_factory=utcnow)
    expires_at: datetime
    confirmed_at: datetime | None = None
    confirmed_by_user_id: int | None = Field(default=None, foreign_key="user_account.id")
    closed_at: datetime | None = None
    transaction_id: int = Field(foreign_key="ledger_transaction.id", unique=True)
    refund_transaction_id: int | None = Field(default=None, foreign_key="ledger_transaction.id", unique=True)
