"""acting admin: the admin who created the API token a request used, for another user

Adds ``audit_log.acting_admin_id`` (indexed) and ``ledger_transaction.acting_admin_id``, both nullable
foreign keys to ``user_account``. Existing rows keep NULL: before this revision nobody recorded it.

Revision ID: 20261202_0005
Revises: 20261125_0004
Create Date: 2026-12-02 03:20:00
"""

from alembic import op
import sqlalchemy as sa


revision = '20261202_0005'
down_revision = '20261125_0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('audit_log', schema=None) as batch_op:
        batch_op.add_column(sa.Column('acting_admin_id', sa.Integer(), nullable=True))
        batch_op.create_index(batch_op.f('ix_audit_log_acting_admin_id'), ['acting_admin_id'], unique=False)
        batch_op.create_foreign_key(batch_op.f('fk_audit_log_acting_admin_id_user_account'), 'user_account',
                                    ['acting_admin_id'], ['id'])
    with op.batch_alter_table('ledger_transaction', schema=None) as batch_op:
        batch_op.add_column(sa.Column('acting_admin_id', sa.Integer(), nullable=True))
        batch_op.create_foreign_key(batch_op.f('fk_ledger_transaction_acting_admin_id_user_account'), 'user_account',
                                    ['acting_admin_id'], ['id'])


def downgrade() -> None:
    with op.batch_alter_table('ledger_transaction', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('fk_ledger_transaction_acting_admin_id_user_account'), type_='foreignkey')
        batch_op.drop_column('acting_admin_id')
    with op.batch_alter_table('audit_log', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('fk_audit_log_acting_admin_id_user_account'), type_='foreignkey')
        batch_op.drop_index(batch_op.f('ix_audit_log_acting_admin_id'))
        batch_op.drop_column('acting_admin_id')
