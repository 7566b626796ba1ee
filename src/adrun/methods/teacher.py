"""Uninformed Students' teacher T̂: a patch network trained once per patch size, then cached as a file.

Loss (Bergmann et al., CVPR 2020, Sec. 3.1): L(T̂) = λ_k·L_k + λ_m·L_m + λ_c·L_c on minibatches of p×p patches.
- L_k (knowledge distillation) = ‖D(T̂(p)) − P(p)‖², D a linear decoder 128 → 512 trained with T̂, P the pooled 512-d
  feature of ImageNet ResNet-18. Choice: the patch is replicated to 3 channels, normalised with ImageNet's mean and std
  and resized to `kd_input_size` (224, the size P was trained at; null feeds it at p).
- L_m (metric learning) = max{0, δ + δ⁺ − δ⁻}, δ⁺ = ‖T̂(p) − T̂(p⁺)‖², δ⁻ = min{‖T̂(p) − T̂(p⁻)‖², ‖T̂(p⁺) − T̂(p⁻)‖²}.
  Choices: p⁺ is the patch shifted by up to `shift` px, its intensity scaled by 1 ± `luminance` and noised with
  N(0, `noise`²); p⁻ is a patch of another image; δ = `margin`.
- L_c (compactness) = Σ_{i≠j} c_ij, c the correlation matrix of the minibatch's descriptors (over the batch). Taken
  literally (`compactness: signed`, the default) it is bounded below by −d and reaches that floor whenever the d
  standardised dimensions sum to zero for every patch — measured: −127.6 of −128 within 100 steps — which does not
  decorrelate them; `compactness: squared` (Σ_{i≠j} c_ij², zero only for uncorrelated dimensions) is the reading that
  does.
Each loss is averaged over the minibatch. Adam, lr 2e-4, weight decay 1e-5 (the paper's).

P comes from torchvision's ResNet-18 with ImageNet weights, found by `resnet18`: `cache` (torchvision's download cache,
if the file is there), `download` (torchvision downloads it), a path to the state dict, or `none`. Without weights the
teacher cannot distil: it trains with λ_k = 0 and λ_m = 1 (λ_c kept) and the run says so.

Patches come from the training normals (default) or from the images of a folder (`source`: the paper's ImageNet), each
image reflect-padded by (p − 1)/2 so that every pixel can be a patch centre, as in the dense pass.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from adrun.atomic import write_via
from adrun.errors import UserError
from adrun.eta import TIMED_STEPS, duration, long_phase_line
from adrun.methods.losses import check_finite
from adrun.nets.modes import frozen
from adrun.nets.patch import DESCRIPTOR, PatchNet, pad_for_patches

console = logging.getLogger(__name__)

RESNET_FEATURE = 512  # ResNet-18's pooled feature
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CACHE_VERSION = 1  # bump when the training changes, so stale teachers are not reused


@dataclass(frozen=True)
class TeacherSettings:
    patch_size: int
    iterations: int = 50_000
    batch_size: int = 64
    lr: float = 2e-4
    weight_decay: float = 1e-5
    lambda_k: float = 1.0
    lambda_m: float = 0.0
    lambda_c: float = 1.0
    compactness: str = "signed"
    margin: float = 1.0
    shift: int = 2
    luminance: float = 0.1
    noise: float = 0.05
    kd_input_size: int | None = 224
    pad_mode: str = "reflect"
    seed: int = 0


def load_resnet18(source: str) -> tuple[nn.Module | None, str]:
    """(ResNet-18 up to its pooled 512-d feature, frozen, or None; where its weights came from, or why there are
    none)."""
    if source == "none":
        return None, "method.teacher_resnet18=none"
    from torchvision.models import ResNet18_Weights, resnet18

    weights = ResNet18_Weights.IMAGENET1K_V1
    if source in ("cache", "download"):
        path = Path(torch.hub.get_dir()) / "checkpoints" / Path(weights.url).name
        if not path.exists() and source == "cache":
            return None, f"no ImageNet ResNet-18 weights at {path}"
        if not path.exists():
            try:
                resnet18(weights=weights)
            except OSError as error:
                raise UserError(f"could not download ResNet-18's ImageNet weights: {error}") from error
    else:
        path = Path(source).expanduser()
        if not path.is_file():
            raise UserError(f"method.teacher_resnet18={source}: no such file (a ResNet-18 state dict, or cache|none)")
    model = resnet18()
    model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    model.fc = nn.Identity()
    return model.eval().requires_grad_(False), str(path)


def compactness_loss(descriptors: torch.Tensor, form: str = "signed") -> torch.Tensor:
    """L_c = Σ_{i≠j} c_ij (`signed`) or Σ_{i≠j} c_ij² (`squared`), c the correlation matrix of the descriptors'
    dimensions over the minibatch [B, d]."""
    centred = descriptors - descriptors.mean(0)
    scaled = centred / centred.norm(dim=0).clamp_min(1e-12)
    correlation = scaled.T @ scaled
    if form == "squared":
        correlation = correlation.pow(2)
    return correlation.sum() - correlation.diagonal().sum()


def triplet_loss(anchor: torch.Tensor, positive: torch.Tensor, negative: torch.Tensor, margin: float) -> torch.Tensor:
    """L_m = max{0, δ + δ⁺ − δ⁻}, batch mean; δ⁻ the nearer of the anchor and the positive to the negative."""
    d_pos = (anchor - positive).pow(2).sum(1)
    d_neg = torch.minimum((anchor - negative).pow(2).sum(1), (positive - negative).pow(2).sum(1))
    return (margin + d_pos - d_neg).clamp_min(0).mean()


class PatchSampler:
    """Random p×p patches (and their positives and negatives) from uint8 images [N, C, H, W], padded once."""

    def __init__(self, images: torch.Tensor, settings: TeacherSettings, generator: torch.Generator):
        if len(images) < 2:
            raise UserError("the teacher needs at least two source images (negatives come from another image)")
        self.images = pad_for_patches(images.float().div(127.5).sub(1.0), settings.patch_size, settings.pad_mode)
        self.settings, self.generator = settings, generator
        self.height, self.width = images.shape[-2:]

    def _randint(self, high: int, n: int) -> torch.Tensor:
        return torch.randint(high, (n,), generator=self.generator)

    def _crop(self, which: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
        p = self.settings.patch_size
        return torch.stack([self.images[i, :, r : r + p, c : c + p] for i, r, c in zip(which, rows, cols, strict=True)])

    def batch(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(anchors, positives, negatives), each [B, C, p, p] in [-1, 1]-ish (the positive's noise may leave it)."""
        s, n = self.settings, self.settings.batch_size
        which = self._randint(len(self.images), n)
        rows, cols = self._randint(self.height, n), self._randint(self.width, n)
        anchors = self._crop(which, rows, cols)
        shift = lambda centre, high: (centre + self._randint(2 * s.shift + 1, n) - s.shift).clamp(0, high - 1)  # noqa: E731
        positives = self._crop(which, shift(rows, self.height), shift(cols, self.width))
        scale = 1 + s.luminance * (2 * torch.rand(n, 1, 1, 1, generator=self.generator) - 1)
        positives = (positives + 1) * scale - 1 + s.noise * torch.randn(positives.shape, generator=self.generator)
        others = (which + 1 + self._randint(len(self.images) - 1, n)) % len(self.images)
        negatives = self._crop(others, self._randint(self.height, n), self._randint(self.width, n))
        return anchors, positives, negatives


