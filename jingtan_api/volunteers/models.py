"""Tables of the volunteer programme (issue #11): volunteers, training, events, referrals, earnings.

Points never live here: rewards, referral bonuses and commissions are ledger transactions
(docs/volunteers.md, docs/ledger.md); these tables say what each one was for.
"""

from datetime import datetime

from sqlalchemy import Column, Index, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

from jingtan_api.db import utcnow


class Volunteer(SQLModel, table=True):
    """A member who applied to volunteer; ``status`` PENDING/ACTIVE/REJECTED, ``level`` TRAINEE → CERTIFIED → LECTURER."""

    __tablename__ = "volunteer"
    __table_args__ = (Index("ix_volunteer_status_id", "status", "id"),)

    id: int | None = Field(default=None, primary_key=True)
    user_id: int = Field(foreign_key="user_account.id", unique=True)
    status: str = Field(default="PENDING", max_length=16)
    level: str = Field(default="TRAINEE", max_length=16)
    city: str = Field(max_length=64)
    skills: str = Field(default="[]", sa_column=Column(Text, nullable=False, default="[]"))
    motivation: str = Field(default="", max_length=500)
    referral_code: str = Field(max_length=16, unique=True)
    earnings_account_id: int | None = Field(default=None, foreign_key="account.id", unique=True)
    created_at: datetime = Field(default_factory=utcnow)
    reviewed_at: datetime | None = None
    reviewed_by_user_id: int | None = Field(default=None, foreign_key="user_account.id")
    review_reason: str = Field(default="", max_length=500)


class VolunteerCourse(SQLModel, table=True):
    """A training course; passing every required course of a level certifies a volunteer at that level."""

    __tablename__ = "volunteer_course"

    id: int | None = Field(default=None, primary_key=True)
    level: str = Field(max_length=16)  # the level the course leads to: CERTIFIED or LECTURER
    required: bool = True
    title_zh: str = Field(max_length=100)
    title_en: str = Field(max_length=100)
    # JSON list of {titleZh, titleEn, bodyZh, bodyEn}
    lessons: str = Field(default="[]", sa_column=Column(Text, nullable=False, default="[]"))
    # JSON list of {promptZh, promptEn, options: [str], answer: int} — answers never leave the server
    questions: str = Field(default="[]", sa_column=Column(Text, nullable=False, default="[]"))
    pass_mark_percent: int = 80
    created_by_user_id: int | None = Field(default=None, foreign_key="user_account.id")
    created_at: datetime = Field(default_factory=utcnow)


class VolunteerCourseAttempt(SQLModel, table=True):
    __tablename__ = "volunteer_course_attempt"
    __table_args__ = (Index("ix_volunteer_attempt_volunteer_course", "volunteer_id", "course_id"),)

    id: int | None = Field(default=None, primary_key=True)
    course_id: int = Field(foreign_key="volunteer_course.id")
    volunteer_id: int = Field(foreign_key="volunteer.id")
    answers: str = Field(default="[]", sa_column=Column(Text, nullable=False, default="[]"))
    score_percent: int
    passed: bool
    created_at: datetime = Field(default_factory=utcnow)


class VolunteerEvent(SQLModel, table=True):
    """An event a certified volunteer runs. The check-in secret is derived (HMAC of the server key and the
    event id), never stored."""

    __tablename__ = "volunteer_event"
    __table_args__ = (Index("ix_volunteer_event_starts_id", "starts_at", "id"),)

    id: int | None = Field(default=None, primary_key=True)
    volunteer_id: int = Field(foreign_key="volunteer.id", index=True)
    title_zh: str = Field(max_length=100)
    title_en: str = Field(max_length=100)
    description: str = Field(default="", max_length=2000)
    starts_at: datetime
    ends_at: datetime
    place: str = Field(max_length=200)
    latitude: float
    longitude: float
    capacity: int
    signed_up: int = 0
    action_type: str | None = Field(default=None, max_length=64)
    reward_points: int = 0
    # Service hours: PENDING until the event ended; CONFIRMED by an admin, AUTO_CONFIRMED by the job.
    hours_status: str = Field(default="PENDING", max_length=16)
    hours_minutes: int = 0
    hours_confirmed_by_user_id: int | None = Field(default=None, foreign_key="user_account.id")
    hours_confirmed_at: datetime | None = None
    created_at: datetime = Field(default_factory=utcnow)


class VolunteerEventSignup(SQLModel, table=True):
    __tablename__ = "volunteer_event_signup"
    __table_args__ = (UniqueConstraint("event_id", "user_id", name="uq_volunteer_signup_event_user"),)

    id: int | None = Field(default=None, primary_key=True)
    event_id: int = Field(foreign_key="volunteer_event.id")
    user_id: int = Field(foreign_key="user_account.id", index=True)
    created_at: datetime = Field(default_factory=utcnow)
    checked_in_at: datetime | None = None
    reward_transaction_id: int | None = Field(default=None, foreign_key="ledger_transaction.id")


