"""Messaging jobs: expand a target into deliveries, dispatch batches, the minute tick (SOP
schedules, "send at" broadcasts, interrupted and retried deliveries, the group owners'
confirmations of customer-group mass messages)."""

from __future__ import annotations

import logging
import threading
from concurrent.futures import Future

from huey import crontab
from sqlalchemy import select

from siyu.core.db import unit_of_work
from siyu.core.jobs import huey
from siyu.messaging import service
from siyu.messaging.channels import ChannelError, credentials_of, sending
from siyu.messaging.service import Outcome
from siyu.tenants.models import Tenant

log = logging.getLogger("siyu.messaging")

# Dispatch jobs started per message (each claims its own batches; extra ones find nothing).
DISPATCHERS = 4
BATCH = 500


@huey.on_startup()  # type: ignore[untyped-decorator]
def warm_sender() -> None:
    """Each worker starts its sending loop and connection pool before the first job."""
    sending.warm()


@huey.task(name="messaging.dispatch")  # type: ignore[untyped-decorator]
def dispatch(message_id: int) -> int:
    return run_dispatch(message_id)


@huey.task(name="messaging.expand")  # type: ignore[untyped-decorator]
def expand_task(message_id: int) -> int:
    return run_expand(message_id)


def kick(message_id: int) -> None:
    """Start dispatchers for a message (called after the commit that queued deliveries)."""
    for _ in range(DISPATCHERS):
        dispatch(message_id)


def kick_later(message_id: int, delay: float) -> None:
    dispatch.schedule((message_id,), delay=max(0.0, delay))


def expand(message_id: int) -> None:
    expand_task(message_id)


def run_expand(message_id: int) -> int:
    chunks = 0
    while True:
        with unit_of_work() as db:
            more = service.expand_chunk(db, message_id=message_id)
        if not more:
            return chunks
        chunks += 1


class _LocalDispatchers:
    """The messages this process is dispatching. A second dispatcher of one message in one
    process would only compete with the first for the process's sending loop, its database
    connection and the GIL (more CPU per delivery, not more deliveries): it leaves the message
    to the first, which claims once more before it stops, so nothing that became due in
    between waits for the minute tick."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._again: dict[int, bool] = {}  # message id → asked for while running

    def enter(self, message_id: int) -> bool:
        """Whether the caller dispatches ``message_id`` (False: another thread here does)."""
        with self._lock:
            if message_id in self._again:
                self._again[message_id] = True
                return False
            self._again[message_id] = False
            return True

    def leave(self, message_id: int, *, anyway: bool = False) -> bool:
        """Stop dispatching ``message_id``, unless it was asked for meanwhile (then False, and
        the caller claims again); ``anyway`` stops regardless (the caller failed)."""
        with self._lock:
            if self._again.get(message_id) and not anyway:
                self._again[message_id] = False
                return False
            self._again.pop(message_id, None)
            return True


_local = _LocalDispatchers()


def run_dispatch(message_id: int, *, batch: int = BATCH) -> int:
    """Claim and send batches until none is due; returns the deliveries handled.

    Database work happens in this thread; the HTTP calls on the process's sending loop
    (``channels.sending``), and the next batch is claimed while the current one is on the
    wire."""
    from siyu.messaging.models import Message

    if not _local.enter(message_id):  # before any query: the running one has it in hand
        return 0
    handled, left = 0, False
    in_flight: Future[list[Outcome]] | None = None
    try:
        with unit_of_work() as db:
            msg = db.get(Message, message_id)
            if msg is None:
                return 0
            tenant = db.get(Tenant, msg.tenant_id)
            assert tenant is not None
            creds = {tenant.id: credentials_of(tenant.settings or {})}
        while True:
            with unit_of_work() as db:
                claim = service.claim_batch(db, message_id=message_id, limit=batch)
            handled += claim.claimed
            if in_flight is not None:
                _record(message_id, in_flight.result())
                in_flight = None
            if not claim.claimed and (left := _local.leave(message_id)):
                break
            if claim.jobs:
                in_flight = sending.submit(claim.jobs, creds)
    finally:
        if not left:
            _local.leave(message_id, anyway=True)
        # Whatever went wrong after a batch left, what it answered is still recorded.
        if in_flight is not None:
            _record(message_id, in_flight.result())
    with unit_of_work() as db:
        service.finish_if_done(db, message_id=message_id)
    return handled


def _record(message_id: int, outcomes: list[Outcome]) -> None:
    with unit_of_work() as db:
        service.record_outcomes(db, message_id=message_id, outcomes=outcomes)


def poll_group_mass() -> int:
    """Ask WeCom what became of the group mass tasks still waiting for their owners; the
    deliveries settled. A task whose poll fails is asked again next minute."""
    with unit_of_work() as db:
        waiting = service.awaiting_owner(db)
        creds = {
            t.id: credentials_of(t.settings or {})
            for t in db.scalars(select(Tenant).where(Tenant.id.in_({w.tenant_id for w in waiting})))
        }
    settled = 0
    for task in waiting:
        try:
            send_list = sending.group_mass_result(creds[task.tenant_id], task.msgid, task.userid)
        except ChannelError as err:
            log.warning(
                "group mass result poll failed",
                extra={"msgid": task.msgid, "code": err.code, "error": err.message},
            )
            continue
        with unit_of_work() as db:
            settled += service.record_owner_results(db, task, send_list)
    return settled


def run_tick() -> dict[str, int]:
    """Everything the minute tick does, callable directly (tests, `siyu messages tick`)."""
    from siyu.messaging import schedules

    with unit_of_work() as db:
        requeued = service.requeue_interrupted(db)
    with unit_of_work() as db:
        started = service.start_due(db)
    ran = schedules.run_due_all()
    confirmed = poll_group_mass()
    with unit_of_work() as db:
        due = service.messages_with_due(db)
    for message_id in set(due) | set(requeued):
        dispatch(message_id)
    return {
        "requeued": len(requeued),
        "started": len(started),
        "sop_runs": ran,
        "kicked": len(set(due) | set(requeued)),
        "group_mass_settled": confirmed,
    }


@huey.periodic_task(crontab(minute="*"), name="messaging.tick")  # type: ignore[untyped-decorator]
def tick() -> dict[str, int]:
    return run_tick()
