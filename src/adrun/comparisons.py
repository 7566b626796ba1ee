"""adrun-report's comparisons: whether a column's difference from a baseline is real, and how the columns rank.

- Against `--baseline`: for each other column, the differences over the (row, seed) pairs both have, their mean with
  a 95 % interval (scipy.stats.bootstrap of the mean, BCa, seeded), the Wilcoxon signed-rank test on them with the
  smallest p its n allows, and Holm's adjustment across the columns.
- Per cell, where both runs of a seed scored the very same test images (same ids in scores.csv: same protocol and data
  draw): DeLong's test of the two correlated AUROCs, per seed, combined over the seeds by Stouffer's z (the seeds'
  test draws are independent), Holm-adjusted across the cells. Only for `image_auroc`: the test is of AUROC.
- With three or more columns: each column's average rank over the rows (rank 1 the best), Friedman's test, and
  Demšar's critical difference (Nemenyi) for the picture.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from adrun import stats
from adrun.artefacts import RunDir

LEVEL = 0.05


@dataclass(frozen=True)
class Delta:
    """A column against the baseline over the (row, seed) pairs both have."""

    column: str
    pairs: int
    mean: float
    low: float
    high: float
    test: stats.PairedTest
    p_holm: float = math.nan


@dataclass(frozen=True)
class CellTest:
    """A cell against the baseline's cell on the same test images: DeLong per seed, combined."""

    seeds: int
    z: float
    p: float
    p_holm: float = math.nan

    @property
    def mark(self) -> str:
        if not self.p_holm < LEVEL:
            return ""
        return "▲" if self.z > 0 else "▼"


@dataclass(frozen=True)
class Ranks:
    columns: list[str]
    average: list[float]
    rows: int
    chi2: float
    p: float
    critical_difference: float


@dataclass
class Comparison:
    baseline: str | None
    deltas: list[Delta] = field(default_factory=list)
    cells: dict = field(default_factory=dict)  # (row, column) → CellTest
    ranks: Ranks | None = None


def compare(table, baseline: str | None) -> Comparison:
    """Everything the report can say about differences, for a built `reports.Table`."""
    if baseline is not None and baseline not in table.columns:
        from adrun.errors import UserError

        raise UserError(f"--baseline {baseline}: no such column; the columns are {', '.join(table.columns)}")
    found = Comparison(baseline, ranks=ranks(table))
    if baseline is None:
        return found
    deltas = [delta(table, baseline, column) for column in table.columns if column != baseline]
    adjusted = stats.holm([d.test.p for d in deltas])
    found.deltas = [Delta(**{**d.__dict__, "p_holm": p}) for d, p in zip(deltas, adjusted, strict=True)]
    if table.metric == "image_auroc":
        tests = {key: test for key in cell_keys(table, baseline) if (test := cell_test(table, baseline, *key))}
        adjusted = stats.holm([t.p for t in tests.values()])
        found.cells = {k: CellTest(t.seeds, t.z, t.p, p) for (k, t), p in zip(tests.items(), adjusted, strict=True)}
    return found


def pairs(table, baseline: str, column: str) -> list[tuple[str, object, float, float]]:
    """(row, seed, column's value, baseline's value) for every row and seed both columns have."""
    out = []
    for row in table.rows:
        ours, theirs = table.cells.get((row, column)), table.cells.get((row, baseline))
        if ours is None or theirs is None:
            continue
        out += [(row, s, ours.values[s], theirs.values[s]) for s in ours.values if s in theirs.values]
    return out


def delta(table, baseline: str, column: str) -> Delta:
    differences = np.array([a - b for _, _, a, b in pairs(table, baseline, column)], float)
    test = stats.paired_test(differences)
    if len(differences) < 3 or np.ptp(differences) == 0:
        mean = float(differences.mean()) if len(differences) else math.nan
        return Delta(column, len(differences), mean, math.nan, math.nan, test)
    from scipy.stats import bootstrap

    found = bootstrap(
        (differences,), np.mean, confidence_level=0.95, method="BCa", n_resamples=2000, rng=np.random.default_rng(0)
    )
    low, high = found.confidence_interval
    return Delta(column, len(differences), float(differences.mean()), float(low), float(high), test)


def cell_keys(table, baseline: str) -> list[tuple[str, str]]:
    return [(row, column) for row in table.rows for column in table.columns if column != baseline]


