"""Webhook tables: partners' endpoints, the durable outbox (one delivery per event and endpoint) and
every delivery attempt."""

from datetime import datetime

from sqlalchemy import Index, UniqueConstraint
from sqlmodel import Field, SQLModel


class WebhookEndpoint(SQLModel, table=True):
    """A URL that receives signed POSTs for ``event_types`` (a comma-separated list). ``merchant_id``
    set: only that merchant's events (registered by its staff); None: an admin's platform-wide endpoint."""

    __tablename__ = "webhook_endpoint"

    id: int | None = Field(default=None, primary_key=True)
    merchant_id: int | None = Field(default=None, foreign_key="merchant.id", index=True)
    url: str = Field(max_length=2000)
    secret: str = Field(max_length=200)
    event_types: str = Field(max_length=2000)
    active: bool = Field(default=True)
    description: str = Field(default="", max_length=500)
    created_by: int | None = Field(default=None, foreign_key="user_account.id")
    created_at: datetime
    updated_at: datetime
    # Set by deleteWebhookEndpoint (soft delete: the endpoint stops receiving, its delivery history stays).
    deleted_at: datetime | None = None


class WebhookDelivery(SQLModel, table=True):
    """The outbox row: written in the transaction of the event, delivered after commit by the worker.
    ``event_id`` is the idempotency id the receiver sees (the same for every endpoint and every retry)."""

    __tablename__ = "webhook_delivery"
    __table_args__ = (
        UniqueConstraint("endpoint_id", "event_id", name="uq_webhook_delivery_endpoint_event"),
        Index("ix_webhook_delivery_due", "status", "next_attempt_at"),
        Index("ix_webhook_delivery_endpoint", "endpoint_id", "id"),
    )

    id: int | None = Field(default=None, primary_key=True)
    endpoint_id: int = Field(foreign_key="webhook_endpoint.id")
    event_id: str = Field(max_length=64)
    event_type: str = Field(max_length=100)
    payload: str = Field(max_length=100000)
    status: str = Field(default="PENDING", max_length=20)  # PENDING | SUCCEEDED | FAILED
    attempts: int = Field(default=0)
    next_attempt_at: datetime
    claimed_by: str | None = Field(default=None, max_length=200)
    claimed_until: datetime | None = None
    last_status_code: int | None = None
    last_error: str | None = Field(default=None, max_length=500)
    created_at: datetime
    updated_at: datetime


class WebhookAttempt(SQLModel, table=True):
    """One POST of a delivery: what the receiver answered (status, truncated body) or why it failed."""

    __tablename__ = "webhook_attempt"
    __table_args__ = (Index("ix_webhook_attempt_delivery", "delivery_id", "number"),)

    id: int | None = Field(default=None, primary_key=True)
    delivery_id: int = Field(foreign_key="webhook_delivery.id")
    number: int
    started_at: datetime
    duration_ms: int
    status_code: int | None = None
    error: str | None = Field(default=None, max_length=500)
    response_body: str = Field(default="", max_length=4096)
