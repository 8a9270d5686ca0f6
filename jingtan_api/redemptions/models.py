"""The table of redemptions (issue #4).

Stock and balances change only through conditional UPDATEs inside one write transaction (see
``service.redeem``); no table holds cached totals that could drift from the ledger.
"""

from datetime import datetime

from sqlalchemy import BigInteger, Column, Index
from sqlmodel import Field, SQLModel

from jingtan_api.db import utcnow


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
