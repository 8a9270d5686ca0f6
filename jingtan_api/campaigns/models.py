"""Tables of merchant-funded campaigns (docs/merchants.md, "Campaigns").

A campaign's budget is the balance of its own ledger account (kind CAMPAIGN): funding moves points from
the merchant's account into it, every bonus moves points out of it to a member, and the close returns
what is left to the merchant. Nothing here caches money.
"""

from datetime import datetime

from sqlalchemy import BigInteger, Column, Index, UniqueConstraint
from sqlmodel import Field, SQLModel

from jingtan_api.db import utcnow


class Campaign(SQLModel, table=True):
    __tablename__ = "campaign"
    __table_args__ = (
        Index("ix_campaign_status_ends", "status", "ends_at", "id"),
        Index("ix_campaign_merchant_id", "merchant_id", "id"),
    )

    id: int | None = Field(default=None, primary_key=True)
    merchant_id: int = Field(foreign_key="merchant.id")
    title_zh: str = Field(max_length=100)
    title_en: str = Field(default="", max_length=100)
    description_zh: str = Field(default="", max_length=1000)
    description_en: str = Field(default="", max_length=1000)
    # Only actions of this type qualify (None: every type).
    action_type_code: str | None = Field(default=None, max_length=40)
    # The bonus of one qualifying action: fixed points, or a percentage of the action's points (100 =
    # "double points"); exactly one is set.
    bonus_points: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))
    bonus_percent: int | None = None
    per_member_limit: int = 1
    starts_at: datetime
    ends_at: datetime
    # ACTIVE, ENDED (closed: the rest of the budget went back to the merchant)
    status: str = Field(default="ACTIVE", max_length=16)
    account_id: int = Field(foreign_key="account.id", unique=True)
    funded_points: int = Field(default=0, sa_column=Column(BigInteger, nullable=False, default=0))
    refunded_points: int = Field(default=0, sa_column=Column(BigInteger, nullable=False, default=0))
    created_by_user_id: int | None = Field(default=None, foreign_key="user_account.id")
    created_at: datetime = Field(default_factory=utcnow)
    ended_at: datetime | None = None


class CampaignBonus(SQLModel, table=True):
    """A bonus paid for one approved action (promotional points: no CO2e)."""

    __tablename__ = "campaign_bonus"
    __table_args__ = (
        UniqueConstraint("campaign_id", "action_id", name="uq_campaign_bonus_action"),
        Index("ix_campaign_bonus_campaign_user", "campaign_id", "user_id"),
    )

    id: int | None = Field(default=None, primary_key=True)
    campaign_id: int = Field(foreign_key="campaign.id")
    action_id: int = Field(foreign_key="action.id")
    user_id: int = Field(foreign_key="user_account.id")
    points: int = Field(sa_column=Column(BigInteger, nullable=False))
    transaction_id: int = Field(foreign_key="ledger_transaction.id")
    created_at: datetime = Field(default_factory=utcnow)
