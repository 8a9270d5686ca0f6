"""The table of offers (issue #4).

``stock`` changes only through conditional UPDATEs inside one write transaction (``service.take_stock``,
``service.return_stock``).
"""

from datetime import datetime

from sqlalchemy import BigInteger, Column, Index
from sqlmodel import Field, SQLModel

from jingtan_api.db import utcnow


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


class OfferSegmentRule(SQLModel, table=True):
    """One rule of an offer's segment: the offer is visible and redeemable only for members who meet
    every rule of it (no rule: everyone). See ``offers.segments`` and docs/merchants.md."""

    __tablename__ = "offer_segment_rule"
    __table_args__ = (Index("ix_offer_segment_rule_offer_id", "offer_id", "id"),)

    id: int | None = Field(default=None, primary_key=True)
    offer_id: int = Field(foreign_key="offer.id")
    # CITY, MIN_GRAMS_AVOIDED, PAST_CUSTOMERS, NEW_MEMBERS, ORGANISATION_MEMBERS, HOUSEHOLD_MEMBERS
    kind: str = Field(max_length=32)
    city: str | None = Field(default=None, max_length=64)
    min_grams: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))
    max_member_days: int | None = None
    organisation_id: int | None = Field(default=None, foreign_key="organisation.id")
    created_at: datetime = Field(default_factory=utcnow)
