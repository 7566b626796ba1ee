"""OGNet: the networks have the code's shapes, the phase-2 loss is Eq. 5, pseudo anomalies never pair an image with
itself, G_old is the snapshot after low_epoch epochs and stays fixed, and a tiny run writes every artefact."""

import copy
import csv
import json
import math
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from hydra.utils import instantiate
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from adrun.errors import UserError
from adrun.methods.losses import bce
from adrun.methods.ognet import OGNet, derangement
from tests.conftest import composed, run
from tests.conftest import tiny as tiny_settings

TINY = tiny_settings("ognet")


def tiny(**kwargs):
    return OGNet(**{"image_size": 20, "channels": 1, "width": 4} | kwargs)


def states(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def same(a: dict, b: dict) -> bool:
    return all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize(("size", "flat"), [(45, 4608), (32, 512 * 2 * 2), (20, 512 * 2 * 2)])
def test_networks_have_the_codes_shapes(size, flat):
    model = OGNet(image_size=size, channels=1)
    x = torch.rand(2, 1, size, size) * 2 - 1
    assert model.generator(x).shape == x.shape  # valid convolutions out, transposed ones back
    assert model.discriminator.head.in_features == flat  # 45 px: the code's nn.Linear(4608, 1)
    assert model.discriminator(x).shape == (2,)


def test_phase2_loss_is_equation_5_on_hand_made_logits():
    model = tiny(alpha=0.1, beta=0.001)
    real, good, old, pseudo = (
        torch.tensor([0.3, -1.0]),
        torch.tensor([2.0, 0.5]),
        torch.tensor([-0.7]),
        torch.tensor([1.5, -2.0, 0.1]),
    )

    def mean_log(values, bad):  # E[log D] for bad examples, E[log(1 − D)] for good ones; D = sigmoid(logit)
        d = [1 / (1 + math.exp(-v)) for v in values.tolist()]
        return sum(math.log(p if bad else 1 - p) for p in d) / len(d)

    objective = 0.1 * mean_log(real, False) + 0.9 * mean_log(good, False) + 0.001 * mean_log(old, True)
    objective += 0.999 * mean_log(pseudo, True)
    assert model.phase2_loss(real, good, old, pseudo).item() == pytest.approx(-objective)  # D maximises Eq. 5


def test_pseudo_anomalies_never_pair_an_image_with_itself():
    for n in range(2, 40):
        for seed in range(5):
            partner = derangement(n, torch.Generator().manual_seed(seed))
            assert sorted(partner.tolist()) == list(range(n))  # a permutation: every image is used as a partner
            assert not (partner == torch.arange(n)).any()
    model = tiny().eval()
    model.generator = torch.nn.Identity()  # X̂_pseudo is then the mix itself
    old = torch.arange(6.0).view(6, 1, 1, 1).expand(6, 1, 20, 20)
    mixed = model.pseudo_anomalies(old)[:, 0, 0, 0]
    partners = 2 * mixed - torch.arange(6.0)  # mix_i = (old_i + old_j) / 2
    assert sorted(partners.tolist()) == list(range(6)) and not (partners == torch.arange(6.0)).any()
    with pytest.raises(ValueError):
        derangement(1)


def test_noise_has_the_codes_std_and_is_clamped():
    torch.manual_seed(0)
    x = torch.zeros(64, 1, 20, 20)
    assert (tiny(noise_clamp=False).noisy(x) - x).std().item() == pytest.approx(0.81, rel=0.02)  # 0.9² as the std
    clamped = tiny().noisy(x)
    assert clamped.min() == -1 and clamped.max() == 1


def test_gradcam_equals_autograd_gradcam():
    torch.manual_seed(0)
    d = tiny().discriminator.eval()
    x = torch.randn(3, 1, 20, 20)
    features = d.features(x).detach().requires_grad_()
    (grad,) = torch.autograd.grad(d.head(features.flatten(1)).sum(), features)
    expected = torch.relu((grad.mean((2, 3), keepdim=True) * features).sum(1, keepdim=True))
    assert torch.allclose(d.gradcam(x), expected, atol=1e-6)


def test_score_is_d_of_g_of_x_with_the_phase1_variant_and_a_map():
    torch.manual_seed(0)
    for score_map in ("residual", "gradcam"):
        model = tiny(score_map=score_map).eval()
        x = torch.rand(3, 1, 20, 20) * 2 - 1
        with torch.no_grad():
            scored = model.score({"image": x})
            scores, maps, variants = scored.image, scored.map, scored.variants
            reconstruction = model.generator(x)
            assert torch.allclose(scores, model.discriminator(reconstruction))
            assert torch.allclose(variants["phase1"], model.discriminator_phase1(reconstruction))
        assert maps.shape == (3, 1, 20, 20) and maps.min() >= 0 and maps.max() > 0
        if score_map == "residual":
            assert torch.allclose(maps, (x - reconstruction).abs().mean(1, keepdim=True))


def test_bad_settings_end_in_one_clear_line():
    with pytest.raises(UserError, match="larger than 16"):
        tiny(image_size=16)
    with pytest.raises(UserError, match="low_epoch < high_epoch"):
        tiny(low_epoch=5, high_epoch=5)
    with pytest.raises(UserError, match="score_map"):
        tiny(score_map="sobel")
    with pytest.raises(UserError, match="d_update"):
        tiny(d_update="simultaneous")


class Snapshots(pl.Callback):
    """The nets' states at the end of every training epoch."""

    def __init__(self):
        self.at_end: list[dict[str, dict]] = []

    def on_train_epoch_end(self, trainer, module):
        names = ("generator", "generator_old", "discriminator", "discriminator_phase1")
        self.at_end.append({name: states(getattr(module, name)) for name in names})


def test_g_old_is_the_low_epoch_snapshot_and_stays_fixed_through_phase_2(tmp_path):
    cfg = composed(*TINY, "method.low_epoch=1", "method.high_epoch=3", "method.phase2_iterations=9")
    pl.seed_everything(0, verbose=False)
    datamodule = instantiate(cfg.data)
    datamodule.setup("fit")
    module = instantiate(cfg.method, image_size=datamodule.image_size, channels=datamodule.channels)
    snapshots = Snapshots()
    trainer = pl.Trainer(
        max_epochs=module.trainer_epochs(datamodule.batches_per_epoch()), logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0, limit_val_batches=0,
        callbacks=[snapshots], default_root_dir=tmp_path,  # phase 2's examples are a PNG in <root>/figures
    )  # fmt: skip
    trainer.fit(module, datamodule)
    per_epoch = len(datamodule.train_dataloader())
    assert datamodule.batches_per_epoch() == per_epoch
    assert trainer.current_epoch == 3 + math.ceil(9 / per_epoch) and int(module.phase2_steps) == 9
    assert (tmp_path / "figures" / "phase2__x_g_gold_pseudo.png").exists(), "a PNG without any logger too"
    s = snapshots.at_end
    assert same(s[1]["generator_old"], s[0]["generator"])  # G_old = G after low_epoch = 1 epoch …
    assert not same(s[1]["generator"], s[0]["generator"])  # … while G went on training
    assert all(same(e["generator_old"], s[0]["generator"]) for e in s[1:])  # fixed from then on, phase 2 included
    assert all(same(e["generator"], s[2]["generator"]) for e in s[3:])  # G frozen in phase 2 (BatchNorm stats too)
    assert same(s[-1]["discriminator_phase1"], s[2]["discriminator"])  # D as phase 1 left it …
    assert not same(s[-1]["discriminator"], s[2]["discriminator"])  # … and D trained on in phase 2


def test_a_tiny_run_writes_every_artefact(tmp_path):
    results = run(tmp_path / "run", *TINY)
    run_dir = tmp_path / "run"
    assert json.loads((run_dir / "results.json").read_text())["metrics"] == results["metrics"]
    assert 0 <= results["metrics"]["image_auroc"] <= 1 and 0 <= results["metrics"]["image_auroc_phase1"] <= 1
    with open(run_dir / "scores.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == results["counts"]["test"] and {"score", "score_phase1"} <= set(rows[0])
    checkpoint = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=False)
    assert any(k.startswith("generator_old.") for k in checkpoint["state_dict"]) and "phase2_steps" in str(
        list(checkpoint["state_dict"])
    )
    events = EventAccumulator(str(next(Path(run_dir, "tb").rglob("events.out.tfevents.*")).parent))
    events.Reload()
    scalars, images = set(events.Tags()["scalars"]), set(events.Tags()["images"])
    assert {"phase1/loss_d", "phase1/loss_g", "phase1/loss_rec", "phase2/loss_d", "test/image_auroc_phase1"} <= scalars
    assert {"phase2/x_g_gold_pseudo", "test/most_and_least_anomalous"} <= images


class Recorder:
    """An optimiser stand-in that keeps its parameters' gradients at step time."""

    def __init__(self, params):
        self.params, self.grads = list(params), None

    def zero_grad(self):
        for p in self.params:
            p.grad = None

    def step(self):
        self.grads = [p.grad.clone() if p.grad is not None else torch.zeros_like(p) for p in self.params]


def test_code_update_lets_gs_adversarial_gradient_reach_d():
    torch.manual_seed(0)
    model = tiny(d_update="code")
    reference = copy.deepcopy(model)
    x = torch.rand(4, 1, 20, 20) * 2 - 1
    opt_g, opt_d = Recorder(model.generator.parameters()), Recorder(model.discriminator.parameters())
    torch.manual_seed(1)
    model.phase1_update(x, opt_g, opt_d, lambda loss, **kw: loss.backward(**kw))
    torch.manual_seed(1)
    fake = reference.generator(reference.noisy(x))
    fake_logit, real_logit = reference.discriminator(fake), reference.discriminator(x)
    loss_d = 0.5 * (bce(real_logit, 0.0) + bce(fake_logit, 1.0))
    loss_g = 0.5 * bce(fake_logit, 0.0) + 0.5 * torch.nn.functional.mse_loss(fake, x)
    d_params, g_params = list(reference.discriminator.parameters()), list(reference.generator.parameters())
    expected_d = torch.autograd.grad(loss_d + loss_g, d_params, retain_graph=True)  # D: its loss and G's, summed
    expected_g = torch.autograd.grad(loss_g, g_params)  # G: its own loss only
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(opt_d.grads, expected_d, strict=True))
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(opt_g.grads, expected_g, strict=True))


