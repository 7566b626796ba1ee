"""Shared test helpers: adrun's real config composed as the CLI composes it, one set of tiny settings, and one trained
model per method for every test that only needs a trained model.

`tiny(method, *overrides)` is the one definition of a tiny run: synthetic data at 16 px (20 px for OGNet, whose
valid convolutions need more), batches of 8, and each method's smallest settings that still train every network.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from adrun.cli import config_dir

if os.environ.get("PYTEST_XDIST_WORKER"):
    # The suite runs on pytest-xdist's workers, one per core (pyproject's addopts): one torch thread each, and in every
    # process a test starts (OMP_NUM_THREADS), so the workers share the cores instead of spin-waiting for each other's.
    import torch

    os.environ["OMP_NUM_THREADS"] = "1"
    torch.set_num_threads(1)

# Every metric results.json holds for a method without score variants on data with masks.
METRICS_WITH_MASKS = {"image_auroc", "image_ap", "image_f1", "image_eer", "image_f1_eer", "pixel_auroc", "pixel_aupro"}
METRICS_WITH_MASKS |= {"image_fpr_at_threshold", "image_tpr_at_threshold"}  # at the threshold from validation normals
METRICS_WITH_MASKS |= {"image_auroc_ci95_lo", "image_auroc_ci95_hi"}  # the AUROC's interval (adrun.stats)
METRICS_WITH_MASKS |= {"pixel_auroc_ci95_lo", "pixel_auroc_ci95_hi"}  # the image the unit (stats.clustered_variance)
# what a run leaves (with the default logger)
RUN_DIR = ["adrun.log", "checkpoints", "config.yaml", "figures", "results.json", "scores.csv", "tb"]
SMALL = ("data.image_size=16", "data.batch_size=8", "trainer.log_every_n_steps=1")  # any dataset
TINY = ("data=synthetic", *SMALL)
METHODS = {
    "ganomaly": ("method=ganomaly", "method.epochs=1"),
    "anogan": (
        "method=anogan",
        "method.epochs=1",
        "method.iterations=3",
        "method.nz=8",
        *("method.ngf=8", "method.ndf=8"),
    ),
    "fanogan": ("method=fanogan", "method.gan_epochs=1", "method.encoder_epochs=1", "method.nz=8"),
    "ognet": (
        "method=ognet",
        "data.image_size=20",
        "method.width=4",
        "method.low_epoch=1",
        "method.high_epoch=2",
        "method.phase2_iterations=3",
    ),
    "ada": ("method=ada", "method.epochs=1"),
    "students": (
        "method=students",
        "method.patch_sizes=[17]",
        "method.students=2",
        "method.epochs=1",
        "method.teacher_iterations=3",
        "method.teacher_batch_size=8",
        "method.teacher_cache=null",
    ),
}


def tiny(method: str = "ganomaly", *overrides: str) -> list[str]:
    return [*TINY, *METHODS[method], *overrides]


def composed(*overrides: str):
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        return compose(config_name="config", overrides=list(overrides))


def run(run_dir: Path, *overrides: str) -> dict:
    """A whole run in this process, as `adrun <overrides> hydra.run.dir=<run_dir>` would do it."""
    from adrun.runner import run as run_adrun

    return run_adrun(composed(*overrides), run_dir, list(overrides))


def adrun(*args: str, cwd: Path, timeout: int = 300) -> subprocess.CompletedProcess:
    """The real command line, in a fresh process."""
    command = [sys.executable, "-m", "adrun", *args]
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def adrun_here(monkeypatch, capsys):
    """The command line in this process (`adrun.cli.main`, argv and cwd as given): (exit status, stdout, stderr).
    Much cheaper than a fresh interpreter; Hydra's global state, logging and the environment are put back after."""
    import logging

    from hydra.core.global_hydra import GlobalHydra

    from adrun import cli

    def go(*args: str, cwd: Path) -> tuple[int, str, str]:
        monkeypatch.chdir(cwd)
        monkeypatch.setattr(sys, "argv", ["adrun", *args])
        monkeypatch.delenv("HYDRA_FULL_ERROR", raising=False)  # main() sets it; restored after the test
        handlers, level = logging.root.handlers[:], logging.root.level
        GlobalHydra.instance().clear()
        try:
            cli.main()
            code = 0
        except SystemExit as stop:
            code = stop.code
        finally:
            GlobalHydra.instance().clear()
            logging.root.handlers[:], logging.root.level = handlers, level
        out = capsys.readouterr()
        return code, out.out, out.err

    return go


def one_line(error: pytest.ExceptionInfo) -> str:
    """The message of a raised UserError, asserted to be a single line."""
    message = str(error.value)
    assert "\n" not in message
    return message


def one_line_error(make) -> str:
    """The one-line UserError message that `make()` raises."""
    from adrun.errors import UserError

    with pytest.raises(UserError) as error:
        make()
    return one_line(error)


def run_on_fixture(tmp_path: Path, *overrides: str) -> dict:
    """One tiny epoch of the default method on a dataset fixture, into tmp_path/run."""
    return run(tmp_path / "run", *SMALL, "method.epochs=1", f"data.cache_dir={tmp_path}/cache", *overrides)


@pytest.fixture
def tiny_run(tmp_path: Path):
    """A whole tiny run of a method in tmp_path; returns (results, run_dir)."""

    def go(method: str = "ganomaly", *overrides: str):
        run_dir = tmp_path / "run"
        return run(run_dir, *tiny(method, *overrides)), run_dir

    return go


@pytest.fixture(scope="session")
def trained(tmp_path_factory):
    """`trained(method)`: the run dir of that method's tiny run (2 epochs for the single-phase methods), trained once
    per test session; for tests that only need a trained model. Do not write into it."""
    done: dict[str, Path] = {}

    def get(method: str = "ganomaly") -> Path:
        if method not in done:
            run_dir = tmp_path_factory.mktemp(f"trained_{method}") / "run"
            epochs = ["method.epochs=2"] if "method.epochs=1" in METHODS[method] else []
            run(run_dir, *tiny(method, *epochs))
            done[method] = run_dir
        return done[method]

    return get


def pytest_collection_modifyitems(config, items):
    """`@pytest.mark.gpu` tests run only where CUDA is."""
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
