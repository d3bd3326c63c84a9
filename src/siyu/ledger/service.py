"""The points ledger: the only code that writes ledger tables.

Guarantees (tested as properties in tests/ledger):
- every entry's postings sum to zero;
- a wallet's balance equals the sum of its postings and the sum of its lots' remainders,
  and is never negative (also a CHECK constraint);
- an idempotency key is used once per tenant: a repeat returns the first entry unchanged;
- debits consume unexpired lots earliest-expiry first (never-expiring lots last).

Concurrency: every write locks the member's wallet row first (``SELECT … FOR UPDATE``; SQLite
serialises writers with ``BEGIN IMMEDIATE``), so lots and balance of one member change under
one lock. Entries claim their idempotency key with ``INSERT … ON CONFLICT DO NOTHING``: a
concurrent duplicate blocks on the unique index and, once the first commits, gets the first
entry back.

On PostgreSQL, grants and spends first try one server-side function call each (created by
the "ledger posting functions" migration) that does the common case in a single round trip and
changes nothing otherwise (``alone`` sends it in autocommit, its own transaction, for a
posting with nothing else to write); the Python code below then handles every case (no wallet
yet, due lots, too few points, replays after a wait). Both implementations run the same tests
and properties (tests/ledger runs on both databases). Elsewhere, grants and spends take few
round trips: one locking read that also brings the tenant's policy and the system account,
one INSERT … RETURNING for the entry, bulk inserts without RETURNING for postings, lots and
movements, one conditional UPDATE of the wallet.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Concatenate, ParamSpec, cast

from sqlalchemy import Engine, func, insert, select, update
from sqlalchemy.engine import CursorResult
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, configure_mappers, make_transient_to_detached
from sqlalchemy.orm.attributes import set_committed_value
from sqlalchemy.orm.instrumentation import manager_of_class
from sqlalchemy.orm.util import identity_key

from siyu.core import clock
from siyu.core.db import call_in_autocommit, unit_of_work
from siyu.core.errors import InvalidField
from siyu.core.i18n import gettext as _
from siyu.ledger import models as m
from siyu.ledger.errors import (
    EntryNotFound,
    IdempotencyConflict,
    InsufficientPoints,
    InvalidExpiry,
    InvalidPoints,
    InvalidReason,
    NotReversible,
    ReversalTooLarge,
)
from siyu.members.errors import MemberNotFound
from siyu.members.models import Member
from siyu.tenants.models import Tenant

P = ParamSpec("P")
MAX_POINTS = 1_000_000_000
_REASON = re.compile(r"^[a-z0-9][a-z0-9_.:-]{0,63}$")


@dataclass(frozen=True)
class Actor:
    """Who caused a change: a member, an operator, a job or the CLI/system."""

    type: str
    id: str = ""

    @classmethod
    def operator(cls, operator_id: int) -> Actor:
        return cls("operator", str(operator_id))

    @classmethod
    def member(cls, member_id: int) -> Actor:
        return cls("member", str(member_id))


JOB = Actor("job")
CLI = Actor("cli")


@dataclass
class ExpiringPoints:
    expires_at: dt.datetime
    points: int


@dataclass
class Balance:
    member_id: int
    balance: int
    growth: int
    expiring: list[ExpiringPoints] = field(default_factory=list)


# --- accounts ---------------------------------------------------------------------------------


def _system_account(db: Session, tenant_id: int, kind: str) -> m.Account:
    acc = db.scalar(
        select(m.Account).where(m.Account.tenant_id == tenant_id, m.Account.code == kind)
    )
    if acc is None:
        acc = _create_account(db, tenant_id=tenant_id, code=kind, kind=kind, member_id=None)
    return acc


def _create_account(
    db: Session, *, tenant_id: int, code: str, kind: str, member_id: int | None
) -> m.Account:
    acc = m.Account(tenant_id=tenant_id, code=code, kind=kind, member_id=member_id)
    try:
        with db.begin_nested():  # a concurrent creator wins; we then read its row
            db.add(acc)
    except IntegrityError:
        found = db.scalar(
            select(m.Account).where(m.Account.tenant_id == tenant_id, m.Account.code == code)
        )
        assert found is not None
        return found
    return acc


def open_accounts(db: Session, *, tenant_id: int) -> None:
    """Create the tenant's system accounts (called when a tenant is created)."""
    for kind in m.SYSTEM_KINDS:
        _system_account(db, tenant_id, kind)


def _wallet(db: Session, tenant_id: int, member_id: int, *, lock: bool) -> m.Account:
    q = select(m.Account).where(
        m.Account.tenant_id == tenant_id, m.Account.code == f"wallet:{member_id}"
    )
    if lock:
        # populate_existing: the lock may have waited on another writer; read its result.
        q = q.with_for_update().execution_options(populate_existing=True)
    acc = db.scalar(q)
    if acc is None:
        if (
            db.scalar(
                select(Member.id).where(Member.id == member_id, Member.tenant_id == tenant_id)
            )
            is None
        ):
            raise MemberNotFound(member_id=member_id)
        _create_account(
            db, tenant_id=tenant_id, code=f"wallet:{member_id}", kind=m.WALLET, member_id=member_id
        )
        acc = db.scalar(q)
        assert acc is not None
    return acc


