"""Old is Gold, OGNet (Zaheer, Lee, Astrid & Lee, CVPR 2020, arXiv 2004.07657).

An adversarially trained one-class classifier in which the discriminator D, not the generator, scores. D outputs the
probability that an image is of *bad quality*: the paper's labels are real X → 0, generated → 1.

Networks, as the authors' code (xaggi/OGNet, network.py):
- G, a fully convolutional denoising autoencoder: four 5×5 stride-1 valid convolutions C → 64 → 128 → 256 → 512, each
  with BatchNorm and ReLU, mirrored by four 5×5 stride-1 transposed convolutions back to C channels, tanh out. Each
  layer takes 4 pixels off a side and gives them back, so G(X) has X's size; X must be at least 17 px. The code's
  encoder applies ReLU before BatchNorm in its last two layers; that order is kept.
- D: four 5×5 stride-2 convolutions (padding 2) 64 → 128 → 256 → 512, BatchNorm + ReLU (no BatchNorm on the last),
  then one linear layer to a logit. The code ends in a sigmoid and BCE; here D returns the logit and the losses are
  BCE with logits (the same function, without float saturation).
`width` scales the channel counts (64 as the code).

Phase 1, epochs 0 … high_epoch − 1: G and D together on X̃ = X + N(0, σ²) (Eq. 1–3):

    min_G max_D  E_X[log(1 − D(X))] + E_X̃[log D(G(X̃))],    L_R = ‖X − G(X̃)‖²,
    D: ½·(BCE(D(X), 0) + BCE(D(G(X̃)), 1));   G: w_adv·BCE(D(G(X̃)), 0) + w_rec·L_R (mean squared error)

with Adam, G at lr 1e-3, D at 1e-4, β = (0.9, 0.999) (the code's). D steps first, then G against the updated D
(the DCGAN order used for every GAN here; `d_update: paper`). The authors' code differs (`d_update: code`): it
back-propagates G's loss through the same D(G(X̃)) before D's step without clearing D's gradients, so D also receives
G's adversarial gradient (target 0 on G(X̃)); with the equal ½ weights, D's gradient on a fake logit is (p − 1)/2 + p/2
= p − ½, i.e. D is pulled towards D(G(X̃)) = ½, a much weaker adversary. The paper's minimax has no such term, hence
the default; but the code's learning rates were set under the weaker D, and with `paper` D wins early and G's
reconstructions degrade on short budgets (measured in the issue-5 note). On real digits (32 px, classes 1 and 2,
seeds 0 and 1, docs/results/ognet_digits.md) phase 2 lifts AUROC under both, and `paper` ends higher in all four
pairs (0.809 ± 0.087 vs 0.700 ± 0.123): the default. At the paper's 45 px, on the same pairs, phase 2 lifts AUROC
from 0.46 (phase 1) to 0.875 ± 0.047. On the Fashion-MNIST budget protocol (900 training images, seed 0,
docs/results/fmnist_budget/ognet/) OGNet scores 0.699 against GANomaly's 0.902: its 5 phase-1 epochs give G 70 steps,
its reconstructions are mostly blobs, and where G(X) looks like the pseudo anomalies phase 2 can lower AUROC (Coat
0.458 → 0.241); AUROC falls with G's validation MSE (Spearman −0.86 over the classes). It needs G steps, not another
phase 2. G_old is a frozen copy of G taken after `low_epoch` epochs.

Noise (`noise_std`, `noise_clamp`): the code's option is `sigma_noise = 0.9` in [-1, 1] image units, but it squares
it before passing it as the standard deviation (`gaussian(input, 1, 0, sigma_noise ** 2)`), so the noise it adds has
std 0.81; X̃ is then clamped to [-1, 1]. Both are the defaults.

Phase 2, `phase2_iterations` steps after phase 1 (Eq. 4–5): G and G_old frozen (eval mode), D alone with a fresh Adam
at lr 5e-5, on good examples (label 0) and bad ones (label 1):

    L_D = α·BCE(D(X), 0) + (1 − α)·BCE(D(G(X)), 0) + β·BCE(D(G_old(X)), 1) + (1 − β)·BCE(D(X̂_pseudo), 1)
    X̂_pseudo = G((G_old(X_i) + G_old(X_j)) / 2),   i ≠ j   (`derangement`: every image gets another as partner)

α = 0.1, β = 0.001. Each of the four groups goes through D as its own batch (its own BatchNorm statistics) with D
in train mode, and the test pass scores with D in eval mode (running statistics), both as in the authors' code. The
stored xaggi/OGNet snapshot holds only its test code (model.py, test.py: `self.d.eval()` before scoring); its
training code (model_fine_tune_discriminator.py, opts_fine_tune_discriminator.py) was read in public copies that carry
it. Measured (digits, 32 px, class 8, seed 0, phase 2 rerun from the same phase-1 D on the same pseudo anomalies,
docs/results/ognet_digits.md): separate batches 0.840, one mixed batch 0.808, D frozen in eval mode 0.826 — the
label-pure batches are not what limits phase 2. Where that training code differs and adrun keeps the paper / its own
loader: phase 2 there draws batches of 8 (three per step: X from one, the pseudo-anomaly pairs from the next two),
its `psuedo_anomaly_contribution` default 0.95 weights the G_old(X) term (0.05 on pseudo anomalies) where the paper's
β = 0.001 weights it, and G_old is saved through epoch `low_epoch` (G after low_epoch + 1 epochs). G(X) and G_old(X)
of a training image do not change in phase 2 (frozen, eval mode), so each is computed once and looked up
by the image's index; only the pseudo anomalies, new pairs every step, go through G again.

Why phase 1's D is no detector, and what phase 2 changes (measured, digits, docs/results/ognet_digits.md): as phase 1
leaves it D calls every output of G "fake" alike (mean logits X −4.6; G(X) +11.5, G_old(X) +11.7, pseudo +11.6 on
class 8's training images), so its D(G(X)) ranks test images by noise, near or below chance (0.40 on class 8, 0.45 on
class 1). Phase 2 pulls G(X) to "good" and keeps G_old(X) and pseudo anomalies "bad" (−9.0, +2.9, +7.8), and D(G(X))
then ranks anomalies above normals (0.84, 0.80): the `phase1` variant is the lower one, phase 2 lifts it.

Score (Eq. 6): D(G(X)); anomaly when D(G(X)) ≥ τ. The score is D's logit, log-odds of "bad": the same ranking as the
probability without float32 ties at 1.0; a probability threshold τ is the logit threshold log(τ / (1 − τ)). Beside it
the test pass reports `phase1`, the score of D as phase 1 left it (a frozen copy), so one run shows what phase 2 adds.
Score map (`score_map`): `residual` |X − G(X)| averaged over channels; `gradcam`, D's Grad-CAM on G(X): the last
convolution's feature maps A_k weighted by the mean gradient of the logit over each map, ReLU, resized to the input.
D's head is linear, so ∂logit/∂A_k is its weight reshaped and the gradient needs no backward pass.

The run is one Lightning fit: phase 1 for high_epoch epochs, then as many epochs as phase 2's iterations need, its
last one cut short. Each phase announces itself, names the progress bar, and logs under `phase1/` or `phase2/`;
the first phase-2 step logs X, G(X), G_old(X) and pseudo anomalies as one picture (`phase2/x_g_gold_pseudo`).
"""

