"""Plots drawn with matplotlib (no pyplot, no display): a test pass's score histogram, ROC and PR curves, and the
report's grouped bars or heat map. `image(figure)` gives TensorBoard's [3, H, W] tensor, `save_png` a file."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from adrun.atomic import write_via

NORMAL, ANOMALOUS, THRESHOLD = "#1f77b4", "#d62728", "#222222"
BARS_UP_TO = 16  # rows; a report with more rows (or more than 6 columns) is drawn as a heat map


def image(figure: Figure, drawn: FigureCanvasAgg | None = None):
    """The figure rendered to an RGB uint8 tensor [3, H, W]; `drawn`: the canvas `save_png` already drew it on, read
    as it is rather than drawn a second time."""
    import torch

    canvas = drawn
    if canvas is None:
        canvas = FigureCanvasAgg(figure)
        canvas.draw()
    rgba = np.asarray(canvas.buffer_rgba())
    return torch.from_numpy(rgba[..., :3].copy()).permute(2, 0, 1)


def save_png(figure: Figure, path: Path) -> FigureCanvasAgg:
    """Written to a temporary name and renamed, like every artefact. Returns the canvas it was drawn on."""
    canvas = FigureCanvasAgg(figure)
    write_via(path, lambda tmp: canvas.print_png(str(tmp)))
    return canvas


def score_histogram(scores: np.ndarray, labels: np.ndarray, threshold: float | None) -> Figure:
    """Test scores of normals and anomalies, overlaid on shared bins, with the calibrated threshold as a line."""
    figure = Figure(figsize=(6, 3.6), dpi=100)
    ax = figure.add_subplot()
    finite = scores[np.isfinite(scores)]
    bins = np.histogram_bin_edges(finite, bins=min(50, max(10, len(finite) // 20)))
    for label, name, colour in ((0, "normal", NORMAL), (1, "anomalous", ANOMALOUS)):
        chosen = scores[labels == label]
        if len(chosen):
            ax.hist(chosen, bins=bins, alpha=0.55, color=colour, label=f"{name} (n = {len(chosen)})")
    if threshold is not None and math.isfinite(threshold):
        ax.axvline(threshold, color=THRESHOLD, linestyle="--", label=f"threshold {threshold:.4g}")
    ax.set_xlabel("anomaly score")
    ax.set_ylabel("test images")
    ax.legend(fontsize=8)
    figure.tight_layout()
    return figure


def roc_figure(fpr: np.ndarray, tpr: np.ndarray, auroc: float, at_threshold: tuple[float, float] | None) -> Figure:
    """The ROC curve with its AUROC, and the operating point of the calibrated threshold (FPR, TPR) marked."""
    chance = ([0, 1], [0, 1], None)
    labels = ("false-positive rate", "true-positive rate", "lower right")
    return curve_figure(fpr, tpr, f"AUROC {auroc:.4f}", chance, at_threshold, *labels)


def pr_figure(
    precision: np.ndarray, recall: np.ndarray, ap: float, prevalence: float, at_threshold: tuple[float, float] | None
) -> Figure:
    """The precision–recall curve (anomalies positive) with its average precision, the no-skill line at the test set's
    anomaly rate, and the operating point of the calibrated threshold (recall, precision) marked."""
    chance = ([0, 1], [prevalence, prevalence], f"no skill ({prevalence:.2f})")
    labels = ("recall (true-positive rate)", "precision", "lower left")
    return curve_figure(recall, precision, f"AP {ap:.4f}", chance, at_threshold, *labels)


def curve_figure(x, y, label: str, chance: tuple, at_threshold, xlabel: str, ylabel: str, legend: str) -> Figure:
    """A curve in the unit square labelled with its summary, the chance line (`chance`: xs, ys, its label or None),
    and the calibrated threshold's operating point (x, y) marked: the ROC and PR figures."""
    figure = Figure(figsize=(4.2, 4.2), dpi=100)
    ax = figure.add_subplot()
    ax.plot(x, y, color=ANOMALOUS, label=label)
    ax.plot(chance[0], chance[1], color="#999999", linewidth=0.8, linestyle=":", label=chance[2])
    if at_threshold is not None and all(map(math.isfinite, at_threshold)):
        ax.plot(*at_threshold, "o", color=THRESHOLD, label="calibrated threshold")
    ax.set(xlim=(0, 1), ylim=(0, 1.01), xlabel=xlabel, ylabel=ylabel)
    ax.legend(loc=legend, fontsize=8)
    figure.tight_layout()
    return figure