def open_wallet(db: Session, *, tenant_id: int, member_id: int) -> m.Account:
    return _wallet(db, tenant_id, member_id, lock=False)


# --- validation -------------------------------------------------------------------------------


def _check_points(points: int) -> None:
    if isinstance(points, bool) or not isinstance(points, int) or not 0 < points <= MAX_POINTS:
        raise InvalidPoints(max=MAX_POINTS)


def _check_reason(reason: str) -> None:
    if not _REASON.match(reason or ""):
        raise InvalidReason(reason=reason)


# Keys the ledger derives itself (``expire:<lot>:<n>``). A caller's key there would take an
# expiry's key first and make every later write to that wallet fail on the unique index.
_RESERVED_KEY_PREFIXES = ("expire:", "settle:")


def _check_key(key: str) -> None:
    if not key or len(key) > 200 or key.startswith(_RESERVED_KEY_PREFIXES):
        raise InvalidField(
            field="idempotency_key",
            problem=_("1–200 characters, not starting with expire: or settle:"),
        )


# --- posting ----------------------------------------------------------------------------------


def _existing(db: Session, tenant_id: int, key: str) -> m.JournalEntry | None:
    return db.scalar(
        select(m.JournalEntry).where(
            m.JournalEntry.tenant_id == tenant_id, m.JournalEntry.idempotency_key == key
        )
    )


def _replay(
    entry: m.JournalEntry, *, member_id: int, kind: str, points: int, reverses_id: int | None = None
) -> m.JournalEntry:
    """The first entry for a key, if the repeat asks for the same change."""
    if (entry.member_id, entry.kind, entry.points, entry.reverses_id) != (
        member_id,
        kind,
        points,
        reverses_id,
    ):
        raise IdempotencyConflict(key=entry.idempotency_key, entry_id=entry.id)
    return entry


def _replay_reversal(entry: m.JournalEntry, *, entry_id: int, points: int | None) -> m.JournalEntry:
    if entry.reverses_id != entry_id or (points is not None and abs(entry.points) != points):
        raise IdempotencyConflict(key=entry.idempotency_key, entry_id=entry.id)
    return entry


def _post(db: Session, entry: m.JournalEntry, lines: list[tuple[m.Account, int]]) -> None:
    assert sum(amount for _, amount in lines) == 0, "postings must balance"
    db.add_all(
        m.Posting(tenant_id=entry.tenant_id, entry_id=entry.id, account_id=acc.id, amount=amount)
        for acc, amount in lines
    )
    for acc, amount in lines:
        if acc.kind != m.WALLET:
            continue
        # Conditional update: the CHECK constraint and this guard both refuse a negative wallet.
        result = db.execute(
            update(m.Account)
            .where(m.Account.id == acc.id, m.Account.balance + amount >= 0)
            .values(balance=m.Account.balance + amount)
            .execution_options(synchronize_session=False)
        )
        done = cast("CursorResult[Any]", result).rowcount
        if not done:
            raise InsufficientPoints(balance=acc.balance, wanted=-amount)
        # Mirror the database without marking the row dirty (no second UPDATE at flush).
        set_committed_value(acc, "balance", acc.balance + amount)


def _entry_values(
    *,
    tenant_id: int,
    member_id: int,
    kind: str,
    points: int,
    reason: str,
    key: str,
    actor: Actor,
    memo: str,
    reference: str,
    reverses_id: int | None = None,
    counts_for_growth: bool = True,
) -> dict[str, Any]:
    """A new journal entry's column values (all but ``id``)."""
    return dict(
        tenant_id=tenant_id,
        member_id=member_id,
        kind=kind,
        points=points,
        reason=reason,
        memo=memo[:500],
        reference=reference[:200],
        actor_type=actor.type,
        actor_id=actor.id,
        idempotency_key=key,
        reverses_id=reverses_id,
        reversed_points=0,
        counts_for_growth=counts_for_growth,
        created_at=clock.now(),
    )


def _insert(db: Session) -> Any:
    """The dialect's INSERT, for ``ON CONFLICT DO NOTHING`` (SQLite and PostgreSQL)."""
    if db.get_bind().dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        return pg_insert
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    return sqlite_insert


@dataclass
class _Locked:
    wallet: m.Account
    timezone: str
    settings: dict[str, Any]
    system_account_id: int


