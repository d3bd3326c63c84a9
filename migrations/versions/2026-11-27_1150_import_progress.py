"""orders: when a running import last made progress, to tell a stalled one

Revision ID: 6a4d0b9e1c72
Revises: 3f9d2b6c8e17
Create Date: 2026-11-27 11:50:00+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from siyu.core.db import UTCDateTime

revision: str = "6a4d0b9e1c72"
down_revision: str | None = "3f9d2b6c8e17"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("orders_imports") as batch:
        batch.add_column(sa.Column("progress_at", UTCDateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("orders_imports") as batch:
        batch.drop_column("progress_at")