def resnet_input(patches: torch.Tensor, size: int | None) -> torch.Tensor:
    """Patches in [-1, 1] → ResNet-18's input: 3 channels, ImageNet-normalised, resized to `size`."""
    x = (patches + 1) / 2
    x = x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x
    x = (x - x.new_tensor(IMAGENET_MEAN).view(1, 3, 1, 1)) / x.new_tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return x if size is None else F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)


def train_teacher(
    net: PatchNet, images: torch.Tensor, settings: TeacherSettings, resnet: nn.Module | None, log=None
) -> dict[str, float]:
    """Train `net` in place on patches of `images`; `log(step, losses)` every 50 steps, a progress line every tenth of
    the steps (from 10 steps on). Returns the final losses."""
    generator = torch.Generator().manual_seed(settings.seed)
    sampler = PatchSampler(images, settings, generator)
    device = next(net.parameters()).device
    decoder = nn.Linear(DESCRIPTOR, RESNET_FEATURE).to(device)
    lambda_k, lambda_m = (settings.lambda_k, settings.lambda_m) if resnet is not None else (0.0, 1.0)
    params = [*net.parameters(), *(decoder.parameters() if lambda_k else [])]
    optimizer = torch.optim.Adam(params, lr=settings.lr, weight_decay=settings.weight_decay)
    net.train()
    losses: dict[str, torch.Tensor] = {}
    start, tenth = time.perf_counter(), max(settings.iterations // 10, 1)
    for step in range(settings.iterations):
        anchors, positives, negatives = (x.to(device) for x in sampler.batch())
        descriptors = net(anchors)
        losses = {"compactness": compactness_loss(descriptors, settings.compactness)}
        if lambda_m:
            losses["metric"] = triplet_loss(descriptors, net(positives), net(negatives), settings.margin)
        if lambda_k:
            with torch.no_grad(), frozen(resnet):
                target = resnet(resnet_input(anchors, settings.kd_input_size))
            losses["distillation"] = (decoder(descriptors) - target).pow(2).sum(1).mean()
        weights = {"distillation": lambda_k, "metric": lambda_m, "compactness": settings.lambda_c}
        total = sum(weights[name] * value for name, value in losses.items())
        optimizer.zero_grad()
        total.backward()
        optimizer.step()
        if step % 50 == 0 or step == settings.iterations - 1:
            check_finite({"loss": total, **losses}, f"in teacher p={settings.patch_size}'s step {step + 1}")
        if log is not None and (step % 50 == 0 or step == settings.iterations - 1):
            log(step, {"loss": total.item()} | {name: value.item() for name, value in losses.items()})
        if step == 0:
            first = time.perf_counter()
        if step == TIMED_STEPS:
            per_step = (time.perf_counter() - first) / TIMED_STEPS
            what = f"students: teacher p={settings.patch_size}'s training"
            keys = "method.teacher_iterations shortens it, hardware=gpu speeds it up; a trained teacher is cached"
            if line := long_phase_line(what, per_step, settings.iterations, keys):
                console.warning(line)
        if settings.iterations >= 10 and (step + 1) % tenth == 0:
            elapsed = time.perf_counter() - start
            left = elapsed / (step + 1) * (settings.iterations - step - 1)
            console.info(
                f"students: teacher p={settings.patch_size} step {step + 1}/{settings.iterations} · loss "
                f"{total.item():.4g} · {elapsed:.0f} s, {duration(left)} left"
            )
    net.eval()
    return {name: value.item() for name, value in losses.items()}


def cache_path(folder: Path, settings: TeacherSettings, images: torch.Tensor, channels: int, resnet_from: str) -> Path:
    """The teacher's file: named by a hash of everything that determines it (settings, source pixels, P's weights)."""
    key = asdict(settings) | {"channels": channels, "resnet18": resnet_from, "version": CACHE_VERSION}
    digest = hashlib.sha1(json.dumps(key, sort_keys=True).encode())
    digest.update(images.contiguous().numpy().tobytes())
    return folder / f"teacher_p{settings.patch_size}_{digest.hexdigest()[:16]}.pt"


def obtain_teacher(
    channels: int,
    images: torch.Tensor,
    settings: TeacherSettings,
    resnet18: str,
    cache: str | None,
    device: torch.device | str,
    log=None,
) -> tuple[PatchNet, dict]:
    """A trained teacher (see `_obtain_teacher`), made without touching the caller's random state: a run goes on
    identically whether its teacher was trained now or loaded from the cache."""
    device = torch.device(device)
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        return _obtain_teacher(channels, images, settings, resnet18, cache, device, log)


def _obtain_teacher(
    channels: int,
    images: torch.Tensor,
    settings: TeacherSettings,
    resnet18: str,
    cache: str | None,
    device: torch.device,
    log=None,
) -> tuple[PatchNet, dict]:
    """A trained teacher for `settings` (from the cache file when one exists) and what to report about it."""
    torch.manual_seed(settings.seed)
    net = PatchNet(settings.patch_size, channels, settings.pad_mode).to(device)
    resnet, resnet_from = load_resnet18(resnet18)
    distilled = resnet is not None
    facts = {
        "patch_size": settings.patch_size,
        "distillation": distilled,
        "lambda_k": settings.lambda_k if distilled else 0.0,
        "lambda_m": settings.lambda_m if distilled else 1.0,
        "lambda_c": settings.lambda_c,
        "compactness": settings.compactness,
        "resnet18": resnet_from,
        "iterations": settings.iterations,
        "source_images": len(images),
    }
    path = cache_path(Path(cache).expanduser(), settings, images, channels, resnet_from) if cache else None
    if path is not None and path.is_file():
        net.load_state_dict(torch.load(path, map_location=device, weights_only=True))
        console.info(f"students: teacher p={settings.patch_size} loaded from {path}")
        return net.eval(), facts | {"file": str(path), "trained_now": False}
    if not distilled:
        console.info(
            f"students: no knowledge distillation for teacher p={settings.patch_size} ({resnet_from}); "
            "it trains with λ_k=0, λ_m=1 (metric learning and compactness); to distil as the paper does, set "
            "method.teacher_resnet18=download (or a path to resnet18 weights), and method.teacher_source=<ImageNet dir>"
        )
    console.info(
        f"students: training teacher p={settings.patch_size}: {settings.iterations} steps on {len(images)} images"
    )
    start = time.perf_counter()
    final = train_teacher(net, images, settings, resnet.to(device) if distilled else None, log)
    facts |= {"train_s": time.perf_counter() - start, "final_losses": final, "trained_now": True}
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_via(path, lambda tmp: torch.save(net.state_dict(), tmp))
        facts["file"] = str(path)
    return net, facts
