"""The one pixel conversion (adrun.data.images): any mode PIL opens is decoded faithfully, and an image scores the
same whether it arrives as a dataset's tensor or as a file given to predict."""

import csv
import gzip

import numpy as np
import pytest
import torch
from PIL import Image

from adrun.data.images import decode, read
from tests.conftest import run
from tests.fixtures.idx import write_mnist


def test_sixteen_bit_and_wide_grey_are_scaled_not_saturated(tmp_path):
    levels = np.array([[0, 257 * 40, 257 * 130, 65535]], dtype=np.uint16)
    Image.fromarray(levels).save(tmp_path / "wide.png")
    with Image.open(tmp_path / "wide.png") as image:
        assert image.mode.startswith("I"), image.mode  # what PIL makes of a 16-bit grey PNG
    assert read(tmp_path / "wide.png").flatten().tolist() == [0, 40, 130, 255]
    Image.fromarray(levels.astype(np.int32), mode="I").save(tmp_path / "int.tif")
    assert read(tmp_path / "int.tif").flatten().tolist() == [0, 40, 130, 255]
    assert Image.open(tmp_path / "wide.png").convert("L").getextrema() == (0, 255), "PIL's own convert saturates"


@pytest.mark.parametrize("mode", ["1", "L", "LA", "P", "RGB", "RGBA", "CMYK"])
def test_every_common_mode_decodes_to_the_models_channels(mode, tmp_path):
    Image.new("RGB", (10, 6), (200, 100, 50)).convert(mode).save(tmp_path / "x.tif")
    grey, rgb = decode(tmp_path / "x.tif", 8, 1), decode(tmp_path / "x.tif", 8, 3)
    assert grey.shape == (1, 8, 8) and rgb.shape == (3, 8, 8) and grey.dtype == rgb.dtype == torch.uint8


def idx_images(path) -> np.ndarray:
    data = gzip.decompress(path.read_bytes())
    n, h, w = (int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(3))
    return np.frombuffer(data[16:], dtype=np.uint8).reshape(n, h, w)


def test_predict_on_pngs_exported_from_idx_scores_as_mode_test_does(tmp_path):
    """MNIST at 16 px: the IDX tensors are resized by the dataset path, the PNGs by predict's; one conversion, one
    score."""
    write_mnist(tmp_path / "idx", n_train=80, n_test=20)
    data = ("data=mnist", f"data.root={tmp_path / 'idx'}", f"data.cache_dir={tmp_path / 'cache'}")
    run(tmp_path / "trained", *data, "data.image_size=16", "data.batch_size=8", "method.epochs=1")
    run(tmp_path / "tested", "mode=test", f"ckpt={tmp_path / 'trained'}")
    tested = {row["id"]: float(row["score"]) for row in csv.DictReader((tmp_path / "tested" / "scores.csv").open())}
    exported = tmp_path / "png"
    exported.mkdir()
    for i, pixels in enumerate(idx_images(tmp_path / "idx" / "t10k-images-idx3-ubyte.gz")):
        Image.fromarray(pixels).save(exported / f"{i:02d}.png")
    run(tmp_path / "predicted", "mode=predict", f"ckpt={tmp_path / 'trained'}", f"input={exported}")
    rows = list(csv.DictReader((tmp_path / "predicted" / "predictions.csv").open()))
    assert len(rows) == len(tested) == 20
    for row in rows:
        i = int(row["path"].rsplit("/", 1)[1].removesuffix(".png"))
        assert float(row["score"]) == pytest.approx(tested[f"test/{i}"], rel=1e-6, abs=1e-6), row["path"]
