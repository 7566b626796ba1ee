"""AnoGAN (Schlegl, Seeböck, Waldstein, Schmidt-Erfurth & Langs, IPMI 2017, arXiv 1703.05921).

A DCGAN is trained on normal images only: generator G maps z ∈ R^nz, drawn from the prior p_z, to an image (tanh),
discriminator D returns a logit and its last feature map f(·). The two play the minimax game

    min_G max_D V(D, G) = E_x[log D(x)] + E_z[log(1 − D(G(z)))]

D minimises −V by binary cross-entropy with logits (real x → 1, G(z) → 0, the two terms summed). G uses the
non-saturating form of its half: it maximises log D(G(z)), i.e. minimises BCE(D(G(z)), 1), as the GAN paper and
DCGAN do, instead of minimising log(1 − D(G(z))), whose gradient vanishes while D wins early in training.
Adam (lr 2e-4, β = (0.5, 0.999)); per batch D steps first, then G on a fresh D(G(z)) (DCGAN's order; each step is
`losses.descend`, D's loss `losses.real_fake_bce`).

A query x is mapped to the latent space by searching z: start from a random z_0 ~ p_z, keep G and D frozen, and
minimise for Γ iterations

    L(z) = (1 − λ)·L_R(z) + λ·L_D(z),   L_R(z) = Σ|x − G(z)|,   L_D(z) = Σ|f(x) − f(G(z))|,   λ = 0.1, Γ = 500

where each Σ runs over one image's pixels (features). The anomaly score is the loss at the final z_Γ:
A(x) = (1 − λ)·R(x) + λ·D(x), R(x) = L_R(z_Γ), D(x) = L_D(z_Γ). Score map: |x − G(z_Γ)| averaged over channels.

Choices the paper leaves open:
- the search's optimiser: Adam with step size 0.01 (`search_optimizer`, `search_lr`). An Adam step moves each
  coordinate by about lr at most, so Γ·lr = 5 lets z travel five prior standard deviations; Adam's per-coordinate
  normalisation also makes the step independent of the loss's scale, which grows with the image size (Σ, not mean).
  Public ports differ here (optimiser and step size); `search_optimizer: sgd` is there for comparison.
- z_0 per image: drawn from a torch.Generator seeded by (search_seed, a CRC-32 of the image's pixels), mixed by
  NumPy's SeedSequence (torch keeps only a seed's low 32 bits, so `search_seed·2³² + key` would drop search_seed). An
  image starts from the same z_0 whichever batch, position, rank or mode (test, predict, calibration) scores it.
- the prior: N(0, I) by default (`prior: normal`, the project's specification); the paper describes z as uniformly
  distributed noise, as DCGAN's U[−1, 1], which `prior: uniform` gives (f-AnoGAN's official code draws N(0, I)).

Batched search: a test batch is searched at once. The loss summed over the batch has ∂/∂z_i = ∂L_i/∂z_i, Adam's state
is per element, and G and D run in eval mode (BatchNorm with running statistics), so every image follows exactly the
trajectory it would follow alone: a batch scores as its images one by one would (tests/methods/test_anogan.py), only
much faster (scripts/bench_latent_search.py).

Validation does no search (Γ forward-backward passes per image would dominate training): it logs the GAN's losses on
the validation normals, with a fixed z per validation batch, as `val/loss_d` and `val/loss_g`.
"""

from __future__ import annotations

import zlib
from typing import ClassVar

import numpy as np
import torch

from adrun.contract import Count
from adrun.errors import UserError, check_choice
from adrun.methods.base import AnomalyModule
from adrun.methods.losses import bce, descend, real_fake_bce
from adrun.nets.dcgan import Decoder, Discriminator
from adrun.nets.modes import frozen
from adrun.scores import Scores

PRIORS = ("normal", "uniform")
SEARCH_OPTIMIZERS = {"adam": torch.optim.Adam, "sgd": torch.optim.SGD}


def latent_seed(search_seed: int, key: int) -> int:
    """The seed of an image's starting z: (search_seed, its key) mixed into 32 bits by NumPy's SeedSequence."""
    return int(np.random.SeedSequence([search_seed, key]).generate_state(1)[0])