class VolunteerSignal(SQLModel, table=True):
    """What registration saw of a new member (hashed client address and device), for farming checks."""

    __tablename__ = "volunteer_signal"

    id: int | None = Field(default=None, primary_key=True)
    user_id: int = Field(foreign_key="user_account.id", unique=True)
    address_hash: str = Field(max_length=64, index=True)
    device_hash: str | None = Field(default=None, max_length=64, index=True)
    created_at: datetime = Field(default_factory=utcnow)


class VolunteerReferral(SQLModel, table=True):
    """One member referred by one volunteer (a member is referred at most once)."""

    __tablename__ = "volunteer_referral"
    __table_args__ = (Index("ix_volunteer_referral_volunteer_id", "volunteer_id", "id"),)

    id: int | None = Field(default=None, primary_key=True)
    volunteer_id: int = Field(foreign_key="volunteer.id")
    referred_user_id: int = Field(foreign_key="user_account.id", unique=True)
    # PENDING (no approved action yet), CREDITED, CAPPED (activated over the daily/monthly cap: no points)
    status: str = Field(default="PENDING", max_length=16)
    points: int = 0
    transaction_id: int | None = Field(default=None, foreign_key="ledger_transaction.id")
    created_at: datetime = Field(default_factory=utcnow)
    activated_at: datetime | None = None


class VolunteerFlag(SQLModel, table=True):
    """An admin queue entry: a volunteer's referrals look farmed (SAME_ADDRESS, SAME_DEVICE, INACTIVE_REFERRALS)."""

    __tablename__ = "volunteer_flag"
    __table_args__ = (UniqueConstraint("volunteer_id", "kind", "subject", name="uq_volunteer_flag"),)

    id: int | None = Field(default=None, primary_key=True)
    volunteer_id: int = Field(foreign_key="volunteer.id", index=True)
    kind: str = Field(max_length=32)
    subject: str = Field(max_length=64)
    detail: str = Field(default="", max_length=500)
    status: str = Field(default="OPEN", max_length=16)
    created_at: datetime = Field(default_factory=utcnow)
    resolved_by_user_id: int | None = Field(default=None, foreign_key="user_account.id")
    resolved_at: datetime | None = None
    resolution: str = Field(default="", max_length=500)


class VolunteerMerchant(SQLModel, table=True):
    """A merchant a volunteer brought (their code on its application) and the commission terms."""

    __tablename__ = "volunteer_merchant"

    id: int | None = Field(default=None, primary_key=True)
    volunteer_id: int = Field(foreign_key="volunteer.id", index=True)
    merchant_id: int = Field(foreign_key="merchant.id", unique=True)
    share_basis_points: int
    starts_at: datetime
    ends_at: datetime
    created_at: datetime = Field(default_factory=utcnow)


class VolunteerCommission(SQLModel, table=True):
    """The commission on one redemption; ACCRUED with it, REVERSED when it is refunded."""

    __tablename__ = "volunteer_commission"
    __table_args__ = (Index("ix_volunteer_commission_volunteer_id", "volunteer_id", "id"),)

    id: int | None = Field(default=None, primary_key=True)
    volunteer_id: int = Field(foreign_key="volunteer.id")
    merchant_id: int = Field(foreign_key="merchant.id")
    redemption_id: int = Field(foreign_key="redemption.id", unique=True)
    redeemed_points: int
    points: int
    status: str = Field(default="ACCRUED", max_length=16)
    transaction_id: int = Field(foreign_key="ledger_transaction.id")
    reversal_transaction_id: int | None = Field(default=None, foreign_key="ledger_transaction.id")
    created_at: datetime = Field(default_factory=utcnow)
    reversed_at: datetime | None = None


class VolunteerPayout(SQLModel, table=True):
    """A payout request: REQUESTED (points held in the payouts account), PAID (with an external reference)."""

    __tablename__ = "volunteer_payout"
    __table_args__ = (Index("ix_volunteer_payout_volunteer_id", "volunteer_id", "id"),)

    id: int | None = Field(default=None, primary_key=True)
    volunteer_id: int = Field(foreign_key="volunteer.id")
    points: int
    status: str = Field(default="REQUESTED", max_length=16)
    transaction_id: int = Field(foreign_key="ledger_transaction.id")
    external_reference: str = Field(default="", max_length=100)
    requested_at: datetime = Field(default_factory=utcnow)
    paid_at: datetime | None = None
    paid_by_user_id: int | None = Field(default=None, foreign_key="user_account.id")
