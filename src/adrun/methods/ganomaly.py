"""GANomaly (Akcay, Atapour-Abarghouei & Breckon, ACCV 2018, arXiv 1805.06725).

Generator: encoder G_E maps x to z, decoder G_D maps z to x̂, a second encoder E maps x̂ to ẑ. Discriminator D is the
encoder architecture with a one-logit head; f(·) is its last feature map. Trained on normal images only with

    L_adv = ‖f(x) − f(x̂)‖₂          (Eq. 2, feature matching on D's features, not on D's output)
    L_con = ‖x − x̂‖₁                (Eq. 3)
    L_enc = ‖G_E(x) − E(x̂)‖₂        (Eq. 4)
    L_G   = w_adv·L_adv + w_con·L_con + w_enc·L_enc,   w = (1, 50, 1)   (Eq. 5)

and D by binary cross-entropy, real x → 1, x̂ → 0, halved; D is re-initialised when its loss falls below 1e-5.
Choice (the paper writes norms, the official code means): the norms are taken as the official code computes them —
L_adv and L_enc as mean squared errors, L_con as the mean absolute error — because the weights (1, 50, 1) were set
for those means.

Score (Eq. 7): A(x) = ‖G_E(x) − E(G(x))‖₁ (`score_norm: l1`); `score_norm: mse` gives the official code's mean of
squares instead. The official code also min–max scales the scores over the test set; that changes no ranking and uses
the test set, so it is not done. Score map: |x − x̂| averaged over channels.

Peers' variants (keys; the defaults are the paper's):
- `adv_loss`: `features` (default; Eq. 2, and the official code: L2 between D's last feature maps of x and x̂) or
  `outputs` (anomalib 2.x, `GeneratorLoss`: MSE between D's sigmoid outputs D(x) and D(x̂)).
- `init`: `dcgan` (default; N(0, 0.02) convolutions, N(1, 0.02) BatchNorm scales, as the paper's DCGAN blocks) or
  `torch` (PyTorch's default initialisation: what anomalib's GANomaly effectively trains with, since its
  `weights_init` is called on the Generator and Discriminator containers, whose class names match neither "Conv" nor
  "BatchNorm", instead of through `.apply`). D's re-initialisation below `d_reinit_below` is DCGAN's in both.
- `enc_loss`: `l2` (default; Eq. 4 as the official code's MSE) or `smooth_l1` (anomalib 2.x: `SmoothL1Loss`).
- `first_padding`: 1 (default; DCGAN) or 4 (anomalib 2.x pads the first convolution of both encoders and of D by 4;
  the maps go S/2 + 3, S/4 + 1, S/8, … and still end at 1×1 for S ≥ 32).
- `input_norm`: `tanh` (default; images in [−1, 1], the decoder's tanh range) or `imagenet` (anomalib 2.x's default
  pre-processor: [0, 1] then ImageNet mean/std per channel, 3 channels; the reconstruction, still a tanh, is compared
  with those inputs in L_con and D).
- `d_reinit_below: 0` never re-initialises D (anomalib 2.x has no re-initialisation).
`experiment=ganomaly_anomalib` sets all of these plus anomalib's MSE score, 3 channels, batch 32 and its loader's short
last batch (anomalib 2.x, src/anomalib/models/image/ganomaly/, read at commit 190b35baf).

Measured (docs/results/ganomaly_choices.md: Fashion-MNIST budget protocol, 10 classes × 2 seeds, paired Δ): the
paper's defaults score 0.905. Keeping a 4-image last training batch (`data.drop_last=false`; the official code drops
it) costs 0.127; `init: torch` alone 0.080; anomalib's choices together, in [−1, 1] and batch 64, 0.030 with the
paper's batching and 0.203 with the short batch; `score_norm: mse` changes nothing (+0.001). Alone: `input_norm:
imagenet` (3 channels) +0.016, the one switch shown (Holm over 7), and upwards although the tanh cannot reach the
normalised background; `adv_loss: outputs` +0.006, `enc_loss: smooth_l1` −0.003, `first_padding: 4` −0.002,
`data.channels=3` −0.002, `data.batch_size=32` −0.005 (none shown), and `d_reinit_below: 0` the very same runs (D's
loss never falls below 1e-5 at this budget). The switches do not add up (alone −0.080, together −0.030).

BatchNorm at test time: `test_batchnorm: eval` uses running statistics (inductive). The official code scores with
BatchNorm in training mode, i.e. with each test batch's own statistics; `test_batchnorm: train` reproduces that. It is
transductive (a sample's score depends on its batch mates) and is offered only for comparison with published numbers.
"""

