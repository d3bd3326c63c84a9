"""messaging: the group owner's confirmation of a WeCom customer-group mass message

Revision ID: 5b0e2c7d9a41
Revises: 409c8517980d
Create Date: 2026-11-27 08:45:00+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "5b0e2c7d9a41"
down_revision: str | None = "409c8517980d"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("message_deliveries") as batch:
        batch.add_column(
            sa.Column("confirm_state", sa.String(length=16), nullable=False, server_default="")
        )
        batch.create_index("ix_message_deliveries_confirm", ["confirm_state"])


def downgrade() -> None:
    with op.batch_alter_table("message_deliveries") as batch:
        batch.drop_index("ix_message_deliveries_confirm")
        batch.drop_column("confirm_state")
