"""GANomaly's losses and score equal the paper's equations (with the documented reductions) on hand-made tensors."""

import math

import pytest
import torch
from torch import nn

from adrun.errors import UserError
from adrun.methods.ganomaly import GANomaly, batch_statistics


class IdentityCritic(nn.Module):
    """A stand-in D whose feature map is its input and whose logit is a fixed value per image."""

    def __init__(self, logit: float = 0.0):
        super().__init__()
        self.logit = logit

    def forward(self, x):
        return torch.full((x.shape[0],), self.logit), x


class FixedGenerator(nn.Module):
    def __init__(self, x_hat, z, z_hat):
        super().__init__()
        self.out = (x_hat, z, z_hat)

    def forward(self, x):
        return self.out


def tiny(**kwargs):
    return GANomaly(image_size=16, channels=1, nz=4, ngf=4, ndf=4, **kwargs)


def test_generator_loss_is_eq5_with_the_papers_weights():
    model = tiny()
    model.discriminator = IdentityCritic()
    x, x_hat = torch.zeros(2, 1, 16, 16), torch.full((2, 1, 16, 16), 0.5)
    z, z_hat = torch.zeros(2, 4, 1, 1), torch.full((2, 4, 1, 1), 2.0)
    losses = model.generator_losses(x, x_hat, z, z_hat)
    assert losses["adv"].item() == pytest.approx(0.25)  # mean (f(x) − f(x̂))², f = identity here
    assert losses["con"].item() == pytest.approx(0.5)  # mean |x − x̂|
    assert losses["enc"].item() == pytest.approx(4.0)  # mean (z − ẑ)²
    assert losses["loss_g"].item() == pytest.approx(1 * 0.25 + 50 * 0.5 + 1 * 4.0)


class PixelMeanCritic(nn.Module):
    """A stand-in D whose logit is the image's mean pixel and whose feature map is twice the image."""

    def forward(self, x):
        return x.mean((1, 2, 3)), 2 * x


def test_adv_loss_outputs_is_anomalibs_l2_between_ds_sigmoid_outputs():
    x, x_hat = torch.zeros(2, 1, 16, 16), torch.full((2, 1, 16, 16), 0.5)
    z = torch.zeros(2, 4, 1, 1)
    losses = {}
    for adv_loss in ("features", "outputs"):
        model = tiny(adv_loss=adv_loss)
        model.discriminator = PixelMeanCritic()
        losses[adv_loss] = model.generator_losses(x, x_hat, z, z)
    assert losses["features"]["adv"].item() == pytest.approx(1.0)  # mean (2·0 − 2·0.5)²
    expected = (1 / (1 + math.exp(-0.5)) - 0.5) ** 2  # (σ(mean x̂) − σ(mean x))²
    assert losses["outputs"]["adv"].item() == pytest.approx(expected)
    assert losses["outputs"]["con"] == losses["features"]["con"] and losses["outputs"]["enc"] == 0


def test_init_torch_is_pytorchs_default_and_dcgan_the_papers():
    torch.manual_seed(0)
    dcgan, default = tiny(), tiny(init="torch")
    norms = {
        name: [m for m in net.modules() if isinstance(m, nn.BatchNorm2d)]
        for name, net in [("d", dcgan), ("t", default)]
    }
    assert all(torch.equal(m.weight, torch.ones_like(m.weight)) for m in norms["t"])  # PyTorch's BatchNorm: γ = 1
    assert not any(torch.equal(m.weight, torch.ones_like(m.weight)) for m in norms["d"])  # DCGAN's: γ ~ N(1, 0.02)
    first = {
        name: next(m for m in net.modules() if isinstance(m, nn.Conv2d)) for name, net in [("d", dcgan), ("t", default)]
    }
    bound = 1 / math.sqrt(first["t"].weight[0].numel())  # kaiming_uniform(a=√5): U(±1/√fan_in)
    assert first["t"].weight.abs().max() <= bound and first["t"].weight.std() > 3 * 0.02
    assert first["d"].weight.std().item() == pytest.approx(0.02, rel=0.3)
    with pytest.raises(UserError, match=r"method\.init"):
        tiny(init="xavier")
    with pytest.raises(UserError, match=r"method\.adv_loss"):
        tiny(adv_loss="logits")


def test_discriminator_loss_is_halved_bce_real_one_fake_zero():
    model = tiny()
    model.discriminator = IdentityCritic(logit=1.5)
    x = torch.zeros(3, 1, 16, 16)
    sigmoid = 1 / (1 + math.exp(-1.5))
    expected = 0.5 * (-math.log(sigmoid) - math.log(1 - sigmoid))
    assert model.discriminator_loss(x, x).item() == pytest.approx(expected)


