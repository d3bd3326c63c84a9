"""Live sessions, lineups, reservations and the "on sale now" trigger: the only code that
writes the live tables.

Flow of a broadcast day:
1. Operators build the calendar (``create_session``) and each session's lineup
   (``add_product``, ``reorder``); ``preview_card`` turns the lineup into the text and layout
   the 13:00 SOP sends; ``guide_rows`` feeds the shopping guide (CSV, XLSX, share page).
2. Members ``reserve`` the session or single products, and may ``cancel_reservation``.
3. ``transition(action="start")`` puts the session live, ``mark_on_sale`` puts a product on
   sale. Both are one conditional UPDATE of the target (status must still be the old one)
   followed, only if that changed a row and someone is waiting, by the reminder fan-out
   (``reminders.fan_out``) in the same transaction: a second click finds nothing to change.
4. The messaging engine expands the fan-out into one delivery per reserver in chunks, marking
   each chunk's reservations ``due`` as it goes (the operator's click never waits for 200,000
   rows), and sends them carrying ``/r/<click_token>``; ``follow_link`` counts the clicks.
   ``funnel`` reports reserved → reminded → delivered → clicked → purchased.

Races: ``reserve`` locks the product (or session) row before checking that it is still open,
and the on-sale/start UPDATE locks the same row, so a reservation either commits before the
UPDATE runs (and the fan-out, READ COMMITTED re-reading per statement, sees it) or finds the
target already live and is refused. SQLite serialises writers with BEGIN IMMEDIATE.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import re
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, TypeVar, cast
from zoneinfo import ZoneInfo

from sqlalchemy import func, select, update
from sqlalchemy.engine import CursorResult
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from siyu.core import clock
from siyu.core.db import after_commit
from siyu.core.i18n import gettext as _
from siyu.live.errors import (
    InvalidLive,
    InvalidTransition,
    LinkNotFound,
    ProductNotFound,
    ReservationClosed,
    ReservationNotFound,
    SessionNotFound,
    ShareNotFound,
)
from siyu.live.models import (
    CANCELLED,
    ENDED,
    LIVE,
    ON_SALE,
    PLANNED,
    PLATFORMS,
    SCHEDULED,
    TRANSITIONS,
    WAITING,
    LiveProduct,
    LiveSession,
    Reservation,
)
from siyu.tenants.models import Tenant

MAX_PRICE_FEN = 100_000_000  # ¥1,000,000
MAX_SESSION = dt.timedelta(hours=24)
# A 淘口令: 11 letters or digits between two identical currency-like delimiters (or in
# brackets), usually inside share text with an m.tb.cn link: "￥MDGGba1MLQh￥".
_TAOBAO_PASSWORD = re.compile(
    r"(?P<d>[￥¥$€£₳₴¢₰₵₲₱₮₭₦₩₪₫₡₠₢₣₥₧₨₯₸₹₺₻₼₽₾₿/])(?P<t>[A-Za-z0-9]{11})(?P=d)"
    r"|[(（《](?P<b>[A-Za-z0-9]{11})[)）》]"
)
_URL = re.compile(r"^https?://[^\s]{1,490}$")
ACTIONS = {"start": LIVE, "end": ENDED, "cancel": CANCELLED}

# Called after commit with (tenant_id, "session" | "product", target id) whenever a target's
# reminders were queued (extensions hook in here).
_due_hooks: list[Callable[[int, str, int], Any]] = []


def on_reminders_due(fn: Callable[[int, str, int], Any]) -> None:
    """``fn(tenant_id, kind, target_id)`` runs after each commit that queued the reminders of a
    target."""
    if fn not in _due_hooks:
        _due_hooks.append(fn)


# --- validation and formatting ----------------------------------------------------------------


def taobao_token(text: str) -> str | None:
    """The 11-character token of a 淘口令 in ``text``, or None."""
    found = _TAOBAO_PASSWORD.search(text or "")
    if not found:
        return None
    return found.group("t") or found.group("b")


def is_url(text: str) -> bool:
    return bool(_URL.match(text or ""))


def format_fen(fen: int) -> str:
    """¥59.90 → "¥59.9", ¥99.00 → "¥99": how prices read on a lineup."""
    yuan = Decimal(fen) / 100
    text = f"{yuan:.2f}".rstrip("0").rstrip(".")
    return f"¥{text}"


def _text(field: str, value: str, *, max_len: int, required: bool = False) -> str:
    value = (value or "").strip()
    if required and not value:
        raise InvalidLive(field=field, problem=_("required"))
    if len(value) > max_len:
        raise InvalidLive(field=field, problem=_("at most {n} characters").format(n=max_len))
    return value


def _url(field: str, value: str) -> str:
    value = (value or "").strip()
    if value and not is_url(value):
        raise InvalidLive(field=field, problem=_("an http:// or https:// link"))
    return value


def _password(field: str, value: str) -> str:
    value = _text(field, value, max_len=500)
    if value and taobao_token(value) is None:
        raise InvalidLive(
            field=field, problem=_("no Taobao password (淘口令) such as ￥MDGGba1MLQh￥ in it")
        )
    return value


def _link(value: str) -> str:
    """A purchase link: a URL, or share text holding a 淘口令."""
    value = _text("link", value, max_len=500)
    if value and not is_url(value) and taobao_token(value) is None:
        raise InvalidLive(field="link", problem=_("an https:// link or a Taobao password (淘口令)"))
    return value


def _instant(field: str, value: dt.datetime | None) -> dt.datetime | None:
    if value is not None and value.tzinfo is None:
        raise InvalidLive(field=field, problem=_("a time with a timezone"))
    return None if value is None else value.astimezone(clock.UTC)


def _price(field: str, value: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= MAX_PRICE_FEN:
        raise InvalidLive(
            field=field, problem=_("whole fen from 0 to {max}").format(max=MAX_PRICE_FEN)
        )
    return value


def _check_window(starts_at: dt.datetime, ends_at: dt.datetime) -> None:
    if ends_at <= starts_at:
        raise InvalidLive(field="ends_at", problem=_("after the start"))
    if ends_at - starts_at > MAX_SESSION:
        raise InvalidLive(field="ends_at", problem=_("at most 24 hours after the start"))


def parse_local(value: str, tz: str, field: str) -> dt.datetime | None:
    """A ``datetime-local`` form value (tenant time) as an aware UTC instant; "" is None."""
    value = (value or "").strip()
    if not value:
        return None
    try:
        naive = dt.datetime.fromisoformat(value)
    except ValueError:
        raise InvalidLive(field=field, problem=_("a date and time")) from None
    if naive.tzinfo is None:
        naive = naive.replace(tzinfo=ZoneInfo(tz))
    return naive.astimezone(clock.UTC)


def local(value: dt.datetime, tz: str) -> dt.datetime:
    return clock.as_utc(value).astimezone(ZoneInfo(tz))


def month_bounds(year: int, month: int, tz: str) -> tuple[dt.datetime, dt.datetime]:
    """The UTC instants where a tenant-local calendar month starts and the next one starts."""
    zone = ZoneInfo(tz)
    start = dt.datetime(year, month, 1, tzinfo=zone)
    nxt = dt.datetime(year + month // 12, month % 12 + 1, 1, tzinfo=zone)
    return start.astimezone(clock.UTC), nxt.astimezone(clock.UTC)


# --- sessions ---------------------------------------------------------------------------------

SESSION_FIELDS = ("platform", "theme", "starts_at", "ends_at", "cover_url", "room_url")


def _clean_session(values: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if "platform" in values:
        if values["platform"] not in PLATFORMS:
            raise InvalidLive(
                field="platform", problem=_("one of {v}").format(v=", ".join(PLATFORMS))
            )
        out["platform"] = values["platform"]
    if "theme" in values:
        out["theme"] = _text("theme", values["theme"], max_len=60, required=True)
    for key in ("starts_at", "ends_at"):
        if key in values:
            when = _instant(key, values[key])
            if when is None:
                raise InvalidLive(field=key, problem=_("required"))
            out[key] = when
    for key in ("cover_url", "room_url"):
        if key in values:
            out[key] = _url(key, values[key])
    if "taobao_password" in values:
        out["taobao_password"] = _password("taobao_password", values["taobao_password"])
    return out


def create_session(
    db: Session,
    *,
    tenant_id: int,
    platform: str,
    theme: str,
    starts_at: dt.datetime,
    ends_at: dt.datetime,
    cover_url: str = "",
    room_url: str = "",
    taobao_password: str = "",
    idempotency_key: str | None = None,
) -> LiveSession:
    """Schedule a broadcast. A repeat with the same key returns the first session."""
    if idempotency_key and (found := _by_key(db, LiveSession, tenant_id, idempotency_key)):
        return found
    values = _clean_session(
        {
            "platform": platform,
            "theme": theme,
            "starts_at": starts_at,
            "ends_at": ends_at,
            "cover_url": cover_url,
            "room_url": room_url,
            "taobao_password": taobao_password,
        }
    )
    _check_window(values["starts_at"], values["ends_at"])
    session = LiveSession(
        tenant_id=tenant_id,
        status=SCHEDULED,
        idempotency_key=idempotency_key or None,
        created_at=clock.now(),
        **values,
    )
    return _add_once(db, session, LiveSession, tenant_id, idempotency_key)


_Keyed = TypeVar("_Keyed", LiveSession, LiveProduct)


def _rowcount(result: Any) -> int:
    """Rows an UPDATE matched."""
    return int(cast(CursorResult[Any], result).rowcount)


def _by_key(db: Session, model: type[_Keyed], tenant_id: int, key: str) -> _Keyed | None:
    return db.scalars(
        select(model).where(model.tenant_id == tenant_id, model.idempotency_key == key)
    ).first()


def _add_once(
    db: Session, row: _Keyed, model: type[_Keyed], tenant_id: int, key: str | None
) -> _Keyed:
    try:
        with db.begin_nested():  # a concurrent retry with the same key loses here
            db.add(row)
    except IntegrityError:
        found = _by_key(db, model, tenant_id, key) if key else None
        if found is None:
            raise
        return found
    return row


def update_session(
    db: Session, *, tenant_id: int, session_id: int, changes: dict[str, Any]
) -> LiveSession:
    """Change a session's details (status changes go through ``transition``)."""
    session = get_session(db, tenant_id=tenant_id, session_id=session_id)
    values = _clean_session({k: v for k, v in changes.items() if v is not None})
    _check_window(
        values.get("starts_at", session.starts_at), values.get("ends_at", session.ends_at)
    )
    for key, value in values.items():
        setattr(session, key, value)
    db.flush()
    return session