from __future__ import annotations

import contextlib
import copy
import logging
import math

import torch
import torch.nn.functional as F
from pytorch_lightning.callbacks import TQDMProgressBar
from torch import nn

from adrun import figures, loggers, visual
from adrun.contract import Count
from adrun.errors import UserError, check_choice
from adrun.methods.base import AnomalyModule
from adrun.methods.losses import bce, descend, real_fake_bce
from adrun.nets.modes import frozen
from adrun.scores import Scores

log = logging.getLogger(__name__)

SCORE_MAPS = ("residual", "gradcam")
D_UPDATES = ("paper", "code")
SHRINK = 16  # G's four valid 5×5 convolutions take 4 pixels off each side length apiece


class Generator(nn.Module):
    """OGNet's denoising autoencoder: [B, C, S, S] → [B, C, S, S] in [-1, 1]."""

    def __init__(self, channels: int, width: int = 64):
        super().__init__()
        c1, c2, c3, c4 = width, 2 * width, 4 * width, 8 * width
        self.encoder = nn.Sequential(
            nn.Conv2d(channels, c1, 5), nn.BatchNorm2d(c1), nn.ReLU(True),
            nn.Conv2d(c1, c2, 5), nn.BatchNorm2d(c2), nn.ReLU(True),
            nn.Conv2d(c2, c3, 5), nn.ReLU(True), nn.BatchNorm2d(c3),  # ReLU before BatchNorm, as the code
            nn.Conv2d(c3, c4, 5), nn.ReLU(True), nn.BatchNorm2d(c4),
        )  # fmt: skip
        self.decoder = nn.Sequential(
            nn.ConvTranspose2d(c4, c3, 5), nn.BatchNorm2d(c3), nn.ReLU(True),
            nn.ConvTranspose2d(c3, c2, 5), nn.BatchNorm2d(c2), nn.ReLU(True),
            nn.ConvTranspose2d(c2, c1, 5), nn.BatchNorm2d(c1), nn.ReLU(True),
            nn.ConvTranspose2d(c1, channels, 5), nn.Tanh(),
        )  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x))


