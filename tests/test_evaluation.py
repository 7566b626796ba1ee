"""The metrics agree with direct computations from their definitions on known inputs."""

import csv
import math

import numpy as np
import pytest
import torch
from scipy import ndimage

from adrun.artefacts import RunDir
from adrun.evaluation import (
    PRO_MAX_FPR,
    TestOutputs,
    aupro,
    compute_metrics,
    image_metrics,
    pixel_metrics,
)


def pairwise_auroc(scores, labels):
    """P(score of an anomaly > score of a normal), ties counting half: AUROC's definition."""
    pos, neg = scores[labels == 1], scores[labels == 0]
    greater = (pos[:, None] > neg[None, :]).double().mean()
    ties = (pos[:, None] == neg[None, :]).double().mean()
    return (greater + 0.5 * ties).item()


def brute_f1(scores, labels):
    best = 0.0
    for t in scores.unique():
        predicted = scores >= t
        tp = (predicted & (labels == 1)).sum().item()
        fp = (predicted & (labels == 0)).sum().item()
        fn = (~predicted & (labels == 1)).sum().item()
        best = max(best, 2 * tp / (2 * tp + fp + fn))
    return best


def test_image_metrics_match_their_definitions():
    generator = torch.Generator().manual_seed(0)
    labels = (torch.rand(300, generator=generator) < 0.3).long()
    scores = torch.randn(300, generator=generator) + labels * 1.2
    scores[:20] = scores[20:40]  # some ties
    metrics = image_metrics(scores, labels)
    assert metrics["image_auroc"] == pytest.approx(pairwise_auroc(scores, labels), abs=1e-6)
    assert metrics["image_f1"] == pytest.approx(brute_f1(scores, labels), abs=1e-6)
    assert 0 < metrics["image_eer"] < 0.5


def test_large_scores_are_not_squashed_into_ties():
    # torchmetrics would read scores outside [0, 1] as logits: sigmoid(40) == sigmoid(90) == 1.0 in floating point.
    labels = torch.tensor([0, 0, 1, 1, 0, 1])
    scores = torch.tensor([40.0, 45.0, 80.0, 90.0, 85.0, 70.0])
    metrics = image_metrics(scores, labels)
    assert metrics["image_auroc"] == pytest.approx(pairwise_auroc(scores, labels)) == pytest.approx(7 / 9)
    assert metrics["image_f1"] == pytest.approx(brute_f1(scores, labels))
    masks = torch.zeros(1, 1, 2, 3)
    masks[0, 0, 1] = 1  # pixels 90, 85, 70 anomalous against 40, 45, 80: 8 of 9 pairs ordered
    assert pixel_metrics(scores.view(1, 1, 2, 3) * 10, masks)["pixel_auroc"] == pytest.approx(8 / 9)


def test_perfect_and_inverted_scores():
    labels = torch.tensor([0, 0, 0, 1, 1])
    good = image_metrics(torch.tensor([0.1, 0.2, 0.3, 0.8, 0.9]), labels)
    assert good["image_auroc"] == 1.0 and good["image_f1"] == 1.0 and good["image_eer"] == 0.0
    assert image_metrics(torch.tensor([0.9, 0.8, 0.7, 0.1, 0.2]), labels)["image_auroc"] == 0.0


def test_equal_error_rate_on_a_known_case():
    # normals score 0..9, anomalies 5..14. At threshold 8 (score ≥ t is flagged): FPR 2/10, miss rate 3/10; at 7:
    # FPR 3/10, miss 2/10. The rates cross halfway between those two ROC points: EER = 0.25.
    scores = torch.cat([torch.arange(10.0), torch.arange(5.0, 15.0)])
    labels = torch.cat([torch.zeros(10), torch.ones(10)]).long()
    assert image_metrics(scores, labels)["image_eer"] == pytest.approx(0.25)


def test_f1_at_the_equal_error_threshold():
    # normals 0..9, anomalies 6..15; flagging scores ≥ 8 misses 6, 7 (FNR 0.2), flags 8, 9 (FPR 0.2): TP 8, FP 2, FN 2
    scores = torch.cat([torch.arange(10.0), torch.arange(6.0, 16.0)])
    labels = torch.cat([torch.zeros(10), torch.ones(10)]).long()
    assert image_metrics(scores, labels)["image_f1_eer"] == pytest.approx(16 / 20)


def test_score_variants_get_their_auroc_and_a_scores_csv_column(tmp_path):
    labels = torch.tensor([0, 0, 1, 1])
    outputs = TestOutputs(
        index=torch.arange(4),
        labels=labels,
        scores=torch.tensor([0.1, 0.2, 0.3, 0.4]),
        variants={"phase1": torch.tensor([0.4, 0.1, 0.3, 0.2])},
    )
    metrics = compute_metrics(outputs)
    assert metrics["image_auroc"] == 1.0
    assert metrics["image_auroc_phase1"] == pytest.approx(pairwise_auroc(outputs.variants["phase1"], labels)) == 0.5
    RunDir(tmp_path).write_scores(outputs, lambda i: f"id{i}", lambda i: "good" if i < 2 else "scratch")
    with open(tmp_path / "scores.csv") as f:
        rows = list(csv.DictReader(f))
    assert [float(r["score_phase1"]) for r in rows] == pytest.approx([0.4, 0.1, 0.3, 0.2]) and rows[2]["id"] == "id2"
    assert [r["type"] for r in rows] == ["good", "good", "scratch", "scratch"]


