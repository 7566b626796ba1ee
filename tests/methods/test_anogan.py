"""AnoGAN's GAN losses, search loss and score equal the paper's equations; a batched search equals a one-by-one search;
a tiny run writes every artefact."""

import csv
import json
import math

import pytest
import torch
import yaml
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch import nn

from adrun.errors import UserError
from adrun.methods.anogan import AnoGAN, content_keys, latent_seed
from tests.conftest import METRICS_WITH_MASKS
from tests.fixtures.nets import CropCritic, FixedGenerator


class LinearGenerator(nn.Module):
    """A stand-in G(z) = W·z as a 1×16×16 image, with fixed random W."""

    def __init__(self, nz: int):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(256, nz, generator=torch.Generator().manual_seed(1)) / nz**0.5)

    def forward(self, z):
        return (z.flatten(1) @ self.weight.T).view(-1, 1, 16, 16)


def tiny(**kwargs):
    return AnoGAN(**{"image_size": 16, "channels": 1, "nz": 8, "ngf": 4, "ndf": 4} | kwargs)


def test_search_loss_is_the_papers_L_z_summed_per_image():
    model = tiny()
    model.discriminator = CropCritic()
    x = torch.zeros(2, 1, 16, 16)
    x_hat = torch.zeros(2, 1, 16, 16)
    x_hat[0] = 0.5  # |x − G(z)| = 0.5 on all 256 pixels
    x_hat[1, 0, 2, 3] = -1.0  # one pixel, inside f's crop
    model.generator = FixedGenerator(x_hat)
    losses = model.search_losses(x, model.discriminator(x)[1], torch.zeros(2, 8, 1, 1))
    assert losses["residual"].tolist() == pytest.approx([256 * 0.5, 1.0])  # L_R = Σ|x − G(z)| per image
    assert losses["discrimination"].tolist() == pytest.approx([3 * 16 * 0.5, 3.0])  # L_D = Σ|f(x) − f(G(z))|
    assert losses["loss"].tolist() == pytest.approx([0.9 * 128 + 0.1 * 24, 0.9 * 1 + 0.1 * 3])  # (1 − λ)L_R + λL_D


def test_score_is_A_at_the_final_z_and_the_map_is_the_channel_mean_residual():
    model = AnoGAN(image_size=16, channels=3, nz=8, ngf=4, ndf=4, lam=0.25, iterations=0)
    model.discriminator = CropCritic()
    model.generator = nn.Sequential(nn.Flatten(), nn.Linear(8, 3 * 256), nn.Unflatten(1, (3, 16, 16)))
    x = torch.rand(2, 3, 16, 16)
    index = torch.tensor([4, 9])
    scored = model.score({"image": x, "index": index})
    scores, maps = scored.image, scored.map
    with torch.no_grad():
        x_hat = model.generator(model.initial_z(content_keys(x)))  # Γ = 0: z_Γ = z_0
    residual = (x - x_hat).abs().sum((1, 2, 3))
    discrimination = 3 * (x - x_hat)[:, :, :4, :4].abs().sum((1, 2, 3))
    assert torch.allclose(scores, 0.75 * residual + 0.25 * discrimination)  # A(x) = (1 − λ)·R(x) + λ·D(x)
    assert maps.shape == (2, 1, 16, 16)
    assert torch.allclose(maps, (x - x_hat).abs().mean(1, keepdim=True))
    assert torch.equal(scored.reconstruction, x_hat)  # the test grid's reconstruction is G(z_Γ) of the same search


def test_the_search_descends_towards_the_z_that_drew_the_image():
    torch.manual_seed(0)
    scores = {}
    for steps in (0, 300):
        model = tiny(iterations=steps, search_lr=0.02)
        model.generator, model.discriminator = LinearGenerator(8), CropCritic()
        x = model.generator(torch.randn(3, 8, 1, 1)).detach()
        scores[steps] = model.score({"image": x, "index": torch.arange(3)}).image
    assert (scores[300] < 0.1 * scores[0]).all()


def test_start_z_depends_only_on_the_seed_and_the_images_key():
    model = tiny(nz=16)
    both = model.initial_z(torch.tensor([3, 5]))
    assert both.shape == (2, 16, 1, 1)
    assert torch.equal(both, torch.cat([model.initial_z(torch.tensor([i])) for i in (3, 5)]))
    assert not torch.equal(both[0], both[1])
    assert not torch.equal(both, tiny(nz=16, search_seed=1).initial_z(torch.tensor([3, 5])))
    assert latent_seed(0, 3) != latent_seed(1, 3)  # torch keeps 32 bits of a seed: the pair is mixed, not shifted
    uniform = tiny(nz=16, prior="uniform").initial_z(torch.arange(50))
    assert uniform.abs().max() <= 1


