"""f-AnoGAN (Schlegl, Seeböck, Waldstein, Langs & Schmidt-Erfurth, Medical Image Analysis 2019).

AnoGAN's Γ-step latent search is replaced by an encoder E: x → z trained after the GAN, so a query is scored in one
forward pass. Two phases in one run:

1. GAN phase (epochs 0 … gan_epochs − 1), `gan`:
   - `wgan_gp` (default; the paper's WGAN-GP, Gulrajani et al. 2017, as f-AnoGAN's official wgangp_64x64.py trains
     it). The critic D minimises

         L_D = E_z[D(G(z))] − E_x[D(x)] + λ·E_x̃[(‖∇_x̃ D(x̃)‖₂ − 1)²],   x̃ = x + α·(G(z) − x), α ~ U[0, 1] per image

     and G minimises L_G = −E_z[D(G(z))]. Each training batch is one critic step on (x, G(z)); after every n_critic-th
     critic step (counted over the whole phase, across epochs) G takes one step on fresh z (the official loop: G, then
     CRITIC_ITERS critic steps each on a new batch; its very first G step is skipped). λ = 10, n_critic = 5, Adam
     α = 1e-4, β = (0, 0.9) for both (the official code's LAMBDA, CRITIC_ITERS, AdamOptimizer(1e-4, 0., 0.9); WGAN-GP's
     Algorithm 1 defaults). The critic has no BatchNorm — the penalty is per image, BatchNorm would couple an image's
     gradient to its batch mates: it is AnoGAN's DCGAN discriminator with every BatchNorm replaced by a layer norm
     over (C, H, W) with a per-channel scale and shift (`GroupNorm(1, C)`), which is the official code's
     `Layernorm(name, [1,2,3], …)` in the critic. G keeps its BatchNorm (training mode while the GAN trains).
   - `dcgan`: AnoGAN's DCGAN game, the very same code (`adrun.methods.anogan.GAN`; Adam `lr`, `beta1`, `beta2`): the
     two methods then differ only in how z is found. The behaviour before `gan` existed.
2. Encoder phase (the next encoder_epochs epochs): G and D frozen (eval mode, no gradients), E trained with the izi_f
   loss ("image → z → image" with the discriminator's features as a second residual)

       L_izi_f(x) = (1/n)·‖x − G(E(x))‖² + κ·(1/n_d)·‖f(x) − f(G(E(x)))‖²,   κ = 1

   n the number of pixels, n_d the number of features of f, per image; the batch loss is the mean over images.
   E is trained as the official z_encoding_izif.py trains it: RMSProp, learning rate 5e-5 (`train_enc_izi(lr=5e-5)`),
   κ = 1 (`kappa=1.0`), decay 0.9 and ε = 1e-10 (TensorFlow 1's RMSPropOptimizer defaults, which the official code
   leaves as they are). One deviation: TensorFlow starts the mean square at 1, PyTorch at 0, so PyTorch's first
   steps are larger where gradients are small; the difference fades as 0.9^t (under 1% after 45 steps).
   `encoder_optimizer: adam` (at `encoder_lr`, β = (`beta1`, `beta2`)) is the choice before this one.

The Trainer runs gan_epochs + encoder_epochs epochs (`trainer_epochs`; there is no separate `epochs` key). The phase
is `current_epoch < gan_epochs`; each phase announces itself once and `train/phase` (0 GAN, 1 encoder) is logged.

Score: the izi_f loss of each image, A(x) = L_izi_f(x). Map: |x − G(E(x))| averaged over channels.

Choices:
- The prior is N(0, I)^nz (`prior: normal`), the official code's default (wgangp_64x64.py: RAND_SAMPLING = 'normal'),
  and E ends in a tanh, as the official encoder's default (Z_REG_TYPE = 'tanh_fc', "paper version"): E(x) lies in
  [−1, 1]^nz, the central part of the prior. `prior: uniform` (U[−1, 1]^nz, the official code's 'unif' option) puts
  all of the prior's mass inside tanh's range; it was this module's default before.
- E is `nets.dcgan.Encoder` (the GANomaly/DCGAN encoder, base width `nef`) followed by the tanh; G and D are adrun's
  DCGAN networks at every image size, not the official code's 64 × 64 residual networks.
- Measured (docs/results/fanogan_gan.md, Fashion-MNIST budget protocol, 900 training images): WGAN-GP's G steps once
  per n_critic = 5 critic steps, so at `gan_epochs: 15` it gets a fifth of DCGAN's generator steps and scores 0.750
  where `gan=dcgan` scores 0.884 (seeds 0, 1); with the same generator steps (`gan_epochs=75`, seed 0) 0.905, above
  DCGAN on 8 of 10 classes. Budgets for f-AnoGAN should count generator steps, not epochs.
- Logged: `train/loss_d`, `train/loss_g` (at G's steps), and for wgan_gp `train/wasserstein` (W = E[D(x)] −
  E[D(G(z))]) and `train/gp`. Validation logs the GAN's losses in the GAN phase (for wgan_gp, L_D without the penalty,
  which needs gradients, i.e. −W, and L_G) and `val/izi_f` on the validation normals in the encoder phase.
"""

