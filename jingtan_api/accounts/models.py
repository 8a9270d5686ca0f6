"""Tables of the points ledger (docs/ledger.md).

Entries are append-only; a transaction's entries sum to zero; ``Account.balance`` is a cache of the sum
of its entries, updated in the same database transaction by a conditional UPDATE.
"""

from datetime import datetime

from sqlalchemy import BigInteger, CheckConstraint, Column, Index, UniqueConstraint
from sqlmodel import Field, SQLModel

from jingtan_api.db import utcnow


class Account(SQLModel, table=True):
    __tablename__ = "account"

    id: int | None = Field(default=None, primary_key=True)
    # MEMBER, MERCHANT, ISSUANCE, EXPIRED (platform kinds may run negative only when allow_negative).
    kind: str = Field(max_length=16, index=True)
    user_id: int | None = Field(default=None, foreign_key="user_account.id", unique=True)
    code: str | None = Field(default=None, max_length=64, unique=True)
    balance: int = Field(default=0, sa_column=Column(BigInteger, nullable=False, default=0))
    allow_negative: bool = False
    created_at: datetime = Field(default_factory=utcnow)


class LedgerTransaction(SQLModel, table=True):
    __tablename__ = "ledger_transaction"

    id: int | None = Field(default=None, primary_key=True)
    # GRANT, REVOKE, EXPIRY, ACTION_CREDIT, REDEMPTION, REFUND, ...
    kind: str = Field(max_length=32, index=True)
    memo: str = Field(default="", max_length=500)
    actor_user_id: int | None = Field(default=None, foreign_key="user_account.id")
    # The admin who created the API token that caused this transaction, for another user (see auth).
    acting_admin_id: int | None = Field(default=None, foreign_key="user_account.id")
    reverses_id: int | None = Field(default=None, foreign_key="ledger_transaction.id")
    created_at: datetime = Field(default_factory=utcnow)


class LedgerEntry(SQLModel, table=True):
    __tablename__ = "ledger_entry"
    __table_args__ = (Index("ix_ledger_entry_account_id_id", "account_id", "id"),)

    id: int | None = Field(default=None, primary_key=True)
    transaction_id: int = Field(foreign_key="ledger_transaction.id", index=True)
    account_id: int = Field(foreign_key="account.id")
    amount: int = Field(sa_column=Column(BigInteger, nullable=False))
    balance_after: int = Field(sa_column=Column(BigInteger, nullable=False))
    created_at: datetime = Field(default_factory=utcnow)


class PointsLot(SQLModel, table=True):
    """What is left of one credit to a member account; spends consume soonest-expiring lots first."""

    __tablename__ = "points_lot"
    __table_args__ = (Index("ix_points_lot_account_expires", "account_id", "expires_at", "id"),)

    id: int | None = Field(default=None, primary_key=True)
    account_id: int = Field(foreign_key="account.id")
    # The credit entry that opened the lot. One entry may open several lots (a refund restores the
    # points it returns with their original expiries, one lot per expiry).
    entry_id: int = Field(foreign_key="ledger_entry.id", index=True)
    amount: int = Field(sa_column=Column(BigInteger, nullable=False))
    remaining: int = Field(sa_column=Column(BigInteger, nullable=False))
    expires_at: datetime = Field(index=True)
    created_at: datetime = Field(default_factory=utcnow)


class LotConsumption(SQLModel, table=True):
    """How much of one lot a debit entry of a member account consumed (written by the ledger for every
    member debit; the amounts of a debit entry's rows sum to -entry.amount). ``expires_at`` is the lot's,
    copied so that a refund can restore points with the expiry they had."""

    __tablename__ = "lot_consumption"
    __table_args__ = (CheckConstraint("amount > 0", name="amount_positive"),)

    id: int | None = Field(default=None, primary_key=True)
    entry_id: int = Field(foreign_key="ledger_entry.id", index=True)
    lot_id: int = Field(foreign_key="points_lot.id")
    amount: int = Field(sa_column=Column(BigInteger, nullable=False))
    expires_at: datetime


class IdempotencyRecord(SQLModel, table=True):
    """One effect per (scope, key): the first request's hash and the resource it produced."""

    __tablename__ = "idempotency_record"
    __table_args__ = (UniqueConstraint("scope", "key", name="uq_idempotency_scope_key"),)

    id: int | None = Field(default=None, primary_key=True)
    scope: str = Field(max_length=100)
    key: str = Field(max_length=128)
    request_hash: str = Field(max_length=64)
    result_type: str = Field(default="", max_length=32)
    result_id: int | None = None
    created_at: datetime = Field(default_factory=utcnow)
