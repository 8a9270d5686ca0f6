"""webhook_endpoint.deleted_at: deleteWebhookEndpoint is a soft delete (the delivery history stays)

Revision ID: 20261202_9401
Revises: 20261202_9301
Create Date: 2026-12-02 16:30:00
"""

from alembic import op
import sqlalchemy as sa
import sqlmodel


revision = '20261202_9401'
down_revision = '20261202_9301'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('webhook_endpoint', schema=None) as batch_op:
        batch_op.add_column(sa.Column('deleted_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('webhook_endpoint', schema=None) as batch_op:
        batch_op.drop_column('deleted_at')
