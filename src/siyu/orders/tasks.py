from __future__ import annotations

import logging
from pathlib import Path

from huey import crontab

from siyu.core.db import unit_of_work
from siyu.core.jobs import huey
from siyu.orders import flows, service, staged

log = logging.getLogger("siyu.orders")


@huey.task(name="orders.import")  # type: ignore[untyped-decorator]
def import_file(import_id: int, path: str) -> str:
    """Import an uploaded file, then delete it. Safe to run twice (same orders update)."""
    file = Path(path)
    if not file.exists():  # a rerun after success: the file is gone, nothing to redo
        return "missing"
    imp = flows.run_import(import_id, file)
    file.unlink(missing_ok=True)
    log.info("orders imported", extra={"import_id": import_id, "rows": imp.rows})
    return imp.status


@huey.periodic_task(crontab(minute="*/5"), name="orders.expire_claims")  # type: ignore[untyped-decorator]
def expire_claims() -> int:
    """Pending claims whose order never came within the window expire."""
    total = 0
    while True:
        with unit_of_work() as db:
            n = service.expire_claims(db)
        total += n
        if n < 500:
            return total


@huey.periodic_task(crontab(minute="17"), name="orders.sweep_staging")  # type: ignore[untyped-decorator]
def sweep_staging() -> int:
    """Hourly: drop staging tables that an import interrupted by a crash left behind."""
    return staged.sweep()
