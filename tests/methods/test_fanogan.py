"""f-AnoGAN's izi_f loss and score equal their equation; the WGAN-GP's penalty, critic and schedule are the paper's;
the two phases train what they should; a tiny run writes every artefact and says which phase runs."""

import csv
import json

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch import nn

from adrun.errors import UserError
from adrun.methods.fanogan import FAnoGAN
from adrun.methods.losses import gradient_penalty
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


def test_the_prior_is_the_official_normal_uniform_on_request_and_the_encoder_lands_in_tanh_range():
    torch.manual_seed(0)
    assert tiny().sample_z(2000).abs().max() > 2  # N(0, I): RAND_SAMPLING = 'normal'
    uniform = tiny(prior="uniform")
    assert uniform.sample_z(200).abs().max() <= 1 and uniform.sample_z(200).min() < -0.9
    z = uniform.encoder(torch.randn(4, 1, 16, 16) * 50)
    assert z.shape == (4, 8, 1, 1) and z.abs().max() <= 1


def test_the_gradient_penalty_of_a_linear_critic_is_its_weight_norm_minus_one_squared():
    critic = nn.Linear(4, 1, bias=False)
    with torch.no_grad():
        critic.weight.copy_(torch.tensor([[2.0, 0.0, 0.0, 0.0]]))  # ∇D = w everywhere, ‖w‖ = 2
    real, fake = torch.randn(5, 4), torch.randn(5, 4)
    penalty = gradient_penalty(lambda t: critic(t).squeeze(1), real, fake)
    assert penalty.item() == pytest.approx(1.0)  # (2 − 1)²
    penalty.backward()  # the penalty trains the critic: ∂(‖w‖ − 1)²/∂w = 2(‖w‖ − 1)·w/‖w‖
    assert critic.weight.grad[0].tolist() == pytest.approx([2.0, 0.0, 0.0, 0.0])


def test_the_gradient_penalty_is_taken_at_the_interpolate_per_image():
    real, fake = torch.zeros(2, 1, 2, 2), torch.ones(2, 1, 2, 2)
    alpha = torch.tensor([0.25, 1.0]).view(2, 1, 1, 1)  # x̃ = 0.25 everywhere, then 1 everywhere
    # D(x) = ½‖x‖²: ∇D(x̃) = x̃, whose norm over the 4 pixels is 0.5 and 2
    penalty = gradient_penalty(lambda t: 0.5 * t.pow(2).flatten(1).sum(1), real, fake, alpha)
    assert penalty.item() == pytest.approx(((0.5 - 1) ** 2 + (2 - 1) ** 2) / 2)


def test_the_wgan_gp_critic_has_no_batchnorm_and_scores_each_image_alone():
    model = tiny().train()
    norms = [type(m) for m in model.discriminator.modules() if isinstance(m, nn.BatchNorm2d | nn.GroupNorm)]
    assert norms and set(norms) == {nn.GroupNorm}  # the official critic's layer norm
    assert any(isinstance(m, nn.BatchNorm2d) for m in model.generator.modules())  # G keeps its BatchNorm
    assert any(isinstance(m, nn.BatchNorm2d) for m in tiny(gan="dcgan").discriminator.modules())
    x = torch.randn(4, 1, 16, 16)
    assert torch.allclose(model.critic(x)[:1], model.critic(x[:1]), atol=1e-6)


class Counted:
    """An optimiser that counts its steps and delegates to the real one."""

    def __init__(self, optimizer):
        self.optimizer, self.steps = optimizer, 0

    def zero_grad(self):
        self.optimizer.zero_grad()

    def step(self):
        self.steps += 1
        self.optimizer.step()


