"""Tables of the identity domain: one-time codes, data exports, account deletion requests."""

from datetime import datetime

from sqlalchemy import Index, Text
from sqlmodel import Column, Field, SQLModel

from jingtan_api.db import utcnow


class VerificationCode(SQLModel, table=True):
    """A 6-digit one-time code sent to a phone or an email address for one purpose. Only an HMAC of the
    code is stored. At most one code per (purpose, destination) is active: issuing one supersedes the
    previous. Failed attempts are counted on the row, so every server process shares them."""

    __tablename__ = "verification_code"
    __table_args__ = (
        Index("ix_verification_code_destination_at", "destination", "created_at"),
        Index("ix_verification_code_address_at", "address", "created_at"),
        Index("ix_verification_code_purpose_destination", "purpose", "destination", "id"),
    )

    id: int | None = Field(default=None, primary_key=True)
    purpose: str = Field(max_length=32)
    channel: str = Field(max_length=8)  # SMS or EMAIL
    destination: str = Field(max_length=254)  # normalised phone (E.164) or email
    # The account the code is for (None: no account holds the destination; the code is never sent).
    user_id: int | None = Field(default=None, foreign_key="user_account.id", index=True)
    code_hash: str = Field(max_length=64)
    address: str = Field(max_length=64)  # client address bucket that asked for it
    created_at: datetime = Field(default_factory=utcnow)
    expires_at: datetime
    attempts: int = 0
    consumed_at: datetime | None = None
    superseded_at: datetime | None = None


class DataExport(SQLModel, table=True):
    """A member's copy of their data (PIPL art. 45): an archive downloaded once through a signed,
    expiring link. The archive is deleted when downloaded or expired; the row stays as the record."""

    __tablename__ = "data_export"

    id: int | None = Field(default=None, primary_key=True)
    user_id: int = Field(foreign_key="user_account.id", index=True)
    status: str = Field(default="READY", max_length=16)  # READY, DOWNLOADED, EXPIRED
    created_at: datetime = Field(default_factory=utcnow)
    expires_at: datetime
    downloaded_at: datetime | None = None
    size_bytes: int = 0
    # The ZIP archive (data.json + statement.csv), base64; NULL once downloaded or expired.
    archive: str | None = Field(default=None, sa_column=Column(Text, nullable=True))


class DeletionRequest(SQLModel, table=True):
    """A member's request to delete their account (PIPL art. 47): confirmed by a code, carried out after
    the cooling-off period unless cancelled. The row stays as the record (the user row is anonymised)."""

    __tablename__ = "deletion_request"
    __table_args__ = (Index("ix_deletion_request_status_due", "status", "due_at"),)

    id: int | None = Field(default=None, primary_key=True)
    user_id: int = Field(foreign_key="user_account.id", index=True)
    status: str = Field(default="SCHEDULED", max_length=16)  # SCHEDULED, CANCELLED, COMPLETED
    balance_choice: str = Field(max_length=16)  # EXPIRE or DONATE
    created_at: datetime = Field(default_factory=utcnow)
    due_at: datetime
    cancelled_at: datetime | None = None
    completed_at: datetime | None = None
    points_disposed: int = 0
    ledger_transaction_id: int | None = Field(default=None, foreign_key="ledger_transaction.id")