def content_keys(x: torch.Tensor) -> torch.Tensor:
    """Per image, a CRC-32 of its pixel values: what z_0 is seeded by, so it depends on the image alone."""
    rows = x.detach().float().cpu().numpy().reshape(len(x), -1)
    return torch.tensor([zlib.crc32(row.tobytes()) for row in rows], dtype=torch.long)


def sample_prior(prior: str, n: int, nz: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """n draws of z ~ p_z on the CPU, shaped [n, nz, 1, 1] for the DCGAN decoder."""
    if prior == "normal":
        z = torch.randn(n, nz, generator=generator)
    else:
        z = torch.rand(n, nz, generator=generator).mul_(2).sub_(1)
    return z.view(n, nz, 1, 1)


class GAN(AnomalyModule):
    """The DCGAN of AnoGAN and f-AnoGAN: G (`nets.dcgan.Decoder`, z → image) and D (`nets.dcgan.Discriminator`,
    image → (logit, f)), trained by the minimax game above (f-AnoGAN's default WGAN-GP keeps G and D's layers, D's
    BatchNorm swapped for a layer norm, and trains them by its own game). Subclasses save `lr`, `beta1`, `beta2` as
    hyperparameters and add their way of finding z for a query."""

    def __init__(self, image_size: int, channels: int, nz: int, ngf: int, ndf: int, prior: str):
        super().__init__()
        check_choice("method.prior", prior, PRIORS)
        self.automatic_optimization = False  # two players, two optimisers, stepped in DCGAN's order
        self.nz, self.prior = nz, prior
        self.generator = Decoder(image_size, channels, nz, ngf)
        self.discriminator = Discriminator(image_size, channels, ndf)

    def sample_z(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        return sample_prior(self.prior, n, self.nz, generator).to(device=self.device, dtype=self.dtype)

    def discriminator_loss(self, x: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        """−V(D, G) on a batch: BCE with real x → 1 plus BCE with G(z) → 0."""
        return real_fake_bce(self.discriminator(x)[0], self.discriminator(fake.detach())[0])

    def generator_loss(self, fake: torch.Tensor) -> torch.Tensor:
        """The non-saturating generator loss: −log D(G(z)) = BCE(D(G(z)), 1)."""
        return bce(self.discriminator(fake)[0], 1.0)

    def update(self, x: torch.Tensor, opt_g, opt_d, backward) -> dict[str, torch.Tensor]:
        """One GAN step on a batch of normal images: D on (x, G(z)), then G against the updated D."""
        fake = self.generator(self.sample_z(len(x)))
        loss_d = descend(opt_d, self.discriminator_loss(x, fake), backward)
        loss_g = descend(opt_g, self.generator_loss(fake), backward)
        return {"loss_d": loss_d, "loss_g": loss_g}

    def gan_training_step(self, x: torch.Tensor, opt_g, opt_d) -> None:
        losses = self.update(x, opt_g, opt_d, self.manual_backward)
        self.log_dict({f"train/{k}": v.detach() for k, v in losses.items()}, prog_bar=True, batch_size=len(x))

    def gan_validation_step(self, x: torch.Tensor, batch_idx: int) -> None:
        """The GAN's losses on validation normals, with a z fixed per validation batch (no latent search)."""
        fake = self.generator(self.sample_z(len(x), torch.Generator().manual_seed(batch_idx)))
        losses = {"loss_d": self.discriminator_loss(x, fake), "loss_g": self.generator_loss(fake)}
        self.log_dict({f"val/{k}": v for k, v in losses.items()}, batch_size=len(x))

    def gan_optimizers(
        self, lr: float | None = None, betas: tuple[float, float] | None = None
    ) -> tuple[torch.optim.Optimizer, torch.optim.Optimizer]:
        """Adam for G and for D, at `lr` and `betas` (default: the hyperparameters `lr`, `beta1`, `beta2`)."""
        h = self.hparams
        lr, betas = lr if lr is not None else h.lr, betas if betas is not None else (h.beta1, h.beta2)
        return (
            torch.optim.Adam(self.generator.parameters(), lr=lr, betas=betas),
            torch.optim.Adam(self.discriminator.parameters(), lr=lr, betas=betas),
        )


class AnoGAN(GAN):
    trainer_overrides: ClassVar[dict] = {"inference_mode": False}  # the latent search needs gradients at test time

    def __init__(
        self,
        image_size: int,
        channels: int,
        nz: Count = 100,
        ngf: Count = 64,
        ndf: Count = 64,
        prior: str = "normal",
        lr: float = 2e-4,
        beta1: float = 0.5,
        beta2: float = 0.999,
        epochs: Count = 15,
        lam: float = 0.1,
        iterations: Count = 500,
        search_optimizer: str = "adam",
        search_lr: float = 0.01,
        search_seed: int = 0,
    ):
        super().__init__(image_size, channels, nz, ngf, ndf, prior)
        if not 0 <= lam <= 1:
            raise UserError(f"method.lam (λ) must lie in [0, 1], got {lam}")
        if iterations < 0:
            raise UserError(f"method.iterations (Γ) must be ≥ 0, got {iterations}")
        check_choice("method.search_optimizer", search_optimizer, SEARCH_OPTIMIZERS)
        if not isinstance(search_seed, int) or search_seed < 0:
            raise UserError(f"method.search_seed must be an integer ≥ 0, got {search_seed!r}")
        self.save_hyperparameters()

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        self.gan_training_step(batch["image"], *self.optimizers())

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        self.gan_validation_step(batch["image"], batch_idx)

    def configure_optimizers(self):
        return self.gan_optimizers()

    def search_losses(self, x: torch.Tensor, features_x: torch.Tensor, z: torch.Tensor) -> dict[str, torch.Tensor]:
        """Per image: L_R(z) = Σ|x − G(z)|, L_D(z) = Σ|f(x) − f(G(z))| and L(z) = (1 − λ)·L_R + λ·L_D; and G(z)."""
        lam = self.hparams.lam
        x_hat = self.generator(z)
        _, features_hat = self.discriminator(x_hat)
        residual = (x - x_hat).abs().flatten(1).sum(1)
        discrimination = (features_x - features_hat).abs().flatten(1).sum(1)
        loss = (1 - lam) * residual + lam * discrimination
        return {"loss": loss, "residual": residual, "discrimination": discrimination, "x_hat": x_hat}

    def initial_z(self, keys: torch.Tensor) -> torch.Tensor:
        """z_0 per image, a function of (search_seed, that image's key) only."""
        seed = self.hparams.search_seed
        return torch.cat([self.sample_z(1, torch.Generator().manual_seed(latent_seed(seed, k))) for k in keys.tolist()])

    def search(self, x: torch.Tensor, keys: torch.Tensor) -> dict[str, torch.Tensor]:
        """Γ steps of the search for every image of the batch at once; the losses and G(z) at z_Γ, and z_Γ."""
        h = self.hparams
        with frozen(self.generator, self.discriminator), torch.enable_grad():
            features_x = self.discriminator(x)[1].detach()
            z = self.initial_z(keys).requires_grad_(True)
            optimizer = SEARCH_OPTIMIZERS[h.search_optimizer]([z], lr=h.search_lr)
            for _ in range(h.iterations):
                optimizer.zero_grad(set_to_none=True)
                # Σ over the batch: image i's loss depends on z_i only, so z_i's gradient is its own image's gradient
                self.search_losses(x, features_x, z)["loss"].sum().backward()
                optimizer.step()
            with torch.no_grad():
                final = self.search_losses(x, features_x, z)
        return final | {"z": z.detach()}

    def score(self, batch: dict[str, torch.Tensor]) -> Scores:
        """A(x) at z_Γ, the map |x − G(z_Γ)|, and G(z_Γ) as the reconstruction."""
        x = batch["image"]
        found = self.search(x, content_keys(x))
        return Scores(found["loss"], (x - found["x_hat"]).abs().mean(1, keepdim=True), reconstruction=found["x_hat"])