def report_figure(rows: list[str], columns: list[str], means: list[list[float]], stds, metric: str) -> Figure:
    """Grouped bars with ±std error bars (rows on the x axis, a bar per column), or a heat map when many."""
    if len(rows) <= BARS_UP_TO and len(columns) <= 6:
        legend_rows = math.ceil((len(columns) + 1) / 2)  # above the bars, where it hides none of them
        size = (max(6.0, 0.5 * len(rows) * len(columns) + 2), 4 + 0.25 * legend_rows)
        figure = Figure(figsize=size, dpi=110, layout="constrained")
        ax = figure.add_subplot()
        width = 0.8 / len(columns)
        x = np.arange(len(rows))
        for i, (column, mean, std) in enumerate(zip(columns, means, stds, strict=True)):
            ax.bar(x + (i - (len(columns) - 1) / 2) * width, mean, width, yerr=std, capsize=2, label=column)
        ax.set_xticks(x, rows, rotation=30, ha="right", fontsize=8)
        high = np.nanmax(np.asarray(means, dtype=float) + np.asarray(stds, dtype=float))
        ax.set_ylim(0.0, max(1.0, high) if math.isfinite(high) else 1.0)  # from 0: bar lengths compare honestly
        if "auroc" in metric:
            ax.axhline(0.5, color="0.3", linestyle="--", linewidth=0.8, label="chance (0.5)")
        ax.set_ylabel(f"{metric} (mean ± std; axis from 0)")
        ax.legend(fontsize=8, ncols=2, loc="lower left", bbox_to_anchor=(0, 1.01), frameon=False)
    else:
        figure = Figure(figsize=(1.4 * len(columns) + 3, 0.3 * len(rows) + 1.5), dpi=110)
        ax = figure.add_subplot()
        grid = np.asarray(means, dtype=float).T
        shown = ax.imshow(grid, aspect="auto", cmap="viridis")
        ax.set_xticks(range(len(columns)), columns, rotation=30, ha="right", fontsize=8)
        ax.set_yticks(range(len(rows)), rows, fontsize=8)
        for (r, c), value in np.ndenumerate(grid):
            ax.text(c, r, f"{value:.3f}", ha="center", va="center", fontsize=6, color="white")
        figure.colorbar(shown, ax=ax, label=metric)
        figure.tight_layout()  # the bars' figure lays itself out (constrained, for the legend above the axes)
    return figure


def ranks_figure(columns: list[str], ranks: list[float], cd: float, rows: int, p: float) -> Figure:
    """Demšar's critical-difference picture: each column at its average rank (1 = best, on the left), the critical
    difference as a bar, and a thick line joining columns whose ranks differ by less than it (not told apart)."""
    order = sorted(range(len(columns)), key=lambda i: ranks[i])
    longest = max(len(c) for c in columns)  # the labels run beside their rank's line: room for them
    figure = Figure(figsize=(max(7.0, 2 + 0.09 * longest), 1.4 + 0.35 * len(columns)), dpi=110)
    ax = figure.add_subplot()
    k = len(columns)
    ax.set_xlim(0.5, k + 0.5)
    ax.set_ylim(-(len(columns) + 1.5), 0.5)
    ax.set_xticks(range(1, k + 1))
    ax.xaxis.set_ticks_position("top")
    ax.set_yticks([])
    for spine in ("left", "right", "bottom"):
        ax.spines[spine].set_visible(False)
    for place, i in enumerate(order):
        y = -(place + 1)
        ax.plot([ranks[i], ranks[i]], [0, y], color="0.4", linewidth=0.8)
        ax.plot(ranks[i], 0, "o", color="C0")
        right = ranks[i] > (k + 1) / 2  # the worse half labelled to its line's left, so no label leaves the figure
        x = ranks[i] - 0.05 if right else ranks[i] + 0.05
        ax.text(x, y, f"{columns[i]} ({ranks[i]:.2f})", va="center", ha="right" if right else "left", fontsize=8)
    ax.plot([1, 1 + cd], [-(k + 1), -(k + 1)], color="C3", linewidth=2)
    ax.text(1 + cd / 2, -(k + 0.7), f"critical difference {cd:.2f}", ha="center", fontsize=8, color="C3")
    cliques, level = [], -0.3
    for a in range(len(order)):
        members = [j for j in order if 0 <= ranks[j] - ranks[order[a]] < cd]
        if len(members) > 1 and not any(set(members) <= set(c) for c in cliques):
            cliques.append(members)
            ax.plot([ranks[members[0]], ranks[members[-1]]], [level, level], color="k", linewidth=3)
            level -= 0.25
    title = f"average rank over {rows} rows (1 = best); Friedman p = {p:.3g}; joined: within the CD"
    figure.suptitle(title, fontsize=9)
    figure.tight_layout()
    return figure


