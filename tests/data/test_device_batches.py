"""`data.on_device`: batches cut on the trainer's device are the DataLoader's, batch for batch (here device = cpu),
and a run gives the same results and scores either way."""

import json
from types import SimpleNamespace

import pytest
import torch
from lightning_fabric.utilities.data import _set_sampler_epoch

from adrun.data.device_batches import DeviceBatches
from adrun.data.digits import Digits
from adrun.data.synthetic import Synthetic
from tests.conftest import one_line_error, run, tiny


def on_cpu(module, on_device):
    """The datamodule as a single-process CPU trainer holds it (what its *_dataloader hooks read)."""
    module.on_device = on_device
    module.trainer = SimpleNamespace(world_size=1, strategy=SimpleNamespace(root_device=torch.device("cpu")))
    return module


def epochs_of(loader, epochs: int = 2) -> list[list[dict]]:
    batches = []
    for epoch in range(epochs):
        _set_sampler_epoch(loader, epoch)  # as Lightning's fit loop does before each epoch
        batches.append(list(loader))
    return batches


@pytest.mark.parametrize(
    "make",
    [
        # masks; 37 training normals at batch 4: the last batch of one is dropped
        lambda: Synthetic(image_size=16, channels=3, n_train=41, n_test=10, batch_size=4, val_fraction=0.1),
        # no masks, a partial last batch kept (data.drop_last=false)
        lambda: Digits(
            image_size=16, channels=1, normal_class=3, batch_size=32, train_subset=120, test_subset=70, drop_last=False
        ),
    ],
)
def test_device_batches_are_the_loaders_batch_for_batch(make):
    module = make()
    module.setup()
    drops = isinstance(module, Synthetic)
    assert (len(module.train_set) % module.batch_size == 1) == drops and len(module.train_set) % module.batch_size
    for hook in ("train_dataloader", "val_dataloader", "test_dataloader"):
        loader = getattr(on_cpu(module, False), hook)()
        device = getattr(on_cpu(module, True), hook)()
        assert isinstance(device, DeviceBatches) and not isinstance(loader, DeviceBatches)
        assert len(device) == len(loader)
        expected, got = epochs_of(loader), epochs_of(device)
        assert [len(epoch) for epoch in got] == [len(loader)] * 2
        for want_epoch, got_epoch in zip(expected, got, strict=True):
            for want, batch in zip(want_epoch, got_epoch, strict=True):
                assert batch.keys() == want.keys()
                for key in want:
                    assert batch[key].dtype == want[key].dtype and torch.equal(batch[key], want[key]), (hook, key)
        if hook == "train_dataloader":
            first, second = (torch.cat([b["index"] for b in epoch]) for epoch in got)
            assert not torch.equal(first, second), "each epoch is shuffled anew"
            assert len(module.train_set) - len(first) == drops
    assert module.batches_per_epoch() == len(module.train_dataloader())


def test_on_device_auto_keeps_the_loader_on_the_cpu_and_under_ddp_and_a_bad_value_is_one_line():
    module = on_cpu(Digits(image_size=16, channels=1, normal_class=3, train_subset=50), "auto")
    module.setup()
    assert not isinstance(module.train_dataloader(), DeviceBatches)
    module.on_device = True
    module.trainer.world_size = 2
    assert not isinstance(module.train_dataloader(), DeviceBatches), "DDP keeps the DataLoader's distributed sampler"
    message = one_line_error(lambda: Digits(image_size=16, channels=1, on_device="gpu"))
    assert "data.on_device" in message


def test_a_run_with_batches_on_the_device_has_the_same_results_and_scores(tmp_path, trained):
    """The session's trained GANomaly (a DataLoader on the CPU) again, with its batches cut on the device."""
    reference = trained("ganomaly")
    results = run(tmp_path / "run", *tiny("ganomaly", "method.epochs=2", "data.on_device=true"))
    assert results["metrics"] == json.loads((reference / "results.json").read_text())["metrics"]
    assert (tmp_path / "run" / "scores.csv").read_bytes() == (reference / "scores.csv").read_bytes()
