"""The job runner's table: one row per registered job, holding its lease and its last run."""

from datetime import datetime

from sqlmodel import Field, SQLModel


class JobLease(SQLModel, table=True):
    """``holder`` runs ``name`` until ``lease_until`` (renewed while it runs); a run is due when
    ``next_due_at`` has passed. Claiming is one conditional UPDATE, so across processes and machines at
    most one worker holds a job at a time and each due run is claimed once."""

    __tablename__ = "job_lease"

    name: str = Field(primary_key=True, max_length=100)
    holder: str | None = Field(default=None, max_length=200)
    lease_until: datetime | None = None
    next_due_at: datetime | None = None
    last_started_at: datetime | None = None
    last_finished_at: datetime | None = None
    last_status: str | None = Field(default=None, max_length=20)
    last_result: str = Field(default="{}", max_length=2000)
    last_holder: str | None = Field(default=None, max_length=200)
    runs: int = Field(default=0)