def same_images(a: dict, b: dict) -> bool:
    """Two runs' scores.csv columns list the very same test samples, in the same order."""
    return np.array_equal(a["index"], b["index"]) and np.array_equal(a["id"], b["id"])


def cell_test(table, baseline: str, row: str, column: str) -> CellTest | None:
    """DeLong per seed where both runs scored the same test ids, Stouffer's z over those seeds; None where none."""
    from scipy.stats import norm

    ours, theirs = table.cells.get((row, column)), table.cells.get((row, baseline))
    if ours is None or theirs is None:
        return None
    zs = []
    for seed in ours.paths:
        if seed not in theirs.paths:
            continue
        a, b = RunDir(ours.paths[seed]).read_scores(), RunDir(theirs.paths[seed]).read_scores()
        if a is None or b is None or not same_images(a, b) or a["label"].min() == a["label"].max():
            continue  # not the same test images (another draw, another order), or one class only
        test = stats.delong(a["score"], b["score"], a["label"])
        if math.isfinite(test.z):
            zs.append(test.z)
    if not zs:
        return None
    z = float(sum(zs) / math.sqrt(len(zs)))
    return CellTest(len(zs), z, float(2 * norm.sf(abs(z))))


def ranks(table) -> Ranks | None:
    """Average ranks over the rows where every column has a mean; Friedman and the CD where there are ≥ 3 columns."""
    if len(table.columns) < 3 or len(table.rows) < 2:
        return None
    rows = [r for r in table.rows if all(cell_mean(table, r, c) is not None for c in table.columns)]
    if len(rows) < 2:
        return None
    grid = np.array([[cell_mean(table, r, c) for c in table.columns] for r in rows], float)
    chi2, p = stats.friedman(grid)
    return Ranks(
        list(table.columns),
        [float(v) for v in stats.average_ranks(grid)],
        len(rows),
        chi2,
        p,
        stats.nemenyi_cd(len(table.columns), len(rows)),
    )


def cell_mean(table, row: str, column: str) -> float | None:
    cell = table.cells.get((row, column))
    return None if cell is None else cell.mean


def notes(comparison: Comparison, metric: str) -> list[str]:
    """What the comparison concludes, and what its design cannot, as lines under the table."""
    out = []
    if comparison.baseline is not None:
        for d in comparison.deltas:
            interval = "" if d.low != d.low else f" [{d.low:+.3f}, {d.high:+.3f}]"
            verdict = "holds" if d.p_holm < LEVEL else "not shown"
            line = (
                f"{d.column} − {comparison.baseline}: Δ {metric} {d.mean:+.3f}{interval} over {d.pairs} (row, seed) "
                f"pairs; {d.test.says()}; Holm-adjusted over {len(comparison.deltas)} column(s): p = {d.p_holm:.3g} "
                f"→ the difference {verdict} at {LEVEL}"
            )
            excludes_zero = d.low == d.low and (d.low > 0 or d.high < 0)
            if excludes_zero != (d.p_holm < LEVEL):
                line += (
                    f". The interval and the test disagree: the interval {'excludes' if excludes_zero else 'includes'} "
                    f"0 but the Holm-adjusted test {'does not reject' if excludes_zero else 'rejects'}; the verdict is "
                    f"the test's (a bootstrap interval on {d.pairs} pairs is approximate, and not adjusted across "
                    "columns)"
                )
            if d.test.smallest_p >= LEVEL:
                line += (
                    f". This design cannot reach p < {LEVEL}: {d.test.n} pairs allow p ≥ {d.test.smallest_p:.3g}; "
                    "pair over more rows or add seeds"
                )
            out.append(line)
        if comparison.cells:
            marked = sum(bool(t.mark) for t in comparison.cells.values())
            out.append(
                f"▲ / ▼: the cell beats / trails {comparison.baseline} on the very same test images — DeLong's test "
                "per seed, combined by Stouffer's z over the seeds, Holm-adjusted over "
                f"{len(comparison.cells)} cells, level {LEVEL} ({marked} marked)"
            )
    if comparison.ranks is not None:
        r = comparison.ranks
        shown = ", ".join(f"{c} {v:.2f}" for c, v in sorted(zip(r.columns, r.average, strict=True), key=lambda x: x[1]))
        out.append(
            f"average rank over {r.rows} rows (1 = best): {shown}; Friedman χ² = {r.chi2:.2f}, p = {r.p:.3g}; "
            f"Nemenyi critical difference at 0.05: {r.critical_difference:.2f} (report_ranks.png)"
        )
    return out
