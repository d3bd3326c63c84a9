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
    import_id: int, path: Path, *, progress: Progress | None = None, staging: bool = True
) -> m.Import:
    """Import the file behind ``import_id``; safe to run again (the same orders update).
    ``staging=False`` keeps to the Python path (tests compare the two)."""
    with unit_of_work() as db:
        imp = db.get(m.Import, import_id)
        assert imp is not None, f"no import {import_id}"
        tenant = db.get(Tenant, imp.tenant_id)
        assert tenant is not None
        tz, fmt, session_id = tenant.timezone, imp.format or None, imp.session_id
        service.start_import(db, imp)
    try:
        source = open_source(path, tz=tz, fmt=fmt, session_id=session_id)
    except SiyuError as err:
        return _finish(import_id, m.FAILED, err.message())
    except OSError as err:
        return _finish(import_id, m.FAILED, str(err))
    try:
        with unit_of_work() as db:
            imp = db.get(m.Import, import_id)
            assert imp is not None
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
                )
                log.info("orders import %s took the staged COPY path", import_id)
                return _finish(import_id, m.DONE, "")
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
                    imp = db.get(m.Import, import_id)
                    assert imp is not None
                    res = service.import_batch(
                        db, tenant_id=imp.tenant_id, import_id=import_id, items=items
                    )
                    service.count_batch(db, imp, res, position=position)
                if progress is not None:
                    progress(imp)
    finally:
        source.close()
    return _finish(import_id, m.DONE, "")


def _finish(import_id: int, status: str, error: str) -> m.Import:
    with unit_of_work() as db:
        imp = db.get(m.Import, import_id)
        assert imp is not None
        service.finish_import(db, imp, status=status, error=error)
    return imp
