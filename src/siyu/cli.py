"""The ``siyu`` command line."""

from __future__ import annotations

import datetime as dt
import gc
import socket
import sys
from typing import Annotated, Any

import typer
from rich.table import Table

from siyu.core import db as dbmod
from siyu.core import logs
from siyu.core.cli import JsonFlag, TenantOpt, command, console, emit, fail
from siyu.core.cli import tenant_id as _tenant_id
from siyu.core.settings import get_settings

app = typer.Typer(
    help="siyu: private-domain operations for live-streaming anchors.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
tenant_app = typer.Typer(help="Tenants (anchors, institutions).", no_args_is_help=True)
operator_app = typer.Typer(help="Console operators.", no_args_is_help=True)
member_app = typer.Typer(help="Members.", no_args_is_help=True)
points_app = typer.Typer(help="Points of a member.", no_args_is_help=True)
ledger_app = typer.Typer(help="The points ledger.", no_args_is_help=True)
for sub, name in (
    (db_app, "db"),
    (tenant_app, "tenant"),
    (operator_app, "operator"),
    (member_app, "member"),
    (points_app, "points"),
    (ledger_app, "ledger"),
):
    app.add_typer(sub, name=name)
from siyu.messaging.cli import app as messages_app  # noqa: E402

app.add_typer(messages_app, name="messages")

from siyu.live.cli import app as live_app  # noqa: E402

app.add_typer(live_app, name="live")

from siyu.orders.cli import app as orders_app  # noqa: E402

app.add_typer(orders_app, name="orders")
from siyu.mall.cli import draw_app, mall_app, trial_app  # noqa: E402

app.add_typer(mall_app, name="mall")
app.add_typer(trial_app, name="trial")
app.add_typer(draw_app, name="draw")


# --- db ---------------------------------------------------------------------------------------


@db_app.command("upgrade")
def db_upgrade(revision: str = "head", as_json: JsonFlag = False) -> None:
    """Apply migrations (creates the SQLite file under ./var on first run)."""
    from siyu.core.migrate import upgrade

    try:
        upgrade(revision)
    except Exception as err:  # noqa: BLE001 - one clear line, whatever Alembic raised
        fail(as_json, "database.migration_failed", str(err).splitlines()[0])
    emit(as_json, {"ok": True, "revision": revision}, f"database at {revision}")


# --- tenants and operators --------------------------------------------------------------------


@tenant_app.command("create")
def tenant_create(
    slug: str,
    name: Annotated[str, typer.Option("--name")],
    timezone: Annotated[str, typer.Option("--timezone")] = "Asia/Shanghai",
    as_json: JsonFlag = False,
) -> None:
    from siyu.tenants import service as tenants

    with command(as_json) as db:
        t = tenants.create_tenant(db, slug=slug, name=name, timezone=timezone)
        out = {"id": t.id, "slug": t.slug, "name": t.name, "timezone": t.timezone}
    emit(as_json, out, f"tenant {slug} created (id {out['id']})")


@tenant_app.command("wechat")
def tenant_wechat(
    slug: str,
    appid: Annotated[str, typer.Option("--appid", help="Mini-program AppID (wx…)")],
    secret: Annotated[
        str, typer.Option("--secret", prompt=True, hide_input=True, help="AppSecret")
    ],
    as_json: JsonFlag = False,
) -> None:
    """Set the tenant's mini-program credentials (members then sign in with WeChat)."""
    from pydantic import ValidationError

    from siyu.tenants import service as tenants
    from siyu.tenants.schemas import WechatCredentials

    try:
        creds = WechatCredentials(appid=appid, secret=secret)
    except ValidationError as err:
        fail(
            as_json, "tenant.invalid", "; ".join(f"{e['loc'][0]}: {e['msg']}" for e in err.errors())
        )
        return
    with command(as_json) as db:
        tenants.update_settings(
            db, tenant_id=_tenant_id(db, slug), changes={"wechat": creds.model_dump()}
        )
    emit(
        as_json,
        {"tenant": slug, "appid": appid, "configured": True},
        f"WeChat login configured for {slug} ({appid})",
    )


@tenant_app.command("list")
def tenant_list(as_json: JsonFlag = False) -> None:
    from siyu.tenants import service as tenants

    with command(as_json) as db:
        rows = [
            {"id": t.id, "slug": t.slug, "name": t.name, "timezone": t.timezone}
            for t in tenants.list_tenants(db)
        ]

    def table() -> None:
        tbl = Table("id", "slug", "name", "timezone")
        for r in rows:
            tbl.add_row(str(r["id"]), str(r["slug"]), str(r["name"]), str(r["timezone"]))
        console.print(tbl)

    emit(as_json, {"tenants": rows}, table)


@operator_app.command("create")
def operator_create(
    tenant: TenantOpt,
    username: Annotated[str, typer.Option("--username")],
    password: Annotated[str, typer.Option("--password")],
    role: Annotated[str, typer.Option("--role")] = "operator",
    as_json: JsonFlag = False,
) -> None:
    from siyu.tenants import service as tenants

    with command(as_json) as db:
        op = tenants.create_operator(
            db, tenant_id=_tenant_id(db, tenant), username=username, password=password, role=role
        )
        out = {"id": op.id, "username": op.username, "role": op.role, "tenant": tenant}
    emit(as_json, out, f"operator {username} ({role}) created")


# --- members ----------------------------------------------------------------------------------


@member_app.command("create")
def member_create(
    tenant: TenantOpt,
    openid: Annotated[str, typer.Option("--openid")],
    nickname: Annotated[str, typer.Option("--nickname")] = "",
    as_json: JsonFlag = False,
) -> None:
    from siyu.members import service as members

    with command(as_json) as db:
        m = members.create_member(
            db, tenant_id=_tenant_id(db, tenant), openid=openid, nickname=nickname
        )
        out = {"id": m.id, "openid": m.openid, "nickname": m.nickname}
    emit(as_json, out, f"member {out['id']} created")


# --- points -----------------------------------------------------------------------------------

MemberOpt = Annotated[int, typer.Option("--member", help="Member id.")]
PointsOpt = Annotated[int, typer.Option("--points")]
ReasonOpt = Annotated[str, typer.Option("--reason", help="Reason code, e.g. purchase.")]
KeyOpt = Annotated[str, typer.Option("--key", help="Idempotency key: a rerun changes nothing.")]


def _entry_out(e: object) -> dict[str, object]:
    from siyu.ledger.models import JournalEntry

    assert isinstance(e, JournalEntry)
    return {
        "entry_id": e.id,
        "member_id": e.member_id,
        "kind": e.kind,
        "points": e.points,
        "reason": e.reason,
        "idempotency_key": e.idempotency_key,
        "created_at": e.created_at.isoformat(),
    }


@points_app.command("grant")
def points_grant(
    tenant: TenantOpt,
    member: MemberOpt,
    points: PointsOpt,
    reason: ReasonOpt,
    key: KeyOpt,
    expires_at: Annotated[str | None, typer.Option("--expires-at", help="ISO 8601 instant")] = None,
    memo: Annotated[str, typer.Option("--memo")] = "",
    as_json: JsonFlag = False,
) -> None:
    from siyu.ledger import service as ledger

    when = None
    if expires_at:
        try:
            when = dt.datetime.fromisoformat(expires_at)
        except ValueError:
            fail(as_json, "points.invalid_expiry", f"not an ISO 8601 instant: {expires_at}")
        assert when is not None
        if when.tzinfo is None:
            fail(as_json, "points.invalid_expiry", "give a timezone, e.g. 2027-01-01T00:00+08:00")
    with command(as_json) as db:
        tid = _tenant_id(db, tenant)
        dbmod.release(db)  # the posting is a transaction of its own
        e = ledger.alone(
            ledger.grant,
            tenant_id=tid,
            member_id=member,
            points=points,
            reason=reason,
            idempotency_key=key,
            actor=ledger.CLI,
            memo=memo,
            expires_at=when,
        )
        out = _entry_out(e) | {
            "balance": ledger.get_balance(db, tenant_id=tid, member_id=member).balance
        }
    emit(
        as_json, out, f"granted {points} points (entry {out['entry_id']}); balance {out['balance']}"
    )


@points_app.command("spend")
def points_spend(
    tenant: TenantOpt,
    member: MemberOpt,
    points: PointsOpt,
    reason: ReasonOpt,
    key: KeyOpt,
    memo: Annotated[str, typer.Option("--memo")] = "",
    as_json: JsonFlag = False,
) -> None:
    from siyu.ledger import service as ledger

    with command(as_json) as db:
        tid = _tenant_id(db, tenant)
        dbmod.release(db)  # the posting is a transaction of its own
        e = ledger.alone(
            ledger.spend,
            tenant_id=tid,
            member_id=member,
            points=points,
            reason=reason,
            idempotency_key=key,
            actor=ledger.CLI,
            memo=memo,
        )
        out = _entry_out(e) | {
            "balance": ledger.get_balance(db, tenant_id=tid, member_id=member).balance
        }
    emit(as_json, out, f"spent {points} points (entry {out['entry_id']}); balance {out['balance']}")


@points_app.command("balance")
def points_balance(tenant: TenantOpt, member: MemberOpt, as_json: JsonFlag = False) -> None:
    from siyu.ledger import service as ledger

    with command(as_json) as db:
        b = ledger.get_balance(db, tenant_id=_tenant_id(db, tenant), member_id=member)
        out = {
            "member_id": member,
            "balance": b.balance,
            "growth": b.growth,
            "expiring": [
                {"expires_at": e.expires_at.isoformat(), "points": e.points} for e in b.expiring
            ],
        }
    emit(as_json, out, f"member {member}: {b.balance} points (growth {b.growth})")


@ledger_app.command("verify")
def ledger_verify(tenant: TenantOpt, as_json: JsonFlag = False) -> None:
    """Recompute every balance and lot from the postings; exit 1 on any difference."""
    from siyu.ledger import service as ledger

    with command(as_json) as db:
        r = ledger.verify(db, tenant_id=_tenant_id(db, tenant))
    out = {
        "ok": r.ok,
        "entries": r.entries,
        "accounts": r.accounts,
        "lots": r.lots,
        "problems": [p.__dict__ for p in r.problems],
    }

    def human() -> None:
        if r.ok:
            console.print(
                f"[green]ledger consistent[/green]: {r.entries} entries, "
                f"{r.accounts} accounts, {r.lots} lots"
            )
            return
        tbl = Table("problem", "where", "expected", "actual", title="ledger differences")
        for p in r.problems:
            tbl.add_row(p.kind, p.ref, str(p.expected), str(p.actual))
        console.print(tbl)

    emit(as_json, out, human)
    if not r.ok:
        raise typer.Exit(1)


# --- processes --------------------------------------------------------------------------------


@app.command("demo")
def demo(as_json: JsonFlag = False) -> None:
    """Seed the demo tenant (idempotent): operators, members, points."""
    from siyu.demo import seed

    with command(as_json) as db:
        out = seed(db)
    emit(as_json, out, f"demo tenant '{out['tenant']}' ready")


@app.command("serve")
def serve(
    bind: Annotated[str | None, typer.Option("--bind")] = None,
    workers: Annotated[int, typer.Option("--workers", help="Web processes")] = 1,
) -> None:
    """Run the web app (and, on the embedded default, a job consumer in-process)."""
    # With --workers N each web process listens on a socket of its own (SO_REUSEPORT; IPv4 on
    # Linux): the kernel spreads new connections over them. The port is first bound without
    # SO_REUSEPORT, so that a second `siyu serve` on the same port fails instead of silently
    # taking half the connections (an old and a new version serving side by side).
    import uvicorn
    from uvicorn.supervisors import Multiprocess

    settings = get_settings()
    host, port = (bind or settings.bind).rsplit(":", 1)
    logs.configure()
    options: dict[str, Any] = dict(
        factory=True,
        host=host,
        port=int(port),
        workers=workers,
        proxy_headers=True,
        access_log=False,
        log_config=None,  # keep our structured logging (siyu.access logs each request)
        # uvicorn restarts a worker that misses its 5 s health ping; a worker importing the app
        # on a busy machine (a deploy during a live broadcast) can take longer than that.
        timeout_worker_healthcheck=60,
    )
    # Only Linux balances connections over SO_REUSEPORT sockets.
    if workers < 2 or not sys.platform.startswith("linux") or ":" in host:
        uvicorn.run("siyu.cli:web_app", **options)
        return
    config = uvicorn.Config("siyu.cli:web_app", **options)
    try:
        reservation = _PortReservation.reserve(host, int(port))
    except OSError as err:
        console.print(f"[red]error[/red] cannot listen on {host}:{port}: {err}", highlight=False)
        raise typer.Exit(3) from None
    Multiprocess(config, sockets=[reservation]).run()


def web_app() -> Any:
    """The app of one web process, its startup heap frozen (``_freeze_startup_heap``)."""
    from siyu.app import create_app

    app = create_app()
    _freeze_startup_heap()
    return app


def _freeze_startup_heap() -> None:
    """Take everything a process built at startup (modules, routes, schemas, mappers), which
    lives as long as the process, out of the collector's full collections. They otherwise
    walked all of it: in a web process they stalled every request for 100–300 ms a few times
    a minute under load (benchmarks/README.md, flash_redeem); in a worker fanning out a
    broadcast they cost 14 µs of every delivery's 47 µs claim (fanout)."""
    from sqlalchemy.orm import configure_mappers

    from siyu.models import import_all

    import_all()
    configure_mappers()
    gc.collect()
    gc.freeze()


class _PortReservation(socket.socket):
    """The port, bound with SO_REUSEPORT but never listened on; each web process that
    unpickles it gets a listening socket of its own on the same port.

    With one socket shared by the processes, whichever woke first accepted every connection
    waiting (a client's or proxy's burst of keep-alive connections all landed on one process,
    24 to 0, and stayed there); the kernel spreads connections over SO_REUSEPORT sockets."""

    @classmethod
    def reserve(cls, host: str, port: int) -> _PortReservation:
        """Raises OSError (EADDRINUSE) when anything listens on the port, including the
        SO_REUSEPORT sockets of another `siyu serve`, which a bind with SO_REUSEPORT would
        join."""
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # TIME_WAIT is fine
            probe.bind((host, port))
        sock = cls(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        try:
            sock.bind((host, port))
        except OSError:
            sock.close()
            raise
        return sock

    def __reduce__(self) -> tuple[Any, ...]:
        return (_own_listener, self.getsockname())


def _own_listener(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    return sock


@app.command("worker")
def worker(
    workers: Annotated[int, typer.Option("--workers", help="Worker threads")] = 4,
    periodic: Annotated[bool, typer.Option(help="Also run periodic jobs")] = True,
) -> None:
    """Run job consumers only (production: many of these against Redis)."""
    from siyu.core.jobs import CONSUMER_POLLING, huey, load_tasks

    logs.configure()
    load_tasks()
    _freeze_startup_heap()
    consumer = huey.create_consumer(
        workers=workers, worker_type="thread", periodic=periodic, **CONSUMER_POLLING
    )
    consumer.run()


def main() -> None:
    app()


if __name__ == "__main__":
    main()
