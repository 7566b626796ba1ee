"""ADA: the score is its equation (c = 0 included), the CAM is the weighted sum of D's feature maps, the baselines are
switches, and semi-supervised training gives the known anomalies to D_ano with label 0 ("not normal")."""

import pytest
import pytorch_lightning as pl
import torch

from adrun.data.digits import Digits
from adrun.errors import UserError
from adrun.methods.ada import ADA, AttentionDiscriminator, attention_score, normalised_cam


def tiny(**kwargs):
    return ADA(**{"image_size": 16, "channels": 1, "nz": 4, "ngf": 4, "ndf": 4} | kwargs)


def test_score_is_the_attention_weighted_error_minus_beta_d():
    x = torch.zeros(2, 1, 2, 2)
    x_hat = torch.tensor([[1.0, 2.0], [0.0, 0.0]]).view(1, 1, 2, 2).repeat(2, 1, 1, 1)
    c = torch.tensor([[[[1.0, 0.0], [0.0, 0.0]]], [[[0.0, 0.0], [0.0, 0.0]]]])  # image 1: c = 0 everywhere
    p_normal = torch.tensor([0.5, 0.25])
    scores, maps = attention_score(x, x_hat, c, p_normal, beta=0.2)
    assert scores[0].item() == pytest.approx(1.0 * 1.0 / 1.0 - 0.2 * 0.5)  # ‖c ⊙ (x − x̂)‖² / ‖c‖² − β·D(x)
    assert scores[1].item() == pytest.approx((1 + 4) / 4 - 0.2 * 0.25)  # c = 0: uniform weights, the plain MSE
    assert not scores.isnan().any()
    assert torch.equal(maps[0], torch.tensor([[[1.0, 0.0], [0.0, 0.0]]])) and maps[1].abs().sum() == 0


def test_score_weights_by_c_squared_over_channels():
    x, x_hat = torch.zeros(1, 3, 1, 2), torch.ones(1, 3, 1, 2)
    x_hat[0, :, 0, 1] = 3.0
    c = torch.tensor([[[[1.0, 2.0]]]])
    scores, _ = attention_score(x, x_hat, c, torch.zeros(1), beta=0.2)
    assert scores.item() == pytest.approx((1 * 1 + 4 * 9) / (1 + 4))


def test_cam_is_the_weighted_sum_of_the_feature_maps():
    d = AttentionDiscriminator(16, 1, 4).eval()
    features = torch.rand(2, d.head.in_features, 4, 4)
    with torch.no_grad():
        d.head.weight.copy_(torch.arange(d.head.in_features, dtype=torch.float).view(1, -1) - 3)
    expected = sum(d.head.weight[0, k] * features[:, k : k + 1] for k in range(d.head.in_features))
    assert torch.allclose(d.cam(features), expected, atol=1e-5)
    x = torch.rand(2, 1, 16, 16)
    logit, maps = d(x)  # CAM's defining property: the logit is the CAM's mean plus the bias
    assert torch.allclose(logit, d.cam(maps).mean((1, 2, 3)) + d.head.bias, atol=1e-5)


def test_normalised_cam_is_upsampled_to_unit_range_and_flat_maps_are_zero():
    cam = torch.stack([torch.arange(4.0).view(1, 2, 2), torch.full((1, 2, 2), 7.0)])
    out = normalised_cam(cam, (4, 4))
    assert out.shape == (2, 1, 4, 4)
    assert out[0].min() == 0 and out[0].max() == 1 and out[1].abs().sum() == 0


def test_baselines_are_switches():
    torch.manual_seed(0)
    x = torch.rand(3, 1, 16, 16) * 2 - 1
    plain = tiny(variant="anovaegan").eval()
    with torch.no_grad():
        scored = plain.score({"image": x})
        scores, _ = scored.image, scored.map
        assert torch.allclose(scores, (x - plain(x)).pow(2).mean((1, 2, 3)))
    model = tiny().eval()
    with torch.no_grad():
        scored = model.score({"image": x})
        scores, _, variants = scored.image, scored.map, scored.variants
        x_hat = model(x)
        _, p_normal = model.attention(x, x_hat)
        assert torch.allclose(variants["recon"], (x - x_hat).pow(2).mean((1, 2, 3)))  # AnoVAEGAN's score, same nets
        assert torch.allclose(variants["attention"] - 0.2 * p_normal, scores)
    with pytest.raises(UserError, match="variant"):
        tiny(variant="anogan")
    assert tiny().uses_known_anomalies and not tiny(variant="anovae").uses_known_anomalies


class Spy(pl.Callback):
    """Each training batch, and every call of discriminator_loss (which D, its anomalies)."""

    def __init__(self, module):
        self.batches, self.calls = [], []
        original = module.discriminator_loss

        def recording(d, x, fakes, anomalies):
            self.calls.append((d, x, anomalies))
            return original(d, x, fakes, anomalies)

        module.discriminator_loss = recording

    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        self.batches.append(batch)


@pytest.mark.parametrize("variant", ["ada", "anovae"])
def test_semi_supervised_training_gives_known_anomalies_to_d_ano(variant):
    pl.seed_everything(0, verbose=False)
    data = Digits(image_size=16, channels=1, normal_class=0, known_anomaly_classes=[1], known_anomaly_fraction=0.5)
    data.setup("fit")
    assert int(data.train_set.labels.sum()) > 0
    module = tiny(variant=variant)
    spy = Spy(module)
    d_before = [p.clone() for p in module.discriminator.parameters()]
    trainer = pl.Trainer(
        max_epochs=1, limit_train_batches=3, limit_val_batches=0, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False,
    )  # fmt: skip
    trainer.fit(module, data)
    if variant == "anovae":  # no adversary: no D is trained, the anomalies are unused
        assert not spy.calls and all(
            torch.equal(a, b) for a, b in zip(d_before, module.discriminator.parameters(), strict=True)
        )
        return
    assert bool(module.semi_supervised)
    for batch, start in zip(spy.batches, range(0, 2 * len(spy.batches), 2), strict=True):
        (d_g, real_g, known_g), (d_ano, real_ano, known_ano) = spy.calls[start : start + 2]
        assert d_g is module.discriminator and known_g is None  # D_G: L_GAN on normals only
        assert torch.equal(real_g, real_ano)
        assert d_ano is module.discriminator_ano
        assert torch.equal(known_ano, batch["image"][batch["label"] == 1])  # every known anomaly of the batch …
        assert torch.equal(real_ano, batch["image"][batch["label"] == 0])  # … and never among the "real" normals
    assert sum(len(known) for *_, known in spy.calls[1::2]) > 0


def test_a_tiny_run_writes_every_artefact(tiny_run):
    results, run_dir = tiny_run("ada")
    assert (run_dir / "scores.csv").exists() and (run_dir / "checkpoints" / "last.ckpt").exists()
    assert 0 <= results["metrics"]["image_auroc"] <= 1 and results["metrics"]["pixel_aupro"] is not None
