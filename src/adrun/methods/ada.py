"""Adversarial Discriminative Attention, ADA (Kimura, Chaudhury, Narita, Munawar & Tachibana, WACV 2020).

Base model: AnoVAEGAN, a VAE-GAN in the style of Larsen et al. (2016). The encoder G_enc maps x to (μ, log σ²), z is
reparameterised, the decoder G_dec maps z to x̂; a discriminator D outputs the probability that an image is a real
normal one. D's last convolutional feature maps A_k go through a global average pool and a linear layer (weights w_k),
so its class activation map CAM_D(x) = Σ_k w_k·A_k exists (Zhou et al. 2016). Losses (the paper's objective
min_G max_D L_GAN + L_prior + L_image):

    L_GAN   = E_x[log D(x)] + E_z~N(0,I)[log(1 − D(G_dec(z)))] + E_x[log(1 − D(G_dec(G_enc(x))))]
    L_prior = KL(q(z|x) ‖ N(0, I))                       (summed over z, averaged over the batch)
    L_image = ‖x − x̂‖²                                  (summed over pixels, averaged over the batch)

D minimises the BCE form of −L_GAN (real → 1, reconstructions and prior samples → 0). G_enc and G_dec minimise
w_prior·L_prior + w_image·L_image + w_adv·L_adv, L_adv the non-saturating BCE(D(x̂), 1) + BCE(D(G_dec(z)), 1).
Choices (the paper defers the architecture to Larsen et al. and gives no weights): DCGAN blocks (`nets.dcgan`) for the
encoder, decoder and D's trunk; summed L_image and L_prior, i.e. the Gaussian ELBO, with unit weights; Adam 2e-4,
β = (0.5, 0.999). D first, then G against the updated D.

Score (self-supervised):

    c = CAM_D(x) + CAM_D(x̂),    score = ‖c ⊙ (x − x̂)‖²₂ / ‖c‖²₂ − β·D(x)

each CAM upsampled (bilinear) to the image and min–max normalised to [0, 1] per image (choice: the paper says
"normalised"). ‖c ⊙ (x − x̂)‖² / ‖c‖² is the squared error averaged with weights c²; where c is zero everywhere
(both CAMs flat) the weights are taken uniform, which is the plain mean squared error, the limit of any constant c.
D(x) is the probability of "normal"; β = 0.2 (the paper's MNIST value). Score map: c ⊙ (x − x̂)² averaged over
channels. CAM needs no gradient: it is one forward pass through D's trunk and a weighted sum, batched.

Semi-supervised (training batches with label 1, from `data.known_anomaly_classes`): a second discriminator D_ano is
trained with L_GAN^ano = L_GAN + E_x~p_ano[log(1 − D_ano(x))] (known anomalies → 0), D_G (= D) keeps L_GAN; the
generator plays against both (choice). Then c = CAM_{D_G}(x) + CAM_{D_G}(x̂) + CAM_{D_ano}(x) + CAM_{D_ano}(x̂) and
score = ‖c ⊙ (x − x̂)‖² / ‖c‖² − β·(D_G(x) + D_ano(x)).

The paper's baselines are switches of the same module (`variant`): `anovae` (no adversary: a VAE, scored by
‖x − x̂‖² averaged over pixels), `anovaegan` (the VAE-GAN, the same plain reconstruction score), `ada` (attention).
AnoVAEGAN and ADA train identically and differ only in the score, so an `ada` run also reports AnoVAEGAN's score on
its own networks (`image_auroc_recon`) and the attention term alone (`image_auroc_attention`): the effect of the
attention is then measured on one model, free of training noise.
"""

from __future__ import annotations

import logging

import torch
import torch.nn.functional as F
from torch import nn

from adrun.contract import Count
from adrun.errors import check_choice
from adrun.methods.base import AnomalyModule
from adrun.methods.losses import bce, descend
from adrun.nets.dcgan import Decoder, Encoder
from adrun.scores import Scores

log = logging.getLogger(__name__)

VARIANTS = ("ada", "anovaegan", "anovae")


