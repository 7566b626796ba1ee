"""Using a trained model: mode=predict on new images, mode=test on a checkpoint, and the threshold calibrated on
validation normals (never on test labels) that both use."""

import csv
import json
from pathlib import Path

import pytest
import torch
from PIL import Image

from tests.conftest import run
from tests.fixtures.folder import ANOMALIES, write_folders

SIZE = 16


def train(tmp: Path, *overrides: str) -> Path:
    """A method trained for two epochs on the folder fixture (grey and RGB, PNG and JPEG files) into tmp/run."""
    root = write_folders(tmp / "parts", masks=None)
    anomaly_dirs = ",".join(f"'{root / 'test' / name}'" for name in ANOMALIES)
    run(
        tmp / "run",
        "data=folder",
        f"data.train_dir='{root / 'train' / 'good'}'",
        f"data.test_normal_dir='{root / 'test' / 'good'}'",
        f"data.test_anomaly_dirs=[{anomaly_dirs}]",
        "data.mask_dir=null",
        f"data.image_size={SIZE}",
        "data.val_fraction=0.25",
        "data.batch_size=4",
        f"data.cache_dir={tmp}/cache",
        "method.epochs=2",
        *overrides,
    )
    return tmp


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    return train(tmp_path_factory.mktemp("use"))


def use(trained: Path, name: str, *overrides: str) -> dict:
    return run(trained / name, f"ckpt={trained / 'run'}", *overrides)


