"""core: users, auth, ledger, audit

Revision ID: 20261125_0001
Revises: (none)
Create Date: 2026-11-25 00:43:45.973758
"""

from alembic import op
import sqlalchemy as sa
import sqlmodel
from datetime import UTC, datetime


revision = '20261125_0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('idempotency_record',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('scope', sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
    sa.Column('key', sqlmodel.sql.sqltypes.AutoString(length=128), nullable=False),
    sa.Column('request_hash', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('result_type', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('result_id', sa.Integer(), nullable=True),
    sa.Column('created_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_idempotency_record')),
    sa.UniqueConstraint('scope', 'key', name='uq_idempotency_scope_key')
    )
    op.create_table('login_attempt',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('identifier', sqlmodel.sql.sqltypes.AutoString(length=254), nullable=False),
    sa.Column('address', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('created_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_login_attempt'))
    )
    with op.batch_alter_table('login_attempt', schema=None) as batch_op:
        batch_op.create_index('ix_login_attempt_address_at', ['address', 'created_at'], unique=False)
        batch_op.create_index('ix_login_attempt_identifier_at', ['identifier', 'created_at'], unique=False)

    op.create_table('user_account',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('email', sqlmodel.sql.sqltypes.AutoString(length=254), nullable=True),
    sa.Column('phone', sqlmodel.sql.sqltypes.AutoString(length=20), nullable=True),
    sa.Column('display_name', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('password_hash', sqlmodel.sql.sqltypes.AutoString(length=255), nullable=False),
    sa.Column('roles', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('status', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('created_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.Column('password_changed_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_user_account')),
    sa.UniqueConstraint('email', name=op.f('uq_user_account_email')),
    sa.UniqueConstraint('phone', name=op.f('uq_user_account_phone'))
    )
    op.create_table('account',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('kind', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=True),
    sa.Column('code', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
    sa.Column('balance', sa.BigInteger(), nullable=False),
    sa.Column('allow_negative', sa.Boolean(), nullable=False),
    sa.Column('created_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['user_id'], ['user_account.id'], name=op.f('fk_account_user_id_user_account')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_account')),
    sa.UniqueConstraint('code', name=op.f('uq_account_code')),
    sa.UniqueConstraint('user_id', name=op.f('uq_account_user_id'))
    )
    with op.batch_alter_table('account', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_account_kind'), ['kind'], unique=False)

    op.create_table('api_token',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('name', sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
    sa.Column('prefix', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('token_hash', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('scopes', sqlmodel.sql.sqltypes.AutoString(length=500), nullable=False),
    sa.Column('created_by_user_id', sa.Integer(), nullable=True),
    sa.Column('created_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.Column('expires_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
    sa.Column('last_used_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
    sa.Column('revoked_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
    sa.ForeignKeyConstraint(['created_by_user_id'], ['user_account.id'], name=op.f('fk_api_token_created_by_user_id_user_account')),
    sa.ForeignKeyConstraint(['user_id'], ['user_account.id'], name=op.f('fk_api_token_user_id_user_account')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_api_token')),
    sa.UniqueConstraint('prefix', name=op.f('uq_api_token_prefix'))
    )
    with op.batch_alter_table('api_token', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_api_token_user_id'), ['user_id'], unique=False)

    op.create_table('audit_log',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('actor_user_id', sa.Integer(), nullable=True),
    sa.Column('action', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('target_type', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('target_id', sa.Integer(), nullable=True),
    sa.Column('reason', sqlmodel.sql.sqltypes.AutoString(length=500), nullable=False),
    sa.Column('details', sqlmodel.sql.sqltypes.AutoString(length=4000), nullable=False),
    sa.Column('request_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
    sa.Column('created_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['actor_user_id'], ['user_account.id'], name=op.f('fk_audit_log_actor_user_id_user_account')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_audit_log'))
    )
    with op.batch_alter_table('audit_log', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_audit_log_action'), ['action'], unique=False)
        batch_op.create_index(batch_op.f('ix_audit_log_actor_user_id'), ['actor_user_id'], unique=False)
        batch_op.create_index('ix_audit_log_target', ['target_type', 'target_id'], unique=False)

    op.create_table('ledger_transaction',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('kind', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('memo', sqlmodel.sql.sqltypes.AutoString(length=500), nullable=False),
    sa.Column('actor_user_id', sa.Integer(), nullable=True),
    sa.Column('reverses_id', sa.Integer(), nullable=True),
    sa.Column('created_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['actor_user_id'], ['user_account.id'], name=op.f('fk_ledger_transaction_actor_user_id_user_account')),
    sa.ForeignKeyConstraint(['reverses_id'], ['ledger_transaction.id'], name=op.f('fk_ledger_transaction_reverses_id_ledger_transaction')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_ledger_transaction'))
    )
    with op.batch_alter_table('ledger_transaction', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_ledger_transaction_kind'), ['kind'], unique=False)

    op.create_table('refresh_token',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('family_id', sqlmodel.sql.sqltypes.AutoString(length=36), nullable=False),
    sa.Column('token_hash', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('created_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.Column('expires_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.Column('used_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
    sa.Column('revoked_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
    sa.Column('revoked_reason', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
    sa.ForeignKeyConstraint(['user_id'], ['user_account.id'], name=op.f('fk_refresh_token_user_id_user_account')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_refresh_token')),
    sa.UniqueConstraint('token_hash', name=op.f('uq_refresh_token_token_hash'))
    )
    with op.batch_alter_table('refresh_token', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_refresh_token_family_id'), ['family_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_refresh_token_user_id'), ['user_id'], unique=False)

    op.create_table('ledger_entry',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('transaction_id', sa.Integer(), nullable=False),
    sa.Column('account_id', sa.Integer(), nullable=False),
    sa.Column('amount', sa.BigInteger(), nullable=False),
    sa.Column('balance_after', sa.BigInteger(), nullable=False),
    sa.Column('created_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['account_id'], ['account.id'], name=op.f('fk_ledger_entry_account_id_account')),
    sa.ForeignKeyConstraint(['transaction_id'], ['ledger_transaction.id'], name=op.f('fk_ledger_entry_transaction_id_ledger_transaction')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_ledger_entry'))
    )
    with op.batch_alter_table('ledger_entry', schema=None) as batch_op:
        batch_op.create_index('ix_ledger_entry_account_id_id', ['account_id', 'id'], unique=False)
        batch_op.create_index(batch_op.f('ix_ledger_entry_transaction_id'), ['transaction_id'], unique=False)

    op.create_table('points_lot',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('account_id', sa.Integer(), nullable=False),
    sa.Column('entry_id', sa.Integer(), nullable=False),
    sa.Column('amount', sa.BigInteger(), nullable=False),
    sa.Column('remaining', sa.BigInteger(), nullable=False),
    sa.Column('expires_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.Column('created_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['account_id'], ['account.id'], name=op.f('fk_points_lot_account_id_account')),
    sa.ForeignKeyConstraint(['entry_id'], ['ledger_entry.id'], name=op.f('fk_points_lot_entry_id_ledger_entry')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_points_lot')),
    sa.UniqueConstraint('entry_id', name=op.f('uq_points_lot_entry_id'))
    )
    with op.batch_alter_table('points_lot', schema=None) as batch_op:
        batch_op.create_index('ix_points_lot_account_expires', ['account_id', 'expires_at', 'id'], unique=False)
        batch_op.create_index(batch_op.f('ix_points_lot_expires_at'), ['expires_at'], unique=False)

    # Platform accounts of the ledger: issuance (source of every credited point, runs negative) and
    # expired (sink of expired points).
    account = sa.table(
        "account",
        sa.column("kind", sa.String),
        sa.column("code", sa.String),
        sa.column("balance", sa.BigInteger),
        sa.column("allow_negative", sa.Boolean),
        sa.column("created_at", sqlmodel.sql.sqltypes.UTCDateTime()),
    )
    now = datetime.now(UTC)
    op.bulk_insert(
        account,
        [
            {"kind": "ISSUANCE", "code": "platform:issuance", "balance": 0, "allow_negative": True, "created_at": now},
            {"kind": "EXPIRED", "code": "platform:expired", "balance": 0, "allow_negative": False, "created_at": now},
        ],
    )


def downgrade() -> None:
    with op.batch_alter_table('points_lot', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_points_lot_expires_at'))
        batch_op.drop_index('ix_points_lot_account_expires')

    op.drop_table('points_lot')
    with op.batch_alter_table('ledger_entry', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_ledger_entry_transaction_id'))
        batch_op.drop_index('ix_ledger_entry_account_id_id')

    op.drop_table('ledger_entry')
    with op.batch_alter_table('refresh_token', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_refresh_token_user_id'))
        batch_op.drop_index(batch_op.f('ix_refresh_token_family_id'))

    op.drop_table('refresh_token')
    with op.batch_alter_table('ledger_transaction', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_ledger_transaction_kind'))

    op.drop_table('ledger_transaction')
    with op.batch_alter_table('audit_log', schema=None) as batch_op:
        batch_op.drop_index('ix_audit_log_target')
        batch_op.drop_index(batch_op.f('ix_audit_log_actor_user_id'))
        batch_op.drop_index(batch_op.f('ix_audit_log_action'))

    op.drop_table('audit_log')
    with op.batch_alter_table('api_token', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_api_token_user_id'))

    op.drop_table('api_token')
    with op.batch_alter_table('account', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_account_kind'))

    op.drop_table('account')
    op.drop_table('user_account')
    with op.batch_alter_table('login_attempt', schema=None) as batch_op:
        batch_op.drop_index('ix_login_attempt_identifier_at')
        batch_op.drop_index('ix_login_attempt_address_at')

    op.drop_table('login_attempt')
    op.drop_table('idempotency_record')