class AttentionDiscriminator(nn.Module):
    """DCGAN trunk → feature maps A [B, K, h, w] → global average pool → linear → logit of "normal"."""

    def __init__(self, image_size: int, channels: int, width: int = 64):
        super().__init__()
        trunk = Encoder(image_size, channels, 1, width)
        self.features = nn.Sequential(*list(trunk)[:-1])  # up to the 4×4 maps, before the encoder's last convolution
        self.head = nn.Linear(trunk[-1].in_channels, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(logit [B], feature maps A)."""
        features = self.features(x)
        return self.head(features.mean((2, 3))).squeeze(1), features

    def cam(self, features: torch.Tensor) -> torch.Tensor:
        """CAM = Σ_k w_k·A_k [B, 1, h, w]: the logit before pooling (the bias left out), no gradient needed."""
        return torch.einsum("k,bkhw->bhw", self.head.weight[0], features).unsqueeze(1)


def normalised_cam(cam: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """A CAM upsampled (bilinear) to `size` and min–max scaled to [0, 1] per image; a flat map becomes 0."""
    cam = F.interpolate(cam, size=size, mode="bilinear", align_corners=False)
    low = cam.amin((2, 3), keepdim=True)
    span = cam.amax((2, 3), keepdim=True) - low
    return torch.where(span > 0, (cam - low) / span.clamp_min(1e-12), torch.zeros_like(cam))


def attention_score(
    x: torch.Tensor, x_hat: torch.Tensor, c: torch.Tensor, p_normal: torch.Tensor, beta: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """score = ‖c ⊙ (x − x̂)‖² / ‖c‖² − β·p_normal, with uniform weights where c = 0; map c ⊙ (x − x̂)² (channel mean)."""
    squared = (x - x_hat).pow(2)
    weights = c.expand_as(squared).pow(2)
    total = weights.sum((1, 2, 3))
    weighted = (weights * squared).sum((1, 2, 3)) / total.clamp_min(1e-12)
    plain = squared.mean((1, 2, 3))
    scores = torch.where(total > 0, weighted, plain) - beta * p_normal
    return scores, (c * squared).mean(1, keepdim=True)


class ADA(AnomalyModule):
    def __init__(
        self,
        image_size: int,
        channels: int,
        variant: str = "ada",
        nz: Count = 100,
        ngf: Count = 64,
        ndf: Count = 64,
        w_prior: float = 1.0,
        w_image: float = 1.0,
        w_adv: float = 1.0,
        beta: float = 0.2,
        lr: float = 2e-4,
        beta1: float = 0.5,
        beta2: float = 0.999,
        epochs: Count = 15,
    ):
        super().__init__()
        check_choice("method.variant", variant, VARIANTS)
        self.save_hyperparameters()
        self.automatic_optimization = False
        self.encoder = Encoder(image_size, channels, 2 * nz, ngf)  # → (μ, log σ²)
        self.decoder = Decoder(image_size, channels, nz, ngf)
        self.discriminator = AttentionDiscriminator(image_size, channels, ndf)  # D_G
        self.discriminator_ano = AttentionDiscriminator(image_size, channels, ndf)  # D_ano, with known anomalies
        self.register_buffer("semi_supervised", torch.zeros((), dtype=torch.bool))
        self.semi_supervised_training = False

    @property
    def uses_known_anomalies(self) -> bool:
        """Only the attention model learns from labelled anomalies; the baselines train on normals."""
        return self.hparams.variant == "ada"

    @property
    def adversarial(self) -> bool:
        return self.hparams.variant != "anovae"

    def on_fit_start(self) -> None:
        super().on_fit_start()
        known = len(self.trainer.datamodule.train_images(label=1))
        # the buffer is saved with the weights (scoring reads it); training reads this host copy: no sync per step
        self.semi_supervised_training = bool(self.uses_known_anomalies and known)
        self.semi_supervised.fill_(self.semi_supervised_training)
        if self.semi_supervised_training:
            log.info(f"ada: semi-supervised, {known} known anomalies train D_ano")

    # ---- the VAE ----
    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, logvar = self.encoder(x).chunk(2, dim=1)
        return mu, logvar

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x̂ = G_dec(μ(x)) at test time (the posterior mean, no sampling)."""
        return self.decoder(self.encode(x)[0])

    def vae_losses(self, x: torch.Tensor) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        mu, logvar = self.encode(x)
        z = mu + torch.randn_like(mu) * (0.5 * logvar).exp()
        x_hat = self.decoder(z)
        prior = (-0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum((1, 2, 3))).mean()
        image = (x - x_hat).pow(2).sum((1, 2, 3)).mean()
        return {"prior": prior, "image": image}, x_hat

    # ---- training ----
    def discriminator_loss(
        self, d: AttentionDiscriminator, x: torch.Tensor, fakes: list[torch.Tensor], anomalies: torch.Tensor | None
    ) -> torch.Tensor:
        """−L_GAN as BCE: real normals → 1, each fake batch → 0; with `anomalies`, −L_GAN^ano (known anomalies → 0)."""
        loss = bce(d(x)[0], 1.0) + sum(bce(d(fake.detach())[0], 0.0) for fake in fakes)
        if anomalies is not None and len(anomalies):
            loss = loss + bce(d(anomalies)[0], 0.0)
        return loss

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        opt_g, opt_d, opt_ano = self.optimizers()
        h = self.hparams
        if self.normals_only_training:  # no boolean mask, no device sync
            x, anomalies = batch["image"], None
        else:
            normal = batch["label"] == 0
            x, anomalies = batch["image"][normal], batch["image"][~normal]
        if len(x) < 2:
            return  # BatchNorm needs two normals; a batch of known anomalies only has nothing to reconstruct
        losses, x_hat = self.vae_losses(x)
        logs = {}
        discriminators = []
        if self.adversarial:
            x_prior = self.decoder(torch.randn(len(x), h.nz, 1, 1, device=x.device, dtype=x.dtype))
            discriminators = [(self.discriminator, opt_d, None, "loss_d")]
            if self.semi_supervised_training:
                discriminators.append((self.discriminator_ano, opt_ano, anomalies, "loss_d_ano"))
            for d, opt, known, name in discriminators:
                logs[name] = descend(opt, self.discriminator_loss(d, x, [x_hat, x_prior], known), self.manual_backward)
            losses["adv"] = sum(bce(d(x_hat)[0], 1.0) + bce(d(x_prior)[0], 1.0) for d, *_ in discriminators)
        loss_g = h.w_prior * losses["prior"] + h.w_image * losses["image"] + h.w_adv * losses.get("adv", 0.0)
        descend(opt_g, loss_g, self.manual_backward)
        logs |= {"loss_g": loss_g} | losses
        self.log_dict({f"train/{k}": v.detach() for k, v in logs.items()}, prog_bar=True, batch_size=len(x))

    def configure_optimizers(self):
        h = self.hparams
        betas = (h.beta1, h.beta2)
        generator = [*self.encoder.parameters(), *self.decoder.parameters()]
        return (
            torch.optim.Adam(generator, lr=h.lr, betas=betas),
            torch.optim.Adam(self.discriminator.parameters(), lr=h.lr, betas=betas),
            torch.optim.Adam(self.discriminator_ano.parameters(), lr=h.lr, betas=betas),
        )

    # ---- scoring ----
    def attention(self, x: torch.Tensor, x_hat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """c (the sum of the normalised CAMs of x and x̂ under D_G, and D_ano when semi-supervised) and Σ D(x)."""
        discriminators = [self.discriminator] + ([self.discriminator_ano] if self.semi_supervised else [])
        c, p_normal = torch.zeros_like(x[:, :1]), torch.zeros(len(x), device=x.device, dtype=x.dtype)
        for d in discriminators:
            logit, features = d(x)
            _, features_hat = d(x_hat)
            c = c + normalised_cam(d.cam(features), x.shape[-2:]) + normalised_cam(d.cam(features_hat), x.shape[-2:])
            p_normal = p_normal + torch.sigmoid(logit)
        return c, p_normal

    def score(self, batch: dict[str, torch.Tensor]) -> Scores:
        """The variant's score; `ada` also reports, from the same networks, `recon` (the plain reconstruction error:
        AnoVAEGAN's score) and `attention` (the attention-weighted error without −β·D(x))."""
        x = batch["image"]
        x_hat = self(x)
        squared = (x - x_hat).pow(2)
        recon = squared.mean((1, 2, 3))
        if self.hparams.variant != "ada":
            return Scores(recon, squared.mean(1, keepdim=True), reconstruction=x_hat)
        c, p_normal = self.attention(x, x_hat)
        scores, maps = attention_score(x, x_hat, c, p_normal, self.hparams.beta)
        attention_only, _ = attention_score(x, x_hat, c, torch.zeros_like(p_normal), 0.0)
        return Scores(scores, maps, {"recon": recon, "attention": attention_only}, reconstruction=x_hat)