def _lock_for_posting(db: Session, tenant_id: int, member_id: int, system_kind: str) -> _Locked:
    """Lock the wallet and read, in the same round trip, what a posting needs besides it:
    the tenant's expiry policy and the id of the system account on the other side."""
    system_id = (
        select(m.Account.id)
        .where(m.Account.tenant_id == tenant_id, m.Account.code == system_kind)
        .scalar_subquery()
    )
    q = (
        select(m.Account, Tenant.timezone, Tenant.settings, system_id)
        .join(Tenant, Tenant.id == m.Account.tenant_id)
        .where(m.Account.tenant_id == tenant_id, m.Account.code == f"wallet:{member_id}")
        .with_for_update(of=m.Account)  # the subquery's system row is read, never locked
        .execution_options(populate_existing=True)
    )
    row = db.execute(q).first()
    if row is None:  # no wallet yet (or no such member: that raises MemberNotFound)
        _wallet(db, tenant_id, member_id, lock=True)
        row = db.execute(q).first()
        assert row is not None
    wallet, tz, settings, sys_id = row
    if sys_id is None:
        sys_id = _system_account(db, tenant_id, system_kind).id
    return _Locked(wallet, tz, settings or {}, int(sys_id))


def _claim(db: Session, values: dict[str, Any]) -> m.JournalEntry | None:
    """Insert the entry of ``values`` unless its key is taken (then None: the caller replays
    the holder).

    One statement, no SAVEPOINT: on PostgreSQL a concurrent insert of the same key makes this
    wait for that transaction and then do nothing if it committed."""
    stmt = (
        _insert(db)(m.JournalEntry)
        .values(**values)
        .on_conflict_do_nothing(index_elements=["tenant_id", "idempotency_key"])
        .returning(m.JournalEntry)
    )
    return db.scalars(stmt, execution_options={"populate_existing": True}).first()


def _post_fast(db: Session, entry: m.JournalEntry, locked: _Locked, *, growth: int = 0) -> None:
    """Postings for a wallet entry against one system account, and the wallet's new balance.

    Bulk statements without RETURNING; the wallet row (locked) is mirrored in the session."""
    wallet = locked.wallet
    db.execute(
        insert(m.Posting),
        [
            {
                "tenant_id": entry.tenant_id,
                "entry_id": entry.id,
                "account_id": wallet.id,
                "amount": entry.points,
            },
            {
                "tenant_id": entry.tenant_id,
                "entry_id": entry.id,
                "account_id": locked.system_account_id,
                "amount": -entry.points,
            },
        ],
    )
    result = db.execute(
        update(m.Account)
        .where(m.Account.id == wallet.id, m.Account.balance + entry.points >= 0)
        .values(balance=m.Account.balance + entry.points, growth=m.Account.growth + growth)
        .execution_options(synchronize_session=False)
    )
    if not cast("CursorResult[Any]", result).rowcount:
        raise InsufficientPoints(balance=wallet.balance, wanted=-entry.points)
    set_committed_value(wallet, "balance", wallet.balance + entry.points)
    set_committed_value(wallet, "growth", wallet.growth + growth)


# --- PostgreSQL: one round trip per posting -----------------------------------------------------

_SERVER_SIDE = {
    # Functions created by the "ledger posting functions" migration; they change nothing and
    # return no row unless the posting is the common case (see that migration's docstring).
    "grant": "SELECT {columns} FROM siyu_ledger_grant(%(tenant)s::integer, %(member)s::integer,"
    " %(points)s::integer, %(reason)s, %(memo)s, %(reference)s, %(actor_type)s, %(actor_id)s,"
    " %(key)s, %(expires_at)s::timestamptz, %(counts_for_growth)s::boolean,"
    " %(now)s::timestamptz)",
    "spend": "SELECT {columns} FROM siyu_ledger_spend(%(tenant)s::integer, %(member)s::integer,"
    " %(points)s::integer, %(reason)s, %(memo)s, %(reference)s, %(actor_type)s, %(actor_id)s,"
    " %(key)s, %(now)s::timestamptz)",
}
# The entry's columns in table order; the functions return rows of ledger_entries.
_ENTRY_COLUMNS = tuple(c.key for c in m.JournalEntry.__table__.columns)
_ENTRY_MANAGER = manager_of_class(m.JournalEntry)
_ENTRY_MAPPER = m.JournalEntry.__mapper__
_SERVER_SIDE_SQL = {
    which: sql.format(columns=", ".join(_ENTRY_COLUMNS)) for which, sql in _SERVER_SIDE.items()
}


