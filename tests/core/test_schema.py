"""The schema the migrations build is the one the models declare."""

from __future__ import annotations

from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine

from siyu.core.db import Base
from siyu.models import import_all


def _known_sqlite_drift(diff: Any) -> bool:
    """SQLite keeps the single-column foreign keys that PostgreSQL replaced with keys that
    name the tenant too (migrations "ledger keys of tenant", "lot movement keys of tenant",
    "orders import provenance"): it cannot alter a key without rebuilding the table."""
    return isinstance(diff, tuple) and diff[0] in ("add_fk", "remove_fk")


def test_migrations_build_what_the_models_declare(engine: Engine) -> None:
    import_all()
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    if engine.dialect.name == "sqlite":
        diff = [d for d in diff if not _known_sqlite_drift(d)]
    assert diff == []
