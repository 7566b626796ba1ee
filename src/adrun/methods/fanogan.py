"""f-AnoGAN (Schlegl, Seeböck, Waldstein, Langs & Schmidt-Erfurth, Medical Image Analysis 2019).

AnoGAN's Γ-step latent search is replaced by an encoder E: x → z trained after the GAN, so a query is scored in one
forward pass. Two phases in one run:

1. GAN phase (epochs 0 … gan_epochs − 1): AnoGAN's DCGAN game, the very same code (`adrun.methods.anogan.GAN`).
2. Encoder phase (the next encoder_epochs epochs): G and D frozen (eval mode, no gradients), E trained with the izi_f
   loss ("image → z → image" with the discriminator's features as a second residual)

       L_izi_f(x) = (1/n)·‖x − G(E(x))‖² + κ·(1/n_d)·‖f(x) − f(G(E(x)))‖²,   κ = 1

   n the number of pixels, n_d the number of features of f, per image; the batch loss is the mean over images.

The Trainer runs gan_epochs + encoder_epochs epochs (`trainer_epochs`; there is no separate `epochs` key). The phase
is `current_epoch < gan_epochs`; each phase announces itself once and `train/phase` (0 GAN, 1 encoder) is logged.

Score: the izi_f loss of each image, A(x) = L_izi_f(x). Map: |x − G(E(x))| averaged over channels.

Choices:
- The prior is U[−1, 1]^nz, as in f-AnoGAN, and E ends in a tanh, so E(x) lies where G was trained (f-AnoGAN's E
  ends in tanh for the same reason); AnoGAN's default N(0, I) would leave most of its mass outside tanh's range.
- E is `nets.dcgan.Encoder` (the GANomaly/DCGAN encoder, base width `nef`) followed by the tanh.
- The GAN is AnoGAN's DCGAN with the standard (non-saturating) loss, not f-AnoGAN's WGAN-GP: the two methods then
  differ only in how z is found, which is what the comparison is about.
- E uses Adam with the GAN's lr and betas.
- Validation logs the GAN's losses in the GAN phase and `val/izi_f` on the validation normals in the encoder phase.
"""

from __future__ import annotations

import logging

import torch
from torch import nn

from adrun.contract import Count
from adrun.errors import UserError
from adrun.methods.anogan import GAN
from adrun.nets.dcgan import Encoder
from adrun.nets.modes import frozen
from adrun.scores import Scores

log = logging.getLogger(__name__)

PHASES = ("gan", "encoder")


class FAnoGAN(GAN):
    def __init__(
        self,
        image_size: int,
        channels: int,
        nz: Count = 100,
        ngf: Count = 64,
        ndf: Count = 64,
        nef: Count = 64,
        lr: float = 2e-4,
        beta1: float = 0.5,
        beta2: float = 0.999,
        gan_epochs: Count = 15,
        encoder_epochs: Count = 15,
        kappa: float = 1.0,
    ):
        super().__init__(image_size, channels, nz, ngf, ndf, prior="uniform")  # U[−1, 1]: E's tanh range
        if gan_epochs < 1 or encoder_epochs < 1:
            raise UserError(
                f"method.gan_epochs and method.encoder_epochs must both be ≥ 1, got {gan_epochs} and {encoder_epochs}"
            )
        self.save_hyperparameters()
        self.encoder = nn.Sequential(Encoder(image_size, channels, nz, nef), nn.Tanh())

    def trainer_epochs(self, batches_per_epoch: int) -> int:
        return self.hparams.gan_epochs + self.hparams.encoder_epochs

    @property
    def phase(self) -> str:
        return PHASES[int(self.current_epoch >= self.hparams.gan_epochs)]

    def on_train_epoch_start(self) -> None:
        if self.current_epoch in (0, self.hparams.gan_epochs):
            h = self.hparams
            first, last = (
                (0, h.gan_epochs - 1) if self.phase == "gan" else (h.gan_epochs, h.gan_epochs + h.encoder_epochs - 1)
            )
            what = "GAN (G and D, minimax)" if self.phase == "gan" else "encoder E (izi_f, G and D frozen)"
            log.info(f"fanogan: epochs {first}–{last}: training the {what}")

    def izi_f(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Per image: the pixel and feature mean squared residuals, L_izi_f = residual + κ·features, and G(E(x))."""
        x_hat = self.generator(self.encoder(x))
        _, features_x = self.discriminator(x)
        _, features_hat = self.discriminator(x_hat)
        residual = (x - x_hat).pow(2).flatten(1).mean(1)
        features = (features_x - features_hat).pow(2).flatten(1).mean(1)
        return {
            "loss": residual + self.hparams.kappa * features,
            "residual": residual,
            "features": features,
            "x_hat": x_hat,
        }

    def update_encoder(self, x: torch.Tensor, opt_e, backward) -> dict[str, torch.Tensor]:
        """One izi_f step of E on a batch of normal images, G and D frozen."""
        with frozen(self.generator, self.discriminator):
            losses = self.izi_f(x)
            opt_e.zero_grad()
            backward(losses["loss"].mean())
            opt_e.step()
        return {key: losses[key].mean() for key in ("loss", "residual", "features")}

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        x = batch["image"]
        opt_g, opt_d, opt_e = self.optimizers()
        # a tensor filled on the device: a Python number would be copied there, a sync in every step
        self.log("train/phase", torch.full((), float(self.phase == "encoder"), device=x.device), batch_size=len(x))
        if self.phase == "gan":
            self.gan_training_step(x, opt_g, opt_d)
            return
        losses = self.update_encoder(x, opt_e, self.manual_backward)
        self.log("train/izi_f", losses["loss"].detach(), prog_bar=True, batch_size=len(x))
        self.log_dict({f"train/izi_f_{k}": losses[k].detach() for k in ("residual", "features")}, batch_size=len(x))

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        x = batch["image"]
        if self.phase == "gan":
            self.gan_validation_step(x, batch_idx)
        else:
            self.log("val/izi_f", self.izi_f(x)["loss"].mean(), batch_size=len(x))

    def configure_optimizers(self):
        h = self.hparams
        encoder = torch.optim.Adam(self.encoder.parameters(), lr=h.lr, betas=(h.beta1, h.beta2))
        return (*self.gan_optimizers(), encoder)

    def score(self, batch: dict[str, torch.Tensor]) -> Scores:
        x = batch["image"]
        with frozen(self.encoder, self.generator, self.discriminator):
            found = self.izi_f(x)
        return Scores(found["loss"], (x - found["x_hat"]).abs().mean(1, keepdim=True), reconstruction=found["x_hat"])