def get_session(db: Session, *, tenant_id: int, session_id: int, lock: bool = False) -> LiveSession:
    q = select(LiveSession).where(LiveSession.id == session_id, LiveSession.tenant_id == tenant_id)
    if lock:
        q = q.with_for_update().execution_options(populate_existing=True)
    session = db.scalars(q).first()
    if session is None:
        raise SessionNotFound(session_id=session_id)
    return session


def list_sessions(
    db: Session, *, tenant_id: int, start: dt.datetime, end: dt.datetime
) -> Sequence[LiveSession]:
    """Sessions starting in [start, end), by start."""
    return db.scalars(
        select(LiveSession)
        .where(
            LiveSession.tenant_id == tenant_id,
            LiveSession.starts_at >= start,
            LiveSession.starts_at < end,
        )
        .order_by(LiveSession.starts_at, LiveSession.id)
    ).all()


def month_sessions(
    db: Session, *, tenant_id: int, year: int, month: int, tz: str
) -> Sequence[LiveSession]:
    start, end = month_bounds(year, month, tz)
    return list_sessions(db, tenant_id=tenant_id, start=start, end=end)


def day_sessions(db: Session, *, tenant_id: int, day: dt.date, tz: str) -> Sequence[LiveSession]:
    zone = ZoneInfo(tz)
    start = dt.datetime(day.year, day.month, day.day, tzinfo=zone).astimezone(clock.UTC)
    return list_sessions(db, tenant_id=tenant_id, start=start, end=start + dt.timedelta(days=1))


