"""households, organisations, retirements (issue #10, docs/community.md)

Adds households (members as [joined_at, left_at) stays, single-use invites, pool transfers),
organisations (members, invites, join requests, donations), retirements (records, their action-gram
items, and the per-action retirement cursor that keeps any gram from being retired twice), and
``action.household_id`` (the submitter's household when the action was submitted; NULL before).

Revision ID: 20261202_3101
Revises: 20261202_0005
Create Date: 2026-12-02 06:01:04.861832
"""

from alembic import op
import sqlalchemy as sa
import sqlmodel


revision = '20261202_3101'
down_revision = '20261202_0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('household',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sqlmodel.sql.sqltypes.AutoString(length=60), nullable=False),
    sa.Column('status', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('owner_user_id', sa.Integer(), nullable=True),
    sa.Column('pool_account_id', sa.Integer(), nullable=True),
    sa.Column('created_by_user_id', sa.Integer(), nullable=True),
    sa.Column('created_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.Column('dissolved_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
    sa.ForeignKeyConstraint(['created_by_user_id'], ['user_account.id'], name=op.f('fk_household_created_by_user_id_user_account')),
    sa.ForeignKeyConstraint(['owner_user_id'], ['user_account.id'], name=op.f('fk_household_owner_user_id_user_account')),
    sa.ForeignKeyConstraint(['pool_account_id'], ['account.id'], name=op.f('fk_household_pool_account_id_account')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_household')),
    sa.UniqueConstraint('pool_account_id', name=op.f('uq_household_pool_account_id'))
    )
    with op.batch_alter_table('household', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_household_owner_user_id'), ['owner_user_id'], unique=False)

    op.create_table('organisation',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('kind', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('name_zh', sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
    sa.Column('name_en', sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
    sa.Column('description_zh', sa.Text(), nullable=False),
    sa.Column('description_en', sa.Text(), nullable=False),
    sa.Column('city', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('district', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('website', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
    sa.Column('registration_number', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('status', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('applicant_user_id', sa.Integer(), nullable=True),
    sa.Column('account_id', sa.Integer(), nullable=True),
    sa.Column('created_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.Column('reviewed_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
    sa.Column('reviewed_by_user_id', sa.Integer(), nullable=True),
    sa.Column('review_reason', sqlmodel.sql.sqltypes.AutoString(length=500), nullable=False),
    sa.Column('closed_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
    sa.ForeignKeyConstraint(['account_id'], ['account.id'], name=op.f('fk_organisation_account_id_account')),
    sa.ForeignKeyConstraint(['applicant_user_id'], ['user_account.id'], name=op.f('fk_organisation_applicant_user_id_user_account')),
    sa.ForeignKeyConstraint(['reviewed_by_user_id'], ['user_account.id'], name=op.f('fk_organisation_reviewed_by_user_id_user_account')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_organisation')),
    sa.UniqueConstraint('account_id', name=op.f('uq_organisation_account_id'))
    )
    with op.batch_alter_table('organisation', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_organisation_applicant_user_id'), ['applicant_user_id'], unique=False)
        batch_op.create_index('ix_organisation_status_kind_city', ['status', 'kind', 'city'], unique=False)

    op.create_table('household_invite',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('household_id', sa.Integer(), nullable=False),
    sa.Column('code_hash', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('created_by_user_id', sa.Integer(), nullable=False),
    sa.Column('created_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.Column('expires_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.Column('used_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
    sa.Column('used_by_user_id', sa.Integer(), nullable=True),
    sa.Column('revoked_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
    sa.ForeignKeyConstraint(['created_by_user_id'], ['user_account.id'], name=op.f('fk_household_invite_created_by_user_id_user_account')),
    sa.ForeignKeyConstraint(['household_id'], ['household.id'], name=op.f('fk_household_invite_household_id_household')),
    sa.ForeignKeyConstraint(['used_by_user_id'], ['user_account.id'], name=op.f('fk_household_invite_used_by_user_id_user_account')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_household_invite')),
    sa.UniqueConstraint('code_hash', name=op.f('uq_household_invite_code_hash'))
    )
    with op.batch_alter_table('household_invite', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_household_invite_household_id'), ['household_id'], unique=False)

    op.create_table('household_pool_transfer',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('household_id', sa.Integer(), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('direction', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('points', sa.BigInteger(), nullable=False),
    sa.Column('transaction_id', sa.Integer(), nullable=False),
    sa.Column('created_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['household_id'], ['household.id'], name=op.f('fk_household_pool_transfer_household_id_household')),
    sa.ForeignKeyConstraint(['transaction_id'], ['ledger_transaction.id'], name=op.f('fk_household_pool_transfer_transaction_id_ledger_transaction')),
    sa.ForeignKeyConstraint(['user_id'], ['user_account.id'], name=op.f('fk_household_pool_transfer_user_id_user_account')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_household_pool_transfer')),
    sa.UniqueConstraint('transaction_id', name=op.f('uq_household_pool_transfer_transaction_id'))
    )
    with op.batch_alter_table('household_pool_transfer', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_household_pool_transfer_household_id'), ['household_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_household_pool_transfer_user_id'), ['user_id'], unique=False)

    op.create_table('organisation_donation',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('organisation_id', sa.Integer(), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('points', sa.BigInteger(), nullable=False),
    sa.Column('transaction_id', sa.Integer(), nullable=False),
    sa.Column('created_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['organisation_id'], ['organisation.id'], name=op.f('fk_organisation_donation_organisation_id_organisation')),
    sa.ForeignKeyConstraint(['transaction_id'], ['ledger_transaction.id'], name=op.f('fk_organisation_donation_transaction_id_ledger_transaction')),
    sa.ForeignKeyConstraint(['user_id'], ['user_account.id'], name=op.f('fk_organisation_donation_user_id_user_account')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_organisation_donation')),
    sa.UniqueConstraint('transaction_id', name=op.f('uq_organisation_donation_transaction_id'))
    )
    with op.batch_alter_table('organisation_donation', schema=None) as batch_op:
        batch_op.create_index('ix_organisation_donation_org_id', ['organisation_id', 'id'], unique=False)
        batch_op.create_index(batch_op.f('ix_organisation_donation_user_id'), ['user_id'], unique=False)

    op.create_table('organisation_invite',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('organisation_id', sa.Integer(), nullable=False),
    sa.Column('code_hash', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('created_by_user_id', sa.Integer(), nullable=False),
    sa.Column('created_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.Column('expires_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.Column('max_uses', sa.Integer(), nullable=False),
    sa.Column('uses', sa.Integer(), nullable=False),
    sa.Column('revoked_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
    sa.CheckConstraint('uses >= 0 AND uses <= max_uses', name=op.f('ck_organisation_invite_uses_in_range')),
    sa.ForeignKeyConstraint(['created_by_user_id'], ['user_account.id'], name=op.f('fk_organisation_invite_created_by_user_id_user_account')),
    sa.ForeignKeyConstraint(['organisation_id'], ['organisation.id'], name=op.f('fk_organisation_invite_organisation_id_organisation')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_organisation_invite')),
    sa.UniqueConstraint('code_hash', name=op.f('uq_organisation_invite_code_hash'))
    )
    with op.batch_alter_table('organisation_invite', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_organisation_invite_organisation_id'), ['organisation_id'], unique=False)

    op.create_table('organisation_join_request',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('organisation_id', sa.Integer(), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('pending_organisation_id', sa.Integer(), nullable=True),
    sa.Column('message', sqlmodel.sql.sqltypes.AutoString(length=500), nullable=False),
    sa.Column('status', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('created_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.Column('decided_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
    sa.Column('decided_by_user_id', sa.Integer(), nullable=True),
    sa.Column('decision_reason', sqlmodel.sql.sqltypes.AutoString(length=500), nullable=False),
    sa.ForeignKeyConstraint(['decided_by_user_id'], ['user_account.id'], name=op.f('fk_organisation_join_request_decided_by_user_id_user_account')),
    sa.ForeignKeyConstraint(['organisation_id'], ['organisation.id'], name=op.f('fk_organisation_join_request_organisation_id_organisation')),
    sa.ForeignKeyConstraint(['pending_organisation_id'], ['organisation.id'], name=op.f('fk_organisation_join_request_pending_organisation_id_organisation')),
    sa.ForeignKeyConstraint(['user_id'], ['user_account.id'], name=op.f('fk_organisation_join_request_user_id_user_account')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_organisation_join_request')),
    sa.UniqueConstraint('pending_organisation_id', 'user_id', name='uq_organisation_join_request_pending')
    )
    with op.batch_alter_table('organisation_join_request', schema=None) as batch_op:
        batch_op.create_index('ix_organisation_join_request_org_status', ['organisation_id', 'status', 'id'], unique=False)
        batch_op.create_index(batch_op.f('ix_organisation_join_request_user_id'), ['user_id'], unique=False)

    op.create_table('organisation_member',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('organisation_id', sa.Integer(), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('active_organisation_id', sa.Integer(), nullable=True),
    sa.Column('role', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('joined_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.Column('left_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
    sa.Column('end_reason', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=True),
    sa.Column('joined_via', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('added_by_user_id', sa.Integer(), nullable=True),
    sa.CheckConstraint('(left_at IS NULL AND active_organisation_id = organisation_id) OR (left_at IS NOT NULL AND active_organisation_id IS NULL)', name=op.f('ck_organisation_member_active_matches')),
    sa.CheckConstraint('left_at IS NULL OR left_at >= joined_at', name=op.f('ck_organisation_member_interval_ordered')),
    sa.ForeignKeyConstraint(['active_organisation_id'], ['organisation.id'], name=op.f('fk_organisation_member_active_organisation_id_organisation')),
    sa.ForeignKeyConstraint(['added_by_user_id'], ['user_account.id'], name=op.f('fk_organisation_member_added_by_user_id_user_account')),
    sa.ForeignKeyConstraint(['organisation_id'], ['organisation.id'], name=op.f('fk_organisation_member_organisation_id_organisation')),
    sa.ForeignKeyConstraint(['user_id'], ['user_account.id'], name=op.f('fk_organisation_member_user_id_user_account')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_organisation_member')),
    sa.UniqueConstraint('active_organisation_id', 'user_id', name='uq_organisation_member_active')
    )
    with op.batch_alter_table('organisation_member', schema=None) as batch_op:
        batch_op.create_index('ix_organisation_member_org_joined', ['organisation_id', 'joined_at'], unique=False)
        batch_op.create_index('ix_organisation_member_user_joined', ['user_id', 'joined_at'], unique=False)

    op.create_table('retirement',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('code', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('organisation_id', sa.Integer(), nullable=False),
    sa.Column('grams', sa.BigInteger(), nullable=False),
    sa.Column('purpose_zh', sqlmodel.sql.sqltypes.AutoString(length=300), nullable=False),
    sa.Column('purpose_en', sqlmodel.sql.sqltypes.AutoString(length=300), nullable=False),
    sa.Column('period_start', sa.Date(), nullable=False),
    sa.Column('period_end', sa.Date(), nullable=False),
    sa.Column('reductions_from', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.Column('reductions_to', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.Column('methodologies', sa.Text(), nullable=False),
    sa.Column('payment_method', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('points_paid', sa.BigInteger(), nullable=False),
    sa.Column('transaction_id', sa.Integer(), nullable=True),
    sa.Column('payment_reference', sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
    sa.Column('payment_amount_fen', sa.BigInteger(), nullable=True),
    sa.Column('digest', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('created_by_user_id', sa.Integer(), nullable=False),
    sa.Column('created_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.CheckConstraint('grams > 0', name=op.f('ck_retirement_grams_positive')),
    sa.ForeignKeyConstraint(['created_by_user_id'], ['user_account.id'], name=op.f('fk_retirement_created_by_user_id_user_account')),
    sa.ForeignKeyConstraint(['organisation_id'], ['organisation.id'], name=op.f('fk_retirement_organisation_id_organisation')),
    sa.ForeignKeyConstraint(['transaction_id'], ['ledger_transaction.id'], name=op.f('fk_retirement_transaction_id_ledger_transaction')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_retirement')),
    sa.UniqueConstraint('code', name=op.f('uq_retirement_code')),
    sa.UniqueConstraint('transaction_id', name=op.f('uq_retirement_transaction_id'))
    )
    with op.batch_alter_table('retirement', schema=None) as batch_op:
        batch_op.create_index('ix_retirement_org_id', ['organisation_id', 'id'], unique=False)

    op.create_table('action_retirement',
    sa.Column('action_id', sa.Integer(), autoincrement=False, nullable=False),
    sa.Column('total_grams', sa.BigInteger(), nullable=False),
    sa.Column('retired_grams', sa.BigInteger(), nullable=False),
    sa.CheckConstraint('retired_grams >= 0 AND retired_grams <= total_grams', name=op.f('ck_action_retirement_retired_within_total')),
    sa.ForeignKeyConstraint(['action_id'], ['action.id'], name=op.f('fk_action_retirement_action_id_action')),
    sa.PrimaryKeyConstraint('action_id', name=op.f('pk_action_retirement'))
    )
    op.create_table('household_member',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('household_id', sa.Integer(), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('active_user_id', sa.Integer(), nullable=True),
    sa.Column('role', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('joined_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.Column('left_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
    sa.Column('end_reason', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=True),
    sa.Column('invite_id', sa.Integer(), nullable=True),
    sa.CheckConstraint('(left_at IS NULL AND active_user_id = user_id) OR (left_at IS NOT NULL AND active_user_id IS NULL)', name=op.f('ck_household_member_active_user_matches')),
    sa.CheckConstraint('left_at IS NULL OR left_at >= joined_at', name=op.f('ck_household_member_interval_ordered')),
    sa.ForeignKeyConstraint(['active_user_id'], ['user_account.id'], name=op.f('fk_household_member_active_user_id_user_account')),
    sa.ForeignKeyConstraint(['household_id'], ['household.id'], name=op.f('fk_household_member_household_id_household')),
    sa.ForeignKeyConstraint(['invite_id'], ['household_invite.id'], name=op.f('fk_household_member_invite_id_household_invite')),
    sa.ForeignKeyConstraint(['user_id'], ['user_account.id'], name=op.f('fk_household_member_user_id_user_account')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_household_member')),
    sa.UniqueConstraint('active_user_id', name=op.f('uq_household_member_active_user_id'))
    )
    with op.batch_alter_table('household_member', schema=None) as batch_op:
        batch_op.create_index('ix_household_member_household_joined', ['household_id', 'joined_at'], unique=False)
        batch_op.create_index('ix_household_member_user_joined', ['user_id', 'joined_at'], unique=False)

    op.create_table('retirement_item',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('retirement_id', sa.Integer(), nullable=False),
    sa.Column('action_id', sa.Integer(), nullable=False),
    sa.Column('gram_from', sa.BigInteger(), nullable=False),
    sa.Column('gram_to', sa.BigInteger(), nullable=False),
    sa.CheckConstraint('gram_from >= 0 AND gram_to > gram_from', name=op.f('ck_retirement_item_range_ordered')),
    sa.ForeignKeyConstraint(['action_id'], ['action.id'], name=op.f('fk_retirement_item_action_id_action')),
    sa.ForeignKeyConstraint(['retirement_id'], ['retirement.id'], name=op.f('fk_retirement_item_retirement_id_retirement')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_retirement_item')),
    sa.UniqueConstraint('action_id', 'gram_from', name='uq_retirement_item_action_from')
    )
    with op.batch_alter_table('retirement_item', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_retirement_item_retirement_id'), ['retirement_id'], unique=False)

    with op.batch_alter_table('action', schema=None) as batch_op:
        batch_op.add_column(sa.Column('household_id', sa.Integer(), nullable=True))
        batch_op.create_index(batch_op.f('ix_action_household_id'), ['household_id'], unique=False)
        batch_op.create_foreign_key(batch_op.f('fk_action_household_id_household'), 'household', ['household_id'], ['id'])



def downgrade() -> None:
    with op.batch_alter_table('action', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('fk_action_household_id_household'), type_='foreignkey')
        batch_op.drop_index(batch_op.f('ix_action_household_id'))
        batch_op.drop_column('household_id')

    with op.batch_alter_table('retirement_item', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_retirement_item_retirement_id'))

    op.drop_table('retirement_item')
    with op.batch_alter_table('household_member', schema=None) as batch_op:
        batch_op.drop_index('ix_household_member_user_joined')
        batch_op.drop_index('ix_household_member_household_joined')

    op.drop_table('household_member')
    op.drop_table('action_retirement')
    with op.batch_alter_table('retirement', schema=None) as batch_op:
        batch_op.drop_index('ix_retirement_org_id')

    op.drop_table('retirement')
    with op.batch_alter_table('organisation_member', schema=None) as batch_op:
        batch_op.drop_index('ix_organisation_member_user_joined')
        batch_op.drop_index('ix_organisation_member_org_joined')

    op.drop_table('organisation_member')
    with op.batch_alter_table('organisation_join_request', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_organisation_join_request_user_id'))
        batch_op.drop_index('ix_organisation_join_request_org_status')

    op.drop_table('organisation_join_request')
    with op.batch_alter_table('organisation_invite', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_organisation_invite_organisation_id'))

    op.drop_table('organisation_invite')
    with op.batch_alter_table('organisation_donation', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_organisation_donation_user_id'))
        batch_op.drop_index('ix_organisation_donation_org_id')

    op.drop_table('organisation_donation')
    with op.batch_alter_table('household_pool_transfer', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_household_pool_transfer_user_id'))
        batch_op.drop_index(batch_op.f('ix_household_pool_transfer_household_id'))

    op.drop_table('household_pool_transfer')
    with op.batch_alter_table('household_invite', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_household_invite_household_id'))

    op.drop_table('household_invite')
    with op.batch_alter_table('organisation', schema=None) as batch_op:
        batch_op.drop_index('ix_organisation_status_kind_city')
        batch_op.drop_index(batch_op.f('ix_organisation_applicant_user_id'))

    op.drop_table('organisation')
    with op.batch_alter_table('household', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_household_owner_user_id'))

    op.drop_table('household')
