"""Live-room orders: imports, claims, refunds. The only code that writes orders tables.

Import (``import_records``, driven batch by batch by ``flows.run_import``):
  records from ``readers`` are de-duplicated per batch (last state wins; a later batch
  overwrites an earlier one, so the file's last state wins), then upserted in one statement
  per batch — PostgreSQL: COPY into a temporary staging table, then one
  ``INSERT … SELECT … ON CONFLICT DO UPDATE … RETURNING (xmax = 0)``; SQLite: one executemany
  ``INSERT … ON CONFLICT DO UPDATE``. Counts: every data row is imported (a new order),
  updated (an existing order, a repeat within the file, a merged sub-order row) or rejected.
  Then the batch's pending claims are matched and refunds of credited orders clawed back.

Claim (``claim_order``): rate limits and lockout first (errors); then the rules, in order:
  the order's live claim (the same member's claim is returned: retries are safe; another's →
  rejected already_claimed), the member's bound account (another account → rejected), the
  account's owner (another member → rejected), the order (not imported → pending until the
  window closes), paid, buyer == account, within the window, minimum amount. An account tried
  by several members sends the claim to review. Rejections are kept as claims with a reason
  code (members see them) and count as failures for the lockout.
  A claim holds its order through ``active_key`` (unique per tenant); the ledger credit's key
  is ``order:<platform>:<order_no>``: no order pays out twice, whatever the race.

Points (``points_for``): net = paid − refund (fen); points = net × points_per_yuan ×
  session% × tier% ÷ (100 × 100 × 100), rounded down; orders under ``min_fen`` earn none
  (rejected below_minimum); the daily cap (tenant-local day) cuts the rest.

Refund (``_refund``): kept = points × net ÷ paid (rounded down; a closed order keeps 0);
  the difference to what was already clawed is taken back through ``ledger.debt.clawback``:
  from the wallet, and as debt that the member's next earnings settle first if spent.

Sessions: an order's ``session_id`` comes from the import (an explicit option or a column);
without one, the import sets it to the session live when the order was paid (``live.
session_windows``: the session's actual start and end when known, else the planned ones), and
so does crediting a claim of an order imported before that session existed
(``live.session_at``): that is what the session's multiplier, statistics and funnel count.
Expired claims tell their member through messaging (``_tell_expired``).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from sqlalchemy import and_, case, delete, func, insert, or_, select, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from siyu.core import clock
from siyu.core.i18n import gettext as _
from siyu.core.settings import get_settings
from siyu.ledger import debt
from siyu.ledger import service as ledger
from siyu.members import service as members
from siyu.members.errors import PlatformAccountTaken, PlatformAlreadyBound
from siyu.members.models import PlatformAccount
from siyu.orders import errors as e
from siyu.orders import models as m
from siyu.orders.readers import PLATFORMS, Record, Reject
from siyu.tenants.models import Tenant

if TYPE_CHECKING:
    from sqlalchemy.engine import CursorResult

# --- rules ------------------------------------------------------------------------------------

DEFAULT_RULE: dict[str, Any] = {
    "points_per_yuan": 1,
    "min_fen": 0,
    "daily_cap": 0,  # 0: no cap
    "claim_window_days": 30,
    "session_multipliers": {},  # {"<session id>": percent}
    "tier_multipliers": {},  # {"<tier id>": percent}
}
LIMITS = {
    "member_per_minute": 10,
    "ip_per_minute": 30,
    "failures_to_lock": 5,
    "lock_minutes": 60,
}


def rule_of(tenant: Tenant) -> dict[str, Any]:
    return {**DEFAULT_RULE, **(tenant.settings.get("orders") or {})}


def set_rule(db: Session, *, tenant_id: int, rule: dict[str, Any]) -> dict[str, Any]:
    """Validate and store the tenant's conversion rule and claim window."""
    from siyu.tenants import service as tenants

    merged = {**DEFAULT_RULE, **rule}
    for name in ("points_per_yuan", "min_fen", "daily_cap", "claim_window_days"):
        v = merged[name]
        if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= 1_000_000_000:
            raise e.InvalidRule(field=name, problem=_("a whole number from 0"))
    if merged["claim_window_days"] < 1:
        raise e.InvalidRule(field="claim_window_days", problem=_("at least 1 day"))
    for name in ("session_multipliers", "tier_multipliers"):
        table = merged[name]
        if not isinstance(table, dict) or not all(
            str(k).isdigit() and isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 10_000
            for k, v in table.items()
        ):
            raise e.InvalidRule(field=name, problem=_("ids mapped to percentages 0–10000"))
        merged[name] = {str(k): int(v) for k, v in table.items()}
    tenants.update_settings(db, tenant_id=tenant_id, changes={"orders": merged})
    return merged


def points_for(rule: dict[str, Any], *, net_fen: int, session_id: int | None, tier_id: int) -> int:
    """Points for an order's net amount (fen), rounded down. Integer arithmetic only."""
    session_pct = int(rule["session_multipliers"].get(str(session_id), 100)) if session_id else 100
    tier_pct = int(rule["tier_multipliers"].get(str(tier_id), 100))
    return net_fen * int(rule["points_per_yuan"]) * session_pct * tier_pct // 1_000_000


def net_fen(order: m.Order) -> int:
    return 0 if order.status == m.CLOSED else max(0, order.paid_fen - order.refund_fen)


# --- import -----------------------------------------------------------------------------------


