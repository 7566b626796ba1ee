"""Bad input, as a user meets it on the command line: one line `adrun: error: …` on stderr, exit status 2, no result,
and — for everything caught before training — no run dir either.

A row of BAD is (prepare, overrides, expected): `prepare(tmp_path, trained)` writes the files the run is pointed at
(paths in the overrides are relative to tmp_path, the run's working directory; `trained(method)` is a trained run dir);
`expected` is part of the one line the user sees. The command line runs in this process (`adrun_here`): the same
`adrun.cli.main` as the console script, without a fresh interpreter per case.
"""

import csv
import json
import shutil

import pytest
import torch
from PIL import Image

from tests.conftest import SMALL, run, tiny
from tests.fixtures.folder import write_folders
from tests.fixtures.mvtec import write_mvtec

TINY = [*SMALL, "method.epochs=1", "data.cache_dir=cache"]  # unless a row sets the key itself
FOLDER = [
    "data=folder",
    "data.train_dir=parts/train/good",
    "data.test_normal_dir=parts/test/good",
    "data.test_anomaly_dirs=[parts/test/scratch,parts/test/dent]",
]


def truncated_images(tmp_path, trained):
    """A PNG cut short after its header, and a TIFF after 10 bytes, on which PIL also warns "Corrupt EXIF data" (two
    lines on stderr, no file name). The decoder finishes every file before it raises for the first bad one (the PNG)."""
    dent = write_folders(tmp_path / "parts", masks=None) / "test" / "dent"
    png = tmp_path / "parts" / "test" / "scratch" / "s0.png"
    png.write_bytes(png.read_bytes()[:60])
    Image.new("L", (64, 64)).save(dent / "d2.tif")
    (dent / "d2.tif").write_bytes((dent / "d2.tif").read_bytes()[:10])


def empty_normal_folder(tmp_path, trained):
    for path in (write_folders(tmp_path / "parts", masks=None) / "train" / "good").iterdir():
        path.unlink()
    (tmp_path / "parts" / "train" / "good" / "notes.txt").write_text("not an image")


def a_trained_run(name: str):
    """A copy of the trained GANomaly run (3-channel synthetic textures, 16 px) at tmp_path/<name>."""
    return lambda tmp_path, trained: shutil.copytree(trained("ganomaly"), tmp_path / name)


NO_GPU = "hardware=gpu needs a machine without CUDA to fail"
# The bad inputs met so far, one row each. Each fails before training, except the NaN loss.
BAD = {
    "unknown method": (None, ["method=foo"], "unknown method 'foo'; choose one of: ada, anogan, "),
    "unknown data": (None, ["data=bar"], "unknown data 'bar'; choose one of: caltech256, cifar10, digits"),
    "unknown hardware": (None, ["hardware=tpu"], "unknown hardware 'tpu'; choose one of: cpu, "),
    "unknown mode": (None, ["mode=predcit"], "mode must be one of train, test, predict, got 'predcit'"),
    "typo in a key": (None, ["data.normal_clas=3"], "did you mean 'data.normal_class'?"),
    "a group's key without its group": (None, ["epochs=1"], "unknown key 'epochs' (did you mean 'method.epochs'?)"),
    "epochs of a phased method": (
        None,
        ["method=fanogan", "method.epochs=1"],
        "unknown key 'method.epochs' (did you mean 'method.gan_epochs' or 'method.encoder_epochs'?)",
    ),
    "threshold not a number": (None, ["threshold=high"], "threshold must be a number (a score) or null"),
    "quantile in percent": (None, ["threshold_quantile=99"], "threshold_quantile must be in (0, 1]"),
    "a GPU profile without a GPU": (
        None,
        ["hardware=gpu"],
        "this hardware profile needs a CUDA GPU and torch sees none",
    ),
    "a trainer argument against the method's": (
        None,
        ["method=anogan", "+trainer.inference_mode=true"],
        "trainer.inference_mode=True is set, but anogan needs inference_mode=False; leave trainer.inference_mode out",
    ),
    "missing data root": (
        None,
        ["data=mnist", "data.root=nowhere/mnist"],
        "MNIST not found: nowhere/mnist/train-images-idx3-ubyte[.gz] is missing",
    ),
    "wrong layout": (
        lambda tmp_path, trained: write_mvtec(tmp_path / "mvtec"),
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
        lambda tmp_path, trained: (tmp_path / "taken").write_text("a file, not a folder"),
        ["hydra.run.dir=taken/run"],
        "cannot use taken/run: Not a directory",
    ),
    "channel mismatch between data and checkpoint": (
        a_trained_run("textures"),
        ["ckpt=textures"],
        "checkpoint textures/checkpoints/last.ckpt was trained on 3-channel 16 px images; the data give 1-channel",
    ),
    "a checkpoint of another method": (
        a_trained_run("textures"),
        ["method=ada", "ckpt=textures", "data=synthetic"],
        "ckpt textures/checkpoints/last.ckpt holds a GANomaly model, but method= asks for ADA; leave method= out",
    ),
    "a finished run dir again": (
        a_trained_run("done"),
        ["hydra.run.dir=done"],
        "done already holds a run (status ok); resume=true continues it (or skips it if it finished), or choose",
    ),
    "missing checkpoint": (None, ["ckpt=nowhere/last.ckpt"], "ckpt=nowhere/last.ckpt: no checkpoint there"),
    "NaN loss": (
        None,
        ["data=synthetic", "method.lr=1e12"],
        "non-finite loss: train/loss_g = nan at epoch 0, batch 1; training stopped, the last good checkpoint is kept",
    ),
}
TRAINS = {"NaN loss"}  # fails during training: its run dir stays, with `failed` in results.json


