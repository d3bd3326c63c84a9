"""``siyu live …``: sessions, lineups, the on-sale action and session start, for scripts."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

import typer

from siyu.core.cli import JsonFlag, TenantOpt, command, emit, fail

app = typer.Typer(help="Live sessions, lineups and the on-sale action.", no_args_is_help=True)
session_app = typer.Typer(help="Live sessions.", no_args_is_help=True)
lineup_app = typer.Typer(help="Lineups of live sessions.", no_args_is_help=True)
app.add_typer(session_app, name="session")
app.add_typer(lineup_app, name="lineup")

SessionOpt = Annotated[int, typer.Option("--session", help="Session id.")]
ProductOpt = Annotated[int, typer.Option("--product", help="Product id.")]
KeyOpt = Annotated[
    str | None, typer.Option("--key", help="Idempotency key: a rerun returns the first one.")
]


def _when(as_json: bool, name: str, value: str | None, tz: str) -> dt.datetime | None:
    """ISO 8601; without an offset it is read in the tenant's timezone."""
    from zoneinfo import ZoneInfo

    if not value:
        return None
    try:
        when = dt.datetime.fromisoformat(value)
    except ValueError:
        fail(as_json, "live.invalid", f"{name}: not an ISO 8601 time: {value}")
        raise  # unreachable: fail exits
    return when if when.tzinfo else when.replace(tzinfo=ZoneInfo(tz))


def _tenant(db: Any, slug: str) -> Any:
    from siyu.tenants import service as tenants

    return tenants.get_tenant(db, slug=slug)


def _session_out(s: Any) -> dict[str, Any]:
    return {
        "id": s.id,
        "platform": s.platform,
        "theme": s.theme,
        "starts_at": s.starts_at.isoformat(),
        "ends_at": s.ends_at.isoformat(),
        "status": s.status,
        "room_url": s.room_url,
        "taobao_password": s.taobao_password,
    }


def _product_out(p: Any) -> dict[str, Any]:
    return {
        "id": p.id,
        "session_id": p.session_id,
        "position": p.position,
        "title": p.title,
        "brand": p.brand,
        "live_price_fen": p.live_price_fen,
        "list_price_fen": p.list_price_fen,
        "slot_at": p.slot_at.isoformat() if p.slot_at else None,
        "link": p.link,
        "status": p.status,
    }


@session_app.command("create")
def session_create(
    tenant: TenantOpt,
    theme: Annotated[str, typer.Option("--theme")],
    starts_at: Annotated[
        str, typer.Option("--starts-at", help="ISO 8601; tenant time if no offset")
    ],
    ends_at: Annotated[str, typer.Option("--ends-at", help="ISO 8601; tenant time if no offset")],
    platform: Annotated[str, typer.Option("--platform")] = "taobao",
    room_url: Annotated[str, typer.Option("--room-url")] = "",
    cover_url: Annotated[str, typer.Option("--cover-url")] = "",
    taobao_password: Annotated[str, typer.Option("--taobao-password", help="淘口令 text")] = "",
    key: KeyOpt = None,
    as_json: JsonFlag = False,
) -> None:
    """Schedule a live session."""
    from siyu.live import service

    with command(as_json) as db:
        t = _tenant(db, tenant)
        start = _when(as_json, "starts_at", starts_at, t.timezone)
        end = _when(as_json, "ends_at", ends_at, t.timezone)
        assert start is not None
        assert end is not None
        s = service.create_session(
            db,
            tenant_id=t.id,
            platform=platform,
            theme=theme,
            starts_at=start,
            ends_at=end,
            room_url=room_url,
            cover_url=cover_url,
            taobao_password=taobao_password,
            idempotency_key=f"cli:{key}" if key else None,
        )
        out = _session_out(s)
    emit(as_json, out, f"session {out['id']} scheduled: {theme}")


