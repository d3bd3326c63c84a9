"""One error shape everywhere: every SiyuError has a stable code, and the API answers
problem+json for domain errors, unknown paths, wrong methods and unexpected failures."""

from __future__ import annotations

import importlib
import logging
import pkgutil
import re
import string

import pytest
from fastapi.testclient import TestClient

import siyu
from siyu.core.errors import SiyuError, all_error_classes
from siyu.core.i18n import LazyString
from tests.factories import grant, make_member, make_operator, make_tenant, token_headers

PROBLEM = "application/problem+json"
CODE = re.compile(r"^[a-z][a-z_]*\.[a-z][a-z_]*$")
EN = {"Accept-Language": "en"}


def every_error_class() -> list[type[SiyuError]]:
    """All SiyuError subclasses, after importing every siyu module (errors live anywhere)."""
    for mod in pkgutil.walk_packages(siyu.__path__, "siyu."):
        importlib.import_module(mod.name)
    return sorted(all_error_classes(), key=lambda cls: cls.code)


def sample(cls: type[SiyuError]) -> SiyuError:
    """An instance with every parameter its detail text names."""
    text = (cls.detail or cls.title).message
    names = {field for _, field, _, _ in string.Formatter().parse(text) if field}
    return cls(**{name: f"<{name}>" for name in names})


ERRORS = every_error_class()


def test_error_classes_are_found():
    codes = {cls.code for cls in ERRORS}

    # One from each domain: the walk reaches every errors module.
    assert {"auth.required", "tenant.exists", "member.not_found", "points.insufficient"} <= codes


def test_every_error_code_is_unique():
    seen: dict[str, list[str]] = {}
    for cls in ERRORS:
        seen.setdefault(cls.code, []).append(f"{cls.__module__}.{cls.__qualname__}")

    assert {code: names for code, names in seen.items() if len(names) > 1} == {}


@pytest.mark.parametrize("cls", ERRORS, ids=lambda cls: cls.code)
def test_error_has_domain_reason_code_status_and_own_title(cls):
    assert CODE.match(cls.code) or cls.code == "internal", cls.code
    assert isinstance(cls.status, int)
    assert 400 <= cls.status <= 599
    assert "title" in vars(cls), "a title of its own, not the inherited one"
    assert isinstance(cls.title, LazyString)
    assert cls.title.message.strip()
    assert cls.detail is None or isinstance(cls.detail, LazyString)


@pytest.mark.parametrize("cls", ERRORS, ids=lambda cls: cls.code)
def test_error_renders_documented_problem_shape(app, cls):
    schema = app.openapi()["components"]["schemas"]["Problem"]

    body = sample(cls).problem(instance="/api/v1/x")

    assert set(schema["required"]) <= set(body)
    assert set(body) <= set(schema["properties"])
    assert body["type"] == f"/errors/{cls.code}"
    assert (body["code"], body["status"], body["instance"]) == (cls.code, cls.status, "/api/v1/x")
    assert body["title"]
    assert body["detail"]
    assert "{" not in body["detail"], "every placeholder of the detail is filled"
    assert all(isinstance(v, str) for v in body["params"].values())


def test_problem_body_for_insufficient_points(db, client):
    tenant = make_tenant(db)
    member = make_member(db, tenant)
    grant(db, member, 100)
    headers = token_headers(db, make_operator(db, tenant)) | EN | {"Idempotency-Key": "k1"}
    url = f"/api/v1/members/{member.id}/points/spend"

    resp = client.post(url, headers=headers, json={"points": 500, "reason": "redeem"})

    assert resp.status_code == 409
    assert resp.headers["content-type"] == PROBLEM
    assert resp.json() == {
        "type": "/errors/points.insufficient",
        "title": "Not enough points",
        "status": 409,
        "detail": "100 points available, 500 needed",
        "code": "points.insufficient",
        "params": {"balance": 100, "wanted": 500},
        "instance": url,
    }


