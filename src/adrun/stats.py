"""What a number can conclude: intervals on AUROC, paired tests between methods, ranks — scipy's, where scipy has them.

- `auroc_interval`: a run's image AUROC with its 95 % interval, from its own test scores: DeLong's variance, on the
  logit scale. Chosen over scipy.stats.bootstrap, measured on binormal draws (tests/test_stats.py): BCa costs seconds
  per run at 1,000 test images (its jackknife) and tens of seconds at 10,000; the percentile bootstrap covered 85 %
  at 90 normals / 10 anomalies and AUROC 0.95 (200 draws), the plain DeLong interval 79 %, the logit one 90–93 %; all
  ≈ 95 % at 900 / 100. At an AUROC of exactly 0 or 1 (every pair ordered one way) DeLong's variance is 0; there a
  Wilson-type score interval (`score_interval`) is given instead of a point, which covered 0.96–0.97 where the point
  [1, 1] never can.
- `clustered_variance`: Obuchowski (1997)'s AUROC variance for clustered data, for the pixel AUROC: the unit is the
  test image (its pixels are not independent draws).
- `delong`: DeLong, DeLong & Clarke-Pearson (1988): the AUROCs of two scorings of the same test images, their
  covariance from the placement values, and the z-test of their difference (correlated ROC curves).
- `paired_test`: the Wilcoxon signed-rank test on paired differences (scipy.stats.wilcoxon, exact where n is small),
  with the smallest p-value the design can reach, so a table can say when n cannot reach a level.
- `holm`: Holm's step-down adjustment across a family of p-values.
- `average_ranks` and `friedman` (scipy.stats.friedmanchisquare), `nemenyi_cd`: Demšar (2006)'s critical difference,
  from scipy.stats.studentized_range.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

LEVEL = 0.95
BELOW_CHANCE = "the whole interval lies below 0.5: usually a score whose sign is flipped, or a collapsed model"


def auroc(normal: np.ndarray, anomalous: np.ndarray, axis: int = -1) -> np.ndarray:
    """P(anomalous score > normal score) + ½ P(tie): the Mann–Whitney U of the anomalies over n0·n1 (any batch axes)."""
    from scipy.stats import mannwhitneyu

    normal, anomalous = np.asarray(normal, float), np.asarray(anomalous, float)
    u = mannwhitneyu(anomalous, normal, axis=axis, method="asymptotic", use_continuity=False).statistic
    return u / (normal.shape[axis] * anomalous.shape[axis])


def split(scores, labels) -> tuple[np.ndarray, np.ndarray]:
    scores, labels = np.asarray(scores, float), np.asarray(labels)
    return scores[labels == 0], scores[labels == 1]


def auroc_interval(scores, labels, level: float = LEVEL, clusters=None) -> tuple[float, float]:
    """(low, high) of the AUROC's `level` interval: DeLong's variance on the logit scale, mapped back (the interval
    stays in [0, 1] and is asymmetric near 1, where the plain normal one undercovers). With `clusters` (the test image
    of each pixel) the variance is Obuchowski's for clustered data (`clustered_variance`): the image is the unit. At an
    AUROC of exactly 0 or 1 the variance is 0 and the interval would be a point: there the score interval
    (`score_interval`) takes over, on the counts of images. NaN, NaN when a class has fewer than two units."""
    from scipy.stats import norm

    normal, anomalous = split(scores, labels)
    if min(len(normal), len(anomalous)) < 2:
        return math.nan, math.nan
    v10, v01 = placements(normal, anomalous)  # ranked once: a pixel AUROC has millions of them
    variance, units = placement_variance(v10, v01, labels, clusters)
    if min(units) < 2:
        return math.nan, math.nan
    area = float(v10.mean())
    z = norm.ppf(0.5 + level / 2)
    if area in (0.0, 1.0) or variance <= 0:  # complete separation: no spread for DeLong to see
        return score_interval(area, *units, z)
    se = math.sqrt(variance) / (area * (1 - area))
    centre, half = math.log(area / (1 - area)), z * se
    return 1 / (1 + math.exp(-(centre - half))), 1 / (1 + math.exp(-(centre + half)))


def hanley_mcneil_variance(theta: float, n0: int, n1: int) -> float:
    """Var(AUROC) at a true AUROC θ (Hanley & McNeil 1982, Q1 = θ/(2 − θ), Q2 = 2θ²/(1 + θ)), with both sample sizes
    replaced by their mean N* = (n0 + n1)/2, as Newcombe (2006) does to make it symmetric in the two samples."""
    n = (n0 + n1) / 2
    return theta * (1 - theta) * (1 + (n - 1) * ((1 - theta) / (2 - theta) + theta / (1 + theta))) / (n0 * n1)


def score_interval(area: float, n0: int, n1: int, z: float) -> tuple[float, float]:
    """The θ with |area − θ| ≤ z·√Var(θ), Var at θ itself (a Wilson-type score interval for the AUROC, after Newcombe
    2006): unlike DeLong's, it is not a point at an AUROC of 0 or 1, where every ordering was right (or wrong)."""
    from scipy.optimize import brentq

    def gap(theta: float) -> float:
        return abs(area - theta) - z * math.sqrt(hanley_mcneil_variance(theta, n0, n1))

    inner = 1e-12  # the gap is 0 at θ = area ∈ {0, 1} itself (no variance there): the root sought lies inside
    low = 0.0 if area == 0.0 or gap(0.0) <= 0 else brentq(gap, 0.0, min(area, 1 - inner))
    high = 1.0 if area == 1.0 or gap(1.0) <= 0 else brentq(gap, max(area, inner), 1.0)
    return low, high


