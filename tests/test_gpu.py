"""On a CUDA GPU (`hardware=gpu`, 16-mixed): one epoch of every method, then `mode=test` and `mode=predict` on its
checkpoint. Skipped without CUDA (tests/conftest.py); a GPU-only bug once failed every `hardware=gpu` run at its end."""

import csv

import pytest
from PIL import Image

from tests.conftest import METHODS, run, tiny


@pytest.mark.gpu
@pytest.mark.parametrize("method", METHODS)
def test_every_method_trains_tests_and_predicts_on_a_gpu(method, tmp_path):
    trained = run(tmp_path / "train", *tiny(method, "hardware=gpu", "hardware.num_workers=0"))
    assert trained["status"] == "ok" and trained["metrics"]["image_auroc"] is not None
    tested = run(tmp_path / "test", "mode=test", f"ckpt={tmp_path / 'train'}", "hardware=gpu")
    assert tested["metrics"]["image_auroc"] == pytest.approx(trained["metrics"]["image_auroc"], abs=1e-6)
    images = tmp_path / "images"
    images.mkdir()
    for i in range(3):
        Image.new("RGB", (24, 20), (80 * i, 40, 200 - 60 * i)).save(images / f"{i}.png")
    predicted = run(
        tmp_path / "predict", "mode=predict", f"ckpt={tmp_path / 'train'}", f"input={images}", "hardware=gpu"
    )
    rows = list(csv.DictReader((tmp_path / "predict" / "predictions.csv").open()))
    assert predicted["counts"]["images"] == len(rows) == 3