def strip(pictures: np.ndarray, slots: int) -> tuple[np.ndarray, int]:
    """`pictures` ([N, H, W, 3] or [N, H, W] score maps) side by side in `slots` equal panels with a gap between them,
    as one image: a row of panels is one imshow, not one axes each (an axes costs ~30 ms to make, and the test grid has
    dozens). The gaps and empty panels are white (NaN in a map, drawn as the colour map's "bad" colour). Returns the
    strip and the panel pitch in pixels."""
    n, h, w = pictures.shape[:3]
    gap = max(1, w // 8)
    pitch = w + gap
    fill = np.nan if pictures.ndim == 3 else 1.0
    row = np.full((h, slots * pitch - gap, *pictures.shape[3:]), fill, dtype=np.float32)
    for i in range(min(n, slots)):
        row[:, i * pitch : i * pitch + w] = pictures[i]
    return row, pitch


def strip_axes(ax, row: np.ndarray, **imshow) -> None:
    ax.imshow(row, interpolation="nearest", **imshow)
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(False)


def extremes_figure(
    rows: dict[str, np.ndarray], scores: np.ndarray, labels: np.ndarray, threshold: float | None, per_block: int
) -> Figure:
    """The test grid with its words: the `per_block` most anomalous samples, then as many least anomalous, one column
    each; a row per picture kind (`rows`: name → [N, H, W, 3] in [0, 1], or [N, H, W] score maps, drawn on one colour
    scale with its colour bar). Each column is titled with its score, its true label and which side of the threshold it
    falls on ("≥ t": flagged). Each row of pictures is one image (`strip`)."""
    from matplotlib import colormaps

    kinds, n = list(rows), len(scores)
    blocks = [range(0, min(per_block, n)), range(min(per_block, n), n)]
    blocks = [b for b in blocks if len(b)]
    maps = [r for r in rows.values() if r.ndim == 3]
    low, high = (float(np.min(maps[0])), float(np.max(maps[0]))) if maps else (0.0, 1.0)
    heat = colormaps["inferno"].with_extremes(bad="white")
    figure = Figure(figsize=(1.15 * per_block + 1.6, 1.25 * len(kinds) * len(blocks) + 0.4), dpi=90)
    place = dict(hspace=0.45, top=0.9, bottom=0.03, left=0.1, right=0.93)
    grid = figure.add_gridspec(len(kinds) * len(blocks), 2, width_ratios=[per_block, 0.12], **place)
    shown = None
    for b, block in enumerate(blocks):
        for k, kind in enumerate(kinds):
            ax = figure.add_subplot(grid[b * len(kinds) + k, 0])
            row, pitch = strip(rows[kind][block.start : block.stop], per_block)
            if row.ndim == 2:
                strip_axes(ax, row, cmap=heat, vmin=low, vmax=high)
                shown = ax.images[0]
            else:
                strip_axes(ax, row)
            ax.set_ylabel(kind if k else f"{('most', 'least')[b]} anomalous\n{kind}", fontsize=7)
            if k:
                continue
            for c, i in enumerate(block):
                side = "" if threshold is None else " ≥ t" if scores[i] >= threshold else " < t"
                colour = ANOMALOUS if labels[i] else NORMAL
                title = f"{scores[i]:.3g}{side}\n{'anomalous' if labels[i] else 'normal'}"
                x = c * pitch + (rows[kind].shape[2] - 1) / 2  # the panel's centre, in pixels
                ax.text(x, -0.08 * row.shape[0], title, ha="center", va="bottom", fontsize=7, color=colour)
    if shown is not None:
        figure.colorbar(shown, cax=figure.add_subplot(grid[:, 1]), label="score map")
    t = "no threshold" if threshold is None else f"threshold t = {threshold:.4g}"
    figure.suptitle(f"test samples by score ({t}; title colour = true label)", fontsize=8)
    return figure


DISPLAY_MIN = 128  # pixels: a smaller image is shown enlarged (nearest, so its pixels stay honest)


def heat_colormap():
    """visual.HEAT_STOPS as a matplotlib colour map, so a colour bar matches the overlays' colours."""
    from matplotlib.colors import LinearSegmentedColormap

    from adrun.visual import HEAT_STOPS

    return LinearSegmentedColormap.from_list("adrun_heat", HEAT_STOPS.tolist())


def overlay_figure(picture: np.ndarray, title: str, scale: tuple[float, float], scale_name: str) -> Figure:
    """An overlay ([H, W, 3] in [0, 1], the score map blended over the image) at its own aspect, enlarged to at least
    DISPLAY_MIN pixels on its short side, with `title` (score, decision) and the colour bar of the map's scale."""
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    h, w = picture.shape[:2]
    zoom = max(1, -(-DISPLAY_MIN // min(h, w)))
    width, height = w * zoom / 100, h * zoom / 100  # inches at 100 dpi: one pixel per enlarged image pixel
    total_w, total_h = width + 1.3, height + 0.55
    figure = Figure(figsize=(total_w, total_h), dpi=100)
    ax = figure.add_axes((0.1 / total_w, 0.1 / total_h, width / total_w, height / total_h))
    ax.imshow(picture, interpolation="nearest")
    ax.set_axis_off()
    figure.text(0.05 / total_w, 1 - 0.05 / total_h, title, ha="left", va="top", fontsize=7, linespacing=1.1)
    bar = figure.add_axes(((0.35 + width) / total_w, 0.1 / total_h, 0.12 / total_w, height / total_h))
    figure.colorbar(ScalarMappable(Normalize(*scale), heat_colormap()), cax=bar)
    bar.set_ylabel(scale_name, fontsize=7)
    bar.tick_params(labelsize=6)
    return figure


def overlays_figure(pictures: list[np.ndarray], titles: list[str]) -> Figure:
    """Several overlays side by side, four to a row, each titled: one TensorBoard picture per predict call."""
    columns = min(4, len(pictures))
    rows = -(-len(pictures) // columns)
    figure = Figure(figsize=(2.2 * columns, 2.4 * rows), dpi=80)
    for i, (picture, title) in enumerate(zip(pictures, titles, strict=True)):
        ax = figure.add_subplot(rows, columns, i + 1)
        ax.imshow(picture, interpolation="nearest")
        ax.set_axis_off()
        ax.set_title(title, fontsize=7)
    figure.tight_layout()
    return figure


def named_rows(rows: dict[str, np.ndarray], title: str) -> Figure:
    """Equally long rows of images ([N, H, W, 3] in [0, 1]), each row named on its left: e.g. OGNet's X, G(X),
    G_old(X) and pseudo anomalies. Each row is one image (`strip`)."""
    n = len(next(iter(rows.values())))
    figure = Figure(figsize=(1.0 * n + 1.4, 1.05 * len(rows) + 0.4), dpi=90)
    for r, (name, images) in enumerate(rows.items()):
        ax = figure.add_subplot(len(rows), 1, r + 1)
        strip_axes(ax, strip(np.asarray(images), n)[0])
        ax.set_ylabel(name, fontsize=7)
    figure.suptitle(title, fontsize=8)
    return figure
