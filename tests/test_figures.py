"""The matplotlib figures show what they say: the threshold where it is, the operating point on the ROC curve."""

import numpy as np
import pytest
import torch

from adrun import figures


def test_the_histogram_draws_both_classes_and_the_threshold_line():
    scores = np.array([0.1, 0.2, 0.3, 0.9, 1.0, 1.1])
    labels = np.array([0, 0, 0, 1, 1, 1])
    ax = figures.score_histogram(scores, labels, threshold=0.55).axes[0]
    (line,) = ax.lines
    assert list(line.get_xdata()) == [0.55, 0.55]
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend == ["normal (n = 3)", "anomalous (n = 3)", "threshold 0.55"]
    heights = [sum(p.get_height() for p in container) for container in ax.containers]
    assert heights == [3, 3], "every score is in a bar"
    assert list(figures.score_histogram(scores, labels, threshold=None).axes[0].lines) == []


def test_the_roc_figure_marks_the_thresholds_operating_point_and_renders_to_an_image():
    figure = figures.roc_figure(np.array([0, 0.5, 1]), np.array([0, 0.9, 1]), 0.7, at_threshold=(0.5, 0.9))
    point = figure.axes[0].lines[-1]
    assert (point.get_xdata()[0], point.get_ydata()[0]) == (0.5, 0.9)
    assert "AUROC 0.7000" in [t.get_text() for t in figure.axes[0].get_legend().get_texts()]
    rendered = figures.image(figure)
    assert rendered.dtype == torch.uint8 and rendered.shape == (3, 420, 420) and rendered.float().std() > 10


def test_the_logged_image_is_the_saved_pngs_drawing_not_a_second_one(tmp_path):
    from PIL import Image

    figure = figures.roc_figure(np.array([0, 0.5, 1]), np.array([0, 0.9, 1]), 0.7, at_threshold=None)
    canvas = figures.save_png(figure, tmp_path / "roc.png")
    png = torch.from_numpy(np.asarray(Image.open(tmp_path / "roc.png").convert("RGB")).copy()).permute(2, 0, 1)
    assert torch.equal(figures.image(figure, drawn=canvas), png)


def test_the_pr_figure_marks_the_thresholds_point_and_the_no_skill_line():
    figure = figures.pr_figure(np.array([0.5, 0.8, 1]), np.array([1, 0.6, 0]), 0.75, 0.5, at_threshold=(0.6, 0.8))
    *_, no_skill, point = figure.axes[0].lines
    assert (point.get_xdata()[0], point.get_ydata()[0]) == (0.6, 0.8) and list(no_skill.get_ydata()) == [0.5, 0.5]
    assert "AP 0.7500" in [t.get_text() for t in figure.axes[0].get_legend().get_texts()]
    assert figures.image(figure).shape == (3, 420, 420)


@pytest.mark.parametrize(("rows", "columns", "kind"), [(10, 3, "bars"), (40, 2, "heat map")])
def test_the_report_figure_is_bars_or_a_heat_map(rows, columns, kind):
    means = [[0.5 + 0.01 * r for r in range(rows)] for _ in range(columns)]
    stds = [[0.01] * rows for _ in range(columns)]
    figure = figures.report_figure([str(r) for r in range(rows)], [f"m{c}" for c in range(columns)], means, stds, "x")
    ax = figure.axes[0]
    assert (len(ax.patches) == rows * columns) == (kind == "bars")
    assert (len(ax.images) == 1) == (kind == "heat map")


def test_the_test_grid_titles_each_column_with_its_score_label_and_side_of_the_threshold():
    rng = np.random.default_rng(0)
    rows = {"input": rng.random((4, 8, 8, 3)), "score map": rng.random((4, 8, 8))}
    scores, labels = np.array([3.0, 2.0, 1.0, 0.5]), np.array([1, 0, 1, 0])
    figure = figures.extremes_figure(rows, scores, labels, threshold=1.5, per_block=2)
    titles = [(text.get_text(), text.get_color()) for ax in figure.axes for text in ax.texts]
    assert titles == [
        ("3 ≥ t\nanomalous", figures.ANOMALOUS),
        ("2 ≥ t\nnormal", figures.NORMAL),
        ("1 < t\nanomalous", figures.ANOMALOUS),
        ("0.5 < t\nnormal", figures.NORMAL),
    ]
    labels_left = [ax.get_ylabel() for ax in figure.axes if ax.get_ylabel()]
    assert labels_left[:3] == ["most anomalous\ninput", "score map", "least anomalous\ninput"]
    assert figure.axes[-1].get_ylabel() == "score map", "the maps' colour bar"


def test_a_small_overlay_is_shown_enlarged_with_its_title_and_the_maps_colour_bar():
    figure = figures.overlay_figure(np.zeros((8, 10, 3)), "x.png\nscore 2.5 · anomalous", (0.1, 0.9), "score map")
    _, bar = figure.axes
    assert [t.get_text() for t in figure.texts] == ["x.png\nscore 2.5 · anomalous"]
    assert bar.get_ylim() == (0.1, 0.9) and bar.get_ylabel() == "score map"
    assert figures.image(figure).shape == (3, 16 * 8 + 55, 16 * 10 + 130), "8 px → 128 px on the short side"
