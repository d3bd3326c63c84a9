"""House rules that hold across the code base (STYLE.md): one commit point, tenant_id on
every table, every API route documented with its problem responses."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from siyu.core.db import Base
from siyu.models import import_all
from tests.core.routes import PUBLIC_API, api_routes

SRC = Path(__file__).resolve().parents[2] / "src" / "siyu"
PROBLEM = "application/problem+json"


@pytest.fixture
def doc(client) -> dict:
    """The OpenAPI document as served."""
    resp = client.get("/api/v1/openapi.json")
    assert resp.status_code == 200
    return resp.json()


def operations(doc: dict) -> dict[tuple[str, str], dict]:
    return {
        (method.upper(), path): op
        for path, ops in doc["paths"].items()
        for method, op in ops.items()
    }


def protected_api(app) -> list[tuple[str, str]]:
    return sorted(k for k in api_routes(app) if k not in PUBLIC_API)


def test_only_core_commits():
    offenders = [
        f"{path.relative_to(SRC)}:{n}"
        for path in sorted(SRC.rglob("*.py"))
        if path.relative_to(SRC).parts[0] != "core"
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if re.search(r"\.commit\(", line)
    ]

    assert SRC.is_dir()
    assert offenders == [], "services flush; only core.db/web commit (unit of work)"


def test_every_table_but_tenants_has_tenant_id():
    import_all()
    tables = Base.metadata.sorted_tables

    missing = [t.name for t in tables if t.name != "tenants" and "tenant_id" not in t.c]

    assert len(tables) > 5
    assert missing == []
    for table in tables:
        if table.name != "tenants":
            assert not table.c.tenant_id.nullable, f"{table.name}.tenant_id is nullable"
            assert _leads_to_tenants(table), f"{table.name}.tenant_id does not reference tenants"


def _leads_to_tenants(table) -> bool:
    """``tenant_id`` references ``tenants.id``, alone or, in a composite key such as
    (tenant_id, member_id) → members(tenant_id, id), through a parent's own tenant_id that
    does: a row's tenant always exists, and a composite key also ties the row to a parent of
    the same tenant."""
    if table.name == "tenants":
        return True
    for fk in table.c.tenant_id.foreign_keys:
        if fk.column.table.name == "tenants" and fk.column.name == "id":
            return True
        if fk.column.name == "tenant_id" and len(fk.constraint.elements) > 1:
            return _leads_to_tenants(fk.column.table)
    return False


def test_openapi_document_has_problem_schema(doc):
    assert doc["openapi"].startswith("3.")
    assert set(doc["components"]["schemas"]["Problem"]["required"]) == {
        "type",
        "title",
        "status",
        "code",
    }


def test_every_api_route_is_in_openapi(app, doc):
    routes = sorted(api_routes(app))

    assert routes
    assert [k for k in routes if k not in operations(doc)] == []


def test_every_documented_operation_is_a_real_route(app, doc):
    served = set(api_routes(app))

    assert [k for k in operations(doc) if k[1].startswith("/api/v1/") and k not in served] == []


def problem_statuses(op: dict) -> set[int]:
    return {
        int(status)
        for status, resp in op["responses"].items()
        if status.isdigit() and PROBLEM in resp.get("content", {})
    }


def test_every_protected_api_route_documents_a_problem_response(app, doc):
    ops = operations(doc)

    assert [k for k in protected_api(app) if not problem_statuses(ops[k])] == []


def test_every_documented_422_is_problem_json(doc):
    wrong = [
        k
        for k, op in operations(doc).items()
        if k[1].startswith("/api/v1/")
        and "422" in op["responses"]
        and 422 not in problem_statuses(op)
    ]

    assert wrong == []


def test_every_protected_api_route_documents_401(app, doc):
    ops = operations(doc)

    assert [k for k in protected_api(app) if 401 not in problem_statuses(ops[k])] == []


def test_every_operator_api_route_documents_403(app, doc):
    ops = operations(doc)
    operator_routes = [
        k
        for k in protected_api(app)
        if not (k[1] == "/api/v1/me" or k[1].startswith(("/api/v1/me/", "/api/v1/platform/")))
    ]

    assert operator_routes
    assert [k for k in operator_routes if 403 not in problem_statuses(ops[k])] == []


def test_problem_responses_reference_the_problem_schema(doc):
    for key, op in operations(doc).items():
        for status, resp in op["responses"].items():
            content = resp.get("content", {})
            if PROBLEM in content:
                assert content[PROBLEM]["schema"] == {"$ref": "#/components/schemas/Problem"}, (
                    key,
                    status,
                )
