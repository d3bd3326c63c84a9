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


@huey.periodic_task(crontab(minute="*/5"), name="orders.sweep_interrupted")  # type: ignore[untyped-decorator]
def sweep_interrupted() -> dict[str, int]:
    """Imports whose worker died mid-file: failed (so the console stops showing them running),
    and their staging tables dropped."""
    with unit_of_work() as db:
        failed = service.fail_stalled_imports(db)
    if failed:
        log.warning("orders imports interrupted", extra={"import_ids": failed})
    return {"failed": len(failed), "tables_dropped": staged.sweep()}