from __future__ import annotations

from contextlib import contextmanager, nullcontext

import torch
import torch.nn.functional as F
from torch import nn

from adrun.contract import Count
from adrun.errors import UserError, check_choice
from adrun.methods.base import AnomalyModule
from adrun.methods.losses import descend, real_fake_bce
from adrun.nets.dcgan import Decoder, Discriminator, Encoder, init_dcgan_weights
from adrun.scores import Scores

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)  # per RGB channel, images in [0, 1]


class Generator(nn.Module):
    """x → (x̂, z, ẑ): encoder G_E, decoder G_D, encoder E."""

    def __init__(self, image_size: int, channels: int, nz: int, width: int, first_padding: int = 1):
        super().__init__()
        self.encoder = Encoder(image_size, channels, nz, width, first_padding)
        self.decoder = Decoder(image_size, channels, nz, width)
        self.reencoder = Encoder(image_size, channels, nz, width, first_padding)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        z = self.encoder(x)
        x_hat = self.decoder(z)
        return x_hat, z, self.reencoder(x_hat)


@contextmanager
def batch_statistics(module: nn.Module):
    """BatchNorm layers normalise with the current batch's statistics and leave their running averages untouched."""
    norms = [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [(m.training, m.momentum) for m in norms]
    for m in norms:
        m.train()
        m.momentum = 0.0  # running = (1 − 0)·running + 0·batch: unchanged
    try:
        yield
    finally:
        for m, (training, momentum) in zip(norms, saved, strict=True):
            m.train(training)
            m.momentum = momentum


class GANomaly(AnomalyModule):
    def __init__(
        self,
        image_size: int,
        channels: int,
        nz: Count = 100,
        ngf: Count = 64,
        ndf: Count = 64,
        w_adv: float = 1.0,
        w_con: float = 50.0,
        w_enc: float = 1.0,
        lr: float = 2e-4,
        beta1: float = 0.5,
        beta2: float = 0.999,
        epochs: Count = 15,
        d_reinit_below: float = 1e-5,
        score_norm: str = "l1",
        test_batchnorm: str = "eval",
        adv_loss: str = "features",
        init: str = "dcgan",
        enc_loss: str = "l2",
        first_padding: int = 1,
        input_norm: str = "tanh",
    ):
        super().__init__()
        if score_norm not in ("l1", "mse"):
            raise UserError(f"method.score_norm must be l1 (the paper) or mse (the official code), got {score_norm!r}")
        if test_batchnorm not in ("eval", "train"):
            raise UserError(f"method.test_batchnorm must be eval or train, got {test_batchnorm!r}")
        check_choice("method.adv_loss", adv_loss, ("features", "outputs"))
        check_choice("method.init", init, ("dcgan", "torch"))
        check_choice("method.enc_loss", enc_loss, ("l2", "smooth_l1"))
        check_choice("method.input_norm", input_norm, ("tanh", "imagenet"))
        if input_norm == "imagenet" and channels != 3:
            raise UserError(f"method.input_norm=imagenet needs data.channels=3 (ImageNet's statistics), got {channels}")
        self.save_hyperparameters()
        self.automatic_optimization = False  # two players, two optimisers, stepped in the paper's order
        self.generator = Generator(image_size, channels, nz, ngf, first_padding)
        self.discriminator = Discriminator(image_size, channels, ndf, first_padding)
        if init == "torch":
            for layer in self.modules():
                if layer is not self and hasattr(layer, "reset_parameters"):
                    layer.reset_parameters()

    def generator_losses(
        self, x: torch.Tensor, x_hat: torch.Tensor, z: torch.Tensor, z_hat: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """L_adv, L_con, L_enc (Eqs. 2–4) and their weighted sum L_G (Eq. 5)."""
        logit_real, features_real = self.discriminator(x)
        logit_fake, features_fake = self.discriminator(x_hat)
        if self.hparams.adv_loss == "features":
            adv = F.mse_loss(features_fake, features_real)
        else:
            adv = F.mse_loss(torch.sigmoid(logit_fake), torch.sigmoid(logit_real))
        con = F.l1_loss(x_hat, x)
        enc = F.mse_loss(z_hat, z) if self.hparams.enc_loss == "l2" else F.smooth_l1_loss(z_hat, z)
        h = self.hparams
        return {"loss_g": h.w_adv * adv + h.w_con * con + h.w_enc * enc, "adv": adv, "con": con, "enc": enc}

    def discriminator_loss(self, x: torch.Tensor, x_hat: torch.Tensor) -> torch.Tensor:
        """BCE with real → 1 and reconstructions → 0, averaged over the two halves."""
        return 0.5 * real_fake_bce(self.discriminator(x)[0], self.discriminator(x_hat.detach())[0])

    def update(self, x: torch.Tensor, opt_g, opt_d, backward) -> dict[str, torch.Tensor]:
        """One training step on a batch of normal images: G first, then D on the same x̂ (the official order)."""
        x_hat, z, z_hat = self.generator(x)
        losses = self.generator_losses(x, x_hat, z, z_hat)
        descend(opt_g, losses["loss_g"], backward)
        loss_d = descend(opt_d, self.discriminator_loss(x, x_hat), backward)
        self.reinit_discriminator_below(loss_d.detach())
        return losses | {"loss_d": loss_d}

    def reinit_discriminator_below(self, loss_d: torch.Tensor) -> None:
        """D re-initialised (DCGAN) at the step its loss falls below `d_reinit_below`. On the CPU as always; on an
        accelerator the comparison (in float64, as `.item()` compares) and the choice stay on the device: fresh
        weights are drawn at every step and kept only where the loss is below, so no step waits for the device. The
        decision and its step are the same; a re-initialised D draws other values than a host-side re-init would,
        since the generator has advanced. `d_reinit_below` ≤ 0 never re-initialises (a BCE is never negative)."""
        if self.hparams.d_reinit_below <= 0:
            return
        if loss_d.device.type == "cpu":
            if loss_d.item() < self.hparams.d_reinit_below:
                init_dcgan_weights(self.discriminator)
            return
        init_dcgan_weights(self.discriminator, where=loss_d.double() < self.hparams.d_reinit_below)

    def network_input(self, x: torch.Tensor, inverse: bool = False) -> torch.Tensor:
        """The batch's [−1, 1] images as the networks see them (`input_norm`), or back with `inverse`."""
        if self.hparams.input_norm == "tanh":
            return x
        mean = x.new_tensor(IMAGENET_MEAN).view(1, -1, 1, 1)
        std = x.new_tensor(IMAGENET_STD).view(1, -1, 1, 1)
        return (x * std + mean) * 2 - 1 if inverse else ((x + 1) / 2 - mean) / std

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        opt_g, opt_d = self.optimizers()
        losses = self.update(self.network_input(batch["image"]), opt_g, opt_d, self.manual_backward)
        size = len(batch["image"])
        self.log_dict({f"train/{k}": losses[k].detach() for k in ("loss_g", "loss_d")}, prog_bar=True, batch_size=size)
        self.log_dict({f"train/{k}": losses[k].detach() for k in ("adv", "con", "enc")}, batch_size=size)

    def configure_optimizers(self):
        h = self.hparams
        betas = (h.beta1, h.beta2)
        return (
            torch.optim.Adam(self.generator.parameters(), lr=h.lr, betas=betas),
            torch.optim.Adam(self.discriminator.parameters(), lr=h.lr, betas=betas),
        )

    def forward_generator(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The generator at test time, with the BatchNorm mode `test_batchnorm` chooses."""
        transductive = self.hparams.test_batchnorm == "train"
        with batch_statistics(self.generator) if transductive else nullcontext():
            return self.generator(x)

    def score(self, batch: dict[str, torch.Tensor]) -> Scores:
        x = self.network_input(batch["image"])
        x_hat, z, z_hat = self.forward_generator(x)
        gap = (z - z_hat).flatten(1)
        scores = gap.abs().sum(1) if self.hparams.score_norm == "l1" else gap.pow(2).mean(1)
        reconstruction = self.network_input(x_hat, inverse=True)
        return Scores(scores, (x - x_hat).abs().mean(1, keepdim=True), reconstruction=reconstruction)