def test_the_critic_steps_n_critic_times_per_generator_step():
    torch.manual_seed(0)
    model = tiny(n_critic=3).train()
    opt_g, opt_d, _ = (Counted(o) for o in model.configure_optimizers())
    x = torch.rand(4, 1, 16, 16) * 2 - 1
    g_steps = []
    for step in range(7):  # steps 0 … 6 of the phase: G after critic steps 2 and 5
        g = [p.clone() for p in model.generator.parameters()]
        losses = model.wgan_update(x, step, opt_g, opt_d, lambda loss: loss.backward())
        moved = not all(torch.equal(a, b) for a, b in zip(g, model.generator.parameters(), strict=True))
        assert moved == ("loss_g" in losses)
        g_steps.append(moved)
    assert g_steps == [False, False, True, False, False, True, False]
    assert (opt_d.steps, opt_g.steps) == (7, 2)
    assert set(losses) == {"loss_d", "wasserstein", "gp"} and losses["gp"] >= 0


def test_the_optimisers_are_the_official_codes():
    opt_g, opt_d, opt_e = tiny().configure_optimizers()
    for opt in (opt_g, opt_d):  # AdamOptimizer(learning_rate=1e-4, beta1=0., beta2=0.9)
        assert isinstance(opt, torch.optim.Adam) and opt.defaults["lr"] == 1e-4 and opt.defaults["betas"] == (0, 0.9)
    assert isinstance(opt_e, torch.optim.RMSprop)  # RMSPropOptimizer(lr=5e-5), TensorFlow's decay and ε
    assert (opt_e.defaults["lr"], opt_e.defaults["alpha"], opt_e.defaults["eps"]) == (5e-5, 0.9, 1e-10)
    *gan, encoder = tiny(gan="dcgan", encoder_optimizer="adam", encoder_lr=2e-4).configure_optimizers()
    assert all(o.defaults["lr"] == 2e-4 and o.defaults["betas"] == (0.5, 0.999) for o in (*gan, encoder))
    with pytest.raises(UserError, match=r"method\.gan"):
        tiny(gan="wgan")


def state(module: nn.Module) -> list[torch.Tensor]:
    return [t.clone() for t in (*module.parameters(), *module.buffers())]


def same(before: list[torch.Tensor], module: nn.Module) -> bool:
    return all(torch.equal(a, b) for a, b in zip(before, state(module), strict=True))


@pytest.mark.parametrize("gan", ["wgan_gp", "dcgan"])
def test_the_encoder_phase_trains_only_E_and_the_gan_phase_leaves_E_alone(gan):
    torch.manual_seed(0)
    model = tiny(gan=gan, n_critic=1).train()
    opt_g, opt_d, opt_e = model.configure_optimizers()
    x = torch.rand(4, 1, 16, 16) * 2 - 1
    g, d, e = state(model.generator), state(model.discriminator), state(model.encoder)
    model.update_encoder(x, opt_e, lambda loss: loss.backward())
    assert same(g, model.generator) and same(d, model.discriminator)  # weights and BatchNorm statistics
    assert not same(e, model.encoder)
    assert model.generator.training and all(p.requires_grad for p in model.parameters())
    e = state(model.encoder)
    if gan == "dcgan":
        model.update(x, opt_g, opt_d, lambda loss: loss.backward())
    else:
        model.wgan_update(x, 0, opt_g, opt_d, lambda loss: loss.backward())
    assert same(e, model.encoder) and not same(g, model.generator) and not same(d, model.discriminator)


def test_a_tiny_wgan_gp_run_of_both_phases_writes_every_artefact(tiny_run, capsys):
    results, run_dir = tiny_run("fanogan", "method.ngf=8", "method.ndf=8", "method.nef=8")
    out = capsys.readouterr().out
    assert "fanogan: epochs 0–0: training the GAN (WGAN-GP" in out
    assert "fanogan: epochs 1–1: training the encoder" in out
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
    assert {"train/gp", "train/wasserstein"} <= tags
    # 43 training normals in batches of 8, the last 3 dropped: 5 critic steps, the 5th followed by G's one step
    assert len(events.Scalars("train/loss_d")) == 5 and len(events.Scalars("train/loss_g")) == 1
    assert {e.value for e in events.Scalars("train/phase")} == {0.0, 1.0}
