"""Sealing upstream model credentials at rest (pure; no I/O, no threads).

AES-256-GCM with a key derived per row by PBKDF2-HMAC-SHA256 (100 000 iterations, a random
16-byte salt per row) from the operator's ``ASH_CREDENTIAL_KEY``. The associated data binds
the ciphertext to its tenant and row id: a row copied to another tenant (or another id)
does not decrypt. Every part is stored base64-encoded in its own column, like Ash's
``encrypted_key, iv, auth_tag, salt``.
"""

from __future__ import annotations

import base64
import binascii
import os
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.pbkdf2 import PBKDF2HMAC

CREDENTIAL_TYPES = ("anthropic", "openai", "bedrock", "custom")
PBKDF2_ITERATIONS = 100_000
SALT_BYTES = 16
IV_BYTES = 12
TAG_BYTES = 16


class CredentialSealError(Exception):
    """The credential cannot be opened: wrong master key, tampered row, or another tenant's/id's
    associated data. Deliberately says no more than that."""


@dataclass(frozen=True)
class Sealed:
    """The stored form (all base64): ciphertext without its tag, nonce, GCM tag, PBKDF2 salt."""

    encrypted_key: str
    iv: str
    auth_tag: str
    salt: str

    def __repr__(self) -> str:
        return "Sealed(...)"


def _derive(master: str, salt: bytes) -> bytes:
    if not master:
        raise CredentialSealError("no credential key (ASH_CREDENTIAL_KEY) is configured")
    kdf = PBKDF2HMAC(algorithm=hashes.SHA256(), length=32, salt=salt, iterations=PBKDF2_ITERATIONS)
    return kdf.derive(master.encode())


def _aad(tenant_id: str, row_id: str) -> bytes:
    # Length-prefixed so ("ab", "c") and ("a", "bc") differ.
    return f"ashd-credential:v1:{len(tenant_id)}:{tenant_id}:{row_id}".encode()


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise CredentialSealError("the stored credential is malformed") from None


def seal(master: str, secret: str, tenant_id: str, row_id: str) -> Sealed:
    """Encrypt ``secret`` for the row (tenant_id, row_id). CPU-bound (~PBKDF2), does not block on I/O.

    Raises CredentialSealError if ``master`` is empty.
    """
    salt, iv = os.urandom(SALT_BYTES), os.urandom(IV_BYTES)
    out = AESGCM(_derive(master, salt)).encrypt(iv, secret.encode(), _aad(tenant_id, row_id))
    return Sealed(_b64(out[:-TAG_BYTES]), _b64(iv), _b64(out[-TAG_BYTES:]), _b64(salt))


def unseal(master: str, sealed: Sealed, tenant_id: str, row_id: str) -> str:
    """The plaintext secret. Raises CredentialSealError (wrong key, tampering, AAD mismatch)."""
    key = _derive(master, _unb64(sealed.salt))
    data = _unb64(sealed.encrypted_key) + _unb64(sealed.auth_tag)
    try:
        plain = AESGCM(key).decrypt(_unb64(sealed.iv), data, _aad(tenant_id, row_id))
    except (InvalidTag, ValueError):
        raise CredentialSealError("the credential does not decrypt: wrong ASH_CREDENTIAL_KEY, "
                                  "or the stored row was altered") from None
    return plain.decode()
