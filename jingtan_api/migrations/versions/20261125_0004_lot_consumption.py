"""lot consumption: which lots each member debit consumed; refunds restore original expiries

Adds ``lot_consumption`` (one row per lot a member debit entry took points from, with that lot's
expiry) and backfills it for existing debits by replaying each member account's entries in id order
exactly as the ledger consumes lots (soonest-expiring first, then lot id). A credit entry may now open
several lots (a refund restores one lot per original expiry), so ``points_lot.entry_id`` is no longer
unique. ``redemption.refund_lot_expires_at`` (the single, latest expiry a refund used to get) is dropped:
refunds read the redemption's lot_consumption rows instead.

Downgrade is lossy: it restores ``refund_lot_expires_at`` as the latest consumed expiry, and fails on
re-creating the unique constraint if a refund has already opened several lots for one entry.

Revision ID: 20261125_0004
Revises: 20261125_0003
Create Date: 2026-11-25 02:16:58.600810
"""

from alembic import op
import sqlalchemy as sa
import sqlmodel


revision = '20261125_0004'
down_revision = '20261125_0003'
branch_labels = None
depends_on = None


def _backfill_lot_consumption() -> None:
    conn = op.get_bind()
    account = sa.table("account", sa.column("id", sa.Integer), sa.column("kind", sa.String))
    entry = sa.table(
        "ledger_entry", sa.column("id", sa.Integer), sa.column("account_id", sa.Integer),
        sa.column("amount", sa.BigInteger),
    )
    lot = sa.table(
        "points_lot", sa.column("id", sa.Integer), sa.column("account_id", sa.Integer),
        sa.column("entry_id", sa.Integer), sa.column("amount", sa.BigInteger),
        sa.column("expires_at", sqlmodel.sql.sqltypes.UTCDateTime()),
    )
    consumption = sa.table(
        "lot_consumption", sa.column("entry_id", sa.Integer), sa.column("lot_id", sa.Integer),
        sa.column("amount", sa.BigInteger), sa.column("expires_at", sqlmodel.sql.sqltypes.UTCDateTime()),
    )
    member_ids = [r.id for r in conn.execute(sa.select(account.c.id).where(account.c.kind == "MEMBER"))]
    for account_id in member_ids:
        lots_by_entry: dict[int, list] = {}
        for r in conn.execute(
            sa.select(lot.c.id, lot.c.entry_id, lot.c.amount, lot.c.expires_at)
            .where(lot.c.account_id == account_id).order_by(lot.c.id)
        ):
            lots_by_entry.setdefault(r.entry_id, []).append(r)
        remaining: dict[int, int] = {}
        expiry: dict[int, object] = {}
        rows: list[dict] = []
        for e in conn.execute(
            sa.select(entry.c.id, entry.c.amount).where(entry.c.account_id == account_id).order_by(entry.c.id)
        ):
            if e.amount > 0:
                for r in lots_by_entry.get(e.id, []):
                    remaining[r.id] = int(r.amount)
                    expiry[r.id] = r.expires_at
                continue
            left = -int(e.amount)
            for lot_id in sorted((i for i, n in remaining.items() if n > 0), key=lambda i: (expiry[i], i)):
                if left == 0:
                    break
                take = min(left, remaining[lot_id])
                remaining[lot_id] -= take
                left -= take
                rows.append({"entry_id": e.id, "lot_id": lot_id, "amount": take, "expires_at": expiry[lot_id]})
            if left:
                raise RuntimeError(f"account {account_id}: entry {e.id} debits more than its lots held")
        if rows:
            op.bulk_insert(consumption, rows)


def upgrade() -> None:
    op.create_table('lot_consumption',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('entry_id', sa.Integer(), nullable=False),
    sa.Column('lot_id', sa.Integer(), nullable=False),
    sa.Column('amount', sa.BigInteger(), nullable=False),
    sa.Column('expires_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.CheckConstraint('amount > 0', name=op.f('ck_lot_consumption_amount_positive')),
    sa.ForeignKeyConstraint(['entry_id'], ['ledger_entry.id'], name=op.f('fk_lot_consumption_entry_id_ledger_entry')),
    sa.ForeignKeyConstraint(['lot_id'], ['points_lot.id'], name=op.f('fk_lot_consumption_lot_id_points_lot')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_lot_consumption'))
    )
    with op.batch_alter_table('lot_consumption', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_lot_consumption_entry_id'), ['entry_id'], unique=False)

    with op.batch_alter_table('points_lot', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('uq_points_lot_entry_id'), type_='unique')
        batch_op.create_index(batch_op.f('ix_points_lot_entry_id'), ['entry_id'], unique=False)

    with op.batch_alter_table('redemption', schema=None) as batch_op:
        batch_op.drop_column('refund_lot_expires_at')

    _backfill_lot_consumption()


def downgrade() -> None:
    with op.batch_alter_table('redemption', schema=None) as batch_op:
        batch_op.add_column(sa.Column('refund_lot_expires_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True))
    op.execute(
        "UPDATE redemption SET refund_lot_expires_at = COALESCE(("
        " SELECT MAX(lc.expires_at) FROM lot_consumption lc JOIN ledger_entry e ON e.id = lc.entry_id"
        " WHERE e.transaction_id = redemption.transaction_id AND e.amount < 0), redemption.created_at)"
    )
    with op.batch_alter_table('redemption', schema=None) as batch_op:
        batch_op.alter_column('refund_lot_expires_at', existing_type=sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False)

    with op.batch_alter_table('points_lot', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_points_lot_entry_id'))
        batch_op.create_unique_constraint(batch_op.f('uq_points_lot_entry_id'), ['entry_id'])

    with op.batch_alter_table('lot_consumption', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_lot_consumption_entry_id'))

    op.drop_table('lot_consumption')
