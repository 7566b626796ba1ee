"""The one evaluation path: metrics from scores and labels (and maps and masks), results.json and scores.csv.

Test labels enter here and nowhere else: no threshold, normalisation or model choice is fitted on them. "F1 at the
best threshold" is therefore an oracle figure, reported because the papers report it; the EER and the F1 at the
equal-error threshold (OGNet's) likewise.
"""

from __future__ import annotations

import csv
import json
import math
import os
import platform
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage
from torch.utils.tensorboard.summary import hparams as hparams_summary
from torchmetrics.functional.classification import (
    binary_auroc,
    binary_average_precision,
    binary_precision_recall_curve,
    binary_roc,
)

PRO_MAX_FPR = 0.3  # AUPRO integrates the per-region overlap up to this false-positive rate (Bergmann et al.)


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


def image_metrics(scores: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    """Image AUROC, average precision, F1 at the best threshold, and the equal error rate."""
    if labels.min() == labels.max():
        return dict.fromkeys(("image_auroc", "image_ap", "image_f1", "image_eer", "image_f1_eer"), math.nan)
    scores, labels = unit_ranks(scores), labels.long()
    precision, recall, _ = binary_precision_recall_curve(scores, labels)
    f1 = (2 * precision * recall / (precision + recall)).nan_to_num(0.0)
    fpr, tpr, _ = binary_roc(scores, labels)
    return {
        "image_auroc": auroc(scores, labels),
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


def pixel_metrics(maps: torch.Tensor, masks: torch.Tensor) -> dict[str, float]:
    """Pixel AUROC over every test pixel, and AUPRO up to FPR 0.3."""
    target = (masks.flatten() > 0.5).long()
    if target.min() == target.max():
        return {"pixel_auroc": math.nan, "pixel_aupro": math.nan}
    return {"pixel_auroc": auroc(unit_ranks(maps), target), "pixel_aupro": aupro(maps, masks)}


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


def write_atomically(path: Path, write: Callable) -> None:
    """Write through a temporary file and rename, so a half-written file never looks like a result."""
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with open(tmp, "w", newline="") as f:
            write(f)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_scores(path: Path, outputs: TestOutputs, sample_id: Callable[[int], str]) -> None:
    """scores.csv: one row per test sample: index, id (file path or id), label, score, and score_<name> per variant."""

    def write(f):
        out = csv.writer(f)
        out.writerow(["index", "id", "label", "score", *(f"score_{name}" for name in outputs.variants)])
        columns = [outputs.scores, *outputs.variants.values()]
        for i, label, *scores in zip(
            outputs.index.tolist(), outputs.labels.tolist(), *(c.tolist() for c in columns), strict=True
        ):
            out.writerow([i, sample_id(i), label, *(f"{score:.8g}" for score in scores)])

    write_atomically(path, write)


def write_results(path: Path, results: dict) -> None:
    write_atomically(path, lambda f: json.dump(results, f, indent=2, default=str))


def versions() -> dict[str, str]:
    """The versions a result depends on, for results.json."""
    from importlib.metadata import PackageNotFoundError, version

    def installed(name: str) -> str:
        try:
            return version(name)
        except PackageNotFoundError:  # e.g. adrun run from a source tree on PYTHONPATH
            return "not installed"

    names = ("adrun", "torch", "torchvision", "pytorch-lightning", "torchmetrics", "hydra-core")
    return {"python": platform.python_version()} | {name: installed(name) for name in names}


def log_hparams(writer, hparams: dict, metrics: dict[str, float]) -> None:
    """The HParams-tab record: these hyperparameters beside the final `test/*` metrics (already logged as scalars)."""
    experiment, session_start, session_end = hparams_summary(hparams, {f"test/{k}": v for k, v in metrics.items()})
    file_writer = writer._get_file_writer()
    for summary in (experiment, session_start, session_end):
        file_writer.add_summary(summary)
