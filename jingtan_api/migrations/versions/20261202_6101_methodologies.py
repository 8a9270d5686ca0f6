"""methodologies: versions of each action type's methodology, their expert review, and the version of each action

Adds ``methodology_version`` (factor table, formula text, review state), ``methodology_review`` (review
history) and ``action.methodology_version_id`` (nullable: actions recorded before this revision name no
version; they keep their stored factors and credits); widens ``action.status`` to 24 characters for
PENDING_METHODOLOGY.

Revision ID: 20261202_6101
Revises: 20261202_5101
Create Date: 2026-12-02 06:13:43.642789
"""

from alembic import op
import sqlalchemy as sa
import sqlmodel


revision = '20261202_6101'
down_revision = '20261202_5101'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('methodology_version',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('plugin_code', sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
    sa.Column('version_no', sa.Integer(), nullable=False),
    sa.Column('fingerprint', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('plugin', sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
    sa.Column('plugin_version', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('distribution_version', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('title', sa.Text(), nullable=False),
    sa.Column('reference', sa.Text(), nullable=False),
    sa.Column('text', sa.Text(), nullable=False),
    sa.Column('factors', sa.Text(), nullable=False),
    sa.Column('status', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('decided_by', sa.Integer(), nullable=True),
    sa.Column('decided_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
    sa.Column('decision_note', sqlmodel.sql.sqltypes.AutoString(length=500), nullable=True),
    sa.Column('created_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['decided_by'], ['user_account.id'], name=op.f('fk_methodology_version_decided_by_user_account')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_methodology_version')),
    sa.UniqueConstraint('plugin_code', 'fingerprint', name='uq_methodology_version_fingerprint'),
    sa.UniqueConstraint('plugin_code', 'version_no', name='uq_methodology_version_no')
    )
    op.create_table('methodology_review',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('version_id', sa.Integer(), nullable=False),
    sa.Column('event', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('actor_user_id', sa.Integer(), nullable=True),
    sa.Column('note', sqlmodel.sql.sqltypes.AutoString(length=500), nullable=False),
    sa.Column('created_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['actor_user_id'], ['user_account.id'], name=op.f('fk_methodology_review_actor_user_id_user_account')),
    sa.ForeignKeyConstraint(['version_id'], ['methodology_version.id'], name=op.f('fk_methodology_review_version_id_methodology_version')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_methodology_review'))
    )
    with op.batch_alter_table('methodology_review', schema=None) as batch_op:
        batch_op.create_index('ix_methodology_review_version_id', ['version_id', 'id'], unique=False)

    with op.batch_alter_table('action', schema=None) as batch_op:
        batch_op.alter_column('status', existing_type=sa.String(length=16), type_=sqlmodel.sql.sqltypes.AutoString(length=24),
                              existing_nullable=False)
        batch_op.add_column(sa.Column('methodology_version_id', sa.Integer(), nullable=True))
        batch_op.create_index('ix_action_methodology_status_id', ['methodology_version_id', 'status', 'id'], unique=False)
        batch_op.create_foreign_key(batch_op.f('fk_action_methodology_version_id_methodology_version'), 'methodology_version', ['methodology_version_id'], ['id'])



def downgrade() -> None:
    with op.batch_alter_table('action', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('fk_action_methodology_version_id_methodology_version'), type_='foreignkey')
        batch_op.drop_index('ix_action_methodology_status_id')
        batch_op.drop_column('methodology_version_id')
        batch_op.alter_column('status', existing_type=sqlmodel.sql.sqltypes.AutoString(length=24), type_=sa.String(length=16),
                              existing_nullable=False)

    with op.batch_alter_table('methodology_review', schema=None) as batch_op:
        batch_op.drop_index('ix_methodology_review_version_id')

    op.drop_table('methodology_review')
    op.drop_table('methodology_version')