def test_a_batch_is_searched_exactly_as_its_images_one_by_one():
    torch.manual_seed(0)
    model = tiny(iterations=20)
    opt_g, opt_d = model.configure_optimizers()
    for _ in range(3):  # trained BatchNorm running statistics, so eval mode differs from batch statistics
        model.update(torch.rand(8, 1, 16, 16) * 2 - 1, opt_g, opt_d, lambda loss: loss.backward())
    model.train()  # the search must put G and D in eval mode itself, and restore the mode afterwards
    x = torch.rand(6, 1, 16, 16) * 2 - 1
    index = torch.tensor([7, 2, 11, 0, 5, 30])
    scored = model.score({"image": x, "index": index})
    batched, batched_maps = scored.image, scored.map
    alone = [model.score({"image": x[i : i + 1], "index": index[i : i + 1]}) for i in range(6)]
    reversed_order = model.score({"image": x.flip(0), "index": torch.arange(6)}).image.flip(0)
    assert torch.equal(reversed_order, batched), "z_0 follows the image (its pixels' CRC), not its position or index"
    assert (batched - torch.cat([s.image for s in alone])).abs().max() <= 1e-5
    assert (batched_maps - torch.cat([s.map for s in alone])).abs().max() <= 1e-5
    assert model.generator.training and model.discriminator.training
    assert all(p.requires_grad for p in model.parameters())


def test_scoring_needs_no_gradient_mode_and_declares_the_trainer_override():
    assert AnoGAN.trainer_overrides == {"inference_mode": False}
    torch.manual_seed(0)
    model = tiny(iterations=5).eval()
    x = torch.rand(2, 1, 16, 16) * 2 - 1
    with torch.no_grad():  # Lightning's test loop without inference mode
        inside = model.score({"image": x, "index": torch.arange(2)}).image
    assert torch.equal(inside, model.score({"image": x, "index": torch.arange(2)}).image)
    assert all(p.grad is None for p in model.parameters())  # the search never touches G's or D's gradients


def test_gan_losses_are_minus_V_for_D_and_non_saturating_for_G():
    model = tiny()
    model.discriminator = CropCritic(logit=1.5)
    x = torch.zeros(3, 1, 16, 16)
    sigmoid = 1 / (1 + math.exp(-1.5))
    assert model.discriminator_loss(x, x).item() == pytest.approx(-math.log(sigmoid) - math.log(1 - sigmoid))
    assert model.generator_loss(x).item() == pytest.approx(-math.log(sigmoid))  # −log D(G(z)), not log(1 − D(G(z)))


def test_a_gan_step_moves_both_players():
    torch.manual_seed(0)
    model = tiny()
    opt_g, opt_d = model.configure_optimizers()
    g0 = [p.clone() for p in model.generator.parameters()]
    d0 = [p.clone() for p in model.discriminator.parameters()]
    losses = model.update(torch.rand(4, 1, 16, 16) * 2 - 1, opt_g, opt_d, lambda loss: loss.backward())
    assert set(losses) == {"loss_d", "loss_g"}
    assert all(not torch.equal(a, b) for a, b in zip(g0, model.generator.parameters(), strict=True))
    assert all(not torch.equal(a, b) for a, b in zip(d0, model.discriminator.parameters(), strict=True))


@pytest.mark.parametrize(
    ("key", "value"), [("lam", 1.5), ("iterations", -1), ("search_optimizer", "lbfgs"), ("prior", "cauchy")]
)
def test_impossible_keys_are_user_errors(key, value):
    with pytest.raises(UserError, match=f"method.{key}"):
        tiny(**{key: value})


def test_a_tiny_run_writes_every_artefact(tiny_run):
    results, run_dir = tiny_run("anogan")
    saved = json.loads((run_dir / "results.json").read_text())
    assert saved == json.loads(json.dumps(results, default=str))
    assert (
        saved["method"] == "anogan"
        and yaml.safe_load((run_dir / "config.yaml").read_text())["method"]["iterations"] == 3
    )
    assert set(saved["metrics"]) == METRICS_WITH_MASKS
    assert all(0 <= v <= 1 + 1e-9 for v in saved["metrics"].values())  # AUPRO of a perfect map: 1 + rounding
    rows = list(csv.DictReader((run_dir / "scores.csv").open()))
    assert [int(r["index"]) for r in rows] == list(range(32)) and all(float(r["score"]) > 0 for r in rows)
    assert (run_dir / "checkpoints" / "last.ckpt").stat().st_size > 0
    events = EventAccumulator(str(run_dir / "tb"), size_guidance={"images": 0, "scalars": 0})
    events.Reload()
    assert {"train/loss_d", "train/loss_g", "val/loss_d", "val/loss_g", "test/image_auroc"} <= set(
        events.Tags()["scalars"]
    )
    assert "test/most_and_least_anomalous" in events.Tags()["images"]
