"""messaging: drop the deliveries' member index, which served no query

``message_deliveries (tenant_id, member_id, id)`` was made with the outbox for a member's
delivery history that no query reads (the member's inbox is ``inbox_items``; deliveries are
read by message, by purpose and recipient, and by due time). Every delivery writes three row
versions (queued, sending, then its outcome), each with an entry here: a fan-out to 100,000
members wrote 300,000 entries into it for nothing.

Revision ID: 3f7b9d1c5e28
Revises: 9a4c6e2f8b15
Create Date: 2026-11-27 22:00:00+00:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "3f7b9d1c5e28"
down_revision: str | None = "9a4c6e2f8b15"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.drop_index("ix_message_deliveries_member", table_name="message_deliveries")


def downgrade() -> None:
    op.create_index(
        "ix_message_deliveries_member",
        "message_deliveries",
        ["tenant_id", "member_id", "id"],
        unique=False,
    )
