"""orders: an import's uploaded file and how many times a job started it, so that an
interrupted import can run again, a bounded number of times

Revision ID: 9c1e4f7a2b80
Revises: 6a4d0b9e1c72
Create Date: 2026-11-27 13:00:00+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "9c1e4f7a2b80"
down_revision: str | None = "6a4d0b9e1c72"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("orders_imports") as batch:
        batch.add_column(sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(
            sa.Column("upload_file", sa.String(100), nullable=False, server_default="")
        )


def downgrade() -> None:
    with op.batch_alter_table("orders_imports") as batch:
        batch.drop_column("upload_file")
        batch.drop_column("attempts")
