"""The one evaluation path: the `Evaluator` callback collects every test batch's `Scores`, gathers the DDP ranks, and
computes the metrics (torchmetrics) from scores and labels (and maps and masks); it logs them and the figures.

Test labels enter here and nowhere else: no threshold, normalisation or model choice is fitted on them. "F1 at the
best threshold" is therefore an oracle figure, reported because the papers report it; the EER and the F1 at the
equal-error threshold (OGNet's) likewise.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
from pytorch_lightning import Callback
from scipy import ndimage
from torchmetrics.functional.classification import (
    binary_auroc,
    binary_average_precision,
    binary_precision_recall_curve,
    binary_roc,
)

from adrun import figures, loggers, stats, visual
from adrun.calibration import decision_threshold
from adrun.scores import Scores

PRO_MAX_FPR = 0.3  # AUPRO integrates the per-region overlap up to this false-positive rate (Bergmann et al.)
EXTREMES = 8  # the test grid shows this many most and as many least anomalous samples
VARIANT = "variant:"  # the prefix of a score variant's column while a test pass collects


@dataclass
class TestOutputs:
    """Everything a test pass collected, ordered by sample index."""

    index: torch.Tensor  # long [N]
    labels: torch.Tensor  # long [N]
    scores: torch.Tensor  # float [N]
    maps: torch.Tensor | None = None  # float [N, 1, H, W], kept only where the data have masks
    masks: torch.Tensor | None = None  # float [N, 1, H, W]
    variants: dict[str, torch.Tensor] = field(default_factory=dict)  # other scores the method reports, float [N] each


def unit_ranks(scores: torch.Tensor) -> torch.Tensor:
    """Scores mapped into [0, 1] by their dense rank: order and ties kept exactly, so every ranking metric is unchanged.

    torchmetrics treats scores outside [0, 1] as logits and squashes them with a sigmoid, which turns large anomaly
    scores (say 40 and 90) into the same 1.0 and ties them; ranks in [0, 1] pass through untouched.
    """
    distinct, rank = torch.unique(scores.flatten(), return_inverse=True)
    return rank.double() / max(len(distinct) - 1, 1)


def auroc(ranks: torch.Tensor, target: torch.Tensor) -> float:
    """torchmetrics' AUROC of scores already in [0, 1] (`unit_ranks`), clipped to [0, 1]: its float32 trapezoid can
    overshoot 1 by an ulp on millions of pixels."""
    return min(max(binary_auroc(ranks, target).item(), 0.0), 1.0)


IMAGE_METRICS = ("image_auroc", "image_auroc_ci95_lo", "image_auroc_ci95_hi", "image_ap", "image_f1", "image_eer")
IMAGE_METRICS += ("image_f1_eer",)


def image_metrics(scores: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    """Image AUROC with its 95 % interval (adrun.stats.auroc_interval), average precision, F1 at the best threshold,
    and the equal error rate."""
    if labels.min() == labels.max():
        return dict.fromkeys(IMAGE_METRICS, math.nan)
    low, high = stats.auroc_interval(scores.double().numpy(), labels.numpy())
    scores, labels = unit_ranks(scores), labels.long()
    precision, recall, _ = binary_precision_recall_curve(scores, labels)
    f1 = (2 * precision * recall / (precision + recall)).nan_to_num(0.0)
    fpr, tpr, _ = binary_roc(scores, labels)
    return {
        "image_auroc": auroc(scores, labels),
        "image_auroc_ci95_lo": low,
        "image_auroc_ci95_hi": high,
        "image_ap": binary_average_precision(scores, labels).item(),
        "image_f1": f1.max().item(),
        "image_eer": equal_error_rate(fpr, tpr),
        "image_f1_eer": f1_at_equal_error(fpr, tpr, labels),
    }


def equal_error_rate(fpr: torch.Tensor, tpr: torch.Tensor) -> float:
    """The rate where false positives equal misses (FPR = 1 − TPR), interpolated along the ROC curve."""
    gap = fpr - (1 - tpr)  # rises from −1 to +1 along the curve
    after = int(torch.nonzero(gap >= 0)[0])
    if after == 0 or gap[after] == 0:
        return fpr[after].item()
    t = gap[after - 1] / (gap[after - 1] - gap[after])
    return (fpr[after - 1] + t * (fpr[after] - fpr[after - 1])).item()


def f1_at_equal_error(fpr: torch.Tensor, tpr: torch.Tensor, labels: torch.Tensor) -> float:
    """F1 (anomalies positive) at the ROC point closest to FPR = 1 − TPR: a real threshold, as OGNet's code picks it."""
    at = int((fpr - (1 - tpr)).abs().argmin())
    positives = int(labels.sum())
    tp, fp = tpr[at].item() * positives, fpr[at].item() * (len(labels) - positives)
    return 2 * tp / (2 * tp + fp + (positives - tp))


