"""On a CUDA GPU (`hardware=gpu`, 16-mixed): one epoch of every method, then `mode=test` and `mode=predict` on its
checkpoint; a run killed with SIGKILL resumes bit-exact under `trainer.deterministic=true` in every precision; the
switches (compile, channels_last) run there. Skipped without CUDA (tests/conftest.py); a GPU-only bug once failed
every `hardware=gpu` run at its end."""

import csv
import itertools
import json
import signal
import time

import pytest
import torch
from PIL import Image

from tests.conftest import METHODS, run, tiny
from tests.test_resume import adrun, status


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


# Long enough on an H100 (a few seconds an epoch) that the kill lands inside training, after the first checkpoint.
GPU_SLOW = (*tiny("ganomaly", "data.n_train=3000", "method.epochs=4"), "hardware=gpu", "hardware.num_workers=0")


@pytest.mark.gpu
@pytest.mark.parametrize("precision", ["32-true", "16-mixed", "bf16-mixed"])
def test_a_killed_gpu_run_resumes_bit_exact_when_deterministic(tmp_path, adrun_here, precision):
    """Issue 8 saw resumed GPU runs differ (3 of 4 settings, deterministic unset). With deterministic algorithms,
    the GPU's own generator and the AMP scaler restored, the resumed run must end where the uninterrupted one does."""
    settings = (*GPU_SLOW, f"hardware.trainer.precision={precision}", "trainer.deterministic=true")
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    victim = adrun(*settings, f"hydra.run.dir={killed}", cwd=tmp_path)
    checkpoint = killed / "checkpoints" / "last.ckpt"
    while not checkpoint.exists() and victim.poll() is None:
        time.sleep(0.02)
    time.sleep(0.2)  # let the checkpoint's write finish
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    assert status(killed) == "started", "the kill came too late to test anything"
    saved = torch.load(checkpoint, weights_only=True)
    assert saved["epoch"] < 3 and saved["callbacks"]["RandomState"]["cuda"].dtype == torch.uint8
    if precision == "16-mixed":
        assert "MixedPrecision" in saved  # the GradScaler's scale and growth tracker

    run(whole, *settings)
    code, _, err = adrun_here(*settings, f"hydra.run.dir={killed}", "resume=true", cwd=tmp_path)
    assert code == 0, err
    resumed, uninterrupted = (json.loads((d / "results.json").read_text()) for d in (killed, whole))
    assert resumed["metrics"] == uninterrupted["metrics"]
    assert (killed / "scores.csv").read_text() == (whole / "scores.csv").read_text()


@pytest.mark.gpu
def test_the_gpu_generator_is_saved_and_restored():
    from adrun.checkpoints import RandomState

    saving = RandomState()
    saving.device = torch.device("cuda", torch.cuda.current_device())
    torch.cuda.manual_seed(3)
    torch.randn(5, device="cuda")
    state = saving.state_dict()
    expected = torch.randn(5, device="cuda")
    torch.randn(100, device="cuda")
    restoring = RandomState()
    restoring.device = saving.device
    restoring.load_state_dict(state)
    restoring.on_train_epoch_start(None, None)
    assert torch.equal(torch.randn(5, device="cuda"), expected)


@pytest.mark.gpu
def test_compile_and_channels_last_train_on_a_gpu(tmp_path):
    switches = ("hardware.compile=true", "hardware.channels_last=true", "hardware.trainer.precision=bf16-mixed")
    gpu = ("data.image_size=32", "hardware=gpu", "hardware.num_workers=0")
    results = run(tmp_path, *tiny("ganomaly", *gpu, *switches))
    assert results["status"] == "ok"
    assert "torch.compile failed" not in (tmp_path / "adrun.log").read_text()


class SyncSites:
    """`warnings.showwarning` while `torch.cuda.set_sync_debug_mode("warn")` is on: where each sync was called."""

    def __init__(self):
        self.sites: list[str] = []

    def __call__(self, message, category, filename, lineno, file=None, line=None):
        if "synchronizing CUDA operation" in str(message):
            self.sites.append(f"{filename}:{lineno}")


@pytest.mark.gpu
@pytest.mark.parametrize("precision, per_step", [("32-true", 0), ("bf16-mixed", 0), ("16-mixed", 2)])
def test_a_ganomaly_training_step_on_device_data_syncs_as_documented(precision, per_step, tmp_path, monkeypatch):
    """GANomaly at 32 px, batch 64, batches cut on the GPU (data.on_device=true), the progress bar off and the logger
    and the periodic non-finite check (adrun.methods.finite) outside the counted steps (log_every_n_steps=1000):
    a training step, and the loop from one step's start to the next (fetching, callbacks), wait for the GPU
    `per_step` times: never in full or bf16 precision; under 16-mixed twice, torch's GradScaler reading its found-inf
    flag before each of the two optimisers' steps. The first two steps of each epoch (Lightning logs the very first
    step; warm-up) are not counted."""
    import warnings

    import torch

    from adrun.methods.ganomaly import GANomaly

    sites = SyncSites()
    in_steps, at_starts = [], []  # (epoch, batch, syncs) per training step / per loop cycle
    training_step = GANomaly.training_step

    def counted_step(self, batch, batch_idx):
        before = len(sites.sites)
        training_step(self, batch, batch_idx)
        in_steps.append((self.current_epoch, batch_idx, sites.sites[before:]))

    def at_start(self, batch, batch_idx):
        at_starts.append((self.current_epoch, batch_idx, len(sites.sites)))

    monkeypatch.setattr(GANomaly, "training_step", counted_step)
    monkeypatch.setattr(GANomaly, "on_train_batch_start", at_start)
    overrides = tiny("ganomaly", "hardware=gpu", "hardware.num_workers=0", f"hardware.trainer.precision={precision}")
    overrides += ["data.image_size=32", "data.channels=1", "data.batch_size=64", "data.n_train=720"]
    overrides += ["data.n_test=64", "data.on_device=true", "method.epochs=2", "trainer.log_every_n_steps=1000"]
    overrides += ["+trainer.enable_progress_bar=false"]
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        monkeypatch.setattr(warnings, "showwarning", sites)
        torch.cuda.set_sync_debug_mode("warn")
        try:
            results = run(tmp_path / "run", *overrides)
        finally:
            torch.cuda.set_sync_debug_mode("default")
    assert results["status"] == "ok"
    counted = [(epoch, batch, found) for epoch, batch, found in in_steps if batch >= 2]
    assert len(counted) >= 14, "two epochs of ten batches"
    assert all(len(found) == per_step for *_, found in counted), counted
    cycles = [
        (epoch, batch, after - before)
        for (epoch, batch, before), (next_epoch, _, after) in itertools.pairwise(at_starts)
        if next_epoch == epoch and batch >= 2
    ]
    assert cycles and all(syncs == per_step for *_, syncs in cycles), (cycles, sites.sites[-20:])
