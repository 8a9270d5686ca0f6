from datetime import datetime

from sqlalchemy import Index
from sqlmodel import Field, SQLModel

from jingtan_api.db import utcnow


class AuditLogEntry(SQLModel, table=True):
    __tablename__ = "audit_log"
    __table_args__ = (Index("ix_audit_log_target", "target_type", "target_id"),)

    id: int | None = Field(default=None, primary_key=True)
    actor_user_id: int | None = Field(default=None, foreign_key="user_account.id", index=True)
    # The admin who created the API token the actor used, when it was made for the actor by someone else.
    acting_admin_id: int | None = Field(default=None, foreign_key="user_account.id", index=True)
    action: str = Field(max_length=64, index=True)
    target_type: str = Field(max_length=32)
    target_id: int | None = None
    reason: str = Field(default="", max_length=500)
    details: str = Field(default="{}", max_length=4000)
    request_id: str | None = Field(default=None, max_length=64)
    created_at: datetime = Field(default_factory=utcnow)
