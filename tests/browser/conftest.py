"""Browser fixtures: one Chromium and one live server per test session, a fresh browser
context per test, and committed data (the server reads through its own connections)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, sync_playwright
from sqlalchemy.orm import Session, sessionmaker

from tests.browser.support import DESKTOP, launch_chromium, serve

TIMEOUT_MS = 10_000  # a page that has not answered in 10 s is broken; fail fast


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        chromium = launch_chromium(playwright)
        yield chromium
        chromium.close()


@pytest.fixture(scope="session")
def live_server(app: Any) -> Iterator[str]:
    """The app on a free loopback port. Requests use whatever ``siyu.core.db`` is configured
    to at the time, which the function-scoped ``live`` fixture points at committed data."""
    with serve(app) as url:
        yield url


@dataclass
class Live:
    url: str
    sessions: sessionmaker[Session]

    def seed(self) -> Any:
        """``with live.seed() as db:`` — one committed transaction of test data."""
        return self.sessions.begin()


@pytest.fixture
def live(live_server: str, committed: sessionmaker[Session]) -> Live:
    return Live(live_server, committed)


PageFactory = Callable[..., Page]


@pytest.fixture
def new_page(browser: Browser, live: Live) -> Iterator[PageFactory]:
    """Open a page in a new, isolated browser context (own cookies) on the live server.

    ``new_page(locale="en-US", viewport=PHONE)``; every context is closed after the test.
    """
    contexts = []

    def open_page(*, locale: str = "en-US", viewport: dict[str, int] = DESKTOP) -> Page:
        context = browser.new_context(base_url=live.url, locale=locale, viewport=viewport)
        context.set_default_timeout(TIMEOUT_MS)
        contexts.append(context)
        return context.new_page()

    yield open_page
    for context in contexts:
        context.close()
