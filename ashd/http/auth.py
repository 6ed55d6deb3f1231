"""API keys: generation, hashing, bootstrap, and the per-request check (Ash's rules).

Keys are ``ash_`` + 24 random bytes (base64url). Only hashes are stored: HMAC-SHA256 with
``ASH_CREDENTIAL_KEY`` when set, plain SHA-256 otherwise (and as the legacy lookup).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from ashd.config import AuthConfig
from ashd.errors import NotFound, Unauthorized
from ashd.http import scopes
from ashd.store import Store

log = logging.getLogger(__name__)

DEFAULT_TENANT = "default"
PUBLIC_PATHS = ("/health", "/health/live", "/health/ready", "/favicon.ico", "/openapi.json", "/docs")


KEY_PREFIX_CHARS = 8  # "ash_" and 4 random characters: 24 of a key's 192 random bits
KEY_PREFIX_MIN_LEN = 32  # a shorter key (an operator's ASH_API_KEY) gets no prefix shown


def new_key() -> str:
    return "ash_" + secrets.token_urlsafe(24)


def key_prefix(key: str) -> str | None:
    """The first characters of ``key`` that listings show (``keyPrefix``), so a key can be
    recognised; None when the key is too short for that to leave enough of it secret."""
    return key[:KEY_PREFIX_CHARS] if len(key) >= KEY_PREFIX_MIN_LEN else None


@dataclass(frozen=True)
class Principal:
    """Who is asking: a tenant, through one key (``"env"``: ASH_API_KEY) with its scopes."""

    tenant_id: str
    key_id: str
    scopes: frozenset[str] = frozenset()


class KeyHasher:
    def __init__(self, config: AuthConfig) -> None:
        self._secret = config.credential_key.reveal().encode()
        self._env_key = config.api_key.reveal()

    def hashes(self, key: str) -> list[str]:
        """Hashes to look up, preferred first."""
        plain = hashlib.sha256(key.encode()).hexdigest()
        if not self._secret:
            return [plain]
        return [hmac.new(self._secret, key.encode(), hashlib.sha256).hexdigest(), plain]

    def authenticate(self, header: str | None, store: Store) -> Principal:
        """Resolve an Authorization header to a principal. Blocking (store read)."""
        if not header:
            raise Unauthorized("Missing Authorization header")
        scheme, _, key = header.partition(" ")
        if scheme != "Bearer" or not key or " " in key:
            raise Unauthorized("Invalid Authorization header format; expected 'Bearer <api key>'")
        for digest in self.hashes(key):
            row = store.find_api_key(digest)
            if row is not None:
                return Principal(row.tenant_id, row.id, scopes.parse(row.scopes))
        if self._env_key and hmac.compare_digest(key.encode(), self._env_key.encode()):
            return Principal(DEFAULT_TENANT, "env", scopes.OPERATOR)
        raise Unauthorized("Invalid API key")


def check_internal_secret(header: str | None, secret: str) -> None:
    """Guard of ``/api/internal/*`` (any thread, no I/O).

    Fails closed: with no secret configured the routes do not exist (404 saying why).
    Otherwise the header must be exactly ``Bearer <secret>`` (constant-time compare), else 401.
    """
    if not secret:
        raise NotFound("Internal routes are disabled: set ASH_INTERNAL_SECRET (auth.internal_secret) "
                       "to enable /api/internal/*")
    scheme, _, given = (header or "").partition(" ")
    if scheme != "Bearer" or not hmac.compare_digest(given.encode(), secret.encode()):
        raise Unauthorized("Invalid or missing internal secret; send 'Authorization: Bearer <ASH_INTERNAL_SECRET>'")


def bootstrap_key(store: Store, hasher: KeyHasher, key_file: Path, env_key_set: bool) -> Path | None:
    """On first start, mint a key for the default tenant and write it to ``key_file`` (0600).

    It is the operator's key (whoever can read the data dir is the operator): admin and the
    operator grants (``scopes.OPERATOR``), like ``ASH_API_KEY``. Returns the file written, or
    None when a key already exists or ASH_API_KEY is set.
    """
    if env_key_set:
        return None
    if store.count_api_keys(DEFAULT_TENANT) > 0:
        _upgrade_bootstrap_key(store, hasher, key_file)
        return None
    key = new_key()
    granted = " ".join(scopes.render(scopes.OPERATOR))
    store.add_api_key(DEFAULT_TENANT, hasher.hashes(key)[0], "auto-generated", granted, key_prefix(key))
    fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(key + "\n")
    os.chmod(key_file, 0o600)
    return key_file


def _upgrade_bootstrap_key(store: Store, hasher: KeyHasher, key_file: Path) -> None:
    """A bootstrap key written by an older ashd holds ``admin`` only; it is still the
    operator's (it sits in the 0600 file of the data dir), so it gets the operator grants,
    and its ``keyPrefix`` if it was minted before prefixes were stored."""
    try:
        key = key_file.read_text().strip()
    except OSError:
        return  # no file (deleted by the operator): nothing to recognise
    row = next((r for h in hasher.hashes(key) if (r := store.find_api_key(h)) is not None), None)
    if row is None or row.tenant_id != DEFAULT_TENANT:
        return
    prefix = key_prefix(key)
    if row.key_prefix is None and prefix is not None:
        store.set_api_key_prefix(row.id, prefix)
    held = scopes.parse(row.scopes)
    if not scopes.OPERATOR <= held:
        store.set_api_key_scopes(row.id, " ".join(scopes.render(held | scopes.OPERATOR)))
        log.info("the bootstrap API key in %s now also holds the operator grants (%s)",
                 key_file, ", ".join(sorted(scopes.OPERATOR - held)))
