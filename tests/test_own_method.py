"""A researcher's own method, as a user brings it: a module on PYTHONPATH and a config dir with `method/<name>.yaml`.
It trains, sweeps, resumes, runs under DDP, and is tested and used from its checkpoint alone (no config dir); a class
that breaks the contract, and a value of the wrong type, are one line, exit status 2, and no run dir — early."""

import json
import textwrap
from pathlib import Path

import pytest

from tests.conftest import SMALL

MODULE = '''
import torch
from torch import nn

from adrun import AnomalyModule, Count, Scores


class Mean(AnomalyModule):
    """The training images' mean; the score is the squared distance to it."""

    def __init__(self, image_size: int, channels: int, lr: float = 0.05, epochs: Count = 1):
        super().__init__()
        self.save_hyperparameters()
        self.mean = nn.Parameter(torch.zeros(channels, image_size, image_size))

    def training_step(self, batch, batch_idx):
        loss = ((batch["image"] - self.mean) ** 2).mean()
        self.log("train/loss", loss)
        return loss

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=self.hparams.lr)

    def score(self, batch):
        residual = ((batch["image"] - self.mean) ** 2).mean(1, keepdim=True)
        return Scores(image=residual.flatten(1).mean(1), map=residual)


class NoScore(AnomalyModule):
    def __init__(self, image_size: int, channels: int, epochs: int = 1):
        super().__init__()


class SmallMap(Mean):
    def score(self, batch):
        scores = super().score(batch)
        return Scores(image=scores.image, map=scores.map[..., ::2, ::2])


class NoEpochs(Mean):
    def __init__(self, image_size: int, channels: int, lr: float = 0.05):
        super().__init__(image_size, channels, lr)
'''
DATA = ("data=synthetic", *SMALL)


@pytest.fixture
def own(tmp_path, monkeypatch):
    """A user's module (on sys.path, as PYTHONPATH puts it) and config dir; returns the search path override."""
    code = tmp_path / "code"
    (code / "conf" / "method").mkdir(parents=True)
    (code / "mine.py").write_text(MODULE)
    for name, target in (("mean", "Mean"), ("no_score", "NoScore"), ("small_map", "SmallMap")):
        (code / "conf" / "method" / f"{name}.yaml").write_text(f"_target_: mine.{target}\nlr: 0.05\nepochs: 1\n")
    (code / "conf" / "method" / "no_epochs.yaml").write_text("_target_: mine.NoEpochs\nlr: 0.05\n")
    monkeypatch.syspath_prepend(str(code))
    monkeypatch.setenv("PYTHONPATH", str(code))  # for processes the run starts (DDP ranks)
    return f"hydra.searchpath=[file://{code / 'conf'}]"


def results(run_dir: Path) -> dict:
    return json.loads((run_dir / "results.json").read_text())


def test_an_own_method_trains_and_is_tested_and_used_from_its_checkpoint_alone(own, tmp_path, adrun_here):
    code, out, err = adrun_here("method=mean", own, *DATA, "hydra.run.dir=trained", cwd=tmp_path)
    assert code == 0, err[-2000:]
    trained = results(tmp_path / "trained")
    assert trained["status"] == "ok" and trained["method"] == "mean"
    assert 0 <= trained["metrics"]["image_auroc"] <= 1 and trained["threshold"]["value"] is not None
    assert "mean on synthetic" in out
    # later uses: no config dir, only the importable class
    code, _, err = adrun_here("mode=test", "ckpt=trained", "hydra.run.dir=tested", cwd=tmp_path)
    assert code == 0, err[-2000:]
    tested = results(tmp_path / "tested")
    assert tested["metrics"] == trained["metrics"], "the same weights score the same"
    assert tested["method"] == "mean", "named as its training run named it (the checkpoint keeps the name)"
    images = tmp_path / "new"
    images.mkdir()
    from PIL import Image

    for i in range(2):
        Image.new("L", (16, 16), 40 * i).save(images / f"{i}.png")
    code, _, err = adrun_here("mode=predict", "ckpt=trained", f"input={images}", "hydra.run.dir=used", cwd=tmp_path)
    assert code == 0, err[-2000:]
    assert (tmp_path / "used" / "predictions.csv").read_text().count(".png") == 2


def test_an_own_method_resumes_and_sweeps(own, tmp_path, adrun_here):
    code, _, err = adrun_here("method=mean", own, *DATA, "hydra.run.dir=run", cwd=tmp_path)
    assert code == 0, err[-2000:]
    code, out, _ = adrun_here("method=mean", own, *DATA, "hydra.run.dir=run", "resume=true", cwd=tmp_path)
    assert code == 0 and "finished before" in out
    code, _, err = adrun_here("-m", "method=mean", own, *DATA, "seed=0,1", "hydra.sweep.dir=sweep", cwd=tmp_path)
    assert code == 0, err[-2000:]
    assert [results(tmp_path / "sweep" / job)["method"] for job in "01"] == ["mean", "mean"]


def test_an_own_method_trains_under_ddp(own, tmp_path, adrun_here):
    """The extra rank is another process: it imports the class from PYTHONPATH as rank 0 did."""
    code, _, err = adrun_here("method=mean", own, *DATA, "hardware=cpu_ddp", "hydra.run.dir=ddp", cwd=tmp_path)
    assert code == 0, err[-2000:]
    assert results(tmp_path / "ddp")["processes"] == 2