def next_session(db: Session, *, tenant_id: int, tz: str) -> LiveSession | None:
    """Tonight's session: live now, or the next one starting today (tenant time)."""
    now = clock.now()
    today = clock.local_date(now, tz)
    for session in day_sessions(db, tenant_id=tenant_id, day=today, tz=tz):
        if session.status == LIVE or (session.status == SCHEDULED and session.ends_at > now):
            return session
    return None


@dataclass
class Transition:
    session: LiveSession
    changed: bool  # False: it already was in the target state (a repeated click)
    marked: int  # session reservations waiting when it started: their reminders are queued


def transition(db: Session, *, tenant_id: int, session_id: int, action: str) -> Transition:
    """start (scheduled → live), end (live → ended) or cancel (scheduled → cancelled).

    Repeating the last action changes nothing; any other move raises InvalidTransition.
    Starting queues the reminder of every waiting session reservation, once.
    """
    if action not in ACTIONS:
        raise InvalidLive(field="action", problem=_("start, end or cancel"))
    target = ACTIONS[action]
    session = get_session(db, tenant_id=tenant_id, session_id=session_id)
    sources = [s for s, nexts in TRANSITIONS.items() if target in nexts]
    now = clock.now()
    stamp: dict[str, Any] = {"status": target}
    if target == LIVE:
        stamp["started_at"] = now
    elif target in (ENDED, CANCELLED):
        stamp["ended_at"] = now
    changed = _rowcount(
        db.execute(
            update(LiveSession)
            .where(
                LiveSession.id == session.id,
                LiveSession.tenant_id == tenant_id,
                LiveSession.status.in_(sources),
            )
            .values(**stamp)
            .execution_options(synchronize_session=False)
        )
    )
    db.refresh(session)
    if not changed:
        if session.status == target:
            return Transition(session, changed=False, marked=0)
        raise InvalidTransition(status=_status_label(session.status), action=_action_label(action))
    marked = 0
    if target == LIVE:
        marked = _waiting(db, tenant_id, f"s{session.id}")
        if marked:
            _after_due(db, tenant_id, "session", session.id)
    return Transition(session, changed=True, marked=marked)


def _status_label(status: str) -> str:
    return {
        SCHEDULED: _("scheduled"),
        LIVE: _("live"),
        ENDED: _("ended"),
        CANCELLED: _("cancelled"),
    }.get(status, status)