def create_import(
    db: Session,
    *,
    tenant_id: int,
    filename: str,
    fmt: str | None,
    session_id: int | None,
    size_bytes: int = 0,
    operator_id: int | None = None,
    upload_file: str = "",
) -> m.Import:
    if fmt is not None and fmt not in ("taobao", "douyin", "generic"):
        raise e.UnknownFormat(allowed="taobao, douyin, generic")
    if session_id is not None and not 0 < session_id < 2**31:
        raise e.InvalidClaim(field="session", problem=_("a positive id"))
    imp = m.Import(
        tenant_id=tenant_id,
        filename=filename[-200:],
        format=fmt or "",
        session_id=session_id,
        status=m.QUEUED,
        size_bytes=size_bytes,
        operator_id=operator_id,
        upload_file=upload_file,
        created_at=clock.now(),
    )
    db.add(imp)
    db.flush()
    return imp


def get_import(db: Session, *, tenant_id: int, import_id: int) -> m.Import:
    imp = db.scalar(
        select(m.Import).where(m.Import.id == import_id, m.Import.tenant_id == tenant_id)
    )
    if imp is None:
        raise e.ImportNotFound(import_id=import_id)
    return imp


def list_imports(db: Session, *, tenant_id: int, limit: int = 50) -> list[m.Import]:
    return list(
        db.scalars(
            select(m.Import)
            .where(m.Import.tenant_id == tenant_id)
            .order_by(m.Import.id.desc())
            .limit(limit)
        )
    )


def list_rejects(
    db: Session, *, tenant_id: int, import_id: int, limit: int | None = None
) -> list[m.ImportReject]:
    q = (
        select(m.ImportReject)
        .where(m.ImportReject.tenant_id == tenant_id, m.ImportReject.import_id == import_id)
        .order_by(m.ImportReject.line, m.ImportReject.id)
    )
    return list(db.scalars(q.limit(limit) if limit else q))


def start_import(db: Session, imp: m.Import) -> None:
    """(Re)start an import: counters and rejects from an earlier run are cleared."""
    imp.status, imp.rows, imp.imported, imp.updated, imp.rejected = m.RUNNING, 0, 0, 0, 0
    imp.bytes_read, imp.error = 0, ""
    db.execute(delete(m.ImportReject).where(m.ImportReject.import_id == imp.id))
    db.flush()


def describe_import(db: Session, imp: m.Import, *, fmt: str, encoding: str, size: int) -> None:
    imp.format, imp.encoding, imp.size_bytes = fmt, encoding, size
    db.flush()


def count_batch(db: Session, imp: m.Import, res: BatchResult, *, position: int) -> None:
    imp.imported += res.imported
    imp.updated += res.updated
    imp.rejected += res.rejected
    imp.rows = imp.imported + imp.updated + imp.rejected
    imp.bytes_read = position
    db.flush()


def add_counts(
    db: Session, *, import_id: int, res: BatchResult, position: int, run: int | None = None
) -> None:
    """``count_batch`` as one conditional UPDATE: increments in SQL, so concurrent
    transactions of one import (``staged``'s two halves of a chunk) add up instead of one
    overwriting the other. Takes the import's row lock until commit. Raises ImportSuperseded
    (the transaction must roll back) when a later run than ``run`` has claimed the import."""
    fence = () if run is None else (m.Import.attempts == run, m.Import.status == m.RUNNING)
    result = db.execute(
        update(m.Import)
        .where(m.Import.id == import_id, *fence)
        .values(
            imported=m.Import.imported + res.imported,
            updated=m.Import.updated + res.updated,
            rejected=m.Import.rejected + res.rejected,
            rows=m.Import.rows + res.imported + res.updated + res.rejected,
            bytes_read=func.greatest(m.Import.bytes_read, position),
            progress_at=clock.now(),
        )
        .execution_options(synchronize_session=False)
    )
    if not cast("CursorResult[Any]", result).rowcount:
        raise ImportSuperseded(import_id)


def finish_import(db: Session, imp: m.Import, *, status: str, error: str = "") -> None:
    imp.status = status
    imp.error = error[:500]
    imp.finished_at = clock.now()
    if status == m.DONE:
        imp.bytes_read = imp.size_bytes
    db.flush()


# A running import records progress every few seconds (each staged piece, each batch).
STALLED_AFTER = dt.timedelta(minutes=15)
MAX_ATTEMPTS = 3  # runs of one import in all: the first and two resumptions


def uploads_dir() -> Path:
    """Where uploaded files wait for their job (which deletes its file when done). Under
    SIYU_VAR_DIR, which web and worker hosts must share."""
    return get_settings().var_dir / "imports"


def upload_path(imp: m.Import) -> Path | None:
    """The import's uploaded file, while it is there."""
    if not imp.upload_file:
        return None
    path = uploads_dir() / imp.upload_file
    return path if path.is_file() else None


def claim_import(db: Session, import_id: int) -> int | None:
    """A job's start: the queued import becomes running, one attempt more; returns that run's
    number (``run_import``'s ``run``). None when it is not queued (another job of the same
    import got there first, or it is done): the job then does nothing, so a job queued twice
    never runs an import twice at once."""
    return db.scalar(
        update(m.Import)
        .where(m.Import.id == import_id, m.Import.status == m.QUEUED)
        .values(status=m.RUNNING, attempts=m.Import.attempts + 1, progress_at=clock.now())
        .returning(m.Import.attempts)
    )


class ImportSuperseded(Exception):  # noqa: N818 - a run's end, not an error
    """A later run has claimed this run's import (the sweep took it for lost after
    ``STALLED_AFTER`` without progress, and queued it again): the earlier run stops, and the
    transaction that found out rolls back, so it writes nothing more."""


def running_import(db: Session, import_id: int, run: int | None) -> m.Import:
    """The import, for a transaction of run ``run`` that writes its counts, report or status:
    locked until commit, so the sweep cannot take it over meanwhile (it skips locked imports).
    Raises ImportSuperseded when a later run has claimed it. ``run`` None: a run outside the
    job queue (the CLI, tests), which nothing takes over."""
    imp = db.get(m.Import, import_id, with_for_update=run is not None)
    assert imp is not None, f"no import {import_id}"
    if run is not None and (imp.attempts != run or imp.status != m.RUNNING):
        raise ImportSuperseded(import_id)
    return imp