def aupro(maps: torch.Tensor, masks: torch.Tensor, max_fpr: float = PRO_MAX_FPR) -> float:
    """Area under the per-region-overlap curve up to `max_fpr`, divided by `max_fpr` (1 = perfect).

    Regions are the 8-connected components of each ground-truth mask. At a threshold t, PRO(t) is the mean over all
    regions of the fraction of the region's pixels scoring ≥ t, and FPR(t) the fraction of anomaly-free pixels scoring
    ≥ t. Every distinct score is a threshold: pixels sorted once, both curves are cumulative sums.
    """
    scores = maps.flatten().double()
    region = torch.zeros_like(scores, dtype=torch.long)  # 0 = anomaly-free pixel, r ≥ 1 = region r
    offset, flat_masks = 0, masks.reshape(masks.shape[0], *masks.shape[-2:]).cpu().numpy() > 0.5
    per_image = flat_masks[0].size
    for i, mask in enumerate(flat_masks):
        labelled, n = ndimage.label(mask, structure=np.ones((3, 3)))
        if n:
            ids = torch.from_numpy(labelled.ravel()).long()
            region[i * per_image : (i + 1) * per_image] = torch.where(ids > 0, ids + offset, 0)
            offset += n
    n_normal = int((region == 0).sum())
    if offset == 0 or n_normal == 0:
        return math.nan
    sizes = torch.bincount(region, minlength=offset + 1).double()
    order = torch.argsort(scores, descending=True)
    r = region[order]
    fpr = torch.cumsum((r == 0).double() / n_normal, 0)
    pro = torch.cumsum(torch.where(r > 0, 1.0 / (sizes[r] * offset), 0.0), 0)
    s = scores[order]
    last_of_tie = torch.ones_like(s, dtype=torch.bool)
    last_of_tie[:-1] = s[1:] != s[:-1]
    fpr = torch.cat([fpr.new_zeros(1), fpr[last_of_tie]])
    pro = torch.cat([pro.new_zeros(1), pro[last_of_tie]])
    inside = fpr <= max_fpr
    k = int(inside.sum())  # the curve's points up to max_fpr, then one interpolated at max_fpr
    if k < len(fpr):
        t = (max_fpr - fpr[k - 1]) / (fpr[k] - fpr[k - 1])
        fpr = torch.cat([fpr[:k], fpr.new_tensor([max_fpr])])
        pro = torch.cat([pro[:k], (pro[k - 1] + t * (pro[k] - pro[k - 1])).view(1)])
    return min((torch.trapezoid(pro, fpr) / max_fpr).item(), 1.0)  # cumulative sums can overshoot 1 by an ulp


PIXEL_METRICS = ("pixel_auroc", "pixel_auroc_ci95_lo", "pixel_auroc_ci95_hi", "pixel_aupro")


def pixel_metrics(maps: torch.Tensor, masks: torch.Tensor) -> dict[str, float]:
    """Pixel AUROC over every test pixel with its 95 % interval, the test image the unit (adrun.stats
    .clustered_variance: an image's pixels are not independent draws), and AUPRO up to FPR 0.3."""
    target = (masks.flatten() > 0.5).long()
    if target.min() == target.max():
        return dict.fromkeys(PIXEL_METRICS, math.nan)
    image_of_pixel = torch.arange(len(maps)).repeat_interleave(maps[0].numel())
    low, high = stats.auroc_interval(maps.flatten().double().numpy(), target.numpy(), clusters=image_of_pixel.numpy())
    return {
        "pixel_auroc": auroc(unit_ranks(maps), target),
        "pixel_auroc_ci95_lo": low,
        "pixel_auroc_ci95_hi": high,
        "pixel_aupro": aupro(maps, masks),
    }


