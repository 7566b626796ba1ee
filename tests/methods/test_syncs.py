"""No needless device sync in a training step (issue 17), decided as before: D's re-initialisation on the device,
non-finite checks queued and read periodically off the CPU (here forced on the CPU), the same decisions and messages.
The syncs themselves are counted on a GPU (tests/test_gpu.py)."""

import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import ModelCheckpoint

from adrun.data.synthetic import Synthetic
from adrun.errors import UserError
from adrun.methods.finite import FiniteChecks
from adrun.methods.ganomaly import GANomaly
from adrun.methods.losses import check_finite
from adrun.nets.dcgan import Discriminator, init_dcgan_weights


@pytest.mark.parametrize("where", [True, False])
def test_a_reinit_decided_on_the_device_draws_the_same_weights_or_keeps_them(where):
    reference, decided = Discriminator(16, 1, 4), Discriminator(16, 1, 4)
    decided.load_state_dict(reference.state_dict())
    before = [p.clone() for p in reference.parameters()]
    torch.manual_seed(1)
    init_dcgan_weights(reference)
    after_reference = torch.rand(1)
    torch.manual_seed(1)
    init_dcgan_weights(decided, where=torch.tensor(where))
    assert torch.equal(torch.rand(1), after_reference), "the generator advances either way"
    expected = list(reference.parameters()) if where else before
    assert all(torch.equal(a, b) for a, b in zip(decided.parameters(), expected, strict=True))


def test_the_device_side_reinit_test_decides_as_item_does_at_the_threshold():
    threshold = 1e-5
    at = torch.tensor(threshold, dtype=torch.float32)  # 9.99999975e-06 < 1e-5 in float64, not in float32
    values = [at, at.nextafter(torch.tensor(0.0)), at.nextafter(torch.tensor(1.0)), torch.tensor(0.0)]
    for loss in values:
        assert bool(loss.double() < threshold) == (loss.item() < threshold)


def test_queued_checks_name_the_first_non_finite_term_as_the_immediate_check(monkeypatch):
    monkeypatch.setattr(FiniteChecks, "defers", staticmethod(lambda device: True))
    checks, nan = FiniteChecks(), torch.tensor(float("nan"))
    sets = [{"a": torch.tensor(1.0)}, {"a": torch.tensor(2.0), "b": nan}, {"a": torch.tensor(float("inf"))}]
    for i, terms in enumerate(sets):
        checks.add(terms, f"at batch {i}")
    with pytest.raises(UserError) as immediate:
        check_finite(sets[1], "at batch 1")
    with pytest.raises(UserError) as queued:
        checks.flush()
    assert str(queued.value) == str(immediate.value) and "b = nan at batch 1" in str(queued.value)
    assert not checks.pending
    checks.add({"a": torch.tensor(1.0)}, "at batch 3")
    checks.flush()  # all finite: nothing raised


def test_a_queued_nan_stops_training_within_log_every_n_steps_and_no_checkpoint_follows(tmp_path, monkeypatch):
    """GANomaly with the accelerators' queued checks: a NaN at epoch 1, batch 0 is named as at once, found at the
    flush after batch 3 (log_every_n_steps = 4), and the last checkpoint is epoch 0's."""
    monkeypatch.setattr(FiniteChecks, "defers", staticmethod(lambda device: True))
    steps = []
    update = GANomaly.update

    def nan_in_epoch_1(self, *args):
        losses = update(self, *args)
        steps.append((self.current_epoch, self.trainer.fit_loop.epoch_loop.batch_idx))
        if self.current_epoch == 1:
            losses["con"] = losses["con"] * float("nan")
        return losses

    monkeypatch.setattr(GANomaly, "update", nan_in_epoch_1)
    torch.manual_seed(0)
    data = Synthetic(image_size=16, channels=1, n_train=60, n_test=8, batch_size=8, val_fraction=0.0)
    module = GANomaly(image_size=16, channels=1, nz=4, ngf=4, ndf=4, epochs=3)
    checkpoints = ModelCheckpoint(dirpath=tmp_path, filename="last", save_top_k=1, enable_version_counter=False)
    trainer = pl.Trainer(
        max_epochs=3, log_every_n_steps=4, limit_val_batches=0, logger=False, callbacks=[checkpoints],
        enable_progress_bar=False, enable_model_summary=False,
    )  # fmt: skip
    with pytest.raises(UserError, match=r"non-finite loss: train/con = nan at epoch 1, batch 0; training stopped"):
        trainer.fit(module, data)
    assert [batch for epoch, batch in steps if epoch == 1] == [0, 1, 2, 3]
    checkpoint = torch.load(tmp_path / "last.ckpt", weights_only=True)
    assert checkpoint["epoch"] == 0, "the checkpoint of the last good epoch stays"
