"""Take the README screenshots: the demo tenant in a throw-away SQLite database, served on a
free loopback port, photographed by Debian's Chromium.

    .venv/bin/python -m tests.browser.screenshots [--lang zh_CN|en] [--out docs/screenshots]

Writes admin-members.png, admin-member.png (desktop) and member-home.png (phone). Chinese
text needs a CJK font (Debian: ``apt-get install fonts-noto-cjk``); without one Chromium
draws empty boxes, so this refuses to run.
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from playwright.sync_api import Page

ROOT = Path(__file__).resolve().parents[2]
MAX_BYTES = 300_000


def _environment(var: Path) -> None:
    # Settings are read once, at first use: fix them before any siyu module is imported.
    os.environ.update(
        {
            "SIYU_DATABASE_URL": f"sqlite:///{var / 'siyu.db'}",
            "SIYU_VAR_DIR": str(var),
            "SIYU_SECRET_KEY": secrets.token_urlsafe(32),
            "SIYU_EMBEDDED_CONSUMER": "false",
            "SIYU_DEV_LOGIN": "true",
            "SIYU_ENV": "development",
        }
    )
    os.environ.pop("SIYU_REDIS_URL", None)


def _has_cjk_font() -> bool:
    if shutil.which("fc-list") is None:
        return False
    found = subprocess.run(["fc-list", ":lang=zh"], capture_output=True, text=True, check=False)
    return bool(found.stdout.strip())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lang", default="zh_CN", choices=["zh_CN", "en"])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshots")
    args = parser.parse_args(argv)
    if not _has_cjk_font():
        sys.stderr.write("screenshots: no CJK font found; install fonts-noto-cjk\n")
        return 1
    with tempfile.TemporaryDirectory(prefix="siyu-screenshots-") as tmp:
        _environment(Path(tmp))
        shots = take(out=args.out, lang=args.lang)
    too_big = [p for p in shots if p.stat().st_size > MAX_BYTES]
    for path in shots:
        sys.stdout.write(f"{path}  {path.stat().st_size // 1024} KB\n")
    if too_big:
        sys.stderr.write(f"screenshots: over {MAX_BYTES // 1000} KB: {too_big}\n")
        return 1
    return 0


def take(*, out: Path, lang: str) -> list[Path]:
    from playwright.sync_api import expect, sync_playwright

    from siyu import demo
    from siyu.app import create_app
    from siyu.core import db as dbmod
    from siyu.core.migrate import upgrade
    from siyu.core.settings import get_settings
    from siyu.members import service as members
    from tests.browser.support import DESKTOP, PHONE, launch_chromium, serve

    url = get_settings().database_url
    upgrade("head", url=url)
    engine = dbmod.make_engine(url)
    dbmod.configure(engine)
    with dbmod.unit_of_work() as db:
        seeded = demo.seed(db)
        fan = members.find_by_openid(
            db, tenant_id=seeded["tenant_id"], openid=seeded["member_openid"]
        )
        assert fan is not None
        fan_id = fan.id
    out.mkdir(parents=True, exist_ok=True)
    locale = "zh-CN" if lang == "zh_CN" else "en-US"
    shots: list[Path] = []
    try:
        with serve(create_app(start_consumer=False)) as base, sync_playwright() as pw:
            browser = launch_chromium(pw)
            desk = browser.new_context(base_url=base, locale=locale, viewport=DESKTOP)
            page = desk.new_page()
            page.goto(f"/admin/login?lang={lang}")
            page.locator("input[name=tenant]").fill(seeded["tenant"])
            page.locator("input[name=username]").fill(seeded["operator"])
            page.locator("input[name=password]").fill(seeded["password"])
            page.locator("button[type=submit]").click()
            page.wait_for_url("**/admin/members")
            shots.append(_shot(page, out / "admin-members.png"))
            page.goto(f"/admin/members/{fan_id}")
            expect(page.get_by_test_id("balance")).to_be_visible()
            shots.append(_shot(page, out / "admin-member.png"))
            desk.close()

            phone = browser.new_context(
                base_url=base,
                locale=locale,
                viewport=PHONE,
                device_scale_factor=2,
                is_mobile=True,
                has_touch=True,
            )
            page = phone.new_page()
            page.goto(f"/m/{seeded['tenant']}/login?lang={lang}")
            page.locator("input[name=openid]").fill(seeded["member_openid"])
            page.locator("button[type=submit]").click()
            page.wait_for_url(f"**/m/{seeded['tenant']}")
            shots.append(_shot(page, out / "member-home.png", crop=False))
            phone.close()
            browser.close()
    finally:
        dbmod.configure(None)
        engine.dispose()
    return shots


def _shot(page: Page, path: Path, *, crop: bool = True) -> Path:
    """Save the viewport; ``crop`` cuts the empty background below the content."""
    page.wait_for_load_state("networkidle")
    size = page.viewport_size
    assert size is not None
    bottom = page.evaluate("() => document.querySelector('main').getBoundingClientRect().bottom")
    height = min(size["height"], int(bottom) + 24) if crop else size["height"]
    page.screenshot(path=str(path), clip={"x": 0, "y": 0, "width": size["width"], "height": height})
    return path


if __name__ == "__main__":
    raise SystemExit(main())
