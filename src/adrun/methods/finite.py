"""A run stops at its first non-finite loss term, naming the term and the step (adrun.methods.losses.check_finite),
without a device sync in every training step (issue 17).

On the CPU every logged set of terms is checked at once: reading a CPU tensor is no sync, and nothing changes. On an
accelerator each set is reduced on the device to one "all finite" flag and queued; `flush` reads the queue with one
sync, then raises for the first set that was not finite — the same term, value and step the immediate check names.
The module flushes every `trainer.log_every_n_steps` training batches (when Lightning reads the logged values for the
logger anyway), at each training epoch's end, and before any checkpoint is written: the error comes at most
`log_every_n_steps − 1` batches late, and no checkpoint is ever written after a non-finite step.
"""

from __future__ import annotations

import torch

from adrun.methods.losses import check_finite


class FiniteChecks:
    def __init__(self) -> None:
        self.pending: list[tuple[torch.Tensor, dict[str, torch.Tensor], str]] = []

    def add(self, terms: dict, where: str) -> None:
        """Check `terms` now (CPU) or queue the check (any other device)."""
        tensors = {name: value.detach() for name, value in terms.items() if torch.is_tensor(value)}
        if not tensors or not self.defers(next(iter(tensors.values())).device):
            check_finite(terms, where)
            return
        finite = torch.cat([value.float().reshape(-1) for value in tensors.values()]).isfinite().all()
        self.pending.append((finite, tensors, where))

    @staticmethod
    def defers(device: torch.device) -> bool:
        """Whether checks on this device are queued: anywhere but on the CPU."""
        return device.type != "cpu"

    def flush(self) -> None:
        """Raise for the first queued set that was not finite (one device sync); forget the queue either way."""
        pending, self.pending = self.pending, []
        if not pending:
            return
        finite = torch.stack([flag for flag, _, _ in pending])
        if finite.all():
            return
        _, terms, where = pending[int((~finite).nonzero()[0])]
        check_finite(terms, where)
