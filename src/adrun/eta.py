"""Long work says how long: a one-line estimate when a phase will take more than an hour on this device, from a short
timing of its first steps, naming the keys that shorten it; and `LongRunWarning`, which does it for a whole fit."""

from __future__ import annotations

import logging
import time

from pytorch_lightning import Callback

LONG_S = 3600.0  # a phase estimated longer than this gets its line
TIMED_STEPS = 5  # steps timed after the first (which pays for warm-up) before estimating

log = logging.getLogger("adrun")


def duration(seconds: float) -> str:
    return f"{seconds / 3600:.1f} h" if seconds >= 3600 else f"{seconds / 60:.0f} min"


def long_phase_line(what: str, seconds_per_step: float, steps: int, shorter: str) -> str | None:
    """The line for `steps` at `seconds_per_step`, or None when it fits in an hour."""
    total = seconds_per_step * steps
    if total <= LONG_S:
        return None
    return (
        f"{what} will take about {duration(total)} on this device ({seconds_per_step:.2f} s/step × {steps:,} steps); "
        f"{shorter}"
    )


class LongRunWarning(Callback):
    """Times batches 2..1+TIMED_STEPS of training and of the test pass and, when all of that phase's batches would take
    over an hour at that rate, says so once with the keys that shorten it (the method's epoch keys, the data budget, a
    GPU; for the test pass, e.g. AnoGAN's latent search, the test budget and the method's per-image work)."""

    def __init__(self, shorter: str, shorter_test: str = ""):
        self.shorter = {"training": shorter, "the test pass": shorter_test or shorter}
        self.started: dict[str, float] = {}
        self.said: set[str] = set()

    def _time(self, phase: str, batch_idx: int, batches: int) -> None:
        if phase in self.said:
            return
        if batch_idx == 0:
            self.started[phase] = time.perf_counter()
        elif batch_idx == TIMED_STEPS and phase in self.started:
            self.said.add(phase)
            per_batch = (time.perf_counter() - self.started[phase]) / TIMED_STEPS
            if line := long_phase_line(phase, per_batch, batches, self.shorter[phase]):
                log.warning(line)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.current_epoch == 0 and trainer.is_global_zero:
            self._time("training", batch_idx, int(trainer.max_epochs * trainer.num_training_batches))

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        if trainer.is_global_zero:
            self._time("the test pass", batch_idx, int(sum(trainer.num_test_batches)))