def _server_side(
    db: Session, which: str, values: dict[str, Any], **extra: Any
) -> m.JournalEntry | None:
    """The entry of ``values`` posted by the PostgreSQL function: the stored entry (the new one,
    or the first under its key), or None (other databases; uncommon cases, which the Python code
    handles).

    The hot path of every posting, so it talks to psycopg directly inside the session's
    transaction and builds the result the way the ORM's own loader does: SQLAlchemy's statement
    and result machinery cost more client CPU than the posting costs the server
    (benchmarks/README.md).
    """
    alone: Engine | None = db.info.get(_ALONE)
    if alone is None and db.get_bind().dialect.name != "postgresql":
        return None
    params = {
        "tenant": values["tenant_id"],
        "member": values["member_id"],
        "points": abs(values["points"]),
        "reason": values["reason"],
        "memo": values["memo"],
        "reference": values["reference"],
        "actor_type": values["actor_type"],
        "actor_id": values["actor_id"],
        "key": values["idempotency_key"],
        "counts_for_growth": values["counts_for_growth"],
        "now": values["created_at"],
        **extra,
    }
    if alone is not None and not db.in_transaction():
        row = call_in_autocommit(alone, _SERVER_SIDE_SQL[which], params)
        return None if row is None else _entry_of(row)
    raw = db.connection().connection.driver_connection
    assert raw is not None
    with raw.cursor() as cur:
        cur.execute(_SERVER_SIDE_SQL[which], params)
        row = cur.fetchone()
    if row is None:
        return None
    key = identity_key(m.JournalEntry, row[0])
    identity = db.identity_map
    if identity:  # usually empty: a posting is most often its transaction's first statement
        # Balances and lots changed behind the session's back.
        for obj in list(identity.values()):
            if isinstance(obj, m.Account | m.Lot):
                db.expire(obj)
        if key in identity:  # a replay of one seen here
            return db.get(m.JournalEntry, row[0], populate_existing=True)
    entry = _entry_of(row)
    db.add(entry)
    return entry


def _entry_of(row: tuple[Any, ...]) -> m.JournalEntry:
    """A detached JournalEntry of a ledger_entries row, as the ORM's loader would build it."""
    if not _ENTRY_MAPPER.configured:  # a process whose first ORM use this is
        configure_mappers()
    entry: m.JournalEntry = _ENTRY_MANAGER.new_instance()
    stored = dict(zip(_ENTRY_COLUMNS, row, strict=True))
    stored["created_at"] = clock.as_utc(stored["created_at"])  # as UTCDateTime returns it
    entry.__dict__.update(stored)
    make_transient_to_detached(entry)
    return entry


_ALONE = "siyu.ledger.alone"


def alone(
    posting: Callable[Concatenate[Session, P], m.JournalEntry], *args: P.args, **kw: P.kwargs
) -> m.JournalEntry:
    """``posting`` (grant or spend) as a transaction of its own, for callers with nothing else
    to write (the API's and the CLI's grant and spend). On PostgreSQL the common case is
    then the posting function called in autocommit: one round trip instead of three (BEGIN, the
    call, COMMIT) and no Session transaction. Every other case (no wallet yet, due lots, too few
    points, another database, sessions bound to one connection as in tests) runs in a
    ``unit_of_work()`` exactly as ``posting(db, …)`` would.
    """
    with unit_of_work() as db:
        bind = db.get_bind()
        if isinstance(bind, Engine) and bind.dialect.name == "postgresql":
            db.info[_ALONE] = bind
        return posting(db, *args, **kw)


def grant(
    db: Session,
    *,
    tenant_id: int,
    member_id: int,
    points: int,
    reason: str,
    idempotency_key: str,
    actor: Actor,
    memo: str = "",
    reference: str = "",
    expires_at: dt.datetime | None = None,
    counts_for_growth: bool = True,
) -> m.JournalEntry:
    """Credit points in a new lot. ``expires_at`` defaults to the tenant's expiry policy.

    A repeat with the same key returns the first entry; a different change under a used key
    raises IdempotencyConflict.
    """
    _check_points(points)
    _check_reason(reason)
    _check_key(idempotency_key)
    now = clock.now()
    if expires_at is not None and (expires_at.tzinfo is None or expires_at <= now):
        # A retry must still get its entry once its explicit expiry has passed.
        if (found := _existing(db, tenant_id, idempotency_key)) is not None:
            return _replay(found, member_id=member_id, kind=m.CREDIT, points=points)
        raise InvalidExpiry()
    values = _entry_values(
        tenant_id=tenant_id,
        member_id=member_id,
        kind=m.CREDIT,
        points=points,
        reason=reason,
        key=idempotency_key,
        actor=actor,
        memo=memo,
        reference=reference,
        counts_for_growth=counts_for_growth,
    )
    fast = _server_side(db, "grant", values, expires_at=expires_at)
    if fast is not None:
        return _replay(fast, member_id=member_id, kind=m.CREDIT, points=points)
    locked = _lock_for_posting(db, tenant_id, member_id, m.ISSUANCE)
    claimed = _claim(db, values)
    if claimed is None:
        found = _existing(db, tenant_id, idempotency_key)
        assert found is not None
        return _replay(found, member_id=member_id, kind=m.CREDIT, points=points)
    if expires_at is None:
        expires_at = expiry_for(locked.settings.get("points_expiry") or {}, locked.timezone, now)
    _post_fast(db, claimed, locked, growth=points if counts_for_growth else 0)
    db.execute(
        insert(m.Lot),
        [
            {
                "tenant_id": tenant_id,
                "account_id": locked.wallet.id,
                "entry_id": claimed.id,
                "points": points,
                "remaining": points,
                "expired": 0,
                "expires_at": expires_at,
                "created_at": now,
            }
        ],
    )
    if locked.wallet.debt > 0:  # a debtor's earnings pay the debt first (ledger/debt.py)
        from siyu.ledger.debt import settle

        settle(db, locked.wallet, claimed)
    return claimed