def recover_imports(
    db: Session, *, now: dt.datetime | None = None
) -> tuple[list[tuple[int, Path]], list[int]]:
    """Imports that lost their job: running without progress for ``STALLED_AFTER`` (the
    worker died mid-file; the queue does not run a killed job again), or queued that long
    without a job starting them (the queue lost it).

    Each goes back to the queue while its uploaded file is there and it has had fewer than
    ``MAX_ATTEMPTS`` runs: importing is idempotent, so running the file again from the start
    updates the orders already written and clears the earlier run's counts and report. The
    others fail with a message telling the operator to upload the file again, instead of
    showing "running" for ever. Returns (id and file of those to queue again, ids failed);
    the caller queues ``tasks.import_file`` for the first after commit."""
    cutoff = (now or clock.now()) - STALLED_AFTER
    lost = db.scalars(
        select(m.Import)
        .where(
            m.Import.status.in_((m.QUEUED, m.RUNNING)),
            func.coalesce(m.Import.progress_at, m.Import.created_at) < cutoff,
        )
        .order_by(m.Import.id)
        .with_for_update(skip_locked=True)
    ).all()
    again: list[tuple[int, Path]] = []
    failed: list[int] = []
    for imp in lost:
        if imp.attempts < MAX_ATTEMPTS and (path := upload_path(imp)) is not None:
            imp.status = m.QUEUED  # also stamps progress_at: the next sweep waits again
            again.append((imp.id, path))
            continue
        finish_import(
            db,
            imp,
            status=m.FAILED,
            error=_(
                "The import stopped midway (its worker was interrupted): upload the file again."
            ),
        )
        failed.append(imp.id)
    db.flush()
    return again, failed


def add_rejects(db: Session, *, tenant_id: int, import_id: int, rejects: list[Reject]) -> None:
    """Report rows of an import's file that were not imported (line, column, reason)."""
    if rejects:
        db.execute(
            insert(m.ImportReject),
            [
                {
                    "tenant_id": tenant_id,
                    "import_id": import_id,
                    "line": r.line,
                    "column": r.column[:64],
                    "reason": r.reason[:200],
                }
                for r in rejects
            ],
        )


@dataclass
class BatchResult:
    imported: int
    updated: int
    rejected: int


def import_batch(
    db: Session, *, tenant_id: int, import_id: int, items: list[Record | Reject]
) -> BatchResult:
    """Upsert one batch of a file's rows and record its rejects; counts add up to its rows."""
    records = [r for r in items if isinstance(r, Record)]
    rejects = [r for r in items if isinstance(r, Reject)]
    add_rejects(db, tenant_id=tenant_id, import_id=import_id, rejects=rejects)
    rows = sum(1 + r.merged for r in records)
    _place_in_sessions(db, tenant_id=tenant_id, records=records)
    latest: dict[tuple[str, str], Record] = {}
    for r in records:
        latest[(r.platform, r.order_no)] = r  # last state wins
    inserted = _upsert(db, tenant_id=tenant_id, import_id=import_id, records=latest.values())
    if latest:
        _after_import(db, tenant_id=tenant_id, keys=list(latest))
    return BatchResult(imported=inserted, updated=rows - inserted, rejected=len(rejects))


def _place_in_sessions(db: Session, *, tenant_id: int, records: list[Record]) -> None:
    """Records without a session get the one live when they were paid, if any."""
    from siyu.live import service as live

    windows: dict[str, list[tuple[int, dt.datetime, dt.datetime]]] = {}
    for r in records:
        if r.session_id is None and r.paid_at is not None:
            if r.platform not in windows:
                windows[r.platform] = live.session_windows(
                    db, tenant_id=tenant_id, platform=r.platform
                )
            r.session_id = live.window_at(windows[r.platform], r.paid_at)


_COLUMNS = (
    "tenant_id",
    "platform",
    "order_no",
    "buyer",
    "paid_fen",
    "refund_fen",
    "status",
    "ordered_at",
    "paid_at",
    "items",
    "session_id",
    "import_id",
    "updated_at",
)
_UPDATE_SET = (
    "buyer = excluded.buyer, paid_fen = excluded.paid_fen, refund_fen = excluded.refund_fen, "
    "status = excluded.status, ordered_at = coalesce(excluded.ordered_at, orders.ordered_at), "
    "paid_at = coalesce(excluded.paid_at, orders.paid_at), items = excluded.items, "
    "session_id = coalesce(excluded.session_id, orders.session_id), "
    "import_id = excluded.import_id, updated_at = excluded.updated_at"
)
_PG_STAGING = (
    "CREATE TEMPORARY TABLE IF NOT EXISTS orders_staging ("
    "tenant_id integer, platform varchar(16), order_no varchar(64), buyer varchar(64), "
    "paid_fen bigint, refund_fen bigint, status varchar(16), ordered_at timestamptz, "
    "paid_at timestamptz, items varchar(500), session_id integer, import_id integer, "
    "updated_at timestamptz) ON COMMIT DELETE ROWS"
)
_PG_MERGE = text(
    f"INSERT INTO orders ({', '.join(_COLUMNS)}) SELECT {', '.join(_COLUMNS)} "
    f"FROM orders_staging ON CONFLICT (tenant_id, platform, order_no) DO UPDATE SET "
    f"{_UPDATE_SET} RETURNING (xmax = 0)"
)