def _action_label(action: str) -> str:
    return {"start": _("started"), "end": _("ended"), "cancel": _("cancelled")}.get(action, action)


def _waiting(db: Session, tenant_id: int, target: str) -> int:
    """Live reservations of a target (``p<id>`` / ``s<id>``) still waiting for their reminder."""
    return int(
        db.scalar(
            select(func.count()).where(
                Reservation.tenant_id == tenant_id,
                Reservation.target == target,
                Reservation.remind_state == WAITING,
                Reservation.cancelled_at.is_(None),
            )
        )
        or 0
    )


def _after_due(db: Session, tenant_id: int, kind: str, target_id: int) -> None:
    from siyu.live import reminders  # the fan-out, queued in this same transaction

    reminders.fan_out(db, tenant_id=tenant_id, kind=kind, target_id=target_id)
    for hook in _due_hooks:
        after_commit(db, hook, tenant_id, kind, target_id)


# --- lineup -----------------------------------------------------------------------------------


def _clean_product(values: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if "title" in values:
        out["title"] = _text("title", values["title"], max_len=120, required=True)
    for key, n in (("brand", 60), ("stock_note", 120), ("delivery_note", 120)):
        if key in values:
            out[key] = _text(key, values[key], max_len=n)
    if "image_url" in values:
        out["image_url"] = _url("image_url", values["image_url"])
    for key in ("live_price_fen", "list_price_fen"):
        if key in values:
            out[key] = _price(key, values[key])
    if "slot_at" in values:
        out["slot_at"] = _instant("slot_at", values["slot_at"])
    if "link" in values:
        out["link"] = _link(values["link"])
    return out


def add_product(
    db: Session,
    *,
    tenant_id: int,
    session_id: int,
    title: str,
    live_price_fen: int,
    list_price_fen: int,
    brand: str = "",
    image_url: str = "",
    stock_note: str = "",
    slot_at: dt.datetime | None = None,
    link: str = "",
    delivery_note: str = "",
    idempotency_key: str | None = None,
) -> LiveProduct:
    """Append a product to the session's lineup. A repeat with the same key returns it."""
    if idempotency_key and (found := _by_key(db, LiveProduct, tenant_id, idempotency_key)):
        return found
    session = get_session(db, tenant_id=tenant_id, session_id=session_id)
    if session.status in (ENDED, CANCELLED):
        raise InvalidTransition(status=_status_label(session.status), action=_("changed"))
    values = _clean_product(
        {
            "title": title,
            "brand": brand,
            "image_url": image_url,
            "live_price_fen": live_price_fen,
            "list_price_fen": list_price_fen,
            "stock_note": stock_note,
            "slot_at": slot_at,
            "link": link,
            "delivery_note": delivery_note,
        }
    )
    last = db.scalar(
        select(func.max(LiveProduct.position)).where(
            LiveProduct.tenant_id == tenant_id, LiveProduct.session_id == session.id
        )
    )
    product = LiveProduct(
        tenant_id=tenant_id,
        session_id=session.id,
        position=(last or 0) + 1,
        status=PLANNED,
        idempotency_key=idempotency_key or None,
        created_at=clock.now(),
        **values,
    )
    return _add_once(db, product, LiveProduct, tenant_id, idempotency_key)


def update_product(
    db: Session, *, tenant_id: int, product_id: int, changes: dict[str, Any]
) -> LiveProduct:
    product = get_product(db, tenant_id=tenant_id, product_id=product_id)
    for key, value in _clean_product({k: v for k, v in changes.items() if v is not None}).items():
        setattr(product, key, value)
    db.flush()
    return product


def get_product(db: Session, *, tenant_id: int, product_id: int, lock: bool = False) -> LiveProduct:
    q = select(LiveProduct).where(LiveProduct.id == product_id, LiveProduct.tenant_id == tenant_id)
    if lock:
        q = q.with_for_update().execution_options(populate_existing=True)
    product = db.scalars(q).first()
    if product is None:
        raise ProductNotFound(product_id=product_id)
    return product


def lineup(db: Session, *, tenant_id: int, session_id: int) -> Sequence[LiveProduct]:
    return db.scalars(
        select(LiveProduct)
        .where(LiveProduct.tenant_id == tenant_id, LiveProduct.session_id == session_id)
        .order_by(LiveProduct.position, LiveProduct.id)
    ).all()


def reorder(
    db: Session, *, tenant_id: int, session_id: int, product_ids: list[int]
) -> Sequence[LiveProduct]:
    """Put ``product_ids`` first, in that order; the other products keep their order after
    them. Raises InvalidLive for an id not in this lineup or listed twice."""
    get_session(db, tenant_id=tenant_id, session_id=session_id)
    current = lineup(db, tenant_id=tenant_id, session_id=session_id)
    products = {p.id: p for p in current}
    if not set(product_ids) <= set(products) or len(set(product_ids)) != len(product_ids):
        raise InvalidLive(
            field="product_ids", problem=_("products of this lineup, each at most once")
        )
    order = [*product_ids, *(p.id for p in current if p.id not in set(product_ids))]
    for position, pid in enumerate(order, 1):
        products[pid].position = position
    db.flush()
    return lineup(db, tenant_id=tenant_id, session_id=session_id)


def move_product(db: Session, *, tenant_id: int, product_id: int, delta: int) -> None:
    """Move a product ``delta`` places up (negative) or down the lineup."""
    product = get_product(db, tenant_id=tenant_id, product_id=product_id)
    ids = [p.id for p in lineup(db, tenant_id=tenant_id, session_id=product.session_id)]
    i = ids.index(product.id)
    j = max(0, min(len(ids) - 1, i + delta))
    ids.insert(j, ids.pop(i))
    reorder(db, tenant_id=tenant_id, session_id=product.session_id, product_ids=ids)


@dataclass
class OnSale:
    product: LiveProduct
    changed: bool  # False: it was already on sale (a repeated click changes nothing)
    marked: int  # reservations waiting when it went on sale: their reminders are queued


def mark_on_sale(db: Session, *, tenant_id: int, product_id: int) -> OnSale:
    """ "On sale now": the product goes on sale and the reminder of each waiting reservation of
    it is queued, exactly once. Raises InvalidTransition for an ended or cancelled
    session."""
    product = get_product(db, tenant_id=tenant_id, product_id=product_id)
    session = get_session(db, tenant_id=tenant_id, session_id=product.session_id)
    if session.status in (ENDED, CANCELLED) and product.status == PLANNED:
        raise InvalidTransition(status=_status_label(session.status), action=_("put on sale"))
    now = clock.now()
    changed = _rowcount(
        db.execute(
            update(LiveProduct)
            .where(
                LiveProduct.id == product.id,
                LiveProduct.tenant_id == tenant_id,
                LiveProduct.status == PLANNED,
            )
            .values(status=ON_SALE, on_sale_at=now)
            .execution_options(synchronize_session=False)
        )
    )
    db.refresh(product)
    marked = 0
    if changed:
        marked = _waiting(db, tenant_id, f"p{product.id}")
        if marked:
            _after_due(db, tenant_id, "product", product.id)
    return OnSale(product, changed=bool(changed), marked=marked)


# --- reservations -----------------------------------------------------------------------------


def reserve(
    db: Session, *, tenant_id: int, member_id: int, session_id: int, product_id: int | None = None
) -> Reservation:
    """Reserve a session (reminded when it starts) or one product of its lineup (reminded when
    it goes on sale). Reserving again returns the same reservation (re-activated if it was
    cancelled). Raises ReservationClosed once the target is live or over."""
    # Lock the target row: the on-sale/start UPDATE takes the same lock (module docstring).
    session = get_session(db, tenant_id=tenant_id, session_id=session_id, lock=product_id is None)
    if product_id is None:
        if session.status != SCHEDULED:
            raise ReservationClosed()
        target = f"s{session.id}"
    else:
        product = get_product(db, tenant_id=tenant_id, product_id=product_id, lock=True)
        if product.session_id != session.id:
            raise ProductNotFound(product_id=product_id)
        if product.status != PLANNED or session.status not in (SCHEDULED, LIVE):
            raise ReservationClosed()
        target = f"p{product.id}"
    existing = _find_reservation(db, tenant_id, member_id, target)
    if existing is None:
        row = Reservation(
            tenant_id=tenant_id,
            member_id=member_id,
            session_id=session.id,
            product_id=product_id,
            target=target,
            created_at=clock.now(),
            remind_state=WAITING,
            click_token=secrets.token_urlsafe(12),
            clicks=0,
        )
        try:
            with db.begin_nested():  # a double tap racing this one loses here
                db.add(row)
            return row
        except IntegrityError:
            existing = _find_reservation(db, tenant_id, member_id, target)
            assert existing is not None
    if existing.cancelled_at is not None:
        existing.cancelled_at = None
        db.flush()
    return existing


def _find_reservation(
    db: Session, tenant_id: int, member_id: int, target: str
) -> Reservation | None:
    return db.scalars(
        select(Reservation)
        .where(
            Reservation.tenant_id == tenant_id,
            Reservation.member_id == member_id,
            Reservation.target == target,
        )
        .execution_options(populate_existing=True)
    ).first()


def get_reservation(
    db: Session, *, tenant_id: int, reservation_id: int, member_id: int | None = None
) -> Reservation:
    q = select(Reservation).where(
        Reservation.id == reservation_id, Reservation.tenant_id == tenant_id
    )
    if member_id is not None:  # a member sees only their own
        q = q.where(Reservation.member_id == member_id)
    found = db.scalars(q).first()
    if found is None:
        raise ReservationNotFound(reservation_id=reservation_id)
    return found


def cancel_reservation(
    db: Session, *, tenant_id: int, member_id: int, reservation_id: int
) -> Reservation:
    """Cancel; cancelling twice changes nothing. A reminder already due is not recalled."""
    row = get_reservation(
        db, tenant_id=tenant_id, reservation_id=reservation_id, member_id=member_id
    )
    if row.cancelled_at is None:
        row.cancelled_at = clock.now()
        db.flush()
    return row


@dataclass
class MyReservation:
    reservation: Reservation
    session: LiveSession
    product: LiveProduct | None


def my_reservations(db: Session, *, tenant_id: int, member_id: int) -> list[MyReservation]:
    """The member's active reservations, latest session first."""
    rows = db.execute(
        select(Reservation, LiveSession, LiveProduct)
        .join(LiveSession, LiveSession.id == Reservation.session_id)
        .outerjoin(LiveProduct, LiveProduct.id == Reservation.product_id)
        .where(
            Reservation.tenant_id == tenant_id,
            Reservation.member_id == member_id,
            Reservation.cancelled_at.is_(None),
        )
        .order_by(LiveSession.starts_at.desc(), LiveProduct.position, Reservation.id)
    ).all()
    return [MyReservation(r, s, p) for r, s, p in rows]


def reserved_targets(
    db: Session, *, tenant_id: int, member_id: int, session_id: int
) -> dict[str, Reservation]:
    """The member's active reservations in one session, by target (``s<id>``, ``p<id>``)."""
    rows = db.scalars(
        select(Reservation).where(
            Reservation.tenant_id == tenant_id,
            Reservation.member_id == member_id,
            Reservation.session_id == session_id,
            Reservation.cancelled_at.is_(None),
        )
    ).all()
    return {r.target: r for r in rows}


def click_path(reservation: Reservation) -> str:
    """The tracked link a reminder carries (prefix the site's base URL)."""
    return f"/r/{reservation.click_token}"


def follow_link(db: Session, *, click_token: str) -> str:
    """Count a click on a reminder's tracked link; the URL to send the member on to."""
    counted = _rowcount(
        db.execute(
            update(Reservation)
            .where(Reservation.click_token == click_token)
            .values(
                clicks=Reservation.clicks + 1,
                clicked_at=func.coalesce(Reservation.clicked_at, clock.now()),
            )
            .execution_options(synchronize_session=False)
        )
    )
    if not counted:
        raise LinkNotFound()
    row = db.execute(
        select(Reservation, LiveSession, Tenant.slug)
        .join(LiveSession, LiveSession.id == Reservation.session_id)
        .join(Tenant, Tenant.id == Reservation.tenant_id)
        .where(Reservation.click_token == click_token)
    ).one()
    reservation, session, slug = row
    if reservation.product_id is not None:
        product = db.get(LiveProduct, reservation.product_id)
        if product is not None and is_url(product.link):
            return product.link
    elif is_url(session.room_url):
        return session.room_url
    # A 淘口令 cannot be opened as a link: the session page shows it to copy.
    return f"/m/{slug}/live/{session.id}"


# --- funnel -----------------------------------------------------------------------------------


@dataclass
class FunnelRow:
    kind: str  # "session" or "product"
    id: int
    title: str
    status: str
    reserved: int = 0
    reminded: int = 0  # marked due (the reminder was triggered)
    delivered: int = 0  # accepted by the channel (set by the messaging fan-out)
    clicked: int = 0
    purchased: int = 0  # reminded, then claimed an order of the session


def funnel(db: Session, *, tenant_id: int, session_id: int) -> list[FunnelRow]:
    """Reserved → reminded → delivered → clicked for the session and each product, from one
    GROUP BY over its reservations (cancelled ones left out)."""
    session = get_session(db, tenant_id=tenant_id, session_id=session_id)
    counts = {
        pid: (n, due, sent, clicked)
        for pid, n, due, sent, clicked in db.execute(
            select(
                Reservation.product_id,
                func.count(),
                func.count(Reservation.remind_due_at),
                func.count(Reservation.reminded_at),
                func.count(Reservation.clicked_at),
            )
            .where(
                Reservation.tenant_id == tenant_id,
                Reservation.session_id == session.id,
                Reservation.cancelled_at.is_(None),
            )
            .group_by(Reservation.product_id)
        )
    }
    bought = _purchased(db, tenant_id, session.id)

    def row(kind: str, target: LiveSession | LiveProduct, title: str) -> FunnelRow:
        key = None if kind == "session" else target.id
        reserved, reminded, delivered, clicked = counts.get(key, (0, 0, 0, 0))
        return FunnelRow(
            kind, target.id, title, target.status, reserved, reminded, delivered, clicked,
            bought.get(key, 0),
        )  # fmt: skip

    rows = [row("session", session, session.theme)]
    rows += [
        row("product", p, p.title) for p in lineup(db, tenant_id=tenant_id, session_id=session.id)
    ]
    return rows


def _purchased(db: Session, tenant_id: int, session_id: int) -> dict[int | None, int]:
    """Per product (None: the session itself): reminded reservers who then claimed an order of
    this session (credited, or credited and later refunded: they did buy)."""
    from siyu.orders import models as om

    buyers = (
        select(om.Claim.member_id)
        .join(
            om.Order,
            (om.Order.tenant_id == om.Claim.tenant_id)
            & (om.Order.platform == om.Claim.platform)
            & (om.Order.order_no == om.Claim.order_no),
        )
        .where(
            om.Claim.tenant_id == tenant_id,
            om.Order.session_id == session_id,
            om.Claim.status.in_((om.CREDITED, om.REVERSED)),
        )
    )
    return {
        pid: int(n)
        for pid, n in db.execute(
            select(Reservation.product_id, func.count(func.distinct(Reservation.member_id)))
            .where(
                Reservation.tenant_id == tenant_id,
                Reservation.session_id == session_id,
                Reservation.cancelled_at.is_(None),
                Reservation.remind_due_at.is_not(None),
                Reservation.member_id.in_(buyers),
            )
            .group_by(Reservation.product_id)
        )
    }


_start = func.coalesce(LiveSession.started_at, LiveSession.starts_at)
_end = func.coalesce(LiveSession.ended_at, LiveSession.ends_at)


def _windows(tenant_id: int, platform: str) -> Any:
    """(id, start, end) of the tenant's sessions on ``platform`` that can hold an order (not
    cancelled; actual times when known, else planned), latest-starting first."""
    return (
        select(LiveSession.id, _start, _end)
        .where(
            LiveSession.tenant_id == tenant_id,
            LiveSession.platform == platform,
            LiveSession.status != CANCELLED,
        )
        .order_by(_start.desc(), LiveSession.id.desc())
    )


def session_at(db: Session, *, tenant_id: int, platform: str, instant: dt.datetime) -> int | None:
    """The tenant's session on ``platform`` live at ``instant`` (its actual start and end when
    known, else the planned ones; cancelled sessions never), the latest-starting if several."""
    found = db.execute(
        _windows(tenant_id, platform).where(_start <= instant, _end > instant).limit(1)
    ).first()
    return int(found[0]) if found is not None else None


def session_windows(
    db: Session, *, tenant_id: int, platform: str
) -> list[tuple[int, dt.datetime, dt.datetime]]:
    """``_windows`` as a list: ``session_at`` for a whole import at once (``window_at``)."""
    rows = db.execute(_windows(tenant_id, platform))
    return [(int(i), clock.as_utc(a), clock.as_utc(b)) for i, a, b in rows]


def window_at(
    windows: Sequence[tuple[int, dt.datetime, dt.datetime]], instant: dt.datetime
) -> int | None:
    """The session of ``session_windows`` live at ``instant`` (as ``session_at``), or None."""
    for session_id, start, end in windows:
        if start <= instant < end:
            return session_id
    return None


# --- preview card and shopping guide ----------------------------------------------------------

PLATFORM_LABELS = {"taobao": "淘宝直播", "douyin": "抖音直播", "kuaishou": "快手直播"}
PREVIEW_ITEMS = 10


@dataclass
class PreviewCard:
    """What the 13:00 SOP sends: plain text (chat messages) and an image-free rich layout
    (title, subtitle, product rows, footer) a channel adapter renders as markdown or a card."""

    text: str
    layout: dict[str, Any] = field(default_factory=dict)


def preview_card(db: Session, *, tenant_id: int, session_id: int) -> PreviewCard:
    session = get_session(db, tenant_id=tenant_id, session_id=session_id)
    tenant = db.get(Tenant, tenant_id)
    assert tenant is not None
    tz = tenant.timezone
    starts = local(session.starts_at, tz)
    products = lineup(db, tenant_id=tenant_id, session_id=session.id)
    platform = PLATFORM_LABELS.get(session.platform, session.platform)
    title = _("{month}/{day} {time} {platform}: {theme}").format(
        month=starts.month,
        day=starts.day,
        time=starts.strftime("%H:%M"),
        platform=platform,
        theme=session.theme,
    )
    items = []
    for p in products[:PREVIEW_ITEMS]:
        items.append(
            {
                "title": p.title,
                "brand": p.brand,
                "live_price": format_fen(p.live_price_fen),
                "list_price": format_fen(p.list_price_fen),
                "slot": local(p.slot_at, tz).strftime("%H:%M") if p.slot_at else "",
                "delivery": p.delivery_note,
            }
        )
    lines = [f"【{tenant.name}】{title}"]
    for n, item in enumerate(items, 1):
        line = f"{n}. {' '.join(filter(None, [item['brand'], item['title']]))} " + _(
            "live {live} (list {list})"
        ).format(live=item["live_price"], list=item["list_price"])
        if item["slot"]:
            line += " · " + _("on sale ~{time}").format(time=item["slot"])
        lines.append(line)
    more = max(0, len(products) - PREVIEW_ITEMS)
    if more:
        lines.append(_("…and {n} more").format(n=more))
    if not products:
        lines.append(_("The lineup is coming soon."))
    footer = _("Reserve to get a reminder the moment your favourites go on sale.")
    lines.append(footer)
    if session.taobao_password:
        lines.append(session.taobao_password)
    return PreviewCard(
        text="\n".join(lines),
        layout={
            "title": title,
            "subtitle": tenant.name,
            "theme": session.theme,
            "starts_at": session.starts_at.isoformat(),
            "items": items,
            "more": more,
            "footer": footer,
        },
    )


def guide_header() -> list[str]:
    return [
        _("No."),
        _("Brand"),
        _("Product"),
        _("Live price (yuan)"),
        _("List price (yuan)"),
        _("On sale at"),
        _("Stock"),
        _("Link or Taobao password"),
        _("Expected delivery"),
    ]


def guide_rows(products: Sequence[LiveProduct], tz: str) -> list[list[Any]]:
    """One row per product; prices as exact Decimal yuan (never floats)."""
    return [
        [
            n,
            p.brand,
            p.title,
            Decimal(p.live_price_fen) / 100,
            Decimal(p.list_price_fen) / 100,
            local(p.slot_at, tz).strftime("%Y-%m-%d %H:%M") if p.slot_at else "",
            p.stock_note,
            p.link,
            p.delivery_note,
        ]
        for n, p in enumerate(products, 1)
    ]


def _guide(db: Session, tenant_id: int, session_id: int) -> tuple[LiveSession, list[list[Any]]]:
    session = get_session(db, tenant_id=tenant_id, session_id=session_id)
    tenant = db.get(Tenant, tenant_id)
    assert tenant is not None
    return session, guide_rows(
        lineup(db, tenant_id=tenant_id, session_id=session.id), tenant.timezone
    )


def guide_filename(session: LiveSession, tz: str, ext: str) -> str:
    return f"guide-{local(session.starts_at, tz):%Y%m%d}-{session.id}.{ext}"


def guide_csv(db: Session, *, tenant_id: int, session_id: int) -> bytes:
    """The shopping guide as CSV, UTF-8 with a BOM so Excel reads the Chinese right."""
    _session, rows = _guide(db, tenant_id, session_id)
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(guide_header())
    for row in rows:
        writer.writerow([f"{v:.2f}" if isinstance(v, Decimal) else v for v in row])
    return buf.getvalue().encode("utf-8-sig")


def guide_xlsx(db: Session, *, tenant_id: int, session_id: int) -> bytes:
    """The shopping guide as an XLSX workbook (openpyxl), prices as numbers in yuan."""
    from openpyxl import Workbook
    from openpyxl.styles import Font

    session, rows = _guide(db, tenant_id, session_id)
    wb = Workbook()
    ws = wb.active
    assert ws is not None
    ws.title = session.theme[:31] or "guide"
    ws.append(guide_header())
    for cell in ws[1]:
        cell.font = Font(bold=True)
    for row in rows:
        ws.append(row)
    for col in ("D", "E"):
        for cell in ws[col][1:]:
            cell.number_format = "0.00"
    for col, width in zip("ABCDEFGHI", (6, 14, 36, 12, 12, 18, 16, 40, 16), strict=True):
        ws.column_dimensions[col].width = width
    ws.freeze_panes = "A2"
    out = io.BytesIO()
    wb.save(out)
    return out.getvalue()


def share_guide(db: Session, *, tenant_id: int, session_id: int) -> LiveSession:
    """Make (or keep) the session's public shopping-guide link: an unguessable token."""
    session = get_session(db, tenant_id=tenant_id, session_id=session_id)
    if session.share_token is None:
        session.share_token = secrets.token_urlsafe(24)
        db.flush()
    return session


def revoke_guide(db: Session, *, tenant_id: int, session_id: int) -> LiveSession:
    """The share link stops working at once; sharing again makes a new one."""
    session = get_session(db, tenant_id=tenant_id, session_id=session_id)
    session.share_token = None
    db.flush()
    return session


@dataclass
class SharedGuide:
    tenant: Tenant
    session: LiveSession
    products: Sequence[LiveProduct]


def shared_guide(db: Session, *, slug: str, share_token: str) -> SharedGuide:
    row = db.execute(
        select(LiveSession, Tenant)
        .join(Tenant, Tenant.id == LiveSession.tenant_id)
        .where(LiveSession.share_token == share_token, Tenant.slug == slug)
    ).first()
    if row is None or not share_token:
        raise ShareNotFound()
    session, tenant = row
    return SharedGuide(tenant, session, lineup(db, tenant_id=tenant.id, session_id=session.id))