@pytest.mark.parametrize(
    ("method", "said"),
    [
        ("no_score", "NoScore has no score(batch) -> Scores"),
        ("small_map", "map must be [2, 1, 16, 16] (at the input's size), got [2, 1, 8, 8]"),
        ("no_epochs", "NoEpochs takes no `epochs` and does not override trainer_epochs"),
    ],
)
def test_a_class_that_breaks_the_contract_is_one_line_before_anything_trains(own, tmp_path, adrun_here, method, said):
    code, out, err = adrun_here(f"method={method}", own, *DATA, "hydra.run.dir=run", cwd=tmp_path)
    assert code == 2 and said in err and len(err.strip().splitlines()) == 1, err
    assert "Epoch" not in out, "refused before training"
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (("method=mean", "method.epochs=abc"), "method.epochs must be an integer ≥ 1, got 'abc'"),
        (("method=mean", "method.epochs=1.5"), "method.epochs must be an integer ≥ 1, got 1.5"),
        (("method=mean", "method.epochs=0"), "method.epochs must be an integer ≥ 1, got 0"),
        (("method=mean", "method.lr=fast"), "method.lr must be a number, got 'fast'"),
        (("method=fanogan", "method.gan_epochs=0"), "method.gan_epochs must be an integer ≥ 1, got 0"),
        (("method=ognet", "method.phase2_iterations=2.5"), "method.phase2_iterations must be an integer ≥ 1"),
        (("method=students", "method.teacher_iterations=-1"), "method.teacher_iterations must be an integer ≥ 1"),
        (("method=ganomaly", "trainer.max_epochs=1"), "unknown key 'trainer.max_epochs' (the method sets the epochs: "),
        (("+foo=1",), "unknown key 'foo': nothing reads it"),
        (("method._target_=mine.Mean",), "method.nz: Mean has no such parameter"),
        (("method=ganomaly", "method._target_=nowhere.Mine"), "cannot import 'nowhere'; put the folder that holds"),
    ],
)
def test_a_value_a_user_types_wrong_is_one_line_and_exit_2_with_nothing_written(own, tmp_path, adrun_here, args, said):
    code, _, err = adrun_here(*args, own, *DATA, "hydra.run.dir=run", cwd=tmp_path)
    assert code == 2 and said in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "run").exists()


def test_an_own_method_without_pythonpath_says_what_to_do(tmp_path, adrun_here):
    conf = tmp_path / "conf" / "method"
    conf.mkdir(parents=True)
    (conf / "unseen.yaml").write_text("_target_: unseen_module.TinyAE\nepochs: 1\n")
    searchpath = f"hydra.searchpath=[file://{tmp_path / 'conf'}]"
    code, _, err = adrun_here("method=unseen", searchpath, *DATA, cwd=tmp_path)
    assert code == 2 and "PYTHONPATH" in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "outputs").exists(), "no empty run dir left behind"
    code, _, err = adrun_here("method=unseen", *DATA, cwd=tmp_path)
    assert code == 2 and "unknown method 'unseen'" in err and "hydra.searchpath" in err, err


def test_a_method_given_by_its_target_alone_is_filed_under_its_module(own, tmp_path, adrun_here):
    code, _, err = adrun_here("~method", "+method._target_=mine.Mean", "+method.epochs=1", *DATA, cwd=tmp_path)
    assert code == 0, err[-2000:]
    [run_dir] = (tmp_path / "outputs" / "runs").glob("*/*/*")
    assert run_dir.parts[-3] == "mine" and results(run_dir)["method"] == "mine"


def test_the_python_api_runs_what_the_cli_runs(own, tmp_path, adrun_here, monkeypatch):
    import adrun

    args = ["method=mean", own, *DATA, "seed=3"]
    code, _, err = adrun_here(*args, "hydra.run.dir=cli", cwd=tmp_path)
    assert code == 0, err[-2000:]
    run = adrun.run(args, run_dir=tmp_path / "api")
    assert run.metrics == results(tmp_path / "cli")["metrics"]
    assert (tmp_path / "api" / "scores.csv").read_bytes() == (tmp_path / "cli" / "scores.csv").read_bytes()
    assert run.results["overrides"] == args and run.config["seed"] == 3
    assert len(run.scores["score"]) == run.results["counts"]["test"]
    assert adrun.load(tmp_path / "api").metrics == run.metrics
    table = adrun.report([tmp_path / "api"])
    column = table.splitlines()[0].split("|")[2].strip()
    assert column == "mean[data.batch_size=8]", "the column is named after the method, tagged with how it was fed"
    with pytest.raises(adrun.UserError, match=r"^method.epochs must be an integer ≥ 1, got 0$"):
        adrun.run([*args, "method.epochs=0"], run_dir=tmp_path / "refused")
    assert not (tmp_path / "refused").exists()
    with pytest.raises(adrun.UserError, match=r"unknown key 'method\.epoch'"):
        adrun.run(["method.epoch=3"], run_dir=tmp_path / "refused")


def test_the_stable_names_are_importable_from_the_package_root():
    import adrun

    for name in ("AnomalyModule", "Scores", "UserError", "Count", "run", "load", "report", "Run"):
        assert getattr(adrun, name) is not None
    assert textwrap.dedent(adrun.__doc__).count("stable") >= 1
