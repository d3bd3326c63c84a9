from __future__ import annotations

import logging

from huey import crontab
from sqlalchemy import select

from siyu.core.db import unit_of_work
from siyu.core.jobs import huey
from siyu.ledger import service
from siyu.tenants.models import Tenant

log = logging.getLogger("siyu.ledger")


def expire_all(batch: int = 200) -> int:
    """Expire every tenant's due lots, one transaction per batch of wallets."""
    total = 0
    with unit_of_work() as db:
        tenant_ids = list(db.scalars(select(Tenant.id).order_by(Tenant.id)))
    for tenant_id in tenant_ids:
        while True:
            with unit_of_work() as db:
                touched = service.expire_due(db, tenant_id=tenant_id, limit=batch)
            total += touched
            if touched < batch:
                break
    if total:
        log.info("expired points", extra={"wallets": total})
    return total


@huey.periodic_task(crontab(minute="*"), name="ledger.expire")  # type: ignore[untyped-decorator]
def expire_points() -> int:
    return expire_all()