def rates_at(scores: torch.Tensor, labels: torch.Tensor, threshold: float | None) -> dict[str, float]:
    """The false- and true-positive rates of calling `score ≥ threshold` anomalous: what a user of that threshold
    lives with (the threshold comes from validation normals, never from these labels)."""
    if threshold is None:
        return dict.fromkeys(("image_fpr_at_threshold", "image_tpr_at_threshold"), math.nan)
    flagged = scores >= threshold
    normal, anomalous = labels == 0, labels == 1
    return {
        "image_fpr_at_threshold": flagged[normal].float().mean().item() if normal.any() else math.nan,
        "image_tpr_at_threshold": flagged[anomalous].float().mean().item() if anomalous.any() else math.nan,
    }


def compute_metrics(outputs: TestOutputs, threshold: float | None = None) -> dict[str, float]:
    metrics = image_metrics(outputs.scores, outputs.labels) | rates_at(outputs.scores, outputs.labels, threshold)
    one_class = outputs.labels.min() == outputs.labels.max()
    for name, scores in outputs.variants.items():
        metrics[f"image_auroc_{name}"] = math.nan if one_class else auroc(unit_ranks(scores), outputs.labels.long())
    if outputs.maps is not None:
        metrics |= pixel_metrics(outputs.maps, outputs.masks)
    return metrics


def auroc_per_type(scores: torch.Tensor, labels: torch.Tensor, types: list[str]) -> dict[str, float]:
    """`image_auroc/<type>`: every test normal against the anomalies of one type (MVTec's defects, a folder's)."""
    out = {}
    for name in dict.fromkeys(t for t, label in zip(types, labels.tolist(), strict=True) if label == 1):
        chosen = torch.tensor([label == 0 or t == name for t, label in zip(types, labels.tolist(), strict=True)])
        if (labels[chosen] == 0).any():
            out[f"image_auroc/{name}"] = auroc(unit_ranks(scores[chosen]), labels[chosen].long())
    return out


