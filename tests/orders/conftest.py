from __future__ import annotations

from pathlib import Path

import pytest

from siyu.orders import flows, service
from tests.factories import make_tenant


@pytest.fixture
def tenant(db):
    return make_tenant(db)


@pytest.fixture
def run(db, tmp_path):
    """Import ``data`` (bytes) for ``tenant`` as a file; returns the finished Import."""

    def go(tenant, data: bytes | Path, *, fmt=None, session_id=None, name="orders.csv"):
        path = data if isinstance(data, Path) else tmp_path / name
        if not isinstance(data, Path):
            path.write_bytes(data)
        imp = service.create_import(
            db, tenant_id=tenant.id, filename=path.name, fmt=fmt, session_id=session_id
        )
        db.flush()
        result = flows.run_import(imp.id, path)
        db.expire_all()
        return result

    return go


@pytest.fixture(autouse=True)
def _fresh_rate_counters():
    """Rate-limit counters live in Redis on the PostgreSQL run and outlive a test, while the
    ``committed`` fixture restarts ids: clear this run's counters after each test."""
    yield
    from siyu.core.settings import get_settings
    from siyu.orders.abuse import _redis

    settings = get_settings()
    if settings.redis_url:
        client = _redis(settings.redis_url)
        for key in client.scan_iter(f"{settings.queue_name}:orders:rate:*"):
            client.delete(key)
