"""Translations: English source strings, Simplified Chinese by default.

Catalogs are Babel ``.po`` files under ``siyu/locale``, read at start-up with Babel's parser
(no compiled ``.mo`` files to build or commit). The active locale lives in a context variable
set per request from the ``lang`` cookie, ``?lang=`` or ``Accept-Language``.
"""

from __future__ import annotations

from contextvars import ContextVar
from functools import lru_cache
from pathlib import Path
from typing import Any

from babel.messages.pofile import read_po

LOCALES = ("zh_CN", "en")
DEFAULT_LOCALE = "zh_CN"
LOCALE_DIR = Path(__file__).resolve().parent.parent / "locale"

_locale: ContextVar[str] = ContextVar("siyu_locale", default=DEFAULT_LOCALE)


@lru_cache
def catalog(locale: str) -> dict[str, str]:
    path = LOCALE_DIR / locale / "LC_MESSAGES" / "messages.po"
    if not path.exists():
        return {}
    with path.open("rb") as fh:
        cat = read_po(fh, locale=locale)
    out: dict[str, str] = {}
    for m in cat:
        if not m.id or not m.string or m.fuzzy:
            continue
        if m.pluralizable:  # Chinese has one plural form: key by the singular, keep form 0
            out[str(m.id[0])] = str(m.string[0])
        else:
            out[str(m.id)] = str(m.string)
    return out


def get_locale() -> str:
    return _locale.get()


def set_locale(locale: str) -> Any:
    return _locale.set(normalize(locale) or DEFAULT_LOCALE)


def normalize(value: str | None) -> str | None:
    if not value:
        return None
    v = value.strip().replace("-", "_").lower()
    if v.startswith("zh"):
        return "zh_CN"
    if v.startswith("en"):
        return "en"
    return None


def negotiate(accept_language: str | None) -> str:
    for part in (accept_language or "").split(","):
        found = normalize(part.split(";")[0])
        if found:
            return found
    return DEFAULT_LOCALE


def gettext(message: str, locale: str | None = None) -> str:
    return catalog(locale or get_locale()).get(message, message)


_ = gettext


def ngettext(singular: str, plural: str, n: int) -> str:
    found = catalog(get_locale()).get(singular)
    if found is not None:
        return found
    return singular if n == 1 else plural


class LazyString:
    """A message translated when rendered, for class attributes defined at import time."""

    def __init__(self, message: str) -> None:
        self.message = message

    def __str__(self) -> str:
        return gettext(self.message)

    def __repr__(self) -> str:
        return f"_l({self.message!r})"

    def format(self, **params: Any) -> str:
        return str(self).format(**params)

    def in_locale(self, locale: str) -> str:
        return gettext(self.message, locale)


def _l(message: str) -> LazyString:  # noqa: N802 - gettext convention
    return LazyString(message)
