"""indexes: fewer entries written per posting, check-in and delivery

Every row a posting, a check-in or a delivery writes is also written to each of its table's
indexes, and an update that changes an indexed column writes a new entry in every index (no
HOT update). This drops or narrows the indexes that cost a write each and served no query:

- ``checkins.member_id``: every look-up names the tenant, which the unique key
  (tenant_id, member_id, checked_on) serves.
- ``ledger_postings.tenant_id``, ``ledger_lot_movements.tenant_id``: a tenant's rows are most
  of the table; no query is served by them.
- ``ledger_entries.reverses_id``: only reversals are indexed, not every entry's NULL.
- ``ledger_lots`` open lots: (account_id, expires_at), the order spends take lots in, instead
  of (account_id, remaining), so a spend's update of ``remaining`` can stay on its page.
- ``ledger_accounts``, ``ledger_lots`` and ``message_consents`` keep 15% of each page free for
  such in-page updates: every posting updates its wallet's balance, every subscribe message
  takes one of its member's consents (PostgreSQL only).
- ``message_deliveries``: the due index covers only queued and sending rows, so a delivery's
  final update adds no entry to it (PostgreSQL only: SQLite would not use it); the
  confirmation index covers only deliveries awaiting their group owner.

Revision ID: 9a4c6e2f8b15
Revises: 5e1c7a9d3b24
Create Date: 2026-11-27 18:00:00+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "9a4c6e2f8b15"
down_revision: str | None = "5e1c7a9d3b24"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

FILLFACTOR = 85
IN_PAGE_UPDATES = ("ledger_accounts", "ledger_lots", "message_consents")


def _pg() -> bool:
    return op.get_bind().dialect.name == "postgresql"


def upgrade() -> None:
    op.drop_index("ix_checkins_member_id", table_name="checkins")
    op.drop_index("ix_ledger_postings_tenant_id", table_name="ledger_postings")
    op.drop_index("ix_ledger_lot_movements_tenant_id", table_name="ledger_lot_movements")
    op.drop_index("ix_ledger_entries_reverses_id", table_name="ledger_entries")
    op.create_index(
        "ix_ledger_entries_reverses_id",
        "ledger_entries",
        ["reverses_id"],
        postgresql_where=sa.text("reverses_id IS NOT NULL"),
        sqlite_where=sa.text("reverses_id IS NOT NULL"),
    )
    op.drop_index("ix_ledger_lots_open", table_name="ledger_lots")
    op.create_index("ix_ledger_lots_open", "ledger_lots", ["account_id", "expires_at"])
    op.drop_index("ix_message_deliveries_confirm", table_name="message_deliveries")
    op.create_index(
        "ix_message_deliveries_confirm",
        "message_deliveries",
        ["confirm_state"],
        postgresql_where=sa.text("confirm_state = 'awaiting'"),
        sqlite_where=sa.text("confirm_state = 'awaiting'"),
    )
    if _pg():
        op.drop_index("ix_message_deliveries_due", table_name="message_deliveries")
        op.create_index(
            "ix_message_deliveries_due",
            "message_deliveries",
            ["status", "next_attempt_at"],
            postgresql_where=sa.text("status IN ('queued', 'sending')"),
        )
        for table in IN_PAGE_UPDATES:
            op.execute(f"ALTER TABLE {table} SET (fillfactor = {FILLFACTOR})")


def downgrade() -> None:
    if _pg():
        for table in IN_PAGE_UPDATES:
            op.execute(f"ALTER TABLE {table} RESET (fillfactor)")
        op.drop_index("ix_message_deliveries_due", table_name="message_deliveries")
        op.create_index(
            "ix_message_deliveries_due", "message_deliveries", ["status", "next_attempt_at"]
        )
    op.drop_index("ix_message_deliveries_confirm", table_name="message_deliveries")
    op.create_index("ix_message_deliveries_confirm", "message_deliveries", ["confirm_state"])
    op.drop_index("ix_ledger_lots_open", table_name="ledger_lots")
    op.create_index("ix_ledger_lots_open", "ledger_lots", ["account_id", "remaining"])
    op.drop_index("ix_ledger_entries_reverses_id", table_name="ledger_entries")
    op.create_index("ix_ledger_entries_reverses_id", "ledger_entries", ["reverses_id"])
    op.create_index(
        "ix_ledger_lot_movements_tenant_id", "ledger_lot_movements", ["tenant_id"]
    )
    op.create_index("ix_ledger_postings_tenant_id", "ledger_postings", ["tenant_id"])
    op.create_index("ix_checkins_member_id", "checkins", ["member_id"])
