"""Throughput as a user feels it: training images/s over the training loop itself (loading and stepping, without the
validation passes between epochs), test images/s over the whole test pass. And `best_seconds` for the benchmarks."""

import time
from collections.abc import Callable

import pytorch_lightning as pl


def best_seconds(fn: Callable[[], object], repeats: int = 3, warmup: bool = False) -> float:
    """The fastest of `repeats` timed calls of `fn` (noise only ever slows a run down), after one untimed call if
    `warmup`."""
    if warmup:
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


class Timer(pl.Callback):
    def __init__(self):
        self.train_seconds = self.test_seconds = 0.0
        self.train_images = self.test_images = 0
        self._train_start: float | None = None

    def on_train_epoch_start(self, trainer, module) -> None:
        self._train_start = time.perf_counter()

    def _stop_train_clock(self) -> None:
        if self._train_start is not None:
            self.train_seconds += time.perf_counter() - self._train_start
            self._train_start = None

    def on_validation_start(self, trainer, module) -> None:
        self._stop_train_clock()

    def on_train_epoch_end(self, trainer, module) -> None:
        self._stop_train_clock()

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        self.train_images += len(batch["image"])

    def on_test_epoch_start(self, trainer, module) -> None:
        self._test_start = time.perf_counter()

    def on_test_batch_end(self, trainer, module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        self.test_images += len(batch["image"])

    def on_test_epoch_end(self, trainer, module) -> None:
        self.test_seconds += time.perf_counter() - self._test_start

    def rates(self) -> dict[str, float]:
        return {
            "train_images_per_s": self.train_images / self.train_seconds if self.train_seconds else 0.0,
            "test_images_per_s": self.test_images / self.test_seconds if self.test_seconds else 0.0,
        }
