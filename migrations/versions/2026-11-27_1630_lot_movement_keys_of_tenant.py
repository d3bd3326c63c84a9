"""ledger: the lot movement's key names its lot and tenant at once, as the other ledger rows'

Every spend writes lot movements; each had a key on ``tenant_id`` (``FOR KEY SHARE`` on the
one tenant row, shared by all concurrent spends through multixacts) and one on ``lot_id``.
One key ``(tenant_id, lot_id) → ledger_lots(tenant_id, id)`` checks both, locks only the lot,
and refuses a movement of another tenant's lot. After this no posting locks the tenant row
(see the migration "ledger keys of tenant" for the others).

SQLite keeps its single-column keys, as there; both get the unique index the key references.

Revision ID: 4b8e2d6f1a93
Revises: 7d2a5c9e4f13
Create Date: 2026-11-27 16:30:00+00:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "4b8e2d6f1a93"
down_revision: str | None = "7d2a5c9e4f13"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLE = "ledger_lot_movements"


def upgrade() -> None:
    op.create_index("ix_ledger_lots_of_tenant", "ledger_lots", ["tenant_id", "id"], unique=True)
    if op.get_bind().dialect.name != "postgresql":
        return
    op.drop_constraint(f"fk_{TABLE}_tenant_id_tenants", TABLE, type_="foreignkey")
    op.drop_constraint(f"fk_{TABLE}_lot_id_ledger_lots", TABLE, type_="foreignkey")
    op.create_foreign_key(
        f"fk_{TABLE}_tenant_id_ledger_lots",
        TABLE,
        "ledger_lots",
        ["tenant_id", "lot_id"],
        ["tenant_id", "id"],
    )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.drop_constraint(f"fk_{TABLE}_tenant_id_ledger_lots", TABLE, type_="foreignkey")
        op.create_foreign_key(
            f"fk_{TABLE}_lot_id_ledger_lots", TABLE, "ledger_lots", ["lot_id"], ["id"]
        )
        op.create_foreign_key(
            f"fk_{TABLE}_tenant_id_tenants", TABLE, "tenants", ["tenant_id"], ["id"]
        )
    op.drop_index("ix_ledger_lots_of_tenant", "ledger_lots")
