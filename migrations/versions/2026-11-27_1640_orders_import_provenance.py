"""orders: the import that last wrote an order is provenance, not a foreign key

``orders.import_id`` says which import last wrote the order (``select_claims_touched`` finds
an import's orders by it). Imports are a log that is never deleted, so its foreign key
guarded nothing, and it cost a quarter of an import's write phase: every row of a file took
``FOR KEY SHARE`` on the one import row, which the import's own transactions update with
their counts and which the staged upsert's two concurrent halves both lock (multixacts).
A 1M-row staged import: upsert phase 10.1 s with the key, 7.6 s without
(benchmarks/README.md, "order_import", fifth session).

SQLite keeps the key (it cannot drop one without rebuilding the table, and takes no such
lock).

Revision ID: 5e1c7a9d3b24
Revises: 4b8e2d6f1a93
Create Date: 2026-11-27 16:40:00+00:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "5e1c7a9d3b24"
down_revision: str | None = "4b8e2d6f1a93"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

KEY = "fk_orders_import_id_orders_imports"


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.drop_constraint(KEY, "orders", type_="foreignkey")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.create_foreign_key(KEY, "orders", "orders_imports", ["import_id"], ["id"])
