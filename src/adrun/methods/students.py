"""Uninformed Students (Bergmann, Fauser, Sattlegger & Steger, CVPR 2020): student–teacher anomaly detection.

Per patch size p (`patch_sizes`; several = multi-scale): a teacher T (`adrun.methods.teacher`, trained once and cached)
and M students S_1…S_M of the same architecture (`nets.patch`), randomly initialised. Each network runs densely: a
128-d descriptor for the p×p patch centred on every pixel.

Students regress the teacher's descriptors standardised by its per-channel mean μ and std σ over all positions of the
training normals (Eq. 6):   L(S_i) = 1/(wh) Σ_{r,c} ‖S_i(x)_{r,c} − (T(x)_{r,c} − μ)/σ‖²
Adam, lr 1e-4, weight decay 1e-5. One optimiser over all students: Adam is per parameter and the losses are separate,
so this is M independent trainings in one step.

Score (Eqs. 7–9), per pixel, with μ̄ = (1/M) Σ_i S_i(x):
    e = ‖μ̄ − (T(x) − μ)/σ‖²                     regression error
    v = (1/M) Σ_i ‖S_i(x)‖² − ‖μ̄‖²               predictive variance (the trace of the students' covariance, ≥ 0)
each standardised by its mean and std over every pixel of the validation normals (carved from the training split; the
test set is never used), ẽ + ṽ; multi-scale: the average over the patch sizes (Eq. 10). Score map = that per-pixel
score at the input's size; image score = its maximum (`image_score: max`) or mean. The statistics are refreshed by
each validation pass, so every checkpoint carries the ones that match its students.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from adrun.contract import Count
from adrun.data.images import IMAGE_SUFFIXES, decode_all, visible
from adrun.errors import UserError, check_choice
from adrun.methods.base import AnomalyModule
from adrun.methods.teacher import TeacherSettings, obtain_teacher
from adrun.nets.patch import ARCHITECTURES, DESCRIPTOR, PatchNet
from adrun.scores import Scores

IMAGE_SCORES = ("max", "mean")
PAD_MODES = ("reflect", "replicate", "constant")
COMPACTNESS = ("signed", "squared")
TEACHER_SOURCE_MAX = 10_000  # images sampled (seeded) from a teacher_source folder


def regression_error(students: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """e = ‖mean_i S_i − t‖² per pixel: students [M, B, d, H, W], standardised teacher t [B, d, H, W] → [B, H, W]."""
    return (students.mean(0) - target).pow(2).sum(1)


def predictive_variance(students: torch.Tensor) -> torch.Tensor:
    """v = mean_i ‖S_i‖² − ‖mean_i S_i‖² per pixel: [M, B, d, H, W] → [B, H, W] (clamped at 0 against rounding)."""
    return (students.pow(2).sum(2).mean(0) - students.mean(0).pow(2).sum(1)).clamp_min(0)


class Students(AnomalyModule):
    def __init__(
        self,
        image_size: int,
        channels: int,
        patch_sizes: list[int] = (33,),
        students: Count = 5,
        lr: float = 1e-4,
        weight_decay: float = 1e-5,
        image_score: str = "max",
        pad_mode: str = "reflect",
        teacher_source: str = "train",
        teacher_resnet18: str = "cache",
        teacher_cache: str | None = "~/.cache/adrun/teachers",
        teacher_iterations: Count = 50_000,
        teacher_batch_size: Count = 64,
        teacher_lr: float = 2e-4,
        teacher_weight_decay: float = 1e-5,
        lambda_k: float = 1.0,
        lambda_m: float = 0.0,
        lambda_c: float = 1.0,
        compactness: str = "signed",
        triplet_margin: float = 1.0,
        triplet_shift: int = 2,
        triplet_luminance: float = 0.1,
        triplet_noise: float = 0.05,
        kd_input_size: int | None = 224,
        epochs: Count = 100,
    ):
        super().__init__()
        patch_sizes = [int(p) for p in ([patch_sizes] if isinstance(patch_sizes, int) else patch_sizes)]
        for p in patch_sizes:
            check_choice("method.patch_sizes", p, tuple(ARCHITECTURES))
        if not patch_sizes or students < 1:
            raise UserError("method.patch_sizes needs at least one patch size and method.students at least 1")
        check_choice("method.image_score", image_score, IMAGE_SCORES)
        check_choice("method.pad_mode", pad_mode, PAD_MODES)
        check_choice("method.compactness", compactness, COMPACTNESS)
        self.save_hyperparameters()
        self.patch_sizes = patch_sizes
        # Frozen from the start (trained apart, then copied in): DDP, which wraps the module before on_fit_start, must
        # not wait for gradients that never come.
        self.teachers = nn.ModuleList(PatchNet(p, channels, pad_mode) for p in patch_sizes).requires_grad_(False)
        self.students = nn.ModuleList(
            nn.ModuleList(PatchNet(p, channels, pad_mode) for _ in range(students)) for p in patch_sizes
        )
        scales = len(patch_sizes)
        self.register_buffer("teacher_mean", torch.zeros(scales, DESCRIPTOR))  # μ per scale
        self.register_buffer("teacher_std", torch.ones(scales, DESCRIPTOR))  # σ per scale
        self.register_buffer("error_stats", torch.tensor([[0.0, 1.0]] * scales))  # (mean, std) of e over val normals
        self.register_buffer("variance_stats", torch.tensor([[0.0, 1.0]] * scales))  # (mean, std) of v
        self.teacher_facts: list[dict] = []

    # ---- the teacher, before the students train ----
    def teacher_images(self) -> torch.Tensor:
        """uint8 images the teacher's patches come from: the training normals, or a folder's images."""
        h, datamodule = self.hparams, self.trainer.datamodule
        if h.teacher_source == "train":
            return datamodule.train_images(label=0).images
        folder = Path(h.teacher_source).expanduser()
        if not folder.is_dir():
            raise UserError(f"method.teacher_source={h.teacher_source}: not a folder (or 'train')")
        files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and visible(p))
        if len(files) < 2:
            raise UserError(f"method.teacher_source={folder} holds {len(files)} images; it needs at least two")
        pick = torch.randperm(len(files), generator=torch.Generator().manual_seed(0))[:TEACHER_SOURCE_MAX]
        return decode_all([files[i] for i in sorted(pick.tolist())], datamodule.image_size, datamodule.channels)

    def on_fit_start(self) -> None:
        super().on_fit_start()
        h, datamodule = self.hparams, self.trainer.datamodule
        if not datamodule.has_validation:
            raise UserError("students standardise their scores on validation normals; set data.val_fraction > 0")
        images = self.teacher_images()
        self.teacher_facts = []
        for scale, p in enumerate(self.patch_sizes):
            settings = TeacherSettings(
                patch_size=p,
                iterations=h.teacher_iterations,
                batch_size=h.teacher_batch_size,
                lr=h.teacher_lr,
                weight_decay=h.teacher_weight_decay,
                lambda_k=h.lambda_k,
                lambda_m=h.lambda_m,
                lambda_c=h.lambda_c,
                compactness=h.compactness,
                margin=h.triplet_margin,
                shift=h.triplet_shift,
                luminance=h.triplet_luminance,
                noise=h.triplet_noise,
                kd_input_size=h.kd_input_size,
                pad_mode=h.pad_mode,
                seed=torch.initial_seed() % 2**31,
            )

            def log(step, losses, p=p):  # to every logger (their log_metrics act on rank 0 only)
                for logger in self.loggers:
                    logger.log_metrics({f"teacher_p{p}/{name}": value for name, value in losses.items()}, step)

            teacher, facts = obtain_teacher(
                self.hparams.channels, images, settings, h.teacher_resnet18, h.teacher_cache, self.device, log
            )
            self.teachers[scale].load_state_dict(teacher.state_dict())
            self.teacher_facts.append(facts)
        self.teachers.requires_grad_(False).eval()
        self.fit_teacher_statistics()

    @torch.no_grad()
    def fit_teacher_statistics(self) -> None:
        """μ and σ of each teacher's descriptors over every position of the training normals."""
        datamodule = self.trainer.datamodule
        normals = datamodule.train_images(label=0)
        for scale, teacher in enumerate(self.teachers):
            total = torch.zeros(DESCRIPTOR, dtype=torch.float64, device=self.device)
            squares, count = torch.zeros_like(total), 0
            for batch in normals.batches(datamodule.batch_size):
                images = batch["image"].to(self.device)
                descriptors = teacher.dense(images).double()
                total += descriptors.sum((0, 2, 3))
                squares += descriptors.pow(2).sum((0, 2, 3))
                count += descriptors.numel() // DESCRIPTOR
            mean = total / count
            self.teacher_mean[scale] = mean.float()
            self.teacher_std[scale] = (squares / count - mean.pow(2)).clamp_min(1e-12).sqrt().float()

    def method_notes(self) -> dict:
        return {"teachers": self.teacher_facts}

    # ---- students ----
    def targets(self, scale: int, images: torch.Tensor) -> torch.Tensor:
        """(T(x) − μ)/σ, [B, d, H, W]."""
        with torch.no_grad():
            descriptors = self.teachers[scale].dense(images)
        shape = (1, DESCRIPTOR, 1, 1)
        return (descriptors - self.teacher_mean[scale].view(shape)) / self.teacher_std[scale].view(shape)

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        images = self.normal_images(batch)
        total = images.new_zeros(())
        for scale, p in enumerate(self.patch_sizes):
            target = self.targets(scale, images)
            loss = sum((student.dense(images) - target).pow(2).sum(1).mean() for student in self.students[scale])
            self.log(f"train/loss_p{p}", loss / len(self.students[scale]), prog_bar=True, batch_size=len(images))
            total = total + loss
        return total

    def configure_optimizers(self):
        return torch.optim.Adam(self.students.parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay)

    # ---- scoring ----
    @torch.no_grad()
    def error_and_variance(self, scale: int, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Raw e and v of one scale, [B, H, W] each."""
        outputs = torch.stack([student.dense(images) for student in self.students[scale]])
        return regression_error(outputs, self.targets(scale, images)), predictive_variance(outputs)

    def on_validation_epoch_start(self) -> None:
        self._val_sums = torch.zeros(len(self.patch_sizes), 2, 3, dtype=torch.float64, device=self.device)

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        """Accumulates count, sum and sum of squares of e and v over the validation normals' pixels."""
        images = batch["image"][batch["label"] == 0]
        for scale in range(len(self.patch_sizes)):
            for which, values in enumerate(self.error_and_variance(scale, images)):
                values = values.double()
                moments = [values.new_tensor(values.numel()), values.sum(), values.pow(2).sum()]
                self._val_sums[scale, which] += torch.stack(moments)

    def on_validation_epoch_end(self) -> None:
        sums = self.trainer.strategy.reduce(self._val_sums, reduce_op="sum")  # under DDP: every rank's pixels
        count, total, squares = sums.unbind(-1)
        if (count == 0).any():
            return
        mean = total / count
        std = (squares / count - mean.pow(2)).clamp_min(1e-24).sqrt()
        stats = torch.stack([mean, std], -1).float()  # [scales, (e, v), (mean, std)]
        self.error_stats.copy_(stats[:, 0])
        self.variance_stats.copy_(stats[:, 1])
        self.log("val/error_mean", mean[:, 0].mean().float())
        self.log("val/variance_mean", mean[:, 1].mean().float())

    def standardised_maps(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """ẽ and ṽ averaged over the scales, [B, 1, H, W] each."""
        error_map = images.new_zeros(len(images), *images.shape[-2:])
        variance_map = torch.zeros_like(error_map)
        for scale in range(len(self.patch_sizes)):
            error, variance = self.error_and_variance(scale, images)
            (e_mean, e_std), (v_mean, v_std) = self.error_stats[scale], self.variance_stats[scale]
            error_map += (error - e_mean) / e_std
            variance_map += (variance - v_mean) / v_std
        return (error_map / len(self.patch_sizes)).unsqueeze(1), (variance_map / len(self.patch_sizes)).unsqueeze(1)

    def image_scores(self, maps: torch.Tensor, reduction: str | None = None) -> torch.Tensor:
        return maps.amax((1, 2, 3)) if (reduction or self.hparams.image_score) == "max" else maps.mean((1, 2, 3))

    def score(self, batch: dict[str, torch.Tensor]) -> Scores:
        """The score, and beside it (same maps, no extra pass): the other image reduction of the map, and ẽ and ṽ
        alone (the paper's ablation of the two terms)."""
        error_map, variance_map = self.standardised_maps(batch["image"])
        maps = error_map + variance_map
        other = "mean" if self.hparams.image_score == "max" else "max"
        variants = {
            other: self.image_scores(maps, other),
            "error": self.image_scores(error_map),
            "variance": self.image_scores(variance_map),
        }
        return Scores(self.image_scores(maps), maps, variants)
