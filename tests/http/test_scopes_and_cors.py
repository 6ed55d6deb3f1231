"""Scopes (admin ⊃ write ⊃ read, what each route needs) and the CORS policy: pure logic."""

from __future__ import annotations

import pytest

from ashd.errors import BadRequest, Forbidden, NotFound, Unauthorized
from ashd.http import scopes
from ashd.http.auth import check_internal_secret, key_prefix, new_key
from ashd.http.cors import CorsPolicy

R, W, A = frozenset({"read"}), frozenset({"write"}), frozenset({"admin"})


def test_admin_implies_write_implies_read() -> None:
    assert scopes.grants(A, "write") and scopes.grants(A, "read") and scopes.grants(W, "read")
    assert not scopes.grants(R, "write") and not scopes.grants(W, "admin") and not scopes.grants(frozenset(), "read")
    assert scopes.parse("read  write bogus") == {"read", "write"}
    assert scopes.render({"read", "admin", "write"}) == ["admin", "write", "read"]


def test_default_needs_and_declared_needs() -> None:
    assert [scopes.required(None, m) for m in ("GET", "HEAD", "POST", "PATCH", "DELETE", "PUT")] == [
        "read", "read", "write", "write", "write", "write"]
    assert scopes.required("admin", "GET") == "admin"
    declared = {"GET": "read", "POST": "admin"}
    assert (scopes.required(declared, "POST"), scopes.required(declared, "DELETE")) == ("admin", "write")


def test_missing_scope_message_names_the_needed_and_held_scopes() -> None:
    with pytest.raises(Forbidden) as info:
        scopes.check(R, "write")
    assert info.value.status == 403
    assert info.value.message == "This API key lacks the 'write' scope (it has: read)"
    scopes.check(A, "admin")


def test_a_key_can_only_grant_scopes_it_has() -> None:
    assert scopes.from_request(None, W) == W
    assert scopes.from_request(["read"], W) == R
    with pytest.raises(Forbidden, match="'admin' asked"):
        scopes.from_request(["read", "admin"], W)
    for bad in ([], "read", ["root"], [1]):
        with pytest.raises(BadRequest):
            scopes.from_request(bad, A)


def test_only_the_operator_grants_deploy_path() -> None:
    operator = scopes.OPERATOR
    assert scopes.parse("admin deploy-path") == operator
    assert scopes.render(operator) == ["admin", "deploy-path"]
    assert scopes.from_request(None, operator) == A  # a tenant's new key never inherits it
    with pytest.raises(Forbidden, match="only by the operator"):
        scopes.from_request(["write", "deploy-path"], operator)
    assert scopes.from_request(["write", "deploy-path"], A, operator=True) == {"write", "deploy-path"}
    with pytest.raises(BadRequest, match="at least one"):
        scopes.from_request(["deploy-path"], A, operator=True)
    assert not scopes.grants(frozenset({"deploy-path"}), "read")


def test_internal_secret_fails_closed() -> None:
    with pytest.raises(NotFound, match="disabled"):
        check_internal_secret("Bearer anything", "")
    with pytest.raises(NotFound):
        check_internal_secret(None, "")
    for header in (None, "", "Bearer wrong", "Basic s3cret", "Bearer  s3cret", "bearer s3cret"):
        with pytest.raises(Unauthorized):
            check_internal_secret(header, "s3cret")
    check_internal_secret("Bearer s3cret", "s3cret")


def test_key_prefix_is_the_first_8_characters_as_ash_lists_them() -> None:
    """Ash lists a key by its first 8 characters (``ash_`` and 4 of its 32 random ones); ashd
    stores the same. An operator's ASH_API_KEY shorter than 32 characters gets none: 8 of,
    say, 12 characters would give most of the operator's key to every admin key's holder."""
    key = new_key()
    assert len(key) == 36 and key.startswith("ash_") and key_prefix(key) == key[:8]
    assert key_prefix("k" * 32) == "k" * 8
    assert key_prefix("short-operator-key") is None


def test_cors_off_by_default_sends_nothing() -> None:
    off = CorsPolicy()
    assert off.headers("https://evil.example") == {} and off.preflight("https://evil.example") == {}


def test_cors_reflects_only_listed_origins() -> None:
    policy = CorsPolicy(frozenset({"https://app.example"}))
    got = policy.headers("https://app.example")
    assert got["Access-Control-Allow-Origin"] == "https://app.example" and "Retry-After" in got[
        "Access-Control-Expose-Headers"]
    assert "Access-Control-Allow-Origin" not in policy.headers("https://evil.example")
    assert policy.headers(None) == {"Vary": "Origin"}
    pre = policy.preflight("https://app.example")
    for header in ("Authorization", "Last-Event-ID", "Content-Type"):
        assert header in pre["Access-Control-Allow-Headers"]
    assert "DELETE" in pre["Access-Control-Allow-Methods"]
    assert policy.preflight("https://evil.example") == {}
