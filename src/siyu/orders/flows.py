"""Running an import: a file streamed in batches, one transaction per batch.

On PostgreSQL a Taobao CSV goes through ``staged`` first (PostgreSQL parses the file, SQL
normalises and upserts it); a file it refuses comes here, with nothing written yet.

Each batch commits its orders, rejects, claim effects and the import's counters together, so
progress is visible to the console while the job runs, and a crash leaves whole batches
(re-running the file is idempotent: it updates the same orders).
"""

from __future__ import annotations

import contextlib
import itertools
import logging
from collections.abc import Callable, Iterator
from pathlib import Path

from siyu.core.db import unit_of_work
from siyu.core.errors import SiyuError
from siyu.orders import models as m
from siyu.orders import service, staged
from siyu.orders.readers import Record, Reject, Taobao, ahead, open_source
from siyu.tenants.models import Tenant

BATCH = 10_000
log = logging.getLogger("siyu.orders")
Progress = Callable[[m.Import], None]


def run_import(
    import_id: int,
    path: Path,
    *,
    progress: Progress | None = None,
    staging: bool = True,
    run: int | None = None,
) -> m.Import:
    """Import the file behind ``import_id``; safe to run again (the same orders update).
    ``staging=False`` keeps to the Python path (tests compare the two). ``run``: the job's run
    number from ``service.claim_import``; should a later run claim the import meanwhile, this
    one stops at its next write with ``service.ImportSuperseded``, whatever else went wrong
    on the way (the sweep also drops a replaced run's staging tables)."""
    try:
        return _run(import_id, path, progress=progress, staging=staging, run=run)
    except service.ImportSuperseded:
        raise
    except Exception as err:
        if run is not None and _superseded(import_id, run):
            raise service.ImportSuperseded(import_id) from err
        raise


def _superseded(import_id: int, run: int) -> bool:
    """Whether a later run has the import; False when that cannot be read either (the
    database is gone): the run's own error is then the one to report."""
    try:
        with unit_of_work() as db:
            service.running_import(db, import_id, run)
    except service.ImportSuperseded:
        return True
    except Exception:
        return False
    return False


def _run(
    import_id: int, path: Path, *, progress: Progress | None, staging: bool, run: int | None
) -> m.Import:
    with unit_of_work() as db:
        imp = service.running_import(db, import_id, run)
        tenant = db.get(Tenant, imp.tenant_id)
        assert tenant is not None
        tz, fmt, session_id = tenant.timezone, imp.format or None, imp.session_id
        service.start_import(db, imp)
    try:
        source = open_source(path, tz=tz, fmt=fmt, session_id=session_id)
    except SiyuError as err:
        return _finish(import_id, m.FAILED, err.message(), run)
    except OSError as err:
        return _finish(import_id, m.FAILED, str(err), run)
    try:
        with unit_of_work() as db:
            imp = service.running_import(db, import_id, run)
            service.describe_import(
                db, imp, fmt=source.format, encoding=source.encoding, size=source.size
            )
            fast = staged.applies(
                db, fmt=source.format, encoding=source.encoding, layout=source.layout
            )
        if fast and staging:
            assert isinstance(source.layout, Taobao)
            try:
                staged.run(
                    import_id,
                    path,
                    layout=source.layout,
                    encoding=source.encoding,
                    size=source.size,
                    progress=progress,
                    run=run,
                )
                log.info("orders import %s took the staged COPY path", import_id)
                return _finish(import_id, m.DONE, "", run)
            except staged.Refused as why:
                log.info("orders import takes the Python path: %s", why)

        # Parsing (Python, holds the GIL) overlaps the previous batch's database work (waits
        # on the socket, releases it), two batches ahead at most, so memory stays bounded.
        def batches() -> Iterator[tuple[list[Record | Reject], int]]:
            while items := list(itertools.islice(source.rows, BATCH)):
                yield items, source.position()

        with contextlib.closing(ahead(batches(), depth=2)) as read:
            for items, position in read:
                with unit_of_work() as db:
                    imp = service.running_import(db, import_id, run)
                    res = service.import_batch(
                        db, tenant_id=imp.tenant_id, import_id=import_id, items=items
                    )
                    service.count_batch(db, imp, res, position=position)
                if progress is not None:
                    progress(imp)
    finally:
        source.close()
    return _finish(import_id, m.DONE, "", run)


def _finish(import_id: int, status: str, error: str, run: int | None) -> m.Import:
    with unit_of_work() as db:
        imp = service.running_import(db, import_id, run)
        service.finish_import(db, imp, status=status, error=error)
    return imp