@pytest.mark.parametrize("case", BAD)
def test_bad_input_is_one_line_and_exit_2(case, tmp_path, trained, adrun_here):
    prepare, overrides, expected = BAD[case]
    if case == "a GPU profile without a GPU" and torch.cuda.is_available():
        pytest.skip(NO_GPU)
    if prepare is not None:
        prepare(tmp_path, trained)
    before = set(tmp_path.rglob("*"))
    keys = {override.split("=")[0] for override in overrides}
    code, _, err = adrun_here(*[arg for arg in TINY if arg.split("=")[0] not in keys], *overrides, cwd=tmp_path)
    lines = err.strip().splitlines()
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith("adrun: error: ") and expected in lines[0], err
    # Hydra writes .hydra/ into an existing run dir before adrun runs (a refused finished run's included)
    new = set(tmp_path.rglob("*")) - before
    made = [path for path in new if path.is_file() and not {"cache", ".hydra"} & set(path.parts)]
    results = [json.loads(path.read_text()) for path in made if path.name == "results.json"]
    assert not [r for r in results if r.get("status") == "ok"], "a failed run leaves no result"
    if case in TRAINS:
        assert [r["status"] for r in results] == ["failed"]
    else:
        assert made == [], "an error caught before training leaves no run dir"


def test_a_trainer_argument_the_method_needs_anyway_is_accepted(tmp_path):
    results = run(tmp_path / "run", *tiny("anogan", "+trainer.inference_mode=false"))
    assert results["status"] == "ok"


def test_predict_takes_the_checkpoints_method_and_honours_its_keys(trained, tmp_path, adrun_here):
    """`mode=predict ckpt=<AnoGAN run> method.iterations=…` without `method=anogan`: the key is AnoGAN's, and used."""
    images = tmp_path / "images"
    images.mkdir()
    for i in range(3):
        Image.new("RGB", (16, 16), color=(60 * i, 20, 200 - 50 * i)).save(images / f"{i}.png")
    scores = {}
    for iterations in (3, 40):
        code, _, err = adrun_here(
            "mode=predict",
            f"ckpt={trained('anogan')}",
            f"input={images}",
            f"method.iterations={iterations}",
            f"hydra.run.dir=predict{iterations}",
            cwd=tmp_path,
        )
        assert code == 0, err
        rows = csv.DictReader((tmp_path / f"predict{iterations}" / "predictions.csv").open())
        scores[iterations] = [float(row["score"]) for row in rows]
    assert all(long < short for short, long in zip(scores[3], scores[40], strict=True)), "40 search steps fit better"