def test_predict_writes_a_row_and_an_overlay_of_its_own_size_for_every_image(trained):
    mixed = trained / "mixed"
    for i, (size, mode) in enumerate([((40, 30), "L"), ((7, 9), "RGB"), ((64, 64), "RGBA"), ((50, 20), "P")]):
        (mixed / f"sub{i % 2}").mkdir(parents=True, exist_ok=True)
        Image.new(mode, size, color=i * 60).save(mixed / f"sub{i % 2}" / f"x{i}.png")
    (mixed / "notes.txt").write_text("not an image")
    results = use(trained, "predict_mixed", "mode=predict", f"input={mixed}")
    rows = list(csv.DictReader((trained / "predict_mixed" / "predictions.csv").open()))
    assert [Path(r["path"]).name for r in rows] == ["x0.png", "x2.png", "x1.png", "x3.png"]
    assert all(r["decision"] in ("normal", "anomalous") for r in rows)
    for row in rows:
        source = Path(row["path"])
        made = trained / "predict_mixed" / "overlays" / f"{source.parent.name}__{source.stem}.png"
        w, h = Image.open(source).size
        zoom = max(1, -(-128 // min(w, h)))  # shown enlarged to 128 px when smaller, at its own aspect
        assert Image.open(made).size == (round(w * zoom + 130), round(h * zoom + 55)), "image + colour bar + title"
    from adrun.checkpoints import Checkpoint

    map_scale = Checkpoint.open(trained / "run").contents["state_dict"]["map_scale"].tolist()
    assert map_scale[0] < map_scale[1], "calibration stored the validation normals' map range"
    assert results["overlay_scale"] == {"range": map_scale, "from": "validation normals' range"}
    by_call = use(trained, "predict_by_call", "mode=predict", f"input={mixed}", "overlay_scale=call")
    assert by_call["overlay_scale"]["from"] == "this call's min–max" and by_call["overlay_scale"]["range"] != map_scale
    flagged = sum(r["decision"] == "anomalous" for r in rows)
    assert results["counts"] == {"images": 4, "anomalous": flagged, "unreadable": 0}
    events = list((trained / "predict_mixed" / "tb").glob("events.out.tfevents.*"))
    assert events and sum(e.stat().st_size for e in events) > 1000, "the overlays are in TensorBoard too"
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tb = EventAccumulator(str(trained / "predict_mixed" / "tb"), size_guidance={"images": 0})
    tb.Reload()
    assert tb.Tags()["images"] == ["predict/overlays"], "one picture per call, not a tag per image"


def test_predict_scores_every_readable_file_and_lists_each_unreadable_one(trained, adrun_here):
    folder = trained / "damaged"
    folder.mkdir()
    for name in ("a", "c"):
        Image.new("L", (20, 20), color=90).save(folder / f"{name}.png")
    (folder / "b.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    (folder / "d.jpg").write_bytes(b"")
    results = use(trained, "damaged_run", "mode=predict", f"input={folder}")
    rows = list(csv.DictReader((trained / "damaged_run" / "predictions.csv").open()))
    assert [(Path(r["path"]).name, r["decision"]) for r in rows][1::2] == [
        ("b.png", "unreadable"),
        ("d.jpg", "unreadable"),
    ]
    assert all(r["decision"] in ("normal", "anomalous") and float(r["score"]) and not r["error"] for r in rows[::2])
    assert "cannot read image" in rows[1]["error"] and "d.jpg" in rows[3]["error"]
    assert results["counts"]["images"] == 2 and results["counts"]["unreadable"] == 2
    code, _, err = adrun_here(
        f"ckpt={trained / 'run'}",
        "mode=predict",
        f"input={folder}",
        "strict=true",
        f"hydra.run.dir={trained / 'damaged_strict'}",
        cwd=trained,
    )
    assert code == 2 and "strict=true: 2 of 4 input files could not be read" in err
    assert len(list(csv.DictReader((trained / "damaged_strict" / "predictions.csv").open()))) == 4


@pytest.mark.parametrize("method", ["ganomaly", "anogan"])
def test_predict_scores_equal_those_of_mode_test_for_the_same_images(method, trained, tmp_path):
    """AnoGAN included: its latent search starts from a z_0 seeded by the image, not by its place in a set."""
    if method == "anogan":
        trained = train(tmp_path, "method=anogan", "method.iterations=5", "method.nz=8", "method.ngf=8", "method.ndf=8")
    use(trained, "retest", "mode=test")
    tested = {r["id"]: float(r["score"]) for r in csv.DictReader((trained / "retest" / "scores.csv").open())}
    use(trained, "predict_test", "mode=predict", f"input={trained / 'parts' / 'test'}")
    predicted = {
        r["path"]: float(r["score"]) for r in csv.DictReader((trained / "predict_test" / "predictions.csv").open())
    }
    assert predicted.keys() == tested.keys() and len(tested) == 9
    for path, score in predicted.items():
        assert score == pytest.approx(tested[path], rel=1e-6), path


def test_mode_test_reproduces_the_training_runs_metrics_exactly(trained):
    again = use(trained, "retest2", "mode=test")
    first = json.loads((trained / "run" / "results.json").read_text())
    assert again["metrics"] == first["metrics"] and again["mode"] == "test" and again["timings"]["fit_s"] == 0
    assert (trained / "retest2" / "scores.csv").read_text() == (trained / "run" / "scores.csv").read_text()


def test_the_stored_threshold_is_the_quantile_of_the_validation_normals_scores(trained):
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    from adrun.checkpoints import Checkpoint
    from adrun.methods.ganomaly import GANomaly

    checkpoint = Checkpoint.open(trained / "run")
    module = GANomaly.load_from_checkpoint(checkpoint.path).eval()
    datamodule = instantiate(OmegaConf.create(checkpoint.config).data)
    datamodule.setup("fit")
    normals = datamodule.val_set.subset((datamodule.val_set.labels == 0).nonzero().flatten())
    with torch.no_grad():
        scores = module.score(normals.__getitems__(list(range(len(normals))))).image
    assert int(checkpoint.contents["state_dict"]["threshold_normals"]) == len(normals) == 3
    assert checkpoint.threshold == pytest.approx(torch.quantile(scores.double(), 0.99).item(), rel=1e-6)
    results = json.loads((trained / "run" / "results.json").read_text())
    assert results["threshold"]["value"] == checkpoint.threshold and not results["threshold"]["given"]
    assert results["threshold"]["calibrated"] == {"threshold": checkpoint.threshold, "quantile": 0.99, "normals": 3}
    assert (
        0 <= results["metrics"]["image_fpr_at_threshold"] <= 1
        and 0 <= results["metrics"]["image_tpr_at_threshold"] <= 1
    )


def test_a_given_threshold_decides_and_sets_the_test_rates(trained):
    low = use(trained, "low", "mode=test", "threshold=-1e9")
    assert low["threshold"]["value"] == -1e9 and low["threshold"]["given"]
    assert low["metrics"]["image_fpr_at_threshold"] == 1.0 and low["metrics"]["image_tpr_at_threshold"] == 1.0
    use(trained, "high", "mode=predict", f"input={trained / 'parts' / 'test' / 'good'}", "threshold=1e9")
    rows = list(csv.DictReader((trained / "high" / "predictions.csv").open()))
    assert len(rows) == 4 and {r["decision"] for r in rows} == {"normal"}


def test_a_checkpoint_rescored_with_another_score_is_calibrated_again_as_if_trained_with_it(trained, tmp_path):
    """GANomaly's score_norm changes the score, not the training: re-testing with it must equal training with it,
    threshold included (the checkpoint's threshold is a quantile of the other score)."""
    rescored = use(trained, "rescored", "mode=test", "method.score_norm=mse")
    direct = json.loads((train(tmp_path, "method.score_norm=mse") / "run" / "results.json").read_text())
    assert rescored["threshold"]["calibrated"] == direct["threshold"]["calibrated"]
    assert rescored["metrics"] == pytest.approx(direct["metrics"], rel=1e-6)
    first = json.loads((trained / "run" / "results.json").read_text())
    assert rescored["threshold"]["calibrated"]["threshold"] != first["threshold"]["calibrated"]["threshold"]


def test_a_retest_keeps_the_training_runs_seed_unless_given(tmp_path):
    """adrun-report pairs runs by seed: a re-test of a seed-1 model filed as seed 0 would pair with the wrong run."""
    trained = train(tmp_path, "seed=1", "method.epochs=1")
    assert use(trained, "retest", "mode=test")["seed"] == 1
    assert use(trained, "retest_seed2", "mode=test", "seed=2")["seed"] == 2


def test_predict_with_another_score_decides_at_the_threshold_calibrated_for_that_score(trained):
    """Predicting with `method.score_norm=mse` must not apply the checkpoint's L1 threshold to MSE scores."""
    rescored = use(trained, "rescored_for_predict", "mode=test", "method.score_norm=mse")
    images = trained / "parts" / "test" / "good"
    predicted = use(trained, "predict_mse", "mode=predict", f"input={images}", "method.score_norm=mse")
    assert predicted["threshold"]["calibrated"] == rescored["threshold"]["calibrated"]
    assert predicted["threshold"]["value"] == rescored["threshold"]["calibrated"]["threshold"]
    given = use(trained, "predict_mse_given", "mode=predict", f"input={images}", "method.score_norm=mse", "threshold=1")
    assert given["threshold"]["value"] == 1 and given["threshold"]["given"]
