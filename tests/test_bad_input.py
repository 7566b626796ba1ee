"""Bad input, as a user meets it on the command line: one line `adrun: error: …` on stderr, exit status 2, no result.

A row of BAD is (prepare, overrides, expected): `prepare(tmp_path)` writes the files the run is pointed at (paths in
the overrides are relative to tmp_path, the run's working directory); `expected` is part of the one line the user sees.
"""

import json

import pytest
from PIL import Image

from tests.data.test_folder import write_folders
from tests.data.test_mvtec import write_mvtec
from tests.test_cli import adrun

TINY = ["method.epochs=1", "data.image_size=16", "data.cache_dir=cache"]  # unless a row sets the key itself
FOLDER = [
    "data=folder",
    "data.train_dir=parts/train/good",
    "data.test_normal_dir=parts/test/good",
    "data.test_anomaly_dirs=[parts/test/scratch,parts/test/dent]",
]


def truncated_images(tmp_path):
    """A PNG cut short after its header, and a TIFF after 10 bytes, on which PIL also warns "Corrupt EXIF data" (two
    lines on stderr, no file name). The decoder finishes every file before it raises for the first bad one (the PNG)."""
    dent = write_folders(tmp_path / "parts", masks=None) / "test" / "dent"
    png = tmp_path / "parts" / "test" / "scratch" / "s0.png"
    png.write_bytes(png.read_bytes()[:60])
    Image.new("L", (64, 64)).save(dent / "d2.tif")
    (dent / "d2.tif").write_bytes((dent / "d2.tif").read_bytes()[:10])


def empty_normal_folder(tmp_path):
    for path in (write_folders(tmp_path / "parts", masks=None) / "train" / "good").iterdir():
        path.unlink()
    (tmp_path / "parts" / "train" / "good" / "notes.txt").write_text("not an image")


def grey_checkpoint(tmp_path):
    """A real run on the digits (1 channel, 16 px): its checkpoints/last.ckpt, for data with 3 channels."""
    from adrun.cli import run
    from tests.conftest import composed

    run(
        composed("data.image_size=16", "method.epochs=1", f"data.cache_dir={tmp_path}/cache"), run_dir=tmp_path / "grey"
    )
    (tmp_path / "grey" / "results.json").unlink()  # only the checkpoint is wanted here; the test looks for results


# The list of bad inputs, one row each. Each must fail before training, except the NaN loss.
BAD = {
    "unknown method": (None, ["method=foo"], "unknown method 'foo'; choose one of: ada, anogan, "),
    "unknown data": (None, ["data=bar"], "unknown data 'bar'; choose one of: caltech256, cifar10, digits"),
    "unknown hardware": (None, ["hardware=tpu"], "unknown hardware 'tpu'; choose one of: cpu, "),
    "typo in a key": (None, ["data.normal_clas=3"], "did you mean 'data.normal_class'?"),
    "missing data root": (
        None,
        ["data=mnist", "data.root=nowhere/mnist"],
        "MNIST not found: nowhere/mnist/train-images-idx3-ubyte[.gz] is missing",
    ),
    "wrong layout": (
        lambda tmp_path: write_mvtec(tmp_path / "mvtec"),
        ["data=mvtec", "data.root=mvtec/bottle"],
        "data.root=mvtec/bottle is itself a category folder (it holds train/), but data.root is the folder that "
        "holds the categories: set data.root=mvtec data.category=bottle",
    ),
    "corrupt image": (truncated_images, FOLDER, "cannot read image parts/test/scratch/s0.png: "),
    "empty class": (empty_normal_folder, FOLDER, "data.train_dir parts/train/good holds no images"),
    "normal_class outside": (None, ["data.normal_class=10"], "data.normal_class=10 is not a class of Digits"),
    "image size the method cannot take": (
        None,
        ["method=ganomaly", "data.image_size=24"],
        "image size 24 is not a power of two ≥ 16; set data.image_size to 16, 32, 64",
    ),
    "output dir that cannot be written": (
        lambda tmp_path: (tmp_path / "taken").write_text("a file, not a folder"),
        ["hydra.run.dir=taken/run"],
        "cannot use taken/run: Not a directory",
    ),
    "channel mismatch between data and checkpoint": (
        grey_checkpoint,
        ["ckpt=grey", "data.channels=3"],
        "checkpoint grey/checkpoints/last.ckpt was trained on 1-channel 16 px images; the data give 3-channel 16 px",
    ),
    "missing checkpoint": (None, ["ckpt=nowhere/last.ckpt"], "ckpt=nowhere/last.ckpt: no checkpoint there"),
    "NaN loss": (
        None,
        ["data=synthetic", "method.lr=1e12"],
        "non-finite loss: train/loss_g = nan at epoch 0, batch 1; training stopped, the last good checkpoint is kept",
    ),
}


@pytest.mark.parametrize("case", BAD)
def test_bad_input_is_one_line_and_exit_2(case, tmp_path):
    prepare, overrides, expected = BAD[case]
    if prepare is not None:
        prepare(tmp_path)
    keys = {override.split("=")[0] for override in overrides}
    out = adrun(*[arg for arg in TINY if arg.split("=")[0] not in keys], *overrides, cwd=tmp_path)
    lines = out.stderr.strip().splitlines()
    assert out.returncode == 2, out.stderr
    assert len(lines) == 1 and lines[0].startswith("adrun: error: ") and expected in lines[0], out.stderr
    results = [json.loads(path.read_text()) for path in tmp_path.rglob("results.json")]
    assert not [r for r in results if r.get("status") == "ok"], "a failed run leaves no result"
