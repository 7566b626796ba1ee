"""The method base: the score contract, test-time collection, and the hand-off to the one evaluation path.

A method implements `score(batch) -> (image_scores [B], score_map [B, 1, H, W])`, higher = more anomalous, the map at
the input's size; optionally `reconstruct(images)` for the pictures. Training is the method's own business.
"""

from __future__ import annotations

from typing import ClassVar

import pytorch_lightning as pl
import torch
from pytorch_lightning.loggers import TensorBoardLogger

from adrun import visual
from adrun.calibration import decision_threshold
from adrun.evaluation import TestOutputs, compute_metrics, unit_ranks
from adrun.methods.losses import check_finite

EXTREMES = 8  # the test grid shows this many most and as many least anomalous samples
VARIANT = "variant:"  # the prefix of a score variant's column while a test pass collects


class AnomalyModule(pl.LightningModule):
    trainer_overrides: ClassVar[dict] = {}  # Trainer arguments a method needs (e.g. {"inference_mode": False})
    # Kept in every checkpoint beside the weights (adrun.calibration, adrun.cli): the calibrated threshold, and the
    # run's resolved config, from which mode=test and mode=predict rebuild the method and the preprocessing.
    calibration: dict | None = None
    run_config: dict | None = None
    threshold_override: float | None = None  # `threshold=`: replaces the calibrated threshold

    @property
    def threshold(self) -> float | None:
        """What the test pass's rates and predict's decisions use: `threshold=` if given, else the calibrated one."""
        return decision_threshold(self.calibration, self.threshold_override)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["adrun"] = {"calibration": self.calibration, "config": self.run_config}

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        saved = checkpoint.get("adrun", {})
        self.calibration, self.run_config = saved.get("calibration"), saved.get("config")

    def predict_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> tuple[torch.Tensor, torch.Tensor]:
        scores, maps = self.score(batch)
        return scores.float().cpu(), maps.float().cpu()

    def score(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def score_with_variants(
        self, batch: dict[str, torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        """`score(batch)` and other image scores the method reports beside it, by name (OGNet's phase-1 D); each is
        evaluated by its image AUROC (`image_auroc_<name>`) and written to scores.csv (`score_<name>`)."""
        return *self.score(batch), {}

    def method_notes(self) -> dict:
        """Facts about how this run's model came to be that results.json should keep (e.g. how a teacher trained)."""
        return {}

    def reconstruct(self, images: torch.Tensor) -> torch.Tensor | None:
        """The method's reconstruction of `images`, where it has one (shown beside the score map)."""
        return None

    def log(self, name: str, value, *args, **kwargs) -> None:
        """Lightning's `log`, and during training a stop at the first non-finite loss term (every method logs its
        terms; `log_dict` comes through here too)."""
        if self._trainer is not None and self.trainer.training and torch.is_tensor(value) and not self._in_log_dict:
            self.check_finite({name: value})
        super().log(name, value, *args, **kwargs)

    _in_log_dict = False

    def log_dict(self, dictionary, *args, **kwargs) -> None:
        if self._trainer is not None and self.trainer.training:
            self.check_finite(dictionary)  # one check (one device sync) for all the terms, before each is logged
        self._in_log_dict = True
        try:
            super().log_dict(dictionary, *args, **kwargs)
        finally:
            self._in_log_dict = False

    def check_finite(self, terms: dict) -> None:
        epoch_loop = self.trainer.fit_loop.epoch_loop
        check_finite(terms, f"at epoch {self.current_epoch}, batch {epoch_loop.batch_idx}")

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        scores, _ = self.score(batch)
        self.log("val/score_mean", scores.mean(), batch_size=len(scores))

    def on_test_epoch_start(self) -> None:
        self._collected: list[dict[str, torch.Tensor]] = []

    def test_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        scores, maps, variants = self.score_with_variants(batch)
        row = {"index": batch["index"], "labels": batch["label"], "scores": scores.float()}
        row |= {f"{VARIANT}{name}": values.float() for name, values in variants.items()}
        if self.trainer.datamodule.has_masks:
            row |= {"maps": maps.float(), "masks": batch["mask"]}
        self._collected.append({key: value.detach().cpu() for key, value in row.items()})

    def on_test_epoch_end(self) -> None:
        columns = {key: torch.cat([row[key] for row in self._collected]) for key in self._collected[0]}
        columns = every_rank(columns)
        order = columns["index"].argsort()
        columns = {key: value[order] for key, value in columns.items()}
        first = torch.ones_like(columns["index"], dtype=torch.bool)  # DDP's sampler repeats samples to even out ranks
        first[1:] = columns["index"][1:] != columns["index"][:-1]
        columns = {key: value[first] for key, value in columns.items()}
        variants = {key.removeprefix(VARIANT): columns.pop(key) for key in list(columns) if key.startswith(VARIANT)}
        self.test_outputs = TestOutputs(**columns, variants=variants)
        self._collected = []
        self.test_metrics = compute_metrics(self.test_outputs, self.threshold)
        self.log_dict({f"test/{key}": value for key, value in self.test_metrics.items()}, rank_zero_only=True)
        if isinstance(self.logger, TensorBoardLogger) and self.trainer.is_global_zero:
            self.log_test_figures(self.logger.experiment, self.test_outputs)

    def log_test_figures(self, writer, outputs: TestOutputs) -> None:
        """The most and least anomalous test samples as a grid, and the PR curve."""
        order = outputs.scores.argsort(descending=True)
        per_block = min(EXTREMES, (len(order) + 1) // 2)
        chosen = torch.cat([order[:per_block], order[per_block:][-per_block:]])
        datamodule = self.trainer.datamodule
        batch = datamodule.test_set.__getitems__(outputs.index[chosen].tolist())
        batch = {key: value.to(self.device) for key, value in batch.items()}
        _, maps = self.score(batch)
        masks = batch["mask"] if datamodule.has_masks else None
        reconstructions = self.reconstruct(batch["image"])
        pictures = [None if x is None else x.float().cpu() for x in (batch["image"], reconstructions, maps, masks)]
        grid = visual.extremes_grid(*pictures, per_block)
        writer.add_image("test/most_and_least_anomalous", grid, self.global_step)
        writer.add_pr_curve("test/pr_curve", outputs.labels, unit_ranks(outputs.scores), self.global_step)


def every_rank(columns: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Under DDP, each rank's test columns joined (every rank gets all of them; any backend, any sizes); else as is."""
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return columns
    gathered: list[dict[str, torch.Tensor] | None] = [None] * torch.distributed.get_world_size()
    torch.distributed.all_gather_object(gathered, columns)
    return {key: torch.cat([part[key] for part in gathered]) for key in columns}
