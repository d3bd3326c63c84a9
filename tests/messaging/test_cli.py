"""``siyu messages`` against a committed database: send, status, cancel, errors."""

from __future__ import annotations

import itertools
import json

from typer.testing import CliRunner

from siyu.cli import app
from siyu.messaging import service
from tests.messaging.conftest import drain

runner = CliRunner()
_slugs = itertools.count(1)


def siyu_json(*args: str, code: int = 0) -> dict:
    result = runner.invoke(app, [*args, "--json"])
    assert result.exit_code == code, (result.stdout, result.stderr, result.exception)
    lines = result.stdout.splitlines()
    assert len(lines) == 1, result.stdout
    return json.loads(lines[0])


def test_send_to_all_members_and_follow_its_status(committed):
    slug = f"cli-msg-{next(_slugs)}"
    siyu_json("tenant", "create", slug, "--name", "小鱼直播间")
    ids = [
        siyu_json("member", "create", "--tenant", slug, "--openid", f"o-{slug}-{i}")["id"]
        for i in range(3)
    ]

    out = siyu_json(
        "messages",
        "send",
        "--tenant",
        slug,
        "--template",
        "sop-checkin",
        "--target",
        "all",
        "--purpose",
        "cli-test",
    )
    assert out["recipients"] == 3
    assert out["status"] == "expanding"
    drain()
    status = siyu_json("messages", "status", str(out["id"]))

    assert status["counts"]["sent"] == 3
    assert (status["status"], status["progress"], status["total"]) == ("done", 100, 3)
    with committed() as db:
        inbox = service.list_inbox(db, tenant_id=status["tenant_id"], member_id=ids[0])
        assert inbox[0].title == "今日签到"
    again = siyu_json(
        "messages",
        "send",
        "--tenant",
        slug,
        "--template",
        "sop-checkin",
        "--target",
        "all",
        "--purpose",
        "cli-test",
    )
    drain()
    assert again["id"] == out["id"]
    assert siyu_json("messages", "status", str(out["id"]))["counts"]["sent"] == 3


def test_send_at_later_then_cancel(committed):
    slug = f"cli-msg-{next(_slugs)}"
    siyu_json("tenant", "create", slug, "--name", "x")
    m = siyu_json("member", "create", "--tenant", slug, "--openid", f"o-{slug}")

    out = siyu_json(
        "messages",
        "send",
        "--tenant",
        slug,
        "--body",
        "hi",
        "--target",
        f"members:{m['id']}",
        "--send-at",
        "2099-01-01T10:00+08:00",
    )
    assert out["status"] == "scheduled"
    cancelled = siyu_json("messages", "cancel", str(out["id"]), "--tenant", slug)

    assert cancelled["status"] == "cancelled"
    assert cancelled["counts"]["cancelled"] == 1


def test_errors_are_one_json_line_and_exit_1(committed):
    slug = f"cli-msg-{next(_slugs)}"
    siyu_json("tenant", "create", slug, "--name", "x")

    assert siyu_json("messages", "status", "999999", code=1)["code"] == "messages.not_found"
    bad = siyu_json(
        "messages", "send", "--tenant", slug, "--target", "everyone", "--body", "x", code=1
    )
    assert bad["code"] == "messages.invalid"
    missing = siyu_json(
        "messages", "send", "--tenant", slug, "--target", "all", "--template", "nope", code=1
    )
    assert missing["code"] == "messages.template_not_found"


def test_install_sops_adds_what_is_missing_and_says_so_in_json(committed):
    slug = f"cli-msg-{next(_slugs)}"
    siyu_json("tenant", "create", slug, "--name", "小鱼直播间")

    out = siyu_json("messages", "install-sops", "--tenant", slug)
    again = siyu_json("messages", "install-sops", "--tenant", slug)
    missing = siyu_json("messages", "install-sops", "--tenant", "no-such-tenant", code=1)

    assert [s["key"] for s in out["schedules"]] == [
        "checkin-reminder",
        "live-preview",
        "live-start",
    ]
    assert all(s["paused"] for s in out["schedules"])
    assert again == out
    assert missing["code"] == "tenant.not_found"
