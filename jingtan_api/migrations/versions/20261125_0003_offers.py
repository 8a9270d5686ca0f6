"""offers: merchants, merchant staff, offers, redemptions (issue #4)

Revision ID: 20261125_0003
Revises: 20261125_0002
Create Date: 2026-11-25 00:56:58.528389
"""

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = '20261125_0003'
down_revision = '20261125_0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('merchant',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name_zh', sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
    sa.Column('name_en', sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
    sa.Column('category', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('city', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('district', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('address', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
    sa.Column('latitude', sa.Float(), nullable=True),
    sa.Column('longitude', sa.Float(), nullable=True),
    sa.Column('commitments', sa.Text(), nullable=False),
    sa.Column('status', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('owner_user_id', sa.Integer(), nullable=True),
    sa.Column('account_id', sa.Integer(), nullable=True),
    sa.Column('created_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.Column('reviewed_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
    sa.Column('reviewed_by_user_id', sa.Integer(), nullable=True),
    sa.Column('review_reason', sqlmodel.sql.sqltypes.AutoString(length=500), nullable=False),
    sa.ForeignKeyConstraint(['account_id'], ['account.id'], name=op.f('fk_merchant_account_id_account')),
    sa.ForeignKeyConstraint(['owner_user_id'], ['user_account.id'], name=op.f('fk_merchant_owner_user_id_user_account')),
    sa.ForeignKeyConstraint(['reviewed_by_user_id'], ['user_account.id'], name=op.f('fk_merchant_reviewed_by_user_id_user_account')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_merchant')),
    sa.UniqueConstraint('account_id', name=op.f('uq_merchant_account_id'))
    )
    with op.batch_alter_table('merchant', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_merchant_owner_user_id'), ['owner_user_id'], unique=False)
        batch_op.create_index('ix_merchant_status_city', ['status', 'city'], unique=False)

    op.create_table('merchant_staff',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('merchant_id', sa.Integer(), nullable=False),
    sa.Column('is_owner', sa.Boolean(), nullable=False),
    sa.Column('added_by_user_id', sa.Integer(), nullable=True),
    sa.Column('created_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['added_by_user_id'], ['user_account.id'], name=op.f('fk_merchant_staff_added_by_user_id_user_account')),
    sa.ForeignKeyConstraint(['merchant_id'], ['merchant.id'], name=op.f('fk_merchant_staff_merchant_id_merchant')),
    sa.ForeignKeyConstraint(['user_id'], ['user_account.id'], name=op.f('fk_merchant_staff_user_id_user_account')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_merchant_staff')),
    sa.UniqueConstraint('user_id', name=op.f('uq_merchant_staff_user_id'))
    )
    with op.batch_alter_table('merchant_staff', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_merchant_staff_merchant_id'), ['merchant_id'], unique=False)

    op.create_table('offer',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('merchant_id', sa.Integer(), nullable=False),
    sa.Column('title_zh', sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
    sa.Column('title_en', sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
    sa.Column('description_zh', sqlmodel.sql.sqltypes.AutoString(length=2000), nullable=False),
    sa.Column('description_en', sqlmodel.sql.sqltypes.AutoString(length=2000), nullable=False),
    sa.Column('terms', sqlmodel.sql.sqltypes.AutoString(length=2000), nullable=False),
    sa.Column('image_url', sqlmodel.sql.sqltypes.AutoString(length=500), nullable=True),
    sa.Column('points_price', sa.BigInteger(), nullable=False),
    sa.Column('total_stock', sa.BigInteger(), nullable=False),
    sa.Column('stock', sa.BigInteger(), nullable=False),
    sa.Column('per_member_limit', sa.Integer(), nullable=False),
    sa.Column('starts_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.Column('ends_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.Column('status', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('created_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.Column('updated_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['merchant_id'], ['merchant.id'], name=op.f('fk_offer_merchant_id_merchant')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_offer'))
    )
    with op.batch_alter_table('offer', schema=None) as batch_op:
        batch_op.create_index('ix_offer_merchant_id', ['merchant_id', 'id'], unique=False)
        batch_op.create_index('ix_offer_status_created', ['status', 'created_at', 'id'], unique=False)
        batch_op.create_index('ix_offer_status_ends', ['status', 'ends_at', 'id'], unique=False)
        batch_op.create_index('ix_offer_status_price', ['status', 'points_price', 'id'], unique=False)

    op.create_table('redemption',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('offer_id', sa.Integer(), nullable=False),
    sa.Column('merchant_id', sa.Integer(), nullable=False),
    sa.Column('member_user_id', sa.Integer(), nullable=False),
    sa.Column('quantity', sa.Integer(), nullable=False),
    sa.Column('points', sa.BigInteger(), nullable=False),
    sa.Column('code', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('status', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('created_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.Column('expires_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.Column('confirmed_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
    sa.Column('confirmed_by_user_id', sa.Integer(), nullable=True),
    sa.Column('closed_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
    sa.Column('transaction_id', sa.Integer(), nullable=False),
    sa.Column('refund_transaction_id', sa.Integer(), nullable=True),
    sa.Column('refund_lot_expires_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['confirmed_by_user_id'], ['user_account.id'], name=op.f('fk_redemption_confirmed_by_user_id_user_account')),
    sa.ForeignKeyConstraint(['member_user_id'], ['user_account.id'], name=op.f('fk_redemption_member_user_id_user_account')),
    sa.ForeignKeyConstraint(['merchant_id'], ['merchant.id'], name=op.f('fk_redemption_merchant_id_merchant')),
    sa.ForeignKeyConstraint(['offer_id'], ['offer.id'], name=op.f('fk_redemption_offer_id_offer')),
    sa.ForeignKeyConstraint(['refund_transaction_id'], ['ledger_transaction.id'], name=op.f('fk_redemption_refund_transaction_id_ledger_transaction')),
    sa.ForeignKeyConstraint(['transaction_id'], ['ledger_transaction.id'], name=op.f('fk_redemption_transaction_id_ledger_transaction')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_redemption')),
    sa.UniqueConstraint('code', name=op.f('uq_redemption_code')),
    sa.UniqueConstraint('refund_transaction_id', name=op.f('uq_redemption_refund_transaction_id')),
    sa.UniqueConstraint('transaction_id', name=op.f('uq_redemption_transaction_id'))
    )
    with op.batch_alter_table('redemption', schema=None) as batch_op:
        batch_op.create_index('ix_redemption_member', ['member_user_id', 'id'], unique=False)
        batch_op.create_index('ix_redemption_merchant_created', ['merchant_id', 'created_at'], unique=False)
        batch_op.create_index('ix_redemption_offer_member', ['offer_id', 'member_user_id'], unique=False)
        batch_op.create_index('ix_redemption_status_expires', ['status', 'expires_at'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('redemption', schema=None) as batch_op:
        batch_op.drop_index('ix_redemption_status_expires')
        batch_op.drop_index('ix_redemption_offer_member')
        batch_op.drop_index('ix_redemption_merchant_created')
        batch_op.drop_index('ix_redemption_member')

    op.drop_table('redemption')
    with op.batch_alter_table('offer', schema=None) as batch_op:
        batch_op.drop_index('ix_offer_status_price')
        batch_op.drop_index('ix_offer_status_ends')
        batch_op.drop_index('ix_offer_status_created')
        batch_op.drop_index('ix_offer_merchant_id')

    op.drop_table('offer')
    with op.batch_alter_table('merchant_staff', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_merchant_staff_merchant_id'))

    op.drop_table('merchant_staff')
    with op.batch_alter_table('merchant', schema=None) as batch_op:
        batch_op.drop_index('ix_merchant_status_city')
        batch_op.drop_index(batch_op.f('ix_merchant_owner_user_id'))

    op.drop_table('merchant')
