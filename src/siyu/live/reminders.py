"""The "on sale now" / "we're live" reminder: consent at reservation, the fan-out through the
messaging engine, the ready-made template and the funnel's delivered counts.

Flow::

    reserve (+ wx.requestSubscribe result) ──► messaging.record_consent(template id)
    mark_on_sale / transition(start) ── the target's status UPDATE (once) ──► fan_out(db, …) in
        the same transaction ──► messaging.send(purpose="live:product:<id>:on-sale",
                                                target=Target(kind="live_reservers", ref="p<id>"))
    expansion ── INSERT … SELECT member ids of the target's reservations, in chunks by member id
        (the first chunk in the on-sale transaction itself, the rest by a worker); each chunk's
        reservations are marked due (``_mark_chunk``) in the transaction that wrote its deliveries
    dispatch ── per recipient: this module's ``_recipient_context`` adds the reservation's
        tracked link (/r/<click token>) ──► subscribe message if the member consented, else
        the inbox (messaging's fallback)

Exactly once: only the transaction whose conditional status UPDATE moved the product (session)
calls ``fan_out``; the purpose key is per product (per session) and messaging delivers each
(purpose, member) once, so a double click, a retried request or a re-run never sends twice.
Nothing passes member ids inline and nothing touches all the reservations at once: the on-sale
transaction writes one message row and the first chunk, so 200,000 reservers cost the operator's
click no more than 200 do. Reserving closes when the target goes on sale (``reserve`` takes the
target's row lock), so the reservers the expansion reads are the ones waiting at that moment.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from sqlalchemy import case, func, select, update
from sqlalchemy.orm import Session

from siyu.core import clock
from siyu.core.db import in_ids
from siyu.core.i18n import _l
from siyu.live.models import (
    DUE,
    FAILED,
    SENT,
    WAITING,
    LiveProduct,
    LiveSession,
    Reservation,
)
from siyu.messaging import service as messaging
from siyu.messaging.errors import TemplateExists
from siyu.messaging.models import SENT as DELIVERED
from siyu.messaging.models import Delivery, MessageTemplate
from siyu.tenants.models import Tenant

TEMPLATE_KEY = "live.reminder"
TARGET_KIND = "live_reservers"
# Placeholder until the operator pastes the mini program's own template id (WeChat assigns it
# when a template is picked from the public library); consents are kept under this id.
DEFAULT_SUBSCRIBE_ID = "live-reminder"


def purpose(kind: str, target_id: int) -> str:
    return (
        f"live:product:{target_id}:on-sale"
        if kind == "product"
        else (f"live:session:{target_id}:start")
    )


# --- the ready-made template ------------------------------------------------------------------

DEFAULT_TEMPLATE: dict[str, Any] = {
    "name": "直播提醒（开抢/开播）",
    "title": "{{ subject }}{{ '开抢啦' if kind == 'product' else '开播啦' }}",
    "body": (
        "你预约的「{{ subject }}」{{ '开抢了' if kind == 'product' else '开播了' }}！"
        "{% if price %}直播价 {{ price }}。{% endif %}"
        "{% if password %}复制淘口令 {{ password }} 打开淘宝。{% endif %}"
        "立即前往：{{ reminder.path }}"
    ),
    "subscribe": {
        "template_id": DEFAULT_SUBSCRIBE_ID,
        "page": "pages/live/reminder?t={{ reminder.token }}",
        "data": {
            "thing1": "{{ subject }}",
            "thing2": (
                "{{ '商品已开抢，点击立即购买' if kind == 'product' else '直播已开始，点击进入' }}"
            ),
            "time3": "{{ at }}",
        },
    },
}


def ensure_template(db: Session, *, tenant_id: int) -> MessageTemplate:
    """The tenant's reminder template, created from ``DEFAULT_TEMPLATE`` the first time (the
    operator edits it like any other template; an edited one is never overwritten)."""
    found = messaging.find_template(db, tenant_id=tenant_id, key=TEMPLATE_KEY)
    if found is not None:
        return found
    try:
        return messaging.save_template(
            db, tenant_id=tenant_id, key=TEMPLATE_KEY, create_only=True, **DEFAULT_TEMPLATE
        )
    except TemplateExists:  # a concurrent first use created it
        found = messaging.find_template(db, tenant_id=tenant_id, key=TEMPLATE_KEY)
        assert found is not None
        return found


def subscribe_template_id(db: Session, *, tenant_id: int) -> str:
    row = ensure_template(db, tenant_id=tenant_id)
    return str((row.subscribe or {}).get("template_id") or "")


def needs_subscribe_template_id(db: Session, *, tenant_id: int) -> bool:
    """The tenant's mini program is set up (appid and secret) but the reminder template
    still carries the placeholder id: WeChat would refuse every reminder (an unknown
    template id), so the console asks for the real one before the broadcast."""
    tenant = db.get(Tenant, tenant_id)
    if tenant is None or not (tenant.settings or {}).get("wechat"):
        return False
    found = messaging.find_template(db, tenant_id=tenant_id, key=TEMPLATE_KEY)
    subscribe = (found.subscribe or {}) if found is not None else DEFAULT_TEMPLATE["subscribe"]
    return str(subscribe.get("template_id") or "") in ("", DEFAULT_SUBSCRIBE_ID)


# --- consent ----------------------------------------------------------------------------------


def record_consents(
    db: Session, *, tenant_id: int, member_id: int, subscribe: dict[str, str] | None
) -> list[str]:
    """Store what ``wx.requestSubscribe`` answered (``{template id: "accept" | "reject" |
    "ban" | "filter"}``): one consent per accepted template. Returns the accepted ids."""
    accepted = sorted(k for k, v in (subscribe or {}).items() if v == "accept")
    for template_id in accepted:
        messaging.record_consent(
            db, tenant_id=tenant_id, member_id=member_id, template_key=template_id
        )
    return accepted


def consent_to_reminder(db: Session, *, tenant_id: int, member_id: int) -> str:
    """The H5 "remind me by WeChat" box: one consent for the reminder template."""
    template_id = subscribe_template_id(db, tenant_id=tenant_id)
    messaging.record_consent(db, tenant_id=tenant_id, member_id=member_id, template_key=template_id)
    return template_id


# --- the fan-out ------------------------------------------------------------------------------


def _reservers(tenant_id: int, ref: str) -> Any:
    """SELECT of the member ids holding a live reservation of a product (``p<id>``) or a
    session (``s<id>``)."""
    return select(Reservation.member_id).where(
        Reservation.tenant_id == tenant_id,
        Reservation.target == ref,
        Reservation.cancelled_at.is_(None),
    )


def _mark_chunk(db: Session, tenant_id: int, ref: str, after: int, upto: int) -> None:
    """The reservations of members (after, upto] whose reminders were just queued: due."""
    db.execute(
        update(Reservation)
        .where(
            Reservation.tenant_id == tenant_id,
            Reservation.target == ref,
            Reservation.member_id > after,
            Reservation.member_id <= upto,
            Reservation.remind_state == WAITING,
            Reservation.cancelled_at.is_(None),
        )
        .values(remind_state=DUE, remind_due_at=clock.now())
        .execution_options(synchronize_session=False)
    )


def _settle(db: Session, tenant_id: int, ref: str, delivery_ids: list[int]) -> None:
    """Reservations whose reminder reached a final status: ``sent`` (stamping ``reminded_at``)
    or ``failed``, read from the deliveries (by ``FINAL_STATES``) in one UPDATE … FROM."""
    db.execute(
        update(Reservation)
        .where(
            Reservation.tenant_id == Delivery.tenant_id,
            Reservation.member_id == Delivery.member_id,
            Reservation.target == ref,
            Delivery.tenant_id == tenant_id,
            in_ids(db, Delivery.id, delivery_ids),
        )
        .values(
            remind_state=case((Delivery.status == DELIVERED, SENT), else_=FAILED),
            reminded_at=Delivery.sent_at,
        )
        .execution_options(synchronize_session=False)
    )


def _recipient_context(
    db: Session, tenant_id: int, ref: str, member_ids: list[int]
) -> dict[int, dict[str, Any]]:
    """Each recipient's tracked link, from their reservation's click token."""
    rows = db.execute(
        select(Reservation.member_id, Reservation.click_token).where(
            Reservation.tenant_id == tenant_id,
            in_ids(db, Reservation.member_id, member_ids),
            Reservation.target == ref,
        )
    )
    return {int(m): {"reminder": {"token": t, "path": f"/r/{t}"}} for m, t in rows}


messaging.register_target(
    TARGET_KIND,
    label=_l("Reservers of {ref}"),
    members=_reservers,
    context=_recipient_context,
    expanded=_mark_chunk,
    settled=_settle,
)


def _context(db: Session, tenant: Tenant, kind: str, target_id: int) -> dict[str, Any]:
    from siyu.live import service as live

    if kind == "product":
        product = db.get(LiveProduct, target_id)
        assert product is not None
        session = db.get(LiveSession, product.session_id)
        assert session is not None
        link = product.link
        at = product.on_sale_at
        subject = product.title
        price = live.format_fen(product.live_price_fen)
    else:
        session = db.get(LiveSession, target_id)
        assert session is not None
        link = session.room_url or session.taobao_password
        at = session.started_at
        subject = session.theme
        price = ""
    when = live.local(at, tenant.timezone).strftime("%Y-%m-%d %H:%M") if at else ""
    return {
        "kind": kind,
        "subject": subject,
        "price": price,
        "at": when,
        "link": link,
        "password": link.strip() if not live.is_url(link) and live.taobao_token(link) else "",
        "session": {"id": session.id, "theme": session.theme, "platform": session.platform},
        "product": {"id": target_id, "title": subject} if kind == "product" else {},
    }


def fan_out(db: Session, *, tenant_id: int, kind: str, target_id: int) -> int:
    """Queue the reminder of a product that went on sale (``kind="product"``) or a session that
    started (``"session"``) to every reserver, in the caller's transaction. Idempotent by its
    purpose key; returns the message id."""
    tenant = db.get(Tenant, tenant_id)
    assert tenant is not None
    template = ensure_template(db, tenant_id=tenant_id)
    ref = f"{'p' if kind == 'product' else 's'}{target_id}"
    msg = messaging.send(
        db,
        tenant_id=tenant_id,
        purpose=purpose(kind, target_id),
        target=messaging.Target(kind=TARGET_KIND, ref=ref),
        template=template,
        context=_context(db, tenant, kind, target_id),
        kind="live",
        created_by="live",
    )
    return msg.id


# --- funnel -----------------------------------------------------------------------------------


def funnel(db: Session, *, tenant_id: int, session_id: int) -> list[Any]:
    """live.funnel with "delivered" taken from messaging: the reminders a channel accepted
    (subscribe message or inbox), by the message's purpose key."""
    from siyu.live import service as live

    rows = live.funnel(db, tenant_id=tenant_id, session_id=session_id)
    purposes = {purpose(r.kind, r.id): r for r in rows}
    counts = dict(
        db.execute(
            select(Delivery.purpose, func.count())
            .where(
                Delivery.tenant_id == tenant_id,
                Delivery.purpose.in_(list(purposes)),
                Delivery.status == DELIVERED,
            )
            .group_by(Delivery.purpose)
        ).all()
    )
    return [replace(r, delivered=int(counts.get(p, 0))) for p, r in purposes.items()]
