"""What every method shares: the score contract's entry points, the calibrated threshold, non-finite loss checks.

A method implements `score(batch) -> Scores` (adrun.scores: image scores, a map at the input's size, optional
variants and reconstruction; higher = more anomalous) and its own training. Evaluation happens elsewhere, once, for
all methods (adrun.evaluation.Evaluator collects what `test_step` returns). A method declares what it needs rather
than patching the run: `trainer_overrides` (Trainer arguments, e.g. `{"inference_mode": False}` for a search at test
time), `uses_known_anomalies` (labelled anomalies stay in its training set), `trainer_epochs` (phased methods),
`uncompiled` (networks `hardware.compile` must leave plain: one a gradient penalty differentiates twice).
"""

from __future__ import annotations

from typing import ClassVar

import pytorch_lightning as pl
import torch

from adrun.methods.finite import FiniteChecks
from adrun.scores import Scores, check_scores


class AnomalyModule(pl.LightningModule):
    trainer_overrides: ClassVar[dict] = {}
    uses_known_anomalies: bool = False
    uncompiled: tuple[str, ...] = ()  # names of networks hardware.compile leaves plain (torch.compile cannot run them)

    def __init__(self) -> None:
        super().__init__()
        # The decision threshold calibrated on validation normals (adrun.calibration), saved with the weights, and how
        # many normals it rests on (0: not calibrated, no threshold).
        self.register_buffer("threshold", torch.zeros((), dtype=torch.float64))
        self.register_buffer("threshold_normals", torch.zeros((), dtype=torch.long))
        # The range (min, max) of the validation normals' score maps, predict's fixed colour scale; (0, 0): none.
        self.register_buffer("map_scale", torch.zeros(2, dtype=torch.float64))
        self.finite_checks = FiniteChecks()
        self.normals_only_training = False  # set at fit start: whether the training set holds normals only

    @property
    def calibrated_threshold(self) -> float | None:
        return self.threshold.item() if self.threshold_normals > 0 else None

    def score(self, batch: dict[str, torch.Tensor]) -> Scores:
        raise NotImplementedError

    def trainer_epochs(self, batches_per_epoch: int) -> int:
        """The Trainer's max_epochs: `method.epochs`; a phased method adds up its phases."""
        return self.hparams.epochs

    def method_notes(self) -> dict:
        """Facts about how this run's model came to be that results.json should keep (e.g. how a teacher trained)."""
        return {}

    def checked_score(self, batch: dict[str, torch.Tensor]) -> Scores:
        """`score(batch)`, held to the score contract (shapes only: no device sync)."""
        scores = self.score(batch)
        check_scores(scores, batch, type(self).__name__)
        return scores

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        scores = self.checked_score(batch).image
        self.log("val/score_mean", scores.mean(), batch_size=len(scores))

    def test_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> Scores:
        return self.checked_score(batch)

    def predict_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> Scores:
        return self.checked_score(batch).detached()

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        """Checkpoints from before the threshold was a buffer kept it beside the weights; older ones lack map_scale."""
        state, saved = checkpoint["state_dict"], checkpoint.get("adrun", {}).get("calibration") or {}
        state.setdefault("map_scale", torch.zeros(2, dtype=torch.float64))  # checkpoints from before it existed
        if "threshold" not in state:
            value = saved.get("threshold")
            state["threshold"] = torch.tensor(value or 0.0, dtype=torch.float64)
            state["threshold_normals"] = torch.tensor(saved.get("normals", 0) if value is not None else 0)

    def log(self, name: str, value, *args, **kwargs) -> None:
        """Lightning's `log`, and during training a stop at the first non-finite loss term (every method logs its
        terms; `log_dict` comes through here too)."""
        if self._trainer is not None and self.trainer.training and torch.is_tensor(value) and not self._in_log_dict:
            self.check_finite({name: value})
        super().log(name, value, *args, **kwargs)

    _in_log_dict = False

    def log_dict(self, dictionary, *args, **kwargs) -> None:
        if self._trainer is not None and self.trainer.training:
            self.check_finite(dictionary)  # one check for all the terms, before each is logged
        self._in_log_dict = True
        try:
            super().log_dict(dictionary, *args, **kwargs)
        finally:
            self._in_log_dict = False

    def check_finite(self, terms: dict) -> None:
        """At once on the CPU; on an accelerator queued, and read every `log_every_n_steps` batches, at each epoch's
        end and before a checkpoint is written (adrun.methods.finite)."""
        epoch_loop = self.trainer.fit_loop.epoch_loop
        self.finite_checks.add(terms, f"at epoch {self.current_epoch}, batch {epoch_loop.batch_idx}")

    def on_train_batch_end(self, outputs, batch, batch_idx: int) -> None:
        if (batch_idx + 1) % max(self.trainer.log_every_n_steps, 1) == 0:
            self.finite_checks.flush()

    def on_train_epoch_end(self) -> None:
        self.finite_checks.flush()

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        self.finite_checks.flush()

    def on_fit_start(self) -> None:
        datamodule = self.trainer.datamodule
        self.normals_only_training = datamodule is not None and len(datamodule.train_images(label=1)) == 0

    def normal_images(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """The batch's normal images: the whole batch when the training set holds normals only (no boolean mask, so
        no device sync), else those labelled 0."""
        return batch["image"] if self.normals_only_training else batch["image"][batch["label"] == 0]