from __future__ import annotations

import logging

import torch
from torch import nn

from adrun.contract import Count
from adrun.errors import UserError, check_choice
from adrun.methods.anogan import GAN
from adrun.methods.losses import descend, gradient_penalty
from adrun.nets.dcgan import Encoder
from adrun.nets.modes import frozen
from adrun.scores import Scores

log = logging.getLogger(__name__)

PHASES = ("gan", "encoder")
GANS = ("wgan_gp", "dcgan")
ENCODER_OPTIMIZERS = ("rmsprop", "adam")


def without_batchnorm(critic: nn.Module) -> nn.Module:
    """`critic` with every BatchNorm2d replaced by a layer norm over (C, H, W) with a per-channel scale and shift
    (`GroupNorm(1, C)`, scale 1, shift 0, ε = 1e-5: tflib's Layernorm as f-AnoGAN's WGAN-GP critic uses it)."""
    for name, child in critic.named_children():
        if isinstance(child, nn.BatchNorm2d):
            setattr(critic, name, nn.GroupNorm(1, child.num_features, eps=1e-5))
        else:
            without_batchnorm(child)
    return critic


class FAnoGAN(GAN):
    def __init__(
        self,
        image_size: int,
        channels: int,
        nz: Count = 100,
        ngf: Count = 64,
        ndf: Count = 64,
        nef: Count = 64,
        gan: str = "wgan_gp",
        prior: str = "normal",
        gp_weight: float = 10.0,
        n_critic: Count = 5,
        wgan_lr: float = 1e-4,
        wgan_beta1: float = 0.0,
        wgan_beta2: float = 0.9,
        lr: float = 2e-4,
        beta1: float = 0.5,
        beta2: float = 0.999,
        encoder_optimizer: str = "rmsprop",
        encoder_lr: float = 5e-5,
        gan_epochs: Count = 15,
        encoder_epochs: Count = 15,
        kappa: float = 1.0,
    ):
        check_choice("method.gan", gan, GANS)
        check_choice("method.encoder_optimizer", encoder_optimizer, ENCODER_OPTIMIZERS)
        super().__init__(image_size, channels, nz, ngf, ndf, prior=prior)
        if gp_weight < 0:
            raise UserError(f"method.gp_weight (λ) must be ≥ 0, got {gp_weight}")
        if gan_epochs < 1 or encoder_epochs < 1:
            raise UserError(
                f"method.gan_epochs and method.encoder_epochs must both be ≥ 1, got {gan_epochs} and {encoder_epochs}"
            )
        self.save_hyperparameters()
        self.encoder = nn.Sequential(Encoder(image_size, channels, nz, nef), nn.Tanh())
        if gan == "wgan_gp":
            without_batchnorm(self.discriminator)

    def trainer_epochs(self, batches_per_epoch: int) -> int:
        return self.hparams.gan_epochs + self.hparams.encoder_epochs

    @property
    def uncompiled(self) -> tuple[str, ...]:
        """WGAN-GP's penalty back-propagates through ∇D: torch.compile's AOTAutograd has no double backward, and the
        failure would come in a backward pass, outside the compile's fallback. D stays plain; G and E compile."""
        return ("discriminator",) if self.hparams.gan == "wgan_gp" else ()

    @property
    def phase(self) -> str:
        return PHASES[int(self.current_epoch >= self.hparams.gan_epochs)]

    def on_train_epoch_start(self) -> None:
        if self.current_epoch in (0, self.hparams.gan_epochs):
            h = self.hparams
            first, last = (
                (0, h.gan_epochs - 1) if self.phase == "gan" else (h.gan_epochs, h.gan_epochs + h.encoder_epochs - 1)
            )
            game = "WGAN-GP, critic and G" if h.gan == "wgan_gp" else "DCGAN, G and D, minimax"
            what = f"GAN ({game})" if self.phase == "gan" else "encoder E (izi_f, G and D frozen)"
            log.info(f"fanogan: epochs {first}–{last}: training the {what}")

    # ---- WGAN-GP ----
    def critic(self, x: torch.Tensor) -> torch.Tensor:
        """D(x) [B], the critic's value (its logit head)."""
        return self.discriminator(x)[0]

    def critic_loss(self, x: torch.Tensor, fake: torch.Tensor) -> dict[str, torch.Tensor]:
        """L_D = −W + λ·penalty on a batch and G(z) (detached), with W = E[D(x)] − E[D(G(z))] the critic's estimate
        of the Wasserstein distance; and W and the penalty."""
        fake = fake.detach()
        wasserstein = self.critic(x).mean() - self.critic(fake).mean()
        penalty = gradient_penalty(self.critic, x, fake)
        return {"loss_d": self.hparams.gp_weight * penalty - wasserstein, "wasserstein": wasserstein, "gp": penalty}

    def wgan_update(self, x: torch.Tensor, step: int, opt_g, opt_d, backward) -> dict[str, torch.Tensor]:
        """Critic step `step` (0-based, counted over the GAN phase) on (x, G(z)); after every n_critic-th one, a G step
        on fresh z against the updated critic."""
        with torch.no_grad():
            fake = self.generator(self.sample_z(len(x)))
        losses = self.critic_loss(x, fake)
        descend(opt_d, losses["loss_d"], backward)
        if (step + 1) % self.hparams.n_critic == 0:
            loss_g = -self.critic(self.generator(self.sample_z(len(x)))).mean()
            losses["loss_g"] = descend(opt_g, loss_g, backward)
        return losses

    # ---- the encoder ----
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
            descend(opt_e, losses["loss"].mean(), backward)
        return {key: losses[key].mean() for key in ("loss", "residual", "features")}

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        x = batch["image"]
        opt_g, opt_d, opt_e = self.optimizers()
        # a tensor filled on the device: a Python number would be copied there, a sync in every step
        self.log("train/phase", torch.full((), float(self.phase == "encoder"), device=x.device), batch_size=len(x))
        if self.phase == "gan" and self.hparams.gan == "dcgan":
            self.gan_training_step(x, opt_g, opt_d)
            return
        if self.phase == "gan":
            step = self.current_epoch * self.trainer.num_training_batches + batch_idx  # the phase's critic step
            losses = self.wgan_update(x, step, opt_g, opt_d, self.manual_backward)
            self.log_dict({f"train/{k}": v.detach() for k, v in losses.items()}, prog_bar=True, batch_size=len(x))
            return
        losses = self.update_encoder(x, opt_e, self.manual_backward)
        self.log("train/izi_f", losses["loss"].detach(), prog_bar=True, batch_size=len(x))
        self.log_dict({f"train/izi_f_{k}": losses[k].detach() for k in ("residual", "features")}, batch_size=len(x))

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        x = batch["image"]
        if self.phase == "gan" and self.hparams.gan == "dcgan":
            self.gan_validation_step(x, batch_idx)
        elif self.phase == "gan":  # L_D without the penalty (it needs gradients) and L_G, z fixed per batch
            critic_fake = self.critic(self.generator(self.sample_z(len(x), torch.Generator().manual_seed(batch_idx))))
            losses = {"loss_d": critic_fake.mean() - self.critic(x).mean(), "loss_g": -critic_fake.mean()}
            self.log_dict({f"val/{k}": v for k, v in losses.items()}, batch_size=len(x))
        else:
            self.log("val/izi_f", self.izi_f(x)["loss"].mean(), batch_size=len(x))

    def configure_optimizers(self):
        h = self.hparams
        if h.gan == "wgan_gp":
            gan = self.gan_optimizers(h.wgan_lr, (h.wgan_beta1, h.wgan_beta2))
        else:
            gan = self.gan_optimizers()
        if h.encoder_optimizer == "rmsprop":  # TensorFlow 1's RMSProp defaults: decay 0.9, ε = 1e-10
            encoder = torch.optim.RMSprop(self.encoder.parameters(), lr=h.encoder_lr, alpha=0.9, eps=1e-10)
        else:
            encoder = torch.optim.Adam(self.encoder.parameters(), lr=h.encoder_lr, betas=(h.beta1, h.beta2))
        return (*gan, encoder)

    def score(self, batch: dict[str, torch.Tensor]) -> Scores:
        x = batch["image"]
        with frozen(self.encoder, self.generator, self.discriminator):
            found = self.izi_f(x)
        return Scores(found["loss"], (x - found["x_hat"]).abs().mean(1, keepdim=True), reconstruction=found["x_hat"])