@session_app.command("list")
def session_list(
    tenant: TenantOpt,
    month: Annotated[str, typer.Option("--month", help="YYYY-MM, tenant time")],
    as_json: JsonFlag = False,
) -> None:
    """Sessions of a month."""
    from siyu.live import service
    from siyu.live.api import parse_month

    with command(as_json) as db:
        t = _tenant(db, tenant)
        year, mon = parse_month(month)
        rows = [
            _session_out(s)
            for s in service.month_sessions(db, tenant_id=t.id, year=year, month=mon, tz=t.timezone)
        ]
    emit(
        as_json,
        {"sessions": rows},
        "\n".join(f"{r['id']}\t{r['starts_at']}\t{r['status']}\t{r['theme']}" for r in rows)
        or "no sessions",
    )


@lineup_app.command("add")
def lineup_add(
    tenant: TenantOpt,
    session: SessionOpt,
    title: Annotated[str, typer.Option("--title")],
    live_price_fen: Annotated[int, typer.Option("--live-price-fen")],
    list_price_fen: Annotated[int, typer.Option("--list-price-fen")],
    brand: Annotated[str, typer.Option("--brand")] = "",
    link: Annotated[str, typer.Option("--link", help="URL or 淘口令")] = "",
    slot_at: Annotated[str | None, typer.Option("--slot-at", help="Planned on-sale time")] = None,
    stock_note: Annotated[str, typer.Option("--stock")] = "",
    delivery_note: Annotated[str, typer.Option("--delivery")] = "",
    image_url: Annotated[str, typer.Option("--image-url")] = "",
    key: KeyOpt = None,
    as_json: JsonFlag = False,
) -> None:
    """Append a product to a session's lineup."""
    from siyu.live import service

    with command(as_json) as db:
        t = _tenant(db, tenant)
        p = service.add_product(
            db,
            tenant_id=t.id,
            session_id=session,
            title=title,
            brand=brand,
            live_price_fen=live_price_fen,
            list_price_fen=list_price_fen,
            link=link,
            slot_at=_when(as_json, "slot_at", slot_at, t.timezone),
            stock_note=stock_note,
            delivery_note=delivery_note,
            image_url=image_url,
            idempotency_key=f"cli:{key}" if key else None,
        )
        out = _product_out(p)
    emit(as_json, out, f"product {out['id']} added at #{out['position']}: {title}")


@app.command("on-sale")
def on_sale(tenant: TenantOpt, product: ProductOpt, as_json: JsonFlag = False) -> None:
    """ "On sale now": mark the product on sale and its reservations due, exactly once."""
    from siyu.live import service

    with command(as_json) as db:
        r = service.mark_on_sale(db, tenant_id=_tenant(db, tenant).id, product_id=product)
        out = {"product": _product_out(r.product), "changed": r.changed, "marked": r.marked}
    emit(
        as_json,
        out,
        f"product {product} on sale; {r.marked} reservations to remind"
        if r.changed
        else f"product {product} was already on sale; nothing changed",
    )


def _transition(tenant: str, session: int, action: str, as_json: bool) -> None:
    from siyu.live import service

    with command(as_json) as db:
        t = service.transition(
            db, tenant_id=_tenant(db, tenant).id, session_id=session, action=action
        )
        out = {"session": _session_out(t.session), "changed": t.changed, "marked": t.marked}
    emit(
        as_json,
        out,
        f"session {session} {t.session.status}"
        + (f"; {t.marked} reservations to remind" if t.marked else "")
        + ("" if t.changed else " (nothing changed)"),
    )


@app.command("start")
def start(tenant: TenantOpt, session: SessionOpt, as_json: JsonFlag = False) -> None:
    """The broadcast starts: session reservations are marked due, exactly once."""
    _transition(tenant, session, "start", as_json)


@app.command("end")
def end(tenant: TenantOpt, session: SessionOpt, as_json: JsonFlag = False) -> None:
    _transition(tenant, session, "end", as_json)


@app.command("cancel")
def cancel(tenant: TenantOpt, session: SessionOpt, as_json: JsonFlag = False) -> None:
    _transition(tenant, session, "cancel", as_json)