def _upsert(db: Session, *, tenant_id: int, import_id: int, records: Iterable[Record]) -> int:
    """Insert or update the records (distinct keys); returns how many were new."""
    now = clock.now()
    rows = [
        (
            tenant_id,
            r.platform,
            r.order_no,
            r.buyer,
            r.paid_fen,
            r.refund_fen,
            r.status,
            r.ordered_at,
            r.paid_at,
            r.items,
            r.session_id,
            import_id,
            now,
        )
        for r in records
    ]
    if not rows:
        return 0
    if db.get_bind().dialect.name == "postgresql":
        conn = db.connection()
        conn.exec_driver_sql(_PG_STAGING)
        conn.exec_driver_sql("TRUNCATE orders_staging")
        raw: Any = conn.connection.driver_connection
        with (
            raw.cursor() as cur,
            cur.copy(f"COPY orders_staging ({', '.join(_COLUMNS)}) FROM STDIN") as copy,
        ):
            for row in rows:
                copy.write_row(row)
        flags = conn.execute(_PG_MERGE).scalars().all()
        # The staging rows stay for _after_import's join; the next batch truncates them.
        return sum(1 for f in flags if f)
    # SQLite: count the keys that exist, then one executemany upsert.
    existing = 0
    by_platform: dict[str, list[str]] = {}
    for row in rows:
        by_platform.setdefault(row[1], []).append(row[2])
    for platform, numbers in by_platform.items():
        for i in range(0, len(numbers), 500):
            existing += (
                db.scalar(
                    select(func.count())
                    .select_from(m.Order)
                    .where(
                        m.Order.tenant_id == tenant_id,
                        m.Order.platform == platform,
                        m.Order.order_no.in_(numbers[i : i + 500]),
                    )
                )
                or 0
            )
    from siyu.core.db import UTCDateTime

    utc = UTCDateTime()
    dialect = db.get_bind().dialect
    sql = (
        f"INSERT INTO orders ({', '.join(_COLUMNS)}) VALUES ({', '.join('?' * len(_COLUMNS))}) "
        f"ON CONFLICT (tenant_id, platform, order_no) DO UPDATE SET {_UPDATE_SET}"
    )
    params = [
        (
            *row[:7],
            utc.process_bind_param(row[7], dialect),
            utc.process_bind_param(row[8], dialect),
            *row[9:12],
            utc.process_bind_param(row[12], dialect),
        )
        for row in rows
    ]
    db.connection().exec_driver_sql(sql, params)
    return len(rows) - existing


_OPEN_CLAIMS = (m.PENDING, m.CREDITED, m.REVERSED)


def upsert_normalised(
    db: Session,
    *,
    table: str,
    lo: int,
    hi: int,
    imp: m.Import,
    now: dt.datetime,
    half: int | None = None,
) -> tuple[int, int]:
    """Upsert an import's normalised rows (PostgreSQL; ``orders.staged``): ``table`` holds
    (line, order_no, buyer, paid_fen, refund_fen, status, ordered_at, paid_at, items, ok);
    the ``ok`` rows of lines [lo, hi] are written, the last line per order number winning.
    ``half`` (0 or 1) keeps to the order numbers with ``hashtext(order_no) & 1 = half``: every
    line of one order falls in the same half, so two halves may run in two concurrent
    transactions and the last line still wins. Returns (new orders, rows written including
    the superseded duplicates)."""
    from siyu.live import service as live

    params: dict[str, Any] = {}
    session = ":session"
    windows = (
        live.session_windows(db, tenant_id=imp.tenant_id, platform="taobao")
        if imp.session_id is None
        else []
    )
    if windows:  # the session live at payment (live.window_at, in SQL)
        session = (
            "(SELECT w.id FROM unnest(CAST(:w_ids AS integer[]), CAST(:w_starts AS "
            "timestamptz[]), CAST(:w_ends AS timestamptz[])) AS w(id, s, e) "
            "WHERE w.s <= last.paid_at AND last.paid_at < w.e ORDER BY w.s DESC, w.id DESC "
            "LIMIT 1)"
        )
        params = {
            "w_ids": [w[0] for w in windows],
            "w_starts": [w[1] for w in windows],
            "w_ends": [w[2] for w in windows],
        }
    split = "" if half is None else " AND hashtext(order_no) & 1 = :half"
    new, valid = db.execute(
        text(
            f"WITH src AS (SELECT * FROM {table} WHERE ok AND line BETWEEN :lo AND :hi{split}), "
            # Byte order ("C"): the same groups, sorted without the locale's strcoll.
            'last AS (SELECT DISTINCT ON (order_no COLLATE "C") * FROM src '
            'ORDER BY order_no COLLATE "C", line DESC), '
            f"up AS (INSERT INTO orders ({', '.join(_COLUMNS)}) "
            "SELECT :t, 'taobao', order_no, buyer, paid_fen, least(refund_fen, paid_fen), status, "
            f"ordered_at, paid_at, items, {session}, :imp, :now FROM last "
            f"ON CONFLICT (tenant_id, platform, order_no) DO UPDATE SET {_UPDATE_SET} "
            "RETURNING (xmax = 0) AS new) "
            "SELECT (SELECT count(*) FROM up WHERE new), (SELECT count(*) FROM src)"
        ),
        {
            "lo": lo,
            "hi": hi,
            "t": imp.tenant_id,
            "imp": imp.id,
            "session": imp.session_id,
            "now": now,
            "half": half,
            **params,
        },
    ).one()
    return int(new), int(valid)


def after_normalised_upsert(db: Session, *, imp: m.Import, at: dt.datetime) -> None:
    """``_after_import`` for ``upsert_normalised``: settle the touched orders' open claims."""
    if any_open_claim(db, tenant_id=imp.tenant_id):
        claims = list(
            db.scalars(select_claims_touched(tenant_id=imp.tenant_id, import_id=imp.id, at=at))
        )
        settle_claims(db, tenant_id=imp.tenant_id, claims=claims)