@pytest.mark.parametrize(("norm", "expected"), [("l1", [4 * 2.0, 4 * 1.0]), ("mse", [4.0, 1.0])])
def test_score_is_the_latent_gap(norm, expected):
    model = tiny(score_norm=norm).eval()
    x = torch.zeros(2, 1, 16, 16)
    x_hat = torch.zeros(2, 1, 16, 16)
    x_hat[0, 0, 3, 5] = 0.8
    z = torch.zeros(2, 4, 1, 1)
    z_hat = torch.stack([torch.full((4, 1, 1), 2.0), torch.full((4, 1, 1), -1.0)])
    model.generator = FixedGenerator(x_hat, z, z_hat)
    scored = model.score({"image": x})
    scores, maps = scored.image, scored.map
    assert scores.tolist() == pytest.approx(expected)  # l1: ‖z − ẑ‖₁ (Eq. 7); mse: the official code's mean square
    assert maps.shape == (2, 1, 16, 16)
    assert maps[0, 0, 3, 5].item() == pytest.approx(0.8) and maps.sum().item() == pytest.approx(0.8)


def test_discriminator_is_reinitialised_when_its_loss_collapses():
    x = torch.randn(4, 1, 16, 16)
    for threshold, changed in ((0.0, False), (1e9, True)):
        torch.manual_seed(0)
        model = tiny(lr=0.0, d_reinit_below=threshold)
        before = [p.clone() for p in model.discriminator.parameters()]
        opt_g, opt_d = model.configure_optimizers()
        model.update(x, opt_g, opt_d, lambda loss: loss.backward())
        after = list(model.discriminator.parameters())
        assert any(not torch.equal(a, b) for a, b in zip(before, after, strict=True)) == changed


def test_training_step_moves_both_players():
    torch.manual_seed(0)
    model = tiny()
    opt_g, opt_d = model.configure_optimizers()
    g0 = [p.clone() for p in model.generator.parameters()]
    d0 = [p.clone() for p in model.discriminator.parameters()]
    losses = model.update(torch.randn(4, 1, 16, 16), opt_g, opt_d, lambda loss: loss.backward())
    assert set(losses) == {"loss_g", "adv", "con", "enc", "loss_d"}
    assert all(not torch.equal(a, b) for a, b in zip(g0, model.generator.parameters(), strict=True))
    assert any(not torch.equal(a, b) for a, b in zip(d0, model.discriminator.parameters(), strict=True))


def test_transductive_batchnorm_uses_batch_statistics_without_touching_running_ones():
    torch.manual_seed(0)
    model = tiny(test_batchnorm="train").eval()
    running = [b.clone() for name, b in model.generator.named_buffers() if "running" in name]
    x = torch.randn(6, 1, 16, 16)
    alone = model.score({"image": x[:3]}).image
    together = model.score({"image": x}).image[:3]
    assert not torch.allclose(alone, together), "batch statistics make a score depend on its batch mates"
    assert all(
        torch.equal(a, b)
        for a, b in zip(running, [b for n, b in model.generator.named_buffers() if "running" in n], strict=True)
    )
    inductive = tiny().eval()
    inductive.load_state_dict(model.state_dict())
    assert torch.allclose(inductive.score({"image": x[:3]}).image, inductive.score({"image": x}).image[:3], atol=1e-5)
    with batch_statistics(model.generator):
        assert all(m.training for m in model.generator.modules() if isinstance(m, nn.BatchNorm2d))
    assert not any(m.training for m in model.generator.modules() if isinstance(m, nn.BatchNorm2d))


@pytest.mark.parametrize("size", [8, 24, 48])
def test_sizes_that_are_not_a_power_of_two_at_least_16_are_refused(size):
    with pytest.raises(UserError, match="power of two"):
        GANomaly(image_size=size, channels=1)


@pytest.mark.parametrize("size", [16, 64])
def test_any_power_of_two_size_and_both_channel_counts(size):
    for channels in (1, 3):
        model = GANomaly(image_size=size, channels=channels, nz=8, ngf=4, ndf=4).eval()
        scored = model.score({"image": torch.randn(2, channels, size, size)})
        scores, maps = scored.image, scored.map
        assert scores.shape == (2,) and maps.shape == (2, 1, size, size)


