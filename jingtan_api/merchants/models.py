"""Tables of merchants and their staff (issue #4).

A merchant's points balance is its ledger account's (``account_id``); these tables hold no cached totals.
"""

from datetime import datetime

from sqlalchemy import BigInteger, Column, Index, Text
from sqlmodel import Field, SQLModel

from jingtan_api.db import utcnow


class Merchant(SQLModel, table=True):
    """A low-carbon merchant (café, bike shop, transit operator, …) with its points account."""

    __tablename__ = "merchant"
    __table_args__ = (
        Index("ix_merchant_status_city", "status", "city"),
        # "near me": the bounding-box prefilter (docs/merchants.md)
        Index("ix_merchant_lat_lng", "latitude", "longitude"),
    )

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


class MerchantStation(SQLModel, table=True):
    """A place of a merchant that actions can name (a recycling station id, a shop counter's code).

    An action whose plugin ``subject`` is a station code (the recycling plugin's ``stationId``), or whose
    evidence ``source`` is ``station:<code>``, was done at the station's merchant (docs/merchants.md)."""

    __tablename__ = "merchant_station"

    id: int | None = Field(default=None, primary_key=True)
    merchant_id: int = Field(foreign_key="merchant.id", index=True)
    code: str = Field(max_length=64, unique=True)
    name_zh: str = Field(default="", max_length=100)
    name_en: str = Field(default="", max_length=100)
    created_at: datetime = Field(default_factory=utcnow)


class MerchantAction(SQLModel, table=True):
    """An approved action done at a merchant (written in the approving transaction). Its grams are the
    action's own: this row attributes them, it never adds CO2e."""

    __tablename__ = "merchant_action"
    __table_args__ = (
        Index("ix_merchant_action_merchant_at", "merchant_id", "approved_at"),
        Index("ix_merchant_action_user_merchant", "user_id", "merchant_id"),
    )

    action_id: int = Field(foreign_key="action.id", primary_key=True, sa_column_kwargs={"autoincrement": False})
    merchant_id: int = Field(foreign_key="merchant.id")
    user_id: int = Field(foreign_key="user_account.id")
    station_id: int | None = Field(default=None, foreign_key="merchant_station.id")
    grams_co2e: int = Field(default=0, sa_column=Column(BigInteger, nullable=False, default=0))
    points: int = Field(default=0, sa_column=Column(BigInteger, nullable=False, default=0))
    approved_at: datetime


class MerchantCertification(SQLModel, table=True):
    """One green-merchant audit and the level it granted (the latest row is the merchant's level)."""

    __tablename__ = "merchant_certification"
    __table_args__ = (Index("ix_merchant_certification_merchant_id", "merchant_id", "id"),)

    id: int | None = Field(default=None, primary_key=True)
    merchant_id: int = Field(foreign_key="merchant.id")
    # NONE (revoked), BRONZE, SILVER, GOLD
    level: str = Field(max_length=16)
    auditor_user_id: int = Field(foreign_key="user_account.id")
    notes: str = Field(default="", max_length=1000)
    valid_until: datetime | None = None
    created_at: datetime = Field(default_factory=utcnow)
