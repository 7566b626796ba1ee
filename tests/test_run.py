"""A whole tiny run (synthetic data, 1 epoch) writes every artefact, and TensorBoard holds every kind of record."""

import csv
import json
import re

import pytest
import yaml
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from tests.conftest import METRICS_WITH_MASKS, RUN_DIR

EVERYTHING = {"images": 0, "scalars": 0, "tensors": 0}  # 0 = keep every record


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    from tests.conftest import run, tiny

    run_dir = tmp_path_factory.mktemp("run") / "run"
    return run(run_dir, *tiny()), run_dir


def test_results_json(finished):
    results, run_dir = finished
    saved = json.loads((run_dir / "results.json").read_text())
    assert saved == json.loads(json.dumps(results, default=str))
    assert saved["status"] == "ok" and (saved["method"], saved["data"]) == ("ganomaly", "synthetic")
    assert set(saved["metrics"]) == METRICS_WITH_MASKS
    assert all(0 <= v <= 1 for v in saved["metrics"].values())
    low, high = saved["pixel_auroc_ci95"]
    assert (
        low <= saved["metrics"]["pixel_auroc"] <= high
        and "the unit is the test image" in saved["pixel_interval_method"]
    )
    assert saved["counts"] == {"train": 43, "val": 5, "test": 32, "test_anomalous": 16}
    timings = saved["timings"]
    assert timings["fit_s"] > 0 and timings["train_images_per_s"] > 0 and timings["test_images_per_s"] > 0
    assert saved["seed"] == 0 and "config" not in saved, "the config is in config.yaml, once"
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert config["method"]["w_con"] == 50 and config["data"]["image_size"] == 16
    assert {"torch", "pytorch-lightning", "hydra-core"} <= set(saved["versions"])


def test_scores_csv_has_one_row_per_test_sample(finished):
    _, run_dir = finished
    rows = list(csv.DictReader((run_dir / "scores.csv").open()))
    assert [int(r["index"]) for r in rows] == list(range(32))
    assert all(r["id"].startswith("synthetic/test/") for r in rows)
    assert sum(int(r["label"]) for r in rows) == 16 and all(float(r["score"]) >= 0 for r in rows)


def test_checkpoint(finished):
    _, run_dir = finished
    assert (run_dir / "checkpoints" / "last.ckpt").stat().st_size > 0


def test_the_log_keeps_what_the_run_said(finished):
    _, run_dir = finished
    lines = (run_dir / "adrun.log").read_text().splitlines()
    assert lines and "[adrun] ganomaly on synthetic (normal: texture): image AUROC" in lines[-1]
    pixel = r" · pixel AUROC [01]\.\d{4} \[[01]\.\d{3}, [01]\.\d{3}\] · AUPRO [01]\.\d{4} · "
    assert re.search(pixel, lines[-1]), "masks: pixel figures too, the pixel AUROC with its interval"
    warning = "the threshold is the 0.99 quantile of only 5 validation normals (the FPR it sets moves in steps of 1/5"
    assert any(warning in line for line in lines), "a threshold on few normals says so"


def test_the_run_dir_holds_one_config(finished):
    _, run_dir = finished
    assert sorted(p.name for p in run_dir.iterdir()) == RUN_DIR


def test_tensorboard_has_scalars_images_pr_curve_and_hparams(finished):
    _, run_dir = finished
    events = EventAccumulator(str(run_dir / "tb"), size_guidance=EVERYTHING)
    events.Reload()
    tags = events.Tags()
    assert {"train/loss_g", "train/loss_d", "train/con", "val/score_mean", "test/image_auroc"} <= set(tags["scalars"])
    assert {"test/pixel_auroc", "test/pixel_aupro"} <= set(tags["scalars"])
    assert "test/most_and_least_anomalous" in tags["images"]
    grid = events.Images("test/most_and_least_anomalous")[0]
    # 8 most and 8 least anomalous samples, each a column titled with its score and label; rows: input, reconstruction,
    # map, mask (figures.extremes_figure: 1.15 in per column + 1.6, 1.25 in per row + 0.4, at 90 dpi)
    assert (grid.width, grid.height) == (round((1.15 * 8 + 1.6) * 90), round((1.25 * 8 + 0.4) * 90))
    assert "test/pr_curve" in events.PluginTagToContent("pr_curves")
    axis = events.Tensors("test/pr_curve_threshold_axis/text_summary")[0].tensor_proto.string_val[0].decode()
    assert axis.startswith("threshold t on the PR curve ↔ score ") and "the calibrated threshold" in axis
    histogram, roc = events.Images("test/score_histogram")[0], events.Images("test/roc_curve")[0]
    assert (histogram.width, histogram.height, roc.width, roc.height) == (600, 360, 420, 420)
    assert histogram.step == roc.step == grid.step == events.Scalars("test/image_auroc")[0].step, "one step for a test"
    hparams = events.PluginTagToContent("hparams")
    assert {"_hparams_/experiment", "_hparams_/session_start_info"} <= set(hparams)
    assert (
        b"test/image_auroc" in hparams["_hparams_/experiment"]
        and b"ganomaly" in hparams["_hparams_/session_start_info"]
        and all(k in hparams["_hparams_/session_start_info"] for k in (b"data.test_subset", b"data.channels"))
    )