class Discriminator(nn.Module):
    """OGNet's D: [B, C, S, S] → one logit per image, "bad quality" positive. `features` ends at the last ReLU."""

    def __init__(self, image_size: int, channels: int, width: int = 64):
        super().__init__()
        c1, c2, c3, c4 = width, 2 * width, 4 * width, 8 * width
        self.features = nn.Sequential(
            nn.Conv2d(channels, c1, 5, 2, 2), nn.BatchNorm2d(c1), nn.ReLU(True),
            nn.Conv2d(c1, c2, 5, 2, 2), nn.BatchNorm2d(c2), nn.ReLU(True),
            nn.Conv2d(c2, c3, 5, 2, 2), nn.BatchNorm2d(c3), nn.ReLU(True),
            nn.Conv2d(c3, c4, 5, 2, 2), nn.ReLU(True),
        )  # fmt: skip
        side = image_size
        for _ in range(4):
            side = (side + 1) // 2  # a 5×5 stride-2 convolution with padding 2 halves a side, rounding up
        self.head = nn.Linear(c4 * side * side, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).flatten(1)).squeeze(1)

    def gradcam(self, x: torch.Tensor) -> torch.Tensor:
        """Grad-CAM of the logit on the last feature maps A_k: ReLU(Σ_k mean(∂logit/∂A_k)·A_k), at A's size."""
        features = self.features(x)
        weights = self.head.weight.view(1, *features.shape[1:]).mean((2, 3), keepdim=True)  # = ∂logit/∂A_k, averaged
        return F.relu((weights * features).sum(1, keepdim=True))


