"""Routing with included routers skipped by their routes' literal heads (core/web.py)."""

from __future__ import annotations

from fastapi.routing import APIRoute
from starlette.routing import Match

from siyu.core.web import _SkippingIncludedRouter


def test_every_api_route_is_found_and_other_paths_still_answer_404_and_405(app, client):
    skipping = [r for r in app.router.routes if isinstance(r, _SkippingIncludedRouter)]
    assert len(skipping) >= 10  # every domain's router takes the fast path
    # Each route's own path (parameters filled) still matches fully, through the skips.
    for node in skipping:
        for ctx in node.effective_candidates():
            route = getattr(ctx, "original_route", None)
            if not isinstance(route, APIRoute):
                continue
            path = route.path_format.replace("{", "").replace("}", "")
            path = "/".join("1" if part.endswith("_id") else part for part in path.split("/"))
            scope = {
                "type": "http",
                "path": path,
                "root_path": "",
                "method": sorted(route.methods)[0],
            }
            assert any(r.matches(dict(scope))[0] is Match.FULL for r in app.router.routes), (
                route.path
            )

    missing = client.get("/api/v1/no-such-thing")
    assert missing.status_code == 404
    assert missing.headers["content-type"].startswith("application/problem+json")
    wrong_method = client.delete("/api/v1/me/checkins")  # a route of an included router
    assert wrong_method.status_code == 405
