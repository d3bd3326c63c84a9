"""``siyu mall …``, ``siyu trial …`` and ``siyu draw verify`` (every command takes --json)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Annotated, Any

import typer

from siyu.core.cli import JsonFlag, TenantOpt, command, emit, fail
from siyu.core.cli import tenant_id as _tenant_id

mall_app = typer.Typer(
    help="Points mall: items, codes, orders and fulfillment.", no_args_is_help=True
)
trial_app = typer.Typer(help="Product trials and their fair draw.", no_args_is_help=True)
draw_app = typer.Typer(help="The verifiable draw.", no_args_is_help=True)


def _item_out(i: Any) -> dict[str, Any]:
    return {
        "id": i.id,
        "title": i.title,
        "kind": i.kind,
        "points_price": i.points_price,
        "cash_fen": i.cash_fen,
        "stock": i.stock,
        "per_member_daily": i.per_member_daily,
        "per_member_total": i.per_member_total,
        "min_growth": i.min_growth,
        "is_listed": i.is_listed,
    }


def _order_out(o: Any) -> dict[str, Any]:
    return {
        "id": o.id,
        "member_id": o.member_id,
        "title": o.title,
        "quantity": o.quantity,
        "points": o.points,
        "status": o.status,
        "carrier": o.carrier,
        "tracking_no": o.tracking_no,
        "coupon_code": o.coupon_code,
        "refund_entry_id": o.refund_entry_id,
    }


def _when(value: str | None, name: str, as_json: bool) -> dt.datetime | None:
    if value is None:
        return None
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        parsed = None
    if parsed is None or parsed.tzinfo is None:
        fail(as_json, "request.invalid_field", f"{name}: an ISO 8601 instant with a timezone")
    return parsed


# --- mall -------------------------------------------------------------------------------------


@mall_app.command("items")
def mall_items(tenant: TenantOpt, as_json: JsonFlag = False) -> None:
    """List the tenant's items."""
    from siyu.mall import service

    with command(as_json) as db:
        items = [_item_out(i) for i in service.list_items(db, tenant_id=_tenant_id(db, tenant))]
    emit(
        as_json,
        {"items": items},
        "\n".join(f"{i['id']}\t{i['title']}\t{i['points_price']}\t{i['stock']}" for i in items)
        or "no items",
    )