def test_each_anomaly_type_gets_the_auroc_of_the_normals_against_it():
    from adrun.evaluation import auroc_per_type

    labels = torch.tensor([0, 0, 0, 1, 1, 1, 1])
    scores = torch.tensor([0.1, 0.5, 0.3, 0.9, 0.8, 0.2, 0.4])
    types = ["good", "good", "good", "dent", "dent", "scratch", "scratch"]
    per_type = auroc_per_type(scores, labels, types)
    assert per_type == {
        "image_auroc/dent": 1.0,
        "image_auroc/scratch": pytest.approx(
            pairwise_auroc(torch.tensor([0.1, 0.5, 0.3, 0.2, 0.4]), torch.tensor([0, 0, 0, 1, 1]))
        ),
    }
    assert per_type["image_auroc/scratch"] == pytest.approx(3 / 6)


def test_one_class_test_sets_give_nan_not_a_number_that_looks_real():
    metrics = image_metrics(torch.rand(5), torch.zeros(5, dtype=torch.long))
    assert all(math.isnan(v) for v in metrics.values())


def brute_aupro(maps, masks, max_fpr):
    """PRO and FPR at every distinct threshold, from their definitions, then the trapezoid up to max_fpr."""
    regions = []
    for i in range(len(masks)):
        labelled, n = ndimage.label(masks[i, 0].numpy() > 0.5, structure=np.ones((3, 3)))
        regions += [(i, torch.from_numpy(labelled == r)) for r in range(1, n + 1)]
    normal = masks[:, 0] < 0.5
    points = [(0.0, 0.0)]
    for t in sorted(maps.unique().tolist(), reverse=True):
        hit = maps[:, 0] >= t
        fpr = (hit & normal).sum().item() / normal.sum().item()
        pro = sum((hit[i] & region).sum().item() / region.sum().item() for i, region in regions) / len(regions)
        points.append((fpr, pro))
    fprs, pros = map(np.array, zip(*points, strict=True))
    k = int((fprs <= max_fpr).sum())
    if k < len(fprs):
        t = (max_fpr - fprs[k - 1]) / (fprs[k] - fprs[k - 1])
        fprs = np.append(fprs[:k], max_fpr)
        pros = np.append(pros[:k], pros[k - 1] + t * (pros[k] - pros[k - 1]))
    return np.trapezoid(pros, fprs) / max_fpr


def test_aupro_matches_its_definition():
    generator = torch.Generator().manual_seed(1)
    masks = torch.zeros(3, 1, 12, 12)
    masks[0, 0, 2:5, 2:5] = 1  # two regions of different size in image 0
    masks[0, 0, 8:12, 6:12] = 1
    masks[2, 0, 5:7, 1:3] = 1  # one in image 2; image 1 is normal
    maps = (torch.rand(3, 1, 12, 12, generator=generator) + masks * 0.6).round(decimals=2)  # ties included
    assert aupro(maps, masks) == pytest.approx(brute_aupro(maps, masks, PRO_MAX_FPR), abs=1e-9)


def test_aupro_on_a_hand_computed_case_with_two_regions():
    """One row of 13 pixels: region A (2 px, scores .9 and .5), region B (1 px, .7), ten normals (.8, then .4 … .01).
    Thresholds from the top: .9 → PRO = mean(1/2, 0) = .25 at FPR 0; .8 → FPR .1; .7 → PRO .75; .5 → PRO 1; the FPR
    then reaches .3 at PRO 1. Area up to .3 = .25 × .1 + 1 × .2 = .225; normalised by .3: 0.75."""
    scores = [0.9, 0.5, 0.8, 0.7, 0.4, 0.3, 0.2, 0.1, 0.05, 0.04, 0.03, 0.02, 0.01]
    mask = [1, 1, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0]  # A = pixels 0–1, B = pixel 3: not 8-connected
    maps, masks = torch.tensor(scores).view(1, 1, 1, 13), torch.tensor(mask, dtype=torch.float).view(1, 1, 1, 13)
    assert aupro(maps, masks) == pytest.approx(0.75, abs=1e-12)


def test_pixel_metrics_of_a_perfect_map():
    masks = torch.zeros(2, 1, 8, 8)
    masks[1, 0, 2:4, 2:4] = 1
    metrics = pixel_metrics(masks * 2 + 0.5, masks)
    assert metrics["pixel_auroc"] == 1.0
    assert metrics["pixel_aupro"] == pytest.approx(1.0)
