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
    """Times training batches 2..1+TIMED_STEPS and, when all of fit's batches would take over an hour at that rate,
    says so once with the keys that shorten it (the method's epoch keys, the data budget, a GPU)."""

    def __init__(self, shorter: str):
        self.shorter, self.started, self.said = shorter, None, False

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self.said or trainer.current_epoch or not trainer.is_global_zero:
            return
        if batch_idx == 0:
            self.started = time.perf_counter()
        elif batch_idx == TIMED_STEPS and self.started is not None:
            self.said = True
            per_batch = (time.perf_counter() - self.started) / TIMED_STEPS
            total = int(trainer.max_epochs * trainer.num_training_batches)
            if line := long_phase_line("training", per_batch, total, self.shorter):
                log.warning(line)