@mall_app.command("add-item")
def mall_add_item(
    tenant: TenantOpt,
    title: Annotated[str, typer.Option("--title")],
    points: Annotated[int, typer.Option("--points", help="Points price")],
    kind: Annotated[str, typer.Option("--kind", help="physical, coupon or gift")] = "physical",
    stock: Annotated[int, typer.Option("--stock")] = 0,
    category: Annotated[str, typer.Option("--category")] = "",
    daily_limit: Annotated[int | None, typer.Option("--daily-limit")] = None,
    total_limit: Annotated[int | None, typer.Option("--total-limit")] = None,
    min_growth: Annotated[
        int | None, typer.Option("--min-growth", help="Required tier's threshold")
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Create an item (coupon items get their stock from `siyu mall codes`)."""
    from siyu.mall import service

    with command(as_json) as db:
        item = service.create_item(
            db,
            tenant_id=_tenant_id(db, tenant),
            kind=kind,
            title=title,
            points_price=points,
            stock=stock,
            category=category,
            per_member_daily=daily_limit,
            per_member_total=total_limit,
            min_growth=min_growth,
        )
        out = _item_out(item)
    emit(as_json, out, f"item {out['id']} created")


@mall_app.command("codes")
def mall_codes(
    tenant: TenantOpt,
    item: Annotated[int, typer.Option("--item")],
    file: Annotated[Path, typer.Option("--file", help="One code per line")],
    as_json: JsonFlag = False,
) -> None:
    """Upload coupon codes to a coupon item's pool."""
    from siyu.mall import service

    try:
        codes = file.read_text(encoding="utf-8-sig").splitlines()
    except (OSError, UnicodeDecodeError) as err:
        fail(as_json, "mall.unreadable_file", str(err))
    with command(as_json) as db:
        r = service.upload_codes(db, tenant_id=_tenant_id(db, tenant), item_id=item, codes=codes)
        out = {"added": r.added, "duplicates": r.duplicates, "stock": r.stock}
    emit(as_json, out, f"{r.added} codes added, stock {r.stock}")


@mall_app.command("orders")
def mall_orders(
    tenant: TenantOpt,
    status: Annotated[str | None, typer.Option("--status")] = None,
    as_json: JsonFlag = False,
) -> None:
    """List orders (newest first, 200 at most)."""
    from siyu.mall import service

    with command(as_json) as db:
        orders = [
            _order_out(o)
            for o in service.list_orders(
                db, tenant_id=_tenant_id(db, tenant), status=status, limit=200
            )
        ]
    emit(
        as_json,
        {"items": orders},
        "\n".join(f"{o['id']}\t{o['title']}\t{o['status']}" for o in orders) or "no orders",
    )


def _set_status(tenant: str, order: int, status: str, as_json: bool, **kw: str) -> None:
    from siyu.ledger import service as ledger
    from siyu.mall import service

    with command(as_json) as db:
        o = service.set_status(
            db,
            tenant_id=_tenant_id(db, tenant),
            order_id=order,
            status=status,
            actor=ledger.CLI,
            **kw,
        )
        out = _order_out(o)
    emit(as_json, out, f"order {order} {out['status']}")


@mall_app.command("ship")
def mall_ship(
    tenant: TenantOpt,
    order: Annotated[int, typer.Option("--order")],
    carrier: Annotated[str, typer.Option("--carrier")],
    tracking: Annotated[str, typer.Option("--tracking")],
    as_json: JsonFlag = False,
) -> None:
    """Mark an order shipped with its carrier and tracking number."""
    _set_status(tenant, order, "shipped", as_json, carrier=carrier, tracking_no=tracking)


@mall_app.command("deliver")
def mall_deliver(
    tenant: TenantOpt, order: Annotated[int, typer.Option("--order")], as_json: JsonFlag = False
) -> None:
    """Mark a shipped order delivered."""
    _set_status(tenant, order, "delivered", as_json)


@mall_app.command("cancel")
def mall_cancel(
    tenant: TenantOpt,
    order: Annotated[int, typer.Option("--order")],
    reason: Annotated[str, typer.Option("--reason")] = "",
    as_json: JsonFlag = False,
) -> None:
    """Cancel an order (e.g. a failed shipment): refunds the points, puts the stock back."""
    _set_status(tenant, order, "cancelled", as_json, reason=reason)


@mall_app.command("export")
def mall_export(
    tenant: TenantOpt,
    out: Annotated[Path, typer.Option("--out", help="File to write (.csv or .xlsx)")],
    as_json: JsonFlag = False,
) -> None:
    """Write the pending orders for the warehouse."""
    from siyu.mall import service

    fmt = "xlsx" if out.suffix.lower() == ".xlsx" else "csv"
    with command(as_json) as db:
        tenant_id = _tenant_id(db, tenant)
        data = service.export_pending(db, tenant_id=tenant_id, fmt=fmt)
        rows = len(service.pending_rows(db, tenant_id=tenant_id))
    try:
        out.write_bytes(data)
    except OSError as err:
        fail(as_json, "mall.unwritable_file", str(err))
    emit(
        as_json,
        {"file": str(out), "format": fmt, "orders": rows},
        f"{rows} pending orders written to {out}",
    )


@mall_app.command("import-tracking")
def mall_import_tracking(
    tenant: TenantOpt,
    file: Annotated[Path, typer.Option("--file", help="The export with carrier and tracking")],
    as_json: JsonFlag = False,
) -> None:
    """Ship the orders of a warehouse sheet; bad rows are listed (exit 1 if any)."""
    from siyu.ledger import service as ledger
    from siyu.mall import service

    try:
        data = file.read_bytes()
    except OSError as err:
        fail(as_json, "mall.unreadable_file", str(err))
    with command(as_json) as db:
        r = service.import_tracking(
            db, tenant_id=_tenant_id(db, tenant), data=data, filename=file.name, actor=ledger.CLI
        )
        out = {
            "shipped": r.shipped,
            "unchanged": r.unchanged,
            "problems": [p.__dict__ for p in r.problems],
        }
    emit(
        as_json,
        out,
        "\n".join(
            [f"{r.shipped} shipped, {r.unchanged} unchanged"]
            + [f"row {p.row}: [{p.code}] {p.message}" for p in r.problems]
        ),
    )
    if r.problems:
        raise typer.Exit(1)


# --- trials -----------------------------------------------------------------------------------


def _trial_out(x: Any) -> dict[str, Any]:
    return {
        "id": x.id,
        "title": x.title,
        "slots": x.slots,
        "status": x.status,
        "commitment": x.commitment,
        "seed": x.seed_hex if x.status == "drawn" else None,
        "entries": x.entries,
        "apply_from": x.apply_from.isoformat(),
        "apply_until": x.apply_until.isoformat(),
        "report_deadline": x.report_deadline.isoformat(),
        "points_cost": x.points_cost,
        "report_reward": x.report_reward,
        "verify_url": f"/draws/{x.public_code}",
    }


@trial_app.command("create")
def trial_create(
    tenant: TenantOpt,
    title: Annotated[str, typer.Option("--title")],
    slots: Annotated[int, typer.Option("--slots")],
    apply_from: Annotated[str, typer.Option("--from", help="ISO 8601 with timezone")],
    apply_until: Annotated[str, typer.Option("--until", help="ISO 8601 with timezone")],
    deadline: Annotated[str, typer.Option("--report-deadline", help="ISO 8601 with timezone")],
    points_cost: Annotated[int, typer.Option("--points-cost")] = 0,
    reward: Annotated[int, typer.Option("--reward")] = 0,
    min_growth: Annotated[int | None, typer.Option("--min-growth")] = None,
    tag: Annotated[str | None, typer.Option("--tag")] = None,
    commitment: Annotated[
        str | None, typer.Option("--commitment", help="hex SHA-256 of your seed")
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Open a trial; prints its public commitment."""
    from siyu.trials import service

    start = _when(apply_from, "--from", as_json)
    end = _when(apply_until, "--until", as_json)
    due = _when(deadline, "--report-deadline", as_json)
    assert start is not None
    assert end is not None
    assert due is not None
    with command(as_json) as db:
        x = service.create_trial(
            db,
            tenant_id=_tenant_id(db, tenant),
            title=title,
            slots=slots,
            apply_from=start,
            apply_until=end,
            report_deadline=due,
            points_cost=points_cost,
            report_reward=reward,
            min_growth=min_growth,
            tag=tag,
            commitment=commitment,
        )
        out = _trial_out(x)
    emit(as_json, out, f"trial {out['id']} created, commitment {out['commitment']}")


@trial_app.command("list")
def trial_list(tenant: TenantOpt, as_json: JsonFlag = False) -> None:
    from siyu.trials import service

    with command(as_json) as db:
        items = [_trial_out(x) for x in service.list_trials(db, tenant_id=_tenant_id(db, tenant))]
    emit(
        as_json,
        {"items": items},
        "\n".join(f"{x['id']}\t{x['title']}\t{x['status']}" for x in items) or "no trials",
    )


@trial_app.command("draw")
def trial_draw(
    tenant: TenantOpt,
    trial: Annotated[int, typer.Option("--trial")],
    seed: Annotated[
        str | None, typer.Option("--seed", help="Your seed (hex), if you committed")
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Draw a trial's winners (after applications close)."""
    from siyu.trials import models as t
    from siyu.trials import service

    with command(as_json) as db:
        tenant_id = _tenant_id(db, tenant)
        x = service.draw(db, tenant_id=tenant_id, trial_id=trial, seed_hex=seed)
        winners = [
            a.id
            for a in sorted(
                service.list_applications(
                    db, tenant_id=tenant_id, trial_id=x.id, status=t.WON, limit=100_000
                ),
                key=lambda a: a.rank or 0,
            )
        ]
        out = _trial_out(x) | {"winners": [str(w) for w in winners]}
    emit(as_json, out, f"trial {trial} drawn: {len(winners)} winners of {out['entries']}")


@trial_app.command("reports")
def trial_reports(
    tenant: TenantOpt, trial: Annotated[int, typer.Option("--trial")], as_json: JsonFlag = False
) -> None:
    """Every winner's report state (due, missing, submitted, late, accepted, rejected)."""
    from siyu.trials import service

    with command(as_json) as db:
        rows = [
            {
                "application_id": r.application.id,
                "member_id": r.application.member_id,
                "state": r.state,
                "report_id": r.report.id if r.report else None,
            }
            for r in service.report_board(db, tenant_id=_tenant_id(db, tenant), trial_id=trial)
        ]
    emit(
        as_json,
        {"items": rows},
        "\n".join(f"{r['application_id']}\t{r['member_id']}\t{r['state']}" for r in rows)
        or "no winners",
    )


# --- draw -------------------------------------------------------------------------------------


@draw_app.command("verify")
def draw_verify(
    seed: Annotated[str, typer.Option("--seed", help="The revealed seed, hex")],
    entries: Annotated[Path, typer.Option("--entries", help="One entry id per line")],
    winners: Annotated[int, typer.Option("--winners", help="Number of winners (k)")],
    as_json: JsonFlag = False,
) -> None:
    """Re-run a published draw: prints the seed's commitment and the winners in order."""
    from siyu import draw

    try:
        ids = draw.read_entries(entries.read_text(encoding="utf-8-sig"))
    except (OSError, UnicodeDecodeError) as err:
        fail(as_json, "draw.unreadable_entries", str(err))
    try:
        result = draw.verify(seed, ids, winners)
    except draw.DrawInputError as err:
        fail(as_json, "draw.invalid_input", str(err))
    emit(
        as_json,
        {"commitment": result.commitment, "winners": result.winners, "entries": result.entries},
        lambda: print(f"commitment {result.commitment}\n" + "\n".join(result.winners)),  # noqa: T201
    )
