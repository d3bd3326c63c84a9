"""Template rendering in Jinja2's sandbox, and the channels' field limits.

Templates are written by operators, so they render in ``SandboxedEnvironment`` (no attribute
access to internals, no imports, none of Jinja's global functions) with plain dicts as
context: ``member`` (id, nickname, tags), ``tenant`` (name) and whatever live data the caller
supplies (``session.theme``…). A missing variable renders empty at send time; saving a
template renders it against a sample context, which checks its syntax and field limits.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from jinja2 import ChainableUndefined, TemplateError, meta
from jinja2.sandbox import SandboxedEnvironment

_env = SandboxedEnvironment(autoescape=False, undefined=ChainableUndefined)
# No globals (range, dict, lipsum, cycler, joiner, namespace): a message is text around the
# caller's fields, and every render copies the globals into its context (half the cost of
# rendering one recipient's field in a fan-out).
_env.globals.clear()

# Mini-program subscribe message value limits by field kind (the key's letters: "thing1" →
# thing). Characters, per WeChat's subscribeMessage.send documentation.
SUBSCRIBE_LIMITS = {
    "thing": 20,
    "character_string": 32,
    "phrase": 5,
    "name": 10,
    "number": 32,
    "letter": 32,
    "symbol": 5,
    "car_number": 8,
    "amount": 32,
    "phone_number": 17,
    "time": 64,
    "date": 64,
}
ROBOT_TEXT_BYTES = 2048
ROBOT_MARKDOWN_BYTES = 4096
OA_VALUE_CHARS = 200

SAMPLE_CONTEXT: dict[str, Any] = {
    "member": {"id": 1, "nickname": "小鱼", "tags": ["上海-干皮"]},
    "tenant": {"name": "所有女生"},
    "session": {
        "theme": "双11美妆专场",
        "start_time": "19:30",
        "taobao_password": "￥MDGGba1MLQh￥",
    },
}


class RenderError(ValueError):
    pass


@lru_cache(maxsize=512)
def _compiled(source: str) -> Any:
    try:
        return _env.from_string(source)
    except TemplateError as err:
        raise RenderError(str(err)) from None


def check(source: str) -> None:
    """Raise RenderError if ``source`` is not a valid template."""
    _compiled(source)


@lru_cache(maxsize=512)
def variables(source: str) -> frozenset[str]:
    """The top-level names ``source`` reads (``{{ session.theme }}`` reads ``session``)."""
    if "{" not in source:
        return frozenset()
    try:
        return frozenset(meta.find_undeclared_variables(_env.parse(source)))
    except TemplateError as err:
        raise RenderError(str(err)) from None


def render(source: str, context: dict[str, Any]) -> str:
    if "{" not in source:  # most fields are plain text: skip Jinja
        return source
    try:
        return str(_compiled(source).render(context))
    except TemplateError as err:  # includes SecurityError from the sandbox
        raise RenderError(str(err)) from None


def field_kind(key: str) -> str:
    return key.rstrip("0123456789")


def subscribe_value(key: str, value: str) -> str:
    """A value cut to its field's limit (WeChat refuses a longer one with 47003)."""
    limit = SUBSCRIBE_LIMITS.get(field_kind(key))
    if limit is not None and len(value) > limit:
        return value[: limit - 1] + "…"
    return value


def limit_problems(
    *,
    title: str,
    body: str,
    robot_format: str,
    subscribe: dict[str, Any] | None,
    oa_template: dict[str, Any] | None,
    context: dict[str, Any] | None = None,
) -> list[tuple[str, str]]:
    """(field, problem) for every limit a template breaks when rendered with ``context``."""
    ctx = context or SAMPLE_CONTEXT
    out: list[tuple[str, str]] = []
    text = render(body, ctx)
    limit = ROBOT_MARKDOWN_BYTES if robot_format == "markdown" else ROBOT_TEXT_BYTES
    if len(text.encode()) > limit:
        out.append(("body", f"robot {robot_format} is limited to {limit} bytes"))
    if len(render(title, ctx)) > 200:
        out.append(("title", "at most 200 characters"))
    for key, source in ((subscribe or {}).get("data") or {}).items():
        kind_limit = SUBSCRIBE_LIMITS.get(field_kind(key))
        if kind_limit is None:
            out.append((f"subscribe.data.{key}", "unknown subscribe-message field kind"))
            continue
        if len(render(str(source), ctx)) > kind_limit:
            out.append((f"subscribe.data.{key}", f"at most {kind_limit} characters"))
    for key, source in ((oa_template or {}).get("data") or {}).items():
        if len(render(str(source), ctx)) > OA_VALUE_CHARS:
            out.append((f"oa_template.data.{key}", f"at most {OA_VALUE_CHARS} characters"))
    return out
