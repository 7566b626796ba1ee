"""Failures are recorded, never passed off as results: a failed job of a sweep leaves `status: failed` and its error,
the sweep goes on and exits 1 with the failure in its summary; a NaN loss keeps the last good checkpoint; artefacts are
written whole or not at all."""

import json

import pytest
import torch

from adrun.artefacts import write_atomically
from adrun.errors import UserError
from tests.conftest import run, tiny


def test_a_failed_job_is_recorded_and_the_sweep_goes_on_and_exits_1(tmp_path, adrun_here):
    code, _, err = adrun_here(
        "-m", *tiny(), "method.lr=2e-4,1e12,1e-3", f"hydra.sweep.dir={tmp_path}/sweep", cwd=tmp_path
    )
    assert code == 1
    assert "adrun: job 1 failed: non-finite loss: train/loss_g = nan" in err
    assert err.strip().splitlines()[-1].startswith("adrun: error: 1 of 3 jobs did not finish; job 1: non-finite")
    statuses = [json.loads((tmp_path / "sweep" / str(job) / "results.json").read_text()) for job in range(3)]
    assert [s["status"] for s in statuses] == ["ok", "failed", "ok"]
    assert statuses[1]["error"].startswith("non-finite loss: train/loss_g = nan at epoch 0, batch 1")
    assert "metrics" not in statuses[1] and not (tmp_path / "sweep" / "1" / "scores.csv").exists()
    summary = (tmp_path / "sweep" / "summary.md").read_text()
    assert "| 1 | 1000000000000.0 | failed |" in summary
    assert "- job 1 `method.lr=1000000000000.0` failed: non-finite loss: train/loss_g = nan" in summary


def test_a_nan_loss_stops_the_run_naming_step_and_term_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    from adrun.methods.ganomaly import GANomaly

    update = GANomaly.update

    def nan_in_epoch_1(self, *args):
        losses = update(self, *args)
        if self.current_epoch == 1:
            losses["con"] = losses["con"] * float("nan")
        return losses

    monkeypatch.setattr(GANomaly, "update", nan_in_epoch_1)
    with pytest.raises(UserError, match=r"non-finite loss: train/con = nan at epoch 1, batch 0; training stopped"):
        run(tmp_path, *tiny("ganomaly", "method.epochs=3"))
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["status"] == "failed" and "metrics" not in saved and not (tmp_path / "scores.csv").exists()
    checkpoint = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)
    assert checkpoint["epoch"] == 0, "the checkpoint of the last good epoch stays"
    assert all(value.isfinite().all() for value in checkpoint["state_dict"].values() if value.is_floating_point())


def test_an_artefact_is_written_whole_or_not_at_all(tmp_path):
    path = tmp_path / "results.json"
    write_atomically(path, lambda f: f.write('{"status": "ok"}'))

    def dies_halfway(f):
        f.write('{"status": "o')
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_atomically(path, dies_halfway)
    assert json.loads(path.read_text()) == {"status": "ok"}
    assert [p.name for p in tmp_path.iterdir()] == ["results.json"], "no half-written file is left either"


def test_a_failed_run_ends_its_wandb_run_so_the_next_in_this_process_starts_its_own(tmp_path, monkeypatch):
    wandb = pytest.importorskip("wandb")
    from adrun.methods.ganomaly import GANomaly

    def nan_loss(self, *args):
        raise UserError("non-finite loss: made up for this test")

    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setattr(GANomaly, "update", nan_loss)
    with pytest.raises(UserError, match="made up for this test"):
        run(tmp_path, *tiny("ganomaly", "logger=wandb"))
    assert wandb.run is None, "the failed run's W&B run was finished"