def spend(
    db: Session,
    *,
    tenant_id: int,
    member_id: int,
    points: int,
    reason: str,
    idempotency_key: str,
    actor: Actor,
    memo: str = "",
    reference: str = "",
) -> m.JournalEntry:
    """Debit points, earliest-expiring lots first. Raises InsufficientPoints, taking nothing."""
    _check_points(points)
    _check_reason(reason)
    _check_key(idempotency_key)
    now = clock.now()
    values = _entry_values(
        tenant_id=tenant_id,
        member_id=member_id,
        kind=m.DEBIT,
        points=-points,
        reason=reason,
        key=idempotency_key,
        actor=actor,
        memo=memo,
        reference=reference,
    )
    fast = _server_side(db, "spend", values)
    if fast is not None:
        return _replay(fast, member_id=member_id, kind=m.DEBIT, points=-points)
    locked = _lock_for_posting(db, tenant_id, member_id, m.REDEMPTION)
    wallet = locked.wallet
    lots = _open_lots(db, wallet)
    if any(lot.expires_at is not None and lot.expires_at <= now for lot in lots):
        # Rare (the periodic job usually got there first). A replay must change nothing, so
        # look for the key before posting the expiry.
        if (found := _existing(db, tenant_id, idempotency_key)) is not None:
            return _replay(found, member_id=member_id, kind=m.DEBIT, points=-points)
        _expire_wallet(db, wallet)
        lots = _open_lots(db, wallet)
    if wallet.balance < points:
        # A request with this key may have committed while we waited for the lock: replay it
        # rather than judge the balance it already spent.
        if (found := _existing(db, tenant_id, idempotency_key)) is not None:
            return _replay(found, member_id=member_id, kind=m.DEBIT, points=-points)
        raise InsufficientPoints(balance=wallet.balance, wanted=points)
    takes = _plan_takes(lots, points)
    claimed = _claim(db, values)
    if claimed is None:
        found = _existing(db, tenant_id, idempotency_key)
        assert found is not None
        return _replay(found, member_id=member_id, kind=m.DEBIT, points=-points)
    _apply_takes(db, wallet, claimed, takes)
    _post_fast(db, claimed, locked)
    return claimed


def _open_lots(db: Session, wallet: m.Account) -> list[m.Lot]:
    """The wallet's lots with points left, in spending order: earliest expiry first,
    never-expiring last. Call with the wallet locked."""
    return list(
        db.scalars(
            select(m.Lot)
            .where(m.Lot.account_id == wallet.id, m.Lot.remaining > 0)
            .order_by(m.Lot.expires_at.asc().nulls_last(), m.Lot.id)
            .execution_options(populate_existing=True)
        )
    )


def _plan_takes(lots: list[m.Lot], points: int) -> list[tuple[m.Lot, int]]:
    """How much to take from which lot, before anything is written."""
    takes: list[tuple[m.Lot, int]] = []
    left = points
    for lot in lots:
        if not left:
            break
        take = min(lot.remaining, left)
        takes.append((lot, take))
        left -= take
    if left:  # the balance said yes but the lots disagree: refuse rather than corrupt
        raise InsufficientPoints(balance=points - left, wanted=points)
    return takes


def _apply_takes(
    db: Session, wallet: m.Account, entry: m.JournalEntry, takes: list[tuple[m.Lot, int]]
) -> None:
    # Absolute values are safe: lots change only under their wallet's lock, which we hold.
    db.execute(
        update(m.Lot),
        [{"id": lot.id, "remaining": lot.remaining - take} for lot, take in takes],
    )
    db.execute(
        insert(m.LotMovement),
        [
            {"tenant_id": wallet.tenant_id, "entry_id": entry.id, "lot_id": lot.id, "points": -take}
            for lot, take in takes
        ],
    )
    for lot, take in takes:
        set_committed_value(lot, "remaining", lot.remaining - take)


