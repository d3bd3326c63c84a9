"""``siyu messages …``: send, follow and cancel messages; run the minute tick by hand."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Annotated, Any

import typer
from rich.table import Table
from sqlalchemy.orm import Session

from siyu.core.cli import JsonFlag, command, console, emit, fail

app = typer.Typer(help="Messages: send, status, cancel, SOP tick.", no_args_is_help=True)

TARGET_HELP = (
    "all | tag:TAG | members:1,2,3 | groups | groups-tag:TAG "
    "(all members, members with a tag, listed members, all WeCom groups, groups with a tag)"
)


def _target(spec: str, as_json: bool) -> Any:
    from siyu.messaging.service import Target

    kind, _, arg = spec.partition(":")
    try:
        if kind == "all":
            return Target(kind="all_members")
        if kind == "tag":
            return Target(kind="members_tag", tag=arg)
        if kind == "groups":
            return Target(kind="all_groups")
        if kind == "groups-tag":
            return Target(kind="groups_tag", tag=arg)
        if kind == "members":
            return Target(kind="members", member_ids=tuple(int(i) for i in arg.split(",") if i))
    except ValueError:
        pass
    fail(as_json, "messages.invalid", f"target: {TARGET_HELP}")


def _status(db: Session, msg: Any) -> dict[str, Any]:
    from siyu.messaging import service
    from siyu.messaging.models import FINAL_STATES

    counts = service.status_counts(db, message_id=msg.id)
    total = sum(counts.values())
    done = sum(counts[s] for s in FINAL_STATES)
    return {
        "id": msg.id,
        "tenant_id": msg.tenant_id,
        "purpose": msg.purpose,
        "kind": msg.kind,
        "status": msg.status,
        "total": msg.total,
        "counts": counts,
        "progress": 100 if total == 0 else done * 100 // total,
        "send_at": msg.send_at.isoformat() if msg.send_at else None,
        "created_at": msg.created_at.isoformat(),
        "first_sent_at": msg.first_sent_at.isoformat() if msg.first_sent_at else None,
        "finished_at": msg.finished_at.isoformat() if msg.finished_at else None,
    }


def _show(out: dict[str, Any]) -> None:
    tbl = Table("message", "status", "progress", *out["counts"].keys())
    tbl.add_row(
        f"{out['id']} {out['purpose']}",
        out["status"],
        f"{out['progress']}%",
        *(str(n) for n in out["counts"].values()),
    )
    console.print(tbl)


@app.command("send")
def send(
    tenant: Annotated[str, typer.Option("--tenant", help="Tenant slug.")],
    target: Annotated[str, typer.Option("--target", help=TARGET_HELP)],
    template: Annotated[str | None, typer.Option("--template", help="Template key.")] = None,
    title: Annotated[str, typer.Option("--title")] = "",
    body: Annotated[str, typer.Option("--body", help="Text (Jinja2) when no template.")] = "",
    purpose: Annotated[
        str | None,
        typer.Option("--purpose", help="Idempotency: the same purpose reaches no one twice."),
    ] = None,
    channel: Annotated[list[str] | None, typer.Option("--channel", help="Repeatable.")] = None,
    send_at: Annotated[str | None, typer.Option("--send-at", help="ISO 8601 with zone")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Queue a message (a broadcast when the target is not a member list)."""
    from siyu.messaging import service
    from siyu.tenants import service as tenants

    tgt = _target(target, as_json)
    when = None
    if send_at:
        try:
            when = dt.datetime.fromisoformat(send_at)
        except ValueError:
            fail(as_json, "messages.invalid", f"send_at: not an ISO 8601 instant: {send_at}")
    with command(as_json) as db:
        tid = tenants.get_tenant(db, slug=tenant).id
        msg = service.send(
            db,
            tenant_id=tid,
            purpose=purpose or f"cli:{uuid.uuid4().hex}",
            target=tgt,
            template=template,
            title=title,
            body=body,
            channels=channel or None,
            send_at=when,
            kind="api" if tgt.kind == "members" else "broadcast",
            created_by="cli",
        )
        out = _status(db, msg) | {
            "recipients": service.count_recipients(db, tenant_id=tid, target=tgt)
        }
    emit(as_json, out, f"message {out['id']} queued for {out['recipients']} recipients")


@app.command("status")
def status(message_id: int, as_json: JsonFlag = False) -> None:
    """Delivery counts and progress of a message."""
    from siyu.messaging.errors import MessageNotFound
    from siyu.messaging.models import Message

    with command(as_json) as db:
        msg = db.get(Message, message_id)
        if msg is None:
            raise MessageNotFound(message_id=message_id)
        out = _status(db, msg)
    emit(as_json, out, lambda: _show(out))


@app.command("cancel")
def cancel(
    message_id: int,
    tenant: Annotated[str, typer.Option("--tenant", help="Tenant slug.")],
    as_json: JsonFlag = False,
) -> None:
    """Cancel what has not gone out yet."""
    from siyu.messaging import service
    from siyu.tenants import service as tenants

    with command(as_json) as db:
        msg = service.cancel(
            db, tenant_id=tenants.get_tenant(db, slug=tenant).id, message_id=message_id
        )
        out = _status(db, msg)
    emit(as_json, out, lambda: _show(out))


@app.command("install-sops")
def install_sops(
    tenant: Annotated[str, typer.Option("--tenant", help="Tenant slug.")],
    as_json: JsonFlag = False,
) -> None:
    """Add the ready-made daily SOPs (10:00, 13:00, 19:30; paused) where missing."""
    from siyu.messaging import schedules
    from siyu.tenants import service as tenants

    with command(as_json) as db:
        rows = schedules.install_defaults(db, tenant_id=tenants.get_tenant(db, slug=tenant).id)
        out = {"schedules": [{"key": s.key, "name": s.name, "paused": s.paused} for s in rows]}
    human = "\n".join(
        f"{s['key']}: {s['name']}{' (paused)' if s['paused'] else ''}" for s in out["schedules"]
    )
    emit(as_json, out, human)


@app.command("tick")
def tick(as_json: JsonFlag = False) -> None:
    """Run due SOP schedules and "send at" messages, requeue interrupted deliveries (the
    worker does this every minute)."""
    from siyu.messaging.tasks import run_tick

    try:
        out = run_tick()
    except Exception as err:  # noqa: BLE001 - one clear line
        fail(as_json, "messages.tick_failed", str(err).splitlines()[0])
        return
    emit(as_json, out, f"tick: {out}")
