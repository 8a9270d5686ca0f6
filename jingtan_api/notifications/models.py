"""The table of member notifications (docs/live.md "Notifications")."""

from datetime import datetime

from sqlalchemy import Index, UniqueConstraint
from sqlmodel import Field, SQLModel

from jingtan_api.db import utcnow


class Notification(SQLModel, table=True):
    """One notice to one member: its ``kind`` and the numbers and ids its text is rendered from
    (``params``, a JSON object). ``dedupe_key`` is unique per member, so the same notice (one review
    decision, one expiry date of points, one redemption about to expire) is never created twice, however
    often the listener or the job runs. ``read_at`` is set when the member marks it read."""

    __tablename__ = "notification"
    __table_args__ = (
        UniqueConstraint("user_id", "dedupe_key", name="uq_notification_user_dedupe"),
        # The member's newest-first page.
        Index("ix_notification_user_id", "user_id", "id"),
        # The unread count and the unread-only page.
        Index("ix_notification_user_unread", "user_id", "read_at", "id"),
    )

    id: int | None = Field(default=None, primary_key=True)
    user_id: int = Field(foreign_key="user_account.id")
    # REVIEW_DECISION, POINTS_EXPIRING, REDEMPTION_EXPIRING
    kind: str = Field(max_length=32)
    params: str = Field(default="{}", max_length=2000)
    action_id: int | None = Field(default=None, foreign_key="action.id")
    redemption_id: int | None = Field(default=None, foreign_key="redemption.id")
    dedupe_key: str = Field(max_length=128)
    created_at: datetime = Field(default_factory=utcnow)
    read_at: datetime | None = None