class Evaluator(Callback):
    """The test pass's one evaluation, for every method: collects each batch's `Scores` (what `test_step` returns),
    joins the DDP ranks' columns and drops the repeats their sampler adds, computes the metrics at `threshold` (the
    command line's `threshold=`, else the method's calibrated one), logs them as `test/*` and, on rank 0, the grid of
    the most and least anomalous samples and the PR curve. After `trainer.test`, `outputs` and `metrics` hold them."""

    def __init__(self, threshold: float | None = None):
        self.given_threshold = threshold
        self.outputs: TestOutputs | None = None
        self.metrics: dict[str, float] = {}
        self.threshold: float | None = None
        self._rows: list[dict[str, torch.Tensor]] = []

    def on_test_epoch_start(self, trainer, pl_module) -> None:
        self._rows = []

    def on_test_batch_end(self, trainer, pl_module, outputs: Scores, batch, batch_idx, dataloader_idx=0) -> None:
        row = {"index": batch["index"], "labels": batch["label"], "scores": outputs.image.float()}
        row |= {f"{VARIANT}{name}": values.float() for name, values in outputs.variants.items()}
        if trainer.datamodule.has_masks:
            row |= {"maps": outputs.map.float(), "masks": batch["mask"]}
        self._rows.append({key: value.detach().cpu() for key, value in row.items()})

    def on_test_epoch_end(self, trainer, pl_module) -> None:
        columns = {key: torch.cat([row[key] for row in self._rows]) for key in self._rows[0]}
        columns = every_rank(columns)
        order = columns["index"].argsort()
        columns = {key: value[order] for key, value in columns.items()}
        first = torch.ones_like(columns["index"], dtype=torch.bool)  # DDP's sampler repeats samples to even out ranks
        first[1:] = columns["index"][1:] != columns["index"][:-1]
        columns = {key: value[first] for key, value in columns.items()}
        variants = {key.removeprefix(VARIANT): columns.pop(key) for key in list(columns) if key.startswith(VARIANT)}
        self.outputs, self._rows = TestOutputs(**columns, variants=variants), []
        self.threshold = decision_threshold(pl_module, self.given_threshold)
        self.metrics = compute_metrics(self.outputs, self.threshold)
        if getattr(trainer.datamodule, "typed_anomalies", False):
            types = [trainer.datamodule.sample_type(i) for i in self.outputs.index.tolist()]
            self.metrics |= auroc_per_type(self.outputs.scores, self.outputs.labels, types)
        pl_module.log_dict({f"test/{key}": value for key, value in self.metrics.items()}, rank_zero_only=True)
        if trainer.is_global_zero:
            self.log_figures(trainer, pl_module)

    def log_figures(self, trainer, pl_module) -> None:
        """The most and least anomalous test samples as a grid, the PR curve, the score histogram of normals and
        anomalies with the threshold drawn, and the ROC curve with the threshold's operating point: to every logger and
        as PNGs in the run dir (`loggers.log_figure`); TensorBoard also gets its own interactive PR curve."""
        outputs, step = self.outputs, logging_step(trainer)
        order = outputs.scores.argsort(descending=True)
        per_block = min(EXTREMES, (len(order) + 1) // 2)
        chosen = torch.cat([order[:per_block], order[per_block:][-per_block:]])
        datamodule = trainer.datamodule
        batch = {key: value.to(pl_module.device) for key, value in datamodule.test_batch(outputs.index[chosen]).items()}
        scored = pl_module.score(batch).detached()
        masks = batch["mask"].float().cpu() if datamodule.has_masks else None
        pictures = {"input": visual.to_rgb01(batch["image"].float().cpu())}
        if scored.reconstruction is not None:
            pictures["reconstruction"] = visual.to_rgb01(scored.reconstruction.float().cpu())
        pictures["score map"] = scored.map.float().cpu()[:, 0]
        if masks is not None:
            pictures["mask"] = masks.expand(-1, 3, -1, -1)
        pictures = {k: v.numpy() if v.dim() == 3 else v.permute(0, 2, 3, 1).numpy() for k, v in pictures.items()}
        labels = outputs.labels[chosen].numpy()
        grid = figures.extremes_figure(pictures, outputs.scores[chosen].numpy(), labels, self.threshold, per_block)
        loggers.log_figure(trainer, "test/most_and_least_anomalous", grid, step)
        low, span = outputs.scores.min().item(), max(outputs.scores.max().item() - outputs.scores.min().item(), 1e-12)
        loggers.log_pr_curve(trainer, "test/pr_curve", outputs.labels, (outputs.scores - low) / span, step)
        axis = f"threshold t on the PR curve ↔ score {low:.6g} + t · {span:.6g}"
        if self.threshold is not None:
            axis += f"; the calibrated threshold {self.threshold:.6g} is t = {(self.threshold - low) / span:.4f}"
        loggers.log_text(trainer, "test/pr_curve_threshold_axis", axis, step)
        histogram = figures.score_histogram(outputs.scores.numpy(), outputs.labels.numpy(), self.threshold)
        loggers.log_figure(trainer, "test/score_histogram", histogram, step)
        if outputs.labels.min() != outputs.labels.max():
            ranks, labels = unit_ranks(outputs.scores), outputs.labels.long()
            fpr, tpr, _ = binary_roc(ranks, labels)
            point = (self.metrics["image_fpr_at_threshold"], self.metrics["image_tpr_at_threshold"])
            roc = figures.roc_figure(fpr.numpy(), tpr.numpy(), self.metrics["image_auroc"], point)
            loggers.log_figure(trainer, "test/roc_curve", roc, step)
            precision, recall, _ = binary_precision_recall_curve(ranks, labels)
            pr = figures.pr_figure(
                precision.numpy(),
                recall.numpy(),
                self.metrics["image_ap"],
                labels.float().mean().item(),
                precision_at(outputs.scores, labels, self.threshold),
            )
            loggers.log_figure(trainer, "test/precision_recall", pr, step)


def precision_at(scores: torch.Tensor, labels: torch.Tensor, threshold: float | None) -> tuple[float, float] | None:
    """(recall, precision) of calling `score ≥ threshold` anomalous: the threshold's point on the PR curve."""
    if threshold is None:
        return None
    flagged = scores >= threshold
    if not flagged.any():
        return None
    return (flagged[labels == 1].float().mean().item(), labels[flagged].float().mean().item())


def logging_step(trainer) -> int:
    """The step Lightning logs this pass's scalars at (batches that stepped; with manual optimisation of two players
    `global_step` counts optimiser steps, twice as many), so the pictures sit beside the `test/*` numbers."""
    return getattr(trainer.fit_loop.epoch_loop, "_batches_that_stepped", trainer.global_step)


def every_rank(columns: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Under DDP, each rank's test columns joined (every rank gets all of them; any backend, any sizes); else as is."""
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return columns
    gathered: list[dict[str, torch.Tensor] | None] = [None] * torch.distributed.get_world_size()
    torch.distributed.all_gather_object(gathered, columns)
    return {key: torch.cat([part[key] for part in gathered]) for key in columns}
