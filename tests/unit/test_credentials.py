"""The credential seal: AES-256-GCM under a PBKDF2 key, bound to tenant and row id."""

from __future__ import annotations

import base64
import dataclasses

import pytest

from ashd.credentials import CredentialSealError, Sealed, seal, unseal

MASTER = "operator-master-key"
SECRET = "sk-ant-tenant-secret-123"


def flip(text: str) -> str:
    raw = bytearray(base64.b64decode(text))
    raw[0] ^= 1
    return base64.b64encode(bytes(raw)).decode()


def test_roundtrip_and_nothing_plain_is_stored() -> None:
    sealed = seal(MASTER, SECRET, "t1", "row-1")
    assert unseal(MASTER, sealed, "t1", "row-1") == SECRET
    stored = " ".join(dataclasses.astuple(sealed))
    assert SECRET not in stored and base64.b64encode(SECRET.encode()).decode() not in stored
    assert SECRET not in repr(sealed)


def test_each_seal_uses_a_fresh_salt_and_nonce() -> None:
    a, b = seal(MASTER, SECRET, "t1", "row-1"), seal(MASTER, SECRET, "t1", "row-1")
    assert a.salt != b.salt and a.iv != b.iv and a.encrypted_key != b.encrypted_key


def test_wrong_master_key_fails() -> None:
    sealed = seal(MASTER, SECRET, "t1", "row-1")
    with pytest.raises(CredentialSealError, match="ASH_CREDENTIAL_KEY"):
        unseal("another-key", sealed, "t1", "row-1")


@pytest.mark.parametrize("part", ["encrypted_key", "auth_tag", "iv", "salt"])
def test_tampered_row_fails(part: str) -> None:
    sealed = seal(MASTER, SECRET, "t1", "row-1")
    tampered = dataclasses.replace(sealed, **{part: flip(getattr(sealed, part))})
    with pytest.raises(CredentialSealError):
        unseal(MASTER, tampered, "t1", "row-1")


@pytest.mark.parametrize(("tenant", "row"), [("t2", "row-1"), ("t1", "row-2"), ("t1r", "ow-1")])
def test_associated_data_mismatch_fails(tenant: str, row: str) -> None:
    sealed = seal(MASTER, SECRET, "t1", "row-1")
    with pytest.raises(CredentialSealError):
        unseal(MASTER, sealed, tenant, row)


def test_malformed_or_missing_key_is_a_seal_error() -> None:
    with pytest.raises(CredentialSealError):
        seal("", SECRET, "t1", "row-1")
    with pytest.raises(CredentialSealError, match="malformed"):
        unseal(MASTER, Sealed("not base64!", "x", "y", "z"), "t1", "row-1")