def reverse(
    db: Session,
    *,
    tenant_id: int,
    entry_id: int,
    idempotency_key: str,
    actor: Actor,
    points: int | None = None,
    reason: str = "reversal",
    memo: str = "",
) -> m.JournalEntry:
    """Undo all or part of a credit or debit, linked to it by ``reverses_id``.

    Reversing a credit takes the points back from its own lot first, then earliest-expiring
    lots, and lowers growth; it raises InsufficientPoints if the member has spent them.
    Reversing a debit returns the points to the lots they came from, with their expiry
    (points whose lot has meanwhile expired expire again at once).
    """
    _check_reason(reason)
    _check_key(idempotency_key)
    if points is not None:
        _check_points(points)
    original = get_entry(db, tenant_id=tenant_id, entry_id=entry_id)
    if original.kind not in (m.CREDIT, m.DEBIT):
        raise NotReversible(entry_id=entry_id, kind=original.kind)
    if (found := _existing(db, tenant_id, idempotency_key)) is not None:
        return _replay_reversal(found, entry_id=entry_id, points=points)
    wallet = _wallet(db, tenant_id, original.member_id, lock=True)
    # As in spend: a reversal with this key may have committed while we waited for the lock.
    if (found := _existing(db, tenant_id, idempotency_key)) is not None:
        return _replay_reversal(found, entry_id=entry_id, points=points)
    db.refresh(original)  # reversed_points may have moved while we waited for the lock
    reversible = abs(original.points) - original.reversed_points
    wanted = reversible if points is None else points
    if reversible == 0 or wanted > reversible:
        raise ReversalTooLarge(entry_id=entry_id, reversible=reversible)
    _expire_wallet(db, wallet)
    if original.kind == m.CREDIT and wallet.balance < wanted:
        raise InsufficientPoints(balance=wallet.balance, wanted=wanted)
    takes: list[tuple[m.Lot, int]] = []
    if original.kind == m.CREDIT:
        lots = _open_lots(db, wallet)
        lots.sort(key=lambda lot: lot.entry_id != original.id)  # its own lot first (stable)
        takes = _plan_takes(lots, wanted)
    sign = -1 if original.kind == m.CREDIT else 1
    claimed = _claim(
        db,
        _entry_values(
            tenant_id=tenant_id,
            member_id=original.member_id,
            kind=m.REVERSAL,
            points=sign * wanted,
            reason=reason,
            key=idempotency_key,
            actor=actor,
            memo=memo,
            reference=f"entry:{original.id}",
            reverses_id=original.id,
        ),
    )
    if claimed is None:
        found = _existing(db, tenant_id, idempotency_key)
        assert found is not None
        return _replay_reversal(found, entry_id=entry_id, points=points)
    entry = claimed
    with db.begin_nested():
        if original.kind == m.CREDIT:
            _apply_takes(db, wallet, entry, takes)
            _post(
                db, entry, [(wallet, -wanted), (_system_account(db, tenant_id, m.ISSUANCE), wanted)]
            )
            if original.counts_for_growth:
                wallet.growth = max(0, wallet.growth - wanted)
        else:
            _return_to_lots(db, wallet, original, entry, wanted)
            _post(
                db,
                entry,
                [(wallet, wanted), (_system_account(db, tenant_id, m.REDEMPTION), -wanted)],
            )
        original.reversed_points += wanted
        db.flush()
    _expire_wallet(db, wallet)
    return entry


def _return_to_lots(
    db: Session, wallet: m.Account, original: m.JournalEntry, entry: m.JournalEntry, points: int
) -> None:
    """Give a debit's points back to its lots, latest-expiring first (the reverse of taking)."""
    taken = db.execute(
        select(m.LotMovement.lot_id, func.sum(m.LotMovement.points))
        .where(m.LotMovement.entry_id == original.id)
        .group_by(m.LotMovement.lot_id)
    ).all()
    returned = dict(
        db.execute(
            select(m.LotMovement.lot_id, func.sum(m.LotMovement.points))
            .join(m.JournalEntry, m.JournalEntry.id == m.LotMovement.entry_id)
            .where(m.JournalEntry.reverses_id == original.id)
            .group_by(m.LotMovement.lot_id)
        ).all()
    )
    lots = {
        lot.id: lot
        for lot in db.scalars(select(m.Lot).where(m.Lot.id.in_([lot_id for lot_id, _ in taken])))
    }
    order = sorted(
        lots.values(),
        key=lambda lot: (
            lot.expires_at is None,
            lot.expires_at or dt.datetime.max.replace(tzinfo=clock.UTC),
            lot.id,
        ),
        reverse=True,
    )
    open_by_lot = {lot_id: -int(total) - int(returned.get(lot_id, 0)) for lot_id, total in taken}
    left = points
    for lot in order:
        give = min(open_by_lot.get(lot.id, 0), left)
        if give <= 0:
            continue
        lot.remaining += give
        db.add(
            m.LotMovement(tenant_id=wallet.tenant_id, entry_id=entry.id, lot_id=lot.id, points=give)
        )
        left -= give
        if not left:
            break
    assert left == 0, "a debit's lot movements must cover its reversible points"


# --- expiry -----------------------------------------------------------------------------------


