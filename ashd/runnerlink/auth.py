"""Mutual authentication of a runner link without sending the secret.

Both ends know the internal secret. The runner opens with a fresh nonce; the coordinator
answers with its own nonce and a proof (HMAC-SHA256 of the secret over a role label, the
runner id and both nonces, runner's first); the runner checks it and answers with its proof
over the same values in the other order under the other label. Each side's proof covers the
nonce the *other* side just chose, so a recorded proof is useless on a new connection
(replay), and the labels keep one side's proof from being reflected back as the other's.
Comparisons are constant-time. Pure functions; any thread.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

NONCE_BYTES = 32
COORDINATOR = "ashd-runner-link/coordinator"
RUNNER = "ashd-runner-link/runner"


class AuthFailed(ConnectionError):
    """The peer did not prove that it knows the internal secret (or spoke out of turn)."""


def nonce() -> str:
    return secrets.token_hex(NONCE_BYTES)


def proof(secret: str, role: str, runner_id: str, first: str, second: str) -> str:
    """HMAC over ``role``, ``runner_id`` and two nonces; the fields are length-prefixed so no
    two different tuples hash the same bytes."""
    if not secret:
        raise AuthFailed("no internal secret is configured; the runner link refuses to run without one")
    message = b"".join(len(part.encode()).to_bytes(4, "big") + part.encode()
                       for part in (role, runner_id, first, second))
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def coordinator_proof(secret: str, runner_id: str, runner_nonce: str, coordinator_nonce: str) -> str:
    return proof(secret, COORDINATOR, runner_id, runner_nonce, coordinator_nonce)


def runner_proof(secret: str, runner_id: str, runner_nonce: str, coordinator_nonce: str) -> str:
    return proof(secret, RUNNER, runner_id, coordinator_nonce, runner_nonce)


def check(expected: str, given: object, who: str) -> None:
    """Raise AuthFailed unless ``given`` equals ``expected`` (constant-time)."""
    if not isinstance(given, str) or not hmac.compare_digest(expected.encode(), given.encode()):
        raise AuthFailed(f"the {who} did not prove that it knows the internal secret")


def check_nonce(value: object) -> str:
    if not isinstance(value, str) or len(value) != 2 * NONCE_BYTES:
        raise AuthFailed("the peer sent no valid nonce")
    try:
        bytes.fromhex(value)
    except ValueError:
        raise AuthFailed("the peer sent no valid nonce") from None
    return value
