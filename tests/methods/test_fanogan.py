"""f-AnoGAN's izi_f loss and score equal their equation; the two phases train what they should; a tiny run writes
every artefact and says which phase runs."""

import csv
import json

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch import nn

from adrun.errors import UserError
from adrun.methods.fanogan import FAnoGAN
from tests.fixtures.nets import CropCritic, FixedGenerator


class FixedEncoder(nn.Module):
    def forward(self, x):
        return torch.zeros(x.shape[0], 8, 1, 1)


def tiny(**kwargs):
    return FAnoGAN(**{"image_size": 16, "channels": 1, "nz": 8, "ngf": 4, "ndf": 4, "nef": 4} | kwargs)


def with_stand_ins(model, x_hat):
    model.encoder, model.generator, model.discriminator = FixedEncoder(), FixedGenerator(x_hat), CropCritic()
    return model


def test_izi_f_is_pixel_mse_plus_kappa_feature_mse_per_image():
    x = torch.zeros(2, 1, 16, 16)
    x_hat = torch.zeros(2, 1, 16, 16)
    x_hat[0] = 0.5  # (x − G(E(x)))² = 0.25 everywhere; f = 3·crop: (f(x) − f(x̂))² = 2.25 on 16 features
    x_hat[1, 0, 1, 1] = 2.0  # one pixel, inside the crop: 4/256 per pixel, 36/16 per feature
    model = with_stand_ins(tiny(kappa=2.0), x_hat)
    losses = model.izi_f(x)
    assert losses["residual"].tolist() == pytest.approx([0.25, 4 / 256])  # (1/n)‖x − G(E(x))‖²
    assert losses["features"].tolist() == pytest.approx([2.25, 36 / 16])  # (1/n_d)‖f(x) − f(G(E(x)))‖²
    assert losses["loss"].tolist() == pytest.approx([0.25 + 2 * 2.25, 4 / 256 + 2 * 36 / 16])


def test_score_is_izi_f_and_the_map_is_the_channel_mean_residual():
    x = torch.rand(2, 3, 16, 16)
    x_hat = torch.rand(2, 3, 16, 16)
    model = with_stand_ins(tiny(channels=3), x_hat)
    scored = model.score({"image": x})
    scores, maps = scored.image, scored.map
    expected = (x - x_hat).pow(2).mean((1, 2, 3)) + 9 * (x - x_hat)[:, :, :4, :4].pow(2).mean((1, 2, 3))
    assert torch.allclose(scores, expected)
    assert torch.allclose(maps, (x - x_hat).abs().mean(1, keepdim=True)) and maps.shape == (2, 1, 16, 16)
    assert torch.equal(scored.reconstruction, x_hat)


def test_the_trainer_runs_the_sum_of_the_phases():
    with pytest.raises(UserError, match="≥ 1"):
        tiny(gan_epochs=0)
    assert tiny(gan_epochs=2, encoder_epochs=3).trainer_epochs(batches_per_epoch=7) == 5
    assert "epochs" not in tiny().hparams, "the phases' keys are the only epoch keys"


def test_the_prior_is_uniform_and_the_encoder_lands_in_its_range():
    torch.manual_seed(0)
    model = tiny()
    assert model.sample_z(200).abs().max() <= 1 and model.sample_z(200).min() < -0.9
    z = model.encoder(torch.randn(4, 1, 16, 16) * 50)
    assert z.shape == (4, 8, 1, 1) and z.abs().max() <= 1


def state(module: nn.Module) -> list[torch.Tensor]:
    return [t.clone() for t in (*module.parameters(), *module.buffers())]


def same(before: list[torch.Tensor], module: nn.Module) -> bool:
    return all(torch.equal(a, b) for a, b in zip(before, state(module), strict=True))


def test_the_encoder_phase_trains_only_E_and_the_gan_phase_leaves_E_alone():
    torch.manual_seed(0)
    model = tiny().train()
    opt_g, opt_d, opt_e = model.configure_optimizers()
    x = torch.rand(4, 1, 16, 16) * 2 - 1
    g, d, e = state(model.generator), state(model.discriminator), state(model.encoder)
    model.update_encoder(x, opt_e, lambda loss: loss.backward())
    assert same(g, model.generator) and same(d, model.discriminator)  # weights and BatchNorm statistics
    assert not same(e, model.encoder)
    assert model.generator.training and all(p.requires_grad for p in model.parameters())
    e = state(model.encoder)
    model.update(x, opt_g, opt_d, lambda loss: loss.backward())
    assert same(e, model.encoder) and not same(g, model.generator) and not same(d, model.discriminator)


def test_a_tiny_run_of_both_phases_writes_every_artefact(tiny_run, capsys):
    results, run_dir = tiny_run("fanogan", "method.ngf=8", "method.ndf=8", "method.nef=8")
    out = capsys.readouterr().out
    assert "fanogan: epochs 0–0: training the GAN" in out and "fanogan: epochs 1–1: training the encoder" in out
    saved = json.loads((run_dir / "results.json").read_text())
    assert saved == json.loads(json.dumps(results, default=str))
    assert saved["method"] == "fanogan" and torch.load(run_dir / "checkpoints" / "last.ckpt")["epoch"] == 2
    assert all(0 <= v <= 1 + 1e-9 for v in saved["metrics"].values()) and "pixel_aupro" in saved["metrics"]
    rows = list(csv.DictReader((run_dir / "scores.csv").open()))
    assert [int(r["index"]) for r in rows] == list(range(32)) and all(float(r["score"]) > 0 for r in rows)
    assert (run_dir / "checkpoints" / "last.ckpt").stat().st_size > 0
    events = EventAccumulator(str(run_dir / "tb"), size_guidance={"scalars": 0})
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {"train/loss_d", "train/loss_g", "train/izi_f", "val/loss_d", "val/izi_f", "test/image_auroc"} <= tags
    assert {e.value for e in events.Scalars("train/phase")} == {0.0, 1.0}
