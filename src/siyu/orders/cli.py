"""``siyu orders …``: import exports, claim orders, review claims, statistics."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from siyu.core.cli import JsonFlag, TenantOpt, command, console, emit, fail
from siyu.core.cli import tenant_id as _tenant_id

app = typer.Typer(help="Live-room orders: imports and claims.", no_args_is_help=True)


def claim_out(c: Any) -> dict[str, Any]:
    from siyu.orders import service

    return {
        "id": c.id,
        "member_id": c.member_id,
        "platform": c.platform,
        "order_no": c.order_no,
        "account": c.account,
        "status": c.status,
        "reason": c.reason,
        "reason_text": service.reason_text(c.reason) if c.reason else "",
        "points": c.points,
        "clawed_points": c.clawed_points,
        "created_at": c.created_at.isoformat(),
    }


@app.command("import")
def import_file(
    file: Annotated[Path, typer.Argument(help="Taobao, Douyin or generic CSV/XLSX export.")],
    tenant: TenantOpt,
    fmt: Annotated[
        str | None, typer.Option("--format", help="taobao | douyin | generic (default: detect)")
    ] = None,
    session: Annotated[int | None, typer.Option("--session", help="Live session id.")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Import an order export; every rejected row is listed with line, column and reason."""
    from siyu.orders import flows, service

    if not file.is_file():
        fail(as_json, "orders.unreadable_file", f"no such file: {file}")
    with command(as_json) as db:
        imp = service.create_import(
            db,
            tenant_id=_tenant_id(db, tenant),
            filename=file.name,
            fmt=fmt,
            session_id=session,
            size_bytes=file.stat().st_size,
        )
        import_id, tenant_id = imp.id, imp.tenant_id
    if as_json:
        result = flows.run_import(import_id, file)
    else:
        with Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            TextColumn("{task.percentage:>3.0f}%  {task.fields[rows]:,} rows"),
            TimeRemainingColumn(),
            console=console,
        ) as bar:
            task = bar.add_task(file.name, total=max(1, file.stat().st_size), rows=0)

            def progress(imp: Any) -> None:
                bar.update(task, completed=imp.bytes_read, rows=imp.rows, total=imp.size_bytes)

            result = flows.run_import(import_id, file, progress=progress)
    if result.status != "done":
        fail(as_json, "orders.unreadable_file", result.error)
    with command(as_json) as db:
        rejects = service.list_rejects(db, tenant_id=tenant_id, import_id=import_id)
        out = {
            "import_id": import_id,
            "format": result.format,
            "encoding": result.encoding,
            "rows": result.rows,
            "imported": result.imported,
            "updated": result.updated,
            "rejected": [{"line": r.line, "column": r.column, "reason": r.reason} for r in rejects],
        }

    def human() -> None:
        console.print(
            f"{result.rows:,} rows ({result.format}, {result.encoding}): "
            f"[green]{result.imported:,} imported[/green], {result.updated:,} updated, "
            f"[red]{len(rejects):,} rejected[/red]"
        )
        if rejects:
            tbl = Table("line", "column", "reason", title="rejected rows")
            for r in rejects[:50]:
                tbl.add_row(str(r.line), r.column, r.reason)
            console.print(tbl)

    emit(as_json, out, human)


@app.command("claim")
def claim(
    tenant: TenantOpt,
    member: Annotated[int, typer.Option("--member", help="Member id.")],
    platform: Annotated[str, typer.Option("--platform")],
    order: Annotated[str, typer.Option("--order", help="Order number.")],
    account: Annotated[str, typer.Option("--account", help="The member's platform account.")],
    as_json: JsonFlag = False,
) -> None:
    """Claim an order for a member (as the member would in the H5)."""
    from siyu.orders import service

    with command(as_json) as db:
        c = service.claim_order(
            db,
            tenant_id=_tenant_id(db, tenant),
            member_id=member,
            platform=platform,
            order_no=order,
            account=account,
            ip="cli",
        )
        out = claim_out(c)
    emit(as_json, out, f"claim {out['id']}: {out['status']}, {out['points']} points")