def _expire_wallet(db: Session, wallet: m.Account) -> int:
    """Post expiry entries for this (locked) wallet's due lots; returns points expired."""
    now = clock.now()
    due = db.scalars(
        select(m.Lot)
        .where(m.Lot.account_id == wallet.id, m.Lot.remaining > 0, m.Lot.expires_at <= now)
        .order_by(m.Lot.id)
    ).all()
    total = 0
    for lot in due:
        points = lot.remaining
        entry = m.JournalEntry(
            **_entry_values(
                tenant_id=wallet.tenant_id,
                member_id=wallet.member_id or 0,
                kind=m.EXPIRE,
                points=-points,
                reason="expiry",
                key=f"expire:{lot.id}:{lot.expired}",
                actor=JOB,
                memo="",
                reference=f"lot:{lot.id}",
            )
        )
        db.add(entry)
        db.flush()
        lot.remaining = 0
        lot.expired += points
        db.add(
            m.LotMovement(
                tenant_id=wallet.tenant_id, entry_id=entry.id, lot_id=lot.id, points=-points
            )
        )
        _post(
            db,
            entry,
            [(wallet, -points), (_system_account(db, wallet.tenant_id, m.EXPIRY), points)],
        )
        total += points
    return total


def expire_due(db: Session, *, tenant_id: int, limit: int = 200) -> int:
    """Expire due lots of up to ``limit`` wallets; returns how many wallets it touched.

    Safe to run twice or in parallel: each wallet is locked and re-read before expiring.
    """
    now = clock.now()
    account_ids = db.scalars(
        select(m.Lot.account_id)
        .where(m.Lot.tenant_id == tenant_id, m.Lot.remaining > 0, m.Lot.expires_at <= now)
        .group_by(m.Lot.account_id)
        .order_by(m.Lot.account_id)
        .limit(limit)
    ).all()
    for account_id in account_ids:  # ascending ids: the lock order every writer follows
        wallet = db.scalar(
            select(m.Account)
            .where(m.Account.id == account_id)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
        if wallet is not None:
            _expire_wallet(db, wallet)
    return len(account_ids)


def expiry_for(policy: dict[str, object], tz: str, earned_at: dt.datetime) -> dt.datetime | None:
    """When points earned at ``earned_at`` expire under a tenant policy (None: never).

    Policies (tenant ``settings["points_expiry"]``): ``{"kind": "never"}``;
    ``{"kind": "days", "days": N}``; ``{"kind": "year_end", "years": K}`` — earned in year Y
    (tenant-local), expire at the end of 31 December of Y+K, tenant time.
    """
    from zoneinfo import ZoneInfo

    kind = policy.get("kind", "never")
    if kind == "days":
        return earned_at + dt.timedelta(days=int(str(policy.get("days", 365))))
    if kind == "year_end":
        local = earned_at.astimezone(ZoneInfo(tz))
        end = dt.datetime(
            local.year + int(str(policy.get("years", 1))) + 1, 1, 1, tzinfo=ZoneInfo(tz)
        )
        return end.astimezone(clock.UTC)
    return None


# --- reads ------------------------------------------------------------------------------------


def get_balance(
    db: Session,
    *,
    tenant_id: int,
    member_id: int,
    horizon_days: int = 90,
) -> Balance:
    """Balance and growth in O(1), plus the points expiring within ``horizon_days``."""
    wallet = _wallet(db, tenant_id, member_id, lock=False)
    now = clock.now()
    rows = db.execute(
        select(m.Lot.expires_at, func.sum(m.Lot.remaining))
        .where(
            m.Lot.account_id == wallet.id,
            m.Lot.remaining > 0,
            m.Lot.expires_at > now,
            m.Lot.expires_at <= now + dt.timedelta(days=horizon_days),
        )
        .group_by(m.Lot.expires_at)
        .order_by(m.Lot.expires_at)
    ).all()
    return Balance(
        member_id=member_id,
        balance=wallet.balance,
        growth=wallet.growth,
        expiring=[ExpiringPoints(clock.as_utc(at), int(n)) for at, n in rows if at is not None],
    )


def get_entry(db: Session, *, tenant_id: int, entry_id: int) -> m.JournalEntry:
    entry = db.scalar(
        select(m.JournalEntry).where(
            m.JournalEntry.id == entry_id, m.JournalEntry.tenant_id == tenant_id
        )
    )
    if entry is None:
        raise EntryNotFound(entry_id=entry_id)
    return entry


def list_entries(
    db: Session, *, tenant_id: int, member_id: int, before_id: int | None = None, limit: int = 20
) -> list[m.JournalEntry]:
    """A member's entries, newest first; page with ``before_id`` (the last id seen)."""
    q = select(m.JournalEntry).where(
        m.JournalEntry.tenant_id == tenant_id, m.JournalEntry.member_id == member_id
    )
    if before_id is not None:
        q = q.where(m.JournalEntry.id < before_id)
    return list(db.scalars(q.order_by(m.JournalEntry.id.desc()).limit(max(1, min(limit, 200)))))


def wallets_of(db: Session, *, tenant_id: int, member_ids: list[int]) -> dict[int, tuple[int, int]]:
    """(balance, growth) of many members in one query (member lists, tier badges)."""
    rows = db.execute(
        select(m.Account.member_id, m.Account.balance, m.Account.growth).where(
            m.Account.tenant_id == tenant_id, m.Account.member_id.in_(member_ids)
        )
    ).all()
    return {int(mid): (int(b), int(g)) for mid, b, g in rows if mid is not None}


# --- verification -----------------------------------------------------------------------------


@dataclass
class Problem:
    kind: str
    ref: str
    expected: int
    actual: int


@dataclass
class VerifyReport:
    entries: int
    accounts: int
    lots: int
    problems: list[Problem]

    @property
    def ok(self) -> bool:
        return not self.problems


def verify(db: Session, *, tenant_id: int) -> VerifyReport:
    """Recompute balances and lots from postings and movements; report every difference."""
    problems: list[Problem] = []
    unbalanced = db.execute(
        select(m.Posting.entry_id, func.sum(m.Posting.amount))
        .where(m.Posting.tenant_id == tenant_id)
        .group_by(m.Posting.entry_id)
        .having(func.sum(m.Posting.amount) != 0)
    ).all()
    problems += [Problem("entry_unbalanced", f"entry:{eid}", 0, int(s)) for eid, s in unbalanced]
    no_postings = db.scalars(
        select(m.JournalEntry.id).where(
            m.JournalEntry.tenant_id == tenant_id,
            ~select(m.Posting.id).where(m.Posting.entry_id == m.JournalEntry.id).exists(),
        )
    ).all()
    problems += [Problem("entry_without_postings", f"entry:{eid}", 2, 0) for eid in no_postings]
    wallet_delta = db.execute(
        select(m.JournalEntry.id, m.JournalEntry.points, func.sum(m.Posting.amount))
        .join(m.Posting, m.Posting.entry_id == m.JournalEntry.id)
        .join(m.Account, m.Account.id == m.Posting.account_id)
        .where(m.JournalEntry.tenant_id == tenant_id, m.Account.kind == m.WALLET)
        .group_by(m.JournalEntry.id, m.JournalEntry.points)
        .having(func.sum(m.Posting.amount) != m.JournalEntry.points)
    ).all()
    problems += [
        Problem("entry_points_mismatch", f"entry:{eid}", int(p), int(s))
        for eid, p, s in wallet_delta
    ]

    posted = dict(
        db.execute(
            select(m.Posting.account_id, func.sum(m.Posting.amount))
            .where(m.Posting.tenant_id == tenant_id)
            .group_by(m.Posting.account_id)
        ).all()
    )
    in_lots = dict(
        db.execute(
            select(m.Lot.account_id, func.sum(m.Lot.remaining))
            .where(m.Lot.tenant_id == tenant_id)
            .group_by(m.Lot.account_id)
        ).all()
    )
    accounts = db.scalars(
        select(m.Account)
        .where(m.Account.tenant_id == tenant_id)
        .execution_options(populate_existing=True)  # compare with the rows, not the session
    ).all()
    for acc in accounts:
        if acc.kind != m.WALLET:
            continue
        total = int(posted.get(acc.id, 0))
        if acc.balance != total:
            problems.append(Problem("balance_mismatch", acc.code, total, acc.balance))
        if acc.balance < 0:
            problems.append(Problem("negative_balance", acc.code, 0, acc.balance))
        lots_total = int(in_lots.get(acc.id, 0))
        if lots_total != total:
            problems.append(Problem("lots_mismatch", acc.code, total, lots_total))

    moved = dict(
        db.execute(
            select(m.LotMovement.lot_id, func.sum(m.LotMovement.points))
            .where(m.LotMovement.tenant_id == tenant_id)
            .group_by(m.LotMovement.lot_id)
        ).all()
    )
    lots = db.execute(
        select(m.Lot.id, m.Lot.points, m.Lot.remaining).where(m.Lot.tenant_id == tenant_id)
    ).all()
    for lot_id, points, remaining in lots:
        expected = int(points) + int(moved.get(lot_id, 0))
        if expected != remaining:
            problems.append(Problem("lot_mismatch", f"lot:{lot_id}", expected, int(remaining)))
    from siyu.ledger.debt import verify_debts

    problems += [Problem(*p) for p in verify_debts(db, tenant_id=tenant_id)]
    if sum(int(v) for v in posted.values()) != 0:
        problems.append(
            Problem("ledger_unbalanced", "tenant", 0, sum(int(v) for v in posted.values()))
        )
    n_entries = (
        db.scalar(
            select(func.count())
            .select_from(m.JournalEntry)
            .where(m.JournalEntry.tenant_id == tenant_id)
        )
        or 0
    )
    return VerifyReport(
        entries=int(n_entries), accounts=len(accounts), lots=len(lots), problems=problems
    )
