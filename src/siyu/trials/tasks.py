from __future__ import annotations

import logging

from huey import crontab

from siyu.core import clock
from siyu.core.db import unit_of_work
from siyu.core.jobs import huey
from siyu.trials import service

log = logging.getLogger("siyu.trials")


def refund_all(tenant_id: int, trial_id: int) -> None:
    """Refund a drawn trial's paying losers, one transaction per batch (safe to repeat)."""
    while True:
        with unit_of_work() as db:
            left = service.refund_losers(db, tenant_id=tenant_id, trial_id=trial_id)
        if not left:
            return


@huey.task(name="trials.refund")  # type: ignore[untyped-decorator]
def refund_trial_losers(tenant_id: int, trial_id: int) -> None:
    refund_all(tenant_id, trial_id)


def draw_due() -> int:
    """Draw every server-seeded trial whose window has closed (one transaction each)."""
    with unit_of_work() as db:
        due = service.due_for_draw(db, now=clock.now())
    for tenant_id, trial_id in due:
        with unit_of_work() as db:
            service.draw(db, tenant_id=tenant_id, trial_id=trial_id)
        log.info("trial drawn", extra={"trial_id": trial_id})
    return len(due)


@huey.periodic_task(crontab(minute="*"), name="trials.draw_due")  # type: ignore[untyped-decorator]
def draw_due_trials() -> int:
    return draw_due()
