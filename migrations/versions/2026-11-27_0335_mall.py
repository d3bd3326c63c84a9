"""mall and trials: items, coupon codes, addresses, orders; trial campaigns, applications, reports

Revision ID: 409c8517980d
Revises: ea37a909bc44
Create Date: 2026-11-27 03:35:11.603908+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import siyu.core.db

revision: str = '409c8517980d'
down_revision: str | None = 'ea37a909bc44'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('mall_items',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('tenant_id', sa.Integer(), nullable=False),
    sa.Column('title', sa.String(length=100), nullable=False),
    sa.Column('description', sa.Text(), nullable=False),
    sa.Column('images', sa.JSON(), nullable=False),
    sa.Column('category', sa.String(length=40), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('points_price', sa.Integer(), nullable=False),
    sa.Column('cash_fen', sa.Integer(), nullable=False),
    sa.Column('stock', sa.Integer(), nullable=False),
    sa.Column('per_member_total', sa.Integer(), nullable=True),
    sa.Column('per_member_daily', sa.Integer(), nullable=True),
    sa.Column('min_growth', sa.Integer(), nullable=True),
    sa.Column('available_from', siyu.core.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('available_until', siyu.core.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('is_listed', sa.Boolean(), nullable=False),
    sa.Column('created_at', siyu.core.db.UTCDateTime(timezone=True), nullable=False),
    sa.CheckConstraint('points_price >= 1', name=op.f('ck_mall_items_points_price_positive')),
    sa.CheckConstraint('stock >= 0', name=op.f('ck_mall_items_stock_not_negative')),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_mall_items_tenant_id_tenants')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_mall_items'))
    )
    with op.batch_alter_table('mall_items', schema=None) as batch_op:
        batch_op.create_index('ix_mall_items_tenant_category', ['tenant_id', 'category'], unique=False)

    op.create_table('trials',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('tenant_id', sa.Integer(), nullable=False),
    sa.Column('title', sa.String(length=100), nullable=False),
    sa.Column('description', sa.Text(), nullable=False),
    sa.Column('image_url', sa.String(length=500), nullable=False),
    sa.Column('slots', sa.Integer(), nullable=False),
    sa.Column('apply_from', siyu.core.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('apply_until', siyu.core.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('points_cost', sa.Integer(), nullable=False),
    sa.Column('min_growth', sa.Integer(), nullable=True),
    sa.Column('tag', sa.String(length=40), nullable=True),
    sa.Column('report_deadline', siyu.core.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('report_reward', sa.Integer(), nullable=False),
    sa.Column('commitment', sa.String(length=64), nullable=False),
    sa.Column('seed_hex', sa.String(length=128), nullable=False),
    sa.Column('seed_source', sa.String(length=16), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('entries', sa.Integer(), nullable=False),
    sa.Column('drawn_at', siyu.core.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('public_code', sa.String(length=32), nullable=False),
    sa.Column('created_at', siyu.core.db.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_trials_tenant_id_tenants')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_trials')),
    sa.UniqueConstraint('public_code', name=op.f('uq_trials_public_code'))
    )
    with op.batch_alter_table('trials', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_trials_tenant_id'), ['tenant_id'], unique=False)

    op.create_table('mall_addresses',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('tenant_id', sa.Integer(), nullable=False),
    sa.Column('member_id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=40), nullable=False),
    sa.Column('phone', sa.String(length=20), nullable=False),
    sa.Column('region', sa.String(length=100), nullable=False),
    sa.Column('detail', sa.String(length=200), nullable=False),
    sa.Column('is_default', sa.Boolean(), nullable=False),
    sa.Column('created_at', siyu.core.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('deleted_at', siyu.core.db.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['member_id'], ['members.id'], name=op.f('fk_mall_addresses_member_id_members')),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_mall_addresses_tenant_id_tenants')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_mall_addresses'))
    )
    with op.batch_alter_table('mall_addresses', schema=None) as batch_op:
        batch_op.create_index('ix_mall_addresses_member', ['tenant_id', 'member_id'], unique=False)

    op.create_table('mall_orders',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('tenant_id', sa.Integer(), nullable=False),
    sa.Column('member_id', sa.Integer(), nullable=False),
    sa.Column('source', sa.String(length=16), nullable=False),
    sa.Column('item_id', sa.Integer(), nullable=True),
    sa.Column('source_ref', sa.String(length=64), nullable=False),
    sa.Column('title', sa.String(length=100), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('quantity', sa.Integer(), nullable=False),
    sa.Column('points', sa.Integer(), nullable=False),
    sa.Column('cash_fen', sa.Integer(), nullable=False),
    sa.Column('spend_entry_id', sa.Integer(), nullable=True),
    sa.Column('refund_entry_id', sa.Integer(), nullable=True),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('ship_name', sa.String(length=40), nullable=False),
    sa.Column('ship_phone', sa.String(length=20), nullable=False),
    sa.Column('ship_address', sa.String(length=300), nullable=False),
    sa.Column('carrier', sa.String(length=40), nullable=False),
    sa.Column('tracking_no', sa.String(length=64), nullable=False),
    sa.Column('coupon_code', sa.String(length=200), nullable=False),
    sa.Column('cancel_reason', sa.String(length=200), nullable=False),
    sa.Column('idempotency_key', sa.String(length=200), nullable=False),
    sa.Column('local_day', sa.Date(), nullable=False),
    sa.Column('created_at', siyu.core.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('shipped_at', siyu.core.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('delivered_at', siyu.core.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('cancelled_at', siyu.core.db.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['item_id'], ['mall_items.id'], name=op.f('fk_mall_orders_item_id_mall_items')),
    sa.ForeignKeyConstraint(['member_id'], ['members.id'], name=op.f('fk_mall_orders_member_id_members')),
    sa.ForeignKeyConstraint(['refund_entry_id'], ['ledger_entries.id'], name=op.f('fk_mall_orders_refund_entry_id_ledger_entries')),
    sa.ForeignKeyConstraint(['spend_entry_id'], ['ledger_entries.id'], name=op.f('fk_mall_orders_spend_entry_id_ledger_entries')),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_mall_orders_tenant_id_tenants')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_mall_orders')),
    sa.UniqueConstraint('tenant_id', 'idempotency_key', name=op.f('uq_mall_orders_tenant_id_idempotency_key'))
    )
    with op.batch_alter_table('mall_orders', schema=None) as batch_op:
        batch_op.create_index('ix_mall_orders_limits', ['tenant_id', 'member_id', 'item_id', 'local_day'], unique=False)
        batch_op.create_index('ix_mall_orders_status', ['tenant_id', 'status', 'id'], unique=False)

    op.create_table('mall_codes',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('tenant_id', sa.Integer(), nullable=False),
    sa.Column('item_id', sa.Integer(), nullable=False),
    sa.Column('code', sa.String(length=200), nullable=False),
    sa.Column('order_id', sa.Integer(), nullable=True),
    sa.ForeignKeyConstraint(['item_id'], ['mall_items.id'], name=op.f('fk_mall_codes_item_id_mall_items')),
    sa.ForeignKeyConstraint(['order_id'], ['mall_orders.id'], name=op.f('fk_mall_codes_order_id_mall_orders')),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_mall_codes_tenant_id_tenants')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_mall_codes')),
    sa.UniqueConstraint('item_id', 'code', name=op.f('uq_mall_codes_item_id_code')),
    sa.UniqueConstraint('order_id', name=op.f('uq_mall_codes_order_id'))
    )
    with op.batch_alter_table('mall_codes', schema=None) as batch_op:
        batch_op.create_index('ix_mall_codes_free', ['item_id', 'order_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_mall_codes_tenant_id'), ['tenant_id'], unique=False)

    op.create_table('trial_applications',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('tenant_id', sa.Integer(), nullable=False),
    sa.Column('trial_id', sa.Integer(), nullable=False),
    sa.Column('member_id', sa.Integer(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('rank', sa.Integer(), nullable=True),
    sa.Column('spend_entry_id', sa.Integer(), nullable=True),
    sa.Column('refund_entry_id', sa.Integer(), nullable=True),
    sa.Column('order_id', sa.Integer(), nullable=True),
    sa.Column('ship_name', sa.String(length=40), nullable=False),
    sa.Column('ship_phone', sa.String(length=20), nullable=False),
    sa.Column('ship_address', sa.String(length=300), nullable=False),
    sa.Column('created_at', siyu.core.db.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['member_id'], ['members.id'], name=op.f('fk_trial_applications_member_id_members')),
    sa.ForeignKeyConstraint(['order_id'], ['mall_orders.id'], name=op.f('fk_trial_applications_order_id_mall_orders')),
    sa.ForeignKeyConstraint(['refund_entry_id'], ['ledger_entries.id'], name=op.f('fk_trial_applications_refund_entry_id_ledger_entries')),
    sa.ForeignKeyConstraint(['spend_entry_id'], ['ledger_entries.id'], name=op.f('fk_trial_applications_spend_entry_id_ledger_entries')),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_trial_applications_tenant_id_tenants')),
    sa.ForeignKeyConstraint(['trial_id'], ['trials.id'], name=op.f('fk_trial_applications_trial_id_trials')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_trial_applications')),
    sa.UniqueConstraint('trial_id', 'member_id', name=op.f('uq_trial_applications_trial_id_member_id'))
    )
    with op.batch_alter_table('trial_applications', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_trial_applications_member_id'), ['member_id'], unique=False)
        batch_op.create_index('ix_trial_applications_status', ['trial_id', 'status', 'id'], unique=False)
        batch_op.create_index(batch_op.f('ix_trial_applications_tenant_id'), ['tenant_id'], unique=False)

    op.create_table('trial_reports',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('tenant_id', sa.Integer(), nullable=False),
    sa.Column('trial_id', sa.Integer(), nullable=False),
    sa.Column('application_id', sa.Integer(), nullable=False),
    sa.Column('member_id', sa.Integer(), nullable=False),
    sa.Column('text', sa.Text(), nullable=False),
    sa.Column('images', sa.JSON(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('late', sa.Boolean(), nullable=False),
    sa.Column('submitted_at', siyu.core.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('reviewed_at', siyu.core.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('review_note', sa.String(length=500), nullable=False),
    sa.Column('reward_entry_id', sa.Integer(), nullable=True),
    sa.ForeignKeyConstraint(['application_id'], ['trial_applications.id'], name=op.f('fk_trial_reports_application_id_trial_applications')),
    sa.ForeignKeyConstraint(['member_id'], ['members.id'], name=op.f('fk_trial_reports_member_id_members')),
    sa.ForeignKeyConstraint(['reward_entry_id'], ['ledger_entries.id'], name=op.f('fk_trial_reports_reward_entry_id_ledger_entries')),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_trial_reports_tenant_id_tenants')),
    sa.ForeignKeyConstraint(['trial_id'], ['trials.id'], name=op.f('fk_trial_reports_trial_id_trials')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_trial_reports')),
    sa.UniqueConstraint('application_id', name=op.f('uq_trial_reports_application_id'))
    )
    with op.batch_alter_table('trial_reports', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_trial_reports_tenant_id'), ['tenant_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_trial_reports_trial_id'), ['trial_id'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('trial_reports', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_trial_reports_trial_id'))
        batch_op.drop_index(batch_op.f('ix_trial_reports_tenant_id'))

    op.drop_table('trial_reports')
    with op.batch_alter_table('trial_applications', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_trial_applications_tenant_id'))
        batch_op.drop_index('ix_trial_applications_status')
        batch_op.drop_index(batch_op.f('ix_trial_applications_member_id'))

    op.drop_table('trial_applications')
    with op.batch_alter_table('mall_codes', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_mall_codes_tenant_id'))
        batch_op.drop_index('ix_mall_codes_free')

    op.drop_table('mall_codes')
    with op.batch_alter_table('mall_orders', schema=None) as batch_op:
        batch_op.drop_index('ix_mall_orders_status')
        batch_op.drop_index('ix_mall_orders_limits')

    op.drop_table('mall_orders')
    with op.batch_alter_table('mall_addresses', schema=None) as batch_op:
        batch_op.drop_index('ix_mall_addresses_member')

    op.drop_table('mall_addresses')
    with op.batch_alter_table('trials', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_trials_tenant_id'))

    op.drop_table('trials')
    with op.batch_alter_table('mall_items', schema=None) as batch_op:
        batch_op.drop_index('ix_mall_items_tenant_category')

    op.drop_table('mall_items')
