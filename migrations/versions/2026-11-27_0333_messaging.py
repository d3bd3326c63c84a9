"""messaging: templates, the outbox (messages, deliveries), consents, inbox, WeCom groups,
SOP schedules

Revision ID: cfe9f019408a
Revises: 7c1e0f3a9b21
Create Date: 2026-11-27 03:33:57.118058+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import siyu.core.db

revision: str = 'cfe9f019408a'
down_revision: str | None = '7c1e0f3a9b21'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('message_templates',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('tenant_id', sa.Integer(), nullable=False),
    sa.Column('key', sa.String(length=64), nullable=False),
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('title', sa.String(length=200), nullable=False),
    sa.Column('body', sa.Text(), nullable=False),
    sa.Column('robot_format', sa.String(length=16), nullable=False),
    sa.Column('subscribe', sa.JSON(), nullable=True),
    sa.Column('oa_template', sa.JSON(), nullable=True),
    sa.Column('created_at', siyu.core.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', siyu.core.db.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_message_templates_tenant_id_tenants')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_message_templates')),
    sa.UniqueConstraint('tenant_id', 'key', name=op.f('uq_message_templates_tenant_id_key'))
    )
    op.create_table('wecom_groups',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('tenant_id', sa.Integer(), nullable=False),
    sa.Column('chat_id', sa.String(length=64), nullable=False),
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('owner_userid', sa.String(length=64), nullable=False),
    sa.Column('robot_key', sa.String(length=100), nullable=False),
    sa.Column('tags', sa.JSON(), nullable=False),
    sa.Column('created_at', siyu.core.db.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_wecom_groups_tenant_id_tenants')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_wecom_groups')),
    sa.UniqueConstraint('tenant_id', 'chat_id', name=op.f('uq_wecom_groups_tenant_id_chat_id'))
    )
    op.create_table('message_consents',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('tenant_id', sa.Integer(), nullable=False),
    sa.Column('member_id', sa.Integer(), nullable=False),
    sa.Column('template_key', sa.String(length=64), nullable=False),
    sa.Column('remaining', sa.Integer(), nullable=False),
    sa.Column('updated_at', siyu.core.db.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['member_id'], ['members.id'], name=op.f('fk_message_consents_member_id_members')),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_message_consents_tenant_id_tenants')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_message_consents')),
    sa.UniqueConstraint('tenant_id', 'member_id', 'template_key', name=op.f('uq_message_consents_tenant_id_member_id_template_key'))
    )
    op.create_table('message_schedules',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('tenant_id', sa.Integer(), nullable=False),
    sa.Column('key', sa.String(length=64), nullable=False),
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('cron', sa.String(length=100), nullable=False),
    sa.Column('template_id', sa.Integer(), nullable=False),
    sa.Column('target', sa.JSON(), nullable=False),
    sa.Column('channels', sa.JSON(), nullable=False),
    sa.Column('quiet_start', sa.String(length=5), nullable=False),
    sa.Column('quiet_end', sa.String(length=5), nullable=False),
    sa.Column('grace_minutes', sa.Integer(), nullable=False),
    sa.Column('paused', sa.Boolean(), nullable=False),
    sa.Column('next_run_at', siyu.core.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('last_run_at', siyu.core.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('created_at', siyu.core.db.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['template_id'], ['message_templates.id'], name=op.f('fk_message_schedules_template_id_message_templates')),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_message_schedules_tenant_id_tenants')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_message_schedules')),
    sa.UniqueConstraint('tenant_id', 'key', name=op.f('uq_message_schedules_tenant_id_key'))
    )
    op.create_table('messages',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('tenant_id', sa.Integer(), nullable=False),
    sa.Column('purpose', sa.String(length=200), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('template_id', sa.Integer(), nullable=True),
    sa.Column('schedule_id', sa.Integer(), nullable=True),
    sa.Column('title', sa.String(length=200), nullable=False),
    sa.Column('body', sa.Text(), nullable=False),
    sa.Column('context', sa.JSON(), nullable=False),
    sa.Column('channels', sa.JSON(), nullable=False),
    sa.Column('target', sa.JSON(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('send_at', siyu.core.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('expanded_to', sa.Integer(), nullable=False),
    sa.Column('total', sa.Integer(), nullable=False),
    sa.Column('created_by', sa.String(length=64), nullable=False),
    sa.Column('created_at', siyu.core.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('first_sent_at', siyu.core.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('finished_at', siyu.core.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('cancelled_at', siyu.core.db.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['schedule_id'], ['message_schedules.id'], name=op.f('fk_messages_schedule_id_message_schedules')),
    sa.ForeignKeyConstraint(['template_id'], ['message_templates.id'], name=op.f('fk_messages_template_id_message_templates')),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_messages_tenant_id_tenants')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_messages')),
    sa.UniqueConstraint('tenant_id', 'purpose', name=op.f('uq_messages_tenant_id_purpose'))
    )
    with op.batch_alter_table('messages', schema=None) as batch_op:
        batch_op.create_index('ix_messages_due', ['status', 'send_at'], unique=False)
        batch_op.create_index('ix_messages_tenant_created', ['tenant_id', 'id'], unique=False)

    op.create_table('message_deliveries',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('tenant_id', sa.Integer(), nullable=False),
    sa.Column('message_id', sa.Integer(), nullable=False),
    sa.Column('purpose', sa.String(length=200), nullable=False),
    sa.Column('recipient', sa.String(length=40), nullable=False),
    sa.Column('member_id', sa.Integer(), nullable=True),
    sa.Column('group_id', sa.Integer(), nullable=True),
    sa.Column('channel', sa.String(length=16), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('next_attempt_at', siyu.core.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('lease_until', siyu.core.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('error_code', sa.String(length=40), nullable=False),
    sa.Column('error_message', sa.String(length=500), nullable=False),
    sa.Column('external_id', sa.String(length=100), nullable=False),
    sa.Column('created_at', siyu.core.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('sent_at', siyu.core.db.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['group_id'], ['wecom_groups.id'], name=op.f('fk_message_deliveries_group_id_wecom_groups')),
    sa.ForeignKeyConstraint(['member_id'], ['members.id'], name=op.f('fk_message_deliveries_member_id_members')),
    sa.ForeignKeyConstraint(['message_id'], ['messages.id'], name=op.f('fk_message_deliveries_message_id_messages')),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_message_deliveries_tenant_id_tenants')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_message_deliveries')),
    sa.UniqueConstraint('tenant_id', 'purpose', 'recipient', name=op.f('uq_message_deliveries_tenant_id_purpose_recipient'))
    )
    with op.batch_alter_table('message_deliveries', schema=None) as batch_op:
        batch_op.create_index('ix_message_deliveries_due', ['status', 'next_attempt_at'], unique=False)
        batch_op.create_index('ix_message_deliveries_member', ['tenant_id', 'member_id', 'id'], unique=False)
        batch_op.create_index('ix_message_deliveries_message_status', ['message_id', 'status', 'id'], unique=False)

    op.create_table('inbox_items',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('tenant_id', sa.Integer(), nullable=False),
    sa.Column('member_id', sa.Integer(), nullable=False),
    sa.Column('delivery_id', sa.Integer(), nullable=False),
    sa.Column('title', sa.String(length=200), nullable=False),
    sa.Column('body', sa.Text(), nullable=False),
    sa.Column('created_at', siyu.core.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('read_at', siyu.core.db.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['delivery_id'], ['message_deliveries.id'], name=op.f('fk_inbox_items_delivery_id_message_deliveries')),
    sa.ForeignKeyConstraint(['member_id'], ['members.id'], name=op.f('fk_inbox_items_member_id_members')),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_inbox_items_tenant_id_tenants')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_inbox_items')),
    sa.UniqueConstraint('delivery_id', name=op.f('uq_inbox_items_delivery_id'))
    )
    with op.batch_alter_table('inbox_items', schema=None) as batch_op:
        batch_op.create_index('ix_inbox_items_member', ['tenant_id', 'member_id', 'id'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('inbox_items', schema=None) as batch_op:
        batch_op.drop_index('ix_inbox_items_member')

    op.drop_table('inbox_items')
    with op.batch_alter_table('message_deliveries', schema=None) as batch_op:
        batch_op.drop_index('ix_message_deliveries_message_status')
        batch_op.drop_index('ix_message_deliveries_member')
        batch_op.drop_index('ix_message_deliveries_due')

    op.drop_table('message_deliveries')
    with op.batch_alter_table('messages', schema=None) as batch_op:
        batch_op.drop_index('ix_messages_tenant_created')
        batch_op.drop_index('ix_messages_due')

    op.drop_table('messages')
    op.drop_table('message_schedules')
    op.drop_table('message_consents')
    op.drop_table('wecom_groups')
    op.drop_table('message_templates')
