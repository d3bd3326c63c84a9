"""The zh_CN catalog covers every message in the source, and requests get the right language.

Messages are extracted here with Babel's Python API and babel.cfg, the same mapping
``scripts/i18n`` uses, so a new ``_("…")`` without a translation fails this test.
"""

from __future__ import annotations

import os
import re
from functools import cache
from pathlib import Path

from babel.messages.catalog import Catalog
from babel.messages.extract import extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.pofile import read_po

from siyu.core.errors import SiyuError, Unauthenticated, all_error_classes
from siyu.core.i18n import LOCALE_DIR, LazyString
from siyu.ledger.errors import InsufficientPoints
from tests.factories import grant, make_member, make_operator, make_tenant, token_headers

ROOT = Path(__file__).resolve().parents[2]
# `{name}` for str.format (errors), `%(name)s` for Jinja's newstyle gettext (templates).
PLACEHOLDER = re.compile(r"\{[^{}]*\}|%\([^)]*\)[a-z]")
CJK = re.compile(r"[\u4e00-\u9fff]")


def _source_dirs(path: str) -> bool:
    name = os.path.basename(path)
    return not name.startswith((".", "_")) and name not in ("node_modules", "var")


@cache
def extracted() -> dict[str, tuple[str | None, list[str]]]:
    """msgid → (plural msgid or None, files it appears in) for every message babel.cfg
    extracts."""
    with (ROOT / "babel.cfg").open() as fh:
        method_map, options_map = parse_mapping_cfg(fh, "babel.cfg")
    found: dict[str, tuple[str | None, list[str]]] = {}
    for filename, _lineno, message, _comments, _context in extract_from_dir(
        ROOT, method_map, options_map, directory_filter=_source_dirs
    ):
        msgid, plural = (message[0], message[1]) if isinstance(message, tuple) else (message, None)
        if msgid:
            found.setdefault(msgid, (plural, []))[1].append(filename)
    return found


@cache
def zh_cn() -> Catalog:
    with (LOCALE_DIR / "zh_CN" / "LC_MESSAGES" / "messages.po").open("rb") as fh:
        return read_po(fh, locale="zh_CN")


def translation_problem(msgid: str, plural: str | None = None) -> str | None:
    found = zh_cn().get(msgid)
    if found is None:
        return "untranslated"
    # Chinese has one plural form; it carries the placeholders of the plural msgid.
    strings = found.string if isinstance(found.string, tuple) else (found.string,)
    source = plural or msgid
    if not all(strings):
        return "untranslated"
    if found.fuzzy:
        return "fuzzy"
    for string in strings:
        if set(PLACEHOLDER.findall(string)) != set(PLACEHOLDER.findall(source)):
            return f"placeholders differ in {string!r}"
        if _specials(string) != _specials(source):
            return f"a stray '{{', '}}' or '%' would break formatting of {string!r}"
    return None


def _specials(text: str) -> list[str]:
    return sorted(c for c in PLACEHOLDER.sub("", text) if c in "{}%")


def in_zh_cn(text: LazyString | None) -> str:
    assert text is not None
    return text.in_locale("zh_CN")


def test_extraction_finds_python_lazy_and_template_messages():
    messages = extracted()
    assert "Not enough points" in messages  # _l in an errors module
    assert "Live-room order" in messages  # i18n._l in core/web.py
    assert "Enter your openid" in messages  # _() in a pages module
    assert "Operator sign in" in messages  # {{ _("…") }} in a template
    assert "%(n)s points expire on %(day)s" in messages  # with Jinja keyword arguments


def test_every_extracted_message_has_a_zh_cn_translation_with_the_same_placeholders():
    problems = {
        msgid: (problem, files)
        for msgid, (plural, files) in extracted().items()
        if (problem := translation_problem(msgid, plural))
    }
    assert problems == {}, "run scripts/i18n extract and translate the zh_CN catalog"


def test_every_error_class_has_a_zh_cn_title_and_detail(app):
    classes = all_error_classes()  # the app fixture imported every domain's errors module
    assert len(classes) > 20
    problems = {}
    for cls in [SiyuError, *classes]:
        for text in filter(None, (cls.title, cls.detail)):
            if problem := translation_problem(text.message):
                problems[f"{cls.code}: {text.message}"] = problem
    assert problems == {}


def test_api_error_speaks_chinese_by_default_and_for_zh_cn(client):
    default = client.get("/api/v1/tenant")
    chinese = client.get("/api/v1/tenant", headers={"Accept-Language": "zh-CN,zh;q=0.9"})
    for response in (default, chinese):
        assert response.status_code == 401
        body = response.json()
        assert body["code"] == "auth.required"
        assert body["title"] == in_zh_cn(Unauthenticated.title) == "请先登录"
        assert body["detail"] == in_zh_cn(Unauthenticated.detail)
        assert CJK.search(body["detail"])


def test_api_error_detail_fills_placeholders_in_chinese(db, client):
    tenant = make_tenant(db)
    member = make_member(db, tenant)
    grant(db, member, 50)
    headers = token_headers(db, make_operator(db, tenant)) | {
        "Idempotency-Key": "i18n-1",
        "Accept-Language": "zh-CN",
    }
    response = client.post(
        f"/api/v1/members/{member.id}/points/spend",
        json={"points": 80, "reason": "redeem"},
        headers=headers,
    )
    assert response.status_code == 409
    body = response.json()
    assert body["code"] == "points.insufficient"
    assert body["title"] == "积分不足"
    assert body["detail"] == in_zh_cn(InsufficientPoints.detail).format(balance=50, wanted=80)
    assert "50" in body["detail"]
    assert "80" in body["detail"]
    assert CJK.search(body["detail"])


def test_api_error_speaks_english_with_lang_query_or_english_header(client):
    by_header = client.get("/api/v1/tenant", headers={"Accept-Language": "en-US,en;q=0.8"})
    by_query = client.get("/api/v1/tenant?lang=en", headers={"Accept-Language": "zh-CN"})
    for response in (by_header, by_query):
        assert response.status_code == 401
        body = response.json()
        assert body["code"] == "auth.required"
        assert body["title"] == "Sign in required"
        assert body["detail"] == "Sign in to continue"


def test_admin_login_page_renders_chinese_by_default_and_english_with_lang_en(client):
    chinese = client.get("/admin/login")
    assert chinese.status_code == 200
    assert '<html lang="zh-CN">' in chinese.text
    assert "运营后台登录" in chinese.text
    assert "Operator sign in" not in chinese.text

    english = client.get("/admin/login?lang=en")
    assert english.status_code == 200
    assert '<html lang="en">' in english.text
    assert "Operator sign in" in english.text
    assert "运营后台登录" not in english.text
    assert english.cookies.get("lang") == "en"  # the choice sticks for later pages


def test_member_h5_login_renders_chinese_by_default(db, client):
    tenant = make_tenant(db)
    page = client.get(f"/m/{tenant.slug}/login")
    assert page.status_code == 200
    assert "欢迎来到会员中心" in page.text
    assert "Welcome to the member center" not in page.text