def test_invalid_body_is_422_with_field_errors(client):
    resp = client.post("/api/v1/auth/tokens", headers=EN, json={"tenant": "", "username": "x"})

    assert resp.status_code == 422
    assert resp.headers["content-type"] == PROBLEM
    body = resp.json()
    assert body["code"] == "request.invalid"
    assert body["type"] == "/errors/request.invalid"
    by_loc = {tuple(e["loc"]): e for e in body["errors"]}
    assert set(by_loc) == {("body", "tenant"), ("body", "password")}
    assert all(e["msg"] and e["type"] for e in body["errors"])


def test_malformed_json_is_422_not_500(client):
    resp = client.post(
        "/api/v1/auth/tokens", content=b'{"tenant": ', headers={"content-type": "application/json"}
    )

    assert resp.status_code == 422
    assert resp.json()["code"] == "request.invalid"


def test_unknown_api_path_is_problem_404(client):
    resp = client.get("/api/v1/no/such/thing", headers=EN)

    assert resp.status_code == 404
    assert resp.headers["content-type"] == PROBLEM
    body = resp.json()
    assert (body["code"], body["type"], body["status"]) == (
        "resource.not_found",
        "/errors/resource.not_found",
        404,
    )
    assert body["instance"] == "/api/v1/no/such/thing"


def test_unknown_admin_path_is_html_404(client):
    resp = client.get("/admin/no/such/page")

    assert resp.status_code == 404
    assert resp.headers["content-type"].startswith("text/html")


def test_wrong_method_is_problem_405(client):
    resp = client.delete("/api/v1/tenant", headers=EN)

    assert resp.status_code == 405
    assert resp.headers["content-type"] == PROBLEM
    assert resp.json()["code"] == "request.method_not_allowed"
    assert resp.json()["type"] == "/errors/request.method_not_allowed"


def test_wrong_method_names_the_allowed_ones(client):
    resp = client.delete("/api/v1/tenant")

    assert resp.status_code == 405
    assert resp.headers["allow"] == "GET"


@pytest.fixture
def boom_client(caplog):
    """A fresh app with routes that fail unexpectedly (the shared app stays as it is)."""
    from siyu.app import create_app

    app = create_app(start_consumer=False)

    def explode() -> None:
        raise RuntimeError("secret-internal-detail from the database layer")

    app.add_api_route("/api/v1/test-boom", explode)
    app.add_api_route("/admin/test-boom", explode)
    caplog.set_level(logging.ERROR, logger="siyu.web")
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client


def test_unexpected_error_is_500_internal_without_traceback(boom_client, caplog):
    resp = boom_client.get("/api/v1/test-boom", headers=EN | {"X-Request-Id": "req-boom-1"})

    assert resp.status_code == 500
    assert resp.headers["content-type"] == PROBLEM
    body = resp.json()
    assert (body["code"], body["type"], body["status"]) == ("internal", "/errors/internal", 500)
    assert body["params"] == {"request_id": "req-boom-1"}
    assert "req-boom-1" in body["detail"]
    for leak in ("Traceback", "RuntimeError", "secret-internal-detail", ".py"):
        assert leak not in resp.text
    logged = [r for r in caplog.records if r.exc_info]
    assert logged, "the failure is logged with its traceback"
    assert "secret-internal-detail" in str(logged[-1].exc_info[1])


def test_unexpected_error_carries_request_id_header_and_language(boom_client):
    resp = boom_client.get("/api/v1/test-boom", headers=EN | {"X-Request-Id": "req-boom-2"})

    assert resp.status_code == 500
    assert resp.headers.get("x-request-id") == "req-boom-2"
    assert resp.json()["title"] == "Something went wrong"


def test_unexpected_error_on_a_page_is_html_500_without_traceback(boom_client):
    resp = boom_client.get("/admin/test-boom")

    assert resp.status_code == 500
    assert resp.headers["content-type"].startswith("text/html")
    for leak in ("Traceback", "RuntimeError", "secret-internal-detail"):
        assert leak not in resp.text
