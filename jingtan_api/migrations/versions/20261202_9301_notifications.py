"""notifications: a member's notices with read/unread

Revision ID: 20261202_9301
Revises: 20261202_9201
Create Date: 2026-12-02 16:30:00
"""

from alembic import op
import sqlalchemy as sa
import sqlmodel


revision = '20261202_9301'
down_revision = '20261202_9201'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'notification',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('user_id', sa.Integer(), nullable=False),
        sa.Column('kind', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column('params', sqlmodel.sql.sqltypes.AutoString(length=2000), nullable=False),
        sa.Column('action_id', sa.Integer(), nullable=True),
        sa.Column('redemption_id', sa.Integer(), nullable=True),
        sa.Column('dedupe_key', sqlmodel.sql.sqltypes.AutoString(length=128), nullable=False),
        sa.Column('created_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column('read_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(['action_id'], ['action.id'], name=op.f('fk_notification_action_id_action')),
        sa.ForeignKeyConstraint(['redemption_id'], ['redemption.id'], name=op.f('fk_notification_redemption_id_redemption')),
        sa.ForeignKeyConstraint(['user_id'], ['user_account.id'], name=op.f('fk_notification_user_id_user_account')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_notification')),
        sa.UniqueConstraint('user_id', 'dedupe_key', name='uq_notification_user_dedupe'),
    )
    op.create_index('ix_notification_user_id', 'notification', ['user_id', 'id'], unique=False)
    op.create_index('ix_notification_user_unread', 'notification', ['user_id', 'read_at', 'id'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_notification_user_unread', table_name='notification')
    op.drop_index('ix_notification_user_id', table_name='notification')
    op.drop_table('notification')