def any_open_claim(db: Session, *, tenant_id: int) -> bool:
    return (
        db.scalar(
            select(m.Claim.id)
            .where(m.Claim.tenant_id == tenant_id, m.Claim.status.in_(_OPEN_CLAIMS))
            .limit(1)
        )
        is not None
    )


def _after_import(db: Session, *, tenant_id: int, keys: list[tuple[str, str]]) -> None:
    """Match the batch's pending claims; claw back refunds of its credited orders."""
    if not any_open_claim(db, tenant_id=tenant_id):
        return  # a tenant's first imports, and the benchmark: nothing to match
    claims: list[m.Claim] = []
    if db.get_bind().dialect.name == "postgresql":  # join the batch still in staging
        claims = list(
            db.scalars(
                select(m.Claim)
                .from_statement(
                    text(
                        "SELECT c.* FROM orders_claims c JOIN orders_staging s"
                        " ON s.tenant_id = c.tenant_id AND s.platform = c.platform"
                        " AND s.order_no = c.order_no"
                        " WHERE c.tenant_id = :t"
                        " AND c.status IN ('pending', 'credited', 'reversed')"
                        " ORDER BY c.id"
                    )
                )
                .params(t=tenant_id)
            )
        )
        keys = []
    by_platform: dict[str, list[str]] = {}
    for platform, number in keys:
        by_platform.setdefault(platform, []).append(number)
    for platform, numbers in by_platform.items():
        for i in range(0, len(numbers), 1000):
            claims += db.scalars(
                select(m.Claim)
                .where(
                    m.Claim.tenant_id == tenant_id,
                    m.Claim.platform == platform,
                    m.Claim.order_no.in_(numbers[i : i + 1000]),
                    m.Claim.status.in_(_OPEN_CLAIMS),
                )
                .order_by(m.Claim.id)
            ).all()
    settle_claims(db, tenant_id=tenant_id, claims=claims)


def select_claims_touched(*, tenant_id: int, import_id: int, at: dt.datetime) -> Any:
    """Open claims of the orders an import's upsert wrote at ``at`` (its ``updated_at``)."""
    return (
        select(m.Claim)
        .join(
            m.Order,
            and_(
                m.Order.tenant_id == m.Claim.tenant_id,
                m.Order.platform == m.Claim.platform,
                m.Order.order_no == m.Claim.order_no,
            ),
        )
        .where(
            m.Claim.tenant_id == tenant_id,
            m.Claim.status.in_(_OPEN_CLAIMS),
            m.Order.import_id == import_id,
            m.Order.updated_at == at,
        )
        .order_by(m.Claim.id)
    )


def settle_claims(db: Session, *, tenant_id: int, claims: list[m.Claim]) -> None:
    """After an upsert of their orders: decide pending claims, claw back refunds of credited
    ones. ``claims`` are open claims of just-imported orders, in id order."""
    if not claims:
        return
    db.expire_all()  # the upsert wrote orders behind the session's back
    for claim in claims:
        order = find_order(
            db, tenant_id=tenant_id, platform=claim.platform, order_no=claim.order_no
        )
        assert order is not None
        if claim.status == m.PENDING:
            _decide(db, claim, order, flagged=claim.flagged)
        else:
            _refund(db, claim, order)


def find_order(db: Session, *, tenant_id: int, platform: str, order_no: str) -> m.Order | None:
    return db.scalar(
        select(m.Order).where(
            m.Order.tenant_id == tenant_id,
            m.Order.platform == platform,
            m.Order.order_no == order_no,
        )
    )


def get_order(db: Session, *, tenant_id: int, platform: str, order_no: str) -> m.Order:
    order = find_order(db, tenant_id=tenant_id, platform=platform, order_no=order_no)
    if order is None:
        raise e.OrderNotFound(platform=platform, order_no=order_no)
    return order


# --- claims -----------------------------------------------------------------------------------


def _check_claim_input(platform: str, order_no: str, account: str) -> tuple[str, str, str]:
    from siyu.orders.readers import _ORDER_NO

    platform = (platform or "").strip().lower()
    order_no = (order_no or "").strip()
    account = (account or "").strip()
    if platform not in PLATFORMS:
        raise e.InvalidClaim(field="platform", problem=", ".join(PLATFORMS))
    if not _ORDER_NO.match(order_no):
        raise e.InvalidClaim(field="order", problem=_("1–64 letters, digits, '-' or '_'"))
    if not 0 < len(account) <= 64:
        raise e.InvalidClaim(field="account", problem=_("1–64 characters"))
    return platform, order_no, account