def test_enc_loss_smooth_l1_is_anomalibs_huber_on_the_latent_gap():
    x = torch.zeros(2, 1, 16, 16)
    z = torch.zeros(2, 4, 1, 1)
    z_hat = torch.stack([torch.full((4, 1, 1), 2.0), torch.full((4, 1, 1), 0.5)])
    enc = {}
    for name in ("l2", "smooth_l1"):
        model = tiny(enc_loss=name)
        model.discriminator = IdentityCritic()
        enc[name] = model.generator_losses(x, x, z, z_hat)["enc"].item()
    assert enc["l2"] == pytest.approx((4.0 + 0.25) / 2)  # mean (z − ẑ)²
    assert enc["smooth_l1"] == pytest.approx((2.0 - 0.5 + 0.5 * 0.5**2) / 2)  # |d| − ½ above 1, ½d² below
    with pytest.raises(UserError, match=r"method\.enc_loss"):
        tiny(enc_loss="l1")


def test_first_padding_4_is_anomalibs_first_convolution_and_still_ends_at_one_by_one():
    from adrun.nets.dcgan import Encoder

    maps = []
    encoder = Encoder(32, 3, 7, 4, first_padding=4)
    convs = [m for m in encoder if isinstance(m, nn.Conv2d)]
    hooks = [m.register_forward_hook(lambda m, i, o: maps.append(o.shape[-1])) for m in convs]
    assert encoder(torch.randn(2, 3, 32, 32)).shape == (2, 7, 1, 1)
    assert maps == [19, 9, 4, 1]  # anomalib's sizes at 32 px; DCGAN's are 16, 8, 4, 1
    for hook in hooks:
        hook.remove()
    model = GANomaly(image_size=32, channels=1, nz=4, ngf=4, ndf=4, first_padding=4)
    firsts = [net[0] for net in (model.generator.encoder, model.generator.reencoder, model.discriminator.features)]
    assert [conv.padding for conv in firsts] == [(4, 4)] * 3
    dcgan = GANomaly(image_size=32, channels=1, nz=4, ngf=4, ndf=4)
    shapes = [[p.shape for p in m.generator.decoder.parameters()] for m in (model, dcgan)]
    assert shapes[0] == shapes[1], "the decoder is DCGAN's either way"
    with pytest.raises(UserError, match="≥ 32"):
        tiny(first_padding=4)


class RecordingGenerator(nn.Module):
    """Returns its input as x̂ and records what it was given."""

    def forward(self, x):
        self.seen = x
        z = x.mean((1, 2, 3)).view(-1, 1, 1, 1)
        return x, z, z


def test_input_norm_imagenet_feeds_the_networks_imagenet_normalised_pixels():
    model = GANomaly(image_size=16, channels=3, nz=4, ngf=4, ndf=4, input_norm="imagenet").eval()
    model.generator = RecordingGenerator()
    x = torch.stack([torch.full((3, 16, 16), -1.0), torch.full((3, 16, 16), 1.0)])  # black, white
    scored = model.score({"image": x})
    mean, std = torch.tensor([0.485, 0.456, 0.406]), torch.tensor([0.229, 0.224, 0.225])
    assert torch.allclose(model.generator.seen[0, :, 0, 0], -mean / std)
    assert torch.allclose(model.generator.seen[1, :, 0, 0], (1 - mean) / std)
    assert torch.allclose(scored.reconstruction, x, atol=1e-6), "the picture shows x̂ back in [−1, 1]"
    plain = GANomaly(image_size=16, channels=3, nz=4, ngf=4, ndf=4).eval()
    plain.generator = RecordingGenerator()
    plain.score({"image": x})
    assert torch.equal(plain.generator.seen, x), "tanh (the default) feeds the [−1, 1] batch as it is"
    with pytest.raises(UserError, match=r"data\.channels=3"):
        tiny(input_norm="imagenet")


def test_the_anomalib_preset_sets_each_switch_and_leaves_the_defaults_the_papers():
    from tests.conftest import composed

    paper = composed("data=fashion_mnist").method
    preset = composed("data=fashion_mnist", "experiment=ganomaly_anomalib")
    assert (paper.adv_loss, paper.init, paper.enc_loss, paper.score_norm) == ("features", "dcgan", "l2", "l1")
    assert (paper.first_padding, paper.input_norm, paper.d_reinit_below) == (1, "tanh", 1e-5)
    m = preset.method
    assert (m.adv_loss, m.init, m.enc_loss, m.score_norm) == ("outputs", "torch", "smooth_l1", "mse")
    assert (m.first_padding, m.input_norm, m.d_reinit_below, m.epochs) == (4, "imagenet", 0.0, 15)
    assert (preset.data.channels, preset.data.batch_size) == (3, 32)