def derangement(n: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """A random partner j ≠ i for every i < n: the images in random order, each paired with the next (cyclically)."""
    if n < 2:
        raise ValueError("pseudo anomalies need at least two images in a batch")
    order = torch.randperm(n, generator=generator)
    partner = torch.empty(n, dtype=torch.long)
    partner[order] = order.roll(-1)
    return partner


class OGNet(AnomalyModule):
    def __init__(
        self,
        image_size: int,
        channels: int,
        width: Count = 64,
        noise_std: float = 0.81,
        noise_clamp: bool = True,
        w_adv: float = 0.5,
        w_rec: float = 0.5,
        g_lr: float = 1e-3,
        d_lr: float = 1e-4,
        low_epoch: Count = 2,
        high_epoch: Count = 5,
        phase2_iterations: Count = 75,
        phase2_lr: float = 5e-5,
        alpha: float = 0.1,
        beta: float = 0.001,
        score_map: str = "residual",
        d_update: str = "paper",
    ):
        super().__init__()
        if image_size <= SHRINK:
            raise UserError(f"ognet needs images larger than {SHRINK} px (G's valid convolutions); set data.image_size")
        if not 1 <= low_epoch < high_epoch:
            raise UserError(f"method.low_epoch must satisfy 1 ≤ low_epoch < high_epoch, got {low_epoch}, {high_epoch}")
        if phase2_iterations < 0:
            raise UserError(f"method.phase2_iterations must be ≥ 0, got {phase2_iterations}")
        check_choice("method.d_update", d_update, D_UPDATES)
        check_choice("method.score_map", score_map, SCORE_MAPS)
        self.save_hyperparameters()
        self.automatic_optimization = False  # G and D steps in phase 1, D alone in phase 2
        self.generator = Generator(channels, width)
        self.discriminator = Discriminator(image_size, channels, width)
        self.generator_old = frozen_copy(self.generator)  # G_old, taken after low_epoch epochs
        self.discriminator_phase1 = frozen_copy(self.discriminator)  # D as phase 1 left it, for the phase1 score
        self.register_buffer("phase2_steps", torch.zeros((), dtype=torch.long))
        self._frozen_outputs: dict[str, torch.Tensor] = {}  # phase 2's G(X), G_old(X) by training index

    # ---- phases ---------------------------------------------------------------------------------------------------
    @property
    def in_phase2(self) -> bool:
        return self.current_epoch >= self.hparams.high_epoch

    def trainer_epochs(self, batches_per_epoch: int) -> int:
        """Phase 1's high_epoch epochs, then as many as phase 2's iterations need (its last epoch ends early)."""
        phase2_epochs = math.ceil(self.hparams.phase2_iterations / batches_per_epoch) if batches_per_epoch else 0
        return self.hparams.high_epoch + phase2_epochs

    def on_train_epoch_start(self) -> None:
        h, epoch = self.hparams, self.current_epoch
        if epoch == h.low_epoch:
            self.generator_old.load_state_dict(self.generator.state_dict())
        if epoch == 0:
            log.info(f"ognet: phase 1, epochs 0–{h.high_epoch - 1}: G and D together (G_old = G after {h.low_epoch})")
        if epoch == h.high_epoch:
            self.discriminator_phase1.load_state_dict(self.discriminator.state_dict())
            log.info(
                f"ognet: phase 2, {h.phase2_iterations} iterations from epoch {epoch}: D alone on good (X, G(X)) and "
                "bad (G_old(X), pseudo anomalies) examples"
            )
            for key in [k for k in self.trainer.progress_bar_metrics if k.startswith("phase1/")]:
                del self.trainer.progress_bar_metrics[key]  # phase 2's bar shows phase 2's losses only
        bar = self.trainer.progress_bar_callback  # its own hook ran first and wrote "Epoch N"
        if isinstance(bar, TQDMProgressBar) and bar.is_enabled:
            with contextlib.suppress(TypeError):  # no bar yet
                bar.train_progress_bar.set_description(f"Phase {2 if self.in_phase2 else 1} · epoch {epoch}")
                left = self.hparams.phase2_iterations - int(self.phase2_steps)
                if self.in_phase2 and left < bar.train_progress_bar.total:
                    bar.train_progress_bar.reset(total=left)  # phase 2's last epoch ends early: its bar ends at 100 %

    def on_train_batch_start(self, batch: dict[str, torch.Tensor], batch_idx: int) -> int | None:
        if self.in_phase2 and self.phase2_steps >= self.hparams.phase2_iterations:
            return -1  # phase 2 is done: end this (last) epoch here
        return None

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        opt_g, opt_d, opt_d2 = self.optimizers()
        x = batch["image"]
        if self.in_phase2:
            losses = self.phase2_update(x, batch["index"], opt_d2, self.manual_backward)
            self.phase2_steps += 1
            if self.phase2_steps == 1:
                self.log_phase2_examples(x, batch["index"])
        else:
            losses = self.phase1_update(x, opt_g, opt_d, self.manual_backward)
        phase = "phase2" if self.in_phase2 else "phase1"
        self.log_dict({f"{phase}/{k}": v.detach() for k, v in losses.items()}, prog_bar=True, batch_size=len(x))

    def configure_optimizers(self):
        h = self.hparams
        return (
            torch.optim.Adam(self.generator.parameters(), lr=h.g_lr),
            torch.optim.Adam(self.discriminator.parameters(), lr=h.d_lr),
            torch.optim.Adam(self.discriminator.parameters(), lr=h.phase2_lr),  # phase 2's fresh optimiser
        )

    # ---- phase 1 --------------------------------------------------------------------------------------------------
    def noisy(self, x: torch.Tensor) -> torch.Tensor:
        """X̃ = X + N(0, noise_std²), clamped to the image range when `noise_clamp`."""
        x_noisy = x + self.hparams.noise_std * torch.randn_like(x)
        return x_noisy.clamp(-1, 1) if self.hparams.noise_clamp else x_noisy

    def phase1_update(self, x: torch.Tensor, opt_g, opt_d, backward) -> dict[str, torch.Tensor]:
        """One step of Eq. 1–3: D on (X → 0, G(X̃) → 1), then G against the updated D (`d_update: code`: the
        authors' simultaneous step instead)."""
        h = self.hparams
        if h.d_update == "code":
            return self.phase1_update_as_code(x, opt_g, opt_d, backward)
        fake = self.generator(self.noisy(x))
        real_logit, fake_logit = self.discriminator(x), self.discriminator(fake.detach())
        loss_d = descend(opt_d, 0.5 * real_fake_bce(fake_logit, real_logit), backward)  # D says 1 for "bad": G(X̃)
        adversarial, reconstruction = bce(self.discriminator(fake), 0.0), F.mse_loss(fake, x)
        loss_g = descend(opt_g, h.w_adv * adversarial + h.w_rec * reconstruction, backward)
        return {"loss_d": loss_d, "loss_g": loss_g, "loss_rec": reconstruction}

    def phase1_update_as_code(self, x: torch.Tensor, opt_g, opt_d, backward) -> dict[str, torch.Tensor]:
        """The authors' step: one D(G(X̃)) for both losses, D's gradients not cleared before G's backward pass (so G's
        adversarial term, target 0, also reaches D), then both optimisers step."""
        h = self.hparams
        fake = self.generator(self.noisy(x))
        fake_logit = self.discriminator(fake)
        loss_d = 0.5 * real_fake_bce(fake_logit, self.discriminator(x))
        opt_d.zero_grad()
        backward(loss_d, retain_graph=True)
        opt_g.zero_grad()  # G keeps nothing of D's loss
        reconstruction = F.mse_loss(fake, x)
        loss_g = h.w_adv * bce(fake_logit, 0.0) + h.w_rec * reconstruction
        backward(loss_g)
        opt_d.step()
        opt_g.step()
        return {"loss_d": loss_d, "loss_g": loss_g, "loss_rec": reconstruction}

    # ---- phase 2 --------------------------------------------------------------------------------------------------
    def phase2_loss(
        self, real: torch.Tensor, good: torch.Tensor, old: torch.Tensor, pseudo: torch.Tensor
    ) -> torch.Tensor:
        """Eq. 5 as BCE on D's logits for X, G(X) (→ 0) and G_old(X), X̂_pseudo (→ 1), weighted by α and β."""
        a, b = self.hparams.alpha, self.hparams.beta
        return a * bce(real, 0.0) + (1 - a) * bce(good, 0.0) + b * bce(old, 1.0) + (1 - b) * bce(pseudo, 1.0)

    @torch.no_grad()
    def frozen_outputs(self, x: torch.Tensor, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """G(X) and G_old(X) in eval mode, each training image's computed once in phase 2 and then looked up (by the
        batch's `index`; the store grows to the largest index seen)."""
        store = self._frozen_outputs
        n = int(index.max()) + 1
        if not store or len(store["done"]) < n:
            grown = {
                "done": torch.zeros(n, dtype=torch.bool, device=x.device),
                "g": x.new_empty((n, *x.shape[1:])),
                "old": x.new_empty((n, *x.shape[1:])),
            }
            for key, values in store.items():
                grown[key][: len(values)] = values
            store = self._frozen_outputs = grown
        missing = ~store["done"][index]
        if missing.any():
            new, fresh = index[missing], x[missing]
            with frozen(self.generator, self.generator_old):
                # float32 stores, whatever precision autocast computes in (16-mixed on a GPU)
                store["g"][new] = self.generator(fresh).to(store["g"].dtype)
                store["old"][new] = self.generator_old(fresh).to(store["old"].dtype)
            store["done"][new] = True
        return store["g"][index], store["old"][index]

    @torch.no_grad()
    def pseudo_anomalies(self, old: torch.Tensor) -> torch.Tensor:
        """X̂_pseudo = G((G_old(X_i) + G_old(X_j)) / 2) with j a random other image of the batch (Eq. 4)."""
        mixed = (old + old[derangement(len(old)).to(old.device)]) / 2
        with frozen(self.generator):
            return self.generator(mixed)

    def phase2_update(self, x: torch.Tensor, index: torch.Tensor, opt_d, backward) -> dict[str, torch.Tensor]:
        good, old = self.frozen_outputs(x, index)
        pseudo = self.pseudo_anomalies(old)
        loss_d = self.phase2_loss(*(self.discriminator(group) for group in (x, good, old, pseudo)))
        return {"loss_d": descend(opt_d, loss_d, backward)}

    def on_train_end(self) -> None:
        self._frozen_outputs = {}

    def log_phase2_examples(self, x: torch.Tensor, index: torch.Tensor, n: int = 8) -> None:
        """X, G(X), G_old(X) and pseudo anomalies, one row each, once at phase 2's start: drawn on every rank whatever
        the loggers (the pseudo anomalies draw random numbers), shown by rank 0 (`loggers.log_figure`)."""
        good, old = self.frozen_outputs(x[:n], index[:n])
        rows = {"X": x[:n], "good: G(X)": good, "bad: G_old(X)": old, "bad: pseudo": self.pseudo_anomalies(old)}
        pictures = {
            name: visual.to_rgb01(r.detach().float().cpu()).permute(0, 2, 3, 1).numpy() for name, r in rows.items()
        }
        title = "phase 2's examples for D: X and G(X) are good, G_old(X) and pseudo anomalies bad (Eq. 4–5)"
        grid = figures.named_rows(pictures, title)
        loggers.log_figure(self.trainer, "phase2/x_g_gold_pseudo", grid, self.global_step)

    # ---- scoring --------------------------------------------------------------------------------------------------
    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        x = batch["image"]
        reconstruction = self.generator(x)
        self.log("val/score_mean", self.discriminator(reconstruction).mean(), batch_size=len(x))
        self.log("val/loss_rec", F.mse_loss(reconstruction, x), batch_size=len(x))

    def score(self, batch: dict[str, torch.Tensor]) -> Scores:
        """D(G(X)) (Eq. 6), the residual or Grad-CAM map, and as a variant the phase-1 D's score of the same G(X)."""
        x = batch["image"]
        reconstruction = self.generator(x)
        scores = self.discriminator(reconstruction)
        if self.hparams.score_map == "gradcam":
            cam = self.discriminator.gradcam(reconstruction)
            maps = F.interpolate(cam, size=x.shape[-2:], mode="bilinear", align_corners=False)
        else:
            maps = (x - reconstruction).abs().mean(1, keepdim=True)
        return Scores(scores, maps, {"phase1": self.discriminator_phase1(reconstruction)}, reconstruction)


def frozen_copy(module: nn.Module) -> nn.Module:
    """A snapshot that never trains (no gradients); used in eval mode (`frozen`) or under the module's own eval()."""
    return copy.deepcopy(module).requires_grad_(False)