def claim_order(
    db: Session,
    *,
    tenant_id: int,
    member_id: int,
    platform: str,
    order_no: str,
    account: str,
    ip: str = "",
) -> m.Claim:
    """A member claims an order. Returns the claim: credited, pending, review or rejected
    (with its reason code). Raises InvalidClaim, RateLimited, ClaimingLocked, MemberNotFound.
    A repeat of a member's own live or pending claim returns it unchanged."""
    from siyu.orders import abuse

    platform, order_no, account = _check_claim_input(platform, order_no, account)
    members.get_member(db, tenant_id=tenant_id, member_id=member_id)
    abuse.check(db, tenant_id=tenant_id, member_id=member_id, ip=ip[:64])
    holder = _live_claim(db, tenant_id, platform, order_no)
    if holder is not None and holder.member_id == member_id:
        return holder
    own = db.scalar(
        select(m.Claim).where(
            m.Claim.tenant_id == tenant_id,
            m.Claim.member_id == member_id,
            m.Claim.platform == platform,
            m.Claim.order_no == order_no,
            m.Claim.status == m.PENDING,
        )
    )
    if own is not None:
        return own
    flagged = abuse.record_attempt(
        db,
        tenant_id=tenant_id,
        member_id=member_id,
        ip=ip[:64],
        platform=platform,
        account=account,
    )
    tenant = db.get(Tenant, tenant_id)
    assert tenant is not None
    now = clock.now()
    claim = m.Claim(
        tenant_id=tenant_id,
        member_id=member_id,
        platform=platform,
        order_no=order_no,
        account=account,
        active_key=None,
        status=m.PENDING,
        reason="",
        points=0,
        clawed_points=0,
        flagged=flagged,
        ip=ip[:64],
        created_at=now,
        expires_at=now + dt.timedelta(days=int(rule_of(tenant)["claim_window_days"])),
    )
    reason = _precheck(db, tenant_id, member_id, platform, account, taken=holder is not None)
    order = find_order(db, tenant_id=tenant_id, platform=platform, order_no=order_no)
    if not reason and order is not None:
        reason = _order_problem(db, claim, order)
    if reason:
        return _reject(db, claim, reason)
    if order is None:  # pending: an import matches it, or it expires
        db.add(claim)
        db.flush()
    else:
        # Take the order as the claim is written: the unique live-claim key decides races
        # (on PostgreSQL a concurrent taker waits for the first transaction, then fails here).
        claim.active_key = f"{platform}:{order_no}"
        try:
            with db.begin_nested():
                db.add(claim)
        except IntegrityError:
            holder = _live_claim(db, tenant_id, platform, order_no)
            if holder is not None and holder.member_id == member_id:  # our own retry won
                abuse.mark_ok(db, tenant_id=tenant_id, member_id=member_id)
                return holder
            return _reject(db, _copy_rejected(claim), e.AlreadyClaimed.code)
        _decide(db, claim, order, flagged=flagged)
    if claim.status != m.REJECTED:
        abuse.mark_ok(db, tenant_id=tenant_id, member_id=member_id)
    return claim


def _copy_rejected(c: m.Claim) -> m.Claim:
    """A fresh row for a claim whose insert lost the race (that row was rolled back)."""
    return m.Claim(
        tenant_id=c.tenant_id,
        member_id=c.member_id,
        platform=c.platform,
        order_no=c.order_no,
        account=c.account,
        active_key=None,
        status=m.REJECTED,
        reason="",
        points=0,
        clawed_points=0,
        flagged=c.flagged,
        ip=c.ip,
        created_at=c.created_at,
        expires_at=c.expires_at,
    )


def _take(db: Session, claim: m.Claim) -> bool:
    """Make ``claim`` the order's one live claim; False if another holds it already.

    The unique (tenant, active_key) decides races: on PostgreSQL a concurrent taker waits
    for the first transaction and then fails here."""
    try:
        with db.begin_nested():
            claim.active_key = f"{claim.platform}:{claim.order_no}"
            db.flush()
    except IntegrityError:
        return False
    return True


def _live_claim(db: Session, tenant_id: int, platform: str, order_no: str) -> m.Claim | None:
    return db.scalar(
        select(m.Claim)
        .where(m.Claim.tenant_id == tenant_id, m.Claim.active_key == f"{platform}:{order_no}")
        .execution_options(populate_existing=True)
    )


def _precheck(
    db: Session, tenant_id: int, member_id: int, platform: str, account: str, *, taken: bool
) -> str:
    """The rules that need no order: a reason code, or '' if they pass."""
    if taken:
        return e.AlreadyClaimed.code
    bound = db.scalars(
        select(PlatformAccount).where(
            PlatformAccount.tenant_id == tenant_id,
            PlatformAccount.platform == platform,
            or_(PlatformAccount.member_id == member_id, PlatformAccount.account == account),
        )
    ).all()
    for acc in bound:
        if acc.member_id == member_id and acc.account != account:
            return e.BoundToOtherAccount.code
        if acc.member_id != member_id:
            return e.AccountTaken.code
    return ""


def _order_problem(db: Session, claim: m.Claim, order: m.Order) -> str:
    tenant = db.get(Tenant, claim.tenant_id)
    assert tenant is not None
    rule = rule_of(tenant)
    if order.status not in m.CLAIMABLE:
        return e.OrderUnpaid.code
    if order.buyer != claim.account:
        return e.AccountMismatch.code
    paid_at = order.paid_at or order.ordered_at
    if paid_at is not None and clock.now() > paid_at + dt.timedelta(
        days=int(rule["claim_window_days"])
    ):
        return e.ClaimWindowClosed.code
    if net_fen(order) < int(rule["min_fen"]) or net_fen(order) == 0:
        return e.BelowMinimum.code
    return ""


def _reject(db: Session, claim: m.Claim, reason: str) -> m.Claim:
    claim.status = m.REJECTED
    claim.reason = reason
    claim.active_key = None
    claim.decided_at = clock.now()
    if claim not in db:
        db.add(claim)
    db.flush()
    return claim


def _decide(db: Session, claim: m.Claim, order: m.Order, *, flagged: bool) -> None:
    """Judge a held claim against its (now imported) order: credit, review or reject."""
    reason = _order_problem(db, claim, order)
    if reason:
        _reject(db, claim, reason)
        return
    if claim.active_key is None and not _take(db, claim):
        _reject(db, claim, e.AlreadyClaimed.code)
        return
    if flagged:
        claim.status = m.REVIEW
        claim.reason = "orders.flagged_account"
        db.flush()
        return
    _credit(db, claim, order)


