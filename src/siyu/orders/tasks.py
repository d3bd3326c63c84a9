from __future__ import annotations

import logging
from pathlib import Path

from huey import crontab

from siyu.core.db import after_commit, unit_of_work
from siyu.core.jobs import huey
from siyu.orders import flows, service, staged

log = logging.getLogger("siyu.orders")


@huey.task(name="orders.import")  # type: ignore[untyped-decorator]
def import_file(import_id: int, path: str) -> str:
    """Import an uploaded file, then delete it. A job of an import that is no longer queued
    (a duplicate, or a rerun after success) does nothing; a run that a later run took over
    (it looked stalled to the sweep) stops at its next write."""
    file = Path(path)
    if not file.exists():  # a rerun after success: the file is gone, nothing to redo
        return "missing"
    with unit_of_work() as db:
        run = service.claim_import(db, import_id)
    if run is None:
        return "skipped"
    try:
        imp = flows.run_import(import_id, file, run=run)
    except service.ImportSuperseded:  # the later run imports the file (and deletes it)
        log.warning("orders import superseded", extra={"import_id": import_id, "run": run})
        return "superseded"
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
    """Imports whose worker died mid-file, or whose job the queue lost: queued again (they
    restart from the top of the file) or, after ``service.MAX_ATTEMPTS`` runs or without
    their file, failed; leftover staging tables dropped."""
    with unit_of_work() as db:
        again, failed = service.recover_imports(db)
        for import_id, path in again:
            after_commit(db, import_file, import_id, str(path))
    if again or failed:
        resumed = [i for i, _ in again]
        log.warning("orders imports interrupted", extra={"resumed": resumed, "failed": failed})
    return {"resumed": len(again), "failed": len(failed), "tables_dropped": staged.sweep()}