PIXEL_INTERVAL_METHOD = (
    "Obuchowski's variance for clustered ROC data (Biometrics 1997) on the logit scale: DeLong's placement values "
    "summed per test image, so the unit is the test image, not the pixel"
)
INTERVAL_METHOD = (
    "DeLong's variance (DeLong et al. 1988) on the logit scale, mapped back (at an AUROC of 0 or 1, a Wilson-type "
    "score interval with Hanley & McNeil's variance, after Newcombe 2006); the unit is the test image, normals and "
    "anomalies each as sampled"
)


@dataclass(frozen=True)
class PairedAUROC:
    """Two scorings of the same test images compared by DeLong's test."""

    auroc_a: float
    auroc_b: float
    difference: float  # a − b
    standard_error: float
    z: float
    p: float
    n_normal: int
    n_anomalous: int

    def interval(self, level: float = LEVEL) -> tuple[float, float]:
        from scipy.stats import norm

        half = norm.ppf(0.5 + level / 2) * self.standard_error
        return self.difference - half, self.difference + half


def placements(normal: np.ndarray, anomalous: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """DeLong's structural components: for each anomaly the share of normals it outscores (V10), for each normal the
    share of anomalies that outscore it (V01); ties count ½. Their means are the AUROC."""
    from scipy.stats import rankdata

    both = np.concatenate([normal, anomalous])
    n0, n1 = len(normal), len(anomalous)
    ranks, within0, within1 = rankdata(both), rankdata(normal), rankdata(anomalous)
    v10 = (ranks[n0:] - within1) / n0  # normals below each anomaly
    v01 = 1 - (ranks[:n0] - within0) / n1  # anomalies above each normal
    return v10, v01


def delong(scores_a, scores_b, labels) -> PairedAUROC:
    """DeLong's test of two correlated AUROCs (the same test images scored two ways)."""
    from scipy.stats import norm

    labels = np.asarray(labels)
    comps = [placements(*split(scores, labels)) for scores in (scores_a, scores_b)]
    v10 = np.stack([c[0] for c in comps])  # [2, n1]
    v01 = np.stack([c[1] for c in comps])  # [2, n0]
    aucs = v10.mean(axis=1)
    s = np.cov(v10) / v10.shape[1] + np.cov(v01) / v01.shape[1]
    variance = s[0, 0] + s[1, 1] - 2 * s[0, 1]
    difference = float(aucs[0] - aucs[1])
    se = math.sqrt(max(variance, 0.0))
    z = difference / se if se > 0 else (0.0 if difference == 0 else math.copysign(math.inf, difference))
    p = float(2 * norm.sf(abs(z)))
    return PairedAUROC(float(aucs[0]), float(aucs[1]), difference, se, float(z), p, v01.shape[1], v10.shape[1])


def delong_variance(scores, labels) -> float:
    """One AUROC's DeLong variance (for its standard error)."""
    return placement_variance(*placements(*split(scores, labels)))[0]


def clustered_variance(scores, labels, clusters) -> tuple[float, tuple[int, int]]:
    """Obuchowski (1997, Biometrics 53:567): the AUROC's variance when observations come in correlated clusters — a
    test image's pixels. DeLong's placement values are summed per cluster, so what varies is the image, not the pixel
    (pixels of one image share its lighting, texture and the model's view of it; counted as independent they give an
    interval far too narrow). Returns the variance and the numbers of clusters holding normals and anomalies. With one
    observation per cluster it is DeLong's variance."""
    return placement_variance(*placements(*split(scores, labels)), labels, clusters)


def placement_variance(v10, v01, labels=None, clusters=None) -> tuple[float, tuple[int, int]]:
    """The AUROC's variance from its placement values (the anomalies' v10, the normals' v01) and the numbers of units
    of normals and anomalies: DeLong's, each observation a unit, or with `clusters` (and the `labels` that order v10
    and v01) Obuchowski's, each cluster a unit (`clustered_variance`)."""
    if clusters is None:
        return float(v10.var(ddof=1) / len(v10) + v01.var(ddof=1) / len(v01)), (len(v01), len(v10))
    labels, clusters = np.asarray(labels), np.unique(np.asarray(clusters), return_inverse=True)[1].ravel()
    area, n_clusters = float(v10.mean()), int(clusters.max()) + 1
    sums, counts = [], []
    for label, values in ((1, v10), (0, v01)):
        members = clusters[labels == label]
        sums.append(np.bincount(members, weights=values, minlength=n_clusters))
        counts.append(np.bincount(members, minlength=n_clusters))
    d10, d01 = sums[0] - counts[0] * area, sums[1] - counts[1] * area  # each cluster's departure from the AUROC
    i10, i01 = int(np.count_nonzero(counts[0])), int(np.count_nonzero(counts[1]))
    m, n = len(v10), len(v01)
    if min(i10, i01) < 2:
        return math.nan, (i01, i10)
    s10 = i10 / ((i10 - 1) * m) * float(d10 @ d10)
    s01 = i01 / ((i01 - 1) * n) * float(d01 @ d01)
    s11 = n_clusters / (n_clusters - 1) * float(d10 @ d01)
    return s10 / m + s01 / n + 2 * s11 / (m * n), (i01, i10)


@dataclass(frozen=True)
class PairedTest:
    """A paired test on differences: what it is, on how many pairs, its p-value, and the smallest p it could reach."""

    test: str
    n: int
    statistic: float
    p: float
    smallest_p: float

    def says(self) -> str:
        return f"{self.test}, n = {self.n}: p = {self.p:.3g} (the smallest this n allows: {self.smallest_p:.3g})"


def paired_test(differences) -> PairedTest:
    """The Wilcoxon signed-rank test, two-sided, exact where scipy makes it exact (small n without ties or zeros)."""
    from scipy.stats import wilcoxon

    d = np.asarray(differences, float)
    d = d[np.isfinite(d)]
    n = int(np.count_nonzero(d))
    if n == 0:
        return PairedTest("Wilcoxon signed-rank (two-sided)", len(d), math.nan, 1.0, smallest_wilcoxon_p(len(d)))
    result = wilcoxon(d, alternative="two-sided", zero_method="wilcox")
    return PairedTest(
        "Wilcoxon signed-rank (two-sided)", n, float(result.statistic), float(result.pvalue), smallest_wilcoxon_p(n)
    )


def smallest_wilcoxon_p(n: int) -> float:
    """The exact two-sided Wilcoxon signed-rank test's smallest p on n pairs: every difference of one sign, 2 / 2^n."""
    return 1.0 if n == 0 else min(1.0, 2.0 / 2**n)


def holm(pvalues: list[float]) -> list[float]:
    """Holm's step-down adjusted p-values (family-wise error), in the order given."""
    order = sorted(range(len(pvalues)), key=lambda i: pvalues[i])
    adjusted, running = [1.0] * len(pvalues), 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(pvalues) - rank) * pvalues[i]))
        adjusted[i] = running
    return adjusted


def average_ranks(table: np.ndarray) -> np.ndarray:
    """Each column's mean rank over the rows, rank 1 the best (highest value); ties share their mean rank."""
    from scipy.stats import rankdata

    return rankdata(-np.asarray(table, float), axis=1).mean(axis=0)


def friedman(table: np.ndarray) -> tuple[float, float]:
    """Friedman's test that the columns (≥ 3 methods) rank alike over the rows: (χ², p)."""
    from scipy.stats import friedmanchisquare

    result = friedmanchisquare(*np.asarray(table, float).T)
    return float(result.statistic), float(result.pvalue)


def nemenyi_cd(methods: int, rows: int, alpha: float = 0.05) -> float:
    """Demšar (2006): two methods' average ranks differ beyond this at level alpha (Nemenyi's test)."""
    from scipy.stats import studentized_range

    q = studentized_range.ppf(1 - alpha, methods, np.inf) / math.sqrt(2)
    return float(q * math.sqrt(methods * (methods + 1) / (6 * rows)))