def _credit(db: Session, claim: m.Claim, order: m.Order) -> None:
    if order.session_id is None and order.paid_at is not None:
        # No session given by the import: the one that was live when it was paid, if any.
        from siyu.live import service as live

        order.session_id = live.session_at(
            db, tenant_id=order.tenant_id, platform=order.platform, instant=order.paid_at
        )
    tenant = db.get(Tenant, claim.tenant_id)
    assert tenant is not None
    try:
        members.bind_account(
            db,
            tenant_id=claim.tenant_id,
            member_id=claim.member_id,
            platform=claim.platform,
            account=claim.account,
        )
    except PlatformAccountTaken:
        _reject(db, claim, e.AccountTaken.code)
        return
    except PlatformAlreadyBound:
        _reject(db, claim, e.BoundToOtherAccount.code)
        return
    rule = rule_of(tenant)
    tier = members.tier_progress(db, tenant_id=claim.tenant_id, member_id=claim.member_id).tier
    points = points_for(rule, net_fen=net_fen(order), session_id=order.session_id, tier_id=tier.id)
    cap = int(rule["daily_cap"])
    if cap:
        points = min(points, max(0, cap - _earned_today(db, claim, tenant.timezone)))
    claim.status = m.CREDITED
    claim.reason = "" if points else "orders.daily_cap_reached"
    claim.points = points
    claim.decided_at = clock.now()
    db.flush()
    if points:
        entry = ledger.grant(
            db,
            tenant_id=claim.tenant_id,
            member_id=claim.member_id,
            points=points,
            reason="purchase",
            idempotency_key=f"order:{claim.platform}:{claim.order_no}",
            actor=ledger.JOB,
            reference=f"order:{claim.platform}:{claim.order_no}",
            memo=order.items[:200],
        )
        claim.entry_id = entry.id
        db.flush()
    if order.refund_fen or order.status == m.CLOSED:
        _refund(db, claim, order)


def _earned_today(db: Session, claim: m.Claim, tz: str) -> int:
    from zoneinfo import ZoneInfo

    today = clock.now().astimezone(ZoneInfo(tz)).date()
    start = dt.datetime.combine(today, dt.time(), tzinfo=ZoneInfo(tz)).astimezone(dt.UTC)
    return int(
        db.scalar(
            select(func.coalesce(func.sum(m.Claim.points), 0)).where(
                m.Claim.tenant_id == claim.tenant_id,
                m.Claim.member_id == claim.member_id,
                m.Claim.status.in_((m.CREDITED, m.REVERSED)),
                m.Claim.decided_at >= start,
                m.Claim.id != claim.id,
            )
        )
        or 0
    )


def _refund(db: Session, claim: m.Claim, order: m.Order) -> None:
    """Take back points for refunds: proportionally, from the wallet or as debt."""
    if not claim.points or claim.entry_id is None or order.paid_fen <= 0:
        return
    kept = claim.points * net_fen(order) // order.paid_fen
    target = claim.points - kept
    delta = target - claim.clawed_points
    if delta <= 0:
        return
    debt.clawback(
        db,
        tenant_id=claim.tenant_id,
        entry_id=claim.entry_id,
        points=delta,
        idempotency_key=f"refund:{claim.platform}:{claim.order_no}:{target}",
        actor=ledger.JOB,
        reason="reversal",
        memo=_("refund of order {order_no}").format(order_no=claim.order_no),
    )
    claim.clawed_points = target
    claim.status = m.REVERSED
    db.flush()


def list_claims(
    db: Session,
    *,
    tenant_id: int,
    member_id: int | None = None,
    status: str | None = None,
    limit: int = 50,
    before_id: int | None = None,
) -> list[m.Claim]:
    q = select(m.Claim).where(m.Claim.tenant_id == tenant_id)
    if member_id is not None:
        q = q.where(m.Claim.member_id == member_id)
    if status is not None:
        q = q.where(m.Claim.status == status)
    if before_id is not None:
        q = q.where(m.Claim.id < before_id)
    return list(db.scalars(q.order_by(m.Claim.id.desc()).limit(max(1, min(limit, 200)))))


def get_claim(db: Session, *, tenant_id: int, claim_id: int) -> m.Claim:
    claim = db.scalar(select(m.Claim).where(m.Claim.id == claim_id, m.Claim.tenant_id == tenant_id))
    if claim is None:
        raise e.ClaimNotFound(claim_id=claim_id)
    return claim


def approve_claim(
    db: Session, *, tenant_id: int, claim_id: int, operator_id: int | None
) -> m.Claim:
    """Credit a flagged claim (its order must still pass every rule)."""
    claim = _reviewable(db, tenant_id, claim_id)
    claim.reviewer_id = operator_id
    order = find_order(db, tenant_id=tenant_id, platform=claim.platform, order_no=claim.order_no)
    if order is None:
        claim.status = m.PENDING
        claim.flagged = False
        db.flush()
        return claim
    claim.flagged = False
    if order.status not in m.CLAIMABLE or order.buyer != claim.account:
        _reject(db, claim, _order_problem(db, claim, order) or e.AccountMismatch.code)
        return claim
    _credit(db, claim, order)
    return claim


def reject_claim(
    db: Session, *, tenant_id: int, claim_id: int, operator_id: int | None, reason: str
) -> m.Claim:
    reason = (reason or "").strip()
    if not reason:
        raise e.InvalidClaim(field="reason", problem=_("required"))
    claim = _reviewable(db, tenant_id, claim_id)
    claim.reviewer_id = operator_id
    _reject(db, claim, e.ReviewRejected.code)
    claim.reason = f"{e.ReviewRejected.code}:{reason[:150]}"
    db.flush()
    return claim


def _reviewable(db: Session, tenant_id: int, claim_id: int) -> m.Claim:
    claim = db.scalar(
        select(m.Claim)
        .where(m.Claim.id == claim_id, m.Claim.tenant_id == tenant_id)
        .with_for_update()
    )
    if claim is None:
        raise e.ClaimNotFound(claim_id=claim_id)
    if claim.status != m.REVIEW:
        raise e.NotReviewable(claim_id=claim_id, status=claim.status)
    return claim


