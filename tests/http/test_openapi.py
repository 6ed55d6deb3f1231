"""The OpenAPI contract: valid 3.1, one path per route of the table, served with Swagger UI."""

from __future__ import annotations

import re
from typing import cast

import httpx
from openapi_spec_validator import validate

from ashd.http.app import make_app
from ashd.http.context import AppContext
from ashd.http.openapi import openapi_document
from tests.support.daemon import AshdProcess

# Routes of the table that are not API operations: Swagger UI's own files.
NOT_IN_SPEC = {"/docs/static/{}"}
METHODS = {"get", "post", "put", "patch", "delete"}


def route_paths() -> set[str]:
    """The route table's patterns as paths with anonymous ``{}`` parameters."""
    app = make_app(cast(AppContext, object()))
    out = set()
    for rule in app.wildcard_router.rules:
        pattern = rule.matcher.regex.pattern.removesuffix("$")  # type: ignore[attr-defined]
        out.add(re.sub(r"\((?:\[\^/\]\+|\.\*)\)", "{}", pattern))
    return out


def spec_paths() -> set[str]:
    return {re.sub(r"\{[^}]+\}", "{}", path) for path in openapi_document()["paths"]}


def test_document_is_valid_openapi_3_1() -> None:
    doc = openapi_document()
    assert doc["openapi"].startswith("3.1")
    validate(doc)


def test_every_route_is_in_the_spec_and_every_spec_path_is_a_route() -> None:
    routes = route_paths() - NOT_IN_SPEC
    assert "/api/sessions/{}/messages" in routes  # the conversion understood the table
    assert routes - spec_paths() == set(), "routes without an OpenAPI entry"
    assert spec_paths() - routes == set(), "OpenAPI paths that no route serves"


def test_every_operation_documents_its_errors_and_security() -> None:
    doc = openapi_document()
    public = {"/health", "/health/live", "/health/ready", "/openapi.json", "/docs"}
    for path, item in doc["paths"].items():
        for method, op in item.items():
            if method not in METHODS:
                continue
            errors = {code for code in op["responses"] if code[0] in "45"}
            assert "500" in errors, (method, path)
            if path in public:
                assert op["security"] == [], path
            else:
                assert "security" not in op and "401" in errors, (method, path)


def test_a_running_ashd_serves_the_spec_and_swagger_ui_without_a_key(ashd_sqlite: AshdProcess) -> None:
    with httpx.Client(base_url=ashd_sqlite.url, timeout=10) as c:
        spec = c.get("/openapi.json")
        assert spec.status_code == 200
        assert spec.headers["content-type"].startswith("application/json")
        assert spec.json() == openapi_document()
        page = c.get("/docs")
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert "/openapi.json" in page.text
        assets = re.findall(r'(?:src|href)="(/docs/static/[^"]+)"', page.text)
        assert len(assets) == 2 and not re.search(r'(?:src|href)="https?:', page.text)
        for asset in assets:
            got = c.get(asset)
            assert got.status_code == 200 and len(got.content) > 10_000, asset
        assert c.get("/api/agents").status_code == 401  # the API itself still needs a key
        assert c.get("/metrics").status_code == 401
