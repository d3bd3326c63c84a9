"""live: read reservations by target; no index on the reminder state, so marking is HOT

The reminder fan-out reads a target's reservations in member id order and marks them due chunk
by chunk; ``remind_state`` and ``remind_due_at`` leave every index so that on PostgreSQL the
marking is a heap-only update, for which the table keeps 10% of each page free.

Revision ID: 8e3f1a6c2d57
Revises: 5b0e2c7d9a41
Create Date: 2026-11-27 10:30:00+00:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "8e3f1a6c2d57"
down_revision: str | None = "5b0e2c7d9a41"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.drop_index("ix_live_reservations_product", table_name="live_reservations")
    op.drop_index("ix_live_reservations_due", table_name="live_reservations")
    op.create_index("ix_live_reservations_target", "live_reservations", ["target", "member_id"])
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE live_reservations SET (fillfactor = 90)")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE live_reservations RESET (fillfactor)")
    op.drop_index("ix_live_reservations_target", table_name="live_reservations")
    op.create_index(
        "ix_live_reservations_due", "live_reservations", ["remind_state", "remind_due_at"]
    )
    op.create_index(
        "ix_live_reservations_product", "live_reservations", ["product_id", "remind_state"]
    )
