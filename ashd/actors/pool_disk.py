"""The pool's disk admission (issue #18): a sandbox whose workspace image is still to be made
is admitted against the data disk first (:class:`~ashd.sandbox.admission.DiskLedger`), with
every quota promised or held by an image not made yet counted as taken. Only the pool actor
uses it (its thread): the one place that admits, so two creates never pass on the same space.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from ashd.sandbox.admission import MIB, DiskLedger
from ashd.sandbox.launcher import SandboxSpec
from ashd.sandbox.quota import IMAGE_NAME


class PoolDisk:
    def __init__(self, ledger: DiskLedger | None, default_mb: int) -> None:
        """``ledger``: None when the launcher makes no workspace images (nothing to admit);
        ``default_mb``: the quota of a sandbox whose policy sets none."""
        self._ledger = ledger
        self._default_mb = default_mb
        # Quotas admitted before their start ran (a create whose start queues): sandbox id ->
        # bytes, held until the start is over (see promise).
        self._promised: dict[str, int] = {}

    def promise(self, sandbox_id: str, root: Path, disk_mb: int, live: Mapping[str, SandboxSpec]) -> None:
        """Admit a start's image before the start queues, holding its quota (``disk_mb``, 0:
        the default) as pending until :meth:`forget`. No-op when no image is to be made.
        Raises InsufficientStorage."""
        if self._ledger is None or (root / IMAGE_NAME).exists():
            return
        quota_mb = disk_mb or self._default_mb
        self._ledger.admit(sandbox_id, quota_mb, self._pending(sandbox_id, live), live.keys())
        self._promised[sandbox_id] = quota_mb * MIB

    def forget(self, sandbox_id: str) -> None:
        """The start that held a promise is over: its image is made (and measured from now on),
        or it never will be (failed, refused, cancelled)."""
        self._promised.pop(sandbox_id, None)

    def admit(self, spec: SandboxSpec, live: Mapping[str, SandboxSpec]) -> None:
        """Admit ``spec``'s image unless it exists or was promised. Raises InsufficientStorage."""
        if self._ledger is None or has_image(spec) or spec.sandbox_id in self._promised:
            return
        self._ledger.admit(spec.sandbox_id, self._quota_mb(spec), self._pending(spec.sandbox_id, live), live.keys())

    def _pending(self, besides: str, live: Mapping[str, SandboxSpec]) -> dict[str, int]:
        """Quotas promised but not made yet, but ``besides``'s own: starts that hold a promise,
        and live sandboxes whose image is not made yet (they hold their whole quota)."""
        pending = dict(self._promised)
        pending.update({sid: self._quota_mb(spec) * MIB for sid, spec in live.items() if not has_image(spec)})
        pending.pop(besides, None)
        return pending

    def _quota_mb(self, spec: SandboxSpec) -> int:
        return spec.policy.limits.disk_mb or self._default_mb


def has_image(spec: SandboxSpec) -> bool:
    return (spec.root / IMAGE_NAME).exists()
