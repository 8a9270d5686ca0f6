"""Tables of impact and statistics (docs/impact.md).

Every table here except ``impact_profile`` is a **maintained aggregate**: rows are upserted by the
domain-event listeners of ``jingtan_api.impact.listeners`` inside the transaction that approves an
action, records it, posts a ledger transaction or confirms a redemption — so they are exactly as
consistent as the ledger (committed together, rolled back together) and a page reads a handful of
index rows instead of summing a million actions. ``jingtan impact rebuild`` recomputes them from the
source tables (after a bulk load, or to check them).
"""

from datetime import date, datetime

from sqlalchemy import BigInteger, Column, Index, UniqueConstraint
from sqlmodel import Field, SQLModel

from jingtan_api.db import utcnow


class ImpactProfile(SQLModel, table=True):
    """A member's impact preferences: their city (for city leaderboards and city challenges) and whether
    they are named on leaderboards (opted out: counted in every total, shown as an anonymous entry)."""

    __tablename__ = "impact_profile"

    user_id: int = Field(foreign_key="user_account.id", primary_key=True, sa_column_kwargs={"autoincrement": False})
    city: str = Field(default="", max_length=64, index=True)
    leaderboard_opt_out: bool = False
    updated_at: datetime = Field(default_factory=utcnow)


class ImpactTotal(SQLModel, table=True):
    """Grams CO2e and approved actions of one entrant on one board in one period.

    ``board``: MEMBER (all members; ``board_key`` ''), HOUSEHOLD (key: household id), ORGANISATION (key:
    organisation id; entrants are its members), CITY (key: city name), ORGANISATIONS (key ''; entrants
    are organisations). ``period``: ``A`` all time, ``M2026-12`` a month, ``W2026-49`` an ISO week,
    ``D2026-12-02`` a day (MEMBER board only: who was active). ``entrant_id`` is a user id, or an
    organisation id on ORGANISATIONS."""

    __tablename__ = "impact_total"
    __table_args__ = (
        UniqueConstraint("board", "board_key", "period", "entrant_id", name="uq_impact_total_entry"),
        # The leaderboard order (grams DESC, id DESC) is this index read backwards: a page is O(page size).
        Index("ix_impact_total_rank", "board", "board_key", "period", "grams", "id"),
    )

    id: int | None = Field(default=None, primary_key=True)
    board: str = Field(max_length=16)
    board_key: str = Field(default="", max_length=64)
    period: str = Field(max_length=12)
    entrant_id: int
    grams: int = Field(default=0, sa_column=Column(BigInteger, nullable=False, default=0))
    actions: int = Field(default=0, sa_column=Column(BigInteger, nullable=False, default=0))


class ImpactBreakdown(SQLModel, table=True):
    """Grams CO2e and approved actions of one subject by month and action type.

    ``subject``: MEMBER (key: user id), HOUSEHOLD (household id), ORGANISATION (organisation id), CITY
    (city name), PLATFORM (key '')."""

    __tablename__ = "impact_breakdown"
    __table_args__ = (
        UniqueConstraint("subject", "subject_key", "month", "plugin_code", name="uq_impact_breakdown_entry"),
    )

    id: int | None = Field(default=None, primary_key=True)
    subject: str = Field(max_length=16)
    subject_key: str = Field(default="", max_length=64)
    month: str = Field(max_length=7)
    plugin_code: str = Field(max_length=40)
    grams: int = Field(default=0, sa_column=Column(BigInteger, nullable=False, default=0))
    actions: int = Field(default=0, sa_column=Column(BigInteger, nullable=False, default=0))


class StatsDaily(SQLModel, table=True):
    """One number of the admin dashboard for one day (in ``actions.timezone``).

    ``metric`` / ``dim``: ``members_new`` / '' ; ``actions`` / ``STATUS:plugin`` (recorded, by outcome);
    ``reviews`` / ``STATUS:plugin`` ; ``co2e`` / plugin (grams approved) ; ``points`` / ledger kind
    (points moved: the sum of the transaction's credits) ; ``merchant_redemptions`` and
    ``merchant_points`` / merchant id (confirmed redemptions)."""

    __tablename__ = "stats_daily"
    __table_args__ = (UniqueConstraint("metric", "day", "dim", name="uq_stats_daily_entry"),)

    id: int | None = Field(default=None, primary_key=True)
    metric: str = Field(max_length=32)
    day: date
    dim: str = Field(default="", max_length=80)
    value: int = Field(default=0, sa_column=Column(BigInteger, nullable=False, default=0))


class MedalAward(SQLModel, table=True):
    """A medal (勋章) a member earned, once, when their cumulative total crossed its milestone."""

    __tablename__ = "medal_award"
    __table_args__ = (UniqueConstraint("user_id", "code", name="uq_medal_award_user_code"),)

    id: int | None = Field(default=None, primary_key=True)
    user_id: int = Field(foreign_key="user_account.id", index=True)
    code: str = Field(max_length=32)
    awarded_at: datetime = Field(default_factory=utcnow)
