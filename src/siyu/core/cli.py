"""Shared CLI plumbing: one JSON object with ``--json``, ``error [code]: message`` otherwise."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from siyu.core.db import unit_of_work
from siyu.core.errors import SiyuError

console = Console()
err_console = Console(stderr=True)
JsonFlag = Annotated[bool, typer.Option("--json", help="Print one JSON object.")]
TenantOpt = Annotated[str, typer.Option("--tenant", help="Tenant slug.")]


def tenant_id(db: Session, slug: str) -> int:
    """The id of the tenant ``slug`` (raises TenantNotFound)."""
    from siyu.tenants import service as tenants

    return tenants.get_tenant(db, slug=slug).id


def emit(as_json: bool, data: dict[str, Any], human: Callable[[], None] | str) -> None:
    if as_json:
        sys.stdout.write(json.dumps(data, ensure_ascii=False, default=str) + "\n")
    elif callable(human):
        human()
    else:
        console.print(human)


def fail(as_json: bool, code: str, message: str) -> None:
    if as_json:
        sys.stdout.write(json.dumps({"code": code, "message": message}, ensure_ascii=False) + "\n")
    else:
        # escape(): "[points.insufficient]" would otherwise be read as Rich markup and vanish.
        err_console.print(f"[red]error[/red] {escape(f'[{code}]: {message}')}", highlight=False)
    raise typer.Exit(1)


@contextmanager
def command(as_json: bool) -> Iterator[Session]:
    """One transaction per command; domain errors become one clear line and exit 1."""
    try:
        with unit_of_work() as db:
            yield db
    except SiyuError as err:
        fail(as_json, err.code, err.message())
    except OperationalError as err:
        fail(as_json, "database.unavailable", str(err.orig).strip().splitlines()[0])