def test_phase2_teaches_d_to_rank_bad_examples_above_good_ones_in_eval_mode():
    """What phase 2 teaches D, read as the test pass reads it (eval mode, BatchNorm's running statistics, though each
    group trained as its own batch): G_old's and the pseudo anomalies' outputs score above X and G(X). A flipped label,
    a swapped group or a score of the wrong sign puts them below (AUROC < ½, as the issue-23 report feared)."""
    torch.manual_seed(0)
    model = tiny()
    model.generator = torch.nn.Identity()  # G(X) = X: the good examples are the images themselves
    model.generator_old = torch.nn.Sequential(torch.nn.AvgPool2d(5, 1, 2), torch.nn.Tanh())  # a blurred, faded G_old
    opt = torch.optim.Adam(model.discriminator.parameters(), lr=1e-3)
    digits = torch.zeros(64, 1, 20, 20)
    for i in range(64):  # strokes: one bright bar per image at a random place
        r, c = torch.randint(3, 15, (2,)).tolist()
        digits[i, 0, r : r + 3, c : c + 3 + i % 4] = 1.0
    digits = digits * 2 - 1
    index = torch.arange(64)
    for step in range(30):
        batch = index[(step * 16) % 64 :][:16]
        model.phase2_update(digits[batch], batch, opt, lambda loss: loss.backward())
    model.eval()
    with torch.no_grad():
        good, old = model.frozen_outputs(digits, index)
        logits = {name: model.discriminator(images) for name, images in (("X", digits), ("G(X)", good), ("G_old", old))}
        logits["pseudo"] = model.discriminator(model.pseudo_anomalies(old))
    lowest_bad = min(logits["G_old"].min(), logits["pseudo"].min())
    assert max(logits["X"].max(), logits["G(X)"].max()) < lowest_bad, {k: v.mean().item() for k, v in logits.items()}
