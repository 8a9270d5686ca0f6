"""job leases: one row per periodic job (who holds it, until when, when it is next due, its last run)

Revision ID: 20261202_9101
Revises: 20261202_7101
Create Date: 2026-12-02 06:15:00
"""

from alembic import op
import sqlalchemy as sa
import sqlmodel


revision = '20261202_9101'
down_revision = '20261202_7101'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'job_lease',
        sa.Column('name', sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
        sa.Column('holder', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=True),
        sa.Column('lease_until', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
        sa.Column('next_due_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
        sa.Column('last_started_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
        sa.Column('last_finished_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
        sa.Column('last_status', sqlmodel.sql.sqltypes.AutoString(length=20), nullable=True),
        sa.Column('last_result', sqlmodel.sql.sqltypes.AutoString(length=2000), nullable=False),
        sa.Column('last_holder', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=True),
        sa.Column('runs', sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint('name', name=op.f('pk_job_lease')),
    )


def downgrade() -> None:
    op.drop_table('job_lease')