@app.command("claims")
def claims(
    tenant: TenantOpt,
    status: Annotated[str | None, typer.Option("--status")] = None,
    member: Annotated[int | None, typer.Option("--member")] = None,
    as_json: JsonFlag = False,
) -> None:
    """List claims (newest first), e.g. ``--status review`` for the review queue."""
    from siyu.orders import service

    with command(as_json) as db:
        rows = [
            claim_out(c)
            for c in service.list_claims(
                db, tenant_id=_tenant_id(db, tenant), status=status, member_id=member, limit=200
            )
        ]

    def table() -> None:
        tbl = Table("id", "member", "order", "account", "status", "points", "reason")
        for r in rows:
            tbl.add_row(
                str(r["id"]),
                str(r["member_id"]),
                f"{r['platform']}:{r['order_no']}",
                r["account"],
                r["status"],
                str(r["points"]),
                r["reason_text"],
            )
        console.print(tbl)

    emit(as_json, {"claims": rows}, table)


@app.command("review")
def review(
    tenant: TenantOpt,
    claim_id: Annotated[int, typer.Argument()],
    approve: Annotated[bool, typer.Option("--approve/--reject")],
    reason: Annotated[str, typer.Option("--reason")] = "",
    as_json: JsonFlag = False,
) -> None:
    """Approve or reject (with ``--reason``) a flagged claim."""
    from siyu.orders import service

    with command(as_json) as db:
        tid = _tenant_id(db, tenant)
        if approve:
            c = service.approve_claim(db, tenant_id=tid, claim_id=claim_id, operator_id=None)
        else:
            c = service.reject_claim(
                db, tenant_id=tid, claim_id=claim_id, operator_id=None, reason=reason
            )
        out = claim_out(c)
    emit(as_json, out, f"claim {claim_id}: {out['status']}")


@app.command("rebind")
def rebind(
    tenant: TenantOpt,
    platform: Annotated[str, typer.Option("--platform")],
    account: Annotated[str, typer.Option("--account")],
    member: Annotated[int, typer.Option("--member", help="The member who gets the account.")],
    reason: Annotated[str, typer.Option("--reason")],
    as_json: JsonFlag = False,
) -> None:
    """Move a platform account to another member (recorded in the audit trail)."""
    from siyu.orders import service

    with command(as_json) as db:
        row = service.rebind_account(
            db,
            tenant_id=_tenant_id(db, tenant),
            platform=platform,
            account=account,
            to_member_id=member,
            operator_id=None,
            reason=reason,
        )
        out = {
            "id": row.id,
            "platform": row.platform,
            "account": row.account,
            "from_member_id": row.from_member_id,
            "to_member_id": row.to_member_id,
            "reason": row.reason,
        }
    emit(as_json, out, f"{platform} account {account} now belongs to member {member}")


@app.command("stats")
def stats(tenant: TenantOpt, as_json: JsonFlag = False) -> None:
    """Per live session: orders imported, claimed, claim rate, points issued."""
    from siyu.orders import service

    with command(as_json) as db:
        rows = [
            {
                "session_id": s.session_id,
                "orders": s.orders,
                "claimed": s.claimed,
                "claim_rate": s.claim_rate,
                "points": s.points,
            }
            for s in service.session_stats(db, tenant_id=_tenant_id(db, tenant))
        ]

    def table() -> None:
        tbl = Table("session", "orders", "claimed", "claim rate", "points")
        for r in rows:
            tbl.add_row(
                str(r["session_id"] or "-"),
                str(r["orders"]),
                str(r["claimed"]),
                f"{float(r['claim_rate'] or 0):.1%}",
                str(r["points"]),
            )
        console.print(tbl)

    emit(as_json, {"sessions": rows}, table)
