"""webhooks: partner endpoints, the delivery outbox and delivery attempts

Revision ID: 20261202_9201
Revises: 20261202_9101
Create Date: 2026-12-02 12:20:00
"""

from alembic import op
import sqlalchemy as sa
import sqlmodel


revision = '20261202_9201'
down_revision = '20261202_9101'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'webhook_endpoint',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('merchant_id', sa.Integer(), nullable=True),
        sa.Column('url', sqlmodel.sql.sqltypes.AutoString(length=2000), nullable=False),
        sa.Column('secret', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column('event_types', sqlmodel.sql.sqltypes.AutoString(length=2000), nullable=False),
        sa.Column('active', sa.Boolean(), nullable=False),
        sa.Column('description', sqlmodel.sql.sqltypes.AutoString(length=500), nullable=False),
        sa.Column('created_by', sa.Integer(), nullable=True),
        sa.Column('created_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column('updated_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(['created_by'], ['user_account.id'], name=op.f('fk_webhook_endpoint_created_by_user_account')),
        sa.ForeignKeyConstraint(['merchant_id'], ['merchant.id'], name=op.f('fk_webhook_endpoint_merchant_id_merchant')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_webhook_endpoint')),
    )
    op.create_index(op.f('ix_webhook_endpoint_merchant_id'), 'webhook_endpoint', ['merchant_id'], unique=False)
    op.create_table(
        'webhook_delivery',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('endpoint_id', sa.Integer(), nullable=False),
        sa.Column('event_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column('event_type', sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
        sa.Column('payload', sqlmodel.sql.sqltypes.AutoString(length=100000), nullable=False),
        sa.Column('status', sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
        sa.Column('attempts', sa.Integer(), nullable=False),
        sa.Column('next_attempt_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column('claimed_by', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=True),
        sa.Column('claimed_until', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
        sa.Column('last_status_code', sa.Integer(), nullable=True),
        sa.Column('last_error', sqlmodel.sql.sqltypes.AutoString(length=500), nullable=True),
        sa.Column('created_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column('updated_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(['endpoint_id'], ['webhook_endpoint.id'], name=op.f('fk_webhook_delivery_endpoint_id_webhook_endpoint')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_webhook_delivery')),
        sa.UniqueConstraint('endpoint_id', 'event_id', name='uq_webhook_delivery_endpoint_event'),
    )
    op.create_index('ix_webhook_delivery_due', 'webhook_delivery', ['status', 'next_attempt_at'], unique=False)
    op.create_index('ix_webhook_delivery_endpoint', 'webhook_delivery', ['endpoint_id', 'id'], unique=False)
    op.create_table(
        'webhook_attempt',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('delivery_id', sa.Integer(), nullable=False),
        sa.Column('number', sa.Integer(), nullable=False),
        sa.Column('started_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column('duration_ms', sa.Integer(), nullable=False),
        sa.Column('status_code', sa.Integer(), nullable=True),
        sa.Column('error', sqlmodel.sql.sqltypes.AutoString(length=500), nullable=True),
        sa.Column('response_body', sqlmodel.sql.sqltypes.AutoString(length=4096), nullable=False),
        sa.ForeignKeyConstraint(['delivery_id'], ['webhook_delivery.id'], name=op.f('fk_webhook_attempt_delivery_id_webhook_delivery')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_webhook_attempt')),
    )
    op.create_index('ix_webhook_attempt_delivery', 'webhook_attempt', ['delivery_id', 'number'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_webhook_attempt_delivery', table_name='webhook_attempt')
    op.drop_table('webhook_attempt')
    op.drop_index('ix_webhook_delivery_endpoint', table_name='webhook_delivery')
    op.drop_index('ix_webhook_delivery_due', table_name='webhook_delivery')
    op.drop_table('webhook_delivery')
    op.drop_index(op.f('ix_webhook_endpoint_merchant_id'), table_name='webhook_endpoint')
    op.drop_table('webhook_endpoint')