def expire_claims(db: Session, *, tenant_id: int | None = None, limit: int = 500) -> int:
    """Pending claims past their window become expired (the order never came)."""
    now = clock.now()
    q = select(m.Claim.id).where(m.Claim.status == m.PENDING, m.Claim.expires_at <= now)
    if tenant_id is not None:
        q = q.where(m.Claim.tenant_id == tenant_id)
    ids = db.scalars(q.order_by(m.Claim.id).limit(limit)).all()
    if not ids:
        return 0
    expired = db.execute(
        update(m.Claim)
        .where(m.Claim.id.in_(ids), m.Claim.status == m.PENDING)
        .values(status=m.EXPIRED, reason=e.ClaimExpired.code, active_key=None, decided_at=now)
        .returning(
            m.Claim.id, m.Claim.tenant_id, m.Claim.member_id, m.Claim.platform, m.Claim.order_no
        )
        .execution_options(synchronize_session=False)
    ).all()
    for claim_id, claim_tenant, member_id, platform, order_no in expired:
        _tell_expired(db, claim_id, claim_tenant, member_id, platform, order_no)
    return len(expired)


def _tell_expired(
    db: Session, claim_id: int, tenant_id: int, member_id: int, platform: str, order_no: str
) -> None:
    """The member's message that a pending claim expired: in the same transaction as the
    expiry, keyed by the claim, so a re-run never sends it twice."""
    from siyu.messaging import service as messaging

    messaging.send(
        db,
        tenant_id=tenant_id,
        purpose=f"orders:claim:{claim_id}:expired",
        member_ids=[member_id],
        title=_("Order claim expired"),
        body=_(
            "We did not receive your {{ platform }} order {{ order_no }} within the claim"
            " window, so the claim has expired and no points were added. If you did buy it,"
            " please contact our service staff."
        ),
        context={
            "platform": {"taobao": _("Taobao"), "douyin": _("Douyin")}.get(platform, platform),
            "order_no": order_no,
        },
        kind="orders",
        created_by="orders",
    )


def reason_text(code: str) -> str:
    """The member-readable text of a claim's reason code."""
    from siyu.core.errors import all_error_classes

    base, _sep, note = code.partition(":")
    if base == "orders.flagged_account":
        return _("Waiting for review by our staff")
    if base == "orders.daily_cap_reached":
        return _("Daily points cap reached")
    for cls in all_error_classes():
        if cls.code == base:
            return f"{cls.title}: {note}" if note else str(cls.title)
    return code


# --- accounts ---------------------------------------------------------------------------------


def rebind_account(
    db: Session,
    *,
    tenant_id: int,
    platform: str,
    account: str,
    to_member_id: int,
    operator_id: int | None,
    reason: str,
) -> m.AccountRebind:
    """Move a platform account to another member (operators only), with an audit row."""
    platform, _o, account = _check_claim_input(platform, "x", account)
    reason = (reason or "").strip()
    if not reason:
        raise e.InvalidClaim(field="reason", problem=_("required"))
    members.get_member(db, tenant_id=tenant_id, member_id=to_member_id)
    owner = db.scalar(
        select(PlatformAccount).where(
            PlatformAccount.tenant_id == tenant_id,
            PlatformAccount.platform == platform,
            PlatformAccount.account == account,
        )
    )
    from_id = owner.member_id if owner else None
    if owner is not None:
        members.unbind_account(
            db, tenant_id=tenant_id, member_id=owner.member_id, platform=platform
        )
    db.execute(
        delete(PlatformAccount).where(
            PlatformAccount.tenant_id == tenant_id,
            PlatformAccount.member_id == to_member_id,
            PlatformAccount.platform == platform,
        )
    )
    db.expire_all()
    members.bind_account(
        db, tenant_id=tenant_id, member_id=to_member_id, platform=platform, account=account
    )
    row = m.AccountRebind(
        tenant_id=tenant_id,
        platform=platform,
        account=account,
        from_member_id=from_id,
        to_member_id=to_member_id,
        operator_id=operator_id,
        reason=reason[:200],
        created_at=clock.now(),
    )
    db.add(row)
    db.flush()
    return row


def list_rebinds(db: Session, *, tenant_id: int, limit: int = 50) -> list[m.AccountRebind]:
    return list(
        db.scalars(
            select(m.AccountRebind)
            .where(m.AccountRebind.tenant_id == tenant_id)
            .order_by(m.AccountRebind.id.desc())
            .limit(limit)
        )
    )


# --- statistics -------------------------------------------------------------------------------


@dataclass
class SessionStats:
    session_id: int | None
    orders: int
    claimed: int
    points: int

    @property
    def claim_rate(self) -> float:
        return round(self.claimed / self.orders, 4) if self.orders else 0.0


def session_stats(db: Session, *, tenant_id: int) -> list[SessionStats]:
    """Per live session: orders imported, orders claimed (credited), points issued (net)."""
    held = and_(
        m.Claim.tenant_id == m.Order.tenant_id,
        m.Claim.active_key == m.Order.platform + ":" + m.Order.order_no,
        m.Claim.status.in_((m.CREDITED, m.REVERSED)),
    )
    rows = db.execute(
        select(
            m.Order.session_id,
            func.count(m.Order.id),
            func.count(m.Claim.id),
            func.coalesce(func.sum(m.Claim.points - m.Claim.clawed_points), 0),
        )
        .select_from(m.Order)
        .outerjoin(m.Claim, held)
        .where(m.Order.tenant_id == tenant_id)
        .group_by(m.Order.session_id)
        .order_by(case((m.Order.session_id.is_(None), 1), else_=0), m.Order.session_id.desc())
    ).all()
    return [SessionStats(s, int(o), int(c), int(p)) for s, o, c, p in rows]


def member_debt(db: Session, *, tenant_id: int, member_id: int) -> int:
    return debt.debt_of(db, tenant_id=tenant_id, member_id=member_id)
